"""Checkpoints and resume (design.md §5): a run killed with SIGKILL or stopped with SIGTERM and started again with
the same arguments continues from its last checkpoint, and its record equals an uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from algorithms.common.checkpoints import load_checkpoint
from algorithms.common.results import RunDirectory, find_resumable
from envs.registry import make_meta_env

ROOT = Path(__file__).resolve().parents[1]
# 50 iterations of 960 frames; a checkpoint every 10, a meta-test every 5, a metrics row every iteration
RESUME_ARGS = ["algo=varibad", "env=gridworld", "seed=3", "train.num_frames=48000", "train.eval_interval_frames=4800",
               "train.checkpoint_interval_frames=9600", "train.log_interval_iterations=1", "algo.precollect_frames=960",
               "eval.num_tasks=5", "progress=false", "train.log_interval_seconds=0.001"]
#: columns that measure time, not what was computed
TIMING = ("wall_time", "fps")


def _command(results: Path, run_name: str, *extra: str) -> list[str]:
    return [sys.executable, "train.py", *RESUME_ARGS, f"results_dir={results}", f"run_name={run_name}", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _run_dir(results: Path, run_name: str) -> Path:
    return results / "gridworld" / "varibad" / run_name


def _checkpoint_frames(run: Path) -> int:
    path = run / "checkpoints" / "latest.pt"
    if not path.exists():
        return 0
    try:
        return int(load_checkpoint(path)["frames"])
    except (EOFError, RuntimeError, OSError):  # replaced while reading
        return 0


def _start_and_wait_for_checkpoint(results: Path, run_name: str, frames: int) -> subprocess.Popen:
    proc = subprocess.Popen(_command(results, run_name), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    try:
        while _checkpoint_frames(_run_dir(results, run_name)) < frames:
            assert proc.poll() is None, f"run ended before its checkpoint at {frames} frames: {proc.stderr.read()}"
            assert time.time() < deadline, "no checkpoint within 300 s"
            time.sleep(0.05)
    except BaseException:  # a failed wait must not leave the training run going on after the test
        proc.kill()
        proc.wait()
        raise
    return proc


def _records(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    metrics = pd.read_csv(run / "train_metrics.csv")
    metrics = metrics.drop(columns=[c for c in metrics.columns if c in TIMING or c.startswith("time/")])
    return metrics, pd.read_csv(run / "eval.csv").drop(columns=["run_id"])


def _final_parameters(run: Path) -> dict[str, torch.Tensor]:
    agent = load_checkpoint(run / "checkpoints" / "final.pt")["agent"]
    return {f"{part}.{k}": v for part in ("vae", "policy") for k, v in agent[part].items()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("results")
    subprocess.run(_command(results, "whole"), cwd=ROOT, env=_env(), check=True, capture_output=True)
    return _run_dir(results, "whole")


def _assert_same_record(resumed: Path, whole: Path) -> None:
    metrics, evals = _records(resumed)
    metrics_ref, evals_ref = _records(whole)
    assert list(metrics["frames"]) == list(range(960, 48001, 960))  # no duplicate, no missing row
    assert sorted(evals["frames"].unique()) == list(range(0, 48001, 4800))
    pd.testing.assert_frame_equal(metrics, metrics_ref, check_exact=True)
    pd.testing.assert_frame_equal(evals, evals_ref, check_exact=True)
    params, params_ref = _final_parameters(resumed), _final_parameters(whole)
    assert params.keys() == params_ref.keys()
    for name in params:
        assert torch.equal(params[name], params_ref[name]), name


@pytest.mark.slow
def test_sigkill_after_second_checkpoint_then_restart_equals_uninterrupted_run(uninterrupted, tmp_path):
    proc = _start_and_wait_for_checkpoint(tmp_path, "killed", 2 * 9600)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = _run_dir(tmp_path, "killed")
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["status"] == "running" and meta["frames"] < 48000  # died mid-run, nothing marked it
    # started again with the same arguments: resumes from the checkpoint instead of starting over
    out = subprocess.run(_command(tmp_path, "killed"), cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "resuming" in out.stdout and "at frame 19200" in out.stdout
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["status"] == "completed" and len(meta["resumes"]) == 1
    assert meta["command"].startswith("python train.py algo=varibad env=gridworld seed=3")  # the user's command
    assert meta["device"] == "cpu"
    _assert_same_record(run, uninterrupted)


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_then_resumes(uninterrupted, tmp_path):
    proc = _start_and_wait_for_checkpoint(tmp_path, "stopped", 9600)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr
    run = _run_dir(tmp_path, "stopped")
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["status"] == "preempted" and meta["stop_signal"] == "SIGTERM"
    # checkpointed where it stopped: after the iteration in flight, or at 9,600 when the signal came during the
    # meta-test at 9,600 frames (abandoned, and redone on resume)
    assert _checkpoint_frames(run) == meta["frames"] >= 9600
    out = subprocess.run(_command(tmp_path, "stopped"), cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # from the first progress line after the resume on, the last meta-test is shown (it was "-" until the next one)
    first = next(line for line in out.stdout.splitlines() if "frames/s" in line)
    assert "last meta-test @" in first and "last meta-test -" not in first, first
    _assert_same_record(run, uninterrupted)


def _fake_run(root: Path, seed: int = 0, config: str = "seed: 0\nprogress: false\n",
              checkpoint: bool = True) -> RunDirectory:
    run = RunDirectory(root, "gridworld", "varibad", seed)
    run.write_config(config)
    if checkpoint:
        (run.checkpoints / "latest.pt").write_bytes(b"x")
    return run


def test_a_live_run_is_never_resumed_by_another_process(tmp_path):
    run = _fake_run(tmp_path)  # holds its lock, as a live process does
    assert find_resumable(tmp_path, "gridworld", "varibad", 0, "seed: 0\nprogress: false\n") is None
    run.close()  # the process is gone (SIGKILL releases the lock the same way)
    found = find_resumable(tmp_path, "gridworld", "varibad", 0, "seed: 0\nprogress: true\nresume: true\n")
    assert found == run.path  # progress and resume do not change what a run computes


def test_resume_needs_the_same_config_and_seed_and_a_resumable_status(tmp_path):
    run = _fake_run(tmp_path, config="seed: 0\nalgo:\n  lr: 0.1\n")
    run.close()
    assert find_resumable(tmp_path, "gridworld", "varibad", 0, "seed: 0\nalgo:\n  lr: 0.2\n") is None
    assert find_resumable(tmp_path, "gridworld", "varibad", 1, "seed: 0\nalgo:\n  lr: 0.1\n") is None
    meta = json.loads((run.path / "metadata.json").read_text())
    for status, expected in (("completed", None), ("failed", None), ("preempted", run.path)):
        (run.path / "metadata.json").write_text(json.dumps({**meta, "status": status}))
        assert find_resumable(tmp_path, "gridworld", "varibad", 0, "seed: 0\nalgo:\n  lr: 0.1\n") == expected


def test_a_run_killed_before_its_first_checkpoint_is_marked_failed_not_resumed(tmp_path):
    run = _fake_run(tmp_path, checkpoint=False)
    run.close()
    assert find_resumable(tmp_path, "gridworld", "varibad", 0, "seed: 0\nprogress: false\n") is None
    meta = json.loads((run.path / "metadata.json").read_text())
    assert meta["status"] == "failed" and "before its first checkpoint" in meta["error"]


def test_truncate_rows_cuts_the_files_back_to_the_checkpoint(tmp_path):
    run = _fake_run(tmp_path)
    for frames in (1, 2):
        run.append_metrics({"frames": frames, "loss": 0.5})
    counts = run.row_counts()
    run.append_metrics({"frames": 3, "loss": 0.25})
    run.append_eval(3, pd.DataFrame({"task_id": [0], "episode": [1], "return": [1.0]}), np.zeros((1, 2)))
    run.truncate_rows(counts)
    assert list(pd.read_csv(run.path / "train_metrics.csv")["frames"]) == [1, 2]
    assert not (run.path / "eval.csv").exists()  # no evaluation had been written at the checkpoint


def test_env_state_round_trip_continues_the_same_stream():
    env = make_meta_env("gridworld", num_envs=4, seed=0, split="train", episodes_per_task=2)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(17):
        env.step(rng.integers(5, size=4))
    state = env.get_state()
    actions = rng.integers(5, size=(40, 4))
    first = [env.step(a)[:2] for a in actions]
    other = make_meta_env("gridworld", num_envs=4, seed=99, split="train", episodes_per_task=2)
    other.reset()
    other.set_state(state)
    second = [other.step(a)[:2] for a in actions]
    for (obs_a, rew_a), (obs_b, rew_b) in zip(first, second, strict=True):
        np.testing.assert_array_equal(obs_a, obs_b)
        np.testing.assert_array_equal(rew_a, rew_b)


def test_wandb_offline_run_writes_config_and_metrics(tmp_path):
    pytest.importorskip("wandb", reason="wandb is in the dev extra: pip install -e '.[dev]'")
    env = {**_env(), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    args = [a for a in RESUME_ARGS if not a.startswith("train.num_frames")] + ["train.num_frames=4800"]
    out = subprocess.run([sys.executable, "train.py", *args, f"results_dir={tmp_path}", "run_name=tracked",
                          "tracking.backend=wandb"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    run = _run_dir(tmp_path, "tracked")
    wandb_runs = list((run / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 1
    (log,) = wandb_runs[0].glob("*.wandb")
    config, history = _read_wandb_log(log)
    assert config["seed"] == 3 and config["algo"]["latent_dim"] == 5 and config["env"]["name"] == "gridworld"
    frames = [row["frames"] for row in history if "frames" in row]
    assert frames == list(range(960, 4801, 960))  # one row per logged iteration
    assert any("ppo/policy_loss" in row for row in history)
    assert any("eval/return_ep1" in row for row in history)
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["wandb_run_id"] in wandb_runs[0].name


def _read_wandb_log(path: Path) -> tuple[dict, list[dict]]:
    """Config and history rows of an offline ``.wandb`` file: a 7-byte header, then LevelDB-log records
    (32 KiB blocks; each chunk: crc32, length, type) holding protobuf ``Record`` messages."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, records, partial = 32768, 7, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if left < 7 or (length == 0 and kind == 0):  # block padding
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        partial = chunk if kind in (1, 2) else partial + chunk
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(partial)
            records.append(record)

    def items(updates) -> dict:
        return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in updates}

    def unwrap(value):  # wandb stores some config entries as {"value": ...}
        return value["value"] if isinstance(value, dict) and "value" in value else value

    config: dict = {}
    history: list[dict] = []
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            config.update({k: unwrap(v) for k, v in items(record.run.config.update).items()})
        elif kind == "config":
            config.update({k: unwrap(v) for k, v in items(record.config.update).items()})
        elif kind == "history":
            history.append(items(record.history.item))
    return config, history


REQUEUE_SCRIPT = """
import signal, sys
from pathlib import Path
marker, run = Path(sys.argv[1]), Path(sys.argv[2])
def requeue(signum, frame):  # stands in for submitit's handler: requeue the job, then exit
    marker.write_text((run / "metadata.json").read_text())
    sys.exit(0)
signal.signal(signal.SIGUSR2, requeue)
sys.argv = ["train.py", *sys.argv[3:]]
import runpy
runpy.run_path("train.py", run_name="__main__")
"""


@pytest.mark.slow
def test_preemption_signal_checkpoints_then_hands_over_to_the_launchers_handler(tmp_path):
    """Under submitit, Slurm's SIGUSR2 must first produce a checkpoint, then reach submitit's requeue handler."""
    marker = tmp_path / "requeued.json"
    run = _run_dir(tmp_path, "requeued")
    command = [sys.executable, "-c", REQUEUE_SCRIPT, str(marker), str(run), *RESUME_ARGS,
               f"results_dir={tmp_path}", "run_name=requeued"]
    proc = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 300
    while _checkpoint_frames(run) < 9600:
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() else "timeout"
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR2)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr  # the launcher's handler ended the process
    seen_by_handler = json.loads(marker.read_text())
    assert seen_by_handler["status"] == "preempted" and seen_by_handler["stop_signal"] == "SIGUSR2"
    assert _checkpoint_frames(run) == seen_by_handler["frames"]  # the checkpoint came before the hand-over


@pytest.mark.slow
def test_a_stop_signal_to_the_process_group_checkpoints_a_simulator_env_run(tmp_path):
    """Ctrl-C or a scheduler signals the whole process group, env worker processes included: the run still
    checkpoints the simulator copies' state and ends as pre-empted."""
    command = [sys.executable, "train.py", "algo=varibad", "env=cheetah_dir", "env.kwargs.num_workers=2", "seed=0",
               "progress=false",
               "train.eval_interval_frames=100000000", "train.log_interval_iterations=1", f"results_dir={tmp_path}",
               "run_name=stopped"]
    proc = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    metrics = tmp_path / "cheetah_dir" / "varibad" / "stopped" / "train_metrics.csv"
    deadline = time.time() + 300
    while not (metrics.exists() and len(metrics.read_text().splitlines()) > 1):  # past the first iteration
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, "no training iteration within 300 s"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    run = metrics.parent
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["status"] == "preempted" and meta["stop_signal"] == "SIGINT", stderr
    state = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert state["frames"] == meta["frames"] > 0 and len(state["env"]["inner"]["copies"]) == 16  # all 16 copies
