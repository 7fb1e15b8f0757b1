"""Per-episode meta-test return tables per env: rows algorithm, columns episode 1..K, 95% bootstrap CIs over seeds.

Usage (from the repo root): ``python analysis/tables.py [--env gridworld] [--out results/tables]`` (or
``python -m analysis.tables``). Each cell is ``mean [lo, hi] (n=seeds)``; the ``frames`` column is the evaluation
point used (default: the last one every seed of the algorithm has). Writes per env ``<env>_per_episode.md``,
``.csv`` (the formatted cells), ``.tex`` and ``<env>_per_episode_values.csv`` (the numbers, long format), and
prints the Markdown table.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `analysis` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd

from analysis.load import add_cli_arguments, load_for_cli
from analysis.stats import coverage_notes, format_frames, frames_type, per_episode

LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def format_cell(mean: float, lo: float, hi: float, n: int, decimals: int = 2) -> str:
    """``"9.43 [6.15, 11.07] (n=3)"``; bounds that do not exist (one seed) read ``[n/a]``."""
    if not math.isfinite(mean):
        return f"n/a (n={n})"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{mean:.{decimals}f} [n/a] (n={n})"
    return f"{mean:.{decimals}f} [{lo:.{decimals}f}, {hi:.{decimals}f}] (n={n})"


def episode_table(per_ep: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """The formatted table of one env: columns ``algorithm, frames, ep 1 .. ep K`` (from :func:`per_episode`)."""
    rows = []
    episodes = sorted(per_ep["episode"].unique())
    for algo, group in per_ep.groupby("algo", sort=True):
        lo_f, hi_f = group["frames_min"].iloc[0], group["frames_max"].iloc[0]
        frames = format_frames(lo_f) if lo_f == hi_f else f"{format_frames(lo_f)}-{format_frames(hi_f)}"
        row = {"algorithm": algo, "frames": frames}
        cells = {r.episode: format_cell(r.mean, r.lo, r.hi, int(r.n), decimals) for r in group.itertuples()}
        row.update({f"ep {e}": cells.get(e, "") for e in episodes})
        rows.append(row)
    return pd.DataFrame(rows, columns=["algorithm", "frames", *(f"ep {e}" for e in episodes)])


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table (no ``tabulate`` dependency)."""
    cells = [list(table.columns), *table.astype(str).to_numpy().tolist()]
    widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    rule = "|" + "|".join(":" + "-" * (w + 1) if i < 2 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([lines[0], rule, *lines[1:]]) + "\n"


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(c, c) for c in text)


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_cli_arguments(parser, "results/tables", "folder for the table files")
    parser.add_argument("--frames", type=frames_type, default="common",
                        help="evaluation point: 'common' (the last point every seed of an algorithm has), "
                             "'last' (each seed's last point) or a number of frames (default: common)")
    parser.add_argument("--decimals", type=int, default=2, help="decimals in the cells (default: 2)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results = load_for_cli(args)
    if isinstance(results, int):
        return results
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    for env, ev in results.eval.groupby("env", sort=True):
        per_ep = per_episode(ev, args.frames, n_resamples=args.n_resamples, method=args.ci_method)
        for line in coverage_notes(ev, per_ep, args.frames):
            print(f"note: {env}: {line}", file=sys.stderr)
        if per_ep.empty:
            continue
        table = episode_table(per_ep, args.decimals)
        caption = (f"{env}: mean meta-test return per episode over test tasks, mean over seeds "
                   "[95% studentized-bootstrap CI] (n = seeds)")
        running = int(per_ep.groupby("algo")["n_running"].max().sum())
        if running:
            caption += f"; {running} run(s) still running"
        paths = {kind: args.out / f"{env}_per_episode{kind}" for kind in (".md", ".csv", ".tex", "_values.csv")}
        markdown = f"{caption}\n\n{to_markdown(table)}"
        paths[".md"].write_text(markdown)
        paths[".tex"].write_text(to_latex(table, caption, f"tab:{env}_per_episode"))
        table.to_csv(paths[".csv"], index=False)
        per_ep.to_csv(paths["_values.csv"], index=False)
        print(f"\n## {env}\n\n{markdown}")
        print(f"wrote {', '.join(map(str, paths.values()))}")
        written += 1
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
