"""GridWorld dynamics, rewards, goal set and BAMDP episode handling against design.md §2."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.gridworld import GridWorld, candidate_goals

NOOP, UP, RIGHT, DOWN, LEFT = range(5)


def make(n=1, goal=(4, 4)):
    env = GridWorld(n, np.random.default_rng(0))
    env.set_tasks(np.tile(np.array(goal, np.float32), (n, 1)))
    env.reset_state(np.arange(n))
    return env


@pytest.mark.parametrize(("action", "expected"), [(NOOP, (2, 2)), (UP, (2, 3)), (RIGHT, (3, 2)),
                                                  (DOWN, (2, 1)), (LEFT, (1, 2))])
def test_action_directions(action, expected):
    env = make()
    env.position[:] = (2, 2)
    obs, *_ = env.step(np.array([action]))
    assert tuple(obs[0]) == expected


@pytest.mark.parametrize(("start", "action"), [((0, 0), LEFT), ((0, 0), DOWN), ((4, 4), UP), ((4, 4), RIGHT),
                                               ((0, 4), UP), ((4, 0), DOWN)])
def test_walls_clip(start, action):
    env = make()
    env.position[:] = start
    obs, *_ = env.step(np.array([action]))
    assert tuple(obs[0]) == start


def test_rewards_and_no_termination_at_goal():
    env = make(goal=(1, 2))
    env.position[:] = (0, 2)
    _, r, term, info = env.step(np.array([NOOP]))
    assert r[0] == pytest.approx(-0.1) and not info["success"][0]
    _, r, term, info = env.step(np.array([RIGHT]))
    assert r[0] == pytest.approx(1.0) and info["success"][0] and not term[0]
    for _ in range(3):  # staying on the goal keeps paying +1; the episode does not end there
        _, r, term, _ = env.step(np.array([NOOP]))
        assert r[0] == pytest.approx(1.0) and not term[0]
    _, r, _, _ = env.step(np.array([UP]))
    assert r[0] == pytest.approx(-0.1)


def test_batched_step_is_per_env():
    env = make(3, goal=(0, 2))
    obs, r, _, _ = env.step(np.array([UP, RIGHT, NOOP]))
    np.testing.assert_array_equal(obs, [[0, 1], [1, 0], [0, 0]])
    obs, r, _, _ = env.step(np.array([UP, UP, UP]))
    np.testing.assert_allclose(r, [1.0, -0.1, -0.1])


def test_goal_set_is_the_21_allowed_cells_and_sampled_uniformly():
    goals = {tuple(g) for g in candidate_goals().astype(int)}
    assert len(goals) == 21
    assert not goals & {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert all(0 <= x < 5 and 0 <= y < 5 for x, y in goals)
    env = GridWorld(1, np.random.default_rng(0))
    samples = env.sample_tasks(21_000, np.random.default_rng(1)).astype(int)
    counts = {g: 0 for g in goals}
    for g in map(tuple, samples):
        counts[g] += 1  # KeyError if a sample is outside the goal set
    # each cell has expected count 1000, sd ~31: 5 sd is a loose but failing-capable band
    assert all(abs(c - 1000) < 160 for c in counts.values())
    np.testing.assert_array_equal(env.held_out_tasks(), candidate_goals())


def test_bamdp_episodes_reset_state_keep_task_then_new_task():
    env = envs.make_meta_env("gridworld", num_envs=2, seed=3)
    obs, info = env.reset()
    task = info["task"].copy()
    np.testing.assert_array_equal(obs, np.zeros((2, 3)))
    H, K = 15, 4
    for k in range(K):
        for t in range(H):
            obs, _, term, trunc, info = env.step(np.array([UP, RIGHT]))
            last = t == H - 1
            np.testing.assert_array_equal(info["episode_done"], [last, last])
            assert (info["episode_index"] == k).all()
            np.testing.assert_array_equal(info["task"], task)  # same task across the K episodes
            if last:
                np.testing.assert_array_equal(info["final_obs"][:, 2], 1.0)  # done flag in the terminal obs
                np.testing.assert_array_equal(info["final_obs"][:, :2], [[0, 4], [4, 0]])
                np.testing.assert_array_equal(obs, np.zeros((2, 3)))  # physical reset to (0, 0)
            else:
                assert (obs[:, 2] == 0).all()
            np.testing.assert_array_equal(trunc, [last and k == K - 1] * 2)
            assert not term.any()
    assert info["task_done"].all()
    np.testing.assert_array_equal(env.episode_index, 0)


def test_same_seed_same_tasks_and_trajectory():
    def rollout(seed):
        env = envs.make_meta_env("gridworld", num_envs=4, seed=seed)
        obs, info = env.reset()
        actions = np.random.default_rng(0).integers(5, size=(130, 4))
        out = [info["task"]]
        for a in actions:
            obs, r, *_, info = env.step(a)
            out += [obs, r, info["task"]]
        return np.concatenate([x.reshape(-1) for x in out])

    np.testing.assert_array_equal(rollout(7), rollout(7))
    assert not np.array_equal(rollout(7), rollout(8))


def test_gymnasium_registration_and_api():
    env = gym.make("metarl/GridWorld-v0")
    check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=0, options={"task": [4.0, 4.0]})
    total = 0.0
    for _ in range(60):
        _, r, term, trunc, _ = env.step(0)
        total += r
    assert trunc and not term and total == pytest.approx(-6.0)
    vec = gym.make_vec("metarl/GridWorld-v0", num_envs=5, vectorization_mode="vector_entry_point")
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (5, 3)


def test_unknown_env_lists_choices():
    with pytest.raises(envs.UnknownEnvError, match=r"unknown environment 'gridwrld'.*gridworld"):
        envs.make_meta_env("gridwrld", num_envs=1, seed=0)


def test_invalid_action_is_rejected():
    env = make()
    with pytest.raises(ValueError, match="GridWorld actions"):
        env.step(np.array([7]))
