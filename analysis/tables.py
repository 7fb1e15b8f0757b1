"""Meta-test tables per env: rows algorithm, columns episode 1..K, 95% bootstrap CIs over seeds.

Usage: ``python -m analysis.tables [--env gridworld] [--out results/tables]`` (``make tables``). Each cell is
``mean [lo, hi] (n=seeds)``; the ``frames`` column is the evaluation point used (default: the last one every seed
of the algorithm has) and ``wall/run`` the median wall time of a run (range over runs). Written per env, each as
``.md``, ``.csv`` (formatted cells), ``.tex`` and ``_values.csv`` (the numbers, long format):

* ``<env>_per_episode``: every algorithm that is not an ablation variant, with the GridWorld reference values
  (optimal, Bayes-optimal, posterior sampling; exact) as rows;
* ``<env>_ablation_<group>``: the variants of one ablation sweep (labels ``<algo>_<ablation>-<variant>``, e.g.
  ``varibad_decode-past``; paper fig. 6, 8/9, 11, 17);
* ``<env>_success``: where the env reports success (PointRobot: within the goal radius; GridWorld: on the goal),
  the success rate in % per episode of every non-ablation algorithm (ML1: ``ml1_success``);
* ``<env>_runs``: one row per run: algorithm, seed, status, frames, wall time;
* ``ml1_success`` (all ``ml1_*`` envs together, paper table 1): success rate per episode per task and algorithm,
  and how many seeds succeeded at all, with the paper's numbers beside ours (rows ``paper: ...``,
  ``analysis/paper_values.py``).

The Markdown tables are also printed.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from analysis.load import add_cli_arguments, load_for_cli
from analysis.paper_values import ML1_TABLE_1, ML1_TABLE_1_SEEDS, ML1_TABLE_1_SOURCE
from analysis.references import DEFAULT_REFERENCES, load_references, references_for, within_bound
from analysis.stats import ablation_groups, coverage_notes, format_frames, frames_type, per_episode
from records.command_line import command_line

LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


CI_NAMES = {"auto": "bootstrap (studentized for n >= 4, percentile for n <= 3)", "studentized": "studentized-bootstrap",
            "percentile": "percentile-bootstrap", "BCa": "BCa-bootstrap", "basic": "basic-bootstrap"}


def decimals_for(values: object, requested: int = 2) -> int:
    """Decimals that suit the scale of ``values``: ``requested`` below 100, none from 100 on (a return near 1000 reads
    ``812``, not ``812.37``)."""
    finite = [abs(float(v)) for v in pd.Series(values, dtype=float) if math.isfinite(v)]
    largest = max(finite, default=0.0)
    return 0 if largest >= 100 else requested


def format_cell(mean: float, lo: float, hi: float, n: int | None = None, decimals: int = 2) -> str:
    """``"9.43 [6.15, 11.07]"`` (``" (n=3)"`` after it where ``n`` is given: tables that say n once leave it out);
    bounds that do not exist (one seed) read ``[n/a]``."""
    tail = "" if n is None else f" (n={n})"
    if not math.isfinite(mean):
        return f"n/a{tail}"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{mean:.{decimals}f} [n/a]{tail}"
    return f"{mean:.{decimals}f} [{lo:.{decimals}f}, {hi:.{decimals}f}]{tail}"


def format_wall_times(seconds: pd.Series) -> str:
    """Median wall time of the runs in minutes, with the range: ``"54 min (47-58)"``; ``""`` when unknown."""
    minutes = seconds.dropna().astype(float) / 60.0
    if minutes.empty:
        return ""
    if len(minutes) == 1 or round(minutes.min()) == round(minutes.max()):
        return f"{minutes.median():.0f} min"
    return f"{minutes.median():.0f} min ({minutes.min():.0f}-{minutes.max():.0f})"


#: the episodes a table of many meta-test episodes shows (PointRobot's 30), besides the last
SPARSE_EPISODES = (1, 2, 3, 5, 10, 20, 30)
#: up to this many episodes a table shows every one (GridWorld's 6, the training BAMDP's 4 among them)
ALL_EPISODES_UP_TO = 10


def shown_episodes(episodes: object) -> list[int]:
    """The episodes a table shows: every one up to :data:`ALL_EPISODES_UP_TO`, else :data:`SPARSE_EPISODES` and the
    last."""
    have = sorted({int(k) for k in pd.Series(episodes)})
    if len(have) <= ALL_EPISODES_UP_TO:
        return have
    return sorted({k for k in SPARSE_EPISODES if k in have} | {have[-1]})


def episode_table(per_ep: pd.DataFrame, decimals: int = 2, wall: dict[str, str] | None = None,
                  scale: float = 1.0, episodes: list[int] | None = None) -> pd.DataFrame:
    """The formatted table of one env: columns ``algorithm, n, frames, [wall/run,] ep 1 .. ep K`` (from
    :func:`per_episode`; n = seeds, said once per row); ``wall`` maps algorithm -> wall time text; ``scale``
    multiplies values (100: percent); ``episodes`` picks the columns (default: every episode). Decimals follow the
    values' scale (:func:`decimals_for`)."""
    rows = []
    episodes = sorted(per_ep["episode"].unique()) if episodes is None else list(episodes)
    decimals = decimals_for(scale * per_ep["mean"], decimals)
    for algo, group in per_ep.groupby("algo", sort=True):
        lo_f, hi_f = group["frames_min"].iloc[0], group["frames_max"].iloc[0]
        frames = format_frames(lo_f) if lo_f == hi_f else f"{format_frames(lo_f)}-{format_frames(hi_f)}"
        counts = sorted({int(n) for n in group["n"]})
        row = {"algorithm": algo, "n": "/".join(map(str, counts)), "frames": frames}
        if wall is not None:
            row["wall/run"] = wall.get(algo, "")
        cells = {r.episode: format_cell(scale * r.mean, scale * r.lo, scale * r.hi, None, decimals)
                 for r in group.itertuples()}
        row.update({f"ep {e}": cells.get(e, "") for e in episodes})
        rows.append(row)
    head = ["algorithm", "n", "frames", *(["wall/run"] if wall is not None else [])]
    return pd.DataFrame(rows, columns=[*head, *(f"ep {e}" for e in episodes)])


def reference_rows(refs: dict[str, list[float]], columns: list[str], decimals: int = 2,
                   frames: str = "exact") -> pd.DataFrame:
    """Rows ``reference: <name>`` with the reference's per-episode values, in the columns of an episode table
    (``frames`` says how they were obtained: ``exact`` for GridWorld's, ``computed`` for rollouts)."""
    rows = []
    for name, values in refs.items():
        row = dict.fromkeys(columns, "")
        row.update({"algorithm": f"reference: {name}", "frames": frames})
        decimals = decimals_for(values, decimals)
        for k, value in enumerate(values, start=1):
            if f"ep {k}" in row:
                row[f"ep {k}"] = f"{value:.{decimals}f}"
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: algorithm, seed, status, frames done, wall time, run id."""
    out = runs.sort_values(["algo", "seed", "run_id"])
    return pd.DataFrame({
        "algorithm": out["algo"], "seed": out["seed"], "status": out["status"],
        "frames": [format_frames(float(f)) if f is not None and f == f else "" for f in out["frames"]],
        "wall time": [f"{w / 60:.1f} min" if w is not None and w == w else "" for w in out["wall_time_s"]],
        "run": out["run_id"],
    })


def ml1_success_table(evals: pd.DataFrame, frames: int | str, decimals: int, **ci: object) -> pd.DataFrame:
    """Paper table 1: per (ML1 task, algorithm) the success rate in % per meta-test episode (mean over seeds of the
    fraction of test tasks solved, [CI], n), and ``seeds with success``: how many seeds solved any test task in
    any episode at that evaluation point (did the seed learn anything)."""
    parts = []
    for env, ev in evals.groupby("env", sort=True):
        per_ep = per_episode(ev, frames, value="success", **ci)  # type: ignore[arg-type]
        if per_ep.empty:
            continue
        table = episode_table(per_ep, decimals, scale=100.0)
        chosen = ev.merge(per_ep[["algo", "frames_min", "frames_max"]].drop_duplicates(), on="algo")
        chosen = chosen[(chosen["frames"] >= chosen["frames_min"]) & (chosen["frames"] <= chosen["frames_max"])]
        per_seed = chosen.groupby(["algo", "run_id"])["success"].any().groupby("algo")
        learned = {algo: f"{int(s.sum())}/{len(s)}" for algo, s in per_seed}
        task = env.removeprefix("ml1_")
        table.insert(0, "task", task)
        table.insert(3, "seeds with success", table["algorithm"].map(learned))
        parts.append(pd.concat([table, paper_rows(task, list(table.columns))], ignore_index=True))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def paper_rows(task: str, columns: list[str]) -> pd.DataFrame:
    """The published success rates of ``task`` (``analysis/paper_values.py``: VariBAD table 1) as rows of the ML1
    table: algorithm ``paper: <method>``, frames ``paper``, the values in the episodes the paper reports (episodes
    the table has no column for are left out)."""
    rows = []
    for method, by_episode in ML1_TABLE_1.get(task, {}).items():
        row = dict.fromkeys(columns, "")
        row.update({"task": task, "algorithm": f"paper: {method}", "frames": "paper",
                    "seeds with success": ML1_TABLE_1_SEEDS.get(task, {}).get(method, "")})
        row.update({f"ep {k}": f"{v:.0f}" for k, v in by_episode.items() if f"ep {k}" in columns})
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table (no ``tabulate`` dependency)."""
    cells = [list(table.columns), *table.astype(str).to_numpy().tolist()]
    widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    rule = "|" + "|".join(":" + "-" * (w + 1) if i < 2 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([lines[0], rule, *lines[1:]]) + "\n"


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(c, c) for c in text)


#: the episodes a LaTeX table shows (and the last one): a page holds about six columns of "mean [lo, hi]"
LATEX_EPISODES = (1, 2, 3, 5)
#: the longest algorithm label a LaTeX table prints (longer ones are cut with "...")
LATEX_LABEL = 22


def for_the_page(table: pd.DataFrame) -> pd.DataFrame:
    """The table a page can hold: the episode columns of :data:`LATEX_EPISODES` and the last one, the wall time and
    run columns dropped, labels cut to :data:`LATEX_LABEL` characters."""
    episodes = [c for c in table.columns if c.startswith("ep ")]
    keep_eps = [c for c in episodes if int(c.split()[1]) in LATEX_EPISODES] + episodes[-1:]
    columns = [c for c in table.columns if not c.startswith("ep ") and c not in ("wall/run", "run")]
    out = table[columns + list(dict.fromkeys(keep_eps))].copy()
    if "algorithm" in out:
        out["algorithm"] = [a if len(a) <= LATEX_LABEL else a[:LATEX_LABEL - 3] + "..." for a in out["algorithm"]]
    return out


def latex_table(table: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs ``table`` environment written by hand (what ``DataFrame.to_latex`` gives, without jinja2)."""
    spec = "ll" + "c" * (len(table.columns) - 2)
    header = " & ".join(latex_escape(str(c)) for c in table.columns) + r" \\"
    body = [" & ".join(latex_escape(str(v)) for v in row) + r" \\" for row in table.itertuples(index=False)]
    return "\n".join([r"\begin{table}", r"\centering", f"\\caption{{{latex_escape(caption)}}}",
                      f"\\label{{{label}}}", f"\\begin{{tabular}}{{{spec}}}", r"\toprule", header, r"\midrule",
                      *body, r"\bottomrule", r"\end{tabular}", r"\end{table}"]) + "\n"


def to_latex(table: pd.DataFrame, caption: str, label: str) -> str:
    """``DataFrame.to_latex`` where jinja2 is installed, else :func:`latex_table`."""
    try:
        import jinja2  # noqa: F401  (pandas' to_latex needs it)
    except ImportError:
        return latex_table(table, caption, label)
    return table.to_latex(index=False, escape=True, caption=caption, label=label,
                          column_format="ll" + "c" * (len(table.columns) - 2), position=None)


def build_parser() -> argparse.ArgumentParser:
    parser = command_line(__doc__)
    add_cli_arguments(parser, "results/tables", "folder for the table files")
    parser.add_argument("--frames", type=frames_type, default="common",
                        help="evaluation point: 'common' (the last point every seed of an algorithm has), "
                             "'last' (each seed's last point) or a number of frames (default: common)")
    parser.add_argument("--decimals", type=int, default=2, help="decimals in the cells (default: 2)")
    parser.add_argument("--references", type=Path, nargs="+", default=DEFAULT_REFERENCES,
                        help="reference JSON files (default: "
                             "records/reference_data/{gridworld,pointrobot}_references.json)")
    return parser


def write_table(table: pd.DataFrame, values: pd.DataFrame | None, out: Path, stem: str, caption: str) -> str:
    """Write ``<stem>.md/.csv/.tex`` (and ``<stem>_values.csv``); return the Markdown."""
    markdown = f"{caption}\n\n{to_markdown(table)}"
    (out / f"{stem}.md").write_text(markdown)
    (out / f"{stem}.tex").write_text(to_latex(for_the_page(table), caption, f"tab:{stem}"))
    table.to_csv(out / f"{stem}.csv", index=False)
    if values is not None:
        values.to_csv(out / f"{stem}_values.csv", index=False)
    print(f"\n## {stem}\n\n{markdown}")
    return markdown


def protocol_sections(evals: pd.DataFrame) -> list[tuple[str, str, str, pd.DataFrame]]:
    """``(env, protocol, file tag, rows)`` per env and meta-test protocol: runs evaluated under different protocols
    (horizon, episodes, task set) are never in one table. The env's default protocol (or its first) has no tag."""
    sections = []
    for env, ev_env in evals.groupby("env", sort=True):
        protocols = sorted(ev_env["protocol"].unique(), key=lambda p: (p != "", p))
        for index, protocol in enumerate(protocols):
            sections.append((env, protocol, "" if index == 0 else f"_protocol{index + 1}",
                             ev_env[ev_env["protocol"] == protocol]))
    return sections


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results = load_for_cli(args)
    if isinstance(results, int):
        return results
    args.out.mkdir(parents=True, exist_ok=True)
    refs_all, note = load_references(args.references)
    if note:
        print(f"note: {note}", file=sys.stderr)
    ci = {"n_resamples": args.n_resamples, "method": args.ci_method}
    written = 0
    for env, protocol, tag, ev in protocol_sections(results.eval):
        runs = results.runs[(results.runs["env"] == env) & (results.runs["protocol"] == protocol)]
        shown = f"{env} [{protocol}]" if protocol else env  # the caption says which protocol
        wall = {algo: format_wall_times(group["wall_time_s"]) for algo, group in runs.groupby("algo")}
        groups = ablation_groups(ev["algo"].unique())
        in_groups = {label for labels in groups.values() for label in labels}
        main_rows = ev[~ev["algo"].isin(in_groups)]
        sections = [("per_episode", main_rows, "mean meta-test return per episode")]
        sections += [(f"ablation_{name}", ev[ev["algo"].isin(labels)], f"ablation {name}: mean meta-test return")
                     for name, labels in groups.items()]
        for stem, rows, title in sections:
            if rows.empty:
                continue
            per_ep = within_bound(per_episode(rows, args.frames, **ci), refs_all, env, rows, protocol)
            for line in coverage_notes(rows, per_ep, args.frames):
                print(f"note: {env}: {line}", file=sys.stderr)
            if per_ep.empty:
                continue
            table = episode_table(per_ep, args.decimals, wall)
            if stem == "per_episode":
                refs, ref_note = references_for(refs_all, env, int(per_ep["episode"].max()), protocol=protocol)
                if ref_note:
                    print(f"note: {ref_note}", file=sys.stderr)
                how = "exact" if env.startswith("gridworld") else "computed"
                table = pd.concat([table, reference_rows(refs, list(table.columns), args.decimals, how)],
                                  ignore_index=True)
            caption = (f"{shown}: {title} over test tasks, mean over seeds [95% {CI_NAMES[args.ci_method]} CI] "
                       "(n = seeds); wall/run: median wall time of a run (range)")
            running = int(per_ep.groupby("algo")["n_running"].max().sum())
            if running:
                caption += f"; {running} run(s) still running"
            write_table(table, per_ep, args.out, f"{env}{tag}_{stem}", caption)
            written += 1
        if not env.startswith("ml1_") and main_rows["success"].astype(bool).any():
            per_ep = per_episode(main_rows, args.frames, value="success", **ci)  # type: ignore[arg-type]
            if not per_ep.empty:
                table = episode_table(per_ep, max(args.decimals - 2, 0), wall, scale=100.0)
                refs, _ = references_for(refs_all, env, int(per_ep["episode"].max()), key="success_K",
                                         protocol=protocol)
                refs = {name: [100.0 * v for v in values] for name, values in refs.items()}
                table = pd.concat([table, reference_rows(refs, list(table.columns), max(args.decimals - 2, 0),
                                                         "computed")], ignore_index=True)
                write_table(table, per_ep, args.out,
                            f"{env}{tag}_success", f"{shown}: meta-test success rate (%) per episode: mean over "
                            "seeds of the fraction of test tasks solved in that episode "
                            f"[95% {CI_NAMES[args.ci_method]} CI] (n = seeds)")
                written += 1
        write_table(runs_table(runs), None, args.out, f"{env}{tag}_runs", f"{shown}: runs (frames done, wall time)")
    ml1 = results.eval[results.eval["env"].str.startswith("ml1_")]
    if not ml1.empty:
        table = ml1_success_table(ml1, args.frames, max(args.decimals - 2, 0), **ci)
        if not table.empty:
            write_table(table, None, args.out, "ml1_success",
                        "ML1 meta-test success rate (%) per episode: mean over seeds of the fraction of the 50 test "
                        f"tasks solved [95% {CI_NAMES[args.ci_method]} CI] (n = seeds); seeds with success: seeds "
                        f"that solved any test task in any episode; rows 'paper: ...': {ML1_TABLE_1_SOURCE}")
            written += 1
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
