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
from envs.registry import EnvSpec


@dataclass(frozen=True)
class AlgoSpec:
    name: str
    build: Callable[[DictConfig, EnvInfo, int, str], Agent]
    action_types: frozenset[str]
    description: str = ""
    #: agent-config key that sets the number of parallel training envs
    num_envs_key: str = "num_envs"


def _build_varibad(cfg: DictConfig, info: EnvInfo, seed: int, device: str) -> Agent:
    from algorithms.varibad import VariBADAgent, load_config

    return VariBADAgent(load_config(cfg), info, seed=seed, device=device)


def _build_rl2(cfg: DictConfig, info: EnvInfo, seed: int, device: str) -> Agent:
    from algorithms.rl2 import build_rl2

    return build_rl2(cfg, info, seed, device)


ALGORITHMS: dict[str, AlgoSpec] = {
    "varibad": AlgoSpec("varibad", _build_varibad, frozenset({"discrete", "continuous"}),
                        "VariBAD: recurrent VAE belief + PPO (Zintgraf et al. 2021)"),
    "rl2": AlgoSpec("rl2", _build_rl2, frozenset({"discrete", "continuous"}),
                    "RL^2: VariBAD's recurrent machinery, no decoder, RL loss through the GRU"),
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
    if env.action_type not in algo.action_types:
        raise IncompatibleError(
            f"algorithm {algo.name!r} supports {'/'.join(sorted(algo.action_types))} actions but env "
            f"{env.name!r} has {env.action_type} actions")


def build_agent(name: str, cfg: DictConfig | dict[str, Any], info: EnvInfo, seed: int, device: str) -> Agent:
    return get_algo(name).build(cfg, info, seed, device)
