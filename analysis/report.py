"""``make report``: every figure and table for the runs present, in one folder, with a Markdown index.

Runs ``plot_returns`` (learning curves, per-episode returns with the GridWorld references), ``tables``
(per-episode tables: Markdown, CSV, LaTeX) and ``belief_pictures`` (for runs holding an exported belief trace),
then writes ``index.md`` linking everything, with the Markdown tables inlined.

    python -m analysis.report [--results results] [--out results/report]
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

from analysis import belief_pictures, plot_returns, publish, tables
from analysis.load import SHIPPED_RESULTS, discover_runs
from records.command_line import command_line


def _capture(fn, argv: list[str]) -> tuple[int, str]:
    """Run a CLI's ``main`` and keep what it printed (the index lists it)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = fn(argv)
    return code, out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--out", type=Path, default=Path("results/report"))
    parser.add_argument("--n-resamples", type=int, default=9999)
    parser.add_argument("--ci-method", default="auto", choices=("auto", "studentized", "percentile", "BCa", "basic"))
    parser.add_argument("--shipped", type=Path, default=SHIPPED_RESULTS,
                        help="published reference runs, drawn next to yours (default: benchmarks/results)")
    parser.add_argument("--no-shipped", action="store_true", help="leave out the shipped reference runs")
    args = parser.parse_args(argv)
    shipped = None if args.no_shipped or not args.shipped.is_dir() else args.shipped
    if not args.results.is_dir() and shipped is None:
        print(f"error: no results folder {args.results} (and no shipped results)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    common = ["--results", str(args.results), "--out", str(args.out), "--n-resamples", str(args.n_resamples),
              "--ci-method", args.ci_method]
    common += ["--no-shipped"] if shipped is None else ["--shipped", str(shipped)]
    plots_code, _ = _capture(plot_returns.main, common)
    tables_code, _ = _capture(tables.main, common)
    with_traces = ([run for run in discover_runs(args.results) if any(run.glob("beliefs_goal*.npz"))]
                   if args.results.is_dir() else [])
    if with_traces:
        _capture(belief_pictures.main, [*map(str, with_traces), "--out", str(args.out)])
    if plots_code != 0 and tables_code != 0:
        return plots_code

    where = f"`{args.results}`" + (f" and the shipped reference runs in `{shipped}` (labels ending \"(shipped)\")"
                                    if shipped is not None else "")
    lines = ["# metarl-bench report", "", f"Runs under {where}. Means over seeds with 95% bootstrap CIs; "
             "n = number of seeds. Regenerate with `make report`.", ""]
    envs = sorted({p.stem.split("_per_episode")[0].split("_ablation_")[0].removesuffix("_runs").removesuffix("_success")
                   for p in args.out.glob("*.md") if p.name != "index.md" and not p.name.startswith("ml1_success")})
    for env in envs:
        lines += [f"## {env}", ""]
        for stem in [f"{env}_per_episode", f"{env}_success",
                     *sorted(p.stem for p in args.out.glob(f"{env}_ablation_*.md"))]:
            table = args.out / f"{stem}.md"
            if not table.exists():
                continue
            if stem != f"{env}_per_episode":
                lines += [f"### {stem.removeprefix(env + '_').replace('_', ' ', 1)}", ""]
            lines += [table.read_text().strip(), "",
                      f"Tables: [{table.name}]({table.name}), [CSV]({stem}.csv), [LaTeX]({stem}.tex)", ""]
            for png in (f"{stem}.png", f"{stem.replace('_per_episode', '')}_learning_curves.png",
                        f"{stem}_per_episode.png", f"{stem}_learning_curves.png"):
                if (args.out / png).exists():
                    lines += [f"![{png}]({png})", ""]
        if (args.out / f"{env}_runs.md").exists():
            lines += [f"Runs (frames, wall time): [{env}_runs.md]({env}_runs.md)", ""]
    if (args.out / "ml1_success.md").exists():
        lines += ["## ML1 success (paper table 1)", "", (args.out / "ml1_success.md").read_text().strip(), ""]
    beliefs = sorted(args.out.glob("*_cells.png"))
    if beliefs:
        lines += ["## Belief pictures (GridWorld, paper fig. 3)", ""]
        for cells in beliefs:
            latent = cells.name.replace("_cells.png", "_latent.png")
            lines += [f"![{cells.name}]({cells.name})", "", f"![{latent}]({latent})", ""]
    if shipped is not None:  # the shipped runs' index, in the report (only publishing writes benchmarks/results/)
        (args.out / "shipped_results.md").write_text(publish.index_table(shipped, args.n_resamples))
        lines += ["## Shipped reference runs", "", "[shipped_results.md](shipped_results.md): their index", ""]
    (args.out / "index.md").write_text("\n".join(lines))
    print(f"wrote {args.out / 'index.md'} ({len(list(args.out.glob('*.png')))} figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
