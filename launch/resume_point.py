"""A resume point shipped with a run's progress snapshot, so that a campaign whose machine is lost goes on from it.

A progress snapshot (``analysis.publish.snapshot``) keeps a run's curve so far in the repository; the run itself,
its checkpoints, lives in ``results/`` on the machine that runs it. Losing that machine used to mean starting the run
again from frame 0. So a snapshot taken by ``make reproduce`` also ships ``resume.pt``: the run's latest checkpoint,
small enough for git. Its one large part, VariBAD's VAE buffer (the last ``vae_buffer_size`` trajectories, 100 MB on
PointRobot, where everything else is 2.5 MB), is left out, so a run restored from it refills that buffer from new
rollouts: from there on it is not the run an uninterrupted machine would have made, and its metadata says so
(``restored_from_snapshot``: the frame, what started empty). A checkpoint that is still too large without it (PEARL's
replay buffers, which its SAC updates cannot do without) ships no resume point.

On a machine without the run (``results/`` lost, a fresh clone), ``make reproduce`` puts the snapshot's files back
into ``results/`` as a stopped run, checkpoint included, and resumes it like any other stopped run: ``train.py``
cuts the result files back to the checkpoint's rows and goes on, at the campaign's commit.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from analysis.publish import snapshot
from records import run_folder

RESUME_POINT = run_folder.RESUME_POINT
#: entries of an agent's checkpoint that a run can refill from new rollouts (VariBAD's VAE trains on a buffer of
#: recent trajectories; its policy and VAE weights, optimisers, normalisers and RNG states are all kept)
REFILLABLE = ("vae_buffer",)
#: the largest resume point shipped in git
MAX_BYTES = 16 * 2**20
#: the snapshot metadata's record of the resume point, and a restored run's record of where it came from
SNAPSHOT_KEY, RESTORED_KEY = run_folder.SNAPSHOT_RESUME_POINT, run_folder.RESTORED_FROM_SNAPSHOT


def read_latest(run: Path) -> dict[str, Any] | None:
    """The run's latest checkpoint, or ``None`` where it has none that loads."""
    # here, not at the top: the plan, which only reads metadata, need not load torch
    from algorithms.common.checkpoints import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(Path(run) / "checkpoints" / "latest.pt")
    except CheckpointError:
        return None


def _data_rows(path: Path) -> int:
    with path.open() as f:
        return max(sum(1 for _ in f) - 1, 0)


def write_resume_point(state: dict[str, Any], target: Path, max_bytes: int = MAX_BYTES) -> dict[str, Any] | None:
    """Write ``state`` (a run's latest checkpoint, read before the snapshot copied its result files) into the
    snapshot folder ``target`` without its refillable entries. Returns what goes into the snapshot's metadata, or
    ``None`` where no resume point is shipped: the snapshot's result files lack rows the checkpoint counts (they must
    reach at least as far), or the point would exceed ``max_bytes``."""
    target = Path(target)
    for name, rows in (state.get("rows") or {}).items():
        if (target / name).is_file() and _data_rows(target / name) < rows:
            return None
    from algorithms.common.checkpoints import save_checkpoint

    agent = dict(state["agent"])
    emptied = [key for key in REFILLABLE if agent.get(key) is not None]
    light = {**state, "agent": {**agent, **dict.fromkeys(emptied)}}
    path = target / RESUME_POINT
    save_checkpoint(light, path)
    size = path.stat().st_size
    if size > max_bytes:
        path.unlink()
        return None
    return {"file": RESUME_POINT, "frames": int(state["frames"]), "emptied": emptied, "bytes": size}


def snapshot_with_resume_point(run: Path, shipped: Path) -> Path:
    """Publish a progress snapshot of ``run`` into ``shipped`` with its resume point (where one can be shipped); the
    snapshot's metadata records it under ``snapshot.resume_point`` (``None``: none shipped)."""
    state = read_latest(run)  # before the result files are copied: they then reach at least as far as it
    target = snapshot(run, shipped)
    point = None if state is None else write_resume_point(state, target)
    meta_path = target / run_folder.METADATA
    meta = json.loads(meta_path.read_text())
    meta["snapshot"][SNAPSHOT_KEY] = point
    meta_path.write_text(json.dumps(meta, indent=2))
    return target


def restorable(snapshot: Path) -> dict[str, Any] | None:
    """The metadata of a published progress snapshot that ships a resume point, else ``None``."""
    try:
        meta = json.loads((Path(snapshot) / run_folder.METADATA).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not (isinstance(meta, dict) and isinstance(meta.get("snapshot"), dict)
            and meta["snapshot"].get(SNAPSHOT_KEY) and (Path(snapshot) / RESUME_POINT).is_file()):
        return None
    return meta


def restore_run(snapshot: Path, results: Path) -> Path:
    """Put a published snapshot back into ``results`` as a stopped run (``preempted``) that resumes from its resume
    point: the result files, the config and the metadata, which records the restore. Returns the run folder."""
    snapshot = Path(snapshot)
    meta = restorable(snapshot)
    if meta is None:
        raise FileNotFoundError(f"{snapshot}: not a progress snapshot with a resume point")
    run = Path(results) / meta["env"] / (meta.get("label") or meta["algo"]) / meta["run_id"]
    if run.exists():
        raise FileExistsError(f"{run} exists; a snapshot is restored only where its run is missing")
    (run / "checkpoints").mkdir(parents=True)
    for name in (run_folder.EVAL, run_folder.TRAIN_METRICS):
        if (snapshot / name).is_file():
            shutil.copy2(snapshot / name, run / name)
    # train.py resumes a run whose config is its own, results folder included: this machine's may lie elsewhere
    config = (snapshot / run_folder.CONFIG).read_text()
    here = json.dumps(str(Path(results).resolve()))
    (run / run_folder.CONFIG).write_text(re.sub(r"(?m)^results_dir: .*$", lambda _: f"results_dir: {here}", config))
    shutil.copy2(snapshot / RESUME_POINT, run / "checkpoints" / "latest.pt")
    taken = meta.pop("snapshot")
    point = taken[SNAPSHOT_KEY]
    restores = [*meta.get(RESTORED_KEY, []), {
        "frames": point["frames"], "emptied": point["emptied"], "snapshot_time": taken.get("time"),
        "snapshot_machine": taken.get("machine"), "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}]
    meta.update({"status": "preempted", "frames": point["frames"], RESTORED_KEY: restores})
    tmp = run / "metadata.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, run / run_folder.METADATA)
    return run


def describe(restores: list[dict[str, Any]]) -> str:
    """One line for a run's ``restored_from_snapshot`` list."""
    parts = []
    for r in restores:
        emptied = f"; its {', '.join(r['emptied'])} started empty there" if r.get("emptied") else ""
        parts.append(f"restored from its progress snapshot at frame {r['frames']:,}{emptied}")
    return "; ".join(parts)

