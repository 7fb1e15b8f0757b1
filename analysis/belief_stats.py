"""Numbers read off a GridWorld belief trace, for the VariBAD paper's statements about its belief pictures (sec. 6.1,
fig. 7: what the reward decoder believes per cell under each decoding horizon; sec. 6.2, fig. 10: how the posterior's
variance moves under each KL term).

A trace is one rollout of a trained agent to one goal (``beliefs_goal<x>_<y>.npz``, written by
``tools/export_beliefs.py``): the position after every step, the rewards, the posterior's mean and log-variance and
the decoder's goal probability per cell at every step (index t: after t transitions; t = 0 is the prior). "Before the
goal" means the steps 0 .. t* - 1 of episode 1, where t* is the step that first enters the goal.

A manifest states a claim about these numbers as conditions, e.g. ``seen <= 0.1``, ``unseen >= 0.5``,
``seen > varibad_2e7:seen`` or ``varibad_decode-past:goal_after >= 0.9``: a statistic (of the claim's label, or of
``label:``), a comparison, and a number or another label's statistic.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: statistics of a ``cells`` trace (the decoder's belief per cell, fig. 7)
CELL_STATISTICS: dict[str, str] = {
    "seen": "mean goal probability of the cells entered so far, over the steps before the goal",
    "unseen": "mean goal probability of the cells not entered yet, over the steps before the goal",
    "goal_after": "the goal cell's probability over the steps after it is first entered",
}
#: statistics of a ``latent`` trace (the posterior's mean and standard deviation, fig. 10); std: the mean over the
#: latent dimensions of the posterior's standard deviation
LATENT_STATISTICS: dict[str, str] = {
    "std_prior": "std of the prior (t = 0)",
    "std_before": "std at the last step before the goal",
    "std_after": "mean std over the steps from the goal to the end of that episode",
    "std_change": "std_after / std_before (< 1: the variance collapses at the goal; > 1: it grows)",
    "std_mean": "mean std over the whole rollout",
    "mean_travel": "distance the posterior mean travels over the whole rollout (sum of its steps' lengths)",
}
STATISTICS = {"cells": CELL_STATISTICS, "latent": LATENT_STATISTICS}

OPERATORS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge, "<": operator.lt,
                                                        ">": operator.gt}
_SIDE = r"(?:(?P<{0}label>[^\s:<>=]+):)?(?P<{0}stat>[a-z_]+)"
_CONDITION = re.compile(rf"^\s*{_SIDE.format('l')}\s*(?P<op><=|>=|<|>)\s*"
                        rf"(?:(?P<number>-?\d+(?:\.\d*)?(?:e-?\d+)?)|{_SIDE.format('r')})\s*$")


@dataclass(frozen=True)
class Condition:
    """``[label:]statistic op (number | [label:]statistic)``; a side without a label is the claim's label's."""
    text: str
    label: str | None
    statistic: str
    op: str
    number: float | None
    other_label: str | None
    other_statistic: str | None

    def labels(self, default: str) -> set[str]:
        sides = {self.label or default}
        return sides | ({self.other_label or default} if self.other_statistic else set())


def parse_condition(text: str, kind: str) -> Condition:
    """A condition of a belief claim (module docstring); ``ValueError`` naming what is allowed otherwise."""
    match = _CONDITION.match(str(text))
    known = STATISTICS[kind]
    if match is None:
        raise ValueError(f"condition {text!r} is not '[label:]statistic <=|>=|<|> number or [label:]statistic'")
    for statistic in filter(None, (match["lstat"], match["rstat"])):
        if statistic not in known:
            raise ValueError(f"condition {text!r}: no statistic {statistic!r} for a {kind} belief; "
                             f"allowed: {', '.join(known)}")
    return Condition(str(text), match["llabel"], match["lstat"], match["op"],
                     float(match["number"]) if match["number"] is not None else None, match["rlabel"], match["rstat"])


def goal_step(trace: dict[str, np.ndarray]) -> int | None:
    """t*: the step whose transition first enters the goal (its reward is positive), or ``None``."""
    found = np.flatnonzero(np.asarray(trace["rewards"]) > 0)
    return int(found[0]) + 1 if found.size else None


def cell_statistics(trace: dict[str, np.ndarray]) -> dict[str, float]:
    """:data:`CELL_STATISTICS` of one trace; NaN where the rollout does not give one (no step before the goal, or
    the goal never entered: then "before the goal" is the whole of episode 1)."""
    probs = np.asarray(trace["reward_prob"], dtype=float)
    positions = np.asarray(trace["positions"]).astype(int)
    horizon, goal = int(trace["horizon"]), tuple(int(v) for v in trace["goal"])
    reached = goal_step(trace)
    before = range(0, min(reached if reached is not None else horizon + 1, horizon + 1, len(probs)))
    seen_means, unseen_means = [], []
    entered = np.zeros(probs.shape[1:], dtype=bool)
    for t in before:
        entered[tuple(positions[t])] = True
        seen_means.append(probs[t][entered].mean())
        if (~entered).any():
            unseen_means.append(probs[t][~entered].mean())
    after = probs[reached:, goal[0], goal[1]] if reached is not None else np.array([])
    return {"seen": _mean(seen_means), "unseen": _mean(unseen_means), "goal_after": _mean(after)}


def latent_statistics(trace: dict[str, np.ndarray]) -> dict[str, float]:
    """:data:`LATENT_STATISTICS` of one trace; the ones about the goal are NaN where it is never entered."""
    mean = np.asarray(trace["latent_mean"], dtype=float)
    std = np.exp(0.5 * np.asarray(trace["latent_logvar"], dtype=float)).mean(axis=1)
    horizon, reached = int(trace["horizon"]), goal_step(trace)
    out = {"std_prior": float(std[0]), "std_mean": float(std.mean()),
           "mean_travel": float(np.linalg.norm(np.diff(mean, axis=0), axis=1).sum()),
           "std_before": np.nan, "std_after": np.nan, "std_change": np.nan}
    if reached is not None:
        episode_end = min(-(-reached // horizon) * horizon, len(std) - 1)  # the last step of the goal's episode
        out["std_before"] = float(std[reached - 1])
        out["std_after"] = float(std[reached:episode_end + 1].mean())
        out["std_change"] = out["std_after"] / out["std_before"]
    return out


def trace_statistics(trace: dict[str, np.ndarray], kind: str) -> dict[str, float]:
    return cell_statistics(trace) if kind == "cells" else latent_statistics(trace)


def evaluate(condition: Condition, statistics: dict[str, dict[str, float]], default: str) -> bool | None:
    """Whether ``condition`` holds for the statistics per label; ``None`` where a value is missing (no trace, or
    the rollout does not give it)."""
    left = statistics.get(condition.label or default, {}).get(condition.statistic, np.nan)
    right = condition.number if condition.number is not None else \
        statistics.get(condition.other_label or default, {}).get(str(condition.other_statistic), np.nan)
    if not (np.isfinite(left) and np.isfinite(right)):
        return None
    return OPERATORS[condition.op](left, right)


def _mean(values: list[float] | np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else np.nan
