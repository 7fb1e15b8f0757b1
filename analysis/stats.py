"""Means with 95% bootstrap confidence intervals over seeds, and the aggregation of meta-test rows.

Seeds (runs) are the unit of replication: the rows of one run are first averaged over its test tasks (and, where
asked, over episodes), then the mean over seeds and its CI are taken over these per-seed values.

The interval is the **studentized bootstrap** (bootstrap-t; Efron & Tibshirani 1993, ch. 12), computed here with
numpy because neither scipy (``stats.bootstrap``: percentile, basic, BCa) nor rliable (stratified percentile)
offers it. Why: with the 3-10 seeds usual in meta-RL, percentile-type intervals cannot be trusted. They live
inside the range of the bootstrap means (so inside [min, max] of the seeds) and are about
mean +- 1.96 * sd_plugin / sqrt(n), narrower than even the t interval, so their actual coverage for normal data is
well below nominal: about 75% at n=3, 85% at n=5, 90% at n=10 (BCa: ~91% at n=10). The bootstrap-t resamples the
*t statistic* ``(mean* - mean) / se*``, which is nearly pivotal, and so reaches the nominal rate from about 4 seeds
on (simulated, normal data: 94.8% at n=4, 94.7% at n=5, 94-95% at n=10; skewed exponential data 93-94%). Resamples
with zero spread (every draw the same seed) have no t and are left out. At n=3 it breaks down: 11% of the
resamples have no t, the rest give intervals about 4x wider than even the t interval (bands far outside the
possible returns) and still cover only ~85%. So the default, ``method="auto"``, is the studentized interval from 4
seeds on and the percentile interval (scipy) for 3 seeds, which stays inside the seeds' range and under-covers
(~75% for normal data): with 3 seeds no bootstrap interval is both honest and useful; read it with its ``n``.
The bootstrap-t is also erratic. With 4-5 seeds its interval is often far wider than the Student t interval (normal
data, n=4: median 2.4x its half-width, 10% of samples beyond 15x), and ties with an odd seed break it outright:
when most seeds reach nearly the same value (every seed but one or two Bayes-optimal on GridWorld, e.g. 10.44 x 4,
10.37, 10.65, 9.71 and 7.88), the resamples without the odd seeds have se* ~ 0 and |t| > 10, and the interval
reaches far outside every seed (a lower bound of 4.9 for those eight seeds); with exact ties it collapses onto the
mean instead. So ``auto`` checks it: where more than :data:`MAX_DEGENERATE_RESAMPLES` of the resamples have se*
below a tenth of the sample's se, or one side of the interval is more than :data:`MAX_WIDTH_OVER_T` times the
Student t interval's half-width, it gives the Student t interval (n - 1 degrees of freedom) instead: exact for
normal data, never absurd, and symmetric, so a stuck seed widens both sides. Normal data of 8 or more seeds almost
never trip the check; at 4-5 seeds a sixth to a half of samples do, and the default keeps its nominal coverage
(tested at 5 and 10 seeds).

A mean of rates cannot leave [0, 1]; the t interval and the bootstrap-t can (8 seeds at 100% success and one at 75%
give an upper bound of 104%). So an interval is clipped to the range its metric can take (:data:`METRIC_BOUNDS`), and
an interval of a mean return to the return no policy exceeds, where the env's reference file names one
(:func:`clip_to_upper`; GridWorld's known-goal optimum): clipping at a bound the mean cannot pass keeps the coverage.
"""

from __future__ import annotations

import argparse
import inspect
import re
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

Method = Literal["auto", "studentized", "percentile", "BCa", "basic"]
METHODS = ("auto", "studentized", "percentile", "BCa", "basic")
#: ``auto``: the studentized interval from this many seeds on, the percentile interval below (see the docstring)
MIN_SEEDS_STUDENTIZED = 4
#: ``auto``: the Student t interval where more than this fraction of the bootstrap resamples are degenerate, their
#: se* below ``DEGENERATE_SE`` x the sample's se (ties, a lone outlier) ...
MAX_DEGENERATE_RESAMPLES = 0.05
DEGENERATE_SE = 0.1
#: ... or where one side of the bootstrap-t interval is wider than this many t-interval half-widths
MAX_WIDTH_OVER_T = 3.0
_RNG_KW = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"  # scipy >= 1.15
CURVE_KEYS = ("env", "algo", "frames", "episode")
#: the values a metric can take: its mean cannot lie outside them, so neither does its interval
METRIC_BOUNDS: dict[str, tuple[float, float]] = {"success": (0.0, 1.0)}


def _bootstrap_t(x: np.ndarray, n_resamples: int, rng: int | np.random.Generator | None
                 ) -> tuple[np.ndarray, float, float, float]:
    """The t statistics ``(mean* - mean) / se*`` of the resamples that have one, the mean, the se, and the fraction of
    resamples that are degenerate (``se* <= DEGENERATE_SE * se``)."""
    rng = np.random.default_rng(rng)
    n = x.size
    mean, se = x.mean(), x.std(ddof=1) / np.sqrt(n)
    resamples = x[rng.integers(n, size=(n_resamples, n))]
    mean_b = resamples.mean(axis=1)
    se_b = resamples.std(axis=1, ddof=1) / np.sqrt(n)
    # a resample whose values are equal up to rounding (per-seed means of equal returns differ in the last bits)
    # has no t statistic: its "spread" is float noise and would give t ~ 1e15
    keep = np.ptp(resamples, axis=1) > equality_tolerance(x)
    return (mean_b[keep] - mean) / se_b[keep], float(mean), float(se), float(np.mean(se_b <= DEGENERATE_SE * se))


def studentized_bootstrap_ci(x: np.ndarray, confidence: float = 0.95, n_resamples: int = 9999,
                             rng: int | np.random.Generator | None = 0) -> tuple[float, float]:
    """Bootstrap-t interval for the mean of ``x`` (at least 2 values, not all equal):
    ``[mean - q_hi * se, mean - q_lo * se]`` with ``q`` the quantiles of ``(mean* - mean) / se*`` over resamples
    (resamples with ``se* = 0`` have no t statistic and are left out)."""
    t, mean, se, _ = _bootstrap_t(x, n_resamples, rng)
    alpha = (1.0 - confidence) / 2.0
    q_lo, q_hi = np.quantile(t, [alpha, 1.0 - alpha])
    return float(mean - q_hi * se), float(mean - q_lo * se)


def degenerate_fraction(x: np.ndarray, n_resamples: int = 9999, rng: int | np.random.Generator | None = 0) -> float:
    """The fraction of bootstrap resamples of ``x`` whose se* is below ``DEGENERATE_SE`` x its se: where it is large
    (ties, a lone outlier) the bootstrap-t interval is not to be trusted (module docstring)."""
    return _bootstrap_t(x, n_resamples, rng)[3]


def equality_tolerance(x: np.ndarray) -> float:
    """Values closer than this are equal: far above float noise in a mean of returns, far below any real gap."""
    return 1e-9 * max(1.0, float(np.abs(x).max()))


def mean_ci(values: Iterable[float], confidence: float = 0.95, n_resamples: int = 9999,
            method: Method = "auto", rng: int | np.random.Generator | None = 0,
            bounds: tuple[float, float] | None = None) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean of ``values`` (NaNs dropped) and its bootstrap CI (see the module docstring),
    clipped to ``bounds``, the range the values can take, where given."""
    mean, lo, hi = _mean_ci(values, confidence, n_resamples, method, rng)
    if bounds is None or np.isnan(lo):
        return mean, lo, hi
    return mean, float(np.clip(lo, *bounds)), float(np.clip(hi, *bounds))


def _mean_ci(values: Iterable[float], confidence: float, n_resamples: int, method: Method,
             rng: int | np.random.Generator | None) -> tuple[float, float, float]:
    if method not in METHODS:
        raise ValueError(f"unknown CI method {method!r}; choose one of: {', '.join(METHODS)}")
    x = np.asarray(list(values), dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return np.nan, np.nan, np.nan
    mean = float(x.mean())
    if x.size == 1:
        return mean, np.nan, np.nan
    if np.ptp(x) <= equality_tolerance(x):  # equal seeds (up to rounding): no spread
        return mean, mean, mean
    if x.size == 2:
        return mean, float(x.min()), float(x.max())
    if method == "auto" and x.size >= MIN_SEEDS_STUDENTIZED:
        t_half = float(stats.t.ppf(0.5 + confidence / 2.0, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
        t_interval = (mean, mean - t_half, mean + t_half)
        if degenerate_fraction(x, n_resamples, rng) > MAX_DEGENERATE_RESAMPLES:
            return t_interval
        lo, hi = studentized_bootstrap_ci(x, confidence, n_resamples, rng)
        return t_interval if max(mean - lo, hi - mean) > MAX_WIDTH_OVER_T * t_half else (mean, lo, hi)
    if method == "auto":
        method = "percentile"
    if method == "studentized":
        return (mean, *studentized_bootstrap_ci(x, confidence, n_resamples, rng))
    res = stats.bootstrap((x,), np.mean, n_resamples=n_resamples, confidence_level=confidence, method=method,
                          vectorized=True, **{_RNG_KW: rng})
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if method != "percentile" and not (np.isfinite(lo) and np.isfinite(hi)):
        return _mean_ci(x, confidence, n_resamples, "percentile", rng)
    return mean, lo, hi


def seed_values(eval_df: pd.DataFrame, by: Sequence[str] = CURVE_KEYS, value: str = "return") -> pd.DataFrame:
    """One row per (``by``, run): ``value`` averaged over the run's rows (its tasks) in that group."""
    keys = [*by, "run_id", "seed"]
    out = eval_df.groupby(keys, sort=True)[value].mean().reset_index()
    if "status" in eval_df.columns:
        status = eval_df.drop_duplicates("run_id").set_index("run_id")["status"]
        out["running"] = out["run_id"].map(status).eq("running")
    return out


def aggregate(eval_df: pd.DataFrame, by: Sequence[str] = CURVE_KEYS, value: str = "return",
              confidence: float = 0.95, n_resamples: int = 9999, method: Method = "auto",
              rng: int | None = 0) -> pd.DataFrame:
    """Per ``by`` group (default env, algo, frames, episode): per-seed means over tasks, then mean, CI (within the
    metric's :data:`METRIC_BOUNDS`), ``n``.

    Columns: ``*by, mean, lo, hi, n`` (seeds), ``seeds`` (comma-separated), ``n_running`` (runs still running).
    """
    per_seed = seed_values(eval_df, by, value)
    rows = []
    for key, group in per_seed.groupby(list(by), sort=True):
        mean, lo, hi = mean_ci(group[value], confidence, n_resamples, method, rng, METRIC_BOUNDS.get(value))
        seeds = ",".join(str(s) for s in sorted(group["seed"]))
        running = int(group["running"].sum()) if "running" in group else 0
        rows.append((*key, mean, lo, hi, len(group), seeds, running))
    return pd.DataFrame(rows, columns=[*by, "mean", "lo", "hi", "n", "seeds", "n_running"])


def clip_to_upper(table: pd.DataFrame, upper: dict[int, float]) -> pd.DataFrame:
    """``table`` (rows with ``episode``, ``lo``, ``hi``) with each interval cut at its episode's ``upper`` bound, the
    value no mean of that episode can exceed (see the module docstring); episodes without a bound are unchanged."""
    bound = table["episode"].map(upper).astype(float)
    # a missing interval (one seed) stays missing; an episode without a bound keeps its interval
    clipped = {col: table[col].where(table[col].isna() | bound.isna() | (table[col] <= bound), bound)
               for col in ("lo", "hi")}
    return table.assign(**clipped)


def common_frames(group: pd.DataFrame) -> list[int]:
    """The evaluation points (frames) that every run of ``group`` has, ascending."""
    return sorted(set.intersection(*(set(f) for _, f in group.groupby("run_id")["frames"])))


def choose_frames(eval_df: pd.DataFrame, frames: int | str = "common") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The eval rows at one evaluation point per (env, algo), and a summary of the choice.

    ``frames``: ``"common"`` (default) the last frames point that every run of the (env, algo) has; ``"last"``
    each run's own last point (they may differ); an int: exactly that point (runs without it are left out).
    Summary columns: env, algo, frames_min, frames_max, n_runs (all runs of the pair), n_used.
    """
    kept: list[pd.DataFrame] = []
    summary = []
    for (env, algo), group in eval_df.groupby(["env", "algo"], sort=True):
        if frames == "common":
            common = common_frames(group)
            rows = group[group["frames"] == common[-1]] if common else group.iloc[0:0]
        elif frames == "last":
            rows = group[group["frames"] == group.groupby("run_id")["frames"].transform("max")]
        else:
            rows = group[group["frames"] == int(frames)]
        kept.append(rows)
        summary.append((env, algo, rows["frames"].min() if len(rows) else np.nan,
                        rows["frames"].max() if len(rows) else np.nan, group["run_id"].nunique(),
                        rows["run_id"].nunique()))
    columns = ["env", "algo", "frames_min", "frames_max", "n_runs", "n_used"]
    selected = pd.concat(kept, ignore_index=True) if kept else eval_df.iloc[0:0]
    return selected, pd.DataFrame(summary, columns=columns)


def per_episode(eval_df: pd.DataFrame, frames: int | str = "common", value: str = "return",
                **ci_kwargs: object) -> pd.DataFrame:
    """Per (env, algo, episode) mean and CI over seeds at the chosen frames (see :func:`choose_frames`).

    Columns: env, algo, episode, mean, lo, hi, n, seeds, n_running, frames_min, frames_max, n_runs.
    """
    selected, summary = choose_frames(eval_df, frames)
    table = aggregate(selected, by=("env", "algo", "episode"), value=value, **ci_kwargs)  # type: ignore[arg-type]
    return table.merge(summary.drop(columns="n_used"), on=["env", "algo"], how="left")


ABLATION_LABEL = re.compile(r"^(?P<group>[A-Za-z0-9_]+?_[A-Za-z0-9_]+)-(?P<variant>.+)$")


def ablation_groups(labels: Iterable[str]) -> dict[str, list[str]]:
    """Ablation sweeps by their labels ``<algo>_<ablation>-<variant>`` (conf/ablation/*.yaml), e.g.
    ``varibad_decode-past`` -> group ``varibad_decode``; only groups with at least two variants."""
    groups: dict[str, list[str]] = {}
    for label in sorted(set(labels)):
        match = ABLATION_LABEL.match(label)
        if match:
            groups.setdefault(match["group"], []).append(label)
    return {name: variants for name, variants in groups.items() if len(variants) >= 2}


def format_frames(frames: float) -> str:
    """``3500160`` -> ``"3.5M"``, ``500160`` -> ``"500k"``, ``500`` -> ``"500"``."""
    if not np.isfinite(frames):
        return "n/a"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(frames) >= scale:
            return f"{frames / scale:.3g}{suffix}"
    return f"{frames:.0f}"


def parse_frames(text: str) -> int | str:
    """A ``--frames`` value: ``common``, ``last`` or an integer (``2e6`` and ``2_000_000`` accepted)."""
    if text in ("common", "last"):
        return text
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise ValueError(f"--frames must be 'common', 'last' or a number of frames, not {text!r}") from None
    if value < 0 or value != int(value):
        raise ValueError(f"--frames must be a non-negative whole number of frames, not {text!r}")
    return int(value)


def frames_type(text: str) -> int | str:
    """argparse ``type`` for ``--frames`` (see :func:`parse_frames`)."""
    try:
        return parse_frames(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def coverage_notes(ev: pd.DataFrame, table: pd.DataFrame, frames: int | str) -> list[str]:
    """Algorithms left out of, or with fewer runs in, the per-episode table at ``frames`` than they have."""
    notes = []
    for algo, n_runs in ev.groupby("algo")["run_id"].nunique().items():
        rows = table[table["algo"] == algo]
        if rows.empty:
            notes.append(f"{algo}: no run has the evaluation point --frames {frames}; left out")
        elif int(rows["n"].max()) < n_runs:
            notes.append(f"{algo}: only {int(rows['n'].max())} of {n_runs} runs have --frames {frames}")
    return notes
