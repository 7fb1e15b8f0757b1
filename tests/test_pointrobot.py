"""Sparse PointRobot against design.md §2: dynamics, sparse/dense reward, goal sets, BAMDP episodes, seeding."""

import numpy as np
import pytest

import envs
from envs.pointrobot import PointRobotSparse


def make(goal=(0.0, 1.0), n=1, **kwargs):
    env = PointRobotSparse(n, np.random.default_rng(0), **kwargs)
    env.set_tasks(np.tile(np.array(goal, np.float32), (n, 1)))
    env.reset_state(np.arange(n))
    return env


def test_actions_are_clipped_and_scaled():
    env = make()
    obs, *_ = env.step(np.array([[5.0, -0.5]]))
    np.testing.assert_allclose(obs, [[0.1, -0.05]], atol=1e-7)
    obs, *_ = env.step(np.array([[-3.0, -3.0]]))
    np.testing.assert_allclose(obs, [[0.0, -0.15]], atol=1e-7)


def test_reward_recomputed_from_the_position():
    rng = np.random.default_rng(1)
    goal = np.array([np.cos(1.0), np.sin(1.0)])
    env = make(goal=goal)
    pos = np.zeros(2)
    hits = 0
    for _ in range(300):
        a = np.clip(goal - pos, -1, 1) * 10 + rng.normal(0, 0.5, 2)  # head for the goal, noisily
        obs, r, term, info = env.step(a[None])
        pos = pos + 0.1 * np.clip(a, -1, 1)
        d = np.linalg.norm(pos - goal)
        np.testing.assert_allclose(obs[0], pos, atol=1e-5)
        assert r[0] == pytest.approx(1.0 - d if d <= 0.2 else 0.0, abs=1e-5)
        assert info["dense_reward"][0] == pytest.approx(-d, abs=1e-5)
        assert info["success"][0] == (d <= 0.2) and not term[0]
        hits += d <= 0.2
    assert hits > 0  # the check above saw both branches of the reward


def test_semicircle_goals_and_pearl_sets():
    env = make()
    goals = env.sample_tasks(5000, np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.norm(goals, axis=1), 1.0, atol=1e-6)
    angles = np.arctan2(goals[:, 1], goals[:, 0])
    assert angles.min() >= 0 and angles.max() <= np.pi and angles.min() < 0.01 and angles.max() > np.pi - 0.01
    assert env.train_tasks() is None and env.held_out_tasks() is None
    pearl = make(task_set="pearl")
    train, test = pearl.train_tasks(), pearl.held_out_tasks()
    assert len(train) == 80 and len(test) == 20
    all_angles = np.arctan2(np.concatenate([train, test])[:, 1], np.concatenate([train, test])[:, 0])
    np.testing.assert_allclose(np.sort(np.abs(all_angles)), np.linspace(0, np.pi, 100), atol=1e-6)
    assert not {tuple(g) for g in train.round(6)} & {tuple(g) for g in test.round(6)}
    sampled = pearl.sample_tasks(1000, np.random.default_rng(0))
    assert {tuple(g) for g in sampled.round(6)} <= {tuple(g) for g in train.round(6)}
    with pytest.raises(ValueError, match="task_set"):
        make(task_set="circle")


def test_pearl_split_is_oysters_seeded_shuffle():
    """oyster (rlkit/envs/point_robot.py, SparsePointEnv): np.random.seed(1337); goals at linspace(0, pi, 100);
    np.random.shuffle(goals); train = the first 80, test = the last 20 (launch_experiment.py)."""
    saved = np.random.get_state()
    try:
        np.random.seed(1337)
        angles = np.linspace(0, np.pi, num=100)
        goals = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        np.random.shuffle(goals)
    finally:
        np.random.set_state(saved)
    env = make(task_set="pearl")
    np.testing.assert_allclose(env.train_tasks(), goals[:80], atol=1e-6)
    np.testing.assert_allclose(env.held_out_tasks(), goals[-20:], atol=1e-6)
    # the test goals are interleaved with the training goals: each lies within the goal radius of a training goal
    gaps = np.linalg.norm(env.held_out_tasks()[:, None] - env.train_tasks()[None], axis=-1).min(axis=1)
    assert gaps.max() < 0.2


def test_bamdp_boundaries_every_100_steps_same_task_for_3_episodes():
    env = envs.make_meta_env("pointrobot_sparse", num_envs=2, seed=0)
    obs, info = env.reset()
    task = info["task"].copy()
    for t in range(300):
        obs, _r, _term, trunc, info = env.step(np.ones((2, 2), np.float32))
        assert info["episode_done"].all() == ((t + 1) % 100 == 0)
        np.testing.assert_array_equal(info["task"], task)
        if (t + 1) % 100 == 0:
            np.testing.assert_allclose(obs[:, :2], 0.0)  # back at the start
    assert trunc.all() and info["task_done"].all()
    assert not np.array_equal(env.tasks, task)  # a new task after K = 3 episodes


def test_same_seed_same_tasks_and_trajectories():
    def run(seed):
        env = envs.make_meta_env("pointrobot_sparse", num_envs=3, seed=seed, task_set="pearl")
        _obs, info = env.reset()
        acts = np.random.default_rng(5).uniform(-1, 1, (350, 3, 2))
        out = [info["task"]] + [np.concatenate([env.step(a)[0].ravel(), env.tasks.ravel()]) for a in acts]
        return np.concatenate([x.ravel() for x in out])

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))
