"""A progress snapshot ships a resume point: a campaign whose machine is lost goes on from it, not from frame 0."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from algorithms.common.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from analysis.publish import progress_rows
from analysis.stats import format_frames
from launch.resume_point import restore_run, snapshot_with_resume_point, write_resume_point
from tests.test_analysis import GOOD, write_run
from tests.test_reproduce import TINY_MANIFEST, _copy_of_this_repository, _git, _reproduce, start_and_kill


def _checkpoint(run: Path, frames: int, rows: dict[str, int], buffer_rows: int = 4000) -> None:
    (run / "checkpoints").mkdir(exist_ok=True)
    save_checkpoint({"agent": {"policy": {"w": torch.arange(6.0)}, "frames": frames,
                               "vae_buffer": {"obs": np.ones((buffer_rows, 50), np.float32)}},
                     "frames": frames, "iteration": 3, "rows": rows}, run / "checkpoints" / "latest.pt")


def test_the_resume_point_leaves_out_the_vae_buffer_and_restores_a_stopped_run_elsewhere(tmp_path):
    run = write_run(tmp_path / "results", "gw", "tiny", 0, GOOD, status="running", live=False)
    (run / "config.yaml").write_text("seed: 0\nresults_dir: /the/lost/machine/results\nalgo:\n  name: varibad\n")
    _checkpoint(run, frames=60, rows={"eval.csv": 4, "train_metrics.csv": 1})

    target = snapshot_with_resume_point(run, tmp_path / "shipped")
    point = json.loads((target / "metadata.json").read_text())["snapshot"]["resume_point"]
    assert point["frames"] == 60 and point["emptied"] == ["vae_buffer"]
    assert point["bytes"] < (run / "checkpoints" / "latest.pt").stat().st_size / 10  # the buffer was 800 kB
    light = load_checkpoint(target / "resume.pt")
    assert light["agent"]["vae_buffer"] is None and torch.equal(light["agent"]["policy"]["w"], torch.arange(6.0))
    assert light["rows"] == {"eval.csv": 4, "train_metrics.csv": 1}
    # the index's table of runs in progress says where each would resume
    assert [row["resumes from"] for row in progress_rows(tmp_path / "shipped")] == [format_frames(60.0)]

    # the machine is lost; another one, whose results folder lies elsewhere, gets the run back as a stopped run
    elsewhere = tmp_path / "new_machine" / "results"
    restored = restore_run(target, elsewhere)
    assert restored == elsewhere / "gw" / "tiny" / run.name
    meta = json.loads((restored / "metadata.json").read_text())
    assert meta["status"] == "preempted" and meta["frames"] == 60 and "snapshot" not in meta
    assert [(r["frames"], r["emptied"]) for r in meta["restored_from_snapshot"]] == [(60, ["vae_buffer"])]
    config = yaml.safe_load((restored / "config.yaml").read_text())
    assert config["results_dir"] == str(elsewhere.resolve()) and config["algo"] == {"name": "varibad"}
    assert load_checkpoint(restored / "checkpoints" / "latest.pt")["frames"] == 60
    assert pd.read_csv(restored / "eval.csv").equals(pd.read_csv(run / "eval.csv"))
    with pytest.raises(FileExistsError):  # never over a run that is there
        restore_run(target, elsewhere)


def test_no_resume_point_where_it_is_too_large_or_the_result_files_stop_short_of_it(tmp_path):
    run = write_run(tmp_path / "results", "gw", "tiny", 0, GOOD, status="running", live=False)
    big = {"agent": {"replay": np.ones((4000, 50), np.float32)}, "frames": 60, "rows": {"eval.csv": 4}}
    assert write_resume_point(big, run, max_bytes=100_000) is None and not (run / "resume.pt").exists()
    ahead = {"agent": {}, "frames": 200, "rows": {"eval.csv": 99}}  # rows the copied eval.csv does not have
    assert write_resume_point(ahead, run) is None
    # a run with no checkpoint yet: a snapshot without a resume point, which restores nothing
    target = snapshot_with_resume_point(run, tmp_path / "shipped")
    assert json.loads((target / "metadata.json").read_text())["snapshot"]["resume_point"] is None
    assert [row["resumes from"] for row in progress_rows(tmp_path / "shipped")] == ["-"]
    with pytest.raises(FileNotFoundError):
        restore_run(target, tmp_path / "elsewhere")


@pytest.mark.slow
def test_a_run_whose_machine_is_lost_resumes_from_the_resume_point_of_its_snapshot(tmp_path):
    repo = _copy_of_this_repository(tmp_path / "repo")
    manifest = repo / "tiny.yaml"
    manifest.write_text(yaml.safe_dump({**TINY_MANIFEST, "runs": [{**TINY_MANIFEST["runs"][0], "seeds": [0]}]}))
    pinned = _git(repo, "rev-parse", "HEAD")
    results, shipped = repo / "results", repo / "shipped"

    # 1. the campaign runs until its run has a checkpoint past its first meta-test; then everything is killed
    def past_first_meta_test() -> bool:
        found = list((results / "gridworld" / "tiny").glob("*/checkpoints/latest.pt"))
        try:
            return bool(found) and load_checkpoint(found[0])["frames"] >= 9600
        except CheckpointError:  # being replaced: the next look reads the new one
            return False

    start_and_kill(repo, manifest, past_first_meta_test, "a checkpoint past 9,600 frames", jobs=1)

    # 2. a progress snapshot ships its resume point
    snap = _reproduce(repo, manifest, "--snapshot")
    assert snap.returncode == 0, snap.stderr
    assert "resume point at frame" in snap.stdout and "without its vae_buffer" in snap.stdout, snap.stdout
    (snapshot,) = (shipped / "gridworld" / "tiny").iterdir()
    point = json.loads((snapshot / "metadata.json").read_text())["snapshot"]["resume_point"]
    assert point["frames"] >= 9600 and (snapshot / "resume.pt").is_file()
    before = pd.read_csv(snapshot / "eval.csv")
    kept = load_checkpoint(snapshot / "resume.pt")["rows"]["eval.csv"]  # the meta-test rows it goes on from

    # 3. the machine is lost (results/, checkpoints and campaign folder with it); main moves on meanwhile
    shutil.rmtree(results)
    (repo / "README.md").write_text((repo / "README.md").read_text() + "\nmoved on\n")
    _git(repo, "commit", "-qam", "main moves on")
    plan = _reproduce(repo, manifest, "--plan")
    assert plan.returncode == 0, plan.stderr
    assert " missing " in plan.stdout and f"ships a resume point at frame {point['frames']:,}" in plan.stdout

    # 4. the same command restores the run from its snapshot, resumes it at its commit, completes and publishes it
    go = _reproduce(repo, manifest)
    assert go.returncode == 0, go.stdout + go.stderr
    assert "restored tiny seed 0 from its progress snapshot" in go.stdout, go.stdout
    log = (results / "reproduce" / "tiny" / "logs" / "gridworld_tiny_seed0.log").read_text()
    assert f"resuming {results.resolve() / 'gridworld' / 'tiny' / snapshot.name} at frame {point['frames']}" in log
    (published,) = (shipped / "gridworld" / "tiny").iterdir()
    meta = json.loads((published / "metadata.json").read_text())
    assert published.name == snapshot.name and meta["status"] == "completed" and "snapshot" not in meta
    assert meta["git_commit"] == pinned and meta["frames"] == 28800
    assert [r["frames"] for r in meta["restored_from_snapshot"]] == [point["frames"]]
    assert not (published / "resume.pt").exists()
    # the meta-test rows the resume point counts are the snapshot's own; the rest were made after the restore (a
    # meta-test due at the resume point's frame itself, when the run was killed before it, included)
    after = pd.read_csv(published / "eval.csv")
    assert 0 < kept <= len(before) and after.head(kept).equals(before.head(kept))
    assert after["frames"].iloc[kept:].min() >= point["frames"] and after["frames"].max() == 28800
