"""The one trainer shared by every agent: frame budget, evaluation schedule, logging, checkpoints, results."""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from algorithms.common.agent import Agent, IterationInterrupted
from algorithms.common.checkpoints import CheckpointError, load_checkpoint, previous_path, save_checkpoint
from algorithms.common.evaluator import EvaluationInterrupted, meta_test
from algorithms.common.results import RunDirectory, _now
from algorithms.common.stopping import STOP_SIGNALS
from algorithms.common.tracking import NullTracker, Tracker
from envs.base import MetaVecEnv
from records import run_folder


@dataclass
class TrainerConfig:
    num_frames: int
    eval_interval_frames: int
    log_interval_iterations: int
    checkpoint_interval_frames: int
    eval_episodes: int
    eval_deterministic: bool = True
    progress: bool = True
    #: without the progress bar (sweeps, Slurm logs): one progress line at most this often
    log_interval_seconds: float = 60.0
    #: after the last meta-test, one more with this many episodes per task, written to ``final_eval.csv`` (a
    #: figure that shows more episodes than the meta-tests during training, e.g. the VariBAD paper's fig. 4a with
    #: 30); ``None``: none
    final_eval_episodes: int | None = None

    @classmethod
    def from_run_config(cls, cfg: Any, eval_episodes: int) -> TrainerConfig:
        """From a composed run config (``conf/config.yaml``'s ``train`` and ``eval`` sections)."""
        return cls(num_frames=int(cfg.train.num_frames), eval_interval_frames=int(cfg.train.eval_interval_frames),
                   log_interval_iterations=int(cfg.train.log_interval_iterations),
                   checkpoint_interval_frames=int(cfg.train.checkpoint_interval_frames),
                   eval_episodes=eval_episodes, eval_deterministic=bool(cfg.eval.deterministic),
                   progress=bool(cfg.progress), log_interval_seconds=float(cfg.train.log_interval_seconds),
                   final_eval_episodes=cfg.eval.get("final_episodes"))


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _eval_summary(frames: int, returns: pd.Series) -> str:
    """``"@1,000,000: 3.90 9.55 ..."``: a meta-test's mean return of its first six episodes."""
    return f"@{frames:,}: " + " ".join(f"{v:.2f}" for v in returns.iloc[:6]) + (" ..." if len(returns) > 6 else "")


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or inf; the message names the loss and the iteration."""


class Preempted(Exception):  # noqa: N818 - a stop, not an error: the run is checkpointed and resumable
    """The run was asked to stop (SIGTERM, SIGINT or Slurm/submitit's pre-emption signal) and checkpointed."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}; checkpointed, resume by running again")
        self.signum = signum




class Trainer:
    """Runs ``agent.train_iteration`` until the frame budget, evaluating, logging and checkpointing on the way.

    Resume: :meth:`restore` loads a ``latest.pt`` written by :meth:`checkpoint` (agent with buffers and the
    rollout in flight, env state, RNG states, progress and the row counts of the results files). On CPU a
    resumed run then produces the same numbers as an uninterrupted one, bit for bit.
    """

    def __init__(self, agent: Agent, env: MetaVecEnv, env_name: str, eval_tasks: np.ndarray,
                 run: RunDirectory, cfg: TrainerConfig, seed: int, env_options: dict | None = None,
                 tracker: Tracker | None = None, stop_check: Callable[[], int | None] | None = None) -> None:
        """``stop_check`` is asked every iteration (and every meta-test step) whether the run should stop, for stops
        that do not arrive as a signal to this process (a sweep's launcher was told to stop): a signal number or
        ``None``."""
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
        self._stop_check = stop_check
        self._eval_rate: float | None = None  # env steps per second of the last meta-test
        self.last_eval_summary: str | None = None

    def request_stop(self, signum: int) -> None:
        """Stop at the next safe point (the end of the iteration, a point inside it where the agent can carry it on
        after a resume, or abandon a meta-test), checkpointing first; what a stop signal does (:data:`STOP_SIGNALS`)."""
        self._stop_signal = signum

    def evaluate(self, episodes: int | None = None, file: str = run_folder.EVAL) -> pd.DataFrame:
        """One meta-test of ``episodes`` per task (default: ``eval_episodes``), appended to ``file``. A stop signal
        abandons it part way (:class:`EvaluationInterrupted`) with the random streams it drew from put back, so that
        the resumed run redoes it exactly."""
        cfg = self.cfg
        episodes = episodes or cfg.eval_episodes
        if not cfg.progress:
            steps = len(self.eval_tasks) * episodes * int(self.env.horizon)
            estimate = (f", ~{_duration(steps / self._eval_rate)} at the last one's speed" if self._eval_rate
                        else "; time estimate after its first episode")
            self._log(f"meta-test at frame {self.frames:,}: {len(self.eval_tasks)} tasks x {episodes} "
                      f"episodes x {self.env.horizon} steps ({steps:,} env steps){estimate}")
        rngs = (torch.get_rng_state(), np.random.get_state(), self.agent.evaluation_rng_state())
        started = time.perf_counter()
        try:
            rows = meta_test(self.agent, self.env_name, self.eval_tasks, episodes, cfg.eval_deterministic,
                             seed=self.seed + 10_000, should_stop=self._stopping,
                             on_episode=None if cfg.progress else self._eval_progress, **self.env_options)
        except EvaluationInterrupted:
            torch.set_rng_state(rngs[0])
            np.random.set_state(rngs[1])
            self.agent.set_evaluation_rng_state(rngs[2])
            raise
        seconds = time.perf_counter() - started
        self._eval_rate = len(self.eval_tasks) * episodes * int(self.env.horizon) / max(seconds, 1e-9)
        self.run.append_eval(self.frames, rows, self.eval_tasks, file)
        per_episode = rows.groupby("episode")[["return", "success"]].mean()
        self.last_eval_summary = _eval_summary(self.frames, per_episode["return"])
        self.tracker.log({**{f"eval/return_ep{k}": float(v) for k, v in per_episode["return"].items()},
                          **{f"eval/success_ep{k}": float(v) for k, v in per_episode["success"].items()}},
                         step=self.frames)
        if not cfg.progress:
            self._log(f"meta-test at frame {self.frames:,} done in {_duration(seconds)}: mean return per episode "
                      f"{self.last_eval_summary}")
        return rows

    def _eval_progress(self, done: int, total: int, seconds: float) -> None:
        if done == 0 and seconds >= 1.0:
            self._log(f"meta-test: its {len(self.eval_tasks)} envs started in {_duration(seconds)}")
        if done == 1 and total > 1:
            self._log(f"meta-test: episode 1 of {total} took {_duration(seconds)}, "
                      f"~{_duration(seconds * (total - 1))} left")

    def _log(self, message: str) -> None:
        print(f"[{self.run.run_id}] {message}", flush=True)

    def _progress_line(self, start: float, fps: float) -> None:
        cfg = self.cfg
        left = max(cfg.num_frames - self.frames, 0) / fps if fps > 0 else float("nan")
        done = min(100 * self.frames / max(cfg.num_frames, 1), 100.0)
        self._log(f"frames {self.frames:,}/{cfg.num_frames:,} ({done:.1f}%), "
                  f"{fps:,.0f} frames/s, ETA {_duration(left)}, wall {_duration(time.perf_counter() - start)}, "
                  f"last meta-test {self.last_eval_summary or '-'}")

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
        # the progress lines show the last meta-test from the first one after a resume, not "-" until the next
        evals = self.run.path / run_folder.EVAL
        if evals.is_file() and self.last_eval_frames >= 0:
            rows = pd.read_csv(evals, usecols=["frames", "episode", "return"])
            last = rows[rows["frames"] == self.last_eval_frames]
            if not last.empty:
                self.last_eval_summary = _eval_summary(self.last_eval_frames, last.groupby("episode")["return"].mean())

    def _stopping(self) -> bool:
        if self._stop_signal is None and self._stop_check is not None:
            self._stop_signal = self._stop_check()
        return self._stop_signal is not None

    def _checkpoint_and_stop(self, start: float) -> NoReturn:
        """Act on a pending stop: checkpoint (``start``: the wall clock origin of :meth:`train`), then raise
        :class:`Preempted` (without the interruption that led here as its context: a stop, not an error)."""
        self.checkpoint(elapsed=time.perf_counter() - start)
        assert self._stop_signal is not None
        raise Preempted(self._stop_signal) from None

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        # acted on at the end of the current iteration (or, for agents that ask should_stop, part way through it)
        self.request_stop(signum)

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
        last_line, window_frames, window_start = time.perf_counter(), self.frames, time.perf_counter()
        try:
            while True:
                if self._stopping():  # a stop came during the last iteration (or before any)
                    self._checkpoint_and_stop(start)
                done = self.frames >= cfg.num_frames
                if self.frames >= self.next_eval or (done and self.last_eval_frames != self.frames):
                    try:
                        last_eval = self.evaluate()
                    except EvaluationInterrupted:
                        self._checkpoint_and_stop(start)
                    self.last_eval_frames = self.frames
                    per_ep = last_eval.groupby("episode")["return"].mean()
                    bar.set_postfix_str("eval " + " ".join(f"{v:.2f}" for v in per_ep.to_numpy()[:6]))
                    while self.next_eval <= self.frames:
                        self.next_eval += cfg.eval_interval_frames
                    window_frames, window_start = self.frames, time.perf_counter()  # fps of training only
                if done:
                    if cfg.final_eval_episodes and not (self.run.path / run_folder.FINAL_EVAL).exists():
                        try:
                            self.evaluate(cfg.final_eval_episodes, run_folder.FINAL_EVAL)
                        except EvaluationInterrupted:
                            self._checkpoint_and_stop(start)
                    break
                it_start = time.perf_counter()
                try:
                    stats = self.agent.train_iteration(self.env, self._stopping)
                except IterationInterrupted:  # the agent kept its place: frames and iteration count stay as they are
                    self._checkpoint_and_stop(start)
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
                now = time.perf_counter()
                if not cfg.progress and now - last_line >= cfg.log_interval_seconds:
                    self._progress_line(start, (self.frames - window_frames) / max(now - window_start, 1e-9))
                    last_line = now
        except Preempted as stop:
            self.run.write_metadata(status=run_folder.PREEMPTED, end_time=_now(), frames=self.frames,
                                    stop_signal=signal.Signals(stop.signum).name)
            raise
        except BaseException as exc:
            self.run.write_metadata(status=run_folder.FAILED, end_time=_now(), frames=self.frames,
                                    error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            bar.close()
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
        self.checkpoint("final")
        self.run.write_metadata(status=run_folder.COMPLETED, end_time=_now(), frames=self.frames,
                                wall_time_s=round(time.perf_counter() - start, 1))
        assert last_eval is not None
        return last_eval
