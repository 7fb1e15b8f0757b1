"""The 5x5 GridWorld of the VariBAD paper (sec. 5.1, fig. 1), natively batched in numpy.

design.md §2: start (0, 0) every episode; actions noop, up (y+1), right (x+1), down (y-1), left (x-1),
clipped at the walls; reward +1 if the new cell is the goal, else -0.1; no termination at the goal;
observation (x, y); goal uniform over the 21 cells other than (0,0), (0,1), (1,0), (1,1).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from envs.base import BatchedTaskEnv

GRID_SIZE = 5
#: (dx, dy) of actions 0..4: noop, up, right, down, left
ACTION_DELTAS = np.array([[0, 0], [0, 1], [1, 0], [0, -1], [-1, 0]], dtype=np.int64)
ACTION_NAMES = ("noop", "up", "right", "down", "left")
GOAL_REWARD = 1.0
STEP_REWARD = -0.1
EXCLUDED_GOALS = {(0, 0), (0, 1), (1, 0), (1, 1)}


def candidate_goals(size: int = GRID_SIZE) -> np.ndarray:
    """All goal cells of the task distribution, sorted by (x, y): shape ``(21, 2)`` for the 5x5 grid."""
    cells = [(x, y) for x in range(size) for y in range(size) if (x, y) not in EXCLUDED_GOALS]
    return np.array(cells, dtype=np.float32)


class GridWorld(BatchedTaskEnv):
    """N GridWorlds stepped by one array operation; the task is the goal cell ``(x, y)``."""

    task_dim = 2
    state_attributes = ("position",)
    num_states = GRID_SIZE * GRID_SIZE

    def __init__(self, num_envs: int, rng: np.random.Generator, size: int = GRID_SIZE) -> None:
        self.size = size
        self.num_states = size * size
        self.single_observation_space = gym.spaces.Box(0.0, float(size - 1), shape=(2,), dtype=np.float32)
        self.single_action_space = gym.spaces.Discrete(len(ACTION_DELTAS))
        super().__init__(num_envs, rng)
        self.goals = candidate_goals(size)
        self.position = np.zeros((num_envs, 2), dtype=np.int64)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.goals[rng.integers(len(self.goals), size=n)].copy()

    def held_out_tasks(self) -> np.ndarray:
        # The task distribution is finite: meta-testing on every goal once gives the exact expectation.
        return self.goals.copy()

    def reset_state(self, idx: np.ndarray) -> np.ndarray:
        self.position[idx] = 0
        return self.position[idx].astype(np.float32)

    def step(self, actions: np.ndarray):
        actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        if actions.min() < 0 or actions.max() >= len(ACTION_DELTAS):
            raise ValueError(f"GridWorld actions must be in 0..{len(ACTION_DELTAS) - 1}, got {actions}")
        self.position = np.clip(self.position + ACTION_DELTAS[actions], 0, self.size - 1)
        at_goal = (self.position == self.tasks.astype(np.int64)).all(axis=1)
        reward = np.where(at_goal, GOAL_REWARD, STEP_REWARD).astype(np.float32)
        terminated = np.zeros(self.num_envs, dtype=bool)
        return self.position.astype(np.float32), reward, terminated, {"success": at_goal}

    def state_index(self, obs: np.ndarray) -> np.ndarray:
        """Cell id ``x * size + y`` from observations (extra columns such as the done flag are ignored)."""
        xy = np.rint(np.asarray(obs)[..., :2]).astype(np.int64)
        return xy[..., 0] * self.size + xy[..., 1]
