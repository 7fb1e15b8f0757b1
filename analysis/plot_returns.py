"""Meta-test return figures per env: learning curves and per-episode returns, 95% bootstrap CIs over seeds.

Usage: ``python -m analysis.plot_returns [--env gridworld] [--out results/figures]`` (``make plots``). Writes, per env,

* ``<env>_learning_curves.png``: mean return of meta-test episode k vs training frames, one panel per episode,
  one line per algorithm with its shaded CI; solid where every seed has the point, dashed where fewer do (runs
  at different progress); GridWorld reference values as horizontal lines;
* ``<env>_per_episode.png``: mean return per meta-test episode with CI error bars at one evaluation point per
  algorithm (VariBAD paper fig. 1e / 12b), with the GridWorld reference lines (optimal, Bayes-optimal, posterior
  sampling) read from a JSON file ``{"K6": {"optimal": [...], ...}, ...}`` when it exists.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state
from matplotlib.ticker import FuncFormatter, MaxNLocator

from analysis.load import add_cli_arguments, load_for_cli
from analysis.references import DEFAULT_REFERENCES, load_references, references_for, within_bound
from analysis.stats import (
    ablation_groups,
    aggregate,
    coverage_notes,
    format_frames,
    frames_type,
    per_episode,
)
from analysis.style import label_styles, legend_columns, reference_style
from records.command_line import command_line


def _frames_range(lo: float, hi: float) -> str:
    return format_frames(lo) if lo == hi else f"{format_frames(lo)}-{format_frames(hi)}"


def _algo_label(algo: str, n: int, running: int) -> str:
    extra = f", {running} running" if running else ""
    return f"{algo} (n={n} seed{'s' if n != 1 else ''}{extra})"


def plot_learning_curves(curves: pd.DataFrame, env: str, episodes: list[int], styles: dict[str, dict[str, Any]],
                         refs: dict[str, list[float]], path: Path, dpi: int = 150, what: str = "return") -> None:
    """One panel per meta-test episode: mean return vs frames per algorithm, CI band, n seeds in the legend. Each
    label has its colour and marker (``label_styles``); a dashed tail marks points with fewer seeds."""
    ncols = min(3, len(episodes))
    nrows = math.ceil(len(episodes) / ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.6 * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    any_partial = False
    handles: dict[str, Any] = {}
    for ax, episode in zip(axes, episodes, strict=False):
        for algo, group in curves[curves["episode"] == episode].groupby("algo", sort=True):
            group = group.sort_values("frames")
            n_max = int(group["n"].max())
            full = group[group["n"] == n_max]
            color, marker = styles[algo]["color"], styles[algo]["marker"]
            (line,) = ax.plot(full["frames"], full["mean"], color=color, lw=1.8, marker=marker, ms=3.5,
                              markevery=max(1, len(full) // 12))
            ax.fill_between(full["frames"], full["lo"], full["hi"], color=color, alpha=0.2, lw=0)
            if len(full) < len(group):  # points with fewer seeds: dashed, joined to the last full point
                any_partial = True
                tail = group[group["frames"] >= full["frames"].max()]
                ax.plot(tail["frames"], tail["mean"], color=color, lw=1.2, ls="--", marker=".", ms=3)
            handles.setdefault(_algo_label(algo, n_max, int(group["n_running"].max())), line)
        for index, (name, values) in enumerate(refs.items()):
            if episode <= len(values):
                color, ls, label = reference_style(name, index)
                handles.setdefault(label, ax.axhline(values[episode - 1], color=color, ls=ls, lw=1.0,
                                                        zorder=3))  # above an agent that sits on it
        ax.set_title(f"episode {episode}")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: format_frames(x)))
    for ax in axes[len(episodes):]:
        ax.set_visible(False)
    for ax in axes[::ncols]:
        ax.set_ylabel(f"meta-test {what}")
    for ax in axes[(nrows - 1) * ncols:]:
        ax.set_xlabel("training frames")
        ax.tick_params(labelbottom=True)
    note = "; dashed: fewer seeds (runs at different progress)" if any_partial else ""
    fig.suptitle(f"{env}: meta-test {what} per episode vs training frames\n"
                 f"mean over seeds, shaded 95% bootstrap CI{note}", fontsize=11)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncols=legend_columns(handles, fig.get_figwidth(), 9),
               fontsize=9, frameon=False)
    fig.savefig(path, dpi=dpi)


def plot_per_episode(table: pd.DataFrame, env: str, styles: dict[str, dict[str, Any]], refs: dict[str, list[float]],
                     path: Path, dpi: int = 150, what: str = "return") -> None:
    """Mean return (or success rate) per meta-test episode with CI error bars, one series per algorithm, reference
    lines; the legend below the axes, never on the data."""
    fig = Figure(figsize=(7.2, 4.6 + 0.22 * (table["algo"].nunique() + len(refs))), layout="constrained")
    ax = fig.subplots()
    algos = sorted(table["algo"].unique())
    for i, algo in enumerate(algos):
        group = table[table["algo"] == algo].sort_values("episode")
        x = group["episode"].to_numpy(float) + 0.08 * (i - (len(algos) - 1) / 2)  # dodge overlapping bars
        mean = group["mean"].to_numpy(float)
        yerr = np.vstack([mean - group["lo"].to_numpy(float), group["hi"].to_numpy(float) - mean])
        yerr = np.nan_to_num(yerr, nan=0.0)
        at = _frames_range(group["frames_min"].iloc[0], group["frames_max"].iloc[0])
        label = f"{_algo_label(algo, int(group['n'].max()), int(group['n_running'].max()))} @ {at} frames"
        ax.errorbar(x, mean, yerr=yerr, color=styles[algo]["color"], marker=styles[algo]["marker"], ms=5, capsize=4,
                    lw=1.5, label=label)
    episodes = np.arange(1, int(table["episode"].max()) + 1)
    for index, (name, values) in enumerate(refs.items()):
        color, ls, label = reference_style(name, index)
        k = min(len(values), len(episodes))
        ax.plot(episodes[:k], values[:k], color=color, ls=ls, lw=1.4, marker="_", ms=12, label=label,
                zorder=3)  # drawn above an agent that reaches it (the oracle on 'optimal')
    ax.set_xlabel("meta-test episode")
    ax.set_ylabel(f"mean {what} (over test tasks)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.set_title(f"{env}\nper-episode meta-test {what}, mean over seeds, 95% bootstrap CI", fontsize=10)
    # one column below the axes: long labels never run off the figure, and nothing covers the data
    fig.legend(fontsize=8, loc="outside lower center", ncols=1, frameon=False)
    fig.savefig(path, dpi=dpi)


def build_parser() -> argparse.ArgumentParser:
    parser = command_line(__doc__)
    add_cli_arguments(parser, "results/figures", "folder for the PNG files")
    parser.add_argument("--episode", nargs="+", type=int,
                        help="meta-test episode(s) for the learning curves, one panel each (default: all)")
    parser.add_argument("--frames", type=frames_type, default="common",
                        help="evaluation point of the per-episode plot: 'common' (the last point every seed of an "
                             "algorithm has), 'last' (each seed's last point) or a number of frames (default: common)")
    parser.add_argument("--references", type=Path, nargs="+", default=DEFAULT_REFERENCES,
                        help="reference-line JSON files ({'K6': {'optimal': [...], ...}}, per env); skipped with a "
                             "note if missing (default: records/reference_data/{gridworld,pointrobot}_references.json)")
    parser.add_argument("--no-references", action="store_true", help="draw no reference lines")
    parser.add_argument("--dpi", type=int, default=150, help="PNG resolution (default: 150)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results = load_for_cli(args)
    if isinstance(results, int):
        return results
    refs_all, note = load_references(None if args.no_references else args.references)
    if note:
        print(f"note: {note}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    ci = {"n_resamples": args.n_resamples, "method": args.ci_method}
    written = 0
    for env, ev_env in results.eval.groupby("env", sort=True):
        # runs meta-tested under different protocols (horizon, episodes, task set) never share an axis
        protocols = sorted(ev_env["protocol"].unique(), key=lambda p: (p != "", p))
        for index, protocol in enumerate(protocols):
            ev_protocol = ev_env[ev_env["protocol"] == protocol]
            tag = "" if index == 0 else f"_protocol{index + 1}"
            name = f"{env} [{protocol}]" if protocol else env
            groups = ablation_groups(ev_protocol["algo"].unique())
            in_groups = {label for labels in groups.values() for label in labels}
            sections = [(tag, ev_protocol[~ev_protocol["algo"].isin(in_groups)], name)]
            sections += [(f"{tag}_ablation_{group}", ev_protocol[ev_protocol["algo"].isin(labels)],
                          f"{name} ablation {group}") for group, labels in groups.items()]
            for suffix, ev, title in sections:
                if ev.empty:
                    continue
                refs = refs_all if "_ablation_" not in suffix else None
                written += plot_env(ev, env, suffix, title, args, refs, ci, protocol)
    return 0 if written else 1


def plot_env(ev: pd.DataFrame, env: str, suffix: str, title: str, args: argparse.Namespace,
             refs_all: dict[str, Any] | None, ci: dict[str, Any], protocol: str = "") -> int:
    """The learning curves and the per-episode figure of one env under one protocol (or one ablation of it); the
    number written."""
    written = 0
    # per figure: every agent in its own hue, the first label of an agent in its full colour, further ones in shades
    # and with markers of their own
    styles = label_styles(ev["algo"].unique())
    n_episodes = int(ev["episode"].max())
    refs, note = references_for(refs_all, env, n_episodes, protocol=protocol)
    if note:
        print(f"note: {note}", file=sys.stderr)
    episodes = sorted(args.episode) if args.episode else list(range(1, n_episodes + 1))
    missing = [e for e in episodes if e not in set(ev["episode"])]
    if missing:
        print(f"note: {env}: no meta-test episode(s) {missing} (K={n_episodes}); left out", file=sys.stderr)
        episodes = [e for e in episodes if e not in missing]
    if episodes:
        # where no policy exceeds a reference line (GridWorld's known-goal optimum), neither does a mean's interval
        curves = within_bound(aggregate(ev[ev["episode"].isin(episodes)], **ci), refs_all, env, ev, protocol)
        path = args.out / f"{env}{suffix}_learning_curves.png"
        plot_learning_curves(curves, title, episodes, styles, refs, path, args.dpi)
        print(f"wrote {path}: learning curves, episode(s) {', '.join(map(str, episodes))}, "
              f"{curves['frames'].nunique()} evaluation points")
        written += 1
    table = within_bound(per_episode(ev, args.frames, **ci), refs_all, env, ev, protocol)
    for line in coverage_notes(ev, table, args.frames):
        print(f"note: {env}: {line}", file=sys.stderr)
    if table.empty:
        print(f"note: {env}: no run has the evaluation point --frames {args.frames}; no per-episode plot",
              file=sys.stderr)
        return written
    path = args.out / f"{env}{suffix}_per_episode.png"
    plot_per_episode(table, title, styles, refs, path, args.dpi)
    where = "; ".join(f"{a} at {_frames_range(lo, hi)} frames (n={n})" for a, lo, hi, n in
                      table.groupby("algo")[["frames_min", "frames_max", "n"]].max().itertuples())
    print(f"wrote {path}: per-episode returns, {where}" + (f", references: {', '.join(refs)}" if refs else ""))
    written += 1
    if env.startswith("ml1_"):  # Meta-World's metric is success: its figures too
        written += plot_success(ev, env, suffix, title, args, styles, ci, episodes)
    return written


def plot_success(ev: pd.DataFrame, env: str, suffix: str, title: str, args: argparse.Namespace,
                 styles: dict[str, dict[str, Any]], ci: dict[str, Any], episodes: list[int]) -> int:
    """The success rate (%) per meta-test episode: learning curves and the per-episode figure."""
    def percent(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(**{c: 100 * frame[c] for c in ("mean", "lo", "hi")})

    written = 0
    if episodes:
        curves = percent(aggregate(ev[ev["episode"].isin(episodes)], value="success", **ci))
        path = args.out / f"{env}{suffix}_success_learning_curves.png"
        plot_learning_curves(curves, title, episodes, styles, {}, path, args.dpi, what="success rate (%)")
        print(f"wrote {path}: success rate learning curves")
        written += 1
    table = per_episode(ev, args.frames, value="success", **ci)
    if not table.empty:
        path = args.out / f"{env}{suffix}_success_per_episode.png"
        plot_per_episode(percent(table), title, styles, {}, path, args.dpi, what="success rate (%)")
        print(f"wrote {path}: per-episode success rate")
        written += 1
    return written


if __name__ == "__main__":
    sys.exit(main())
