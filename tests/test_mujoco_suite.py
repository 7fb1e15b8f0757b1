"""The MuJoCo suite against design.md §2: rewards recomputed from the simulator state, termination rules, task
sampling, walker physics parameters, BAMDP episodes, seeding and exact resume."""

from __future__ import annotations

import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("mujoco")  # a guard only: CI installs mujoco (the dev extra), so these tests run there

import envs
from envs.registry import get_spec

NAMES = ["cheetah_dir", "cheetah_vel", "ant_dir", "ant_goal", "humanoid_dir", "walker_params"]
#: gymnasium v5 frame skips (dt = timestep * frame_skip), written out here so a wrong dt in the env shows up
FRAME_SKIP = {"cheetah_dir": 5, "cheetah_vel": 5, "ant_dir": 5, "ant_goal": 5, "humanoid_dir": 5, "walker_params": 4}
OBS_DIM = {"cheetah_dir": 17, "cheetah_vel": 17, "ant_dir": 27, "ant_goal": 107, "humanoid_dir": 348,
           "walker_params": 17}
ACT_DIM = {"cheetah_dir": 6, "cheetah_vel": 6, "ant_dir": 8, "ant_goal": 8, "humanoid_dir": 17, "walker_params": 6}
TERMINATING = {"ant_dir", "humanoid_dir", "walker_params"}


def make_local(name, seed=0, task=None, **kwargs):
    """One copy stepped in this process, with a task set and the state reset; returns (batched env, copy)."""
    inner = get_spec(name).factory(1, np.random.default_rng(seed), num_workers=0, **kwargs)
    if task is None:
        task = inner.sample_tasks(1, np.random.default_rng(seed + 100))[0]
    inner.set_tasks(np.asarray(task, dtype=np.float32)[None])
    inner.reset_state(np.arange(1))
    return inner, inner._local.copies[0]


def snapshot(copy):
    m, d = copy.model, copy.data
    mass = np.asarray(m.body_mass)
    return {"qpos": d.qpos.copy(), "torso_xy": d.xpos[m.body("torso").id, :2].copy(),
            "com_xy": (mass @ d.xipos / mass.sum())[:2], "cfrc_ext": d.cfrc_ext.copy(), "ctrl": d.ctrl.copy()}


def expected_reward(name, task, before, after, action, timestep):
    """design.md §2's reward, from the simulator state before and after the step."""
    dt = timestep * FRAME_SKIP[name]
    a2 = float(np.sum(action**2))
    if name in ("cheetah_dir", "cheetah_vel", "walker_params"):
        vx = (after["qpos"][0] - before["qpos"][0]) / dt
        if name == "cheetah_dir":
            return task[0] * vx - 0.05 * a2
        if name == "cheetah_vel":
            return -abs(vx - task[0]) - 0.05 * a2
        return vx + 1.0 - 1e-3 * a2
    contact = 5e-4 * float(np.sum(np.clip(after["cfrc_ext"], -1, 1) ** 2))
    if name == "ant_dir":
        v_xy = (after["torso_xy"] - before["torso_xy"]) / dt
        return v_xy @ np.array([np.cos(task[0]), np.sin(task[0])]) - 0.5 * a2 - contact + 1.0
    if name == "ant_goal":
        return -np.abs(after["torso_xy"] - task).sum() - 0.1 * a2 - contact
    assert name == "humanoid_dir"
    ctrl = 0.4 * action  # actions scaled to +-0.4
    forward = 0.25 * (task @ (after["com_xy"] - before["com_xy"])) / timestep
    impact = min(5e-7 * float(np.sum(after["cfrc_ext"] ** 2)), 10.0)
    return forward - 0.1 * float(np.sum(ctrl**2)) - impact + 5.0


def expected_termination(name, qpos, qvel):
    if name == "ant_dir":
        return not (np.isfinite(qpos).all() and np.isfinite(qvel).all() and 0.2 <= qpos[2] <= 1.0)
    if name == "humanoid_dir":
        return bool(qpos[2] < 1.0 or qpos[2] > 2.0)
    if name == "walker_params":
        return not (0.8 < qpos[1] < 2.0 and abs(qpos[2]) < 1.0)
    return False


# ---------------------------------------------------------------------------------------------- (1) rewards
@pytest.mark.parametrize("name", NAMES)
def test_reward_recomputed_from_the_simulator_state(name):
    inner, copy = make_local(name, seed=1)
    assert inner.single_observation_space.shape == (OBS_DIM[name],)
    assert inner.single_action_space.shape == (ACT_DIM[name],)
    np.testing.assert_array_equal(inner.single_action_space.low, -1.0)
    rng = np.random.default_rng(2)
    task = inner.tasks[0].astype(np.float64)
    contact_seen = 0.0
    for _ in range(40):
        action = rng.uniform(-1.2, 1.2, size=ACT_DIM[name])  # some entries outside the box: costed as given
        before = snapshot(copy)
        obs, reward, terminated, info = inner.step(action[None])
        after = snapshot(copy)
        expected = expected_reward(name, task, before, after, action, copy.model.opt.timestep)
        assert reward[0] == pytest.approx(expected, rel=1e-9, abs=1e-9)
        assert obs.shape == (1, OBS_DIM[name]) and not info["success"][0]
        if name == "humanoid_dir":
            np.testing.assert_allclose(after["ctrl"], 0.4 * action)
        contact_seen += float(np.abs(after["cfrc_ext"]).sum())
        if terminated[0]:
            inner.reset_state(np.arange(1))
    if name in ("ant_dir", "ant_goal", "humanoid_dir"):
        assert contact_seen > 0  # the contact terms were exercised


def test_cheetah_dir_reward_changes_sign_with_the_direction():
    rewards = {}
    for direction in (-1.0, 1.0):
        inner, _ = make_local("cheetah_dir", seed=3, task=[direction])
        acts = np.random.default_rng(4).uniform(-1, 1, size=(30, 1, 6))
        rewards[direction] = np.array([inner.step(a)[1][0] for a in acts])
    ctrl = 0.05 * np.sum(np.random.default_rng(4).uniform(-1, 1, size=(30, 1, 6)) ** 2, axis=(1, 2))
    np.testing.assert_allclose(rewards[1.0] + ctrl, -(rewards[-1.0] + ctrl), atol=1e-9)  # same physics, opposite v


@pytest.mark.parametrize("name", ["cheetah_dir", "cheetah_vel"])
def test_oysters_cheetah_observation_appends_the_torso_position(name):
    """oyster's rlkit/envs/half_cheetah.py: qpos[1:], qvel, get_body_com("torso") (20-d); same physics."""
    plain, _ = make_local(name, seed=5, task=[1.0])
    oyster, oyster_copy = make_local(name, seed=5, task=[1.0], torso_com_in_obs=True)
    assert plain.single_observation_space.shape == (17,) and oyster.single_observation_space.shape == (20,)
    for action in np.random.default_rng(1).uniform(-1, 1, size=(5, 1, 6)):
        obs, reward, _, _ = plain.step(action)
        obs20, reward20, _, _ = oyster.step(action)
        np.testing.assert_array_equal(obs20[:, :17], obs)
        np.testing.assert_array_equal(reward20, reward)
        torso = oyster_copy.data.body("torso").xpos
        np.testing.assert_allclose(obs20[0, 17:], torso, rtol=1e-6)
    assert not np.allclose(obs20[0, 17:], make_local(name, seed=5, task=[1.0], torso_com_in_obs=True)[0]
                           .reset_state(np.arange(1))[0, 17:])  # the torso moved: a live reading, not a constant


# ---------------------------------------------------------------------------------------------- (2) termination
ROOT_Z = {"cheetah_dir": 1, "cheetah_vel": 1, "ant_dir": 2, "ant_goal": 2, "humanoid_dir": 2, "walker_params": 1}


@pytest.mark.parametrize("name", NAMES)
def test_termination_rule(name):
    inner, copy = make_local(name, seed=5)
    nu = ACT_DIM[name]
    rng = np.random.default_rng(6)
    seen = set()
    for _ in range(120):  # random actions: the humanoid and the walker fall over within this many steps
        _, _, terminated, _ = inner.step(rng.uniform(-1, 1, size=(1, nu)))
        assert terminated[0] == expected_termination(name, copy.data.qpos, copy.data.qvel)
        seen.add(bool(terminated[0]))
        if terminated[0]:
            inner.reset_state(np.arange(1))
    assert False in seen
    assert (True in seen) == (name in TERMINATING)  # with this seed even the ant leaves 0.2 <= z <= 1 once
    # lifted high above the floor: the robots that terminate must, the others must not
    inner.reset_state(np.arange(1))
    qpos = copy.data.qpos.copy()
    qpos[ROOT_Z[name]] = 3.0
    copy.env.set_state(qpos, np.zeros(copy.model.nv))
    _, _, terminated, _ = inner.step(np.zeros((1, nu)))
    assert terminated[0] == (name in TERMINATING) == expected_termination(name, copy.data.qpos, copy.data.qvel)
    if name == "walker_params":  # upright height, tilted beyond 1 rad
        inner.reset_state(np.arange(1))
        qpos = copy.data.qpos.copy()
        qpos[2] = 1.3
        copy.env.set_state(qpos, np.zeros(copy.model.nv))
        assert inner.step(np.zeros((1, nu)))[2][0]


# ---------------------------------------------------------------------------------------------- (3) tasks
def test_task_distributions():
    rng = np.random.default_rng(0)
    n = 4000

    def sample(name, **kwargs):
        inner, _ = make_local(name, **kwargs)
        tasks = inner.sample_tasks(n, rng)
        assert tasks.shape == (n, inner.task_dim) and tasks.dtype == np.float32
        assert inner.train_tasks() is None and inner.held_out_tasks() is None
        return tasks

    assert set(np.unique(sample("cheetah_dir"))) == {-1.0, 1.0}
    vel = sample("cheetah_vel")[:, 0]
    assert vel.min() >= 0 and vel.max() <= 3 and vel.min() < 0.01 and vel.max() > 2.99
    assert abs(vel.mean() - 1.5) < 0.05
    np.testing.assert_allclose(np.unique(sample("ant_dir")), [0.0, np.pi], rtol=1e-6)
    np.testing.assert_allclose(np.unique(sample("ant_dir", directions="legacy_radians")), [-1.0, 1.0])
    with pytest.raises(ValueError, match="directions"):
        make_local("ant_dir", directions="left_right")
    goals = sample("ant_goal").astype(np.float64)
    radius = np.linalg.norm(goals, axis=1)
    assert radius.max() <= 3.0 + 1e-5 and radius.max() > 2.98
    assert abs(np.mean(radius < 1.5) - 0.25) < 0.03  # uniform on the disc: P(r < R/2) = 1/4
    assert abs(np.mean(goals[:, 0] > 0) - 0.5) < 0.03 and abs(np.mean(goals[:, 1] > 0) - 0.5) < 0.03
    dirs = sample("humanoid_dir").astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0, atol=1e-6)
    angles = np.mod(np.arctan2(dirs[:, 1], dirs[:, 0]), 2 * np.pi)
    assert np.histogram(angles, bins=8, range=(0, 2 * np.pi))[0].min() > n / 8 * 0.85
    walker = sample("walker_params")
    assert walker.shape[1] == 65 and walker.min() >= -3 and walker.max() <= 3 and walker.std() > 1.6
    # tasks come only from the rng passed in
    inner, _ = make_local("ant_goal")
    np.testing.assert_array_equal(inner.sample_tasks(5, np.random.default_rng(9)),
                                  inner.sample_tasks(5, np.random.default_rng(9)))


def test_walker_pearl_task_sets():
    inner, _ = make_local("walker_params", task_set="pearl")
    train, test = inner.train_tasks(), inner.held_out_tasks()
    assert train.shape == (40, 65) and test.shape == (10, 65)
    assert not {tuple(t) for t in train} & {tuple(t) for t in test}
    other, _ = make_local("walker_params", seed=7, task_set="pearl")  # fixed sets, whatever the run seed
    np.testing.assert_array_equal(other.train_tasks(), train)
    sampled = inner.sample_tasks(200, np.random.default_rng(0))
    assert {tuple(t) for t in sampled} <= {tuple(t) for t in train}
    env = envs.make_meta_env("walker_params", num_envs=2, seed=0, num_workers=0, task_set="pearl", split="test")
    np.testing.assert_array_equal(env.task_pool, test)
    env.close()
    with pytest.raises(ValueError, match="task_set"):
        make_local("walker_params", task_set="fixed")


def test_walker_params_scale_the_original_arrays_without_compounding():
    original = gym.make("Walker2d-v5").unwrapped.model
    inner, copy = make_local("walker_params")
    layout = [("body_mass", 1.5, 8), ("body_inertia", 1.5, 24), ("dof_damping", 1.3, 9), ("geom_friction", 1.5, 24)]
    rng = np.random.default_rng(0)
    for _ in range(3):  # each task scales the ORIGINAL values: setting another one does not compound
        task = inner.sample_tasks(1, rng)
        inner.set_tasks(task)
        start = 0
        for name, base, size in layout:
            exps = task[0, start:start + size].astype(np.float64).reshape(getattr(original, name).shape)
            np.testing.assert_allclose(getattr(copy.model, name), getattr(original, name) * base**exps, rtol=1e-6)
            start += size
        assert start == inner.task_dim == 65
        # mj_setConst: derived constants follow the new masses
        assert copy.model.body_subtreemass[0] == pytest.approx(copy.model.body_mass.sum())
    inner.set_tasks(np.zeros((1, 65), np.float32))
    for name, _, _ in layout:
        np.testing.assert_array_equal(getattr(copy.model, name), getattr(original, name))
    np.testing.assert_array_equal(copy.model.body_subtreemass, original.body_subtreemass)
    np.testing.assert_array_equal(copy.model.dof_invweight0, original.dof_invweight0)

    def rollout(task):  # same seed and actions, different parameters: different motion
        env, _ = make_local("walker_params", seed=2, task=task)
        return np.concatenate([env.step(np.full((1, 6), 0.5))[0] for _ in range(20)])

    assert not np.allclose(rollout(np.zeros(65)), rollout(np.full(65, 2.0)))


# ---------------------------------------------------------------------------------------------- (4) BAMDP episodes
def test_registry_entries():
    for name in NAMES:
        spec = get_spec(name)
        assert (spec.horizon, spec.episodes_per_task, spec.episodes_eval) == (200, 2, 5)
        assert spec.action_type == "continuous" and spec.default_kwargs["num_workers"] == 2
        assert name in envs.gymnasium_api.GYMNASIUM_IDS


@pytest.mark.parametrize("name", NAMES)
def test_bamdp_boundaries_every_h_steps_and_k_episodes_per_task(name):
    horizon, k, n = 6, 2, 2
    env = envs.make_meta_env(name, num_envs=n, seed=0, num_workers=0, horizon=horizon)
    assert env.episodes_per_task == k
    obs, info = env.reset()
    assert obs.shape == (n, OBS_DIM[name] + 1) and (obs[:, -1] == 0).all()
    task = info["task"].copy()
    step, episode, tasks_done = np.zeros(n, int), np.zeros(n, int), 0
    for _ in range(3 * k * horizon):
        obs, _, terminated, truncated, info = env.step(np.zeros((n, ACT_DIM[name])))
        step += 1
        done = (step == horizon) | info["mdp_terminated"]
        np.testing.assert_array_equal(info["episode_done"], done)
        np.testing.assert_array_equal(info["task"], task)  # the same task across the K episodes
        np.testing.assert_array_equal(info["episode_index"], episode)
        np.testing.assert_array_equal(info["final_obs"][:, -1], done.astype(np.float32))
        assert not info["success"].any() and not terminated.any()
        task_done = done & (episode + 1 == k)
        np.testing.assert_array_equal(truncated, task_done)
        step[done], episode[done] = 0, episode[done] + 1
        episode[task_done] = 0
        task[task_done] = env.tasks[task_done]
        tasks_done += int(task_done.sum())
        assert (obs[done, -1] == 0).all()
    assert tasks_done >= n * 2
    env.close()


def _worker_rollout(num_workers):
    env = envs.make_meta_env("walker_params", num_envs=3, seed=4, num_workers=num_workers, horizon=8)
    out = [env.reset()[0]]
    for a in np.random.default_rng(1).uniform(-1, 1, size=(20, 3, 6)):
        obs, reward, _, _, info = env.step(a)
        out += [obs, reward, info["task"], info["episode_done"]]
    state = env.get_state()
    env.close()
    return out, state


def test_worker_processes_step_like_the_local_copies():
    (local, local_state), (workers, worker_state) = _worker_rollout(0), _worker_rollout(2)
    for a, b in zip(local, workers, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(local_state["inner"]["copies"], worker_state["inner"]["copies"], strict=True):
        np.testing.assert_array_equal(a["physics"], b["physics"])


# ---------------------------------------------------------------------------------------------- (5) seeding
@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_trajectory(name):
    def run(seed):
        env = envs.make_meta_env(name, num_envs=2, seed=seed, num_workers=0, horizon=10)
        obs, info = env.reset()
        out = [obs, info["task"]]
        for a in np.random.default_rng(5).uniform(-1, 1, size=(25, 2, ACT_DIM[name])):
            obs, reward, _, _, info = env.step(a)
            out += [obs, reward, info["task"]]
        env.close()
        return np.concatenate([x.ravel() for x in out])

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


# ---------------------------------------------------------------------------------------------- (6) resume
@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_continues_the_same_stream(name):
    env = envs.make_meta_env(name, num_envs=2, seed=1, num_workers=0, horizon=10)
    env.reset()
    actions = np.random.default_rng(2).uniform(-1, 1, size=(33, 2, ACT_DIM[name]))
    for a in actions[:13]:
        env.step(a)
    state = pickle.loads(pickle.dumps(env.get_state()))  # as a checkpoint stores it
    first = [env.step(a)[:2] for a in actions[13:]]
    for a in np.random.default_rng(3).uniform(-1, 1, size=(7, 2, ACT_DIM[name])):
        env.step(a)  # wander off (physics, RNGs, tasks) before restoring
    env.set_state(state)
    second = [env.step(a)[:2] for a in actions[13:]]
    env.close()
    for (o1, r1), (o2, r2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)


# ---------------------------------------------------------------------------------------------- API and packaging
def test_gymnasium_entry_point():
    env = gym.make("metarl/HalfCheetahDir-v0", num_workers=0)
    obs, info = env.reset(seed=0)
    assert obs.shape == (18,) and info["task"][0] in (-1.0, 1.0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert np.isfinite(reward) and not terminated and not truncated
    env.close()


def test_import_envs_does_not_need_mujoco():
    code = ("import sys; sys.modules['mujoco'] = None; import envs; "
            "assert 'cheetah_dir' in envs.REGISTRY and 'gymnasium.envs.mujoco.mujoco_env' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
