"""Compose a run's config, build what it trains (agent, env, meta-test tasks) and load a trained agent back.

``train.py`` (the entry point) and the tools that need a trained agent (``tools/``) share these, so nothing in
``algorithms/`` imports the entry point.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from algorithms import configs  # noqa: F401 - registers the structured configs Hydra composes with
from algorithms.common.agent import Agent, EnvInfo
from algorithms.common.checkpoints import load_checkpoint
from algorithms.common.errors import ConfigError
from algorithms.common.evaluator import meta_test_tasks
from algorithms.common.stopping import in_multirun
from algorithms.registry import AlgoSpec, build_agent, check_compatible, get_algo, resolve_device
from envs.base import MetaVecEnv
from envs.registry import EnvSpec, get_spec, make_meta_env
from records import locations, run_folder

#: the Hydra config folder (``conf/`` at the repository root)
CONF_DIR = str(locations.CONF_DIR)


def compose_config(*overrides: str) -> DictConfig:
    """The config ``train.py`` would run with these command-line overrides (for tests, benchmarks and tools)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def configure_process(threads: int) -> None:
    """One torch thread per process by default (design.md §6); joblib reuses workers, so set it every job."""
    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    torch.distributions.Distribution.set_default_validate_args(False)


def env_options(cfg: DictConfig) -> dict:
    """Env settings shared by the training env and the meta-test env: horizon override and ``env.kwargs``."""
    kwargs = cfg.env.get("kwargs")
    options = dict(OmegaConf.to_container(kwargs, resolve=True)) if kwargs else {}
    if cfg.env.horizon:
        options["horizon"] = int(cfg.env.horizon)
    return options


def check_paper_config(cfg: DictConfig) -> None:
    """Every algo x env pair runs with its paper configuration (``conf/algo_env/<algo>_<env>.yaml``): without one
    the agent would silently run with another env's hyperparameters. ``allow_default_hyperparameters=true``
    accepts the defaults knowingly."""
    algo, env = cfg.algo.name, cfg.env.name
    if cfg.get("allow_default_hyperparameters") or (Path(CONF_DIR) / "algo_env" / f"{algo}_{env}.yaml").exists():
        return
    have = sorted(p.stem.removeprefix(f"{algo}_") for p in (Path(CONF_DIR) / "algo_env").glob(f"{algo}_*.yaml"))
    raise ConfigError(f"no configuration conf/algo_env/{algo}_{env}.yaml for {algo} on {env} (envs with one: "
                      f"{', '.join(have) or 'none'}); add it, or run with allow_default_hyperparameters=true")


def check_protocol(cfg: DictConfig) -> None:
    """A meta-test protocol other than the default is defined per algo x env (``conf/protocol_env/``)."""
    protocol = cfg.get("protocol", {}).get("name", "default")
    if protocol == "default":
        return
    algo, env = cfg.algo.name, cfg.env.name
    if not (Path(CONF_DIR) / "protocol_env" / f"{protocol}_{algo}_{env}.yaml").exists():
        have = sorted(p.stem.removeprefix(f"{protocol}_") for p in
                      (Path(CONF_DIR) / "protocol_env").glob(f"{protocol}_*.yaml"))
        raise ConfigError(f"protocol={protocol} is not defined for {algo} on {env} (defined for: "
                          f"{', '.join(have) or 'nothing'}); use protocol=default")


@dataclass
class RunSetup:
    """What :func:`build` makes of a config: the agent, its training env and what a run needs besides."""

    cfg: DictConfig
    agent: Agent
    env: MetaVecEnv
    env_spec: EnvSpec
    algo_spec: AlgoSpec
    device: str
    #: env settings shared by the training env and the meta-test env (:func:`env_options`)
    env_options: dict[str, Any]

    @cached_property
    def eval_tasks(self) -> np.ndarray:
        """The meta-test tasks (the env's test set, or a sample seeded by the run's seed)."""
        return meta_test_tasks(self.env_spec.name, self.cfg.eval.num_tasks, seed=int(self.cfg.seed),
                               **self.env_options)

    @property
    def eval_episodes(self) -> int:
        """K at meta-test: ``eval.episodes``, else the env config's, else the registry's."""
        return int(self.cfg.eval.episodes or self.cfg.env.get("episodes_eval") or self.env_spec.episodes_eval)


def build(cfg: DictConfig, update_threads: int | None = None) -> RunSetup:
    """Validate the algo x env choice, then build the training env and the agent (seeded by ``cfg.seed``).
    ``update_threads``: what a resumed run chose at its start (default: from the ``update_threads`` config)."""
    env_spec = get_spec(cfg.env.name)
    algo_spec = get_algo(cfg.algo.name)
    check_compatible(algo_spec, env_spec)  # fail before any work or any results folder
    check_paper_config(cfg)
    check_protocol(cfg)
    device = resolve_device(str(cfg.device), algo_spec, torch.cuda.is_available())
    configure_process(int(cfg.torch_threads))
    torch.manual_seed(int(cfg.seed))
    np.random.seed(int(cfg.seed))  # no project code uses it; third-party code might
    episodes = cfg.env.episodes_per_task or env_spec.episodes_per_task
    options = env_options(cfg)
    env = make_meta_env(env_spec.name, num_envs=int(cfg.algo.num_envs), seed=int(cfg.seed), split="train",
                        episodes_per_task=episodes, **options)
    threads = update_threads or resolve_update_threads(cfg.get("update_threads", "auto"), device, env_spec.name)
    agent = build_agent(algo_spec.name, cfg.algo, EnvInfo.from_env(env), int(cfg.seed), device, threads)
    return RunSetup(cfg, agent, env, env_spec, algo_spec, device, options)


#: envs whose networks are too small for a second thread to speed their updates up (measured: GridWorld 30k frames
#: took 4.76 s with 1 and with 2 threads on a quiet 2-core machine)
SMALL_NETWORK_ENVS = frozenset({"gridworld"})


def idle_cores(seconds: float = 0.25) -> float | None:
    """How many cores sat idle over the next ``seconds`` (``/proc/stat``), or ``None`` where it cannot be read."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields[:8])  # idle + iowait, total
    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (idle1 - idle0) / (total1 - total0) * (os.cpu_count() or 1)


def choose_update_threads(cores: int, idle: float | None, env: str, device: str, in_sweep: bool) -> int:
    """``update_threads=auto``, from measurements on a 2-core machine (whole runs, twice each): a second thread made
    PointRobot's runs 1.4x faster when the other core was free (32k frames: 14.4 s against 20.5-20.8 s) and
    GridWorld's no faster (30k frames: 4.6-4.8 s either way), while beside one busy process 2 threads were far slower
    than 1: GridWorld 13.5-30.3 s against 4.8-5.0 s, PointRobot 129.5 s against 20.7-20.9 s. So 2 threads only where
    they pay and nothing else runs: a CPU run on its own (not a sweep's job) of an env with larger networks, with at
    least 1.5 cores idle when it starts; 1 everywhere else."""
    if device != "cpu" or in_sweep or cores < 2 or env in SMALL_NETWORK_ENVS:
        return 1
    return 2 if idle is not None and idle >= 1.5 else 1


def resolve_update_threads(setting: Any, device: str, env: str = "") -> int:
    """torch threads for an agent's updates: an int, or ``auto`` (:func:`choose_update_threads`, the cores measured
    when the run starts; a resumed run keeps what it chose, see ``train.py``)."""
    if str(setting) != "auto":
        threads = int(setting)
        if threads < 1:
            raise ConfigError(f"update_threads must be >= 1 or 'auto', got {setting!r}")
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    in_sweep = in_multirun()
    idle = None if device != "cpu" or in_sweep or cores < 2 or env in SMALL_NETWORK_ENVS else idle_cores()
    return choose_update_threads(cores, idle, env, device, in_sweep)


#: agent-config keys that runs of earlier versions wrote and that no longer exist (they changed nothing computed)
RETIRED_ALGO_KEYS = ("rollout_overlap",)


def load_run_agent(run_dir: Path | str, checkpoint: str = "final") -> tuple[Agent, DictConfig, dict[str, Any]]:
    """The agent of a run folder with the weights of ``checkpoints/<checkpoint>.pt``, its resolved config and the
    checkpoint's progress (``frames``). The training env built on the way is closed again."""
    run_dir = Path(run_dir)
    config_file = run_dir / run_folder.CONFIG
    checkpoint_file = run_dir / run_folder.CHECKPOINTS / f"{checkpoint}.pt"
    for needed in (config_file, checkpoint_file):
        if not needed.is_file():
            raise FileNotFoundError(f"{run_dir} is not a run folder with a {checkpoint!r} checkpoint: {needed} "
                                    "is missing")
    cfg = OmegaConf.load(config_file)
    for key in RETIRED_ALGO_KEYS:
        cfg.algo.pop(key, None)
    setup = build(cfg)
    setup.env.close()
    agent = setup.agent
    state = load_checkpoint(checkpoint_file)  # weights-only: a foreign run's checkpoint cannot run code
    agent.load_state_dict(state["agent"])
    return agent, cfg, {"frames": int(state.get("frames", 0))}
