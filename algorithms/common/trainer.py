"""The one trainer shared by every agent: frame budget, evaluation schedule, logging, checkpoints, results."""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from algorithms.common.agent import Agent
from algorithms.common.checkpoints import CheckpointError, load_checkpoint, previous_path, save_checkpoint
from algorithms.common.evaluator import meta_test
from algorithms.common.results import RunDirectory, _now
from algorithms.common.tracking import NullTracker, Tracker
from envs.base import MetaVecEnv


@dataclass
class TrainerConfig:
    num_frames: int
    eval_interval_frames: int
    log_interval_iterations: int
    checkpoint_interval_frames: int
    eval_episodes: int
    eval_deterministic: bool = True
    progress: bool = True


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or inf; the message names the loss and the iteration."""


class Preempted(Exception):  # noqa: N818 - a stop, not an error: the run is checkpointed and resumable
    """The run was asked to stop (SIGTERM, SIGINT or Slurm/submitit's pre-emption signal) and checkpointed."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}; checkpointed, resume by running again")
        self.signum = signum


#: signals that make a run checkpoint and stop: Slurm's SIGTERM before a kill, Ctrl-C, and SIGUSR2, which
#: submitit asks Slurm to send ahead of a time limit or pre-emption (its handler then requeues the job)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)


class Trainer:
    """Runs ``agent.train_iteration`` until the frame budget, evaluating, logging and checkpointing on the way.

    Resume: :meth:`restore` loads a ``latest.pt`` written by :meth:`checkpoint` (agent with buffers and the
    rollout in flight, env state, RNG states, progress and the row counts of the results files). On CPU a
    resumed run then produces the same numbers as an uninterrupted one, bit for bit.
    """

    def __init__(self, agent: Agent, env: MetaVecEnv, env_name: str, eval_tasks: np.ndarray,
                 run: RunDirectory, cfg: TrainerConfig, seed: int, env_options: dict | None = None,
                 tracker: Tracker | None = None) -> None:
        self.agent, self.env, self.env_name = agent, env, env_name
        self.env_options = env_options or {}
        self.eval_tasks, self.run, self.cfg, self.seed = eval_tasks, run, cfg, seed
        self.tracker: Tracker = tracker or NullTracker()
        self.frames = 0
        self.iteration = 0
        self.next_eval = 0
        self.next_checkpoint = cfg.checkpoint_interval_frames
        self.last_eval_frames = -1
        self.elapsed_before = 0.0  # wall seconds spent before the last resume
        self._stop_signal: int | None = None

    def evaluate(self) -> pd.DataFrame:
        rows = meta_test(self.agent, self.env_name, self.eval_tasks, self.cfg.eval_episodes,
                         self.cfg.eval_deterministic, seed=self.seed + 10_000, **self.env_options)
        self.run.append_eval(self.frames, rows, self.eval_tasks)
        per_episode = rows.groupby("episode")[["return", "success"]].mean()
        self.tracker.log({**{f"eval/return_ep{k}": float(v) for k, v in per_episode["return"].items()},
                          **{f"eval/success_ep{k}": float(v) for k, v in per_episode["success"].items()}},
                         step=self.frames)
        return rows

    def checkpoint(self, name: str = "latest", elapsed: float = 0.0) -> None:
        """``latest``: everything :meth:`restore` needs; ``final``: the model for evaluation and analysis."""
        resume = name != "final"
        state: dict[str, Any] = {"agent": self.agent.state_dict(resume=resume), "frames": self.frames,
                                 "iteration": self.iteration}
        if resume:
            state.update(env=self.env.get_state(), next_eval=self.next_eval, next_checkpoint=self.next_checkpoint,
                         last_eval_frames=self.last_eval_frames, elapsed=elapsed, rows=self.run.row_counts(),
                         numpy_global_rng=np.random.get_state(), torch_rng=torch.get_rng_state())
        # atomic; latest.pt keeps its predecessor, the fallback if a file is damaged after it was written
        save_checkpoint(state, self.run.checkpoints / f"{name}.pt", keep_previous=resume)

    def restore(self, path: Path) -> str | None:
        """Continue from a ``latest.pt``, or from the checkpoint before it where that one does not load (a node
        that died mid-copy, a full disk): rows written after the checkpoint are dropped from the results files
        first. Returns a note when it fell back; :class:`CheckpointError` when no checkpoint loads."""
        errors = []
        for candidate in (Path(path), previous_path(path)):
            try:
                state = load_checkpoint(candidate)
            except CheckpointError as exc:
                errors.append(str(exc))
                continue
            self._apply(state)
            if not errors:
                return None
            lost = int(self.run.metadata.get("frames") or 0) - self.frames
            return (f"{errors[0]}; resumed from the previous checkpoint {candidate} at frame {self.frames} "
                    f"({max(lost, 0)} frames of training are redone)")
        raise CheckpointError("no checkpoint of this run loads: " + "; ".join(errors))

    def _apply(self, state: dict[str, Any]) -> None:
        self.run.truncate_rows(state["rows"])
        self.agent.load_state_dict(state["agent"])
        self.env.set_state(state["env"])
        self.frames, self.iteration = state["frames"], state["iteration"]
        self.next_eval, self.next_checkpoint = state["next_eval"], state["next_checkpoint"]
        self.last_eval_frames, self.elapsed_before = state["last_eval_frames"], state["elapsed"]
        np.random.set_state(state["numpy_global_rng"])
        torch.set_rng_state(state["torch_rng"])

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        self._stop_signal = signum  # acted on at the end of the current iteration, with a consistent state

    def train(self) -> pd.DataFrame:
        cfg = self.cfg
        start = time.perf_counter() - self.elapsed_before
        interactive = sys.stderr.isatty()
        bar = tqdm(total=cfg.num_frames, initial=self.frames, unit="frame", unit_scale=True,
                   disable=not cfg.progress, desc=f"{self.agent.name}/{self.env_name}", dynamic_ncols=True,
                   mininterval=0.5 if interactive else 30.0)  # logs (CI, Slurm) get a line every 30 s
        previous_handlers = {}
        if threading.current_thread() is threading.main_thread():  # signals can only be caught there
            previous_handlers = {s: signal.signal(s, self._on_stop_signal) for s in STOP_SIGNALS}
        last_eval: pd.DataFrame | None = None
        try:
            while True:
                done = self.frames >= cfg.num_frames
                if self.frames >= self.next_eval or (done and self.last_eval_frames != self.frames):
                    last_eval = self.evaluate()
                    self.last_eval_frames = self.frames
                    per_ep = last_eval.groupby("episode")["return"].mean()
                    bar.set_postfix_str("eval " + " ".join(f"{v:.2f}" for v in per_ep.to_numpy()[:6]))
                    while self.next_eval <= self.frames:
                        self.next_eval += cfg.eval_interval_frames
                if done:
                    break
                it_start = time.perf_counter()
                stats = self.agent.train_iteration(self.env)
                self.frames += stats.frames
                self.iteration += 1
                bar.update(stats.frames)
                for key, value in stats.metrics.items():
                    if not math.isfinite(value):
                        raise NonFiniteLossError(f"{key} is {value} at iteration {self.iteration} "
                                                 f"(frame {self.frames}); last good checkpoint kept")
                if self.iteration % cfg.log_interval_iterations == 0:
                    elapsed = time.perf_counter() - start
                    row = {"frames": self.frames, "iteration": self.iteration, "wall_time": round(elapsed, 3),
                           "fps": round(stats.frames / (time.perf_counter() - it_start), 1), **stats.metrics}
                    self.run.append_metrics(row)
                    self.tracker.log(row, step=self.frames)
                    self.run.write_metadata(frames=self.frames)
                if self.frames >= self.next_checkpoint:
                    while self.next_checkpoint <= self.frames:
                        self.next_checkpoint += cfg.checkpoint_interval_frames
                    self.checkpoint(elapsed=time.perf_counter() - start)
                if self._stop_signal is not None:
                    self.checkpoint(elapsed=time.perf_counter() - start)
                    raise Preempted(self._stop_signal)
        except Preempted as stop:
            self.run.write_metadata(status="preempted", end_time=_now(), frames=self.frames,
                                    stop_signal=signal.Signals(stop.signum).name)
            raise
        except BaseException as exc:
            self.run.write_metadata(status="failed", end_time=_now(), frames=self.frames,
                                    error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            bar.close()
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
        self.checkpoint("final")
        self.run.write_metadata(status="completed", end_time=_now(), frames=self.frames,
                                wall_time_s=round(time.perf_counter() - start, 1))
        assert last_eval is not None
        return last_eval
