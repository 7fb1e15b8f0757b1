"""Optional experiment tracking (Weights & Biases). The results folder stays the source of truth for analysis;
a tracker only mirrors the config and the metrics the trainer logs.

Off by default (``tracking.backend=none``). With ``tracking.backend=wandb`` a run logs to the project
``tracking.project``, grouped per sweep (``tracking.group``; by default ``<env>/<label>`` plus the sweep's
start time in multirun), one wandb run per seed, into ``<run folder>/wandb/``. ``tracking.mode`` (default
``offline``) is wandb's mode unless ``WANDB_MODE`` is set in the environment, which wins.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol


class Tracker(Protocol):
    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def finish(self, exit_code: int = 0) -> None: ...


class NullTracker:
    """Tracks nothing."""

    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


class WandbTracker:
    """One wandb run per training run; ``run_id`` resumes the same wandb run after a checkpoint resume."""

    def __init__(self, run_dir: Path, config: dict[str, Any], project: str, group: str | None, name: str,
                 mode: str, run_id: str | None = None) -> None:
        try:
            import wandb
        except ImportError as exc:  # optional extra
            raise ImportError("tracking.backend=wandb needs wandb: pip install -e '.[wandb]'") from exc
        self._wandb = wandb
        self.run = wandb.init(project=project, group=group, name=name, config=config, dir=str(run_dir),
                              mode=os.environ.get("WANDB_MODE", mode), id=run_id, resume="allow",
                              settings=wandb.Settings(silent=True, console="off"))
        self.run_id: str = self.run.id

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)


def make_tracker(cfg: Any, run_dir: Any) -> Tracker:
    """The tracker chosen by ``tracking.backend`` (none | wandb) for a run of the composed config ``cfg``, writing
    into ``run_dir`` (a ``RunDirectory``); a resumed run continues its wandb run."""
    from omegaconf import OmegaConf

    from algorithms.common.errors import ConfigError
    from algorithms.common.stopping import in_multirun

    tracking = cfg.get("tracking")
    if tracking is None or tracking.backend in (None, "none"):
        return NullTracker()
    if tracking.backend != "wandb":
        raise ConfigError(f"unknown tracking.backend {tracking.backend!r}; choose one of: none, wandb")
    group = tracking.group
    if group is None:
        group = f"{cfg.env.name}/{cfg.get('label') or cfg.algo.name}"
        if in_multirun():
            from hydra.core.hydra_config import HydraConfig

            group += "/" + Path(HydraConfig.get().sweep.dir).name  # one group per sweep
    tracker = WandbTracker(run_dir.path, OmegaConf.to_container(cfg, resolve=True), project=tracking.project,
                           group=group, name=run_dir.run_id, mode=tracking.mode,
                           run_id=run_dir.metadata.get("wandb_run_id"))
    run_dir.write_metadata(wandb_run_id=tracker.run_id)
    return tracker
