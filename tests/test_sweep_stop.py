"""Stopping a sweep cleanly: every run checkpoints and is marked preempted, one summary, and the same command
resumes them; a stop during a meta-test does not wait for it."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from algorithms import builder
from algorithms.common.evaluator import EvaluationInterrupted
from algorithms.common.results import RunDirectory
from algorithms.common.trainer import Preempted, Trainer, TrainerConfig
from analysis.status import collect
from tests.helpers import compose_config

ROOT = Path(__file__).resolve().parents[1]
RUN_ID = re.compile(r"\d{8}-\d{6}_seed\d+")


def _sweep_command(results: Path) -> list[str]:
    return [sys.executable, "train.py", "--multirun", "algo=varibad", "env=gridworld", "seed=0,1", "launcher=joblib",
            "hydra.launcher.n_jobs=2", "progress=false", f"results_dir={results}", "train.num_frames=3000000",
            "train.log_interval_seconds=1", "train.checkpoint_interval_frames=100000000", "eval.num_tasks=5",
            f"hydra.sweep.dir={results}/sweeps/s"]


def _start(results: Path, wait_for: str, count: int) -> tuple[subprocess.Popen, list[str]]:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(_sweep_command(results), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines, seen, deadline = [], set(), time.time() + 240
    while len(seen) < count:
        line = proc.stdout.readline()
        assert line, "the sweep ended early:\n" + "".join(lines)
        assert time.time() < deadline, "".join(lines)
        lines.append(line)
        if wait_for in line:
            # the runs write to one pipe: two runs' messages can share a line, so count the run ids, not lines
            seen.update(RUN_ID.findall(line) or [line])
    return proc, lines


def _finish(proc: subprocess.Popen, lines: list[str]) -> str:
    rest, _ = proc.communicate(timeout=180)
    return "".join(lines) + rest


def _runs(results: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in results.glob("gridworld/varibad/*/metadata.json")}


@pytest.mark.slow
def test_sigint_to_a_joblib_sweep_preempts_every_run_and_the_same_command_resumes_them(tmp_path):
    proc, lines = _start(tmp_path, "frames/s", 2)  # both runs are training
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    out = _finish(proc, lines)
    assert proc.returncode == 128 + signal.SIGINT, out
    assert "Traceback" not in out and "sweep stopped by SIGINT; 2 job(s)" in out, out
    runs = _runs(tmp_path)
    assert len(runs) == 2 and {m["status"] for m in runs.values()} == {"preempted"}, runs
    for run_id, meta in runs.items():
        assert (tmp_path / "gridworld" / "varibad" / run_id / "checkpoints" / "latest.pt").is_file()
        assert meta["frames"] > 0 and f"{run_id}: preempted at frame" in out
    assert set(collect(tmp_path)["state"]) == {"preempted"}  # nothing left running or stale
    # the same command again resumes both runs where they stopped
    proc, lines = _start(tmp_path, "resuming", 2)
    os.killpg(proc.pid, signal.SIGINT)
    out = _finish(proc, lines)
    assert proc.returncode == 128 + signal.SIGINT and "Traceback" not in out, out
    again = _runs(tmp_path)
    assert again.keys() == runs.keys()
    for run_id, meta in again.items():
        assert meta["status"] == "preempted" and len(meta["resumes"]) == 1
        assert meta["frames"] >= runs[run_id]["frames"]


@pytest.mark.slow
def test_a_stop_that_reaches_only_the_launcher_still_stops_every_run(tmp_path):
    proc, lines = _start(tmp_path, "frames/s", 2)
    os.kill(proc.pid, signal.SIGTERM)  # e.g. a scheduler that signals the main process only
    out = _finish(proc, lines)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "Traceback" not in out and {m["status"] for m in _runs(tmp_path).values()} == {"preempted"}, out


def _tiny_trainer(tmp_path, name):
    cfg = compose_config("algo=varibad", "env=gridworld", "seed=4", "algo.precollect_frames=960",
                         "algo.vae_buffer_size=1000")
    setup = builder.build(cfg)
    agent, env = setup.agent, setup.env
    tasks = env.inner.held_out_tasks()[:6]
    run = RunDirectory(tmp_path, "gridworld", "varibad", 4, name)
    trainer_cfg = TrainerConfig(num_frames=4 * 960, eval_interval_frames=1920, log_interval_iterations=1,
                                checkpoint_interval_frames=10**9, eval_episodes=6, progress=False)
    return Trainer(agent, env, "gridworld", tasks, run, trainer_cfg, seed=4), agent


def test_a_stop_during_a_meta_test_abandons_it_and_the_resumed_run_equals_an_uninterrupted_one(tmp_path):
    whole, _ = _tiny_trainer(tmp_path, "whole")
    whole.train()
    stopped, agent = _tiny_trainer(tmp_path, "stopped")
    calls = {"n": 0}
    act = agent.act

    def act_and_stop_in_the_second_meta_test(obs, belief, deterministic):
        calls["n"] += 1
        if calls["n"] == 6 * 15 + 20:  # 20 steps into the second meta-test (the first is 6 episodes x 15 steps)
            stopped.request_stop(signal.SIGTERM)
        return act(obs, belief, deterministic)

    agent.act = act_and_stop_in_the_second_meta_test
    with pytest.raises(Preempted):
        stopped.train()
    assert calls["n"] == 6 * 15 + 20  # abandoned before its next step, not after all 90
    assert sorted(pd.read_csv(stopped.run.path / "eval.csv")["frames"].unique()) == [0]  # no partial rows
    stopped.run.close()
    resumed, _ = _tiny_trainer(tmp_path / "r", "resumed")
    resumed.run = RunDirectory.reopen(stopped.run.path)
    assert resumed.restore(stopped.run.path / "checkpoints" / "latest.pt") is None
    resumed.train()
    ours = pd.read_csv(stopped.run.path / "eval.csv").drop(columns="run_id")
    ref = pd.read_csv(whole.run.path / "eval.csv").drop(columns="run_id")
    pd.testing.assert_frame_equal(ours, ref, check_exact=True)
    assert EvaluationInterrupted.__doc__ and np.isfinite(ours["return"]).all()
