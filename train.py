"""Training entry point: ``python train.py algo=varibad env=gridworld seed=0`` (Hydra; see conf/config.yaml).

``make train ALGO=.. ENV=..`` and ``make sweep ALGO=.. ENV=.. SEEDS=0,1,2`` call this.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

import hydra
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from algorithms.builder import CONF_DIR, build, env_options
from algorithms.cli import check_command_line
from algorithms.common.checkpoints import CheckpointError
from algorithms.common.errors import ConfigError
from algorithms.common.evaluator import EvaluationInterrupted, summary_table, test_task_set
from algorithms.common.results import RunDirectory, RunLockedError, _now, find_resumable
from algorithms.common.run_checks import check_run_config
from algorithms.common.tracking import NullTracker, Tracker, WandbTracker
from algorithms.common.trainer import Preempted, Trainer, TrainerConfig
from algorithms.references.random_policy import random_policy_returns
from algorithms.registry import UnknownAlgorithmError, get_algo, resolve_device
from envs.registry import UnknownEnvError, get_spec


def compose_config(*overrides: str) -> DictConfig:
    """The config ``train.py`` would run with these command-line overrides (for tests and benchmarks)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def make_tracker(cfg: DictConfig, run_dir: RunDirectory) -> Tracker:
    """The tracker chosen by ``tracking.backend`` (none | wandb); a resumed run continues its wandb run."""
    tracking = cfg.get("tracking")
    if tracking is None or tracking.backend in (None, "none"):
        return NullTracker()
    if tracking.backend != "wandb":
        raise ConfigError(f"unknown tracking.backend {tracking.backend!r}; choose one of: none, wandb")
    group = tracking.group
    if group is None:
        group = f"{cfg.env.name}/{cfg.get('label') or cfg.algo.name}"
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            group += "/" + Path(HydraConfig.get().sweep.dir).name  # one group per sweep
    tracker = WandbTracker(run_dir.path, OmegaConf.to_container(cfg, resolve=True), project=tracking.project,
                           group=group, name=run_dir.run_id, mode=tracking.mode,
                           run_id=run_dir.metadata.get("wandb_run_id"))
    run_dir.write_metadata(wandb_run_id=tracker.run_id)
    return tracker


def launch_command() -> str:
    """The command that reproduces this run: ``python train.py <overrides>`` (under a launcher, ``sys.argv`` is
    the launcher's worker process, not the user's command)."""
    if HydraConfig.initialized():
        return " ".join(["python train.py", *HydraConfig.get().overrides.task])
    return " ".join(sys.argv)


def open_run_directory(cfg: DictConfig, env_name: str, algo_name: str) -> tuple[RunDirectory, bool]:
    """A fresh run folder, or, with ``resume=true``, the killed or pre-empted run with this same config
    (the second value says which)."""
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    label = cfg.get("label") or algo_name
    previous = (find_resumable(cfg.results_dir, env_name, label, int(cfg.seed), config_yaml, cfg.run_name)
                if cfg.get("resume", True) else None)
    if previous is not None:
        return RunDirectory.reopen(previous), True
    run_dir = RunDirectory(cfg.results_dir, env_name, algo_name, int(cfg.seed), cfg.run_name, label)
    run_dir.write_config(config_yaml)
    return run_dir, False


#: environment variable through which a sweep's launching process tells its jobs that the sweep was stopped
SWEEP_STOP_ENV = "METARL_SWEEP_STOP_FILE"
STOP_SIGNALS_RECORDED = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


class EarlyStop:
    """Records a stop signal that arrives while a run is being built, before the trainer listens for them."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._record) for s in STOP_SIGNALS_RECORDED}

    def _record(self, signum: int, frame: object) -> None:
        self.signum = signum

    def handler_before(self, signum: int) -> object:
        """The handler this process had for ``signum`` before the run (e.g. submitit's requeue handler)."""
        return self._previous.get(signum, signal.getsignal(signum))

    def release(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _sweep_note(line: str) -> None:
    """One line for the sweep's end-of-stop summary (printed by the launching process)."""
    stop_file = os.environ.get(SWEEP_STOP_ENV)
    if stop_file:
        with open(f"{stop_file}.summary", "a") as f:
            f.write(line + "\n")


def _sweep_stop_check() -> int | None:
    """In a sweep's job: the signal that stopped the sweep once its launcher was told to stop, else ``None``."""
    stop_file = os.environ.get(SWEEP_STOP_ENV)
    if not (stop_file and _in_multirun()):
        return None
    try:
        return signal.Signals[Path(stop_file).read_text().strip()].value
    except (OSError, KeyError):
        return None


def run(cfg: DictConfig) -> pd.DataFrame | None:
    """Build env and agent, train (or resume), and return the final meta-test rows (``None`` when a sweep's job
    was stopped: the run is checkpointed and marked ``preempted``)."""
    stop_file = os.environ.get(SWEEP_STOP_ENV)
    if _in_multirun() and stop_file and Path(stop_file).exists():
        _sweep_note(f"seed {cfg.seed}: not started (the sweep was stopped before this job began)")
        return None
    check_run_config(cfg)  # before anything is built or written
    early = EarlyStop()
    try:
        return _run(cfg, early)
    finally:
        early.release()


def _run(cfg: DictConfig, early: EarlyStop) -> pd.DataFrame | None:
    agent, env = build(cfg)
    env_spec = get_spec(cfg.env.name)
    algo_spec = get_algo(cfg.algo.name)
    eval_tasks = test_task_set(env_spec.name, cfg.eval.num_tasks, seed=int(cfg.seed), **env_options(cfg))
    run_dir, resuming = open_run_directory(cfg, env_spec.name, algo_spec.name)
    if resuming and run_dir.metadata.get("update_threads"):
        agent.update_threads = int(run_dir.metadata["update_threads"])  # what update_threads=auto chose at the start
    run_dir.write_metadata(device=resolve_device(str(cfg.device), algo_spec, torch.cuda.is_available()),
                           command=launch_command(), update_threads=agent.update_threads)
    trainer_cfg = TrainerConfig(
        num_frames=int(cfg.train.num_frames), eval_interval_frames=int(cfg.train.eval_interval_frames),
        log_interval_iterations=int(cfg.train.log_interval_iterations),
        checkpoint_interval_frames=int(cfg.train.checkpoint_interval_frames),
        eval_episodes=int(cfg.eval.episodes or cfg.env.get("episodes_eval") or env_spec.episodes_eval),
        eval_deterministic=bool(cfg.eval.deterministic), progress=bool(cfg.progress),
        log_interval_seconds=float(cfg.train.get("log_interval_seconds", 60.0)),
        final_eval_episodes=cfg.eval.get("final_episodes"))
    tracker = make_tracker(cfg, run_dir)
    trainer = Trainer(agent, env, env_spec.name, eval_tasks, run_dir, trainer_cfg, int(cfg.seed),
                      env_options(cfg), tracker, stop_check=_sweep_stop_check if _in_multirun() else None)
    if resuming:
        try:
            note = trainer.restore(run_dir.checkpoints / "latest.pt")
        except CheckpointError as exc:
            run_dir.write_metadata(status="failed", end_time=_now(), error=f"cannot resume: {exc}")
            run_dir.close()
            raise ConfigError(f"cannot resume {run_dir.path}: {exc}. Start a new run with resume=false (this run's "
                              "folder is kept as it is), or put a good checkpoint at checkpoints/latest.pt") from None
        if note:
            print(f"[metarl-bench] warning: {note}", file=sys.stderr, flush=True)
        print(f"[metarl-bench] resuming {run_dir.path} at frame {trainer.frames}", flush=True)
    else:
        print(f"[metarl-bench] run folder: {run_dir.path}", flush=True)
    if early.signum is not None:  # stopped while it was being built: checkpoint at once, then stop
        trainer.request_stop(early.signum)
    # the trainer's handlers replace the early ones while it trains (no moment without one); the handlers from
    # before the run come back when run() returns
    try:
        final = trainer.train()
    except Preempted as stop:
        tracker.finish(exit_code=128 + stop.signum)
        run_dir.close()
        env.close()
        print(f"[metarl-bench] {stop} (run {run_dir.path}, frame {trainer.frames})", file=sys.stderr, flush=True)
        handler = early.handler_before(stop.signum)
        early.release()
        if callable(handler) and handler is not signal.default_int_handler:
            handler(stop.signum, None)  # e.g. submitit's: requeue the job, which then resumes this run
        elif _in_multirun():
            # a sweep's job: end normally (no exit, no traceback in the launcher); the sweep prints a summary
            _sweep_note(f"{run_dir.path}: preempted at frame {trainer.frames:,} (checkpointed; the same command "
                        "resumes it)")
            return None
        sys.exit(128 + stop.signum)
    except BaseException:
        tracker.finish(exit_code=1)
        raise
    tracker.finish()
    run_dir.close()
    env.close()
    try:
        random_returns = random_policy_returns(
            env_spec.name, env_options(cfg), eval_tasks, trainer_cfg.eval_episodes,
            Path(cfg.results_dir) / "references" / "random_policy.json", should_stop=lambda: early.signum is not None,
            log=lambda line: print(f"[metarl-bench] {line}", flush=True))
    except EvaluationInterrupted:
        print("[metarl-bench] random-policy baseline skipped (stopped)", flush=True)
        random_returns = None
    table = summary_table(final, algo_spec.name, random_returns, show_success=env_spec.name.startswith("ml1_"))
    print(f"[metarl-bench] final meta-test per episode ({len(eval_tasks)} tasks, "
          f"{'deterministic' if trainer_cfg.eval_deterministic else 'stochastic'} policy):\n{table.to_string()}")
    print(f"[metarl-bench] results written to {run_dir.path}", flush=True)
    return final


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except (UnknownEnvError, UnknownAlgorithmError, ConfigError, OmegaConfBaseException, FileExistsError,
            RunLockedError) as exc:
        # configuration errors: one clear line and a non-zero exit, before any work or results folder
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def launch() -> None:
    """``python train.py ...``. A sweep (``--multirun``) stops cleanly on Ctrl-C or SIGTERM: its jobs get the signal
    too (one process group) and each run finishes its iteration, checkpoints and is marked ``preempted``; jobs not
    yet started are not started; the launching process waits for them and prints one summary instead of
    tracebacks. A second Ctrl-C stops at once."""
    problem = check_command_line(sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    if not any(arg in ("-m", "--multirun") for arg in sys.argv[1:]):
        main()
        return
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


if __name__ == "__main__":
    launch()
