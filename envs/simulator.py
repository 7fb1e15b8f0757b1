"""Batched stepping of simulator envs (MuJoCo, Meta-World) through worker processes.

A simulator env cannot step N copies in one array operation as GridWorld does, so each copy is a
:class:`SimCopy` (one simulator with a settable task) and :class:`SimulatorBatchedEnv` steps ``N`` copies split
over ``W`` worker processes, each stepping its share in a loop (``W = 0``: all in this process). It is a
:class:`~envs.base.BatchedTaskEnv`, so the multi-episode BAMDP logic of :class:`~envs.base.MetaVecEnv` is the
same as GridWorld's. Copies live in the workers; the main process keeps only the tasks and the RNG that draws
them, so the task stream does not depend on ``W``.

Why a few workers each stepping several copies: on a 2-core machine one process per copy (gymnasium's
``AsyncVectorEnv``) pays a pipe round trip and a context switch per copy per step, while 2 workers with N/2
copies each pay one round trip per worker per step and keep both cores busy (``make bench`` measures it).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from envs.base import BatchedTaskEnv


class SimCopy(Protocol):
    """One simulator copy. Lives in a worker process: everything it returns must be picklable."""

    observation_space: gym.spaces.Box
    action_space: gym.spaces.Box

    def set_task(self, task: np.ndarray) -> None:
        """Set the task (reward parameters and/or physics) for the following episodes."""

    def reset(self) -> np.ndarray:
        """Reset the physical state (same task); the first observation of an episode."""

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        """``(obs, reward, terminated, success)`` for one step."""

    def get_state(self) -> Any:
        """Everything that determines future steps given the task (simulator state, RNG), for exact resume."""

    def set_state(self, state: Any) -> None: ...

    def close(self) -> None: ...


#: ``factory(seed) -> SimCopy``; must be picklable (a module-level function or class, or a functools.partial)
CopyFactory = Callable[[int], SimCopy]


class _LocalCopies:
    """Copies stepped in this process; also the body of a worker process."""

    def __init__(self, factory: CopyFactory, seeds: Sequence[int]) -> None:
        self.copies = [factory(int(s)) for s in seeds]

    def set_tasks(self, local_idx: np.ndarray, tasks: np.ndarray) -> None:
        for i, task in zip(local_idx, tasks, strict=True):
            self.copies[i].set_task(task)

    def reset(self, local_idx: np.ndarray) -> np.ndarray:
        return np.stack([self.copies[i].reset() for i in local_idx])

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        results = [copy.step(a) for copy, a in zip(self.copies, actions, strict=True)]
        obs, reward, terminated, success = zip(*results, strict=True)
        return (np.stack(obs), np.asarray(reward, dtype=np.float64), np.asarray(terminated, dtype=bool),
                np.asarray(success, dtype=bool))

    def get_state(self) -> list[Any]:
        return [copy.get_state() for copy in self.copies]

    def set_state(self, states: list[Any]) -> None:
        for copy, state in zip(self.copies, states, strict=True):
            copy.set_state(state)

    def spaces(self) -> tuple[gym.spaces.Box, gym.spaces.Box]:
        return self.copies[0].observation_space, self.copies[0].action_space

    def close(self) -> None:
        for copy in self.copies:
            copy.close()


#: what a scheduler or the terminal sends to stop a run (Slurm's --signal is USR2 here, submitit may use USR1)
WORKER_IGNORED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


def _worker_context() -> mp.context.BaseContext:
    """The forkserver context: no fork of a process that holds torch threads.

    A forkserver (or spawn) child re-applies its parent's *global* start method before it runs anything. Inside a
    joblib worker (Hydra's joblib launcher, ``make sweep``) that is ``"loky"``, which a plain child cannot resolve
    ("cannot find context for 'loky'"), so the global method is set to a standard one first.
    """
    if mp.get_start_method(allow_none=True) not in (None, *mp.get_all_start_methods()):
        mp.set_start_method("forkserver", force=True)
    return mp.get_context("forkserver")


def _worker(conn: Connection, factory: CopyFactory, seeds: Sequence[int]) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    # Stop signals reach the whole process group (Ctrl-C, a scheduler's pre-emption notice). The main process
    # handles them by checkpointing, which needs the copies' state from here: the worker leaves only on "close"
    # or when the main process is gone (its end of the pipe closes).
    for sig in WORKER_IGNORED_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    try:
        local = _LocalCopies(factory, seeds)
        conn.send(("ok", None))
    except Exception:  # report construction errors to the main process instead of dying silently
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        try:
            command, payload = conn.recv()
        except EOFError:
            break
        if command == "close":
            local.close()
            conn.send(("ok", None))
            break
        try:
            result = getattr(local, command)(*payload)
            conn.send(("ok", result))
        except Exception:
            conn.send(("error", traceback.format_exc()))
    conn.close()


class WorkerError(RuntimeError):
    """A simulator worker failed; the message carries its traceback."""


class SimulatorBatchedEnv(BatchedTaskEnv):
    """``num_envs`` simulator copies in ``num_workers`` processes (0: in this process).

    Subclasses set ``task_dim`` and implement :meth:`sample_tasks` (and ``train_tasks``/``held_out_tasks`` where the
    benchmark fixes them), and pass the copy factory. Copy ``i`` is seeded with a seed drawn from ``rng``.
    """

    def __init__(self, num_envs: int, rng: np.random.Generator, factory: CopyFactory,
                 num_workers: int = 2) -> None:
        super().__init__(num_envs, rng)
        seeds = rng.integers(2**31 - 1, size=num_envs)
        num_workers = max(0, min(int(num_workers), num_envs))
        self.num_workers = num_workers
        self._local: _LocalCopies | None = None
        self._conns: list[Connection] = []
        self._procs: list[mp.process.BaseProcess] = []
        self._stepping = False  # a step was sent to the workers and not yet received
        #: which copies each worker steps (contiguous blocks)
        self._blocks = np.array_split(np.arange(num_envs), max(num_workers, 1))
        if num_workers == 0:
            self._local = _LocalCopies(factory, seeds)
            obs_space, act_space = self._local.spaces()
        else:
            ctx = _worker_context()
            for block in self._blocks:
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker, args=(child, factory, seeds[block].tolist()), daemon=True)
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
            for conn in self._conns:
                self._receive(conn)
            obs_space, act_space = self._call_one(0, "spaces")
        self.single_observation_space = obs_space
        self.single_action_space = act_space

    # ------------------------------------------------------------------ worker plumbing
    @staticmethod
    def _receive(conn: Connection) -> Any:
        status, result = conn.recv()
        if status == "error":
            raise WorkerError(f"simulator worker failed:\n{result}")
        return result

    def _call_one(self, worker: int, command: str, *payload: Any) -> Any:
        self._conns[worker].send((command, payload))
        return self._receive(self._conns[worker])

    def _call_all(self, command: str, payloads: Sequence[tuple]) -> list[Any]:
        for conn, payload in zip(self._conns, payloads, strict=True):
            conn.send((command, payload))  # all workers work at once, then we collect
        return [self._receive(conn) for conn in self._conns]

    def _split(self, idx: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """``(worker, positions in idx, local indices)`` for the workers that own some of ``idx``."""
        out = []
        for w, block in enumerate(self._blocks):
            mask = (idx >= block[0]) & (idx <= block[-1])
            if mask.any():
                out.append((w, np.flatnonzero(mask), idx[mask] - block[0]))
        return out

    # ------------------------------------------------------------------ BatchedTaskEnv
    def set_tasks(self, tasks: np.ndarray, idx: np.ndarray | None = None) -> None:
        idx = np.arange(self.num_envs) if idx is None else np.asarray(idx)
        super().set_tasks(tasks, idx)
        tasks = np.asarray(self.tasks[idx])
        if self._local is not None:
            self._local.set_tasks(idx, tasks)
            return
        parts = self._split(idx)
        for w, pos, local in parts:
            self._conns[w].send(("set_tasks", (local, tasks[pos])))
        for w, _, _ in parts:
            self._receive(self._conns[w])

    def reset_state(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx)
        if self._local is not None:
            return self._local.reset(idx)
        out: np.ndarray | None = None
        parts = self._split(idx)
        for w, _, local in parts:
            self._conns[w].send(("reset", (local,)))
        for w, pos, _ in parts:
            obs = self._receive(self._conns[w])
            if out is None:
                out = np.empty((len(idx), obs.shape[1]), dtype=obs.dtype)
            out[pos] = obs
        assert out is not None
        return out

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        self.step_send(actions)
        return self.step_receive()

    def step_send(self, actions: np.ndarray) -> None:
        """Send every worker its copies' actions and return: the workers step while this process goes on."""
        actions = np.asarray(actions)
        if self._local is not None:
            self._sent = self._local.step(actions)
            return
        if self._stepping:
            raise RuntimeError("step_send() while the previous step has not been received")
        for conn, block in zip(self._conns, self._blocks, strict=True):
            conn.send(("step", (actions[block],)))
        self._stepping = True

    def step_receive(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        if self._local is not None:
            result, self._sent = self._sent, None
            if result is None:
                raise RuntimeError("step_receive() without a step_send() before it")
            obs, reward, terminated, success = result
        else:
            if not self._stepping:
                raise RuntimeError("step_receive() without a step_send() before it")
            self._stepping = False
            results = [self._receive(conn) for conn in self._conns]
            obs, reward, terminated, success = (np.concatenate(parts) for parts in zip(*results, strict=True))
        return obs.astype(np.float32), reward, terminated, {"success": success}

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        copies = (self._local.get_state() if self._local is not None
                  else [s for part in self._call_all("get_state", [()] * len(self._conns)) for s in part])
        state["copies"] = copies
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.set_tasks(self.tasks.copy())  # re-apply task-dependent physics in the copies
        copies = state["copies"]
        if self._local is not None:
            self._local.set_state(copies)
        else:
            self._call_all("set_state", [([copies[i] for i in block],) for block in self._blocks])

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
            self._local = None
        for conn, proc in zip(self._conns, self._procs, strict=True):
            try:
                conn.send(("close", ()))
                conn.recv()
            except (BrokenPipeError, EOFError, OSError):
                pass
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        self._conns, self._procs = [], []

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing left to release
            self.close()
