"""The environment registry: one entry per benchmark env (design.md §2).

``make_meta_env(name, ...)`` is the only way the rest of the suite builds environments, so adding an env is one
``register`` call: a factory for the batched physical env plus the benchmark's horizon and episodes per task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from envs.base import BatchedTaskEnv, MetaVecEnv


@dataclass(frozen=True)
class EnvSpec:
    """What the suite needs to know about a benchmark environment."""

    name: str
    #: ``factory(num_envs, rng, **kwargs)`` builds the batched physical env
    factory: Callable[..., BatchedTaskEnv]
    #: H, steps per episode
    horizon: int
    #: K during meta-training (the BAMDP horizon is K x H)
    episodes_per_task: int
    #: K at meta-test
    episodes_eval: int
    action_type: Literal["discrete", "continuous"]
    description: str = ""
    default_kwargs: dict[str, Any] = field(default_factory=dict)
    #: meta-test tasks drawn (seeded) when the env has no fixed test set and the config does not say
    default_eval_tasks: int = 100


REGISTRY: dict[str, EnvSpec] = {}


class UnknownEnvError(KeyError):
    """Raised for an env name that is not registered; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register(spec: EnvSpec) -> None:
    if spec.name in REGISTRY:
        raise ValueError(f"environment {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec


def get_spec(name: str) -> EnvSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        valid = ", ".join(sorted(REGISTRY))
        raise UnknownEnvError(f"unknown environment {name!r}; registered environments: {valid}") from None


def make_meta_env(
    name: str,
    num_envs: int,
    seed: int,
    split: Literal["train", "test"] = "train",
    episodes_per_task: int | None = None,
    horizon: int | None = None,
    **kwargs: Any,
) -> MetaVecEnv:
    """Build ``num_envs`` BAMDPs of env ``name``, seeded only through ``seed``.

    ``split="train"`` draws tasks from the env's training set (or its distribution); ``split="test"`` uses the
    test set when the benchmark defines one (the evaluator normally passes tasks explicitly to ``reset``).
    """
    spec = get_spec(name)
    root = np.random.default_rng(seed)
    env_rng, task_rng = (np.random.default_rng(s) for s in root.bit_generator.seed_seq.spawn(2))
    inner = spec.factory(num_envs, env_rng, **{**spec.default_kwargs, **kwargs})
    pool = inner.train_tasks() if split == "train" else inner.held_out_tasks()
    return MetaVecEnv(
        inner,
        horizon=horizon or spec.horizon,
        episodes_per_task=episodes_per_task or spec.episodes_per_task,
        rng=task_rng,
        task_pool=pool,
    )
