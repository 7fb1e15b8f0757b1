"""The results folder of one run (SPEC section 5): ``results/<env>/<algo>/<run-id>/``.

Files (the schema ``analysis/`` reads; nothing else is needed to analyse a run):

* ``config.yaml``: the fully resolved Hydra config;
* ``metadata.json``: run id, env, algo, label (the name analysis groups by; default the algo), seed, git commit,
  package versions, start/end time, status (``running`` -> ``completed`` | ``failed``), frames done;
* ``train_metrics.csv``: one row per logged iteration: ``frames``, ``wall_time``, ``fps`` and metric columns;
* ``eval.csv``: meta-test rows ``run_id, frames, task_id, task, episode, return, success, steps_to_success``;
* ``checkpoints/``: ``latest.pt`` (and ``final.pt``).

Rows are appended and flushed as they are produced, so a run that dies keeps everything it wrote.
A run folder is created exclusively: an existing run is never overwritten.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd

SCHEMA_VERSION = 1
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


class RunDirectory:
    """Creates and writes one run's folder."""

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
        self.checkpoints = self.path / "checkpoints"
        self.checkpoints.mkdir()
        self.metadata: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION, "run_id": name, "env": env, "algo": algo, "label": label, "seed": seed,
            "git_commit": git_commit(Path(__file__).resolve().parent), "packages": package_versions(),
            "host": platform.node(), "command": " ".join(sys.argv), "start_time": _now(), "end_time": None,
            "status": "running", "frames": 0,
        }
        self.write_metadata()
        self._metric_fields: list[str] | None = None

    def write_metadata(self, **updates: Any) -> None:
        self.metadata.update(updates)
        tmp = self.path / "metadata.json.tmp"
        tmp.write_text(json.dumps(self.metadata, indent=2))
        os.replace(tmp, self.path / "metadata.json")  # atomic: never a half-written file

    def write_config(self, yaml_text: str) -> None:
        (self.path / "config.yaml").write_text(yaml_text)

    def append_metrics(self, row: dict[str, float]) -> None:
        """Append a training-metrics row; the header is fixed by the first row (new keys go to the end)."""
        path = self.path / "train_metrics.csv"
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

    def append_eval(self, frames: int, rows: pd.DataFrame, tasks: Any) -> None:
        out = rows.copy()
        out.insert(0, "frames", frames)
        out.insert(0, "run_id", self.run_id)
        out.insert(3, "task", [json.dumps([round(float(v), 6) for v in tasks[i]]) for i in out["task_id"]])
        path = self.path / "eval.csv"
        out.to_csv(path, mode="a", header=not path.exists(), index=False)
