"""Writes one run's folder, ``<results_dir>/<env>/<label>/<run-id>/`` (its files: ``records.run_folder``).

Rows are appended and flushed as they are produced, so a run that dies keeps everything it wrote.
A run folder is created exclusively: an existing run is never overwritten. A run that was killed or pre-empted
(status ``running`` with no live process, or ``preempted``) is *resumed* in place by starting it again with the
same configuration: its files are cut back to the rows of its last checkpoint and training continues, so the
record stays one continuous sequence without duplicate or missing rows. A lock file held by the live process
keeps two processes from writing one run.
"""

from __future__ import annotations

import csv
import datetime as dt
import fcntl
import json
import os
import platform
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd

from records import run_folder
from records.run_folder import RESUMABLE, SCHEMA_VERSION

#: config keys that do not change what a run computes (progress display, resume switch, tracking)
VOLATILE_CONFIG_KEYS = ("progress", "resume", "tracking", "allow_default_hyperparameters")
PACKAGES = ("torch", "numpy", "gymnasium", "hydra-core", "omegaconf", "pandas", "mujoco", "metaworld")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=cwd, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=cwd, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


class RunLockedError(RuntimeError):
    """Another live process is writing this run."""


class RunDirectory:
    """Creates (or reopens, to resume) and writes one run's folder."""

    def __init__(self, root: Path | str, env: str, algo: str, seed: int, run_name: str | None = None,
                 label: str | None = None) -> None:
        """``label`` (default: ``algo``) names the folder ``<root>/<env>/<label>/`` and is what analysis groups
        runs by, so the variants of an ablation (same algo, different settings) stay apart."""
        label = label or algo
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = run_name or f"{stamp}_seed{seed}"
        parent = Path(root) / env / label
        parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1000):
            name = base if attempt == 0 else f"{base}_{attempt}"
            try:
                (parent / name).mkdir()  # exclusive: never reuse an existing run folder
                break
            except FileExistsError:
                if run_name is not None:
                    raise FileExistsError(f"run folder {parent / name} exists; runs are never overwritten") from None
        else:
            raise RuntimeError(f"could not create a fresh run folder under {parent}")
        self.path = parent / name
        self.run_id = name
        self._lock = _acquire_lock(self.path)
        self.checkpoints = self.path / run_folder.CHECKPOINTS
        self.checkpoints.mkdir()
        self.metadata: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION, "run_id": name, "env": env, "algo": algo, "label": label, "seed": seed,
            "git_commit": git_commit(Path(__file__).resolve().parent), "packages": package_versions(),
            "host": platform.node(), "command": " ".join(sys.argv), "start_time": _now(), "end_time": None,
            "status": run_folder.RUNNING, "frames": 0,
        }
        self.write_metadata()
        self._metric_fields: list[str] | None = None

    @staticmethod
    def read_metadata(path: Path | str) -> dict[str, Any]:
        """A run folder's ``metadata.json``."""
        return json.loads((Path(path) / run_folder.METADATA).read_text())

    @classmethod
    def reopen(cls, path: Path | str) -> RunDirectory:
        """Reopen an existing run to resume it (takes its lock; raises :class:`RunLockedError` if held)."""
        self = cls.__new__(cls)
        self.path = Path(path)
        self.run_id = self.path.name
        self._lock = _acquire_lock(self.path)
        self.checkpoints = self.path / run_folder.CHECKPOINTS
        self.metadata = json.loads((self.path / run_folder.METADATA).read_text())
        metrics = self.path / run_folder.TRAIN_METRICS
        self._metric_fields = list(pd.read_csv(metrics, nrows=0).columns) if metrics.exists() else None
        resumes = list(self.metadata.get("resumes", []))
        resumes.append({"time": _now(), "host": platform.node(), "from_status": self.metadata.get("status"),
                        "git_commit": git_commit(Path(__file__).resolve().parent)})
        self.write_metadata(status=run_folder.RUNNING, end_time=None, resumes=resumes)
        return self

    def close(self) -> None:
        """Release the run's lock (the process is done writing it)."""
        self._lock.close()

    def row_counts(self) -> dict[str, int]:
        """Data rows (header excluded) in each CSV file; stored in checkpoints to cut files back on resume."""
        counts = {}
        for name in (run_folder.TRAIN_METRICS, run_folder.EVAL):
            path = self.path / name
            counts[name] = 0 if not path.exists() else max(sum(1 for _ in path.open()) - 1, 0)
        return counts

    def truncate_rows(self, counts: dict[str, int]) -> None:
        """Drop rows written after the checkpoint being resumed (they will be produced again)."""
        for name, keep in counts.items():
            path = self.path / name
            if not path.exists():
                continue
            with path.open() as f:
                lines = f.readlines()
            if keep == 0 and name == run_folder.EVAL:
                path.unlink()  # it is recreated with its header by the first evaluation
                continue
            if len(lines) - 1 > keep:
                tmp = path.with_suffix(".csv.tmp")
                tmp.write_text("".join(lines[:keep + 1]))
                os.replace(tmp, path)

    def write_metadata(self, **updates: Any) -> None:
        self.metadata.update(updates)
        tmp = self.path / "metadata.json.tmp"
        tmp.write_text(json.dumps(self.metadata, indent=2))
        os.replace(tmp, self.path / run_folder.METADATA)  # atomic: never a half-written file

    def write_config(self, yaml_text: str) -> None:
        (self.path / run_folder.CONFIG).write_text(yaml_text)

    def append_metrics(self, row: dict[str, float]) -> None:
        """Append a training-metrics row; the header is fixed by the first row (new keys go to the end)."""
        path = self.path / run_folder.TRAIN_METRICS
        keys = list(row)
        if self._metric_fields is None or any(k not in self._metric_fields for k in keys):
            old = pd.read_csv(path) if path.exists() else None
            known = self._metric_fields or []
            self._metric_fields = known + [k for k in keys if k not in known]
            if old is not None:  # widen the header: rewrite with the new columns, atomically for readers
                tmp = path.with_suffix(".csv.tmp")
                old.reindex(columns=self._metric_fields).to_csv(tmp, index=False)
                os.replace(tmp, path)
            else:
                with path.open("w", newline="") as f:
                    csv.writer(f).writerow(self._metric_fields)
        with path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._metric_fields).writerow(row)

    def append_eval(self, frames: int, rows: pd.DataFrame, tasks: Any, file: str = run_folder.EVAL) -> None:
        out = rows.copy()
        out.insert(0, "frames", frames)
        out.insert(0, "run_id", self.run_id)
        out.insert(3, "task", [json.dumps([round(float(v), 6) for v in tasks[i]]) for i in out["task_id"]])
        path = self.path / file
        out.to_csv(path, mode="a", header=not path.exists(), index=False)


def _acquire_lock(path: Path) -> Any:
    """An exclusive advisory lock on ``<run>/.lock`` for the life of this process (released by the OS even on
    SIGKILL, which is how a killed run is told apart from a live one)."""
    handle = (path / run_folder.LOCK).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RunLockedError(f"run {path} is being written by another live process") from None
    return handle


def comparable_config(yaml_text: str) -> dict[str, Any]:
    """The resolved config of a run without the keys that do not change what it computes."""
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(OmegaConf.create(yaml_text), resolve=False)
    assert isinstance(config, dict)
    return {k: v for k, v in config.items() if k not in VOLATILE_CONFIG_KEYS}


def find_resumable(root: Path | str, env: str, label: str, seed: int, config_yaml: str,
                   run_name: str | None = None) -> Path | None:
    """The newest run of this env/label/seed with the same config that was killed or pre-empted and has a
    checkpoint to resume from and no live process; ``None`` if there is none.

    A matching run killed before its first checkpoint is marked ``failed`` (it has nothing to resume from);
    a fresh run then starts in a new folder."""
    parent = Path(root) / env / label
    if not parent.is_dir():
        return None
    wanted = comparable_config(config_yaml)
    candidates = [parent / run_name] if run_name else sorted(parent.iterdir(), reverse=True)
    for path in candidates:
        meta_path, config_path = path / run_folder.METADATA, path / run_folder.CONFIG
        if not (meta_path.is_file() and config_path.is_file()):
            continue
        try:
            meta = json.loads(meta_path.read_text())
            same = meta.get("seed") == seed and comparable_config(config_path.read_text()) == wanted
        except (json.JSONDecodeError, ValueError):
            continue
        if not same or meta.get("status") not in RESUMABLE:
            continue
        try:
            handle = _acquire_lock(path)
        except RunLockedError:
            continue  # a live process is running it
        try:
            if (path / run_folder.CHECKPOINTS / "latest.pt").is_file():
                return path
            meta.update(status=run_folder.FAILED, end_time=_now(),
                        error="stopped before its first checkpoint; nothing to resume (a new run was started)")
            tmp = meta_path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(meta, indent=2))
            os.replace(tmp, meta_path)
        finally:
            handle.close()
    return None


def resumable_run(cfg: Any) -> Path | None:
    """With ``resume=true``: the killed or pre-empted run of the composed config ``cfg`` (same config and seed), to
    be resumed in place (:func:`find_resumable`)."""
    from omegaconf import OmegaConf

    if not cfg.get("resume", True):
        return None
    return find_resumable(cfg.results_dir, cfg.env.name, cfg.get("label") or cfg.algo.name, int(cfg.seed),
                          OmegaConf.to_yaml(cfg, resolve=True), cfg.run_name)


def new_run_directory(cfg: Any) -> RunDirectory:
    """A fresh run folder for the composed config ``cfg``, its resolved config written into it."""
    from omegaconf import OmegaConf

    run_dir = RunDirectory(cfg.results_dir, cfg.env.name, cfg.algo.name, int(cfg.seed), cfg.run_name, cfg.get("label"))
    run_dir.write_config(OmegaConf.to_yaml(cfg, resolve=True))
    return run_dir
