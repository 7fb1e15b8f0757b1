"""Posterior-sampling agents: the exact GridWorld agent's behaviour, and learned posterior sampling holding one
latent sample per episode (resampled only at episode boundaries)."""

import numpy as np
import pytest
import torch

import envs
from algorithms.builder import compose_config
from algorithms.common.agent import EnvInfo
from algorithms.common.evaluator import meta_test
from algorithms.posterior_sampling import ExactPosteriorSamplingAgent
from algorithms.registry import IncompatibleError, build_agent, check_compatible, get_algo
from envs import EnvSpec, GridWorld

RIGHT, UP, NOOP = 2, 1, 0


def test_exact_agent_walks_x_first_then_stays_and_updates_belief():
    agent = ExactPosteriorSamplingAgent(seed=0)
    belief = agent.initial_belief(1)
    target = (3, 2)
    belief.target[:] = agent.cell_to_candidate[target]
    obs = np.zeros((1, 3), np.float32)
    env = GridWorld(1, np.random.default_rng(0))
    env.set_tasks(np.array([[4.0, 4.0]], np.float32))
    env.reset_state(np.arange(1))
    actions = []
    for _ in range(7):
        a = agent.act(obs, belief, True)
        actions.append(int(a[0]))
        nxt, r, _, _ = env.step(a)
        nxt = np.concatenate([nxt, np.zeros((1, 1), np.float32)], 1)
        belief = agent.update_belief(belief, obs, a, r, nxt, np.array([False]), np.array([False]))
        obs = nxt
    assert actions == [RIGHT, RIGHT, RIGHT, UP, UP, NOOP, NOOP]  # x first, then y, then stay
    visited = [(1, 0), (2, 0), (3, 0), (3, 1), (3, 2)]
    for cell in visited:
        idx = agent.cell_to_candidate[cell]
        assert idx < 0 or not belief.unvisited[0, idx]
    assert belief.unvisited[0].sum() == 21 - 4  # (2,0), (3,0), (3,1), (3,2) ruled out; (1,0) is no candidate
    # an episode boundary resamples the target among the remaining candidates only
    for _ in range(50):
        agent.update_belief(belief, obs, np.array([0]), np.array([-0.1], np.float32), obs, np.array([True]),
                            np.array([False]))
        assert belief.unvisited[0, belief.target[0]]


def test_exact_agent_goes_straight_to_a_found_goal():
    agent = ExactPosteriorSamplingAgent(seed=1)
    tasks = np.array([[2.0, 3.0]] * 8, np.float32)
    rows = meta_test(agent, "gridworld", tasks, episodes=4, seed=0)
    per_task = rows.pivot(index="task_id", columns="episode", values="return")
    found_first = rows[(rows["episode"] == 1) & rows["success"]]["task_id"]
    # once found, every later episode is the known-goal optimum: distance 5, so 4 steps at -0.1, then 11 at +1
    optimum = -0.1 * 4 + 1.0 * (15 - 4)
    for task in found_first:
        assert np.allclose(per_task.loc[task, [2, 3, 4]], optimum, atol=1e-5)


def test_exact_agent_is_gridworld_only():
    spec = get_algo("posterior_sampling_exact")
    check_compatible(spec, envs.get_spec("gridworld"))
    with pytest.raises(IncompatibleError, match="only defined for env\\(s\\) gridworld, not 'other'"):
        check_compatible(spec, EnvSpec("other", GridWorld, 15, 4, 6, "discrete"))


def learned_ps_agent():
    cfg = compose_config("algo=posterior_sampling", "algo.num_envs=4", "algo.precollect_frames=0")
    env = envs.make_meta_env("gridworld", num_envs=4, seed=0)
    torch.manual_seed(0)
    return build_agent("posterior_sampling", cfg.algo, EnvInfo.from_env(env), 0, "cpu"), env


def test_learned_ps_holds_one_latent_per_episode_at_meta_test():
    agent, _ = learned_ps_agent()
    assert agent.hold_sample and agent.name == "posterior_sampling"
    belief = agent.initial_belief(2)
    first = belief.sample.clone()
    obs = np.zeros((2, 3), np.float32)
    for _ in range(14):  # within an episode: the hidden state moves, the sample does not
        belief = agent.update_belief(belief, obs, np.array([1, 2]), np.array([-0.1, -0.1], np.float32),
                                     np.array([[0, 1, 0], [1, 0, 0]], np.float32), np.array([False, False]),
                                     np.array([False, False]))
        assert torch.equal(belief.sample, first)
    assert belief.hidden.abs().sum() > 0
    belief = agent.update_belief(belief, obs, np.array([1, 2]), np.array([-0.1, -0.1], np.float32),
                                 np.array([[0, 1, 1], [1, 0, 0]], np.float32), np.array([True, False]),
                                 np.array([False, False]))
    assert not torch.equal(belief.sample[0], first[0])  # boundary: resampled from the current posterior
    assert torch.equal(belief.sample[1], first[1])


def test_learned_ps_holds_samples_during_training_rollouts():
    agent, env = learned_ps_agent()
    agent._collect(env)
    beliefs = agent.storage.policy_belief  # (60, 4, latent): normalised, fixed stats within the rollout
    for start in range(0, 60, 15):  # episodes of 15 steps
        episode = beliefs[start:start + 15]
        assert torch.equal(episode, episode[:1].expand_as(episode))
    assert not torch.equal(beliefs[0], beliefs[15])


def test_ps_config_is_enforced():
    cfg = compose_config("algo=posterior_sampling", "algo.belief_sample_hold=step")
    env = envs.make_meta_env("gridworld", num_envs=16, seed=0)
    with pytest.raises(ValueError, match="requires"):
        build_agent("posterior_sampling", cfg.algo, EnvInfo.from_env(env), 0, "cpu")
