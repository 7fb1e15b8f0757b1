"""Training entry point: ``python train.py algo=varibad env=gridworld seed=0`` (Hydra; see conf/config.yaml).

``make train ALGO=.. ENV=..`` and ``make sweep ALGO=.. ENV=.. SEEDS=0,1,2`` call this.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from algorithms.common.agent import Agent, EnvInfo
from algorithms.common.baselines import RandomAgent
from algorithms.common.errors import ConfigError
from algorithms.common.evaluator import meta_test, test_task_set
from algorithms.common.results import RunDirectory, RunLockedError, find_resumable
from algorithms.common.tracking import NullTracker, Tracker, WandbTracker
from algorithms.common.trainer import Preempted, Trainer, TrainerConfig
from algorithms.registry import UnknownAlgorithmError, build_agent, check_compatible, get_algo, resolve_device
from envs.base import MetaVecEnv
from envs.registry import UnknownEnvError, get_spec, make_meta_env

CONF_DIR = str(Path(__file__).resolve().parent / "conf")


def compose_config(*overrides: str) -> DictConfig:
    """The config ``train.py`` would run with these command-line overrides (for tests and benchmarks)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def configure_process(threads: int) -> None:
    """One torch thread per process by default (SPEC sec. 6); joblib reuses workers, so set it every job."""
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


def build(cfg: DictConfig) -> tuple[Agent, MetaVecEnv]:
    """Validate the algo x env choice, then build the training env and the agent (seeded by ``cfg.seed``)."""
    env_spec = get_spec(cfg.env.name)
    algo_spec = get_algo(cfg.algo.name)
    check_compatible(algo_spec, env_spec)  # fail before any work or any results folder
    check_paper_config(cfg)
    device = resolve_device(str(cfg.device), algo_spec, torch.cuda.is_available())
    configure_process(int(cfg.torch_threads))
    torch.manual_seed(int(cfg.seed))
    np.random.seed(int(cfg.seed))  # no project code uses it; third-party code might
    episodes = cfg.env.episodes_per_task or env_spec.episodes_per_task
    num_envs = int(cfg.algo[algo_spec.num_envs_key])
    env = make_meta_env(env_spec.name, num_envs=num_envs, seed=int(cfg.seed), split="train",
                        episodes_per_task=episodes, **env_options(cfg))
    agent = build_agent(algo_spec.name, cfg.algo, EnvInfo.from_env(env), int(cfg.seed), device)
    return agent, env


def make_tracker(cfg: DictConfig, run_dir: RunDirectory) -> Tracker:
    """The tracker chosen by ``tracking.backend`` (none | wandb); a resumed run continues its wandb run."""
    tracking = cfg.get("tracking")
    if tracking is None or tracking.backend in (None, "none"):
        return NullTracker()
    if tracking.backend != "wandb":
        raise ConfigError(f"unknown tracking.backend {tracking.backend!r}; choose one of: none, wandb")
    group = tracking.group
    if group is None:
        group = f"{cfg.env.name}/{cfg.get('label') or cfg.algo.name}"
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            group += "/" + Path(HydraConfig.get().sweep.dir).name  # one group per sweep
    tracker = WandbTracker(run_dir.path, OmegaConf.to_container(cfg, resolve=True), project=tracking.project,
                           group=group, name=run_dir.run_id, mode=tracking.mode,
                           run_id=run_dir.metadata.get("wandb_run_id"))
    run_dir.write_metadata(wandb_run_id=tracker.run_id)
    return tracker


def launch_command() -> str:
    """The command that reproduces this run: ``python train.py <overrides>`` (under a launcher, ``sys.argv`` is
    the launcher's worker process, not the user's command)."""
    if HydraConfig.initialized():
        return " ".join(["python train.py", *HydraConfig.get().overrides.task])
    return " ".join(sys.argv)


def open_run_directory(cfg: DictConfig, env_name: str, algo_name: str) -> tuple[RunDirectory, bool]:
    """A fresh run folder, or, with ``resume=true``, the killed or pre-empted run with this same config
    (the second value says which)."""
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    label = cfg.get("label") or algo_name
    previous = (find_resumable(cfg.results_dir, env_name, label, int(cfg.seed), config_yaml, cfg.run_name)
                if cfg.get("resume", True) else None)
    if previous is not None:
        return RunDirectory.reopen(previous), True
    run_dir = RunDirectory(cfg.results_dir, env_name, algo_name, int(cfg.seed), cfg.run_name, label)
    run_dir.write_config(config_yaml)
    return run_dir, False


def run(cfg: DictConfig) -> pd.DataFrame:
    """Build env and agent, train (or resume), and return the final meta-test rows."""
    agent, env = build(cfg)
    env_spec = get_spec(cfg.env.name)
    algo_spec = get_algo(cfg.algo.name)
    eval_tasks = test_task_set(env_spec.name, cfg.eval.num_tasks, seed=int(cfg.seed), **env_options(cfg))
    run_dir, resuming = open_run_directory(cfg, env_spec.name, algo_spec.name)
    run_dir.write_metadata(device=resolve_device(str(cfg.device), algo_spec, torch.cuda.is_available()),
                           command=launch_command())
    trainer_cfg = TrainerConfig(
        num_frames=int(cfg.train.num_frames), eval_interval_frames=int(cfg.train.eval_interval_frames),
        log_interval_iterations=int(cfg.train.log_interval_iterations),
        checkpoint_interval_frames=int(cfg.train.checkpoint_interval_frames),
        eval_episodes=int(cfg.eval.episodes or cfg.env.get("episodes_eval") or env_spec.episodes_eval),
        eval_deterministic=bool(cfg.eval.deterministic), progress=bool(cfg.progress))
    tracker = make_tracker(cfg, run_dir)
    trainer = Trainer(agent, env, env_spec.name, eval_tasks, run_dir, trainer_cfg, int(cfg.seed),
                      env_options(cfg), tracker)
    if resuming:
        trainer.restore(run_dir.checkpoints / "latest.pt")
        print(f"[metarl-bench] resuming {run_dir.path} at frame {trainer.frames}", flush=True)
    else:
        print(f"[metarl-bench] run folder: {run_dir.path}", flush=True)
    try:
        final = trainer.train()
    except Preempted as stop:
        tracker.finish(exit_code=128 + stop.signum)
        run_dir.close()
        print(f"[metarl-bench] {stop} (run {run_dir.path}, frame {trainer.frames})", file=sys.stderr, flush=True)
        handler = signal.getsignal(stop.signum)
        if callable(handler) and handler is not signal.default_int_handler:
            handler(stop.signum, None)  # e.g. submitit's: requeue the job, which then resumes this run
        sys.exit(128 + stop.signum)
    except BaseException:
        tracker.finish(exit_code=1)
        raise
    tracker.finish()
    run_dir.close()
    env.close()
    random_rows = meta_test(RandomAgent(env.single_action_space, seed=int(cfg.seed)), env_spec.name, eval_tasks,
                            trainer_cfg.eval_episodes, seed=int(cfg.seed) + 10_000, **env_options(cfg))
    table = pd.DataFrame({f"{algo_spec.name} mean": final.groupby("episode")["return"].mean(),
                          f"{algo_spec.name} std": final.groupby("episode")["return"].std(),
                          "random policy mean": random_rows.groupby("episode")["return"].mean()}).round(3)
    print(f"[metarl-bench] final meta-test return per episode ({len(eval_tasks)} tasks, "
          f"{'deterministic' if trainer_cfg.eval_deterministic else 'stochastic'} policy):\n{table.T.to_string()}")
    print(f"[metarl-bench] results written to {run_dir.path}", flush=True)
    return final


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except (UnknownEnvError, UnknownAlgorithmError, ConfigError, OmegaConfBaseException, FileExistsError,
            RunLockedError) as exc:
        # configuration errors: one clear line and a non-zero exit, before any work or results folder
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
