"""The paper's claims next to what we measured (``make reproduce``'s report): a claim is a manifest entry
(``launch/manifest.py``) about the meta-tests of a label's seeds during training, or about the numbers read off a belief
picture's rollouts (``analysis.belief_stats``); each gets our numbers and a verdict.

Each seed's value is its mean over its last meta-tests during training (three by default), never its best one, or
its final meta-test's (``meta_test: final``: e.g. fig. 4a's 30 episodes, ten times what the agents trained on). A
value can be relative to the same seed's value in other episodes (``relative_to``: how much of its return a seed keeps
late in a long meta-test). A variant is called
worse than another only where a one-sided Mann-Whitney U test over the seeds says so (p < :data:`CLAIM_P_VALUE`);
short of that the verdict is "not shown at n vs m seeds".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.belief_stats import evaluate, parse_condition

#: a ``better_than`` claim holds where a one-sided Mann-Whitney U test over the seeds gives p below this
CLAIM_P_VALUE = 0.05


def _episodes_text(episodes: int | list[int]) -> str:
    if isinstance(episodes, int):
        return f"episode {episodes}"
    return f"episodes {episodes[0]}-{episodes[-1]} (mean)" if episodes == list(range(episodes[0], episodes[-1] + 1)) \
        else f"episodes {', '.join(map(str, episodes))} (mean)"


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def last_evaluations(ev: pd.DataFrame, label: str, value: str, episodes: int | list[int], count: int = 3,
                     env: str | None = None, relative_to: list[int] | None = None) -> tuple[float, dict[int, float]]:
    """Mean over seeds of each seed's mean over its last ``count`` meta-tests (``value`` of ``episodes``: one episode
    or the mean over several), and the per-seed values, in seed order. With ``relative_to``, a seed's value is that
    mean divided by the same seed's mean over those episodes (of the same meta-tests)."""
    wanted = [episodes] if isinstance(episodes, int) else list(episodes)
    rows = ev[ev["algo"] == label]
    if env is not None:
        rows = rows[rows["env"] == env]
    per_seed: dict[int, float] = {}
    for (seed, _), run in rows.groupby(["seed", "run_id"]):  # a manifest gives a label one run per seed
        last = sorted(run["frames"].unique())[-count:]
        run = run[run["frames"].isin(last)]
        ours = float(run[run["episode"].isin(wanted)].groupby("frames")[value].mean().mean())
        if relative_to is not None:
            ours /= float(run[run["episode"].isin(relative_to)].groupby("frames")[value].mean().mean())
        if math.isfinite(ours):
            per_seed[int(seed)] = ours
    return (float(np.mean(list(per_seed.values()))) if per_seed else math.nan), per_seed


def check_claim(claim: dict[str, Any], ev: pd.DataFrame, final: pd.DataFrame | None = None) -> tuple[str, str]:
    """What we measured for a claim and whether it holds: ``(measured, verdict)``.

    Each seed's value is its mean over its last ``last`` (default 3) meta-tests during training (``ev``) of ``metric``
    in ``episode`` (or the mean over ``episodes``); with ``meta_test: final``, its value in the final meta-test
    (``final``, one per run); with ``relative_to`` (episodes), that value divided by the seed's own over those
    episodes. The claim holds where the mean over seeds of ``label`` is ``at_least`` a number, at least
    its own value in episode ``at_least_episode``, above its own value in episode ``above_episode`` (a rise: equal
    does not count), within ``tolerance`` (a fraction, default 0.1) of ``near_label``'s
    (a variant that works as well), or, for ``better_than``, above the rival label's with a one-sided Mann-Whitney U
    test over the seeds at p < 0.05: below it, the claim does not hold; above it without that, it is not shown at
    these seeds."""
    label, value = claim["label"], claim.get("metric", "return")
    episodes: int | list[int] = [int(k) for k in claim["episodes"]] if "episodes" in claim \
        else int(claim.get("episode", 1))
    count, env = int(claim.get("last", 3)), claim.get("env")
    relative_to = [int(k) for k in claim["relative_to"]] if "relative_to" in claim else None
    on_final = claim.get("meta_test", "training") == "final"
    if on_final:  # one meta-test per run
        ev, count, where = (final if final is not None else ev.iloc[0:0]), 1, "the final meta-test"
    else:
        where = f"the last {count} meta-tests"
    ours, per_seed = last_evaluations(ev, label, value, episodes, count, env, relative_to)
    scale, unit = (100.0, "%") if value == "success" and relative_to is None else (1.0, "")

    def shown(values: dict[int, float]) -> str:
        return ", ".join(f"{seed}: " + (f"{scale * v:.0f}{unit}" if unit else f"{v:.3g}") for seed, v in values.items())

    what = value if relative_to is None else f"{value} relative to {_episodes_text(relative_to)}"
    number = f"{ours:.3g}" if relative_to else f"{scale * ours:.2f}{unit}"
    measured = (f"{label} {_episodes_text(episodes)} {what}: {number} (mean over {_seeds(len(per_seed))} of {where}; "
                f"per seed {shown(per_seed)})")
    if not math.isfinite(ours):
        return f"{label}: no runs{' with a final meta-test' if on_final else ''}", "no data"
    verdict = "holds"
    if "at_least" in claim and ours < float(claim["at_least"]):
        verdict = "does not hold"
    # against the seed's own value in another episode: at least as good, or strictly above (a rise)
    for key, holds in (("at_least_episode", float.__ge__), ("above_episode", float.__gt__)):
        if key in claim:
            other, _ = last_evaluations(ev, label, value, int(claim[key]), count, env)
            measured += f"; episode {claim[key]}: {scale * other:.1f}{unit}"
            if not holds(ours, other):
                verdict = "does not hold"
    if "near_label" in claim:
        rival, tolerance = str(claim["near_label"]), float(claim.get("tolerance", 0.1))
        other, rival_seeds = last_evaluations(ev, rival, value, episodes, count, env, relative_to)
        if not rival_seeds:
            return measured + f"; {rival}: no runs", "no data"
        measured += (f"; {rival}: {scale * other:.2f}{unit} ({_seeds(len(rival_seeds))}); within "
                     f"{tolerance:.0%} of it: at least {scale * (1 - tolerance) * other:.2f}{unit}")
        if not ours >= (1 - tolerance) * other:
            verdict = "does not hold"
    if "better_than" in claim:
        rival = str(claim["better_than"])
        other, rival_seeds = last_evaluations(ev, rival, value, episodes, count, env, relative_to)
        if not rival_seeds:
            return measured + f"; {rival}: no runs", "no data"
        test = stats.mannwhitneyu(list(per_seed.values()), list(rival_seeds.values()), alternative="greater")
        measured += (f"; {rival}: {scale * other:.2f}{unit} ({_seeds(len(rival_seeds))}; {shown(rival_seeds)}); "
                     f"one-sided Mann-Whitney U p = {test.pvalue:.3g}")
        if not ours > other:
            verdict = "does not hold"
        elif test.pvalue >= CLAIM_P_VALUE:
            verdict = f"not shown at {len(per_seed)} vs {len(rival_seeds)} seeds"
    return measured, verdict


def check_belief_claim(claim: dict[str, Any], entry: dict[str, Any],
                       statistics: dict[str, dict[str, float]]) -> tuple[str, str]:
    """What the rollouts of belief picture ``entry`` show for a claim and whether it holds: every condition of its
    ``holds_if`` true. ``statistics``: per label of the picture, its trace's statistics."""
    kind, label = str(entry.get("kind", "cells")), str(claim["label"])
    conditions = [parse_condition(text, kind) for text in claim["holds_if"]]
    missing = sorted({lab for c in conditions for lab in c.labels(label)} - set(statistics))
    if missing:
        return f"no belief trace published for {', '.join(missing)}", "no data"
    results, parts = [], []
    for condition in conditions:
        result = evaluate(condition, statistics, label)
        results.append(result)
        shown = {f"{lab}:{stat}" if lab != label else stat: statistics[lab][stat] for lab, stat in
                 ((condition.label or label, condition.statistic),
                  (condition.other_label or label, condition.other_statistic)) if stat is not None}
        values = ", ".join(f"{key} = {value:.3g}" for key, value in shown.items())
        parts.append(f"{condition.text} ({values}): {'-' if result is None else 'yes' if result else 'no'}")
    goal = tuple(int(v) for v in entry.get("goal", (3, 4)))
    measured = f"{label}, seed {entry['seed']}, one rollout to the goal {goal}: " + "; ".join(parts)
    if any(result is None for result in results):
        return measured + " (the rollout never enters the goal)", "not measurable"
    return measured, "holds" if all(results) else "does not hold"
