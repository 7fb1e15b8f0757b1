"""The one interface every agent implements (design.md §3).

Meta-training: :meth:`Agent.train_iteration` collects the agent's own data from a batched meta-env and updates;
the :class:`~algorithms.common.trainer.Trainer` owns the frame budget, evaluation schedule, logging and
checkpoints. Meta-testing (online adaptation), driven by :func:`~algorithms.common.evaluator.meta_test`: at the
start of a task the belief is the prior; every step ``act(obs, belief)`` then ``update_belief(belief, ...)``.
Episode boundaries are visible to the agent through ``episode_done`` (PEARL and posterior sampling resample
their hypothesis there).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from envs.base import MetaVecEnv

#: asked during a long iteration: whether a stop is pending
StopQuery = Callable[[], bool]


@dataclass
class IterationStats:
    """What one training iteration did: frames it consumed and scalar metrics to log."""

    frames: int
    metrics: dict[str, float] = field(default_factory=dict)


class IterationInterrupted(Exception):  # noqa: N818 - a stop, not an error
    """:attr:`Agent.should_stop` said stop inside a long iteration. The agent kept its place (in its resume state
    dict), so the next ``train_iteration`` carries the same iteration on; the trainer checkpoints and stops."""


class Agent(abc.ABC):
    """A meta-RL agent. ``Belief`` objects are opaque to the trainer and evaluator."""

    name: str = "agent"
    #: torch intra-op threads for the gradient updates (:meth:`updating`); the rollout keeps the process's setting.
    #: Agents that update take it in their constructor (the ``update_threads`` config).
    update_threads: int = 1

    @contextlib.contextmanager
    def updating(self) -> Iterator[None]:
        """Run the block (an agent's gradient updates) with :attr:`update_threads` torch threads.

        While an agent updates, its env waits: simulator workers sleep on their pipes, so a second core that the
        rollout leaves to them is free for the update's matrix products. Thread count changes only how a product
        is split, not the random streams; CPU results can still differ in the last bits between 1 and 2 threads
        (a reduction split in two sums in another order), so a run is bit-for-bit reproducible for a fixed
        ``update_threads``.
        """
        previous = torch.get_num_threads()
        if self.update_threads == previous:
            yield
            return
        torch.set_num_threads(self.update_threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    # ------------------------------------------------------------------ meta-training
    @abc.abstractmethod
    def train_iteration(self, env: MetaVecEnv, should_stop: StopQuery | None = None) -> IterationStats:
        """Collect data from ``env`` and update; return the frames used and metrics.

        ``should_stop`` says whether a stop (a signal, a sweep told to stop) is pending. Agents whose iterations last
        minutes (PEARL's thousands of gradient steps) ask it inside the iteration and raise
        :class:`IterationInterrupted`, so that a scheduler's grace period (Slurm: 30 s by default) is enough to
        checkpoint; the others stop at the end of their iteration.
        """

    # ------------------------------------------------------------------ meta-testing
    #: only the multi-task oracle (an upper bound, not a meta-learner) is given the true tasks
    uses_true_task: bool = False

    @abc.abstractmethod
    def initial_belief(self, num_envs: int, tasks: np.ndarray | None = None) -> Any:
        """The prior belief for ``num_envs`` new tasks. ``tasks`` is passed only to agents with
        ``uses_true_task`` (the evaluator enforces this)."""

    @abc.abstractmethod
    def act(self, obs: np.ndarray, belief: Any, deterministic: bool) -> np.ndarray:
        """Actions for a batch of observations given the current beliefs."""

    @abc.abstractmethod
    def update_belief(self, belief: Any, obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
                      next_obs: np.ndarray, episode_done: np.ndarray, task_done: np.ndarray) -> Any:
        """Posterior after observing one transition per env. ``next_obs`` is the true successor (the terminal
        observation where ``episode_done``). Where ``task_done`` the belief returns to the prior."""

    def adapted_belief(self, belief: Any) -> Any:
        """The belief to act on once an external protocol says adaptation is over (Meta-World's ``adapt``):
        agents that hold a hypothesis per episode commit to one drawn from what they inferred; an agent whose
        belief is updated every step keeps it as it is (the default)."""
        return belief

    def evaluation_rng_state(self) -> Any:
        """State of any random stream of the agent's own that a meta-test draws from (beyond torch's and numpy's
        global ones); restored when a stop abandons a meta-test, so that the resumed run redoes it exactly."""
        return None

    def set_evaluation_rng_state(self, state: Any) -> None:  # noqa: B027 - optional, as evaluation_rng_state
        """Restore what :meth:`evaluation_rng_state` returned."""

    # ------------------------------------------------------------------ persistence
    @abc.abstractmethod
    def state_dict(self, resume: bool = True) -> dict[str, Any]:
        """Networks, optimisers, normalisers and RNG states. With ``resume`` also everything else that exact
        resumption needs (buffers, the rollout in flight), so that a resumed run equals an uninterrupted one;
        without it, what evaluation and analysis need (a small file)."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class EnvInfo:
    """What an agent may know about the env family (never the task itself)."""

    obs_dim: int
    action_space: Any
    task_dim: int
    num_states: int | None
    #: longest BAMDP trajectory during meta-training (K x H)
    max_trajectory_len: int
    num_envs: int

    @classmethod
    def from_env(cls, env: MetaVecEnv) -> EnvInfo:
        return cls(obs_dim=env.obs_dim, action_space=env.single_action_space, task_dim=env.inner.task_dim,
                   num_states=env.inner.num_states, max_trajectory_len=env.horizon * env.episodes_per_task,
                   num_envs=env.num_envs)
