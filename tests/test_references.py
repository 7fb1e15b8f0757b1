"""Exact GridWorld references (algorithms/references/gridworld.py) against independent computations.

* The Bayes-optimal planner (open-loop search, branch and bound) against brute-force expectimax over the full
  observation tree, which assumes nothing about the structure of the problem: at every step it tries all five
  actions, the observation is whether the new cell is the goal, and the posterior is the set of goals
  consistent with the history (Bayes' rule with a uniform prior and deterministic observations).
* The known-goal optimum against rollouts in the real ``envs.gridworld.GridWorld``.
* Exact posterior sampling against Monte Carlo rollouts in the real env.
* The cached JSON against a fresh computation.
"""

from __future__ import annotations

import json
from fractions import Fraction
from functools import lru_cache

import numpy as np
import pytest

from algorithms.references.gridworld import (
    DEFAULT_JSON,
    GridSpec,
    evaluate_search_plan,
    main,
    optimal_per_episode,
    optimal_success_per_episode,
    per_episode_references,
    plan_bayes_optimal,
    posterior_sampling_monte_carlo,
    posterior_sampling_per_episode,
    search_plan_success,
)
from envs.gridworld import GridWorld

Cell = tuple[int, int]


def expectimax(spec: GridSpec, K: int, merge_identical_subtrees: bool = False) -> tuple[Fraction, ...]:
    """Per-episode expected returns of the lowest-index Bayes-optimal policy, by full expectimax.

    Plain recursion over the observation tree (every action at every step, both observations where possible):
    the max over all policies written as action sequences conditioned on observations. With
    ``merge_identical_subtrees`` the recursion is memoised on (position, step, consistent goals), the exact
    hyper-state (identical subtrees, same result), to reach slightly larger instances.
    """
    H, goals0 = spec.horizon, tuple(spec.candidates)

    def value(pos: Cell, n: int, goals: tuple[Cell, ...]) -> tuple[Fraction, ...]:
        if n == K * H:
            return (Fraction(0),) * K
        best: tuple[Fraction, ...] | None = None
        for action in range(5):
            cell = spec.move(pos, action)
            nxt = spec.start if (n + 1) % H == 0 else cell
            q = [Fraction(0)] * K
            for branch in ([g for g in goals if g == cell], [g for g in goals if g != cell]):
                if not branch:
                    continue
                p = Fraction(len(branch), len(goals))
                reward = spec.goal_reward if branch[0] == cell else spec.step_reward
                child = step(nxt, n + 1, tuple(branch))
                q = [qi + p * ci for qi, ci in zip(q, child, strict=True)]
                q[n // H] += p * reward
            if best is None or sum(q) > sum(best):  # strict: ties keep the lowest action index
                best = tuple(q)
        assert best is not None
        return best

    step = lru_cache(maxsize=None)(value) if merge_identical_subtrees else value
    return step(spec.start, 0, goals0)


TREE_CASES = [  # (width, height, excluded, H, K): small enough for the full observation tree
    (3, 3, {(0, 0)}, 3, 2),
    (3, 3, {(0, 0), (0, 1), (1, 0)}, 2, 3),
    (2, 3, set(), 3, 2),  # the start is a candidate: the first noop is informative
    (3, 2, {(0, 0), (1, 1)}, 4, 1),
]
CORNER = {(0, 0), (0, 1), (1, 0), (1, 1)}
MERGED_CASES = [
    (5, 5, CORNER, 6, 2),  # the benchmark's grid and goal set with shorter episodes
    (5, 5, CORNER, 9, 1),
    (5, 5, CORNER, 4, 3),
    (4, 4, CORNER, 6, 2),
    (3, 3, {(0, 0)}, 4, 3),
    (4, 3, set(), 4, 2),
    (4, 4, {(0, 0)}, 3, 3),
]


@pytest.mark.parametrize("case", TREE_CASES + MERGED_CASES)
def test_planner_equals_brute_force_expectimax(case):
    width, height, excluded, H, K = case
    spec = GridSpec(width=width, height=height, excluded=frozenset(excluded), horizon=H)
    reference = expectimax(spec, K, merge_identical_subtrees=case in MERGED_CASES)
    plan = plan_bayes_optimal(spec, K)
    assert plan.value == sum(reference)
    # same tie-break (lowest optimal action index) => the same per-episode split, exactly
    assert plan.per_episode == reference
    assert tuple(evaluate_search_plan(spec, K, plan.actions)) == plan.per_episode


@pytest.mark.parametrize("beam", [1, 16, 5000])
def test_planner_result_does_not_depend_on_the_beam(beam):
    """The beam only provides the pruning bound; a poor bound must cost time, never exactness."""
    spec = GridSpec(width=4, height=4, excluded=frozenset({(0, 0), (0, 1), (1, 0), (1, 1)}), horizon=6)
    reference = plan_bayes_optimal(spec, 3)
    plan = plan_bayes_optimal(spec, 3, beam=beam)
    assert (plan.value, plan.actions, plan.per_episode) == (reference.value, reference.actions, reference.per_episode)


def known_goal_rollouts(K: int) -> np.ndarray:
    """Per-episode mean return of the known-goal policy, stepped in the real env with every goal once."""
    env = GridWorld(21, np.random.default_rng(0))
    goals = env.goals.astype(np.int64)
    env.set_tasks(env.goals)
    H = GridSpec().horizon
    returns = np.zeros((len(goals), K))
    for k in range(K):
        pos = env.reset_state(np.arange(len(goals))).astype(np.int64)
        for _ in range(H):
            dx, dy = goals[:, 0] - pos[:, 0], goals[:, 1] - pos[:, 1]
            action = np.select([dx > 0, dx < 0, dy > 0, dy < 0], [2, 4, 1, 3], default=0)
            obs, reward, _, _ = env.step(action)
            pos = obs.astype(np.int64)
            returns[:, k] += reward
    return returns.mean(axis=0)


def test_optimal_known_goal_matches_env_rollouts():
    closed_form = optimal_per_episode(GridSpec(), 4)
    assert len(set(closed_form)) == 1 and float(closed_form[0]) == pytest.approx(11.0714285714, abs=1e-9)
    np.testing.assert_allclose(known_goal_rollouts(4), [float(v) for v in closed_form], atol=1e-4)


@pytest.mark.parametrize("K", [4, 6])
def test_posterior_sampling_exact_matches_monte_carlo(K):
    exact = np.array([float(v) for v in posterior_sampling_per_episode(GridSpec(), K)])
    mc = posterior_sampling_monte_carlo(K, 20_000, np.random.default_rng(12345))
    mean, se = mc["return"]
    assert np.all(se > 0)
    assert np.all(np.abs(mean - exact) <= 4 * se + 1e-9), (mean, exact, se)
    # the success rate (the env's info["success"] in some step of the episode) by the same enumeration
    exact = np.array([float(v) for v in posterior_sampling_per_episode(GridSpec(), K, value="success")])
    mean, se = mc["success"]
    assert np.all(se > 0) and np.all(np.diff(exact) > 0)
    assert np.all(np.abs(mean - exact) <= 4 * se + 1e-9), (mean, exact, se)


def test_monte_carlo_check_has_power():
    """The 4-standard-error check rejects the exact values of a slightly different setting: H = 12 for 15 (returns),
    H = 6 (success: a sampled goal is at most 8 steps away, so success does not depend on H above that)."""
    mc = posterior_sampling_monte_carlo(4, 20_000, np.random.default_rng(12345))
    for value, horizon in (("return", 12), ("success", 6)):
        exact = np.array([float(v) for v in posterior_sampling_per_episode(GridSpec(horizon=horizon), 4, value=value)])
        mean, se = mc[value]
        assert np.any(np.abs(mean - exact) > 4 * se), value


@pytest.mark.parametrize("K", [4, 6])
def test_reference_ordering_and_bayes_split(K):
    spec = GridSpec()
    optimal = optimal_per_episode(spec, K)
    bayes = plan_bayes_optimal(spec, K)
    ps = posterior_sampling_per_episode(spec, K)
    assert sum(ps) <= bayes.value <= sum(optimal)
    assert sum(ps) < bayes.value < sum(optimal)  # strict on this env
    # The split is tie-break independent here: episode 1 cannot beat the one-episode optimum and later episodes
    # cannot beat the known-goal optimum, and the total attains both bounds.
    one_episode = plan_bayes_optimal(spec, 1).value
    assert bayes.per_episode[0] == one_episode
    assert list(bayes.per_episode[1:]) == optimal[1:]
    assert bayes.value == one_episode + (K - 1) * optimal[0]


def plan_rollout_success(actions: list[int], K: int) -> np.ndarray:
    """Per-episode success rate of "follow ``actions`` until the goal is found, then go straight to it", stepped in
    the real env with every goal once: the env's ``info["success"]`` in some step of the episode."""
    env = GridWorld(21, np.random.default_rng(0))
    goals = env.goals.astype(np.int64)
    env.set_tasks(env.goals)
    H = GridSpec().horizon
    found = np.zeros(len(goals), dtype=bool)
    success = np.zeros((len(goals), K), dtype=bool)
    for k in range(K):
        pos = env.reset_state(np.arange(len(goals))).astype(np.int64)
        for t in range(H):
            dx, dy = goals[:, 0] - pos[:, 0], goals[:, 1] - pos[:, 1]
            straight = np.select([dx > 0, dx < 0, dy > 0, dy < 0], [2, 4, 1, 3], default=0)
            obs, _, _, info = env.step(np.where(found, straight, actions[k * H + t]))
            pos = obs.astype(np.int64)
            success[:, k] |= info["success"]
        found |= success[:, k]
    return success.mean(axis=0)


@pytest.mark.parametrize("K", [4, 6])
def test_bayes_optimal_and_known_goal_success_rates_match_env_rollouts(K):
    spec = GridSpec()
    plan = plan_bayes_optimal(spec, K)
    exact = [float(v) for v in search_plan_success(spec, K, plan.actions)]
    np.testing.assert_allclose(plan_rollout_success(list(plan.actions), K), exact, atol=1e-12)
    # episode 1 finds 14 of the 21 goals; the rest on the straight path of episode 2
    assert exact[:2] == [pytest.approx(14 / 21), 1.0]
    assert [float(v) for v in optimal_success_per_episode(spec, K)] == [1.0] * K


def test_cached_json_equals_fresh_computation(tmp_path, capsys):
    """The committed file is exactly what the CLI writes now, so it cannot drift from the code."""
    out = tmp_path / "refs.json"
    main(["--out", str(out)])
    assert "bayes_optimal" in capsys.readouterr().out
    fresh, cached = json.loads(out.read_text()), json.loads(DEFAULT_JSON.read_text())
    # The Monte Carlo check depends on numpy's random stream, which numpy does not promise to keep across
    # versions: compare it statistically; everything else (the exact values) must match exactly.
    for block in ("K", "success_K"):
        for K in ("4", "6"):
            mc = cached[block][K].pop("posterior_sampling_monte_carlo")
            fresh[block][K].pop("posterior_sampling_monte_carlo")
            exact = np.array(cached[block][K]["posterior_sampling"])
            assert np.all(np.abs(np.array(mc["mean"]) - exact) <= 4 * np.array(mc["standard_error"]) + 1e-6)
    assert fresh == cached
    for K in (4, 6):
        refs = per_episode_references(K)
        assert set(refs) == {"optimal", "bayes_optimal", "posterior_sampling"}
        for name, values in refs.items():
            assert len(values) == K
            np.testing.assert_allclose(values, cached["K"][str(K)][name], atol=5e-7)


# ---------------------------------------------------------------------------------------------- PointRobot
def test_known_goal_agent_reaches_every_distance_bound():
    """Per-axis |x_t - g_x| = max(0, |g_x| - 0.1 t) is the smallest any policy can have at step t, so the known-goal
    agent's return is the closed form sum over t of (1 - d_t) where d_t <= 0.2."""
    from algorithms.common.evaluator import meta_test
    from algorithms.references.pointrobot import KnownGoalAgent

    # no goal at a distance that puts a step exactly on the radius (float rounding would decide it)
    goals = np.array([[np.cos(0.3), np.sin(0.3)], [np.cos(1.0), np.sin(1.0)], [-0.6, 0.8], [np.cos(3.1), np.sin(3.1)]],
                     np.float32)
    rows = meta_test(KnownGoalAgent(), "pointrobot_sparse", goals, episodes=2)
    t = np.arange(1, 101)[:, None]
    gaps = np.maximum(0.0, np.abs(goals.astype(np.float64))[None] - 0.1 * t[..., None])
    distance = np.linalg.norm(gaps, axis=-1)
    expected = np.where(distance <= 0.2, 1.0 - distance, 0.0).sum(axis=0)
    np.testing.assert_allclose(rows[rows["episode"] == 1]["return"].to_numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(rows[rows["episode"] == 2]["return"].to_numpy(), expected, rtol=1e-5)


def test_searcher_finds_the_goal_in_episode_one_and_goes_straight_back():
    from algorithms.common.evaluator import meta_test
    from algorithms.references.pointrobot import KnownGoalAgent, SemicircleSearchAgent

    angles = np.linspace(0.0, np.pi, 25)
    goals = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    rows = meta_test(SemicircleSearchAgent(), "pointrobot_sparse", goals, episodes=3)
    optimal = meta_test(KnownGoalAgent(), "pointrobot_sparse", goals, episodes=1)["return"].to_numpy()
    ep = {k: rows[rows["episode"] == k] for k in (1, 2, 3)}
    assert ep[1]["success"].all()  # H = 100 covers the whole semicircle
    # later episodes: straight to the point found, within a few per cent of knowing the goal
    assert (ep[2]["return"].to_numpy() >= ep[1]["return"].to_numpy()).all()
    assert (ep[2]["return"].to_numpy() > 0.95 * optimal).all()
    np.testing.assert_allclose(ep[3]["return"].to_numpy(), ep[2]["return"].to_numpy())
    # searching costs: episode 1 is below the optimum for goals far along the arc
    assert ep[1]["return"].to_numpy()[-1] < 0.8 * optimal[-1]


def test_searcher_resumes_its_search_across_short_episodes():
    """PEARL's 20-step episodes: one sweep does not cover the arc, the next episode continues it."""
    from algorithms.common.evaluator import meta_test
    from algorithms.references.pointrobot import SemicircleSearchAgent

    goals = np.array([[np.cos(2.5), np.sin(2.5)]], np.float32)
    rows = meta_test(SemicircleSearchAgent(), "pointrobot_sparse", goals, episodes=5, horizon=20)
    first = int(rows[rows["success"]]["episode"].min())
    assert first == 3 and rows[rows["episode"] > first]["success"].all()


def test_pointrobot_reference_file_is_what_the_code_computes():
    import json

    from algorithms.references.pointrobot import OUT, compute_references

    assert json.loads(OUT.read_text()) == json.loads(json.dumps(compute_references()))


def test_analysis_draws_the_pointrobot_references_for_any_k():
    from analysis.references import DEFAULT_REFERENCES, load_references, references_for

    refs, note = load_references(DEFAULT_REFERENCES)
    assert note is None
    lines, note = references_for(refs, "pointrobot_sparse", 10)
    assert note is None and set(lines) == {"optimal", "searcher"} and len(lines["searcher"]) == 10
    success, _ = references_for(refs, "pointrobot_sparse", 5, key="success_K")
    assert success["optimal"] == [1.0] * 5
    gridworld, _ = references_for(refs, "gridworld", 6)
    assert gridworld["bayes_optimal"][0] == 4.0
    assert references_for(refs, "cheetah_dir", 5) == ({}, None)
