"""Sparse 2D navigation ("PointRobot", PEARL paper sec. 6.3 / fig. 4; VariBAD paper sec. 5.1), batched in numpy.

design.md §2: start (0, 0); the action is clipped to [-1, 1]^2 and the point moves by ``0.1 * a`` (the plane
is unbounded); with ``d`` the distance to the goal, the sparse reward is ``1 - d`` inside the goal radius 0.2
and 0 outside (the dense reward ``-d`` is reported in ``info["dense_reward"]``); success means ``d <= 0.2``.
Goals lie on the upper unit semicircle. Two task sets:

* ``semicircle`` (VariBAD): a fresh goal at angle ``U(0, pi)`` for every task; meta-test on a fixed seeded sample;
* ``pearl``: PEARL's 100 goals at angles ``linspace(0, pi, 100)``, shuffled as oyster does (``np.random.seed(1337)``
  then ``np.random.shuffle``, ``rlkit/envs/point_robot.py``), the first 80 of the shuffled list for training and the
  last 20 for test: test goals lie between training goals, not in one arc of the semicircle.
"""

from __future__ import annotations

from typing import Literal

import gymnasium as gym
import numpy as np

from envs.base import BatchedTaskEnv

STEP_SIZE = 0.1
GOAL_RADIUS = 0.2
PEARL_NUM_GOALS, PEARL_NUM_TRAIN = 100, 80
#: oyster seeds numpy's global generator with this before shuffling its goals
PEARL_SHUFFLE_SEED = 1337


def semicircle_goals(angles: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(angles), np.sin(angles)], axis=-1).astype(np.float32)


def pearl_goals() -> np.ndarray:
    """Oyster's 100 sparse-PointRobot goals in its order: ``linspace(0, pi, 100)`` on the unit circle, shuffled by a
    generator seeded 1337 (a ``RandomState``, as numpy's global generator is; the global state is left alone)."""
    goals = semicircle_goals(np.linspace(0.0, np.pi, PEARL_NUM_GOALS))
    np.random.RandomState(PEARL_SHUFFLE_SEED).shuffle(goals)
    return goals


class PointRobotSparse(BatchedTaskEnv):
    """N point robots; the task is the goal position ``(x, y)``."""

    task_dim = 2
    state_attributes = ("position",)

    def __init__(self, num_envs: int, rng: np.random.Generator,
                 task_set: Literal["semicircle", "pearl"] = "semicircle", goal_radius: float = GOAL_RADIUS) -> None:
        if task_set not in ("semicircle", "pearl"):
            raise ValueError(f"task_set must be 'semicircle' or 'pearl', got {task_set!r}")
        self.task_set, self.goal_radius = task_set, goal_radius
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        super().__init__(num_envs, rng)
        self.position = np.zeros((num_envs, 2), dtype=np.float64)
        self._pearl_goals = pearl_goals()

    def sample_tasks(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.task_set == "pearl":
            return self._pearl_goals[:PEARL_NUM_TRAIN][rng.integers(PEARL_NUM_TRAIN, size=n)].copy()
        return semicircle_goals(rng.uniform(0.0, np.pi, size=n))

    def train_tasks(self) -> np.ndarray | None:
        return self._pearl_goals[:PEARL_NUM_TRAIN].copy() if self.task_set == "pearl" else None

    def held_out_tasks(self) -> np.ndarray | None:
        return self._pearl_goals[PEARL_NUM_TRAIN:].copy() if self.task_set == "pearl" else None

    def reset_state(self, idx: np.ndarray) -> np.ndarray:
        self.position[idx] = 0.0
        return self.position[idx].astype(np.float32)

    def step(self, actions: np.ndarray):
        actions = np.clip(np.asarray(actions, dtype=np.float64).reshape(self.num_envs, 2), -1.0, 1.0)
        self.position = self.position + STEP_SIZE * actions
        distance = np.linalg.norm(self.position - self.tasks, axis=1)
        inside = distance <= self.goal_radius
        reward = np.where(inside, 1.0 - distance, 0.0).astype(np.float32)
        terminated = np.zeros(self.num_envs, dtype=bool)
        info = {"success": inside, "dense_reward": (-distance).astype(np.float32)}
        return self.position.astype(np.float32), reward, terminated, info
