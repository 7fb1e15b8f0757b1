"""Meta-World ML1 (envs/metaworld_ml1.py) against design.md §2 and plain Meta-World 3.1.1 envs.

The reference every check compares to is Meta-World itself, built here independently of envs/ the documented way:
``metaworld.ML1(name, seed=0)``, ``ml1.train_classes[name]()``, ``env.set_task(ml1.test_tasks[i])``.
"""

from __future__ import annotations

import functools
import pickle
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest

metaworld = pytest.importorskip("metaworld")

import envs  # noqa: E402
from algorithms.common.evaluator import meta_test_tasks as evaluator_meta_test_tasks  # noqa: E402
from envs.metaworld_ml1 import ML1_ENVS, MetaWorldML1Copy  # noqa: E402

NAMES = list(ML1_ENVS)  # registry names; ML1_ENVS maps them to Meta-World's


@functools.cache
def reference_ml1(mw_name: str, seed: int = 0):
    """Built by the test itself (not through envs/), so the env's task sets are checked against Meta-World's."""
    return metaworld.ML1(mw_name, seed=seed)


def reference_vectors(tasks) -> np.ndarray:
    return np.stack([pickle.loads(t.data)["rand_vec"] for t in tasks]).astype(np.float32)


def make(name: str, num_envs: int = 2, seed: int = 0, **kwargs):
    return envs.make_meta_env(name, num_envs=num_envs, seed=seed, num_workers=kwargs.pop("num_workers", 0), **kwargs)


def scripted_policy(mw_name: str):
    """Meta-World's own expert policy; it needs the goal, which the ML observation hides, so the test passes it."""
    from metaworld.policies import SawyerPickPlaceV3Policy, SawyerPushV3Policy, SawyerReachV3Policy

    policy = {"reach-v3": SawyerReachV3Policy, "push-v3": SawyerPushV3Policy,
              "pick-place-v3": SawyerPickPlaceV3Policy}[mw_name]()

    def act(obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
        full = np.asarray(obs, dtype=np.float64).copy()
        full[36:39] = goal
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Constant(s) may be too high": it clips, as documented
            return policy.get_action(full).astype(np.float32)

    return act


@pytest.mark.parametrize("name", NAMES)
def test_task_sets_are_ml1s_own_train_and_test_tasks_and_disjoint(name):
    mw_name = ML1_ENVS[name]
    ml1 = reference_ml1(mw_name)
    env = make(name, num_envs=1)
    train, test = env.inner.train_tasks(), env.inner.held_out_tasks()
    np.testing.assert_array_equal(train, reference_vectors(ml1.train_tasks))
    np.testing.assert_array_equal(test, reference_vectors(ml1.test_tasks))
    assert train.shape == test.shape == (50, 6)
    assert len({tuple(v) for v in train}) == 50 and len({tuple(v) for v in test}) == 50
    assert not {tuple(v) for v in train} & {tuple(v) for v in test}
    # training draws from the train set only; the evaluator meta-tests on the test set
    np.testing.assert_array_equal(env.task_pool, train)
    drawn = env.inner.sample_tasks(500, np.random.default_rng(0))
    assert {tuple(v) for v in drawn} <= {tuple(v) for v in train} and len({tuple(v) for v in drawn}) > 40
    np.testing.assert_array_equal(evaluator_meta_test_tasks(name, None, 0, num_workers=0), test)
    # each vector maps back to exactly ML1's Task object (float64 rand_vec, same pickled data)
    copy = MetaWorldML1Copy(mw_name, 0, seed=0)
    for vector, task in zip(np.concatenate([train, test]), [*ml1.train_tasks, *ml1.test_tasks], strict=True):
        assert copy.task_object(vector).data == task.data
        copy.set_task(vector)
        np.testing.assert_array_equal(copy.env._last_rand_vec, pickle.loads(task.data)["rand_vec"])
    with pytest.raises(ValueError, match="not the rand_vec"):
        copy.set_task(train[0] + 1e-3)
    env.close()


def test_benchmark_seed_selects_other_tasks_and_test_of_s_is_train_of_s_plus_1():
    """The documented pitfall of metaworld.ML1: its test goals are drawn with seed + 1."""
    seed0 = make("ml1_push", num_envs=1).inner
    seed1 = make("ml1_push", num_envs=1, benchmark_seed=1).inner
    assert not np.array_equal(seed0.train_tasks(), seed1.train_tasks())
    np.testing.assert_array_equal(seed1.train_tasks(), seed0.held_out_tasks())


@pytest.mark.parametrize("name", NAMES)
def test_steps_equal_a_plain_metaworld_env_on_the_same_task(name):
    """Twin check: a plain Meta-World env on the same Task (from the test's own ML1), stepped with the same
    actions, must give bit-identical observations, rewards and success flags, across an episode boundary.

    This is the most independent reference available: the twin computes its reward and success with
    Meta-World's own ``step``/``evaluate_state`` from its own simulator, sharing no code path with envs/ (task
    lookup, reset, action dtype, float conversions, success extraction, BAMDP resets). The twin starts from the
    same state because Meta-World's reset is deterministic given the task (checked below). Meta-World's expert
    policy drives the robot, so success is reached and both branches of the success flag are compared."""
    mw_name, horizon, idx = ML1_ENVS[name], 80, [3, 17]
    ml1 = reference_ml1(mw_name)
    env = make(name, horizon=horizon, split="test")
    test = reference_vectors(ml1.test_tasks)
    obs, _ = env.reset(options={"tasks": test[idx]})
    twins = []
    for i in idx:
        twin = ml1.train_classes[mw_name]()
        twin.set_task(ml1.test_tasks[i])
        twins.append(twin)
    twin_obs = np.stack([t.reset()[0] for t in twins])
    act = scripted_policy(mw_name)
    successes, rewards = 0, []
    for step in range(2 * horizon):
        np.testing.assert_array_equal(obs[:, :39], twin_obs.astype(np.float32))
        actions = np.stack([act(o, t._target_pos) for o, t in zip(twin_obs, twins, strict=True)])
        obs, reward, _, _, info = env.step(actions)
        results = [t.step(a) for t, a in zip(twins, actions, strict=True)]
        twin_obs = np.stack([r[0] for r in results])
        np.testing.assert_array_equal(info["final_obs"][:, :39], twin_obs.astype(np.float32))
        np.testing.assert_array_equal(reward, np.float32([r[1] for r in results]))
        np.testing.assert_array_equal(info["success"], [bool(r[4]["success"]) for r in results])
        successes += int(info["success"].sum())
        rewards.extend(reward)
        if (step + 1) % horizon == 0:
            assert info["episode_done"].all()
            twin_obs = np.stack([t.reset()[0] for t in twins])
    assert successes > 0 and len(set(rewards)) > 20  # both success branches and many reward values compared
    env.close()


def test_episode_boundaries_every_h_steps_k_episodes_on_the_same_task():
    env = make("ml1_push", num_envs=3, horizon=5)
    train = {tuple(v) for v in env.inner.train_tasks()}
    obs, info = env.reset()
    assert obs.shape == (3, 40) and env.single_action_space.shape == (4,)  # 39-d obs + the episode-done flag
    np.testing.assert_array_equal(obs[:, 36:39], 0.0)  # the goal is hidden
    task, first_obs = info["task"].copy(), obs.copy()
    tasks_seen = [task]
    rng = np.random.default_rng(0)
    for t in range(30):
        obs, _r, _term, trunc, info = env.step(rng.uniform(-1, 1, (3, 4)).astype(np.float32))
        np.testing.assert_array_equal(info["task"], task)
        np.testing.assert_array_equal(info["episode_done"], (t + 1) % 5 == 0)
        np.testing.assert_array_equal(info["task_done"], (t + 1) % 10 == 0)
        np.testing.assert_array_equal(trunc, (t + 1) % 10 == 0)
        np.testing.assert_array_equal(info["episode_index"], (t // 5) % 2)
        np.testing.assert_array_equal(info["final_obs"][:, -1], float((t + 1) % 5 == 0))
        if (t + 1) % 10 == 5:  # the second episode of the task starts where the first did: only the state resets
            np.testing.assert_array_equal(obs, first_obs)
        if (t + 1) % 10 == 0:
            task, first_obs = env.tasks.copy(), obs.copy()
            tasks_seen.append(task)
            assert {tuple(v) for v in task} <= train
    assert len({tuple(v) for ts in tasks_seen for v in ts}) > 3  # new tasks were drawn
    env.close()


def test_horizon_500_runs_two_episodes_and_501_raises_a_clear_error():
    env = make("ml1_reach", num_envs=1, horizon=500)
    env.reset()
    rng = np.random.default_rng(0)
    done_at = []
    for t in range(1000):
        _obs, _r, _term, trunc, info = env.step(rng.uniform(-1, 1, (1, 4)).astype(np.float32))
        if info["episode_done"][0]:
            done_at.append(t + 1)
    assert done_at == [500, 1000] and trunc[0]
    env.close()
    env = make("ml1_reach", num_envs=1, horizon=501)
    env.reset()
    for _ in range(500):
        env.step(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="at most 500 steps"):
        env.step(np.zeros((1, 4), np.float32))
    env.close()


def _rollout(seed: int, steps: int = 25, **kwargs) -> np.ndarray:
    env = make("ml1_push", seed=seed, horizon=5, **kwargs)
    _obs, info = env.reset()
    actions = np.random.default_rng(5).uniform(-1, 1, (steps, 2, 4)).astype(np.float32)
    out = [info["task"].ravel()]
    for a in actions:
        obs, reward, _, _, info = env.step(a)
        out += [obs.ravel(), reward, info["success"].astype(np.float32), info["task"].ravel()]
    env.close()
    return np.concatenate(out)


def test_same_seed_same_trajectory_different_seed_different():
    np.testing.assert_array_equal(_rollout(3), _rollout(3))
    assert not np.array_equal(_rollout(3), _rollout(4))
    # Meta-World's reset and physics are deterministic given the task: the copy seed (env.np_random) does not
    # change a trajectory, so the env stream's randomness is the task sequence drawn from make_meta_env's seed
    a, b = MetaWorldML1Copy("push-v3", 0, seed=1), MetaWorldML1Copy("push-v3", 0, seed=2)
    task = reference_vectors(reference_ml1("push-v3").test_tasks)[5]
    a.set_task(task)
    b.set_task(task)
    actions = np.random.default_rng(1).uniform(-1, 1, (30, 4)).astype(np.float32)
    for _ in range(2):  # and a second reset of the same copy starts the same way
        np.testing.assert_array_equal(a.reset(), b.reset())
        for x in actions:
            (oa, ra, _, sa), (ob, rb, _, sb) = a.step(x), b.step(x)
            np.testing.assert_array_equal(oa, ob)
            assert (ra, sa) == (rb, sb)


def _continue(env, actions):
    out = []
    for a in actions:
        obs, reward, _, _, info = env.step(a)
        out.append(np.concatenate([obs.ravel(), reward, info["success"], info["task"].ravel(),
                                   info["episode_done"]]))
    return np.stack(out)


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_into_a_fresh_env_continues_the_same_stream(name):
    # long enough for contacts (fingers, table, object): a restore that loses MuJoCo's solver warm start then
    # drifts by ~1e-14 within a few steps, which this exact comparison catches
    actions = np.random.default_rng(2).uniform(-1, 1, (80, 2, 4)).astype(np.float32)
    env = make(name, horizon=30)
    env.reset()
    for a in actions[:41]:  # mid-episode, after a boundary
        env.step(a)
    state = env.get_state()
    first = _continue(env, actions[41:])
    other = make(name, seed=9, horizon=30)  # another task, another physical state
    other.reset()
    for a in actions[:4]:
        other.step(a)
    other.set_state(state)
    np.testing.assert_array_equal(_continue(other, actions[41:]), first)
    env.set_state(state)  # and back into the same env
    np.testing.assert_array_equal(_continue(env, actions[41:]), first)
    env.close()
    other.close()


def test_worker_processes_match_local_stepping_and_resume_across_them():
    actions = np.random.default_rng(3).uniform(-1, 1, (24, 4, 4)).astype(np.float32)
    local = make("ml1_push", num_envs=4, horizon=6)
    workers = make("ml1_push", num_envs=4, horizon=6, num_workers=2)
    try:
        np.testing.assert_array_equal(local.reset()[0], workers.reset()[0])
        np.testing.assert_array_equal(_continue(local, actions[:10]), _continue(workers, actions[:10]))
        state = workers.get_state()  # from the worker processes ...
        expected = _continue(workers, actions[10:])
        local.set_state(state)  # ... into copies stepped in this process
        np.testing.assert_array_equal(_continue(local, actions[10:]), expected)
    finally:
        local.close()
        workers.close()


@pytest.mark.filterwarnings("ignore:.*maximum and minimum values are equal")  # the zeroed goal dims
def test_gymnasium_ids():
    env = gym.make("metarl/ML1Push-v0", horizon=5, num_workers=0)
    obs, info = env.reset(seed=1)
    assert obs.shape == (40,) and env.action_space.shape == (4,) and info["task"].shape == (6,)
    for _ in range(10):
        obs, _reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert truncated and not terminated  # one gymnasium episode = K = 2 MDP episodes
    env.close()
    assert {"metarl/ML1Reach-v0", "metarl/ML1PickPlace-v0"} <= set(gym.registry)


def test_import_envs_does_not_need_metaworld():
    code = ("import sys; sys.modules['metaworld'] = None; import envs; "
            "assert 'ml1_push' in envs.REGISTRY and 'metaworld' not in [m for m in sys.modules if sys.modules[m]]")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
