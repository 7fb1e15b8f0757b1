"""Algorithm registry: name -> builder, with the env properties each agent supports.

Checked before any work so that an impossible algo x env combination fails with a message, not mid-run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from algorithms.common.agent import Agent, EnvInfo
from algorithms.common.errors import ConfigError
from algorithms.pearl import PEARLAgent
from algorithms.pearl import load_config as load_pearl_config
from algorithms.posterior_sampling import ExactPosteriorSamplingAgent
from algorithms.rl2 import build_rl2
from algorithms.varibad import VariBADAgent
from algorithms.varibad import load_config as load_varibad_config
from envs.registry import EnvSpec


@dataclass(frozen=True)
class AlgoSpec:
    name: str
    #: (agent config, env info, seed, device, update threads) -> the agent
    build: Callable[[DictConfig, EnvInfo, int, str, int], Agent]
    action_types: frozenset[str]
    description: str = ""
    #: envs the agent is defined for (None: any env with a supported action type)
    envs: frozenset[str] | None = None
    #: torch devices the agent runs on (``device=auto`` picks the GPU where one exists and is listed here)
    devices: frozenset[str] = frozenset({"cpu", "cuda"})


def _build_varibad(cfg: DictConfig, info: EnvInfo, seed: int, device: str, threads: int) -> Agent:
    return VariBADAgent(load_varibad_config(cfg), info, seed=seed, device=device, update_threads=threads)


def _build_rl2(cfg: DictConfig, info: EnvInfo, seed: int, device: str, threads: int) -> Agent:
    return build_rl2(cfg, info, seed, device, threads)


def _build_varibad_variant(required: dict[str, Any]) -> Callable[[DictConfig, EnvInfo, int, str, int], Agent]:
    """Agents that are VariBAD's machinery with some fields fixed (checked, so the name cannot lie)."""

    def build(cfg: DictConfig, info: EnvInfo, seed: int, device: str, threads: int) -> Agent:
        config = load_varibad_config(cfg)
        wrong = {k: getattr(config, k) for k, v in required.items() if getattr(config, k) != v}
        if wrong:
            raise ConfigError(f"algo {config.name!r} requires {required}; got {wrong}")
        return VariBADAgent(config, info, seed=seed, device=device, update_threads=threads)

    return build


def _build_exact_posterior_sampling(cfg: DictConfig, info: EnvInfo, seed: int, device: str, threads: int) -> Agent:
    return ExactPosteriorSamplingAgent(seed=seed, num_steps=int(cfg.num_steps))


def _build_pearl(cfg: DictConfig, info: EnvInfo, seed: int, device: str, threads: int) -> Agent:
    return PEARLAgent(load_pearl_config(cfg), info, seed=seed, device=device, update_threads=threads)


ALGORITHMS: dict[str, AlgoSpec] = {
    "varibad": AlgoSpec("varibad", _build_varibad, frozenset({"discrete", "continuous"}),
                        "VariBAD: recurrent VAE belief + PPO (Zintgraf et al. 2021)"),
    "rl2": AlgoSpec("rl2", _build_rl2, frozenset({"discrete", "continuous"}),
                    "RL^2: VariBAD's recurrent machinery, no decoder, RL loss through the GRU"),
    "posterior_sampling": AlgoSpec(
        "posterior_sampling", _build_varibad_variant({"policy_belief": "sample", "belief_sample_hold": "episode"}),
        frozenset({"discrete", "continuous"}),
        "learned posterior sampling: VariBAD's inference, one latent sample held per episode"),
    "posterior_sampling_exact": AlgoSpec(
        "posterior_sampling_exact", _build_exact_posterior_sampling, frozenset({"discrete"}),
        "exact posterior sampling with the true GridWorld belief (no learning)", envs=frozenset({"gridworld"}),
        devices=frozenset({"cpu"})),
    "oracle": AlgoSpec("oracle", _build_varibad_variant({"policy_belief": "task", "vae_enabled": False}),
                       frozenset({"discrete", "continuous"}),
                       "multi-task upper bound: PPO conditioned on the true task vector"),
    "pearl": AlgoSpec("pearl", _build_pearl, frozenset({"continuous"}),
                      "PEARL: SAC with a permutation-invariant probabilistic context encoder (Rakelly et al. 2019)"),
}


class UnknownAlgorithmError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class IncompatibleError(ConfigError):
    """The algorithm cannot run on the environment."""


def get_algo(name: str) -> AlgoSpec:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise UnknownAlgorithmError(
            f"unknown algorithm {name!r}; available algorithms: {', '.join(sorted(ALGORITHMS))}") from None


def check_compatible(algo: AlgoSpec, env: EnvSpec) -> None:
    if algo.envs is not None and env.name not in algo.envs:
        raise IncompatibleError(f"algorithm {algo.name!r} is only defined for env(s) {', '.join(sorted(algo.envs))}, "
                                f"not {env.name!r}")
    if env.action_type not in algo.action_types:
        raise IncompatibleError(
            f"algorithm {algo.name!r} supports {'/'.join(sorted(algo.action_types))} actions but env "
            f"{env.name!r} has {env.action_type} actions")


def resolve_device(requested: str, algo: AlgoSpec, cuda_available: bool) -> str:
    """``device=cpu|cuda|auto`` for this agent: ``auto`` is ``cuda`` where a GPU exists and the agent supports it,
    else ``cpu``. An impossible choice fails with a message naming the choices."""
    if requested == "auto":
        return "cuda" if cuda_available and "cuda" in algo.devices else "cpu"
    if requested not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {requested!r}; choose one of: auto, cpu, cuda")
    if requested == "cuda" and not cuda_available:
        raise ConfigError("device=cuda but torch sees no GPU (torch.cuda.is_available() is False); "
                          "use device=cpu or device=auto")
    if requested not in algo.devices:
        raise IncompatibleError(f"algorithm {algo.name!r} runs on {'/'.join(sorted(algo.devices))} only, not "
                                f"{requested}; use device=auto (the GPU where the agent supports it)")
    return requested


def build_agent(name: str, cfg: DictConfig | dict[str, Any], info: EnvInfo, seed: int, device: str,
                update_threads: int = 1) -> Agent:
    """The agent ``name`` from its config section (``cfg.algo``); ``update_threads``: torch threads of its updates."""
    return get_algo(name).build(cfg, info, seed, device, update_threads)
