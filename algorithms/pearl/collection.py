"""PEARL's collection schedule (Algorithm 1 lines 3-10): what is collected on which task with which z, in work items
the agent runs on the batched env.

A finite set of training tasks; each has an RL buffer (all its data) and an encoder buffer (its most recent
collection round: emptied before the task is collected on again, as oyster). First iteration: ``num_initial_steps``
per training task with z ~ prior. Every iteration: ``num_tasks_sample`` tasks (with replacement); per task
``num_steps_prior`` steps with z ~ prior, ``num_steps_posterior`` steps with z ~ q(z | c) (c from the task's encoder
buffer), both into both buffers, then ``num_extra_rl_steps_posterior`` posterior steps into the RL buffer only. Steps
are collected in whole episodes (at least the number asked, as oyster).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from algorithms.pearl.config import PEARLConfig


@dataclass
class Phase:
    """One part of a task's collection round: where z comes from, how many steps, and whether they also go into the
    encoder buffer."""

    kind: str  # "prior" | "posterior"
    steps: int
    to_encoder_buffer: bool


@dataclass
class WorkItem:
    """The collection for one task in one round: phases run in order, each until it has >= its steps."""

    task: int
    phases: list[Phase]
    phase: int = 0
    collected: int = 0  # steps collected in the current phase
    episodes_in_phase: int = 0

    @property
    def done(self) -> bool:
        return self.phase >= len(self.phases)

    @property
    def current(self) -> Phase:
        return self.phases[self.phase]

    @property
    def latent_kind(self) -> str:
        """Where the z of the next episode comes from. Oyster's ``collect_data`` starts every phase from the prior
        (``clear_z``) and infers the posterior only after each trajectory, so the first trajectory of a posterior
        phase is collected with a prior z too."""
        return "posterior" if self.current.kind == "posterior" and self.episodes_in_phase > 0 else "prior"

    def finish_episode(self, length: int) -> None:
        self.collected += length
        self.episodes_in_phase += 1
        while not self.done and self.collected >= self.current.steps:
            self.phase += 1
            self.collected = 0
            self.episodes_in_phase = 0


@dataclass
class CollectStats:
    """What a collection round did: frames stored, steps discarded, returns per latent kind."""

    frames: int = 0
    discarded: int = 0
    returns: dict[str, list[float]] = field(default_factory=lambda: {"prior": [], "posterior": []})


@dataclass
class IterationInProgress:
    """An iteration whose data is collected and whose gradient steps are under way. Part of the resume state, so
    that a stop between two gradient steps (``train_iteration``'s ``should_stop``) loses no work: the resumed run
    carries on from step ``steps_done`` with the same random streams, as if it had not stopped."""

    frames: int
    discarded: int
    returns: dict[str, list[float]]
    collect_s: float
    steps_done: int = 0
    update_s: float = 0.0
    #: running sum of :meth:`SACLearner.gradient_step`'s metric vectors (on the agent's device)
    metric_sum: torch.Tensor | None = None


def initial_pool(num_train_tasks: int, cfg: PEARLConfig) -> list[WorkItem]:
    """Algorithm 1's initial pool: ``num_initial_steps`` on every training task, z ~ prior, into both buffers."""
    return [WorkItem(t, [Phase("prior", cfg.num_initial_steps, True)]) for t in range(num_train_tasks)]


def iteration_items(sampled_tasks: np.ndarray, cfg: PEARLConfig) -> list[WorkItem]:
    """One iteration's work items for the sampled tasks: prior, posterior, then posterior RL-only steps."""
    phases = [Phase("prior", cfg.num_steps_prior, True), Phase("posterior", cfg.num_steps_posterior, True),
              Phase("posterior", cfg.num_extra_rl_steps_posterior, False)]
    return [WorkItem(int(t), [p for p in phases if p.steps > 0]) for t in sampled_tasks]
