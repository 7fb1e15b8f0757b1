"""The one trainer shared by every agent: frame budget, evaluation schedule, logging, checkpoints, results."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from algorithms.common.agent import Agent
from algorithms.common.evaluator import meta_test
from algorithms.common.results import RunDirectory, _now
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


class Trainer:
    def __init__(self, agent: Agent, env: MetaVecEnv, env_name: str, eval_tasks: np.ndarray,
                 run: RunDirectory, cfg: TrainerConfig, seed: int, env_options: dict | None = None) -> None:
        self.agent, self.env, self.env_name = agent, env, env_name
        self.env_options = env_options or {}
        self.eval_tasks, self.run, self.cfg, self.seed = eval_tasks, run, cfg, seed
        self.frames = 0
        self.iteration = 0

    def evaluate(self) -> pd.DataFrame:
        rows = meta_test(self.agent, self.env_name, self.eval_tasks, self.cfg.eval_episodes,
                         self.cfg.eval_deterministic, seed=self.seed + 10_000, **self.env_options)
        self.run.append_eval(self.frames, rows, self.eval_tasks)
        return rows

    def checkpoint(self, name: str = "latest") -> None:
        state: dict[str, Any] = {"agent": self.agent.state_dict(), "frames": self.frames,
                                 "iteration": self.iteration}
        tmp = self.run.checkpoints / f"{name}.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.run.checkpoints / f"{name}.pt")

    def train(self) -> pd.DataFrame:
        cfg = self.cfg
        start = time.perf_counter()
        next_eval, next_ckpt = 0, cfg.checkpoint_interval_frames
        interactive = sys.stderr.isatty()
        bar = tqdm(total=cfg.num_frames, unit="frame", unit_scale=True, disable=not cfg.progress,
                   desc=f"{self.agent.name}/{self.env_name}", dynamic_ncols=True,
                   mininterval=0.5 if interactive else 30.0)  # logs (CI, Slurm) get a line every 30 s
        last_eval: pd.DataFrame | None = None
        last_eval_frames = -1
        try:
            while True:
                done = self.frames >= cfg.num_frames
                if self.frames >= next_eval or (done and last_eval_frames != self.frames):
                    last_eval = self.evaluate()
                    last_eval_frames = self.frames
                    per_ep = last_eval.groupby("episode")["return"].mean()
                    bar.set_postfix_str("eval " + " ".join(f"{v:.2f}" for v in per_ep.to_numpy()[:6]))
                    while next_eval <= self.frames:
                        next_eval += cfg.eval_interval_frames
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
                    self.run.append_metrics({"frames": self.frames, "iteration": self.iteration,
                                             "wall_time": round(elapsed, 3),
                                             "fps": round(stats.frames / (time.perf_counter() - it_start), 1),
                                             **stats.metrics})
                    self.run.write_metadata(frames=self.frames)
                if self.frames >= next_ckpt:
                    self.checkpoint()
                    next_ckpt += cfg.checkpoint_interval_frames
        except BaseException as exc:
            self.run.write_metadata(status="failed", end_time=_now(), frames=self.frames,
                                    error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            bar.close()
        self.checkpoint("final")
        self.run.write_metadata(status="completed", end_time=_now(), frames=self.frames,
                                wall_time_s=round(time.perf_counter() - start, 1))
        assert last_eval is not None
        return last_eval
