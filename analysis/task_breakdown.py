"""Meta-test returns per kind of task, for the envs whose average over tasks hides what matters.

* ``cheetah_dir``: per direction. A policy that does not infer the direction can at best run one way, which
  averages about 0 over the two tasks; one that infers it within episode 1 is positive in both directions already
  in episode 1. Where a run folder holds ``direction_inference.json`` (written by
  ``python -m tools.direction_inference RUN``), the step of episode 1 from which the cheetah runs the task's
  way is shown too.
* ``cheetah_vel``: the episode returns next to the best a task-agnostic policy can do on the same targets,
  ``-H mean_i |g_i - median(g)|`` (``algorithms/references/cheetah_vel.py``; ``H`` from its reference file),
  computed per run from the targets in its ``eval.csv``.

Values are the mean over each run's last ``last`` meta-tests that every run of the (env, label) has (a single final
meta-test is noisy: report the mean of the last few evaluations, never the best one), then the mean over seeds with
its bootstrap CI.

    python -m analysis.task_breakdown [--root results] [--env cheetah_dir] [--last 3]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.load import Results, load_results
from analysis.references import DEFAULT_REFERENCES, load_references
from analysis.stats import common_frames, format_frames, mean_ci
from analysis.tables import format_cell, to_markdown
from records.command_line import command_line

#: the envs this module breaks down
ENVS = ("cheetah_dir", "cheetah_vel")
#: meta-test episodes shown
EPISODES = (1, 2)
#: evaluations averaged per run
LAST = 3


def task_values(tasks: pd.Series) -> np.ndarray:
    """The ``task`` column of ``eval.csv`` (JSON lists) as an array of shape (rows, task_dim)."""
    return np.array([json.loads(t) for t in tasks], dtype=np.float64).reshape(len(tasks), -1)


def direction_name(direction: float) -> str:
    return "forward (+1)" if direction > 0 else "backward (-1)"


def last_common_frames(eval_df: pd.DataFrame, last: int) -> pd.DataFrame:
    """The rows of the last ``last`` evaluation points that every run of each (env, algo) has."""
    kept = []
    for _, group in eval_df.groupby(["env", "algo"], sort=True):
        kept.append(group[group["frames"].isin(common_frames(group)[-last:])])
    return pd.concat(kept, ignore_index=True) if kept else eval_df.iloc[0:0]


def per_seed_by_group(eval_df: pd.DataFrame, group_of: Callable[[pd.DataFrame], pd.Series], last: int = LAST,
                      episodes: tuple[int, ...] = EPISODES) -> pd.DataFrame:
    """One row per (env, algo, group, episode, run): the run's mean return over its last ``last`` common meta-tests
    and over the tasks of the group. ``group_of(rows)`` names each row's group."""
    rows = last_common_frames(eval_df[eval_df["episode"].isin(episodes)], last)
    rows = rows.assign(group=group_of(rows).to_numpy())
    keys = ["env", "algo", "group", "episode", "run_id", "seed"]
    out = rows.groupby(keys, sort=True).agg(value=("return", "mean"), frames_min=("frames", "min"),
                                            frames_max=("frames", "max"), evaluations=("frames", "nunique"))
    return out.reset_index()


def summarise(per_seed: pd.DataFrame, **ci: object) -> pd.DataFrame:
    """Mean over seeds with CI, and the lowest seed, per (env, algo, group, episode)."""
    rows = []
    for key, group in per_seed.groupby(["env", "algo", "group", "episode"], sort=True):
        mean, lo, hi = mean_ci(group["value"], **ci)  # type: ignore[arg-type]
        rows.append((*key, mean, lo, hi, len(group), float(group["value"].min()), int(group["frames_min"].min()),
                     int(group["frames_max"].max()), int(group["evaluations"].min())))
    return pd.DataFrame(rows, columns=["env", "algo", "group", "episode", "mean", "lo", "hi", "n", "seed_min",
                                       "frames_min", "frames_max", "evaluations"])


def _frames_text(summary: pd.DataFrame) -> str:
    # in frame order, not text order ("500k" sorts after "1M")
    points = [format_frames(float(summary["frames_min"].min())), format_frames(float(summary["frames_max"].max()))]
    return " to ".join(dict.fromkeys(points))


#: a run whose ``direction_inference.json`` has no settling step for the episode (written before per-episode lists)
NOT_MEASURED = "-"


def settling_steps(results: Results, env: str, algo: str, episode: int = 1) -> dict[str, list[int | str | None]]:
    """Per direction, each run's settling step in ``episode`` from its ``direction_inference.json`` (runs without one:
    none; ``None``: never settles; :data:`NOT_MEASURED`: the file has no value for that episode)."""
    steps: dict[str, list[int | str | None]] = {}
    for run in results.runs[(results.runs["env"] == env) & (results.runs["algo"] == algo)].itertuples():
        path = Path(run.path) / "direction_inference.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        for direction, d in data.get("directions", {}).items():
            per_episode = d.get("settling_steps", [d.get("settling_step")])
            step = per_episode[episode - 1] if episode <= len(per_episode) else NOT_MEASURED
            steps.setdefault(direction_name(float(direction)), []).append(step)
    return steps


def direction_table(results: Results, last: int = LAST, **ci: object) -> pd.DataFrame:
    """cheetah_dir: per algorithm and direction, episode 1 and 2 returns, the lowest seed, the settling steps."""
    ev = results.eval[results.eval["env"] == "cheetah_dir"]
    if ev.empty:
        return pd.DataFrame()
    per_seed = per_seed_by_group(ev, lambda rows: pd.Series(
        [direction_name(d) for d in task_values(rows["task"])[:, 0]]), last)
    summary = summarise(per_seed, **ci)
    table = []
    for (algo, group), block in summary.groupby(["algo", "group"], sort=True):
        row = {"algorithm": algo, "direction": group, "meta-tests": f"last {int(block['evaluations'].min())} "
               f"({_frames_text(block)})"}
        for r in block.itertuples():
            row[f"ep {r.episode}"] = format_cell(r.mean, r.lo, r.hi, int(r.n), 0)
        ep1 = block[block["episode"] == 1]
        row["ep 1, lowest seed"] = f"{ep1['seed_min'].iloc[0]:.0f}" if len(ep1) else ""
        for episode in (1, 2):
            steps = settling_steps(results, "cheetah_dir", algo, episode).get(group)
            row[f"settling step, ep {episode} (per seed)"] = ", ".join(
                "never" if s is None else str(s) for s in steps) if steps else ""
        table.append(row)
    return pd.DataFrame(table)


def task_agnostic_bound(goals: np.ndarray, horizon: int) -> float:
    """``-H mean |g - median(g)|``: the bound on a task-agnostic policy's mean episode return over the targets
    ``goals`` (the derivation: ``algorithms/references/cheetah_vel.py``)."""
    goals = np.asarray(goals, dtype=np.float64).reshape(-1)
    return float(-horizon * np.mean(np.abs(goals - np.median(goals))))


def velocity_table(results: Results, references: dict | None, last: int = LAST, **ci: object) -> pd.DataFrame:
    """cheetah_vel: per algorithm, episode returns over all targets next to the task-agnostic bound on the same
    targets, and in how many seeds episode 1 is above it."""
    ev = results.eval[results.eval["env"] == "cheetah_vel"]
    if ev.empty:
        return pd.DataFrame()
    refs = (references or {}).get("cheetah_vel")
    if not isinstance(refs, dict) or not isinstance(refs.get("horizon"), int):
        raise ValueError("cheetah_vel needs its reference file (records/reference_data/cheetah_vel_references.json, "
                         "`make references`) for the episode length H of the bound")
    horizon = refs["horizon"]
    per_seed = per_seed_by_group(ev, lambda rows: pd.Series(["all targets"] * len(rows)), last)
    bounds = {}
    for run_id, rows in ev.groupby("run_id"):
        final = rows[rows["frames"] == rows["frames"].max()].drop_duplicates("task_id")
        bounds[run_id] = task_agnostic_bound(task_values(final["task"])[:, 0], horizon)
    per_seed["bound"] = per_seed["run_id"].map(bounds)
    table = []
    for algo, block in per_seed.groupby("algo", sort=True):
        summary = summarise(block, **ci)
        row = {"algorithm": algo, "meta-tests": f"last {int(summary['evaluations'].min())} ({_frames_text(summary)})"}
        for r in summary.itertuples():
            row[f"ep {r.episode}"] = format_cell(r.mean, r.lo, r.hi, int(r.n), 1)
        ep1 = block[block["episode"] == 1]
        row["task-agnostic bound (same targets)"] = f"{ep1['bound'].mean():.1f}"
        row["seeds with ep 1 above it"] = f"{int((ep1['value'] > ep1['bound']).sum())} of {len(ep1)}"
        table.append(row)
    return pd.DataFrame(table)


def breakdown_markdown(results: Results, references: dict | None, last: int = LAST, **ci: object) -> dict[str, str]:
    """The Markdown tables per env (only envs with runs), with a one-line caption each."""
    out = {}
    directions = direction_table(results, last, **ci)
    if not directions.empty:
        out["cheetah_dir"] = ("Per direction: mean return over each run's last meta-tests, mean over seeds [95% "
                              "bootstrap CI]; settling step: the step of the episode from which the 10-step mean "
                              "velocity keeps the task's sign (`python -m tools.direction_inference`; PEARL "
                              "acts on a prior z in episode 1 and adapts from episode 2, Algorithm 2).\n\n"
                              + to_markdown(directions))
    velocities = velocity_table(results, references, last, **ci)
    if not velocities.empty:
        out["cheetah_vel"] = ("Mean return over each run's last meta-tests, mean over seeds [95% bootstrap CI], next "
                              "to the best a policy that ignores the target can do on the same targets "
                              "(`algorithms/references/cheetah_vel.py`).\n\n" + to_markdown(velocities))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument("--root", type=Path, default=Path("results"))
    parser.add_argument("--env", choices=ENVS, action="append", help="default: both")
    parser.add_argument("--last", type=int, default=LAST, help="meta-tests averaged per run (default 3)")
    parser.add_argument("--references", type=Path, nargs="+", default=DEFAULT_REFERENCES)
    args = parser.parse_args(argv)
    results = load_results(args.root, include_running=False, envs=args.env or ENVS)
    references, note = load_references(args.references)
    if note:
        print(f"note: {note}", file=sys.stderr)
    tables = breakdown_markdown(results, references, args.last)
    if not tables:
        print(f"no completed {' or '.join(args.env or ENVS)} runs under {args.root}")
    for env, text in tables.items():
        print(f"## {env}\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
