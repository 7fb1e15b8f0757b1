"""Reproduce one of the papers' figures or tables with one resumable command.

    python -m launch.reproduce pointrobot [--plan] [--jobs 2] [--launcher local|slurm|ray|submitit_local] [--snapshot]
    make reproduce FIGURE=pointrobot [PLAN=1] [JOBS=2] [LAUNCHER=local] [SNAPSHOT=1]

A manifest, ``benchmarks/reproduce/<name>.yaml`` (``launch.manifest``), names the runs the figure needs (algo, env,
seeds, label, Hydra overrides), the final meta-test it shows, the protocol panel each run is drawn in, and what the
paper states. Each call looks at every run the manifest names (``launch.run_status``) and

* publishes a completed run to ``benchmarks/results/`` (``analysis.publish``), as soon as it completes, and skips a
  published one;
* resumes a stopped one (``preempted``, or ``stale``: killed without a chance to checkpoint) and starts a missing
  one, at most ``--jobs`` at once, each ``nice``d, each in its own process, through ``train.py``, the longest first
  (``longest_first``);
* once every run is published, writes the figure and tables (``analysis.reproduce_report``) to
  ``results/reproduce/<name>/report/``.

A campaign uses one commit. The first call pins the checkout's ``HEAD`` in
``results/reproduce/<name>/campaign.json`` (or, where some of the manifest's runs are published already, their
commit: a campaign whose machine was lost goes on at its own commit) and checks that commit out in a git worktree
beside it; every run of the campaign, started or resumed, runs that worktree's code, so the main checkout can move
on while a campaign runs for days. ``--plan`` starts nothing: per run it prints the state (missing / running /
stopped / completed / published), the frames done, the hours left at the speed the run has had so far (one torch
thread: CPU-hours where it had a core to itself), and its last meta-test. ``--snapshot`` publishes the curve so far
of every unfinished run, marked in progress (``analysis.publish.snapshot``): what a long campaign has learned is in
the repository even if the machine running it is lost; the completed run replaces it. Each snapshot also ships the
run's resume point (``launch.resume_point``): on a machine that lacks the run, the next call restores it from there
and resumes it, rather than starting it again.

Ctrl-C or SIGTERM stops the campaign cleanly: every run gets SIGTERM, checkpoints and is marked ``preempted``, and
the same command resumes it. ``--stop`` does that to a campaign running in another process (in the background, under
``nohup``) and waits until every run has checkpointed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.load import SHIPPED_RESULTS
from analysis.publish import PublishError, publish, write_index
from launch.manifest import BELIEF_GOAL, Manifest, ManifestError, RunSpec, load_manifest
from launch.resume_point import SNAPSHOT_KEY, restorable, restore_run, snapshot_with_resume_point
from launch.run_status import RunStatus, print_plan, published_commit, run_status, runs_of, statuses
from records import locations, run_folder
from records.command_line import command_line

REPO = locations.REPO_ROOT
#: settings every campaign run gets (operational: they do not change what a run computes): one torch thread per
#: process (runs share the cores), progress lines for the log files instead of a bar
CAMPAIGN_OVERRIDES = ("progress=false", "update_threads=1")
#: the local launcher's pid, in the campaign folder while it runs (``--stop`` signals it)
LAUNCHER_PID = "launcher.pid"


def belief_exports(manifest: Manifest, status: RunStatus) -> list[tuple[str, list[str]]]:
    """The belief traces the manifest's pictures need from this run and its folder lacks: (file name,
    ``tools.export_beliefs`` arguments after the run folder)."""
    needed = []
    for entry in manifest.data.get("beliefs") or []:
        if status.spec.label in entry["labels"] and status.spec.seed == entry["seed"] and status.path is not None:
            goal = [str(int(v)) for v in entry.get("goal", BELIEF_GOAL)]
            name = f"beliefs_goal{goal[0]}_{goal[1]}.npz"
            if not (status.path / name).is_file() and name not in {n for n, _ in needed}:  # pictures may share one
                needed.append((name, ["--goal", *goal, "--episodes", str(int(entry.get("episodes", 2)))]))
    return needed


def export_belief_traces(manifest: Manifest, found: list[RunStatus], python: str) -> None:
    """Export what :func:`belief_exports` lists, with this checkout's ``tools.export_beliefs`` (a run folder's config
    and final checkpoint are all it reads). A run published without its trace gets it from the run folder it was
    published from, where that is still on this machine."""
    for status in found:
        if status.state not in ("completed", "published") or status.path is None:
            continue
        for name, arguments in belief_exports(manifest, status):
            source = status.path
            if status.state == "published":
                source = Path(json.loads((status.path / run_folder.METADATA).read_text())["published"]["source"])
                if not (source / run_folder.CHECKPOINTS / "final.pt").is_file():
                    print(f"[reproduce] no belief trace for {status.spec.label} seed {status.spec.seed}: its "
                          f"checkpoint is not on this machine ({source})", file=sys.stderr)
                    continue
            done = subprocess.run([python, "-m", "tools.export_beliefs", str(source), *arguments], cwd=REPO,
                                  capture_output=True, text=True)
            tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or [""]
            print(f"[reproduce] belief trace of {status.spec.label} seed {status.spec.seed}: {tail[0]}", flush=True)
            if status.state == "published" and (source / name).is_file():
                shutil.copy2(source / name, status.path / name)



# ---------------------------------------------------------------------------------------------------- campaign
@dataclass
class Campaign:
    """The campaign's folder: the pinned commit and its worktree, and the runs' log files."""

    root: Path
    commit: str
    code: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"


def _git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def open_campaign(manifest: Manifest, results: Path, repo: Path = REPO, create: bool = True,
                  published: str | None = None) -> Campaign | None:
    """The campaign of ``manifest`` under ``results/reproduce/<name>``: its pinned commit and a worktree of it, made
    again where it is missing. The first call pins ``published`` (the commit of the runs already published, see
    :func:`published_commit`) or else ``HEAD`` of ``repo``. ``None`` when there is none and ``create`` is false."""
    root = results / "reproduce" / manifest.name
    state = root / "campaign.json"
    if state.is_file():
        commit = json.loads(state.read_text())["commit"]
    elif not create:
        return None
    else:
        if published:
            found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{published}^{{commit}}"], cwd=repo,
                                   capture_output=True, text=True)
            if found.returncode:
                raise ManifestError(f"its published runs come from commit {published[:10]}, which this clone does "
                                    "not have: fetch it (git fetch --unshallow) to go on at it")
            commit = found.stdout.strip()
            print(f"[reproduce] the campaign goes on at {commit[:10]}, the commit of its published runs",
                  file=sys.stderr)
        else:
            commit = _git("rev-parse", "HEAD", cwd=repo)
            if _git("status", "--porcelain", "--untracked-files=no", cwd=repo):
                print(f"[reproduce] note: the checkout has uncommitted changes; the campaign runs commit "
                      f"{commit[:10]} as committed", file=sys.stderr)
        root.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"figure": manifest.name, "commit": commit,
                                     "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}, indent=2))
    code = root / "code"
    if not (code / "train.py").is_file():
        subprocess.run(["git", "worktree", "prune"], cwd=repo, check=False, capture_output=True)
        _git("worktree", "add", "--detach", str(code.resolve()), commit, cwd=repo)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    return Campaign(root, commit, code)


# ---------------------------------------------------------------------------------------------------- launching
def train_overrides(spec: RunSpec, manifest: Manifest, results: Path) -> list[str]:
    """The command-line overrides of a campaign run (the same on every call, so that ``train.py`` resumes it)."""
    args = [f"algo={spec.algo}", f"env={spec.env}", f"seed={spec.seed}", f"label={spec.label}",
            f"results_dir={results.resolve()}", *CAMPAIGN_OVERRIDES,
            f"train.checkpoint_interval_frames={manifest.checkpoint_interval}"]
    if manifest.final_episodes:
        args.append(f"eval.final_episodes={manifest.final_episodes}")
    return [*args, *spec.overrides]


def start_niced_session(command: list[str], nice: int, cwd: Path, stdout: Any, env: dict[str, str]) -> subprocess.Popen:
    """Start ``command`` at niceness ``nice`` in a session of its own (a Ctrl-C at the terminal reaches the launcher
    alone).

    On Linux with autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``, sched(7)) the CPU is shared
    between sessions first and by niceness only within one: a process alone in its session competes with every
    terminal as an equal, whatever ``nice -n`` set. So the session's autogroup gets the niceness too, and the run
    yields to interactive work and benchmarks as a niced process should. Where the kernel has no autogroups the file
    is absent and the process niceness is all there is."""
    proc = subprocess.Popen(["nice", "-n", str(nice), *command], cwd=cwd, stdout=stdout, stderr=subprocess.STDOUT,
                            start_new_session=True, env=env)
    with contextlib.suppress(OSError):  # no autogroups here, or the process has already ended
        Path(f"/proc/{proc.pid}/autogroup").write_text(f"{nice}\n")
    return proc


class LocalPool:
    """Runs ``train.py`` processes, at most ``jobs`` at once, each niced and in its own session (a Ctrl-C reaches
    this process only, which passes SIGTERM on to every run so that each checkpoints)."""

    def __init__(self, campaign: Campaign, python: str, jobs: int, nice: int) -> None:
        self.campaign, self.python, self.jobs, self.nice = campaign, python, max(1, jobs), nice
        self.stopping: int | None = None
        self.failed: list[str] = []

    def _stop(self, signum: int, frame: object) -> None:
        if self.stopping is None:
            print(f"\n[reproduce] {signal.Signals(signum).name}: stopping; every run checkpoints and stops (the same "
                  "command resumes them)", file=sys.stderr, flush=True)
        self.stopping = signum

    def run(self, todo: list[tuple[RunSpec, list[str]]],
            on_finished: Callable[[RunSpec], None] | None = None) -> int:
        """Run ``todo`` (spec, ``train.py`` overrides); ``on_finished(spec)`` as each run completes (publishing it
        then, not when the whole campaign ends, lands it in ``benchmarks/results/`` hours earlier)."""
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGINT, signal.SIGTERM)}
        running: dict[subprocess.Popen, RunSpec] = {}
        signalled: set[subprocess.Popen] = set()
        queue = list(todo)
        try:
            while queue or running:
                while queue and len(running) < self.jobs and self.stopping is None:
                    spec, overrides = queue.pop(0)
                    log = self.campaign.logs / f"{spec.env}_{spec.label}_seed{spec.seed}.log"
                    command = [self.python, "train.py", *overrides]
                    print(f"[reproduce] start {spec.label} seed {spec.seed} (log {log})", flush=True)
                    with log.open("a") as handle:
                        handle.write(f"\n# {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}: "
                                     f"nice -n {self.nice} {' '.join(command)}\n")
                        handle.flush()
                        proc = start_niced_session(command, self.nice, cwd=self.campaign.code, stdout=handle,
                                                   env={**os.environ, "PYTHONPATH": str(self.campaign.code)})
                    running[proc] = spec
                if self.stopping is not None:
                    for proc in running:
                        if proc.poll() is None and proc not in signalled:  # once: a second could cut its exit short
                            proc.send_signal(signal.SIGTERM)
                            signalled.add(proc)
                    queue.clear()
                for proc in [p for p in running if p.poll() is not None]:
                    spec = running.pop(proc)
                    ok = proc.returncode == 0
                    stopped = proc.returncode in (130, 143, -signal.SIGTERM, -signal.SIGINT)
                    word = "finished" if ok else "stopped (checkpointed)" if stopped else f"failed ({proc.returncode})"
                    print(f"[reproduce] {spec.label} seed {spec.seed} {word}", flush=True)
                    if not ok and not stopped:
                        self.failed.append(f"{spec.label} seed {spec.seed}")
                    if ok and on_finished is not None:
                        try:
                            on_finished(spec)
                        except Exception as exc:  # a run that cannot be published now is published by the next call
                            print(f"[reproduce] {spec.label} seed {spec.seed}: not published now ({exc})",
                                  file=sys.stderr, flush=True)
                time.sleep(0.5)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.stopping is not None:
            return 128 + self.stopping
        return 1 if self.failed else 0


def launch_cluster(campaign: Campaign, python: str, todo: list[tuple[RunSpec, list[str]]], launcher: str,
                   jobs: int) -> int:
    """One Hydra multirun per label through the existing launchers (conf/launcher/): the seeds of a label go as
    ``seed=a,b,c`` and the rest of its overrides are shared."""
    code = 0
    by_label: dict[tuple[str, ...], list[int]] = {}
    for spec, overrides in todo:
        shared = tuple(o for o in overrides if not o.startswith("seed="))
        by_label.setdefault(shared, []).append(spec.seed)
    for shared, seeds in by_label.items():
        extra = [f"launcher={launcher}"] + ([f"hydra.launcher.ray.init.num_cpus={jobs}"] if launcher == "ray" else [])
        command = [python, "train.py", "--multirun", f"seed={','.join(map(str, seeds))}", *shared, *extra]
        print(f"[reproduce] {' '.join(command)}", flush=True)
        result = subprocess.run(command, cwd=campaign.code, env={**os.environ, "PYTHONPATH": str(campaign.code)})
        code = code or result.returncode
    return code


def longest_first(todo: list[RunStatus]) -> list[RunStatus]:
    """The order in which runs start: those whose length nobody can tell yet first (no speed measured for their algo
    on this env here: they may be the longest, and once started the plan can estimate them), then the most hours left
    first. Starting the longest runs first lets the cores finish together: a 5-hour run queued behind 2-hour ones
    would end 2 hours after them on a core of its own. Ties keep the manifest's order (its seeds in order)."""
    return sorted(todo, key=lambda s: (s.hours_left is not None, -(s.hours_left or 0.0)))


# ---------------------------------------------------------------------------------------------------- main
def _publish_each(found: list[RunStatus], states: tuple[str, ...], action: Any, done: str) -> list[Path]:
    """``action(run folder)`` (publish or snapshot) for every run in one of ``states``; what it wrote."""
    written = []
    for status in found:
        if status.state in states and status.path is not None:
            try:
                target = action(status.path)
            except PublishError as exc:
                print(f"[reproduce] not {done}: {status.path}: {exc}", file=sys.stderr)
                continue
            print(f"[reproduce] {done} {target} ({status.last_eval})")
            written.append(target)
    return written


def publish_completed(found: list[RunStatus], shipped: Path, manifest: Manifest | None = None,
                      python: str = sys.executable) -> list[Path]:
    """Publish every completed run, after exporting the belief traces the manifest's pictures need from it."""
    if manifest is not None:
        export_belief_traces(manifest, found, python)
    return _publish_each(found, ("completed",), lambda run: publish(run, shipped), "published")


def snapshot_unfinished(found: list[RunStatus], shipped: Path) -> list[Path]:
    """Publish a progress snapshot of every unfinished run, each with its resume point (``launch.resume_point``)."""
    written = _publish_each(found, ("running", "stopped"), lambda run: snapshot_with_resume_point(run, shipped),
                            "progress snapshot")
    for target in written:
        point = json.loads((target / "metadata.json").read_text())["snapshot"][SNAPSHOT_KEY]
        if point is None:
            print(f"[reproduce] {target.name}: no resume point shipped (no checkpoint yet, or too large for git even "
                  "without its refillable buffers)")
        else:
            emptied = f", without its {', '.join(point['emptied'])}" if point["emptied"] else ""
            print(f"[reproduce] {target.name}: resume point at frame {point['frames']:,} "
                  f"({point['bytes'] / 2**20:.1f} MB{emptied})")
    return written


def restore_lost_runs(manifest: Manifest, found: list[RunStatus], results: Path, shipped: Path) -> list[Path]:
    """Put back into ``results`` every missing run whose progress snapshot ships a resume point (its machine was
    lost), where the snapshot comes from the commit the campaign runs; the run then resumes like any stopped one."""
    campaign = open_campaign(manifest, results, create=False)
    try:
        commit = campaign.commit if campaign else published_commit(found)
    except ManifestError:
        return []  # the caller reports it when it opens the campaign
    restored = []
    for status in found:
        if status.state != "missing":
            continue
        for snap, _ in runs_of(shipped, status.spec):
            meta = restorable(snap)
            if meta is None:
                continue
            if commit and meta.get("git_commit") != commit:
                print(f"[reproduce] not restored: {snap} ran commit {str(meta.get('git_commit'))[:10]}, the "
                      f"campaign runs {commit[:10]}; the run starts again", file=sys.stderr)
                break
            run = restore_run(snap, results)
            point = meta["snapshot"][SNAPSHOT_KEY]
            emptied = f" (its {', '.join(point['emptied'])} starts empty)" if point["emptied"] else ""
            print(f"[reproduce] restored {status.spec.label} seed {status.spec.seed} from its progress snapshot: "
                  f"{run} resumes at frame {point['frames']:,}{emptied}")
            restored.append(run)
            break
    return restored


def _launcher_pid(root: Path) -> int | None:
    """The pid in the campaign's ``launcher.pid`` if that process is alive and is this tool."""
    try:
        pid = int((root / LAUNCHER_PID).read_text().strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if "launch.reproduce" in command else None


def stop_campaign(root: Path, name: str, timeout: float = 600.0) -> int:
    """SIGTERM to the campaign's launcher (it passes it on: every run checkpoints and stops), then wait for it."""
    pid = _launcher_pid(root)
    if pid is None:
        print(f"[reproduce] no campaign of {name} is running on this machine")
        return 0
    os.kill(pid, signal.SIGTERM)
    print(f"[reproduce] stopping the campaign of {name} (pid {pid}): every run checkpoints", flush=True)
    deadline = time.time() + timeout
    while time.time() < deadline and _launcher_pid(root) == pid:
        time.sleep(1.0)
    if _launcher_pid(root) == pid:
        print(f"[reproduce] the campaign of {name} has not stopped within {timeout:.0f} s", file=sys.stderr)
        return 1
    print("[reproduce] stopped; the same command resumes it")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = command_line(__doc__, prog="python -m launch.reproduce")
    parser.add_argument("figure", help="a manifest name (benchmarks/reproduce/<name>.yaml) or a manifest's path")
    parser.add_argument("--plan", action="store_true", help="print each run's state and the hours left; start nothing")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once on this machine (default 2)")
    parser.add_argument("--launcher", choices=("local", "slurm", "ray", "submitit_local"), default="local",
                        help="local: a niced process per run (default); slurm, ray, submitit_local: one Hydra multirun "
                             "per label through conf/launcher/")
    parser.add_argument("--stop", action="store_true",
                        help="stop this figure's campaign running in another process (every run checkpoints; the "
                             "same command resumes it) and wait until it has")
    parser.add_argument("--snapshot", action="store_true",
                        help="publish the curve so far of unfinished runs (marked in progress); start nothing")
    parser.add_argument("--results", type=Path, default=Path("results"), help="results root (default results)")
    parser.add_argument("--shipped", type=Path, default=SHIPPED_RESULTS,
                        help="where completed runs are published (default benchmarks/results)")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the local runs (default 10)")
    parser.add_argument("--python", default=sys.executable, help="the Python that runs train.py")
    parser.add_argument("--n-resamples", type=int, default=9999, help="bootstrap resamples per CI in the report")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.jobs < 1:
        print(f"error: --jobs must be >= 1, got {args.jobs}", file=sys.stderr)
        return 2
    try:
        manifest = load_manifest(args.figure)
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results, shipped = args.results, args.shipped
    if args.stop:
        return stop_campaign(results / "reproduce" / manifest.name, manifest.name)
    found = statuses(manifest, results, shipped)
    everything_published = all(s.state == "published" for s in found)
    if args.plan or args.snapshot:
        campaign = open_campaign(manifest, results, create=False)
        print_plan(manifest, found, campaign.commit if campaign else None)
        if args.snapshot and snapshot_unfinished(found, shipped):
            write_index(shipped, args.n_resamples, _readme_for(shipped))
        return 0
    published = publish_completed(found, shipped, manifest, args.python)
    if published:
        write_index(shipped, args.n_resamples, _readme_for(shipped))
        found = statuses(manifest, results, shipped)
    if restore_lost_runs(manifest, found, results, shipped):
        found = statuses(manifest, results, shipped)
    todo = longest_first([s for s in found if s.state in ("missing", "stopped")])
    code = 0
    if todo:
        try:
            campaign = (open_campaign(manifest, results, create=False)
                        or open_campaign(manifest, results, published=published_commit(found)))
        except ManifestError as exc:
            print(f"error: {manifest.name}: {exc}", file=sys.stderr)
            return 2
        assert campaign is not None
        print_plan(manifest, found, campaign.commit)
        pending = [(s.spec, train_overrides(s.spec, manifest, results)) for s in todo]
        # runs of this campaign that another process is running take their slots
        slots = args.jobs - sum(s.state == "running" for s in found)
        if args.launcher == "local" and slots < 1:
            print(f"[reproduce] all {args.jobs} slot(s) are taken by runs going on in another process; "
                  f"{len(pending)} run(s) wait: run this again when they end (or with a larger --jobs)")
        elif args.launcher == "local":
            def publish_finished(spec: RunSpec) -> None:
                done = [run_status(spec, results, shipped)]  # this run only: the others' states cost time
                if publish_completed(done, shipped, manifest, args.python):
                    write_index(shipped, args.n_resamples, _readme_for(shipped))

            pid_file = campaign.root / LAUNCHER_PID
            pid_file.write_text(str(os.getpid()))
            try:
                code = LocalPool(campaign, args.python, slots, args.nice).run(pending, publish_finished)
            finally:
                if pid_file.is_file() and pid_file.read_text().strip() == str(os.getpid()):
                    pid_file.unlink()
        else:
            code = launch_cluster(campaign, args.python, pending, args.launcher, args.jobs)
        found = statuses(manifest, results, shipped)
        if publish_completed(found, shipped, manifest, args.python):
            write_index(shipped, args.n_resamples, _readme_for(shipped))
            found = statuses(manifest, results, shipped)
    elif not everything_published and not published:
        existing = open_campaign(manifest, results, create=False)
        print_plan(manifest, found, existing.commit if existing else None)
    if all(s.state == "published" for s in found):
        from analysis.reproduce_report import write_report

        out = results / "reproduce" / manifest.name / "report"
        for path in write_report(manifest.data, manifest.name, shipped, out, n_resamples=args.n_resamples):
            print(f"[reproduce] wrote {path}")
        return code
    running = [s for s in found if s.state == "running"]
    if running and not todo:
        print(f"[reproduce] {len(running)} run(s) still running in another process; run this again when they end",
              file=sys.stderr)
    return code if code else (0 if running else 1 if any(s.state == "missing" for s in found) else 0)


def _readme_for(shipped: Path) -> Path | None:
    """The repository README's generated block follows the repository's own shipped runs only."""
    from analysis.publish import README, REPOSITORY_SHIPPED

    return README if Path(shipped).resolve() == REPOSITORY_SHIPPED else None


if __name__ == "__main__":
    sys.exit(main())
