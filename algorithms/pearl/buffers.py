"""Per-task transition buffers (PEARL Algorithm 1: one replay buffer B^i per training task).

Each task's transitions are rows of one float32 matrix whose columns are the fields of :class:`TransitionLayout`, so a
batch of T tasks x n transitions is gathered into one ``(T, n, width)`` array and moved to the device once. Storage
grows geometrically up to the capacity, then overwrites the oldest rows (a ring, as rlkit's ``SimpleReplayBuffer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TransitionLayout:
    """Column slices of a transition row: s, a, critic reward, context reward, s', terminal."""

    obs_dim: int
    action_dim: int

    @property
    def obs(self) -> slice:
        return slice(0, self.obs_dim)

    @property
    def action(self) -> slice:
        return slice(self.obs_dim, self.obs_dim + self.action_dim)

    @property
    def reward(self) -> slice:
        """The reward the critic learns from (dense on sparse PointRobot)."""
        start = self.obs_dim + self.action_dim
        return slice(start, start + 1)

    @property
    def context_reward(self) -> slice:
        """The env's reward, as the agent sees it at meta-test (sparse on sparse PointRobot)."""
        start = self.obs_dim + self.action_dim + 1
        return slice(start, start + 1)

    @property
    def next_obs(self) -> slice:
        start = self.obs_dim + self.action_dim + 2
        return slice(start, start + self.obs_dim)

    @property
    def terminal(self) -> slice:
        start = 2 * self.obs_dim + self.action_dim + 2
        return slice(start, start + 1)

    @property
    def width(self) -> int:
        return 2 * self.obs_dim + self.action_dim + 3

    def rows(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, context_reward: np.ndarray,
             next_obs: np.ndarray, terminal: np.ndarray) -> np.ndarray:
        return np.concatenate([obs, action, np.reshape(reward, (-1, 1)), np.reshape(context_reward, (-1, 1)),
                               next_obs, np.reshape(terminal, (-1, 1))], axis=1).astype(np.float32)


class TaskBuffer:
    """The transitions of one task: a ring of at most ``capacity`` rows."""

    def __init__(self, capacity: int, width: int, initial: int = 1024) -> None:
        self.capacity, self.width = int(capacity), int(width)
        self.data = np.zeros((min(initial, self.capacity), self.width), np.float32)
        self.size = 0
        self.top = 0  # next row to write once the ring is full

    def __len__(self) -> int:
        return self.size

    def clear(self) -> None:
        self.size = self.top = 0

    def _grow(self, needed: int) -> None:
        if needed <= len(self.data) or len(self.data) >= self.capacity:
            return
        new = min(self.capacity, max(needed, 2 * len(self.data)))
        data = np.zeros((new, self.width), np.float32)
        data[:self.size] = self.data[:self.size]
        self.data = data
        # below the capacity the rows are in order from row 0 (the ring never wrapped), but a fill that ended
        # exactly at the end of the old array left ``top`` at 0: the next rows go after the stored ones
        self.top = self.size

    def add(self, rows: np.ndarray) -> None:
        rows = rows[-self.capacity:]
        self._grow(self.size + len(rows))
        idx = (self.top + np.arange(len(rows))) % len(self.data)
        self.data[idx] = rows
        self.top = (self.top + len(rows)) % len(self.data)
        self.size = min(self.size + len(rows), len(self.data))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` rows uniformly with replacement (rlkit's ``random_batch``)."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty task buffer")
        return self.data[rng.integers(self.size, size=n)]

    def contents(self) -> np.ndarray:
        """All stored rows (oldest first)."""
        if self.size < len(self.data):
            return self.data[:self.size].copy()
        return np.concatenate([self.data[self.top:], self.data[:self.top]])

    def state_dict(self) -> dict[str, Any]:
        """The stored rows as they lie in the ring (``sample`` draws row indices, so a resumed buffer must keep the
        layout, not only the contents) and the write position."""
        return {"stored": self.data[:self.size].copy(), "top": self.top}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "stored" not in state:  # checkpoints before the layout was kept: the rows oldest first
            self.data = np.zeros((min(max(1024, len(state["rows"])), self.capacity), self.width), np.float32)
            self.size = self.top = 0
            self.add(state["rows"])
            return
        stored = state["stored"]
        self.size = len(stored)
        self.data = np.zeros((min(max(1024, self.size), self.capacity), self.width), np.float32)
        self.data[:self.size] = stored
        self.top = int(state["top"]) if self.size == self.capacity else self.size


class MultiTaskBuffer:
    """One :class:`TaskBuffer` per training task."""

    def __init__(self, num_tasks: int, capacity: int, width: int) -> None:
        self.tasks = [TaskBuffer(capacity, width) for _ in range(num_tasks)]

    def __getitem__(self, task: int) -> TaskBuffer:
        return self.tasks[task]

    def sizes(self) -> np.ndarray:
        return np.array([len(b) for b in self.tasks])

    def sample(self, task_ids: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(len(task_ids), n, width)``: n rows of each listed task."""
        return np.stack([self.tasks[int(t)].sample(n, rng) for t in task_ids])

    def state_dict(self) -> list[dict[str, Any]]:
        return [b.state_dict() for b in self.tasks]

    def load_state_dict(self, state: list[dict[str, Any]]) -> None:
        for buffer, s in zip(self.tasks, state, strict=True):
            buffer.load_state_dict(s)
