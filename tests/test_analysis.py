"""analysis/: loading and validating run folders, bootstrap CIs over seeds, per-episode tables, the two CLIs.

Every results folder here is written by hand into ``tmp_path``; nothing is trained.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import plot_returns
from analysis.load import load_results
from analysis.stats import aggregate, mean_ci, per_episode, studentized_bootstrap_ci
from analysis.tables import episode_table, format_cell, latex_table, to_latex, to_markdown

REPO = Path(__file__).resolve().parent.parent
EVAL_HEADER = ["run_id", "frames", "task_id", "task", "episode", "return", "success", "steps_to_success"]


#: lock handles of the hand-made "running" runs: a live process holds them, as a training process does
HELD_LOCKS: list = []


def write_run(root: Path, env: str, algo: str, seed: int, returns: dict[int, list[list[float]]] | None = None,
              status: str = "completed", run_id: str | None = None, train: bool = True, live: bool = True) -> Path:
    """A run folder; ``returns[frames][task][episode - 1]`` are the meta-test returns (``None``: header only). A
    ``running`` run's lock is held by this process unless ``live=False`` (then it is stale: its process is gone)."""
    run_id = run_id or f"run_seed{seed}"
    path = root / env / algo / run_id
    path.mkdir(parents=True)
    if status == "running" and live:
        from algorithms.common.results import _acquire_lock

        HELD_LOCKS.append(_acquire_lock(path))
    meta = {"schema_version": 1, "run_id": run_id, "env": env, "algo": algo, "seed": seed, "git_commit": "abc",
            "packages": {}, "start_time": "2026-01-01T00:00:00+00:00", "end_time": None, "status": status,
            "frames": max(returns or {0: None})}
    if status == "failed":
        meta["error"] = "RuntimeError: boom"
    (path / "metadata.json").write_text(json.dumps(meta))
    (path / "config.yaml").write_text(f"seed: {seed}\n")
    rows = [{"run_id": run_id, "frames": frames, "task_id": task, "task": json.dumps([float(task), 1.0]),
             "episode": episode + 1, "return": value, "success": value > 0, "steps_to_success": 3.0 if value > 0
             else np.nan}
            for frames, per_task in (returns or {}).items() for task, values in enumerate(per_task)
            for episode, value in enumerate(values)]
    pd.DataFrame(rows, columns=EVAL_HEADER).to_csv(path / "eval.csv", index=False)
    if train:
        frames = sorted(returns or {0: None})
        pd.DataFrame({"frames": frames, "iteration": range(len(frames)), "wall_time": 1.0, "fps": 10.0,
                      "ppo/value_loss": 0.5}).to_csv(path / "train_metrics.csv", index=False)
    return path


GOOD = {0: [[-1.0, -1.0], [-1.0, -1.0]], 100: [[1.0, 2.0], [3.0, 4.0]]}


def test_damaged_partial_failed_and_empty_runs_are_reported_and_left_out(tmp_path):
    good = [write_run(tmp_path, "gw", "alg", seed, GOOD) for seed in (0, 1)]
    running = write_run(tmp_path, "gw", "alg", 2, GOOD, status="running")
    bad_json = write_run(tmp_path, "gw", "alg", 3, GOOD)
    (bad_json / "metadata.json").write_text('{"schema_version": 1, "run_id": ')  # cut mid-write
    partial = write_run(tmp_path, "gw", "alg", 4, GOOD)
    pd.read_csv(partial / "eval.csv").rename(columns={"return": "returns"}).to_csv(partial / "eval.csv", index=False)
    failed = write_run(tmp_path, "gw", "alg", 5, GOOD, status="failed")
    empty = write_run(tmp_path, "gw", "alg", 6, None)
    no_frames = write_run(tmp_path, "gw", "alg", 7, GOOD)
    pd.DataFrame({"step": [1, 2]}).to_csv(no_frames / "train_metrics.csv", index=False)
    bad_dtype = write_run(tmp_path, "gw", "alg", 8, GOOD)
    df = pd.read_csv(bad_dtype / "eval.csv")
    df["success"] = "maybe"
    df.to_csv(bad_dtype / "eval.csv", index=False)
    (tmp_path / "sweeps" / "20260101-000000" / "0").mkdir(parents=True)  # Hydra bookkeeping: not a run
    (tmp_path / "sweeps" / "20260101-000000" / "multirun.yaml").write_text("hydra: {}\n")

    res = load_results(tmp_path)

    reasons = {path: reason for path, reason in res.problems}
    assert set(reasons) == {bad_json, partial, failed, empty, no_frames, bad_dtype}  # sweeps/ quietly skipped
    assert "metadata.json unparseable" in reasons[bad_json]
    assert "missing column(s) 'return'" in reasons[partial] and "'returns'" in reasons[partial]
    assert "failed" in reasons[failed] and "boom" in reasons[failed]
    assert "no eval rows" in reasons[empty]
    assert "frames" in reasons[no_frames]
    assert "'success'" in reasons[bad_dtype]
    kept = {*good, running}
    assert set(res.runs["path"]) == {str(p) for p in kept}
    assert sorted(res.eval["seed"].unique()) == [0, 1, 2]
    assert len(res.eval) == 3 * 2 * 2 * 2  # 3 runs x 2 frames x 2 tasks x 2 episodes
    assert res.eval.groupby("seed")["status"].first().to_dict() == {0: "completed", 1: "completed", 2: "running"}
    assert {"env", "algo", "seed", "run_id", "status", "frames", "episode", "return"} <= set(res.eval.columns)
    assert sorted(res.train["seed"].unique()) == [0, 1, 2] and "ppo/value_loss" in res.train.columns

    res = load_results(tmp_path, include_running=False)
    assert set(res.eval["seed"].unique()) == {0, 1}
    assert any(path == running and "running" in reason for path, reason in res.problems)


def test_a_running_run_loses_only_the_row_and_the_point_being_written(tmp_path):
    run = write_run(tmp_path, "gw", "alg", 0, {**GOOD, 200: [[5.0, 5.0], [5.0, 5.0]]}, status="running")
    text = (run / "eval.csv").read_text()
    (run / "eval.csv").write_text(text[: text.rindex("\n", 0, len(text) - 1) + 8])  # last row cut mid-line
    res = load_results(tmp_path)
    assert res.problems == []
    assert sorted(res.eval["frames"].unique()) == [0, 100]  # the incomplete point 200 is dropped
    assert any("frames=200" in note for note in res.notes)
    write_run(tmp_path, "gw", "alg", 1, GOOD, run_id="done")  # the same cut in a completed run is damage
    (tmp_path / "gw" / "alg" / "done" / "eval.csv").write_text(text.replace("run_seed0", "done")[:-30])
    res = load_results(tmp_path)
    assert [p.name for p, _ in res.problems] == ["done"]


def test_small_n_and_degenerate_confidence_intervals():
    assert all(math.isnan(v) for v in mean_ci([]))
    mean, lo, hi = mean_ci([3.0])
    assert mean == 3.0 and math.isnan(lo) and math.isnan(hi)
    assert mean_ci([1.0, 4.0]) == (2.5, 1.0, 4.0)  # two seeds: every bootstrap degenerates; their range
    assert mean_ci([11.07] * 3) == (11.07, 11.07, 11.07)  # a solved task: no spread, no scipy warning
    mean, lo, hi = mean_ci([1.0, 2.0, 3.0, 4.0, 10.0], method="percentile")
    assert lo < mean < hi and lo >= 1.0 and hi <= 10.0  # percentile intervals stay inside the data's range
    mean, lo, hi = mean_ci([1.0, 2.0, 3.0, 4.0, 10.0])
    assert lo < mean < hi and hi > 10.0  # the bootstrap-t (default from 4 seeds) follows the skew beyond the range
    three = [2.0, 3.0, 7.0]
    assert mean_ci(three) == mean_ci(three, method="percentile")  # 3 seeds: the bootstrap-t breaks down
    assert mean_ci(three, method="studentized")[2] > 7.0
    with pytest.raises(ValueError, match="unknown CI method 'bca'"):
        mean_ci([1.0, 2.0, 3.0], method="bca")


def _coverage(n: int, method: str, draws: int = 1000, mu: float = 5.0, seed: int = 20260101) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(draws):
        _, lo, hi = mean_ci(rng.normal(mu, 2.0, size=n), n_resamples=999, method=method, rng=rng)
        hits += lo <= mu <= hi
    return hits / draws


@pytest.mark.parametrize("n", [5, 10])
def test_bootstrap_ci_contains_the_true_mean_at_its_nominal_rate(n):
    """Over 1000 draws of n seeds (normal data), the default 95% CI contains the true mean 95% of the time, within
    3 binomial standard deviations. A CI built from the sd instead of the standard error (coverage ~1), one half as
    wide (~0.7) or the percentile bootstrap at these n (0.85 / 0.90, checked below) fails the band."""
    draws = 1000
    sd = math.sqrt(0.95 * 0.05 / draws)
    coverage = _coverage(n, "auto", draws)  # the default: studentized from 4 seeds (t where that is erratic)
    assert 0.95 - 3 * sd <= coverage <= 0.95 + 3 * sd, (coverage, sd)
    # the check can fail: the percentile bootstrap under-covers at small n (about mean +- z * sd_plugin / sqrt(n)),
    # expected coverage P(|t_{n-1}| < z * sqrt((n-1)/n))
    z = stats.norm.ppf(0.975)
    expected = 2 * stats.t.cdf(z * math.sqrt((n - 1) / n), n - 1) - 1
    assert _coverage(n, "percentile", draws) < 0.95 - 3 * sd
    assert expected < 0.95 - 3 * sd


def test_studentized_interval_against_a_direct_computation():
    """The vectorised bootstrap-t equals the textbook loop on the same resamples."""
    x = np.array([2.0, 3.0, 7.0, 4.0])
    n, B = x.size, 2000
    idx = np.random.default_rng(3).integers(n, size=(B, n))
    t = []
    for row in idx:
        xb = x[row]
        if xb.std(ddof=1) > 0:
            t.append((xb.mean() - x.mean()) / (xb.std(ddof=1) / math.sqrt(n)))
    se = x.std(ddof=1) / math.sqrt(n)
    expected = (x.mean() - np.quantile(t, 0.975) * se, x.mean() - np.quantile(t, 0.025) * se)
    assert studentized_bootstrap_ci(x, 0.95, B, rng=3) == pytest.approx(expected)


def test_auto_interval_leaves_the_bootstrap_t_where_ties_and_odd_seeds_break_it():
    """Eight GridWorld seeds, six near the Bayes-optimal return and two not: the bootstrap-t bound falls far below
    every seed (its tie-only resamples have se* ~ 0); auto gives the Student t interval instead. Normal data of as
    many seeds keep the studentized interval."""
    stuck = np.array([10.44, 10.44, 10.44, 10.44, 10.65, 10.37, 9.71, 7.88])
    lo_t, _ = studentized_bootstrap_ci(stuck, 0.95, 4999)
    assert lo_t < stuck.min() - 2.0
    half = stats.t.ppf(0.975, 7) * stuck.std(ddof=1) / math.sqrt(8)
    assert mean_ci(stuck, n_resamples=4999) == pytest.approx((stuck.mean(), stuck.mean() - half, stuck.mean() + half))
    one_off = np.array([4.0, 4.0, 4.0, 4.0, 4.0, 3.69])  # exact ties: the bootstrap-t collapses onto the mean
    mean, lo, hi = mean_ci(one_off, n_resamples=4999)
    assert lo < mean < hi  # an interval, not the point the bootstrap-t collapses to
    normal = np.random.default_rng(5).normal(size=8)
    assert mean_ci(normal, n_resamples=4999) == mean_ci(normal, n_resamples=4999, method="studentized")


def test_a_success_rate_interval_stays_within_0_and_1():
    """Seven seeds at 100% success and one at 75%: the Student t interval reaches 104%; the reported one ends at
    100%, in the tables built from eval rows too. Returns keep the unclipped interval."""
    seeds = np.array([1.0] * 7 + [0.75])
    unclipped = mean_ci(seeds, n_resamples=999)
    assert unclipped[2] > 1.0
    mean, lo, hi = mean_ci(seeds, n_resamples=999, bounds=(0.0, 1.0))
    assert (mean, lo) == pytest.approx(unclipped[:2]) and hi == 1.0
    rows = pd.DataFrame({"env": "e", "algo": "a", "frames": 10, "episode": 1, "run_id": [f"r{s}" for s in range(8)],
                         "seed": range(8), "success": seeds, "return": seeds})
    success = aggregate(rows, value="success", n_resamples=999).iloc[0]
    assert success["hi"] == 1.0 and success["lo"] == pytest.approx(unclipped[1])
    assert aggregate(rows, value="return", n_resamples=999).iloc[0]["hi"] == pytest.approx(unclipped[2])


def test_a_mean_return_interval_stops_at_the_return_no_policy_exceeds():
    """GridWorld's reference file names its known-goal optimum as the bound of every episode's expected return (an
    agent told the goal reaches it); a meta-test over all 21 goals averages exactly that expectation, so its interval
    stops there. A meta-test over a sample of goals can do better than the expectation: no bound then."""
    from analysis.references import DEFAULT_REFERENCES, load_references, references_for, upper_bound
    from analysis.stats import clip_to_upper

    refs, _ = load_references(DEFAULT_REFERENCES)
    lines, _ = references_for(refs, "gridworld", 6)
    seeds = [11.071429] * 7 + [9.97]
    rows = pd.DataFrame([{"env": "gridworld", "algo": "a", "run_id": f"r{s}", "seed": s, "frames": 10, "episode": 3,
                          "task": f"[{g // 5}, {g % 5}]", "return": v} for s, v in enumerate(seeds) for g in range(21)])
    bound = upper_bound(refs, "gridworld", lines, rows)
    assert bound == pytest.approx([11.071429] * 6)
    table = aggregate(rows, n_resamples=999)
    assert table["hi"].iloc[0] > 11.1  # the t interval of 7 equal seeds and one below them
    clipped = clip_to_upper(table, dict(enumerate(bound, start=1)))
    assert clipped["hi"].iloc[0] == pytest.approx(11.071429) and clipped["lo"].iloc[0] == table["lo"].iloc[0]
    assert upper_bound(refs, "gridworld", lines, rows[rows["task"] != "[0, 3]"]) is None  # 20 of the 21 goals
    assert upper_bound(refs, "pointrobot_sparse", lines, rows) is None
    assert clip_to_upper(table, {1: 4.0}).equals(table)  # episode 3 has no bound in this mapping
    one_seed = aggregate(rows[rows["seed"] == 7], n_resamples=999)  # no interval: it stays none
    assert clip_to_upper(one_seed, {3: 11.071429})[["lo", "hi"]].isna().all(axis=None)


def _hand_made_results(root: Path) -> None:
    # alg "a": 3 seeds x 2 tasks x 2 episodes at frames 0 and 100; per-seed means over tasks at frames 100:
    # episode 1: 2, 3, 7 (mean 4); episode 2: 6, 8, 13 (mean 9)
    final = {0: [[1.0, 5.0], [3.0, 7.0]], 1: [[2.0, 6.0], [4.0, 10.0]], 2: [[4.0, 12.0], [10.0, 14.0]]}
    for seed, values in final.items():
        write_run(root, "gw", "a", seed, {0: [[0.0, 0.0], [0.0, 0.0]], 100: values})
    # alg "b": 2 seeds, one of which has not reached frames 100 yet: the common point is frames 0
    write_run(root, "gw", "b", 0, {0: [[1.0, 2.0], [3.0, 2.0]], 100: [[9.0, 9.0], [9.0, 9.0]]})
    write_run(root, "gw", "b", 1, {0: [[3.0, 4.0], [5.0, 4.0]]}, status="running")


def test_per_episode_table_has_the_right_means_and_n(tmp_path):
    _hand_made_results(tmp_path)
    res = load_results(tmp_path)
    assert res.problems == []
    table = per_episode(res.eval, n_resamples=999).set_index(["algo", "episode"])
    assert table.loc[("a", 1), "mean"] == pytest.approx(4.0) and table.loc[("a", 2), "mean"] == pytest.approx(9.0)
    assert table.loc[("b", 1), "mean"] == pytest.approx(3.0) and table.loc[("b", 2), "mean"] == pytest.approx(3.0)
    assert table["n"].to_dict() == {("a", 1): 3, ("a", 2): 3, ("b", 1): 2, ("b", 2): 2}  # seeds, not tasks
    assert table.loc["a", "frames_max"].eq(100).all() and table.loc["b", "frames_max"].eq(0).all()
    ci = stats.bootstrap(([2.0, 3.0, 7.0],), np.mean, n_resamples=999, method="percentile", rng=0)  # n=3: percentile
    assert table.loc[("a", 1), "lo"] == pytest.approx(ci.confidence_interval.low)
    assert table.loc[("a", 1), "hi"] == pytest.approx(ci.confidence_interval.high)
    assert (table.loc[("b", 1), "lo"], table.loc[("b", 1), "hi"]) == (2.0, 4.0)  # two seeds: their range

    at_100 = per_episode(res.eval, frames=100, n_resamples=999).set_index(["algo", "episode"])
    assert at_100.loc[("b", 1), "n"] == 1 and at_100.loc[("b", 1), "mean"] == 9.0
    assert math.isnan(at_100.loc[("b", 1), "lo"])

    curve = aggregate(res.eval, n_resamples=999).set_index(["algo", "frames", "episode"])
    assert curve.loc[("a", 0, 1), "mean"] == 0.0 and curve.loc[("a", 0, 1), "n"] == 3

    formatted = episode_table(per_episode(res.eval, n_resamples=999)).set_index("algorithm")
    lo, hi = table.loc[("a", 1), "lo"], table.loc[("a", 1), "hi"]
    # n said once per row, not in every cell
    assert formatted.loc["a", "ep 1"] == f"4.00 [{lo:.2f}, {hi:.2f}]" and formatted.loc["a", "n"] == "3"
    assert formatted.loc["b", "ep 2"] == "3.00 [2.00, 4.00]" and formatted.loc["b", "n"] == "2"
    assert list(formatted.columns) == ["n", "frames", "ep 1", "ep 2"]
    assert formatted.loc["a", "frames"] == "100" and formatted.loc["b", "frames"] == "0"
    assert format_cell(1.0, float("nan"), float("nan"), 1) == "1.00 [n/a] (n=1)"
    # decimals follow the scale: returns near 1000 are whole numbers
    big = per_episode(res.eval, n_resamples=999).assign(mean=812.37, lo=790.1, hi=840.9)
    assert episode_table(big).loc[0, "ep 1"] == "812 [790, 841]"



def test_a_report_table_shows_every_episode_of_a_short_meta_test_and_a_sparse_set_of_a_long_one():
    from analysis.reproduce_report import reference_table
    from analysis.tables import shown_episodes

    # GridWorld: 6 meta-test episodes, the 4 of the training BAMDP among them; none left out
    assert shown_episodes([1, 2, 3, 4, 5, 6]) == [1, 2, 3, 4, 5, 6]
    # PointRobot's final meta-test: 30 episodes
    assert shown_episodes(range(1, 31)) == [1, 2, 3, 5, 10, 20, 30]
    assert shown_episodes(range(1, 26)) == [1, 2, 3, 5, 10, 20, 25]
    per_ep = pd.DataFrame({"env": "gridworld", "algo": "a", "episode": range(1, 7), "mean": 0.5, "lo": 0.25,
                           "hi": 0.75, "n": 3, "frames_min": 100, "frames_max": 100})
    table = reference_table(per_ep, {"bayes_optimal": [1.0] * 6}, 100.0, 0).set_index("algorithm")
    assert list(table.columns) == ["n", "frames", *(f"ep {k}" for k in range(1, 7))]
    assert table.loc["a", "ep 4"] == "50 [25, 75]" and table.loc["reference: bayes_optimal", "ep 4"] == "100"

def test_latex_tables_fit_a_page():
    from analysis.tables import for_the_page

    columns = {"algorithm": ["varibad_decode-future (shipped)"], "n": ["3"], "frames": ["20M"], "wall/run": ["9 min"],
               **{f"ep {k}": ["1.00 [0.50, 1.50]"] for k in range(1, 31)}}
    page = for_the_page(pd.DataFrame(columns))
    assert list(page.columns) == ["algorithm", "n", "frames", "ep 1", "ep 2", "ep 3", "ep 5", "ep 30"]
    assert page.loc[0, "algorithm"] == "varibad_decode-futu..." and len(page.loc[0, "algorithm"]) == 22


def test_latex_without_jinja2_is_written_by_hand(monkeypatch):
    table = pd.DataFrame({"algorithm": ["rl_2"], "frames": ["1M"], "ep 1": ["1.00 [0.50, 1.50] (n=3)"]})
    text = latex_table(table, "gw: 95% CI", "tab:gw")
    assert r"rl\_2 & 1M & 1.00 [0.50, 1.50] (n=3) \\" in text and r"95\% CI" in text and r"\toprule" in text
    monkeypatch.setitem(sys.modules, "jinja2", None)  # `import jinja2` now raises ImportError
    assert to_latex(table, "gw: 95% CI", "tab:gw") == text
    assert to_markdown(table).splitlines()[2].startswith("| rl_2")


def _run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_clis_write_their_files(tmp_path):
    results, out = tmp_path / "results", tmp_path / "out"
    _hand_made_results(results)
    write_run(results, "gw", "a", 9, GOOD, status="failed")
    refs = tmp_path / "refs.json"
    refs.write_text(json.dumps({"K2": {"optimal": [11.0, 11.0], "bayes_optimal": [4.0, 11.0]}}))

    done = _run(str(REPO / "analysis" / "plot_returns.py"), "--results", str(results), "--out", str(out),
                "--references", str(refs), "--n-resamples", "199", cwd=tmp_path)  # as a script, from elsewhere
    assert done.returncode == 0, done.stderr
    for name in ("gw_learning_curves.png", "gw_per_episode.png"):
        assert (out / name).stat().st_size > 10_000 and f"wrote {out / name}" in done.stdout
    assert "WARNING: left out" in done.stderr and "run_seed9" in done.stderr and "failed" in done.stderr

    done = _run("-m", "analysis.tables", "--results", str(results), "--out", str(out), "--n-resamples", "199")
    assert done.returncode == 0, done.stderr
    for suffix in (".md", ".csv", ".tex"):
        assert (out / f"gw_per_episode{suffix}").stat().st_size > 0
    assert "4.00 [" in done.stdout and "| n " in done.stdout and "WARNING: left out" in done.stderr
    assert pd.read_csv(out / "gw_per_episode.csv")["algorithm"].tolist() == ["a", "b"]

    assert _run(str(REPO / "analysis" / "tables.py"), "--results", str(tmp_path / "nowhere")).returncode == 2


def test_clis_help_and_no_agent_code_imported():
    for script in ("plot_returns.py", "tables.py"):
        done = _run(str(REPO / "analysis" / script), "--help")
        assert done.returncode == 0 and "--results" in done.stdout and "--frames" in done.stdout
    code = ("import sys, analysis.load, analysis.stats, analysis.plot_returns, analysis.tables; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('algorithms', 'envs', 'torch')))")
    done = _run("-c", code)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_report_collects_figures_tables_and_belief_pictures(tmp_path):
    results, out = tmp_path / "results", tmp_path / "report"
    _hand_made_results(results)
    for seed in (0, 1):
        for variant, value in (("all", 4.0), ("past", 2.0)):
            write_run(results, "gw", f"varibad_decode-{variant}", seed, {0: [[0.0, 0.0]], 100: [[value, value]]})
    run = next((results / "gw").glob("a/*"))
    T, H = 4, 2
    np.savez(run / "beliefs_goal1_1.npz", positions=np.zeros((T + 1, 2)), actions=np.zeros(T, int),
             rewards=np.array([-0.1, 1.0, 1.0, -0.1]), episode_index=np.array([0, 0, 1, 1]),
             latent_mean=np.zeros((T + 1, 3)), latent_logvar=np.zeros((T + 1, 3)),
             reward_prob=np.full((T + 1, 5, 5), 0.5), goal=np.array([1, 1]), horizon=H, frames=100)
    done = _run(str(REPO / "analysis" / "report.py"), "--results", str(results), "--out", str(out),
                "--n-resamples", "199", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    index = (out / "index.md").read_text()
    assert "## gw" in index and "4.00 [" in index  # the Markdown table is inlined
    for name in ("gw_per_episode.png", "gw_learning_curves.png", f"{run.name}_goal1_1_cells.png",
                 f"{run.name}_goal1_1_latent.png", "gw_per_episode.tex", "gw_ablation_varibad_decode.md",
                 "gw_ablation_varibad_decode_per_episode.png", "gw_ablation_varibad_decode_learning_curves.png",
                 "gw_runs.md", "gw_success.md"):
        assert (out / name).exists() and name in index, name
    assert "## gw_success" not in index  # a table of the env's section, not an env of its own
    assert _run(str(REPO / "analysis" / "report.py"), "--results", str(tmp_path / "none")).returncode == 2


def test_ablation_labels_form_groups():
    from analysis.stats import ablation_groups

    labels = ["varibad", "rl2", "posterior_sampling", "varibad_decode-all", "varibad_decode-past",
              "varibad_kl-none", "varibad_kl-gauss_prior", "varibad_latent-5"]
    assert ablation_groups(labels) == {"varibad_decode": ["varibad_decode-all", "varibad_decode-past"],
                                       "varibad_kl": ["varibad_kl-gauss_prior", "varibad_kl-none"]}


def test_tables_split_ablations_add_references_wall_times_and_runs(tmp_path):
    from analysis import tables

    results, out = tmp_path / "results", tmp_path / "tables"
    for seed in (0, 1, 2):
        run = write_run(results, "gridworld", "varibad", seed, {100: [[4.0 + seed, 11.0, 11.0, 11.0, 11.0, 11.0]]})
        meta = json.loads((run / "metadata.json").read_text())
        (run / "metadata.json").write_text(json.dumps({**meta, "wall_time_s": 60.0 * (50 + seed)}))
        for variant, value in (("all", 4.0), ("past", 2.0)):
            write_run(results, "gridworld", f"varibad_decode-{variant}", seed, {100: [[value] * 6]})
    assert tables.main(["--results", str(results), "--out", str(out), "--n-resamples", "99"]) == 0
    main_table = (out / "gridworld_per_episode.md").read_text()
    assert "varibad_decode" not in main_table  # ablation variants have their own table
    assert "| varibad " in main_table and "51 min (50-52)" in main_table
    refs = json.loads((REPO / "records/reference_data/gridworld_references.json").read_text())["K"]["6"]
    bayes = next(line for line in main_table.splitlines() if "reference: bayes_optimal" in line)
    assert [c.strip() for c in bayes.split("|")[5:11]] == [f"{v:.2f}" for v in refs["bayes_optimal"]]
    ablation = pd.read_csv(out / "gridworld_ablation_varibad_decode_values.csv")
    assert set(ablation["algo"]) == {"varibad_decode-all", "varibad_decode-past"}
    assert ablation.groupby("algo")["mean"].first().to_dict() == {"varibad_decode-all": 4.0,
                                                                  "varibad_decode-past": 2.0}
    success = pd.read_csv(out / "gridworld_success.csv")  # returns > 0 are successes in write_run
    assert success["algorithm"].iloc[0] == "varibad" and success["ep 1"].iloc[0].startswith("100 [")
    # the exact reference success rates under it (make references): Bayes-optimal finds 14 of 21 goals in episode 1
    assert list(success["algorithm"])[1:] == [f"reference: {name}" for name in
                                              ("optimal", "bayes_optimal", "posterior_sampling")]
    bayes = success.set_index("algorithm").loc["reference: bayes_optimal"]
    assert [bayes[f"ep {k}"] for k in range(1, 7)] == ["67", "100", "100", "100", "100", "100"]
    runs = pd.read_csv(out / "gridworld_runs.csv")
    assert len(runs) == 9 and set(runs.loc[runs["algorithm"] == "varibad", "wall time"]) == {
        "50.0 min", "51.0 min", "52.0 min"}


def test_ml1_success_table_counts_success_rates_and_seeds(tmp_path):
    from analysis import tables

    results, out = tmp_path / "results", tmp_path / "tables"
    # success = return > 0 in write_run: per seed, 4 test tasks x 2 episodes
    per_seed = {0: [[1.0, 1.0], [1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0]],    # ep 1: 50%, ep 2: 100%
                1: [[1.0, 1.0], [-1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]],  # ep 1: 25%, ep 2: 50%
                2: [[-1.0, -1.0]] * 4}                                     # never: learned nothing
    for seed, values in per_seed.items():
        write_run(results, "ml1_push", "varibad", seed, {500: values})
    assert tables.main(["--results", str(results), "--out", str(out), "--n-resamples", "99"]) == 0
    table = pd.read_csv(out / "ml1_success.csv")
    row = table.iloc[0]
    assert (row["task"], row["algorithm"], row["seeds with success"]) == ("push", "varibad", "2/3")
    assert row["ep 1"].startswith("25 [") and float(row["n"]) == 3  # (50 + 25 + 0) / 3
    assert row["ep 2"].startswith("50 [")  # (100 + 50 + 0) / 3
    # the paper's table 1 beside ours: variBAD in episodes 1-2; the baselines' episode 10 has no column here
    paper = table[table["algorithm"] == "paper: variBAD"].iloc[0]
    assert (paper["task"], paper["frames"], paper["ep 1"], paper["ep 2"]) == ("push", "paper", "100", "100")
    assert set(table["algorithm"]) == {"varibad", "paper: variBAD", "paper: MAML*", "paper: PEARL*", "paper: RL2*"}
    assert not (out / "ml1_push_success.csv").exists()  # ML1 has its own table


def test_success_table_per_env_outside_ml1(tmp_path):
    from analysis import tables

    results, out = tmp_path / "results", tmp_path / "tables"
    per_seed = {0: [[1.0, 1.0], [-1.0, 1.0]], 1: [[-1.0, 1.0], [-1.0, -1.0]], 2: [[1.0, 1.0], [1.0, 1.0]]}
    for seed, values in per_seed.items():
        write_run(results, "pointrobot_sparse", "varibad", seed, {500: values})
    assert tables.main(["--results", str(results), "--out", str(out), "--n-resamples", "99"]) == 0
    values = pd.read_csv(out / "pointrobot_sparse_success_values.csv").set_index("episode")["mean"]
    assert values.to_dict() == pytest.approx({1: (0.5 + 0.0 + 1.0) / 3, 2: (1.0 + 0.5 + 1.0) / 3})
    table = pd.read_csv(out / "pointrobot_sparse_success.csv")
    assert table["ep 1"].iloc[0].startswith("50 [") and table["ep 2"].iloc[0].startswith("83 [")


def test_a_preempted_run_is_kept_as_not_finished(tmp_path):
    write_run(tmp_path, "gw", "alg", 0, GOOD)
    write_run(tmp_path, "gw", "alg", 1, GOOD, status="preempted")
    res = load_results(tmp_path)
    assert res.problems == [] and sorted(res.runs["status"]) == ["completed", "running"]
    res = load_results(tmp_path, include_running=False)
    assert [reason for _, reason in res.problems] == ["status 'preempted', not finished (left out: "
                                                      "include_running=False)"]


def test_seeds_equal_up_to_rounding_have_no_spread():
    """Per-seed means of equal returns can differ in the last bits; that is no spread (and no t ~ 1e15)."""
    a = 3.6904761904761907
    assert mean_ci([a, a, a + 4e-16]) == pytest.approx((a, a, a))
    mean, lo, hi = mean_ci([a, a + 4e-16, 5.0], method="studentized")
    assert lo < mean < hi < 20.0  # the float-noise resamples are left out, not turned into huge t values


def test_runs_of_one_label_with_different_configs_are_never_pooled(tmp_path):
    for seed in (0, 1, 2):
        run = write_run(tmp_path, "gw", "alg", seed, GOOD)
        frames = 7000000 if seed == 2 else 5000000
        # operational keys differ too: they never split a label
        (run / "config.yaml").write_text(
            f"seed: {seed}\nprogress: {seed == 0}\nupdate_threads: {seed + 1}\ntrain:\n  num_frames: {frames}\n"
            f"  log_interval_seconds: {10 * seed + 5}\n  checkpoint_interval_frames: {seed + 1}\n"
            "algo:\n  lr: 0.001\n" + ("  added_later: 3\n" if seed == 0 else ""))
    res = load_results(tmp_path)
    assert sorted(res.runs["algo"]) == ["alg [train.num_frames=5000000]"] * 2 + ["alg [train.num_frames=7000000]"]
    assert set(res.eval["algo"]) == set(res.runs["algo"]) and set(res.train["algo"]) == set(res.runs["algo"])
    notes = res.notes
    assert len(notes) == 1 and "gw/alg" in notes[0] and "train.num_frames" in notes[0] and "never pooled" in notes[0]
    assert "run_seed2: 7000000" in notes[0] and "run_seed0, run_seed1: 5000000" in notes[0]
    for key in ("progress", "seed (", "algo.lr", "update_threads", "log_interval", "checkpoint", "added_later"):
        assert key not in notes[0]
    for seed in (0, 1, 2):  # the same configuration apart from the seed: nothing to say
        (tmp_path / "gw" / "alg" / f"run_seed{seed}" / "config.yaml").write_text(f"seed: {seed}\ntrain:\n  x: 1\n")
    assert load_results(tmp_path).notes == [] and set(load_results(tmp_path).runs["algo"]) == {"alg"}


def test_runs_under_different_protocols_are_never_drawn_on_one_axis(tmp_path):
    results, out = tmp_path / "results", tmp_path / "out"
    for seed in (0, 1):
        write_run(results, "gw", "a", seed, GOOD)
        run = write_run(results, "gw", "b", seed, GOOD)  # PEARL's way: its own horizon and episodes
        (run / "config.yaml").write_text(f"seed: {seed}\nenv:\n  horizon: 20\neval:\n  episodes: 2\n")
    assert set(load_results(results).runs["protocol"]) == {"", "H=20, K=2"}
    done = _run("-m", "analysis.plot_returns", "--results", str(results), "--out", str(out), "--n-resamples", "99",
                "--no-shipped")
    assert done.returncode == 0, done.stderr
    per_episode_lines = [line for line in done.stdout.splitlines() if "per-episode returns" in line]
    assert len(per_episode_lines) == 2  # one figure per protocol, each with its own runs only
    assert any("gw_per_episode.png" in line and " a at " in line and " b at " not in line for line in per_episode_lines)
    assert any("gw_protocol2_per_episode.png" in line and " b at " in line and " a at " not in line
               for line in per_episode_lines)
    done = _run("-m", "analysis.tables", "--results", str(results), "--out", str(out), "--n-resamples", "99",
                "--no-shipped")
    assert done.returncode == 0, done.stderr
    first, second = (out / "gw_per_episode.md").read_text(), (out / "gw_protocol2_per_episode.md").read_text()
    assert "| a " in first and "| b " not in first
    assert "| b " in second and "| a " not in second and second.startswith("gw [H=20, K=2]:")  # the caption says


def test_one_colour_per_agent_in_every_figure():
    from analysis.style import AGENT_COLORS, agent_color, label_colors

    cheetah = label_colors(["varibad_5M", "rl2_5M", "pearl_bf16_104k", "pearl_fp32_104k", "varibad_5M (shipped)",
                            "rl2_5M (shipped)", "pearl_bf16_104k (shipped)", "pearl_fp32_104k (shipped)",
                            "oracle", "posterior_sampling", "posterior_sampling_exact", "random"])
    gridworld = label_colors(["rl2_2e7", "varibad_2e7", "oracle_2e7"])
    # the same agent, the same hue in every figure; 12 labels and no two alike
    assert cheetah["varibad_5M"] == gridworld["varibad_2e7"] == AGENT_COLORS["varibad"] == agent_color("varibad")
    assert cheetah["rl2_5M"] == gridworld["rl2_2e7"] and cheetah["oracle"] == gridworld["oracle_2e7"]
    assert len(set(cheetah.values())) == len(cheetah)
    assert len(set(AGENT_COLORS.values())) == len(AGENT_COLORS)
    assert agent_color("posterior_sampling_exact") != agent_color("posterior_sampling")


def test_variants_of_one_agent_differ_in_marker_and_line_style_not_only_in_shade():
    from analysis.style import AGENT_COLORS, label_styles

    variants = ["varibad_2e7", "varibad_kl-detached_prev", "varibad_kl-gauss_prior", "varibad_kl-none", "rl2_2e7"]
    styles = label_styles(variants)
    assert styles["varibad_2e7"]["color"] == AGENT_COLORS["varibad"] and styles["rl2_2e7"]["linestyle"] == "-"
    varibad = [styles[v] for v in variants[:4]]
    assert len({s["marker"] for s in varibad}) == len({str(s["linestyle"]) for s in varibad}) == 4


def test_a_legend_below_the_axes_has_only_as_many_columns_as_fit_the_figure():
    from analysis.style import legend_columns

    long = ["varibad_decode-future (shipped) (in progress) (n=2 seeds, 2 running)", "varibad_decode-past (n=3)"]
    assert legend_columns(long, 7.2, 8) == 1
    assert legend_columns(long, 20.7, 9) == 2  # ~5.6 inches a column at 9 pt: room for 3, and there are 2
    assert legend_columns(["a", "b", "c", "d", "e"], 7.2, 8) == 4 and legend_columns(["a", "b"], 7.2, 8) == 2


def test_ml1_figures_show_the_success_rate(tmp_path):
    results, out = tmp_path / "results", tmp_path / "out"
    for seed in (0, 1):
        write_run(results, "ml1_push", "varibad", seed, {0: [[-1.0, -1.0]] * 2, 500: [[1.0, 1.0], [-1.0, 1.0]]})
    assert plot_returns.main(["--results", str(results), "--out", str(out), "--n-resamples", "99",
                              "--no-shipped"]) == 0
    for name in ("ml1_push_success_per_episode.png", "ml1_push_success_learning_curves.png"):
        assert (out / name).stat().st_size > 10_000


def test_a_report_says_which_commit_each_label_ran_at_and_flags_a_mix():
    from analysis.reproduce_report import runs_note, runs_provenance

    manifest = {"runs": [{"label": "a", "algo": "varibad", "env": "gridworld", "seeds": [0, 1]},
                         {"label": "b", "algo": "varibad", "env": "gridworld", "seeds": [0],
                          "overrides": ["algo.latent_dim=2"]},
                         {"label": "b", "algo": "varibad", "env": "gridworld", "seeds": [1],
                          "overrides": ["algo.latent_dim=2"]},
                         {"label": "c", "algo": "rl2", "env": "gridworld", "seeds": [0]}]}
    runs = pd.DataFrame({"env": "gridworld", "algo": ["a", "a", "b"], "seed": [0, 1, 0],
                         "frames": [2e7, 2e7, 2e7], "git_commit": ["1" * 40, "1" * 40, "2" * 40],
                         "wall_time_s": [600.0, 720.0, 660.0]})
    table = runs_provenance(manifest, runs).set_index("label")
    assert list(table.index) == ["a", "b", "c"]
    assert table.loc["a", "seeds"] == "0, 1" and table.loc["a", "commit"] == "1" * 10
    assert table.loc["b", "overrides"] == "`algo.latent_dim=2`" and table.loc["b", "commit"] == "2" * 10
    assert table.loc["c", "seeds"] == "none published" and table.loc["a", "wall/run"] == "11 min (10-12)"
    assert "span 2 commits" in runs_note(runs)
    assert runs_note(runs[runs["algo"] == "a"]).startswith(f"Every run at one commit, `{'1' * 10}`")
