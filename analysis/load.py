"""Discover run folders under ``results/``, validate them against the results schema, return tidy DataFrames.

A run folder is ``<root>/<env>/<algo>/<run-id>/`` (see ``README.md``, "Results"); any folder holding one of
``metadata.json``, ``eval.csv``, ``train_metrics.csv`` or ``config.yaml`` is taken for a run. Folders that hold
none of them (Hydra's ``sweeps/`` bookkeeping, ``figures/``, ``tables/``, hidden folders) are passed over quietly.

A run is *left out and reported* (``Results.problems``: ``(path, reason)``) when its ``metadata.json`` is missing,
unparseable or lacks a required key, its status is ``failed`` (or unknown), its ``eval.csv`` is missing, unreadable,
has no rows, misses or misnames a column, has a column of the wrong type, rows of another run or duplicated rows,
or its ``train_metrics.csv`` (optional) is unreadable or has no ``frames`` column. Runs that are still
``running`` are kept and flagged (column ``status``) unless ``include_running=False``, and so are published
snapshots of runs in progress, labelled ``<label> (in progress)``; the row being written when
the file was read (a last line without its newline) and a last evaluation point not yet complete are dropped.
Runs pooled as the seeds of one (env, label) whose ``config.yaml`` differ beyond the seed and the keys that do
not change what a run computes are kept, with a note naming the keys (``Results.notes``). A run whose metadata says
``running`` but that no live process holds (its ``.lock``; the process was killed) is ``stale``: kept like a
pre-empted run, shown as stale, with a note that the same command resumes it.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from records import locations, run_folder
from records.run_folder import EVAL_COLUMNS, REQUIRED_METADATA, RUN_FILES, SCHEMA_VERSION, STATUSES

NOT_RUN_FOLDERS = frozenset({"sweeps", "figures", "tables", "multirun", "outputs", "checkpoints", "references",
                             "reproduce", "report"})
#: statuses of a run that has not finished (killed or pre-empted runs resume in place): kept, flagged as running
#: (``stale``: marked running, but its process is gone)
INCOMPLETE = ("running", "preempted", "stale")
NULLABLE = run_folder.NULLABLE_EVAL_COLUMNS
RUN_KEYS = ["env", "algo", "seed", "run_id", "status", "protocol"]
#: config keys that may differ between the seeds of one comparison: they do not change what a run computes (or,
#: for ``seed``, are meant to differ)
PER_RUN_CONFIG_KEYS = frozenset({"seed", "device", "torch_threads", "results_dir", "run_name", "progress", "resume",
                                 "tracking", "allow_default_hyperparameters", "update_threads", "label"})
#: dotted keys that only say how a run is operated (logging, checkpoints, the extra final meta-test), not what it
#: computes: runs that differ in them are still seeds of one configuration
OPERATIONAL_KEYS = frozenset({"train.log_interval_seconds", "train.log_interval_iterations",
                              "train.checkpoint_interval_frames", "eval.final_episodes", "algo.rollout_overlap",
                              "env.kwargs.num_workers"})


class RunError(Exception):
    """A run folder that does not follow the schema; the message is the reason reported."""


@dataclass
class Results:
    """Everything loaded from one results root."""

    eval: pd.DataFrame  # one row per (run, frames, task, episode), with env, algo, seed, run_id, status
    train: pd.DataFrame  # one row per (run, logged iteration), with env, algo, seed, run_id, status
    runs: pd.DataFrame  # one row per run kept
    problems: list[tuple[Path, str]] = field(default_factory=list)  # runs left out, with the reason
    notes: list[str] = field(default_factory=list)  # things worth knowing that did not exclude a run


def discover_runs(root: Path | str, max_depth: int = 4) -> list[Path]:
    """Run folders under ``root`` (``root`` itself if it is one), sorted; non-run folders are skipped quietly."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"results root {root} is not a folder")
    found: list[Path] = []
    base_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if any(name in filenames for name in RUN_FILES):
            found.append(here)
            dirnames[:] = []  # never look inside a run (checkpoints/)
            continue
        if len(here.parts) - base_depth >= max_depth:
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")) and d not in NOT_RUN_FOLDERS)
    return sorted(found)


def _held_in_proc_locks(lock: Path) -> bool | None:
    """Whether ``/proc/locks`` lists a lock on ``lock`` (read-only: nothing is acquired, so a probe can never make a
    restarting run believe its folder is busy); ``None`` where ``/proc/locks`` cannot be read (not Linux)."""
    try:
        table = Path("/proc/locks").read_text()
        st = lock.stat()
    except OSError:
        return None
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        if "->" in fields:  # a process waiting for the lock, not holding it
            continue
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
            return True
    return False


def is_live(run: Path) -> bool:
    """Whether a live process holds the run's lock (``<run>/.lock``, held for the life of the training process and
    released by the OS even on SIGKILL)."""
    lock = run / ".lock"
    if not lock.exists():
        return False
    held = _held_in_proc_locks(lock)
    if held is not None:
        return held
    with lock.open("r") as handle:  # elsewhere: try a shared lock, released at once
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def run_state(run: Path, meta: dict[str, Any]) -> str:
    """The metadata's status, except ``stale`` for a run that says ``running`` but that no process holds."""
    status = str(meta["status"])
    return "stale" if status == "running" and not is_live(run) else status


def read_metadata(run: Path) -> dict[str, Any]:
    """``metadata.json`` with the required keys checked; raises :class:`RunError`."""
    path = run / run_folder.METADATA
    if not path.exists():
        raise RunError("metadata.json missing")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"metadata.json unparseable: {exc}") from None
    if not isinstance(meta, dict):
        raise RunError("metadata.json is not a JSON object")
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise RunError(f"metadata.json missing key(s) {', '.join(missing)}")
    for key, kind in REQUIRED_METADATA.items():
        value = meta[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RunError(f"metadata.json {key!r} is {value!r}, expected {kind.__name__}")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise RunError(f"metadata.json schema_version {meta['schema_version']} (this analysis reads {SCHEMA_VERSION})")
    if meta["status"] not in STATUSES:
        raise RunError(f"unknown status {meta['status']!r} (expected one of {', '.join(STATUSES)})")
    return meta


def _read_csv(path: Path, running: bool, dtype: dict[str, Any] | None = None) -> pd.DataFrame:
    """A CSV file; for a running run, a last line still being written (no newline yet) is dropped."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"{path.name} unreadable: {exc}") from None
    if running and text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    if not text.strip():
        raise RunError(f"{path.name} is empty (no header)")
    try:
        return pd.read_csv(io.StringIO(text), dtype=dtype)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise RunError(f"{path.name} unreadable: {str(exc).strip()}") from None


def _check_kind(df: pd.DataFrame, column: str, kind: str) -> None:
    series = df[column]
    if column not in NULLABLE and series.isna().any():
        raise RunError(f"eval.csv column {column!r} has {int(series.isna().sum())} empty value(s)")
    if kind == "integer":
        ok = pd.api.types.is_integer_dtype(series)
    elif kind == "number":
        ok = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    elif kind == "bool":
        ok = pd.api.types.is_bool_dtype(series)
    else:
        ok = True
    if not ok:
        raise RunError(f"eval.csv column {column!r} has dtype {series.dtype}, expected {kind}")


def read_eval(run: Path, run_id: str, running: bool, file: str = run_folder.EVAL) -> tuple[pd.DataFrame, str | None]:
    """Validated ``eval.csv`` rows (or those of another file of its columns: ``final_eval.csv``) and an optional note;
    raises :class:`RunError`."""
    path = run / file
    if not path.exists():
        raise RunError(f"no eval rows ({file} missing)")
    df = _read_csv(path, running, dtype={"run_id": str, "task": str})
    missing = [c for c in EVAL_COLUMNS if c not in df.columns]
    if missing:
        extra = [c for c in df.columns if c not in EVAL_COLUMNS]
        hint = f" (unexpected: {', '.join(map(repr, extra))})" if extra else ""
        raise RunError(f"eval.csv missing column(s) {', '.join(map(repr, missing))}{hint}")
    if df.empty:
        raise RunError("no eval rows (eval.csv has only its header)")
    for column, kind in EVAL_COLUMNS.items():
        _check_kind(df, column, kind)
    if (df["episode"] < 1).any() or (df["frames"] < 0).any():
        raise RunError("eval.csv has episode < 1 or frames < 0 (episodes are 1-based)")
    other = sorted(set(df["run_id"]) - {run_id})
    if other:
        raise RunError(f"eval.csv has rows of run(s) {', '.join(other)}, not of {run_id!r}")
    dup = int(df.duplicated(["frames", "task_id", "episode"]).sum())
    if dup:
        raise RunError(f"eval.csv has {dup} duplicated (frames, task_id, episode) row(s)")
    df = df[list(EVAL_COLUMNS)].sort_values(["frames", "task_id", "episode"], kind="stable")
    sizes = df.groupby("frames").size()
    full = int(sizes.max())
    short = sizes[sizes < full]
    note = None
    if running and len(short) > 0 and short.index[-1] == sizes.index[-1]:
        last = int(sizes.index[-1])
        df = df[df["frames"] != last]
        short = short.iloc[:-1]
        note = f"dropped the eval point at frames={last} ({int(sizes.iloc[-1])}/{full} rows, still being written)"
    if len(short) > 0:
        points = ", ".join(f"frames={int(f)}: {int(n)}/{full} rows" for f, n in short.items())
        raise RunError(f"eval.csv has incomplete evaluation point(s) ({points})")
    if df.empty:
        raise RunError("no eval rows (only a partly written evaluation point)")
    return df.reset_index(drop=True), note


def read_train(run: Path, running: bool) -> pd.DataFrame | None:
    """``train_metrics.csv`` (optional: ``None`` when absent); it must have a numeric ``frames`` column."""
    path = run / run_folder.TRAIN_METRICS
    if not path.exists():
        return None
    df = _read_csv(path, running)
    if "frames" not in df.columns:
        raise RunError("train_metrics.csv has no 'frames' column")
    if not pd.api.types.is_numeric_dtype(df["frames"]) or df["frames"].isna().any():
        raise RunError(f"train_metrics.csv column 'frames' is not numeric or has empty values ({df['frames'].dtype})")
    return df


def _guess_env_algo(run: Path) -> tuple[str, str]:
    """(env, algo) from the folder layout ``<env>/<algo>/<run-id>``, for runs whose metadata cannot be read."""
    return run.parent.parent.name, run.parent.name


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(config, dict):
        return {prefix: config}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        flat.update(_flatten(value, f"{prefix}{key}."))
    return {k.removesuffix("."): v for k, v in flat.items()}


def read_config(run: Path) -> dict[str, Any] | None:
    """The run's resolved config as dotted keys (``train.num_frames``) without :data:`PER_RUN_CONFIG_KEYS`;
    ``None`` when ``config.yaml`` is missing or unreadable (the config is not part of what analysis needs)."""
    import yaml

    try:
        config = yaml.safe_load((run / run_folder.CONFIG).read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(config, dict):
        return None
    return {k: v for k, v in _flatten(config).items()
            if k.split(".")[0] not in PER_RUN_CONFIG_KEYS and k not in OPERATIONAL_KEYS}


def _shown(value: Any) -> str:
    return json.dumps(value, default=str).strip('"')


def split_by_config(configs: dict[str, dict[str, Any] | None], max_keys: int = 3) -> dict[str, str]:
    """For the runs of one label whose configs disagree on results-relevant keys (keys some run lacks, e.g. added to
    the code after it ran, are not compared): run id -> ``"[key=value, ...]"``, naming what tells its configuration
    apart. Empty when they all agree (or have no readable config)."""
    known = {run_id: c for run_id, c in configs.items() if c is not None}
    if len(known) < 2:
        return {}
    shared = set.intersection(*(set(c) for c in known.values()))
    differing = sorted(k for k in shared if len({json.dumps(c[k], sort_keys=True, default=str)
                                                  for c in known.values()}) > 1)
    if not differing:
        return {}
    suffixes = {}
    for run_id, config in known.items():
        parts = [f"{k}={_shown(config[k])}" for k in differing[:max_keys]]
        more = f", +{len(differing) - max_keys} more" if len(differing) > max_keys else ""
        suffixes[run_id] = f"[{', '.join(parts)}{more}]"
    return suffixes


def protocol_of(run: Path) -> str:
    """The meta-test protocol a run was evaluated under, as a short text (``""``: the env's default): the protocol's
    name where not ``default``, and the horizon, episodes per task and task set where the config sets them. Runs under
    different protocols are never drawn on one axis or pooled in one table."""
    import yaml

    try:
        config = yaml.safe_load((run / run_folder.CONFIG).read_text())
    except (OSError, yaml.YAMLError):
        return ""
    if not isinstance(config, dict):
        return ""
    flat = _flatten(config)
    parts = []
    name = flat.get("protocol.name")
    if name not in (None, "default"):
        parts.append(str(name))
    for key, short in (("env.horizon", "H"), ("eval.episodes", "K"), ("eval.num_tasks", "tasks"),
                       ("env.kwargs.task_set", "task set")):
        if flat.get(key) is not None:
            parts.append(f"{short}={flat[key]}")
    return ", ".join(parts)


def config_differences(configs: dict[str, dict[str, Any]], max_keys: int = 6) -> str | None:
    """``"train.num_frames (run a: 5000000; run b: 7000000), ..."`` for the keys on which the runs' configs
    disagree, or ``None`` when they all agree (runs without a readable config are not compared)."""
    configs = {run_id: c for run_id, c in configs.items() if c is not None}
    if len(configs) < 2:
        return None
    keys = sorted(set.intersection(*(set(c) for c in configs.values())))  # keys some run lacks are not compared
    differing = [k for k in keys if len({json.dumps(c.get(k, "<missing>"), sort_keys=True, default=str)
                                         for c in configs.values()}) > 1]
    if not differing:
        return None
    parts = []
    for key in differing[:max_keys]:
        values: dict[str, list[str]] = {}
        for run_id, config in configs.items():
            values.setdefault(json.dumps(config.get(key, "<missing>"), default=str), []).append(run_id)
        parts.append(f"{key} (" + "; ".join(f"{', '.join(ids)}: {v}" for v, ids in values.items()) + ")")
    more = f", and {len(differing) - max_keys} more keys" if len(differing) > max_keys else ""
    return ", ".join(parts) + more


def _matches(value: str, wanted: Iterable[str] | None) -> bool:
    return wanted is None or value in set(wanted)


#: where published reference runs live (``make publish``); analysis reads them next to the user's own runs
#: (``METARL_SHIPPED_RESULTS`` points elsewhere: the tests use it to read only their own hand-made runs)
SHIPPED_RESULTS = Path(os.environ.get("METARL_SHIPPED_RESULTS", locations.SHIPPED_RESULTS))
#: appended to the label of a shipped run, so that it is drawn and tabulated apart from the user's runs
SHIPPED_SUFFIX = " (shipped)"
#: appended to the label of a published progress snapshot (``analysis.publish.snapshot``): a run not finished yet
IN_PROGRESS_SUFFIX = " (in progress)"


def merge_results(parts: list[Results]) -> Results:
    """Results loaded from several roots as one (their labels already tell the roots apart)."""
    if len(parts) == 1:
        return parts[0]

    def concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
        frames = [f for f in frames if not f.empty] or frames[:1]
        return pd.concat(frames, ignore_index=True)

    return Results(eval=concat([r.eval for r in parts]), train=concat([r.train for r in parts]),
                   runs=concat([r.runs for r in parts]), problems=[p for r in parts for p in r.problems],
                   notes=[n for r in parts for n in r.notes])


def load_results(root: Path | str = "results", include_running: bool = True, envs: Iterable[str] | None = None,
                 algos: Iterable[str] | None = None, label_suffix: str = "") -> Results:
    """Load every valid run under ``root`` (optionally only some envs / algos); invalid runs go to ``problems``.
    ``label_suffix`` is appended to every run's label (shipped runs: :data:`SHIPPED_SUFFIX`)."""
    envs = None if envs is None else list(envs)
    algos = None if algos is None else list(algos)
    evals: list[pd.DataFrame] = []
    trains: list[pd.DataFrame] = []
    runs: list[dict[str, Any]] = []
    configs: dict[tuple[str, str], dict[str, Any]] = {}
    problems: list[tuple[Path, str]] = []
    notes: list[str] = []
    for run in discover_runs(root):
        env, algo = _guess_env_algo(run)
        try:
            meta = read_metadata(run)
            env, algo = meta["env"], meta.get("label") or meta["algo"]  # ablation variants keep their label
            if not (_matches(env, envs) and _matches(algo, algos)):
                continue
            algo += label_suffix
            # a published snapshot of a run in progress: its own label, never pooled with the completed runs
            status = "running" if meta.get("snapshot") else run_state(run, meta)
            if meta.get("snapshot"):
                algo += IN_PROGRESS_SUFFIX
            if status == "stale":
                notes.append(f"{run}: stale (its metadata says running, but no process holds it: killed?); the same "
                             "command resumes it from its last checkpoint")
            if status == "failed":
                raise RunError(f"status 'failed': {meta.get('error') or 'no error recorded'}")
            if status in INCOMPLETE and not include_running:
                raise RunError(f"status {status!r}, not finished (left out: include_running=False)")
            running = status in INCOMPLETE
            if status == "preempted":
                status = "running"  # analysis treats a pre-empted run like a running one (it resumes in place)
            ev, note = read_eval(run, meta["run_id"], running)
            train = read_train(run, running)
        except RunError as exc:
            if _matches(env, envs) and _matches(algo, algos):
                problems.append((run, str(exc)))
            continue
        if note:
            notes.append(f"{run}: {note}")
        keys = {"env": env, "algo": algo, "seed": meta["seed"], "run_id": meta["run_id"], "status": status,
                "protocol": protocol_of(run)}
        configs.setdefault((env, algo), {})[meta["run_id"]] = read_config(run)
        evals.append(ev.drop(columns="run_id").assign(**keys)[RUN_KEYS + [c for c in EVAL_COLUMNS if c != "run_id"]])
        if train is not None:
            extra = [c for c in train.columns if c not in RUN_KEYS]
            trains.append(train[extra].assign(**keys)[RUN_KEYS + extra])
        wall = meta.get("wall_time_s")
        if wall is None and train is not None and "wall_time" in train.columns and len(train):
            wall = float(train["wall_time"].iloc[-1])  # not finished: the time of its last logged row
        runs.append({**keys, "frames": meta.get("frames"), "wall_time_s": wall,
                     "last_eval_frames": int(ev["frames"].max()),
                     "eval_points": int(ev["frames"].nunique()), "git_commit": meta.get("git_commit"),
                     "path": str(run)})
    renamed: dict[tuple[str, str], str] = {}
    for (env, algo), per_run in sorted(configs.items()):
        suffixes = split_by_config(per_run)
        if suffixes:
            for run_id, suffix in suffixes.items():
                renamed[(env, run_id)] = f"{algo} {suffix}"
            notes.append(f"{env}/{algo}: its runs were configured differently ({config_differences(per_run)}): "
                         f"shown as {len(set(suffixes.values()))} rows, never pooled; give each configuration its "
                         "own label= to name them")
    if renamed:
        def relabel(frame: pd.DataFrame) -> pd.DataFrame:
            if frame.empty:
                return frame
            return frame.assign(algo=[renamed.get((e, r), a) for e, r, a in
                                     zip(frame["env"], frame["run_id"], frame["algo"], strict=True)])

        evals, trains = [relabel(e) for e in evals], [relabel(t) for t in trains]
        runs = [{**r, "algo": renamed.get((r["env"], r["run_id"]), r["algo"])} for r in runs]
    eval_df = (pd.concat(evals, ignore_index=True) if evals
               else pd.DataFrame(columns=RUN_KEYS + [c for c in EVAL_COLUMNS if c != "run_id"]))
    train_df = pd.concat(trains, ignore_index=True) if trains else pd.DataFrame(columns=[*RUN_KEYS, "frames"])
    runs_df = pd.DataFrame(runs, columns=[*RUN_KEYS, "frames", "wall_time_s", "last_eval_frames", "eval_points",
                                          "git_commit", "path"])
    for (env, algo, seed), group in runs_df.groupby(["env", "algo", "seed"]):
        if len(group) > 1:
            notes.append(f"{env}/{algo}: seed {seed} appears in {len(group)} runs ({', '.join(group['run_id'])}); "
                         "each run counts as one replicate")
    order = ["env", "algo", "seed", "run_id"]
    eval_df = eval_df.sort_values([*order, "frames", "task_id", "episode"], kind="stable").reset_index(drop=True)
    train_df = train_df.sort_values([*order, "frames"], kind="stable").reset_index(drop=True)
    runs_df = runs_df.sort_values(order, kind="stable").reset_index(drop=True)
    return Results(eval=eval_df, train=train_df, runs=runs_df, problems=problems, notes=notes)


def report(results: Results, file: Any = None) -> None:
    """Print the runs left out (as warnings) and the notes, one line each, to ``file`` (default stderr)."""
    out = file if file is not None else sys.stderr
    for path, reason in results.problems:
        print(f"WARNING: left out {path}: {reason}", file=out)
    for note in results.notes:
        print(f"note: {note}", file=out)


def add_cli_arguments(parser: Any, default_out: str, out_help: str) -> None:
    """The options every analysis CLI takes: where to read and write, which runs, how many resamples."""
    parser.add_argument("--results", type=Path, default=Path("results"), help="results root to read (default: results)")
    parser.add_argument("--out", type=Path, default=Path(default_out), help=f"{out_help} (default: {default_out})")
    parser.add_argument("--env", nargs="+", help="only these envs (default: all)")
    parser.add_argument("--algo", nargs="+", help="only these algorithms (default: all)")
    parser.add_argument("--no-running", action="store_true", help="leave out runs that are still running")
    parser.add_argument("--shipped", type=Path, default=SHIPPED_RESULTS,
                        help="published reference runs drawn next to yours, labelled '<label> (shipped)' "
                             "(default: benchmarks/results)")
    parser.add_argument("--no-shipped", action="store_true", help="leave out the shipped reference runs")
    parser.add_argument("--n-resamples", type=int, default=9999, help="bootstrap resamples per CI (default: 9999)")
    parser.add_argument("--ci-method", choices=("auto", "studentized", "percentile", "BCa", "basic"), default="auto",
                        help="bootstrap CI over seeds (default: auto = studentized bootstrap-t from 4 seeds, nominal "
                             "coverage; percentile below; see analysis/stats.py)")


def load_for_cli(args: Any) -> Results | int:
    """The CLIs' common start: load ``args.results`` (and the shipped reference runs, ``args.shipped``) with the
    ``--env/--algo/--no-running`` filters and print what was left out and why. Returns the results, or an exit code
    (2: neither folder exists, 1: nothing usable)."""
    roots = [(Path(args.results), "")]
    shipped = getattr(args, "shipped", None)
    if shipped is not None and not getattr(args, "no_shipped", False) and Path(shipped).is_dir():
        roots.append((Path(shipped), SHIPPED_SUFFIX))
    parts = []
    for root, suffix in roots:
        if not root.is_dir():
            continue
        algos = None if args.algo is None else [a.removesuffix(SHIPPED_SUFFIX) for a in args.algo]
        parts.append(load_results(root, include_running=not args.no_running, envs=args.env, algos=algos,
                                  label_suffix=suffix))
    if not parts:
        print(f"error: results root {args.results} is not a folder (and no shipped results)", file=sys.stderr)
        return 2
    results = merge_results(parts)
    report(results)
    if results.eval.empty:
        parts_desc = [f"--{name} {' '.join(v)}" for name, v in (("env", args.env), ("algo", args.algo)) if v]
        print(f"error: no usable runs under {args.results}" + (f" ({', '.join(parts_desc)})" if parts_desc else ""),
              file=sys.stderr)
        return 1
    return results
