"""GridWorld belief pictures (VariBAD paper fig. 3), drawn from a run's exported belief trace.

Reads ``beliefs_goal<x>_<y>.npz`` files that ``python -m tools.export_beliefs RUN_DIR`` wrote into a
run folder (this module reads files only). Per trace, two PNGs:

* ``<run>_beliefs_goal<x>_<y>.png``: the decoder's reward probability per cell (red = likely goal) at every step
  of the first episode and the first steps of the second, with the path walked so far and the true goal;
* ``<run>_latent_goal<x>_<y>.png``: the belief's mean and standard deviation per latent dimension over the whole
  rollout, episode boundaries dashed.

    python -m analysis.belief_pictures RUN_DIR [RUN_DIR ...] [--out results/figures]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from records.command_line import command_line


def draw_cells(trace: dict[str, np.ndarray], steps: list[int], title: str) -> Figure:
    cols = 8
    rows = int(np.ceil(len(steps) / cols))
    fig = Figure(figsize=(cols * 1.6, rows * 1.75 + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    size = trace["reward_prob"].shape[1]
    goal = trace["goal"]
    H = int(trace["horizon"])
    for ax, t in zip(axes.flat, steps, strict=False):
        # reward_prob[t][x, y]: draw x horizontally and y upwards
        ax.imshow(trace["reward_prob"][t].T, origin="lower", cmap="Reds", vmin=0.0, vmax=1.0)
        # the current episode's path: its start cell (every episode starts where step 0 did), then the cells entered
        first = (t - 1) // H * H + 1 if t > 0 else 1
        path = trace["positions"][[0, *range(first, t + 1)]]
        ax.plot(path[:, 0], path[:, 1], "-o", color="tab:blue", ms=2.5, lw=1.2)
        ax.plot(*goal, marker="*", color="gold", mec="k", ms=10)
        episode = 1 + (t - 1) // H if t > 0 else 1
        ax.set_title(f"t={t} (ep {episode})", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_xlim(-0.5, size - 0.5), ax.set_ylim(-0.5, size - 0.5)
    for ax in list(axes.flat)[len(steps):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return fig


def draw_latent(trace: dict[str, np.ndarray], title: str) -> Figure:
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax_mean, ax_std = fig.subplots(1, 2)
    t = np.arange(len(trace["latent_mean"]))
    H = int(trace["horizon"])
    for d in range(trace["latent_mean"].shape[1]):
        ax_mean.plot(t, trace["latent_mean"][:, d], lw=1.2, label=f"dim {d}")
        ax_std.plot(t, np.exp(0.5 * trace["latent_logvar"][:, d]), lw=1.2)
    found = np.flatnonzero(trace["rewards"] > 0)
    for ax, name in ((ax_mean, "posterior mean"), (ax_std, "posterior std")):
        for boundary in range(H, len(t), H):
            ax.axvline(boundary, color="grey", ls="--", lw=0.8)
        if found.size:
            ax.axvline(found[0] + 1, color="gold", lw=1.5, label="goal first reached" if ax is ax_mean else None)
        ax.set_xlabel("environment step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    ax_std.set_yscale("log")
    ax_mean.legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=10)
    return fig


def comparison_steps(horizon: int, length: int) -> list[int]:
    """The steps a comparison row shows: the prior, every other step of episode 1, then episode 2 sparser."""
    first = list(range(0, horizon + 1, 2)) + ([horizon] if horizon % 2 else [])
    second = list(range(horizon + 3, min(2 * horizon, length - 1) + 1, 4))
    return first + second


def draw_comparison(traces: list[tuple[str, dict[str, np.ndarray]]], title: str) -> Figure:
    """One row per variant (VariBAD paper figs. 7 and 10): the decoder's p(reward | cell) along the same task's
    rollout, with the path walked in the current episode and the true goal."""
    horizon = int(traces[0][1]["horizon"])
    steps = comparison_steps(horizon, min(len(t["reward_prob"]) for _, t in traces))
    fig = Figure(figsize=(len(steps) * 1.25 + 1.2, len(traces) * 1.45 + 0.6), layout="constrained")
    axes = fig.subplots(len(traces), len(steps), squeeze=False)
    for row, (label, trace) in enumerate(traces):
        size = trace["reward_prob"].shape[1]
        for ax, t in zip(axes[row], steps, strict=True):
            ax.imshow(trace["reward_prob"][t].T, origin="lower", cmap="Reds", vmin=0.0, vmax=1.0)
            first = (t - 1) // horizon * horizon + 1 if t > 0 else 1
            path = trace["positions"][[0, *range(first, t + 1)]]
            ax.plot(path[:, 0], path[:, 1], "-o", color="tab:blue", ms=2, lw=1.0)
            ax.plot(*trace["goal"], marker="*", color="gold", mec="k", ms=8)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_xlim(-0.5, size - 0.5), ax.set_ylim(-0.5, size - 0.5)
            if row == 0:
                ax.set_title(f"t={t}" + (" (ep 2)" if t > horizon else ""), fontsize=7)
        axes[row][0].set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def draw_latent_comparison(traces: list[tuple[str, dict[str, np.ndarray]]], title: str) -> Figure:
    """One row per variant (VariBAD paper fig. 10): the posterior's mean and standard deviation per latent
    dimension along the same task's rollout, episode boundaries dashed and the step the goal is first reached in
    gold (with the filtering KL the variance should collapse there; with a fixed prior it grows again)."""
    fig = Figure(figsize=(10, len(traces) * 2.1 + 0.7), layout="constrained")
    axes = fig.subplots(len(traces), 2, squeeze=False, sharex=True)
    for row, (label, trace) in enumerate(traces):
        ax_mean, ax_std = axes[row]
        t = np.arange(len(trace["latent_mean"]))
        horizon = int(trace["horizon"])
        for d in range(trace["latent_mean"].shape[1]):
            ax_mean.plot(t, trace["latent_mean"][:, d], lw=1.0)
            ax_std.plot(t, np.exp(0.5 * trace["latent_logvar"][:, d]), lw=1.0)
        found = np.flatnonzero(trace["rewards"] > 0)
        for ax in (ax_mean, ax_std):
            for boundary in range(horizon, len(t), horizon):
                ax.axvline(boundary, color="grey", ls="--", lw=0.8)
            if found.size:
                ax.axvline(found[0] + 1, color="gold", lw=1.5)
            ax.grid(alpha=0.3)
        ax_std.set_yscale("log")
        ax_mean.set_ylabel(label, fontsize=8)
        if row == 0:
            ax_mean.set_title("posterior mean per latent dimension", fontsize=9)
            ax_std.set_title("posterior std per latent dimension (log)", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("environment step")
    fig.suptitle(f"{title}\ndashed: episode ends; gold: the goal first reached", fontsize=10)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument("runs", type=Path, nargs="+", help="run folders holding beliefs_goal*.npz")
    parser.add_argument("--out", type=Path, default=Path("results/figures"))
    parser.add_argument("--dpi", type=int, default=130)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    for run in args.runs:
        traces = sorted(run.glob("beliefs_goal*.npz"))
        if not traces:
            print(f"note: {run}: no beliefs_goal*.npz (run python -m tools.export_beliefs {run})",
                  file=sys.stderr)
        for path in traces:
            trace = dict(np.load(path))
            H = int(trace["horizon"])
            name = f"{run.name}_{path.stem.replace('beliefs_', '')}"
            where = f"{run.parent.parent.name}/{run.parent.name}/{run.name} @ {int(trace['frames']):,} frames"
            steps = list(range(0, H + 1)) + list(range(H + 1, min(2 * H, len(trace["reward_prob"]) - 1) + 1, 2))
            goal = tuple(int(v) for v in trace["goal"])
            cells = draw_cells(trace, steps, f"decoder p(reward | cell) along a rollout, goal {goal}: {where}")
            cells.savefig(args.out / f"{name}_cells.png", dpi=args.dpi)
            latent = draw_latent(trace, f"belief over time, goal {goal}: {where}")
            latent.savefig(args.out / f"{name}_latent.png", dpi=args.dpi)
            print(f"wrote {args.out / (name + '_cells.png')} and {args.out / (name + '_latent.png')}")
            written += 2
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
