"""How runs and sweeps stop cleanly: a stop signal makes a run finish its step, checkpoint and exit ``preempted``;
the same command resumes it.

* :data:`STOP_SIGNALS`: Slurm's SIGTERM before a kill, Ctrl-C, and SIGUSR2, which submitit asks Slurm to send ahead
  of a time limit or a pre-emption (its handler then requeues the job).
* :class:`StopSignalRecorder`: remembers a stop that arrives while a run is being built, before the trainer
  listens for signals.
* A ``--multirun`` sweep (:func:`run_sweep`): its launching process writes the stop into a file named by
  :data:`SWEEP_STOP_ENV`, which every job asks (:func:`sweep_stop_signal`) and adds a line of summary to
  (:func:`sweep_note`).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)
#: environment variable through which a sweep's launching process tells its jobs that the sweep was stopped
SWEEP_STOP_ENV = "METARL_SWEEP_STOP_FILE"


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra ``--multirun`` sweep."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
    except ImportError:
        return False
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


class StopSignalRecorder:
    """While open, records (instead of acting on) a stop signal; on close the process's own handlers come back.

    Opened around the building of a run, so that a stop that comes before the trainer listens is not lost: the run
    then checkpoints at once. :meth:`handler_before` gives the handler the process had (e.g. submitit's requeue).
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignalRecorder:
        if threading.current_thread() is threading.main_thread():  # signals can only be caught there
            self._previous = {s: signal.signal(s, self._record) for s in STOP_SIGNALS}
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def _record(self, signum: int, frame: object) -> None:
        self.signum = signum

    def handler_before(self, signum: int) -> object:
        """The handler this process had for ``signum`` before the run."""
        return self._previous.get(signum, signal.getsignal(signum))

    def release(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def sweep_note(line: str) -> None:
    """In a sweep's job: one line for the summary the launching process prints when the sweep stops."""
    stop_file = os.environ.get(SWEEP_STOP_ENV)
    if stop_file:
        with open(f"{stop_file}.summary", "a") as f:
            f.write(line + "\n")


def sweep_stop_signal() -> int | None:
    """In a sweep's job: the signal that stopped the sweep once its launcher was told to stop, else ``None``."""
    stop_file = os.environ.get(SWEEP_STOP_ENV)
    if not (stop_file and in_multirun()):
        return None
    try:
        return signal.Signals[Path(stop_file).read_text().strip()].value
    except (OSError, KeyError):
        return None


def run_sweep(main: Callable[[], None]) -> None:
    """Run a ``--multirun`` sweep (``main``: Hydra's entry point) so that it stops cleanly and exits with the code
    of the stop.

    On Ctrl-C or SIGTERM every job gets the signal too (one process group) and its run finishes its iteration,
    checkpoints and is marked ``preempted``; jobs not yet started are not started; this process waits for them and
    prints one summary instead of tracebacks. A second Ctrl-C stops at once.
    """
    stop_dir = Path(tempfile.mkdtemp(prefix="metarl-sweep-"))
    stop_file = stop_dir / "stop"
    os.environ[SWEEP_STOP_ENV] = str(stop_file)

    def on_stop(signum: int, frame: object) -> None:
        if stop_file.exists():
            raise KeyboardInterrupt  # a second stop: do not wait
        stop_file.write_text(signal.Signals(signum).name)
        print(f"\n[metarl-bench] {signal.Signals(signum).name}: stopping the sweep; every run finishes its iteration "
              "(or abandons its meta-test), checkpoints and stops. Press Ctrl-C again to stop at once.",
              file=sys.stderr, flush=True)

    previous = {s: signal.signal(s, on_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    if "launcher=submitit_local" in sys.argv[1:]:
        # submitit's local controller processes turn Ctrl-C into a traceback and a SIGKILL of their job one second
        # later, too soon for a run to checkpoint. Launched with SIGINT ignored (inherited), they leave Ctrl-C to the
        # jobs, which catch it themselves; the launcher then learns of the stop from the jobs' summary lines.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    code = 0
    try:
        main()
    except KeyboardInterrupt:
        print("[metarl-bench] sweep stopped at once: runs that did not checkpoint resume from their last checkpoint",
              file=sys.stderr)
        code = 130
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = Path(f"{stop_file}.summary")
    lines = summary.read_text().splitlines() if summary.exists() else []
    if lines and not stop_file.exists():  # the jobs were stopped by a signal of their own (Ctrl-C reaches them all)
        stop_file.write_text("SIGINT")
    if stop_file.exists():
        print(f"[metarl-bench] sweep stopped by {stop_file.read_text()}; {len(lines)} job(s):", file=sys.stderr)
        for line in lines:
            print(f"  {line}", file=sys.stderr)
        print("[metarl-bench] run the same command again to resume them", file=sys.stderr, flush=True)
        code = 128 + signal.Signals[stop_file.read_text()].value
    shutil.rmtree(stop_dir, ignore_errors=True)
    sys.exit(code)


def sweep_stopped_before_start() -> bool:
    """In a sweep's job: whether the sweep was stopped before this job began (it then starts nothing)."""
    stop_file = os.environ.get(SWEEP_STOP_ENV)
    return bool(in_multirun() and stop_file and Path(stop_file).exists())
