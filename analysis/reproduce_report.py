"""The report of a reproduced figure: ours next to the paper's statements and the reference lines.

Called by ``make reproduce`` (``launch/reproduce.py``) once every run a manifest names is published; it reads the
published run folders only. For each protocol panel of the manifest (runs meta-tested under different protocols,
e.g. VariBAD's H = 100 and PEARL's oyster H = 20, are never drawn on one axis) it writes

* ``<name>_<panel>_per_episode.png``: mean return per meta-test episode, 95% bootstrap CI over seeds, from the final
  meta-test with the manifest's episode count (``final_eval.csv``; the last meta-test where a run has none), with the
  panel's reference lines; the caption names the protocol;
* ``<name>_<panel>_learning_curves.png``: return and success of the first episodes vs training frames, and with
  the panel's ``pooled_episodes`` their mean over the training BAMDP's episodes (what the paper's curves show),
  with the panel's reference lines at their value in each episode;

and ``report.md``: per panel the figure, the success and return tables per episode (ours and the reference policies);
per ``per_seed`` entry a table of every seed against a reference pattern (with what a seed that misses it learned),
``<name>_<label>_episode1.png``, each seed's episode 1 over its meta-tests during training, and
``<name>_<label>_entropy.png``, its policy entropy per seed (with ``goal_angle_bins``, also
``<name>_<label>_goal_angle.png``, success per goal angle: the arc each seed searches); per ``beliefs`` entry
``<name>_<picture>.png``, the belief along one GridWorld rollout per label; and the paper's claims, each with what we
measured and whether it holds.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from analysis.belief_pictures import draw_comparison, draw_latent_comparison
from analysis.belief_stats import STATISTICS, goal_step, trace_statistics
from analysis.claims import check_belief_claim, check_claim
from analysis.load import EVAL_COLUMNS, RUN_KEYS, RunError, load_results, read_eval
from analysis.references import DEFAULT_REFERENCES, load_references, panel_references, upper_bound
from analysis.seed_report import per_seed_table, plot_goal_angle, plot_seed_curves, plot_seed_entropy
from analysis.stats import aggregate, clip_to_upper, format_frames, per_episode
from analysis.style import label_styles, legend_columns, reference_style
from analysis.tables import episode_table, format_wall_times, reference_rows, shown_episodes, to_markdown
from records import run_folder


def final_meta_test(results: Any) -> pd.DataFrame:
    """Per run, the rows of ``final_eval.csv`` where it has one, else those of its last meta-test (eval.csv)."""
    parts = []
    for run in results.runs.itertuples():
        keys = {k: getattr(run, k) for k in RUN_KEYS}
        rows = None
        if (Path(run.path) / run_folder.FINAL_EVAL).is_file():
            try:
                rows, _ = read_eval(Path(run.path), run.run_id, running=False, file=run_folder.FINAL_EVAL)
            except RunError:
                rows = None
        if rows is None:
            ev = results.eval[results.eval["run_id"] == run.run_id]
            rows = ev[ev["frames"] == ev["frames"].max()].drop(columns=[k for k in RUN_KEYS if k != "run_id"])
        rows = rows.drop(columns="run_id").assign(**keys)
        parts.append(rows[RUN_KEYS + [c for c in EVAL_COLUMNS if c != "run_id"]])
    return pd.concat(parts, ignore_index=True) if parts else results.eval.iloc[0:0]


def plot_panel(table: pd.DataFrame, refs: dict[str, list[float]], title: str, path: Path, dpi: int = 150) -> None:
    fig = Figure(figsize=(7.2, 4.6), layout="constrained")
    ax = fig.subplots()
    labels = sorted(table["algo"].unique())
    styles = label_styles(labels)
    for i, label in enumerate(labels):
        group = table[table["algo"] == label].sort_values("episode")
        x = group["episode"].to_numpy(float) + 0.1 * (i - (len(labels) - 1) / 2)
        mean = group["mean"].to_numpy(float)
        yerr = np.nan_to_num(np.vstack([mean - group["lo"].to_numpy(float), group["hi"].to_numpy(float) - mean]))
        n = int(group["n"].max())
        ax.errorbar(x, mean, yerr=yerr, **styles[label], ms=4, capsize=3, lw=1.4,
                    label=f"{label} (n={n} seed{'s' if n != 1 else ''}, "
                          f"{format_frames(float(group['frames_max'].max()))} frames)")
    episodes = np.arange(1, int(table["episode"].max()) + 1)
    for index, (name, values) in enumerate(refs.items()):
        color, ls, text = reference_style(name, index)
        k = min(len(values), len(episodes))
        ax.plot(episodes[:k], values[:k], color=color, ls=ls, lw=1.3, label=text, zorder=3)
    ax.set_xlabel("meta-test episode")
    ax.set_ylabel("mean return over test tasks")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.set_title("\n".join(textwrap.fill(line, 80) for line in title.split("\n")), fontsize=10)
    # below the axes: never on the data
    _, texts = ax.get_legend_handles_labels()
    fig.legend(loc="outside lower center", ncols=legend_columns(texts, fig.get_figwidth(), 8, most=2), fontsize=8,
               frameon=False)
    fig.savefig(path, dpi=dpi)


#: the ``episode`` value of rows pooled over several episodes (``plot_curves``' ``pooled``)
POOLED = -1


def reference_levels(refs: dict[str, list[float]], columns: list[int],
                     pooled: list[int] | None = None) -> dict[str, dict[int, float]]:
    """Per reference policy, its value in each of the learning curves' ``columns`` (episodes, and :data:`POOLED`: the
    mean over the ``pooled`` episodes); a column the reference does not reach is left out."""
    levels: dict[str, dict[int, float]] = {}
    for name, values in refs.items():
        shown = {k: float(values[k - 1]) for k in columns if k != POOLED and k <= len(values)}
        if POOLED in columns and pooled and max(pooled) <= len(values):
            shown[POOLED] = float(np.mean([values[k - 1] for k in pooled]))
        if shown:
            levels[name] = shown
    return levels


def plot_curves(ev: pd.DataFrame, episodes: list[int], title: str, path: Path, n_resamples: int,
                pooled: list[int] | None = None, upper: list[float] | None = None,
                refs: dict[str, dict[str, list[float]]] | None = None, dpi: int = 150) -> pd.DataFrame:
    """Return (and success) of each of ``episodes`` against training frames, mean over seeds with CIs; with
    ``pooled``, one more column: the mean over those episodes (the paper's learning curves show the return of the
    whole training BAMDP, e.g. GridWorld's 4 episodes), ``episode`` = :data:`POOLED` in the returned curves (those
    of the return). ``upper``: per episode, the return no policy exceeds (the intervals stop there). ``refs``: per
    value ("return", "success"), the reference policies' values per episode, drawn as horizontal lines."""
    values = ["return", "success"] if ev["success"].astype(bool).any() else ["return"]
    styles = label_styles(ev["algo"].unique())
    columns = list(episodes)
    drawn = pd.DataFrame()
    rows = ev[ev["episode"].isin(episodes)]
    if pooled:
        rows = pd.concat([rows, ev[ev["episode"].isin(pooled)].assign(episode=POOLED)], ignore_index=True)
        columns.append(POOLED)
    fig = Figure(figsize=(4.4 * len(columns), 3.2 * len(values) + 0.9), layout="constrained")
    axes = fig.subplots(len(values), len(columns), squeeze=False, sharex=True)
    labelled: set[str] = set()
    for row, value in enumerate(values):
        # per seed, the mean over its tasks (and, pooled, over the episodes) first; then mean and CI over seeds
        curves = aggregate(rows, value=value, n_resamples=n_resamples)
        if value == "return" and upper:
            bounds = {k: upper[k - 1] for k in episodes if k <= len(upper)}
            if pooled and max(pooled) <= len(upper):
                bounds[POOLED] = float(np.mean([upper[k - 1] for k in pooled]))
            curves = clip_to_upper(curves, bounds)
        drawn = curves if value == "return" else drawn
        scale = 100.0 if value == "success" else 1.0  # success in %, as in the tables
        levels = reference_levels((refs or {}).get(value, {}), columns, pooled)
        for col, episode in enumerate(columns):
            ax = axes[row, col]
            for index, (name, shown) in enumerate(levels.items()):
                if episode in shown:
                    color, ls, text = reference_style(name, index)
                    ax.axhline(scale * shown[episode], color=color, ls=ls, lw=1.0, zorder=3,
                               label=None if name in labelled else text)  # one legend entry per reference
                    labelled.add(name)
            for label, group in curves[curves["episode"] == episode].groupby("algo", sort=True):
                group = group.sort_values("frames")
                style = styles[label]
                ax.plot(group["frames"], scale * group["mean"], **style, lw=1.5, ms=3.5,
                        markevery=max(1, len(group) // 10), label=label if (row, col) == (0, 0) else None)
                ax.fill_between(group["frames"], scale * group["lo"], scale * group["hi"], color=style["color"],
                                alpha=0.15, lw=0)
            shown = (f"episodes {pooled[0]}-{pooled[-1]} (mean)" if episode == POOLED and pooled
                     else f"episode {episode}")
            ax.set_title(f"{shown}: {'success rate (%)' if value == 'success' else 'return'}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: format_frames(x)))
    for ax in axes[-1]:
        ax.set_xlabel("training frames")
    fig.suptitle(textwrap.fill(title, 40 * len(columns)), fontsize=10)
    texts = [text for ax in axes.ravel() for text in ax.get_legend_handles_labels()[1]]
    fig.legend(loc="outside lower center", ncols=legend_columns(texts, fig.get_figwidth(), 8, most=3), fontsize=8,
               frameon=False)
    fig.savefig(path, dpi=dpi)
    return drawn


def reference_table(per_ep: pd.DataFrame, refs: dict[str, list[float]], scale: float, decimals: int) -> pd.DataFrame:
    """The agents' rows of a panel (:func:`analysis.tables.episode_table`, its shown episodes) and the reference
    policies' under them."""
    table = episode_table(per_ep, decimals, scale=scale, episodes=shown_episodes(per_ep["episode"]))
    scaled = {name: [scale * v for v in values] for name, values in refs.items()}
    return pd.concat([table, reference_rows(scaled, list(table.columns), decimals, frames="")], ignore_index=True)


def runs_provenance(manifest: dict[str, Any], runs: pd.DataFrame) -> pd.DataFrame:
    """Per label of the manifest: its overrides, the seeds published, their frames, commit(s) and wall time a run."""
    rows = []
    for spec in manifest["runs"]:
        label, env = str(spec["label"]), str(spec["env"])
        if any(row["label"] == label and row["env"] == env for row in rows):
            continue  # a label listed twice (seeds added later) is one row
        mine = runs[(runs["algo"] == label) & (runs["env"] == env)]
        overrides = sorted({o for s in manifest["runs"] if s["label"] == label for o in s.get("overrides") or []})
        rows.append({"label": label, "env": env, "algo": str(spec["algo"]),
                     "overrides": " ".join(f"`{o}`" for o in overrides),
                     "seeds": ", ".join(map(str, sorted(mine["seed"]))) or "none published",
                     "frames": ", ".join(format_frames(float(f)) for f in sorted(set(mine["frames"].dropna()))),
                     "commit": ", ".join(sorted({str(c)[:10] for c in mine["git_commit"].dropna()})),
                     "wall/run": format_wall_times(mine["wall_time_s"])})
    return pd.DataFrame(rows)


def runs_note(runs: pd.DataFrame) -> str:
    """One line: the commit every published run was made at, or how many commits they span."""
    commits = sorted({str(c)[:10] for c in runs["git_commit"].dropna()})
    if not commits:
        return "No published runs."
    if len(commits) == 1:
        return f"Every run at one commit, `{commits[0]}` (each run's `metadata.json` has it in full)."
    return (f"The runs span {len(commits)} commits ({', '.join(f'`{c}`' for c in commits)}): the table says which "
            "label ran at which.")


def belief_traces(entry: dict[str, Any], results: Any) -> tuple[list[tuple[str, dict[str, np.ndarray]]], list[str]]:
    """The published belief traces of the manifest's belief picture ``entry`` (seed ``entry['seed']``, its goal), one
    per label, and the labels that have none."""
    goal = tuple(int(v) for v in entry.get("goal", (3, 4)))
    traces, missing = [], []
    for label in entry["labels"]:
        runs = results.runs[(results.runs["algo"] == label) & (results.runs["seed"] == int(entry["seed"]))]
        path = Path(runs["path"].iloc[0]) / f"beliefs_goal{goal[0]}_{goal[1]}.npz" if len(runs) else None
        if path is None or not path.is_file():
            missing.append(label)
            continue
        traces.append((label, dict(np.load(path))))
    return traces, missing


def belief_statistics_table(kind: str, traces: list[tuple[str, dict[str, np.ndarray]]],
                            statistics: dict[str, dict[str, float]]) -> pd.DataFrame:
    """One row per label: the step that first enters the goal and the ``statistics`` of its trace (those of the
    picture's ``kind``, ``analysis.belief_stats``), as the belief claims read them."""
    rows = []
    for label, trace in traces:
        reached = goal_step(trace)
        values = statistics[label]
        shown = {key: f"{values[key]:.3g}" if np.isfinite(values[key]) else "-" for key in STATISTICS[kind]}
        rows.append({"label": label, "goal entered at step": "never" if reached is None else str(reached), **shown})
    return pd.DataFrame(rows)


def belief_comparison(entry: dict[str, Any], traces: list[tuple[str, dict[str, np.ndarray]]], missing: list[str],
                      name: str, out: Path) -> tuple[Path | None, str]:
    """The manifest's belief picture ``entry`` (one row per label, seed ``entry['seed']``) from the published runs'
    belief ``traces`` (:func:`belief_traces`); the picture (``None`` where no label has a trace) and a line for the
    report."""
    goal = tuple(int(v) for v in entry.get("goal", (3, 4)))
    absent = f" No belief trace published yet for {', '.join(missing)}." if missing else ""
    if not traces:
        return None, f"No belief trace published for {', '.join(missing)} (seed {entry['seed']}, goal {goal})."
    frames = ", ".join(f"{label} {int(t['frames']):,}" for label, t in traces)
    picture = out / f"{name}_{entry['name']}.png"
    if entry.get("kind", "cells") == "latent":
        title = (f"{entry.get('title', entry['name'])}: the posterior along one rollout to the goal {goal} "
                 f"(seed {entry['seed']})")
        draw_latent_comparison(traces, title).savefig(picture, dpi=130)
        return picture, (f"Per variant, the posterior q(m | trajectory so far): mean and standard deviation of each "
                         f"latent dimension. Frames: {frames}.{absent}")
    title = (f"{entry.get('title', entry['name'])}: decoder p(reward | cell) along one rollout to the goal {goal} "
             f"(seed {entry['seed']})")
    draw_comparison(traces, title).savefig(picture, dpi=130)
    return picture, (f"Red: the decoder's probability that a cell holds the goal at the posterior mean; blue: the path "
                     f"of the current episode; star: the goal. Frames: {frames}.{absent}")


def write_report(manifest: dict[str, Any], name: str, shipped: Path, out: Path, n_resamples: int = 9999,
                 references: list[Path] | None = None) -> list[Path]:
    """Figures and ``report.md`` for one manifest from the published runs under ``shipped``; the files written."""
    out.mkdir(parents=True, exist_ok=True)
    labels = sorted({str(r["label"]) for r in manifest["runs"]})
    envs = sorted({str(r["env"]) for r in manifest["runs"]})
    results = load_results(shipped, include_running=False, envs=envs, algos=labels)
    refs_all, _ = load_references(references or DEFAULT_REFERENCES)
    panels = manifest.get("panels") or {"main": {"title": manifest.get("title", name)}}
    written: list[Path] = []
    lines = [f"# {manifest.get('title', name)}", "", str(manifest.get("paper", "")).strip(), "",
             f"Generated by `make reproduce FIGURE={name}` from the published runs in `benchmarks/results/`. Means "
             "over seeds with 95% bootstrap confidence intervals; n = seeds.", ""]
    final = final_meta_test(results)
    for key, panel in panels.items():
        panel_runs = [r for r in manifest["runs"] if str(r.get("panel", "main")) == key]
        env = str(panel_runs[0]["env"]) if panel_runs else envs[0]
        panel_labels = sorted({str(r["label"]) for r in panel_runs} | set(panel.get("include") or []))
        final_env, eval_env = final[final["env"] == env], results.eval[results.eval["env"] == env]
        rows = final_env[final_env["algo"].isin(panel_labels)]
        if rows.empty:
            lines += [f"## {panel.get('title', key)}", "", "No published runs.", ""]
            continue
        episodes = int(rows["episode"].max())
        returns = per_episode(rows, "last", n_resamples=n_resamples)
        success = per_episode(rows, "last", value="success", n_resamples=n_resamples)
        ref_returns = panel_references(refs_all, env, panel.get("references"), episodes)
        ref_success = panel_references(refs_all, env, panel.get("references"), episodes, value="success")
        ev = eval_env[eval_env["algo"].isin(panel_labels)]
        bound = upper_bound(refs_all, env, ref_returns, pd.concat([rows, ev]))  # the final and the training meta-tests
        if bound:
            returns = clip_to_upper(returns, dict(enumerate(bound, start=1)))
        title = f"{panel.get('title', key)}\nfinal meta-test, {episodes} episodes per task"
        figure = out / f"{name}_{key}_per_episode.png"
        plot_panel(returns, ref_returns, title, figure)
        written.append(figure)
        curves = out / f"{name}_{key}_learning_curves.png"
        pooled = [int(k) for k in panel.get("pooled_episodes") or []]
        plot_curves(ev, [k for k in (1, 2) if k in set(ev["episode"])], f"{panel.get('title', key)}: meta-tests "
                    "during training", curves, n_resamples, pooled=pooled, upper=bound,
                    refs={"return": ref_returns, "success": ref_success})
        written.append(curves)
        lines += [f"## {panel.get('title', key)}", "", str(panel.get("protocol", "")).strip(), "",
                  f"![per-episode return]({figure.name})", "", f"![learning curves]({curves.name})", "",
                  "Success rate (%) per meta-test episode (the goal reached at least once in the episode):", "",
                  to_markdown(reference_table(success, ref_success, 100.0, 0)), "",
                  "Mean return per meta-test episode:", "",
                  to_markdown(reference_table(returns, ref_returns, 1.0, 1)), ""]
    for entry in manifest.get("per_seed") or []:
        table, summary = per_seed_table(entry, results.eval, refs_all, results.train)
        title = entry.get("title", entry["label"] + " per seed")
        lines += [f"## {title}", "", summary, ""]
        if not table.empty:
            lines += [to_markdown(table), ""]
            over_training = out / f"{name}_{entry['label']}_episode1.png"
            if plot_seed_curves(results.eval, entry["label"], table, f"{title}: episode 1 during training",
                                over_training):
                written.append(over_training)
                lines += [f"![episode 1 per seed during training]({over_training.name})", ""]
            entropy = out / f"{name}_{entry['label']}_entropy.png"
            if plot_seed_entropy(results.train[results.train["algo"] == entry["label"]], table,
                                 f"{title}: policy entropy", entropy):
                written.append(entropy)
                lines += [f"![policy entropy per seed]({entropy.name})", ""]
            if entry.get("goal_angle_bins"):
                arcs = out / f"{name}_{entry['label']}_goal_angle.png"
                plot_goal_angle(results.eval, entry["label"], int(entry["goal_angle_bins"]),
                                f"{title}: success per goal angle", arcs)
                written.append(arcs)
                lines += [f"![success per goal angle]({arcs.name})", ""]
    belief_stats: dict[str, dict[str, dict[str, float]]] = {}
    for entry in manifest.get("beliefs") or []:
        traces, missing = belief_traces(entry, results)
        picture, note = belief_comparison(entry, traces, missing, name, out)
        lines += [f"## {entry.get('title', entry['name'])}", ""]
        if picture is not None:
            written.append(picture)
            lines += [f"![belief along one rollout]({picture.name})", ""]
        lines += [note, ""]
        kind = str(entry.get("kind", "cells"))
        statistics = {label: trace_statistics(trace, kind) for label, trace in traces}
        belief_stats[str(entry["name"])] = statistics
        if traces:
            lines += ["Read off these rollouts (the belief claims below use them): "
                      + "; ".join(f"{key}: {text}" for key, text in STATISTICS[kind].items()) + ".", "",
                      to_markdown(belief_statistics_table(kind, traces, statistics)), ""]
    claims = manifest.get("claims") or []
    pictures = {str(entry["name"]): entry for entry in manifest.get("beliefs") or []}
    if claims:
        rows = []
        for claim in claims:
            if "belief" in claim:
                measured, verdict = check_belief_claim(claim, pictures[str(claim["belief"])],
                                                       belief_stats.get(str(claim["belief"]), {}))
            else:
                measured, verdict = check_claim(claim, results.eval, final)
            rows.append({"the paper": str(claim["text"]), "measured here": measured, "verdict": verdict})
        lines += ["## The paper's claims next to ours", "", to_markdown(pd.DataFrame(rows)), ""]
    lines += ["## The runs", "", runs_note(results.runs), "", to_markdown(runs_provenance(manifest, results.runs)), ""]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    written.append(report)
    return written
