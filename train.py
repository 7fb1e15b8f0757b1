"""Training entry point: ``python train.py algo=varibad env=gridworld seed=0`` (Hydra; see conf/config.yaml).

``make train ALGO=.. ENV=..`` and ``make sweep ALGO=.. ENV=.. SEEDS=0,1,2`` call this. A stop signal makes the run
checkpoint and exit ``preempted``; the same command resumes it (``algorithms/common/stopping.py``).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import hydra
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from algorithms.builder import RunSetup, build
from algorithms.cli import check_command_line
from algorithms.common import stopping
from algorithms.common.checkpoints import CheckpointError
from algorithms.common.errors import ConfigError
from algorithms.common.evaluator import EvaluationInterrupted, summary_table
from algorithms.common.results import RunDirectory, RunLockedError, _now, new_run_directory, resumable_run
from algorithms.common.run_checks import check_run_config
from algorithms.common.tracking import make_tracker
from algorithms.common.trainer import Preempted, Trainer, TrainerConfig
from algorithms.references.random_policy import random_policy_returns
from algorithms.registry import UnknownAlgorithmError
from envs.registry import UnknownEnvError
from records import run_folder


def log(line: str, error: bool = False) -> None:
    print(f"[metarl-bench] {line}", file=sys.stderr if error else sys.stdout, flush=True)


def launch_command() -> str:
    """The command that reproduces this run (under a launcher, ``sys.argv`` is the launcher's worker process)."""
    if HydraConfig.initialized():
        return " ".join(["python train.py", *HydraConfig.get().overrides.task])
    return " ".join(sys.argv)


def run(cfg: DictConfig) -> pd.DataFrame | None:
    """Build env and agent, train (or resume), and return the final meta-test rows (``None`` when a sweep's job
    was stopped: the run is checkpointed and marked ``preempted``)."""
    if stopping.sweep_stopped_before_start():
        stopping.sweep_note(f"seed {cfg.seed}: not started (the sweep was stopped before this job began)")
        return None
    check_run_config(cfg)  # before anything is built or written
    with stopping.StopSignalRecorder() as early:
        return _train(cfg, early)


def _train(cfg: DictConfig, early: stopping.StopSignalRecorder) -> pd.DataFrame | None:
    previous = resumable_run(cfg)
    recorded_threads = RunDirectory.read_metadata(previous).get("update_threads") if previous else None
    setup = build(cfg, update_threads=recorded_threads)  # a resumed run keeps what update_threads=auto chose
    run_dir = RunDirectory.reopen(previous) if previous else new_run_directory(cfg)
    run_dir.write_metadata(device=setup.device, command=launch_command(), update_threads=setup.agent.update_threads)
    trainer_cfg = TrainerConfig.from_run_config(cfg, setup.eval_episodes)
    tracker = make_tracker(cfg, run_dir)
    trainer = Trainer(setup.agent, setup.env, setup.env_spec.name, setup.eval_tasks, run_dir, trainer_cfg,
                      int(cfg.seed), setup.env_options, tracker,
                      stop_check=stopping.sweep_stop_signal if stopping.in_multirun() else None)
    if previous:
        try:
            note = trainer.restore(run_dir.checkpoints / "latest.pt")
        except CheckpointError as exc:
            run_dir.write_metadata(status=run_folder.FAILED, end_time=_now(), error=f"cannot resume: {exc}")
            run_dir.close()
            raise ConfigError(f"cannot resume {run_dir.path}: {exc}. Start a new run with resume=false (this run's "
                              "folder is kept as it is), or put a good checkpoint at checkpoints/latest.pt") from None
        if note:
            log(f"warning: {note}", error=True)
        log(f"resuming {run_dir.path} at frame {trainer.frames}")
    else:
        log(f"run folder: {run_dir.path}")
    if early.signum is not None:  # stopped while it was being built: checkpoint at once, then stop
        trainer.request_stop(early.signum)
    try:  # the trainer's signal handlers replace the recorder's while it trains
        final = trainer.train()
    except Preempted as stop:
        tracker.finish(exit_code=128 + stop.signum)
        run_dir.close()
        setup.env.close()
        log(f"{stop} (run {run_dir.path}, frame {trainer.frames})", error=True)
        handler = early.handler_before(stop.signum)
        early.release()
        if callable(handler) and handler is not signal.default_int_handler:
            handler(stop.signum, None)  # e.g. submitit's: requeue the job, which then resumes this run
        elif stopping.in_multirun():  # a sweep's job ends normally; the sweep prints a summary
            stopping.sweep_note(f"{run_dir.path}: preempted at frame {trainer.frames:,} (checkpointed; the same "
                                "command resumes it)")
            return None
        sys.exit(128 + stop.signum)
    except BaseException:
        tracker.finish(exit_code=1)
        raise
    tracker.finish()
    run_dir.close()
    setup.env.close()
    print_summary(cfg, setup, trainer_cfg, final, early, trainer.frames, run_dir.path / run_folder.FINAL_EVAL)
    log(f"results written to {run_dir.path}")
    return final


def print_summary(cfg: DictConfig, setup: RunSetup, trainer_cfg: TrainerConfig, final: pd.DataFrame,
                  early: stopping.StopSignalRecorder, frames: int, final_eval: Path) -> None:
    """The end-of-run table: the last meta-test per episode next to the random policy's, and where the longer
    final meta-test (``eval.final_episodes``) was written, if the run has one."""
    try:
        random_returns = random_policy_returns(
            setup.env_spec.name, setup.env_options, setup.eval_tasks, trainer_cfg.eval_episodes,
            Path(cfg.results_dir) / "references" / "random_policy.json", should_stop=lambda: early.signum is not None,
            log=log)
    except EvaluationInterrupted:
        log("random-policy baseline skipped (stopped)")
        random_returns = None
    table = summary_table(final, setup.algo_spec.name, random_returns, setup.env_spec.name.startswith("ml1_"))
    log(f"meta-test at frame {frames:,}, per episode ({len(setup.eval_tasks)} tasks, "
        f"{'deterministic' if trainer_cfg.eval_deterministic else 'stochastic'} policy):\n{table.to_string()}")
    if trainer_cfg.final_eval_episodes and final_eval.is_file():
        log(f"final meta-test, {trainer_cfg.final_eval_episodes} episodes per task: {final_eval}")


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
    """``python train.py ...``: one run, or with ``--multirun`` a sweep that stops cleanly (``stopping.run_sweep``)."""
    problem = check_command_line(sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    if any(arg in ("-m", "--multirun") for arg in sys.argv[1:]):
        stopping.run_sweep(main)
    else:
        main()


if __name__ == "__main__":
    launch()
