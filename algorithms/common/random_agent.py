"""Reference agents that need no learning: the uniform random policy (the floor every result is read against)."""

from __future__ import annotations

from typing import Any

import numpy as np

from algorithms.common.agent import Agent, IterationStats, StopQuery
from envs.base import MetaVecEnv


class RandomAgent(Agent):
    """Uniformly random actions; no belief. ``train_iteration`` only consumes frames."""

    name = "random"

    def __init__(self, action_space: Any, seed: int, num_steps: int = 100) -> None:
        self.action_space = action_space
        self.rng = np.random.default_rng(seed)
        self.num_steps = num_steps

    def _sample(self, n: int) -> np.ndarray:
        if hasattr(self.action_space, "n"):
            return self.rng.integers(int(self.action_space.n), size=n)
        low, high = self.action_space.low, self.action_space.high
        return self.rng.uniform(low, high, size=(n, *low.shape)).astype(np.float32)

    def train_iteration(self, env: MetaVecEnv, should_stop: StopQuery | None = None) -> IterationStats:
        for _ in range(self.num_steps):
            env.step(self._sample(env.num_envs))
        return IterationStats(frames=self.num_steps * env.num_envs)

    def initial_belief(self, num_envs: int, tasks: np.ndarray | None = None) -> None:
        return None

    def act(self, obs: np.ndarray, belief: Any, deterministic: bool) -> np.ndarray:
        return self._sample(len(obs))  # a random policy has no mode: always samples

    def update_belief(self, belief, obs, action, reward, next_obs, episode_done, task_done) -> None:
        return None

    def state_dict(self, resume: bool = True) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
