"""Every seed of a label against a reference pattern, and what a seed that misses it learned (``make reproduce``'s
per-seed tables): its returns per episode against the reference (e.g. GridWorld's Bayes-optimal split), the goals it
never finds, its policy entropy over training and, on PointRobot, the arc of the semicircle where episode 1 finds the
goal.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from analysis.references import panel_references
from analysis.stats import format_frames
from analysis.task_breakdown import task_values

#: the policy-entropy column of ``train_metrics.csv`` (PPO agents) shown per seed
ENTROPY = "ppo/entropy"


#: where in training the per-seed table reads the entropy: the mean over the 5% of training before each fraction
ENTROPY_AT = (0.1, 0.25, 1.0)


def goals_never_found(run: pd.DataFrame) -> list[str]:
    """The tasks of ``run`` (eval rows of one seed) in which no meta-test episode ever succeeded."""
    if "success" not in run or "task" not in run:
        return []
    found = run.groupby("task")["success"].apply(lambda s: bool(s.astype(bool).any()))
    return [task_name(str(task)) for task, hit in found.items() if not hit]


def task_name(task: str) -> str:
    """``"[0.0, 3.0]"`` (eval.csv's task column) -> ``"(0, 3)"``; other tasks unchanged."""
    try:
        values = json.loads(task)
    except ValueError:
        return task
    if isinstance(values, list) and all(isinstance(v, (int, float)) for v in values):
        return "(" + ", ".join(f"{v:g}" for v in values) + ")"
    return task


def entropy_at(train: pd.DataFrame, fraction: float, total: float) -> float:
    """Mean policy entropy over the logged iterations in the 5% of ``total`` frames that end at ``fraction``."""
    window = train[(train["frames"] > (fraction - 0.05) * total) & (train["frames"] <= fraction * total)]
    return float(window[ENTROPY].mean()) if len(window) else math.nan


def per_seed_table(entry: dict[str, Any], ev: pd.DataFrame, refs: dict[str, Any] | None,
                   train: pd.DataFrame | None = None, count: int = 3) -> tuple[pd.DataFrame, str]:
    """One row per seed of ``entry['label']``: the mean return of each meta-test episode (``entry['episodes']``, by
    default all) over the seed's last ``count`` meta-tests, and, where ``entry['reference']`` names a reference line
    (e.g. GridWorld's ``bayes_optimal``; ``entry['setting']`` picks a protocol's block, e.g. PointRobot's
    ``varibad``), whether every episode is within ``entry['tolerance']`` (a fraction, default 0.1) of it; with a
    line that counts the seeds that are.

    What a seed learned: its episode-1 success, the tasks it never solves in any episode of those meta-tests, its
    policy entropy early, midway and at the end (``train``: the runs' ``train_metrics.csv`` rows), since an early
    collapse of the entropy is one way a seed gets stuck, and, with ``entry['goal_angle_bins']`` (goals on a circle,
    PointRobot), the arc of goals it finds in episode 1."""
    rows = ev[ev["algo"] == entry["label"]]
    if rows.empty:
        return pd.DataFrame(), f"No published runs of {entry['label']}."
    env = str(rows["env"].iloc[0])
    last_episode = int(rows["episode"].max())
    shown = [int(k) for k in entry.get("episodes") or range(1, last_episode + 1) if int(k) <= last_episode]
    reference = entry.get("reference")
    line = (panel_references(refs, env, entry.get("setting"), last_episode).get(str(reference))
            if reference else None)
    tolerance = float(entry.get("tolerance", 0.1))
    seeds_train = None
    if train is not None and ENTROPY in train and not train.empty:
        seeds_train = train[train["algo"] == entry["label"]]
    total = float(rows["frames"].max())
    table = []
    for seed, run in rows.groupby("seed"):
        last = sorted(run["frames"].unique())[-count:]
        recent = run[run["frames"].isin(last)]
        means = recent.groupby("episode")["return"].mean()
        row: dict[str, Any] = {"seed": int(seed), "frames": format_frames(int(last[-1]))}
        row.update({f"ep {k}": round(float(means.get(k, math.nan)), 2) for k in shown})
        if line:
            row["pattern"] = "yes" if all(means.get(k, -math.inf) >= (1 - tolerance) * line[k - 1]
                                          for k in range(1, min(last_episode, len(line)) + 1)) else "no"
        if "success" in recent:
            first = recent[recent["episode"] == 1]
            row["ep 1 success"] = f"{100 * first['success'].astype(float).mean():.0f}%"
            if entry.get("goal_angle_bins"):
                row["ep 1 finds goals at"] = found_arcs(first, int(entry["goal_angle_bins"]))
            else:
                never = goals_never_found(recent)
                row["never solved"] = ", ".join(never) if never else "-"
        if seeds_train is not None:
            mine = seeds_train[seeds_train["seed"] == seed]
            for fraction in ENTROPY_AT:
                row[f"entropy @{format_frames(fraction * total)}"] = f"{entropy_at(mine, fraction, total):.2f}"
        table.append(row)
    out = pd.DataFrame(table)
    meanings = {"never solved": "the tasks no episode of those meta-tests solves",
                "ep 1 finds goals at": "the goal angles where episode 1 succeeds at least half the time"}
    notes = " ".join([f"Each seed's mean over its last {count} meta-tests."]
                     + [f"'{column}': {meaning}." for column, meaning in meanings.items() if column in out]
                     + (["Entropy: the policy's, averaged over the 5% of training before the frame shown."]
                        if seeds_train is not None else []))
    if not reference:
        return out, notes
    if not line:
        return out, f"No reference line {reference!r} for {env}. {notes}"
    reached = int((out["pattern"] == "yes").sum())
    ref = " / ".join(f"{v:.2f}" for v in line[:8]) + (" ..." if len(line) > 8 else "")
    return out, (f"{reached} of {len(out)} seeds reach the {reference} pattern: every episode's return at least "
                 f"{1 - tolerance:.0%} of the reference ({ref}). {notes}")


def goal_angles(tasks: pd.Series) -> np.ndarray:
    """The angle in degrees of each 2-D goal in eval.csv's ``task`` column (``"[x, y]"``)."""
    xy = task_values(tasks)
    return np.degrees(np.arctan2(xy[:, 1], xy[:, 0]))


def success_by_angle(rows: pd.DataFrame, bins: int) -> pd.Series:
    """Success rate of ``rows`` per bin of goal angle over [0, 180] degrees, indexed by the bins' left edges."""
    width = 180.0 / bins
    edges = np.clip(goal_angles(rows["task"]) // width, 0, bins - 1) * width
    return rows["success"].astype(float).groupby(edges).mean().reindex(np.arange(bins) * width)


def found_arcs(rows: pd.DataFrame, bins: int, threshold: float = 0.5) -> str:
    """The arcs of goal angles (bins merged) where ``rows`` (one seed's episode-1 rows) succeed at least
    ``threshold`` of the time: ``"15-120°, 150-180°"``."""
    rate = success_by_angle(rows, bins)
    width = 180.0 / bins
    arcs, start = [], None
    for left, value in rate.items():
        hit = bool(value >= threshold)
        if hit and start is None:
            start = left
        if not hit and start is not None:
            arcs.append((start, left))
            start = None
    if start is not None:
        arcs.append((start, 180.0))
    return ", ".join(f"{a:.0f}-{b:.0f}°" for a, b in arcs) if arcs else f"none (bins of {width:.0f}°)"


def plot_goal_angle(ev: pd.DataFrame, label: str, bins: int, title: str, path: Path, count: int = 3,
                    dpi: int = 150) -> None:
    """Episode-1 (solid) and episode-2 (dashed) success per goal angle, one colour per seed, over each seed's last
    ``count`` meta-tests: the arc of the semicircle a seed searches, and what it misses."""
    fig = Figure(figsize=(7.2, 4.0), layout="constrained")
    ax = fig.subplots()
    width = 180.0 / bins
    for index, (seed, run) in enumerate(ev[ev["algo"] == label].groupby("seed")):
        recent = run[run["frames"].isin(sorted(run["frames"].unique())[-count:])]
        for episode, style in ((1, "-"), (2, "--")):
            rate = success_by_angle(recent[recent["episode"] == episode], bins)
            ax.plot(rate.index + width / 2, 100 * rate.to_numpy(), style, marker="o", ms=3, color=f"C{index % 10}",
                    label=f"seed {seed}, episode {episode}")
    ax.set_xlabel("goal angle on the semicircle (degrees)")
    ax.set_ylabel("success rate (%)")
    ax.set_xlim(0, 180)
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.legend(loc="outside right center", fontsize=8, frameon=False)
    fig.savefig(path, dpi=dpi)


def _draw_per_seed(curves: dict[int, pd.Series], table: pd.DataFrame, ylabel: str, title: str, path: Path,
                   dpi: int, **line: Any) -> None:
    """One line per seed against training frames (``curves``: values indexed by frames), the seeds the per-seed
    ``table`` says miss the pattern drawn bold."""
    stuck = set(table.loc[table["pattern"] == "no", "seed"]) if "pattern" in table else set()
    fig = Figure(figsize=(7.2, 4.0), layout="constrained")
    ax = fig.subplots()
    for index, (seed, curve) in enumerate(curves.items()):
        bold = seed in stuck
        ax.plot(curve.index, curve.to_numpy(), lw=2.0 if bold else 0.9, color=f"C{index % 10}",
                alpha=1.0 if bold else 0.7, label=f"seed {seed}" + (" (misses the pattern)" if bold else ""), **line)
    ax.set_xlabel("training frames")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: format_frames(x)))
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.legend(loc="outside right center", fontsize=8, frameon=False)
    fig.savefig(path, dpi=dpi)


def plot_seed_entropy(train: pd.DataFrame, table: pd.DataFrame, title: str, path: Path, dpi: int = 150) -> bool:
    """The policy entropy of every seed against training frames (a rolling mean), the seeds that miss the pattern
    drawn bold; ``False`` (nothing written) where no run logged its entropy."""
    if ENTROPY not in train or train[ENTROPY].isna().all() or table.empty:
        return False
    curves = {}
    for seed, run in train.groupby("seed"):
        run = run.sort_values("frames")
        curves[int(seed)] = pd.Series(run[ENTROPY].rolling(20, min_periods=1).mean().to_numpy(), index=run["frames"])
    _draw_per_seed(curves, table, "policy entropy (rolling mean of 20 updates)", title, path, dpi)
    return True


def seed_curves(ev: pd.DataFrame, label: str, episode: int = 1) -> tuple[str, dict[int, pd.Series]]:
    """Per seed of ``label``, its episode-``episode`` value over its meta-tests during training (the mean over the
    tasks of each meta-test, indexed by frames): the success rate where any episode of the label succeeded, else the
    return; returns ``(value, curves)``."""
    rows = ev[ev["algo"] == label]
    value = "success" if rows["success"].astype(bool).any() else "return"
    rows = rows[rows["episode"] == episode]
    return value, {int(seed): run.groupby("frames")[value].mean().sort_index() for seed, run in rows.groupby("seed")}


def plot_seed_curves(ev: pd.DataFrame, label: str, table: pd.DataFrame, title: str, path: Path, episode: int = 1,
                     dpi: int = 150) -> bool:
    """Every seed's episode-1 success (or return) against training frames, the seeds that miss the pattern drawn
    bold: where a seed got stuck, or learned and then drifted away; ``False`` (nothing written) without meta-tests."""
    value, curves = seed_curves(ev, label, episode)
    if not curves:
        return False
    scale = 100.0 if value == "success" else 1.0
    _draw_per_seed({seed: scale * curve for seed, curve in curves.items()}, table,
                   f"episode {episode} " + ("success rate (%)" if value == "success" else "return"), title, path,
                   dpi, marker="o", ms=2.5)
    return True
