"""The status board: every run under a results folder at a glance, from the run folders alone.

    python -m analysis.status [--results results] [--env ENV] [--algo LABEL] [--watch [SECONDS]]
    make status [ARGS="--watch"]

One row per run, grouped by (env, label): seed, state (``running``, ``stale`` = marked running but no live process
holds it, ``preempted``, ``completed``, ``failed``), frames done / budget, the recent frames/s (over the last logged
rows), the time left at that rate, wall time, resumes, the last meta-test's mean return per episode, episode 1 over
the meta-tests so far (a sparkline: :func:`curve_so_far`), and the error of a failed run. ``--watch`` redraws it in
place every few seconds (Ctrl-C leaves). Reads files only: it imports no agent code and changes nothing.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from analysis.load import discover_runs, run_state
from analysis.stats import format_frames
from records import run_folder
from records.command_line import command_line

#: rows of train_metrics.csv the recent frames/s is measured over
RECENT_ROWS = 5
#: the levels of a sparkline, lowest first, and the most meta-tests one shows (evenly spaced over the run so far)
SPARK_LEVELS = "▁▂▃▄▅▆▇█"
CURVE_POINTS = 12
STATE_STYLE = {"running": "green", "stale": "bold red", "preempted": "yellow", "completed": "blue", "failed": "red"}


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(seconds)
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m {seconds % 60:02d}s"


def _frames(n: float | None) -> str:
    return "-" if n is None or not math.isfinite(n) else format_frames(n)


def run_budget(run: Path) -> int | None:
    """The frames the run trains for (its ``config.yaml``), ``None`` where it cannot be read."""
    try:
        config = yaml.safe_load((run / run_folder.CONFIG).read_text())
        return int(float(config["train"]["num_frames"]))
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def recent_speed(run: Path) -> tuple[float | None, float | None]:
    """(recent frames/s, wall seconds) from the last :data:`RECENT_ROWS` rows of train_metrics.csv."""
    try:
        metrics = pd.read_csv(run / run_folder.TRAIN_METRICS, usecols=["frames", "wall_time"])
        metrics = metrics.dropna().tail(RECENT_ROWS)
    except (OSError, ValueError, pd.errors.ParserError):
        return None, None
    if metrics.empty:
        return None, None
    wall = float(metrics["wall_time"].iloc[-1])
    if len(metrics) < 2:
        return (float(metrics["frames"].iloc[-1]) / wall if wall > 0 else None), wall
    dt = float(metrics["wall_time"].iloc[-1] - metrics["wall_time"].iloc[0])
    df = float(metrics["frames"].iloc[-1] - metrics["frames"].iloc[0])
    return (df / dt if dt > 0 and df > 0 else None), wall


def _last_meta_test(run: Path) -> tuple[int | None, list[float]]:
    """(frames, mean return per episode) of the last complete evaluation point in eval.csv."""
    try:
        ev = pd.read_csv(run / run_folder.EVAL, usecols=["frames", "task_id", "episode", "return"])
    except (OSError, ValueError, pd.errors.ParserError):
        return None, []
    if ev.empty:
        return None, []
    sizes = ev.groupby("frames").size()
    complete = sizes[sizes == sizes.max()]  # a point still being written has fewer rows
    frames = int(complete.index.max())
    per_episode = ev[ev["frames"] == frames].groupby("episode")["return"].mean()
    return frames, [float(v) for v in per_episode]


def curve_so_far(run: Path, points: int = CURVE_POINTS) -> str:
    """Episode 1 over the run's complete meta-tests so far as a sparkline of at most ``points`` of them, evenly
    spaced: the success rate on a 0-100% scale where any episode succeeded, else the mean return between the lowest
    and highest shown (the scale follows the line). Empty before the first meta-test."""
    try:
        ev = pd.read_csv(run / run_folder.EVAL, usecols=["frames", "task_id", "episode", "return", "success"])
    except (OSError, ValueError, pd.errors.ParserError):
        return ""
    sizes = ev.groupby("frames").size()
    ev = ev[ev["frames"].isin(sizes[sizes == sizes.max()].index) & (ev["episode"] == 1)]  # complete meta-tests
    if ev.empty:
        return ""
    success = bool(ev["success"].astype(bool).any())
    values = ev.groupby("frames")["success" if success else "return"].mean().sort_index()
    shown = values.iloc[np.unique(np.linspace(0, len(values) - 1, min(points, len(values))).round().astype(int))]
    low, high = (0.0, 1.0) if success else (float(shown.min()), float(shown.max()))
    top = len(SPARK_LEVELS) - 1
    line = "".join(SPARK_LEVELS[round(top * (v - low) / (high - low)) if high > low else 0] for v in shown)
    scale = "success 0-100%" if success else f"return {low:.3g} to {high:.3g}"
    return f"{line} ({scale}, {len(shown)} of {len(values)} meta-tests)"


def run_row(run: Path) -> dict[str, Any] | None:
    """The board's row of one run folder (``None`` when it has no readable metadata)."""
    try:
        meta = json.loads((run / run_folder.METADATA).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or "status" not in meta:
        return None
    state = run_state(run, meta)
    budget = run_budget(run)
    fps, wall = recent_speed(run)
    frames = meta.get("frames") or 0
    if meta.get("wall_time_s") is not None:
        wall = float(meta["wall_time_s"])
    # a run's last iteration can pass its budget (whole iterations): never a negative ETA
    eta = max(budget - frames, 0) / fps if state == "running" and fps and budget is not None else None
    eval_frames, per_episode = _last_meta_test(run)
    if state == "failed":
        note = str(meta.get("error") or "no error recorded")
    elif state == "stale":
        note = "no live process holds it (killed?): the same command resumes it"
    elif state == "preempted":
        note = f"stopped by {meta.get('stop_signal', 'a signal')}: the same command resumes it"
    else:
        note = ""
    return {"env": meta.get("env", run.parent.parent.name), "label": meta.get("label") or meta.get("algo", "?"),
            "seed": meta.get("seed"), "state": state, "frames": frames, "budget": budget, "fps": fps,
            "eta_s": eta, "wall_s": wall, "resumes": len(meta.get("resumes", [])), "eval_frames": eval_frames,
            "last_meta_test": per_episode, "curve": curve_so_far(run), "note": note,
            "run_id": meta.get("run_id", run.name), "path": str(run)}


def collect(root: Path, envs: list[str] | None = None, labels: list[str] | None = None) -> pd.DataFrame:
    rows = [row for run in discover_runs(root) if (row := run_row(run)) is not None]
    table = pd.DataFrame(rows, columns=["env", "label", "seed", "state", "frames", "budget", "fps", "eta_s", "wall_s",
                                        "resumes", "eval_frames", "last_meta_test", "curve", "note", "run_id",
                                        "path"])
    if envs:
        table = table[table["env"].isin(envs)]
    if labels:
        table = table[table["label"].isin(labels)]
    return table.sort_values(["env", "label", "seed", "run_id"], kind="stable").reset_index(drop=True)


def render(table: pd.DataFrame, root: Path) -> Group | str:
    if table.empty:
        return f"no runs under {root}"
    counts = table["state"].value_counts()
    parts: list[Any] = [f"[bold]{root}[/bold]: {len(table)} runs, " + ", ".join(
        f"[{STATE_STYLE.get(s, '')}]{n} {s}[/]" for s, n in counts.items()) + f"  ({time.strftime('%H:%M:%S')})"]
    for (env, label), group in table.groupby(["env", "label"], sort=True):
        grid = Table(title=f"{env} / {label}", title_justify="left", expand=False)
        for column in ("seed", "state", "frames / budget", "frames/s", "ETA", "wall", "resumes", "last meta-test",
                       "episode 1 so far", "run / note"):
            grid.add_column(column, overflow="fold")
        for row in group.itertuples():
            # whole iterations can pass the budget: a completed run reads 100%, never 102%
            done = (f"{_frames(row.frames)} / {_frames(row.budget)}" + (
                f" ({min(100 * row.frames / row.budget, 100):.0f}%)" if row.budget else ""))
            meta_test = ("-" if not row.last_meta_test else f"@{_frames(row.eval_frames)}: "
                         + " ".join(f"{v:.2f}" for v in row.last_meta_test[:6]))
            style = STATE_STYLE.get(row.state, "")
            grid.add_row(str(row.seed), f"[{style}]{row.state}[/]", done,
                         "-" if row.fps is None or pd.isna(row.fps) else f"{row.fps:,.0f}",
                         _duration(row.eta_s), _duration(row.wall_s), str(row.resumes), meta_test,
                         row.curve or "-", row.run_id + (f"\n{row.note}" if row.note else ""))
        parts.append(grid)
    return Group(*parts)


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument("--results", type=Path, default=Path("results"), help="results folder (default: results)")
    parser.add_argument("--env", nargs="*", help="only these envs")
    parser.add_argument("--algo", nargs="*", help="only these labels (the algo unless an ablation set one)")
    parser.add_argument("--watch", nargs="?", type=float, const=10.0, metavar="SECONDS",
                        help="redraw every SECONDS (default 10) until Ctrl-C")
    args = parser.parse_args(argv)
    if not args.results.is_dir():
        print(f"error: results folder {args.results} does not exist", file=sys.stderr)
        return 2
    console = Console(width=None if sys.stdout.isatty() else 200)  # logs and pipes: wide rows, no wrapping
    if args.watch is None:
        console.print(render(collect(args.results, args.env, args.algo), args.results))
        return 0
    try:
        with Live(render(collect(args.results, args.env, args.algo), args.results), console=console,
                  refresh_per_second=1, screen=False) as live:
            while True:
                time.sleep(args.watch)
                live.update(render(collect(args.results, args.env, args.algo), args.results))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
