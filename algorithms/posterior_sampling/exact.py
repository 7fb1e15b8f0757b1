"""Exact posterior sampling on GridWorld with the true belief (VariBAD paper fig. 1c/1e; Strens, 2000).

The belief is exact: uniform over the candidate goal cells not yet visited, collapsing to the goal once a step
pays the goal reward. At the start of every episode a candidate is sampled from the belief and the agent walks a
shortest path to it; the tie-break among shortest paths is "along x first, then along y" (the same rule the exact
reference values in :mod:`algorithms.references.gridworld` use). Every cell passed updates the belief. Once at the
sampled cell it stays there (noop) for the rest of the episode; if it steps on the goal it knows it, stays on it,
and heads straight to it in every later episode. Deterministic given the sampled targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from algorithms.common.agent import Agent, IterationStats, StopQuery
from envs.base import MetaVecEnv
from envs.gridworld import GOAL_REWARD, GRID_SIZE, candidate_goals

NOOP, UP, RIGHT, DOWN, LEFT = range(5)


@dataclass
class CandidateBelief:
    """Per env: which candidate cells are still possible goals, the goal once found, and this episode's target."""

    unvisited: np.ndarray  # (n, C) bool
    goal: np.ndarray  # (n,) candidate index of the found goal, -1 while unknown
    target: np.ndarray  # (n,) candidate index walked to in the current episode


class ExactPosteriorSamplingAgent(Agent):
    name = "posterior_sampling_exact"

    def __init__(self, seed: int, num_steps: int = 60, size: int = GRID_SIZE) -> None:
        self.rng = np.random.default_rng(seed)
        self.candidates = candidate_goals(size).astype(np.int64)  # (C, 2), sorted by (x, y)
        self.cell_to_candidate = -np.ones((size, size), dtype=np.int64)
        self.cell_to_candidate[self.candidates[:, 0], self.candidates[:, 1]] = np.arange(len(self.candidates))
        self.num_steps = num_steps
        self._train_belief: CandidateBelief | None = None
        self._train_obs: np.ndarray | None = None

    # ------------------------------------------------------------------ belief
    def _sample_targets(self, belief: CandidateBelief, rows: np.ndarray) -> None:
        """Sample each row's target uniformly from its belief (the goal itself where it is known)."""
        if rows.size == 0:
            return
        possible = belief.unvisited[rows]
        u = self.rng.random(rows.size) * possible.sum(axis=1)
        sampled = np.minimum((np.cumsum(possible, axis=1) <= u[:, None]).sum(axis=1), possible.shape[1] - 1)
        known = belief.goal[rows] >= 0
        belief.target[rows] = np.where(known, belief.goal[rows], sampled)

    def initial_belief(self, num_envs: int, tasks: np.ndarray | None = None) -> CandidateBelief:
        C = len(self.candidates)
        belief = CandidateBelief(np.ones((num_envs, C), dtype=bool), -np.ones(num_envs, dtype=np.int64),
                                 np.zeros(num_envs, dtype=np.int64))
        self._sample_targets(belief, np.arange(num_envs))
        return belief

    def act(self, obs: np.ndarray, belief: CandidateBelief, deterministic: bool) -> np.ndarray:
        pos = np.rint(obs[:, :2]).astype(np.int64)
        tx, ty = self.candidates[belief.target, 0], self.candidates[belief.target, 1]
        return np.where(pos[:, 0] < tx, RIGHT, np.where(pos[:, 0] > tx, LEFT,
                        np.where(pos[:, 1] < ty, UP, np.where(pos[:, 1] > ty, DOWN, NOOP))))

    def update_belief(self, belief: CandidateBelief, obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
                      next_obs: np.ndarray, episode_done: np.ndarray, task_done: np.ndarray) -> CandidateBelief:
        cell = np.rint(next_obs[:, :2]).astype(np.int64)
        entered = self.cell_to_candidate[cell[:, 0], cell[:, 1]]
        rows = np.flatnonzero(entered >= 0)
        belief.unvisited[rows, entered[rows]] = False
        found = (reward == np.float32(GOAL_REWARD)) & (belief.goal < 0)
        belief.goal[found] = entered[found]
        belief.target[found] = entered[found]  # stay on the goal from now on
        if task_done.any():  # a new task: back to the prior
            done = np.flatnonzero(task_done)
            belief.unvisited[done] = True
            belief.goal[done] = -1
        self._sample_targets(belief, np.flatnonzero(episode_done))  # resample at every episode boundary
        return belief

    # ------------------------------------------------------------------ nothing to learn
    def train_iteration(self, env: MetaVecEnv, should_stop: StopQuery | None = None) -> IterationStats:
        """No parameters: rolls the policy out (so frame budgets mean the same as for learning agents)."""
        if self._train_obs is None:
            self._train_obs, _ = env.reset()
            self._train_belief = self.initial_belief(env.num_envs)
        obs, belief = self._train_obs, self._train_belief
        for _ in range(self.num_steps):
            action = self.act(obs, belief, True)
            next_obs, reward, _, _, info = env.step(action)
            belief = self.update_belief(belief, obs, action, reward, info["final_obs"], info["episode_done"],
                                        info["task_done"])
            obs = next_obs
        self._train_obs, self._train_belief = obs, belief
        return IterationStats(frames=self.num_steps * env.num_envs)

    def state_dict(self, resume: bool = True) -> dict[str, Any]:
        state: dict[str, Any] = {"rng": self.rng.bit_generator.state}
        if resume:
            state["rollout"] = (self._train_obs, self._train_belief)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        if "rollout" in state:
            self._train_obs, self._train_belief = state["rollout"]
