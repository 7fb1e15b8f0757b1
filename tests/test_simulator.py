"""envs/simulator.py: copies stepped in worker processes behave exactly like copies stepped in this process."""

from __future__ import annotations

import os
import signal
import time

import gymnasium as gym
import numpy as np
import pytest

from envs.base import MetaVecEnv
from envs.simulator import SimulatorBatchedEnv, WorkerError


class NoisyPointCopy:
    """A tiny simulator: a point pushed by the action plus seeded noise; reward -distance to the task goal."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)

    def __init__(self, seed: int, fail: bool = False) -> None:
        if fail:
            raise ValueError("this copy cannot be built")
        self.rng = np.random.default_rng(seed)
        self.goal = np.zeros(2)
        self.pos = np.zeros(2)

    def set_task(self, task: np.ndarray) -> None:
        self.goal = np.asarray(task, dtype=np.float64)

    def reset(self) -> np.ndarray:
        self.pos = self.rng.normal(0.0, 0.1, size=2)
        return self.pos.astype(np.float32)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        self.pos = self.pos + 0.1 * np.clip(action, -1, 1) + self.rng.normal(0.0, 0.01, size=2)
        dist = float(np.linalg.norm(self.pos - self.goal))
        return self.pos.astype(np.float32), -dist, bool(dist > 5.0), bool(dist < 0.1)

    def get_state(self) -> dict:
        return {"pos": self.pos.copy(), "rng": self.rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self.pos = state["pos"].copy()
        self.rng.bit_generator.state = state["rng"]

    def close(self) -> None:
        pass


def failing_copy(seed: int) -> NoisyPointCopy:
    return NoisyPointCopy(seed, fail=True)


class ToySimEnv(SimulatorBatchedEnv):
    task_dim = 2

    def __init__(self, num_envs: int, rng: np.random.Generator, num_workers: int = 2) -> None:
        super().__init__(num_envs, rng, NoisyPointCopy, num_workers)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, size=(n, 2)).astype(np.float32)


def _rollout(num_workers: int, steps: int = 45, seed: int = 0) -> list[tuple[np.ndarray, ...]]:
    inner = ToySimEnv(5, np.random.default_rng(seed), num_workers=num_workers)
    env = MetaVecEnv(inner, horizon=10, episodes_per_task=2, rng=np.random.default_rng(seed + 1))
    obs, _ = env.reset()
    rng = np.random.default_rng(7)
    out = [(obs,)]
    for _ in range(steps):
        obs, reward, _, _, info = env.step(rng.uniform(-1, 1, size=(5, 2)))
        out.append((obs, reward, info["task"], info["success"], info["episode_done"]))
    env.close()
    return out


@pytest.mark.parametrize("num_workers", [1, 2, 3])
def test_worker_processes_step_exactly_like_the_local_copies(num_workers):
    local, workers = _rollout(0), _rollout(num_workers)
    for a, b in zip(local, workers, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


def test_state_round_trip_through_workers_continues_the_same_stream():
    inner = ToySimEnv(4, np.random.default_rng(0), num_workers=2)
    env = MetaVecEnv(inner, horizon=10, episodes_per_task=2, rng=np.random.default_rng(1))
    env.reset()
    actions = np.random.default_rng(2).uniform(-1, 1, size=(60, 4, 2))
    for a in actions[:13]:
        env.step(a)
    state = env.get_state()
    first = [env.step(a)[:2] for a in actions[13:]]
    env.set_state(state)
    second = [env.step(a)[:2] for a in actions[13:]]
    env.close()
    for (o1, r1), (o2, r2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)


def test_a_copy_that_fails_to_build_reports_the_workers_traceback():
    with pytest.raises(WorkerError, match="this copy cannot be built"):
        SimulatorBatchedEnv.__init__(ToySimEnv.__new__(ToySimEnv), 2, np.random.default_rng(0), failing_copy, 1)


def _first_observations_in_this_process(seed: int) -> np.ndarray:
    return _rollout(2, steps=3, seed=seed)[-1][0]


def test_workers_start_inside_a_joblib_worker():
    """Hydra's joblib launcher (``make sweep``) runs each job in a loky worker, whose global start method is
    'loky': the simulator's forkserver workers must still start there, and step as they do anywhere else."""
    from joblib import Parallel, delayed

    got = Parallel(n_jobs=2, backend="loky")(delayed(_first_observations_in_this_process)(s) for s in (0, 1))
    for seed, obs in zip((0, 1), got, strict=True):
        np.testing.assert_array_equal(obs, _rollout(2, steps=3, seed=seed)[-1][0])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGUSR2])
def test_workers_outlive_a_stop_signal_so_the_run_can_checkpoint(signum):
    """Ctrl-C or a pre-emption notice reaches the workers too; the main process then checkpoints the copies'
    state, so the workers must still answer. They leave when the main process closes their pipe."""
    inner = ToySimEnv(4, np.random.default_rng(0), num_workers=2)
    env = MetaVecEnv(inner, horizon=10, episodes_per_task=2, rng=np.random.default_rng(1))
    env.reset()
    for proc in inner._procs:
        os.kill(proc.pid, signum)
    time.sleep(0.5)
    assert all(proc.is_alive() for proc in inner._procs)
    state = env.get_state()
    env.step(np.zeros((4, 2)))
    assert len(state["inner"]) == 4
    env.close()
    for proc in inner._procs:
        proc.join(timeout=5)
    assert not any(proc.is_alive() for proc in inner._procs)
