"""Publish finished runs as shipped reference results, and index them.

    python -m analysis.publish results/<env>/<label>/<run-id> [...]     # make publish RUN="..."
    python -m analysis.publish --index                                  # rewrite benchmarks/results/README.md

Each run of it also rewrites the generated block of the repository's README.md (between the
``<!-- shipped-results:start -->`` and ``<!-- shipped-results:end -->`` lines) with the same tables, so that the
README's measured results of the shipped runs are never typed by hand.

A run is copied to ``benchmarks/results/<env>/<label>/<run-id>/`` with the files a run writes (``config.yaml``,
``metadata.json``, ``train_metrics.csv``, ``eval.csv``), never its checkpoints, after checking that it completed,
that its code was a clean commit (``git_commit`` without ``-dirty``) and that no run of that id is published yet.
The published metadata gains a ``published`` entry: when, from where, and the machine (CPU model and count, as read
on the machine that ran it). ``analysis/`` reads the folder like any results folder and draws its runs next to the
user's own, labelled ``<label> (shipped)``; the index is a Markdown table per env and label: seeds, budget, the
final meta-test's mean return per episode with its CI over seeds, success, commits, wall time and machine. Progress
snapshots of unfinished runs (``snapshot``) are never in those tables: the index lists them in a section of their
own (frames done of the budget, their last meta-tests during training), and the README's block names them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.load import IN_PROGRESS_SUFFIX, SHIPPED_RESULTS, RunError, load_results, read_metadata
from analysis.paper_values import ML1_TABLE_1_SOURCE
from analysis.references import DEFAULT_REFERENCES, load_references, within_bound
from analysis.stats import format_frames, per_episode
from analysis.status import run_budget
from analysis.tables import (
    decimals_for,
    format_cell,
    format_wall_times,
    ml1_success_table,
    protocol_sections,
    to_markdown,
)
from analysis.task_breakdown import breakdown_markdown
from records import locations, run_folder
from records.command_line import command_line

#: the files of a run that are published (checkpoints stay behind: too large, and not needed by analysis)
PUBLISHED_FILES = (run_folder.CONFIG, run_folder.METADATA, run_folder.TRAIN_METRICS, run_folder.EVAL,
                   run_folder.FINAL_EVAL)
#: published where the run folder holds them: ``train_metrics.csv`` (optional in the results schema: a run with a
#: budget of 0 frames, e.g. exact posterior sampling, trains no iteration and writes none) and analyses of the run
#: (cheetah_dir: the settling step that ``python -m tools.direction_inference`` measures on the final
#: checkpoint, which is not published)
OPTIONAL_FILES = (run_folder.TRAIN_METRICS, "direction_inference.json", run_folder.FINAL_EVAL)
#: meta-test episodes shown in the index
INDEX_EPISODES = 6
#: a run in progress is summarised by the mean of its last this many meta-tests during training
PROGRESS_EVALS = 3
#: the repository README, whose block between these markers is generated from the shipped runs
README = locations.README
#: the repository's own shipped runs: only their index goes into README (never a test's or a user's other folder)
REPOSITORY_SHIPPED = locations.SHIPPED_RESULTS
README_START, README_END = "<!-- shipped-results:start -->", "<!-- shipped-results:end -->"


class PublishError(RuntimeError):
    """A run that cannot be published; the message says why."""


def this_machine() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"host": platform.node(), "cpu_model": model or platform.processor() or None, "cpus": os.cpu_count(),
            "platform": platform.platform()}


def _checked(run: Path, completed: bool) -> tuple[dict[str, Any], Path]:
    """The run's metadata and where it goes, after the checks both a publication and a snapshot need."""
    try:
        meta = read_metadata(run)
    except RunError as exc:
        raise PublishError(f"{run}: {exc}") from None
    if completed and meta["status"] != "completed":
        raise PublishError(f"{run}: status {meta['status']!r}; only completed runs are published (a run in "
                           "progress: publish a snapshot of it)")
    if not completed and meta["status"] in ("completed", "failed"):
        raise PublishError(f"{run}: status {meta['status']!r}; a snapshot is of a run in progress")
    commit = meta.get("git_commit")
    if not commit:
        raise PublishError(f"{run}: no git commit recorded; a published run must say which code produced it")
    if str(commit).endswith("-dirty"):
        raise PublishError(f"{run}: ran on uncommitted changes ({commit}); publish runs of a clean commit")
    needed = PUBLISHED_FILES if completed else (run_folder.CONFIG, run_folder.EVAL)
    missing = [name for name in needed if name not in OPTIONAL_FILES and not (run / name).is_file()]
    if missing:
        raise PublishError(f"{run}: missing {', '.join(missing)}")
    return meta, Path(meta["env"]) / (meta.get("label") or meta["algo"]) / meta["run_id"]


def _is_snapshot(target: Path) -> bool:
    try:
        return bool(json.loads((target / run_folder.METADATA).read_text()).get("snapshot"))
    except (OSError, json.JSONDecodeError):
        return False


def _copy(run: Path, meta: dict[str, Any], target: Path, files: tuple[str, ...], refusal: str) -> dict[str, Any]:
    """Copy ``files`` of ``run`` (those it has; metadata.json is the caller's) into ``target``, which may only replace
    a progress snapshot (else :class:`PublishError` with ``refusal``); returns the machine that ran it."""
    if target.exists():
        if not _is_snapshot(target):
            raise PublishError(f"{target} {refusal}")
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in files:
        if name != run_folder.METADATA and (run / name).is_file():
            shutil.copy2(run / name, target / name)
    return this_machine() if meta.get("host") in (None, platform.node()) else {"host": meta.get("host")}


def _drop_superseded_snapshots(target: Path, seed: Any) -> None:
    """Remove the progress snapshots of ``seed`` under the same env and label as ``target`` but of another run: a run
    started again (its machine was lost before it completed) supersedes the earlier attempt, whose curve stays in the
    repository's history. One entry per label and seed keeps the index and the reports unambiguous."""
    for sibling in target.parent.iterdir():
        if sibling == target or not _is_snapshot(sibling):
            continue
        if json.loads((sibling / run_folder.METADATA).read_text()).get("seed") == seed:
            shutil.rmtree(sibling)


def publish(run: Path, dest: Path = SHIPPED_RESULTS) -> Path:
    """Copy one finished run into ``dest`` (replacing a progress snapshot of it); :class:`PublishError` says why a
    run cannot be published."""
    run = Path(run)
    meta, relative = _checked(run, completed=True)
    target = Path(dest) / relative
    machine = _copy(run, meta, target, tuple(dict.fromkeys(PUBLISHED_FILES + OPTIONAL_FILES)),
                    "is already published; runs are never overwritten")
    for trace in sorted(run.glob(run_folder.BELIEF_TRACES)):  # small: what the belief pictures draw
        shutil.copy2(trace, target / trace.name)
    meta["published"] = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "source": str(run),
                         "machine": machine}
    (target / run_folder.METADATA).write_text(json.dumps(meta, indent=2))
    _drop_superseded_snapshots(target, meta.get("seed"))
    return target


def snapshot(run: Path, dest: Path = SHIPPED_RESULTS) -> Path:
    """Publish the curve so far of a run in progress (its config, eval.csv, train_metrics.csv and metadata), marked
    ``snapshot`` in its metadata: analysis shows it as ``<label> (in progress)``, never pooled with completed runs, and
    the index leaves it out of its tables. A newer snapshot replaces it, and so does the completed run; so does a
    snapshot of the same label and seed begun later (the run started again)."""
    run = Path(run)
    meta, relative = _checked(run, completed=False)
    target = Path(dest) / relative
    machine = _copy(run, meta, target, (run_folder.CONFIG, run_folder.EVAL, run_folder.TRAIN_METRICS),
                    "is published as a completed run; a snapshot never replaces it")
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    meta["snapshot"] = {"time": now, "frames": meta.get("frames"), "status_then": meta["status"],
                        "source": str(run), "machine": machine}
    meta["status"] = "running"  # in progress, whatever the process was doing when the snapshot was taken
    (target / run_folder.METADATA).write_text(json.dumps(meta, indent=2))
    _drop_superseded_snapshots(target, meta.get("seed"))
    return target


def index_table(dest: Path, n_resamples: int = 9999, progress: list[dict[str, Any]] | None = None) -> str:
    """The Markdown index of the published runs (one table per env), then the snapshots in progress (``progress``:
    :func:`progress_rows` of ``dest``, read here unless given)."""
    progress = progress_rows(dest) if progress is None else progress
    results = load_results(dest, include_running=False)
    if results.eval.empty:
        return "# Shipped reference results\n\nNo published runs yet (`make publish RUN=...`).\n" + (
            f"\n{progress_markdown(progress)}" if progress else "")
    lines = ["# Shipped reference results", "",
             "Runs published with `make publish` (generated by `python -m analysis.publish --index`; do not edit). "
             "`make report` draws them next to your own runs, labelled `(shipped)`. Final meta-test, mean over "
             "seeds [95% bootstrap CI]; n = the seeds listed. Runs meta-tested under different protocols (horizon, "
             "episodes, task set) are in separate tables.", ""]
    references, _ = load_references(DEFAULT_REFERENCES)
    breakdown = breakdown_markdown(results, references, n_resamples=n_resamples)
    metas = {}
    for run in results.runs.itertuples():
        metas[run.run_id] = json.loads((Path(run.path) / run_folder.METADATA).read_text())
    sections = protocol_sections(results.eval)
    for env, protocol, _, ev in sections:
        runs = results.runs[(results.runs["env"] == env) & (results.runs["protocol"] == protocol)]
        returns = within_bound(per_episode(ev, "common", n_resamples=n_resamples), references, env, ev, protocol)
        has_success = bool(ev["success"].astype(bool).any())
        success = per_episode(ev, "common", value="success", n_resamples=n_resamples) if has_success else None
        episodes = sorted(returns["episode"].unique())[:INDEX_EPISODES]
        decimals = decimals_for(returns["mean"])
        rows = []
        for algo, group in runs.groupby("algo", sort=True):
            ret = returns[returns["algo"] == algo].set_index("episode")
            row: dict[str, Any] = {"algorithm": algo, "seeds": ",".join(map(str, sorted(group["seed"]))),
                                   "frames": format_frames(float(ret["frames_max"].max()))}
            for k in episodes:
                row[f"ep {k}"] = format_cell(ret.loc[k, "mean"], ret.loc[k, "lo"], ret.loc[k, "hi"], None,
                                             decimals) if k in ret.index else ""
            if success is not None:
                s = success[(success["algo"] == algo) & (success["episode"] == 1)]
                row["success ep 1 (%)"] = "" if s.empty else format_cell(
                    100 * s["mean"].iloc[0], 100 * s["lo"].iloc[0], 100 * s["hi"].iloc[0], None, 0)
            commits = sorted({str(metas[r]["git_commit"])[:8] for r in group["run_id"]})
            machines = sorted({f"{m.get('cpus', '?')} x {m.get('cpu_model') or m.get('host', '?')}"
                               for r in group["run_id"] for m in [metas[r].get("published", {}).get("machine", {})]})
            row.update({"wall/run": format_wall_times(group["wall_time_s"]), "commit": ", ".join(commits),
                        "machine": "; ".join(machines)})
            rows.append(row)
        protocols = [p for e, p, *_ in sections if e == env]
        if protocol == protocols[0]:
            lines += [f"## {env}", ""]
        if len(protocols) > 1:  # one table per meta-test protocol: never one table across protocols
            lines += [f"Meta-test protocol: {protocol or 'the env default'}.", ""]
        lines += [to_markdown(pd.DataFrame(rows)), ""]
        if env in breakdown and protocol == protocols[-1]:
            lines += [breakdown[env], ""]
        if env.startswith("ml1_"):
            table = ml1_success_table(ev, "common", 0, n_resamples=n_resamples)
            lines += ["Success rate (%) per meta-test episode on the 50 test tasks, the paper's table 1 layout, mean "
                      f"over seeds [95% bootstrap CI]; rows 'paper: ...': {ML1_TABLE_1_SOURCE}.", "",
                      to_markdown(table.drop(columns="task")), ""]
    return "\n".join(lines + ([progress_markdown(progress)] if progress else []))


def progress_rows(dest: Path) -> list[dict[str, Any]]:
    """One row per published progress snapshot (a run not finished yet): the frames done of its budget, when the
    snapshot was taken, and the mean of its last :data:`PROGRESS_EVALS` meta-tests during training in episodes 1 and
    2."""
    results = load_results(dest, include_running=True)
    runs = results.runs[results.runs["algo"].str.endswith(IN_PROGRESS_SUFFIX)]
    rows: list[dict[str, Any]] = []
    for run in runs.sort_values(["env", "algo", "seed"]).itertuples():
        meta = json.loads((Path(run.path) / run_folder.METADATA).read_text())
        frames_budget = run_budget(Path(run.path))
        budget = "?" if frames_budget is None else format_frames(float(frames_budget))
        ev = results.eval[results.eval["run_id"] == run.run_id]
        last = sorted(ev["frames"].unique())[-PROGRESS_EVALS:]
        recent = ev[ev["frames"].isin(last)].groupby("episode")[["return", "success"]].mean()
        has_success = bool(ev["success"].astype(bool).any())
        row: dict[str, Any] = {"env": run.env, "label": run.algo.removesuffix(IN_PROGRESS_SUFFIX),
                               "seed": run.seed, "frames": f"{format_frames(float(run.frames))} of {budget}",
                               "snapshot": str(meta.get("snapshot", {}).get("time", ""))[:16].replace("T", " "),
                               "meta-tests": (f"{format_frames(float(last[0]))} to {format_frames(float(last[-1]))}"
                                              if last else "none yet")}
        for k in (1, 2):
            cell = ""
            if k in recent.index:
                cell = f"{recent.loc[k, 'return']:.2f}"
                if has_success:
                    cell += f" ({100 * recent.loc[k, 'success']:.0f}%)"
            row[f"ep {k}"] = cell
        point = meta.get("snapshot", {}).get(run_folder.SNAPSHOT_RESUME_POINT)
        row["resumes from"] = format_frames(float(point["frames"])) if point else "-"
        row["commit"] = str(meta.get("git_commit", ""))[:8]
        rows.append(row)
    return rows


def progress_markdown(rows: list[dict[str, Any]]) -> str:
    """The index's section on the published progress snapshots (the rows of :func:`progress_rows`)."""
    return "\n".join([
        "## In progress", "",
        "Progress snapshots of runs that have not finished (`make reproduce FIGURE=<name> SNAPSHOT=1`): the curves "
        "so far, shown by analysis as `<label> (in progress)` and never pooled with the completed runs above. Per "
        f"run, the mean return (success) of its last {PROGRESS_EVALS} meta-tests during training, which have fewer "
        "episodes than the final meta-test that a completed run adds; and the frame its resume point restores it "
        "at, should its machine be lost (`-`: none shipped, the run would start again).", "",
        to_markdown(pd.DataFrame(rows)), ""])


def summary_markdown(dest: Path, n_resamples: int = 9999, progress: list[dict[str, Any]] | None = None) -> str:
    """One compact table of the published runs for the README: per env, protocol and label, the final meta-test's
    mean return in episodes 1 and 2 and the success rate of episode 1 (the full tables: ``docs/results.md``)."""
    results = load_results(dest, include_running=False)
    if results.eval.empty:
        return "No published runs yet.\n"
    rows = []
    references, _ = load_references(DEFAULT_REFERENCES)
    for env, protocol, _, ev in protocol_sections(results.eval):
        returns = within_bound(per_episode(ev, "common", n_resamples=n_resamples), references, env, ev, protocol)
        success = per_episode(ev, "common", value="success", n_resamples=n_resamples)
        decimals = decimals_for(returns["mean"])
        for algo, group in returns.groupby("algo", sort=True):
            cells = group.set_index("episode")
            done = success[(success["algo"] == algo) & (success["episode"] == 1)]
            row: dict[str, Any] = {"env": env + (f" [{protocol}]" if protocol else ""), "agent": algo,
                                   "n": int(cells["n"].max()),
                                   "frames": format_frames(float(cells["frames_max"].max()))}
            for k in (1, 2):
                row[f"return ep {k}"] = (format_cell(cells.loc[k, "mean"], cells.loc[k, "lo"], cells.loc[k, "hi"],
                                                     None, decimals) if k in cells.index else "")
            # an env with no notion of success (the cheetah) leaves the column empty, never "0"
            has_success = bool(ev["success"].astype(bool).any()) or env.startswith("ml1_")
            row["success ep 1 (%)"] = "" if done.empty or not has_success else f"{100 * done['mean'].iloc[0]:.0f}"
            rows.append(row)
    return to_markdown(pd.DataFrame(rows)).rstrip("\n") + progress_summary(
        progress_rows(dest) if progress is None else progress)


def progress_summary(rows: list[dict[str, Any]]) -> str:
    """The README's line on the runs in progress (the rows of :func:`progress_rows`): per env and label, each seed's
    frames of its budget."""
    if not rows:
        return ""
    labels = pd.DataFrame(rows).groupby(["env", "label"], sort=True)
    shown = [f"{env} `{label}` (seed{'s' if len(group) > 1 else ''} "
             f"{', '.join(f'{r.seed}: {r.frames}' for r in group.itertuples())})"
             for (env, label), group in labels]
    return ("\n\nIn progress, published as snapshots and never pooled above (their last meta-tests: "
            "[docs/results.md](docs/results.md#in-progress)): " + "; ".join(shown) + ".")


#: the generated page of the full tables (the index, with the docs' header)
RESULTS_PAGE = locations.RESULTS_PAGE


def write_index(dest: Path = SHIPPED_RESULTS, n_resamples: int = 9999, readme: Path | None = None) -> Path:
    """Write ``dest/README.md`` and, where a ``readme`` with the markers is given (the repository's), its generated
    block (:func:`summary_markdown`) and ``docs/results.md`` (the full tables)."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "README.md"
    progress = progress_rows(dest)  # read once for the index and the README's block
    table = index_table(dest, n_resamples, progress)
    path.write_text(table)
    if readme is not None and readme.is_file():
        update_readme(readme, summary_markdown(dest, n_resamples, progress))
        if RESULTS_PAGE.parent.is_dir() and readme.resolve() == README.resolve():
            RESULTS_PAGE.write_text(table.replace("# Shipped reference results", "# Measured results", 1))
    return path


def update_readme(readme: Path, summary: str) -> bool:
    """Replace the block between the markers of ``readme`` with ``summary``; text outside the block is kept.
    Returns whether the file has the markers."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    note = ("Generated from `benchmarks/results/` by `make publish` (`python -m analysis.publish --index`); do not "
            "edit. Final meta-test, mean over seeds [95% bootstrap CI]; n = seeds; every episode, the per-task "
            "breakdowns and the paper's rows: [docs/results.md](docs/results.md).")
    readme.write_text(f"{head}{README_START}\n{note}\n\n{summary.rstrip()}\n{README_END}{tail}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument("runs", nargs="*", type=Path, help="finished run folders to publish")
    parser.add_argument("--dest", type=Path, default=SHIPPED_RESULTS, help="default: benchmarks/results")
    parser.add_argument("--index", action="store_true", help="only rewrite the index (README.md)")
    parser.add_argument("--n-resamples", type=int, default=9999)
    args = parser.parse_args(argv)
    if not args.runs and not args.index:
        parser.error("name the run folders to publish, or --index")
    failed = 0
    for run in args.runs:
        try:
            print(f"published {publish(run, args.dest)}")
        except PublishError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    if failed == len(args.runs) and not args.index:
        return 1  # nothing published: the index stays as it is
    # the repository README shows the repository's shipped runs only
    readme = README if args.dest.resolve() == REPOSITORY_SHIPPED else None
    path = write_index(args.dest, args.n_resamples, readme)
    print(f"wrote {path}" + (f" and the block in {readme}" if readme else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
