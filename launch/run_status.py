"""Where each run of a campaign stands (missing / running / stopped / completed / published), its speed and the
hours it has left, and the plan table ``make reproduce PLAN=1`` prints."""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from analysis.load import is_live
from analysis.stats import format_frames
from analysis.status import curve_so_far, recent_speed, run_budget
from launch.manifest import Manifest, ManifestError, RunSpec
from launch.resume_point import RESTORED_KEY, SNAPSHOT_KEY, describe, restorable
from records import run_folder

STATES = ("missing", "running", "stopped", "completed", "published")


@dataclass
class RunStatus:
    """One run of a campaign: its state, folder, frames done of its budget, speed (frames/s), commit, last meta-test."""

    spec: RunSpec
    state: str
    path: Path | None = None
    frames: int | None = None
    budget: int | None = None
    fps: float | None = None
    commit: str | None = None
    last_eval: str = ""
    #: episode 1 over the run's meta-tests so far (``analysis.status.curve_so_far``)
    curve: str = ""
    notes: list[str] = field(default_factory=list)
    #: the budget and speed of a run not started yet come from its config and from other runs (see statuses)
    estimated: bool = False

    @property
    def hours_left(self) -> float | None:
        if self.state in ("completed", "published"):
            return 0.0
        if self.budget is None or not self.fps:
            return None
        return max(self.budget - (self.frames or 0), 0) / self.fps / 3600


def _meta(run: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((run / run_folder.METADATA).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def runs_of(root: Path, spec: RunSpec) -> list[tuple[Path, dict[str, Any]]]:
    """The run folders of ``spec`` (its env, label and seed) under ``root``, newest first."""
    parent = root / spec.env / spec.label
    if not parent.is_dir():
        return []
    found = []
    for run in sorted(parent.iterdir(), reverse=True):
        meta = _meta(run)
        if meta is not None and meta.get("seed") == spec.seed:
            found.append((run, meta))
    return found


def _last_eval(run: Path) -> str:
    """``"@12M: ep1 0.41 (12% found), ep2 ..."``: the last complete meta-test's mean return (and success) per
    episode."""
    try:
        ev = pd.read_csv(run / run_folder.EVAL, usecols=["frames", "task_id", "episode", "return", "success"])
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return ""
    if ev.empty:
        return ""
    sizes = ev.groupby("frames").size()
    complete = sizes[sizes == sizes.max()].index
    last = ev[ev["frames"] == complete.max()]
    per = last.groupby("episode")[["return", "success"]].mean()
    shown = [f"ep{k} {r:.3g}" + (f" ({100 * s:.0f}%)" if s > 0 else "") for k, (r, s) in per.head(3).iterrows()]
    return f"@{format_frames(float(complete.max()))}: " + ", ".join(shown)


def run_status(spec: RunSpec, results: Path, shipped: Path) -> RunStatus:
    """Where ``spec`` stands: published in ``shipped`` (a completed run, not a progress snapshot), else the newest
    usable run folder in ``results``."""
    for run, meta in runs_of(shipped, spec):
        if meta.get("status") == "completed" and not meta.get("snapshot"):
            return RunStatus(spec, "published", run, meta.get("frames"), run_budget(run), None,
                             meta.get("git_commit"), _last_eval(run), curve_so_far(run))
    notes = []
    for run, meta in runs_of(results, spec):
        status = meta.get("status")
        if status == "failed":
            notes.append(f"{run.name} failed: {meta.get('error', 'no error recorded')}")
            continue
        if status == "completed":
            state = "completed"
        elif status == "running" and is_live(run):
            state = "running"
        elif (run / "checkpoints" / "latest.pt").is_file():
            state = "stopped"
        else:
            notes.append(f"{run.name}: stopped before its first checkpoint")
            continue
        if meta.get(RESTORED_KEY):
            notes.append(describe(meta[RESTORED_KEY]))
        return RunStatus(spec, state, run, meta.get("frames"), run_budget(run), recent_speed(run)[0],
                         meta.get("git_commit"), _last_eval(run), curve_so_far(run), notes)
    for snap, _ in runs_of(shipped, spec):
        point = restorable(snap)
        if point is not None:
            notes.append(f"its progress snapshot ships a resume point at frame "
                         f"{point['snapshot'][SNAPSHOT_KEY]['frames']:,}: the next call restores the run from it")
            break
    return RunStatus(spec, "missing", notes=notes)


def _algo_of(run: Path) -> str | None:
    try:
        return str(yaml.safe_load((run / run_folder.CONFIG).read_text())["algo"]["name"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None


def algo_speed(roots: list[Path], env: str, algo: str) -> float | None:
    """The median speed of the runs of ``algo`` on ``env`` under ``roots`` (any label) that logged one."""
    speeds = []
    for root in roots:
        for run in sorted((root / env).glob("*/*")):
            if run.is_dir() and _algo_of(run) == algo:
                speed, _ = recent_speed(run)
                if speed:
                    speeds.append(speed)
    return float(np.median(speeds)) if speeds else None


def planned_budget(spec: RunSpec) -> int | None:
    """The frames a run not started yet will train for: its config composed as ``train.py`` would."""
    return _composed_budget(spec.algo, spec.env, spec.overrides)


@functools.cache
def _composed_budget(algo: str, env: str, overrides: tuple[str, ...]) -> int | None:
    from algorithms.builder import compose_config  # composing needs the agents' structured configs

    try:
        return int(compose_config(f"algo={algo}", f"env={env}", *overrides).train.num_frames)
    except Exception:  # a config that does not compose is reported when the run starts
        return None


def statuses(manifest: Manifest, results: Path, shipped: Path) -> list[RunStatus]:
    """The status of every run the manifest names, in its order (the order runs are started in)."""
    found = [run_status(spec, results, shipped) for spec in manifest.runs]
    speeds: dict[tuple[str, str], float | None] = {}
    # a run not started yet: the speed of the runs of its label that have one, else of its algo on its env on this
    # machine (results/ and the published runs, any label); its budget from its config
    for status in found:
        if status.state == "missing":
            peers = [s.fps for s in found if s.spec.label == status.spec.label and s.fps]
            budgets = [s.budget for s in found if s.spec.label == status.spec.label and s.budget]
            if not peers and (status.spec.env, status.spec.algo) not in speeds:
                speeds[status.spec.env, status.spec.algo] = algo_speed([results, shipped], status.spec.env,
                                                                        status.spec.algo)
            status.fps = sum(peers) / len(peers) if peers else speeds[status.spec.env, status.spec.algo]
            status.budget = budgets[0] if budgets else planned_budget(status.spec)
            status.estimated = True
    return found


def published_commit(found: list[RunStatus]) -> str | None:
    """The commit a campaign whose folder is lost (a new machine, a fresh clone) goes on at, from the runs already
    published; ``None``: ``HEAD``.

    Seeds of a label are pooled, so a label with seeds still to run goes on at the commit of its published seeds (and
    of its runs under way). Where no such label has any, the figure's one commit is that of its published runs, if
    they share one. A manifest may reuse, label by label, runs of other commits (the GridWorld figure takes its
    VariBAD runs from the ablations' campaign): then what is missing runs at ``HEAD`` and keeps its own commit. A label
    whose published seeds come from several commits, or labels to go on at different commits, are refused: nothing
    left tells which commit the campaign ran."""
    unfinished = {s.spec.label for s in found if s.state != "published"}
    going_on: dict[str, set[str]] = {}
    for s in found:
        if s.spec.label in unfinished and s.commit:
            going_on.setdefault(s.commit, set()).add(s.spec.label)
    if len(going_on) > 1:
        labels = ", ".join(sorted(set().union(*going_on.values())))
        listed = ", ".join(sorted(c[:10] for c in going_on))
        raise ManifestError(f"the runs of {labels}, still to finish, come from {len(going_on)} commits ({listed}); "
                            "a label's seeds are pooled, so they use one: remove the runs of the other commits from "
                            "benchmarks/results/")
    if going_on:
        return going_on.popitem()[0]
    commits = {s.commit for s in found if s.state == "published" and s.commit}
    return commits.pop() if len(commits) == 1 else None


def print_plan(manifest: Manifest, found: list[RunStatus], commit: str | None, file: Any = None) -> None:
    """The plan table: one row per run, then the totals; ``commit``: the campaign's pinned commit, if any."""
    out = file or sys.stdout
    if commit:
        pinned = f"commit {commit[:10]}"
    else:
        try:
            published = published_commit(found)
        except ManifestError as exc:
            published = None
            print(f"warning: {manifest.name}: {exc}", file=sys.stderr)
        reused = sorted({s.commit[:10] for s in found if s.state == "published" and s.commit})
        pinned = "no campaign started yet (the first call pins " + (
            f"{published[:10]}, the commit of its published runs)" if published else
            f"HEAD; its published runs keep their commits, {', '.join(reused)})" if reused else "HEAD)")
    print(f"{manifest.name}: {manifest.data.get('title', '')} -- {pinned}", file=out)
    rows = []
    for s in found:
        frames = "-" if s.frames is None else format_frames(float(s.frames))
        budget = "?" if s.budget is None else format_frames(float(s.budget))
        hours = s.hours_left
        rows.append({"label": s.spec.label, "env": s.spec.env, "seed": s.spec.seed, "state": s.state,
                     "frames": f"{frames} / {budget}",
                     "fps": "-" if not s.fps else ("~" if s.estimated else "") + f"{s.fps:,.0f}",
                     "hours left": "?" if hours is None else f"{hours:.2f}",
                     "commit": (s.commit or "-")[:10], "last meta-test": s.last_eval,
                     "episode 1 so far": s.curve})
    print(pd.DataFrame(rows).to_string(index=False), file=out)
    left = [s.hours_left for s in found if s.state not in ("completed", "published")]
    known = [h for h in left if h is not None]
    total = f"{sum(known):.1f}" + (" + unknown" if len(known) < len(left) else "")
    print(f"runs: {len(found)}; " + ", ".join(f"{st} {sum(s.state == st for s in found)}" for st in STATES
                                              if any(s.state == st for s in found))
          + f"; hours left, summed over runs at each run's speed so far (one thread each; runs that share "
            f"cores run slower; ~: a run not started yet, at the speed of its label's or its algo's runs here): "
            f"{total}", file=out)
    for s in found:
        for note in s.notes:
            print(f"note: {s.spec.label} seed {s.spec.seed}: {note}", file=out)
