"""PEARL: the inference network's maths, the SAC targets, which losses reach the encoder, Algorithm 1's sampling
scheme (context from recent data only), meta-test posterior sampling (Algorithm 2), exact resume, and whole runs."""

from __future__ import annotations

import copy
import io
import json
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf.errors import ConfigKeyError
from torch import nn
from torch.nn import functional as F

import algorithms.pearl.agent as pearl_agent
import envs
import train
from algorithms.common.agent import EnvInfo, IterationInterrupted
from algorithms.common.checkpoints import load_checkpoint
from algorithms.common.evaluator import meta_test
from algorithms.pearl import PEARLAgent, PEARLConfig, load_config
from algorithms.pearl.buffers import TaskBuffer
from algorithms.pearl.learning import SACLearner
from algorithms.pearl.networks import (
    ContextEncoder,
    TanhGaussianPolicy,
    kl_to_standard_normal,
    product_of_gaussians,
)
from algorithms.registry import IncompatibleError, check_compatible, get_algo
from envs import REGISTRY, get_spec
from tests.helpers import compose_config

ROOT = Path(__file__).resolve().parents[1]
TINY = {"num_envs": 2, "num_train_tasks": 3, "num_initial_steps": 40, "num_tasks_sample": 2, "num_steps_prior": 20,
        "num_steps_posterior": 20, "num_extra_rl_steps_posterior": 40, "encoder_layers": [16, 16],
        "net_layers": [16, 16], "embedding_batch_size": 8, "meta_batch": 3, "batch_size": 8,
        "num_train_steps_per_itr": 3, "latent_dim": 3}


def make_agent(seed=0, env_seed=0, horizon=20, episodes=3, **overrides):
    """A small PEARL on PointRobot (H = 20, K = 3) with its own 3 training goals."""
    cfg = PEARLConfig(**{**TINY, **overrides})
    env = envs.make_meta_env("pointrobot_sparse", num_envs=cfg.num_envs, seed=env_seed, horizon=horizon,
                             episodes_per_task=episodes)
    return PEARLAgent(cfg, EnvInfo.from_env(env), seed=seed), env


# ---------------------------------------------------------------------------- inference network maths
def test_product_of_gaussians_matches_closed_form_and_is_permutation_invariant():
    # two unit factors at 0 and 2: N(1, 1/2)
    mu, var = product_of_gaussians(torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [1.0]]), dim=0)
    torch.testing.assert_close(mu, torch.tensor([1.0]))
    torch.testing.assert_close(var, torch.tensor([0.5]))
    gen = torch.Generator().manual_seed(0)
    mus = torch.randn(4, 7, 3, generator=gen, dtype=torch.float64)
    vars_ = torch.rand(4, 7, 3, generator=gen, dtype=torch.float64) + 0.1
    mu, var = product_of_gaussians(mus, vars_)
    m, v = mus.numpy(), vars_.numpy()
    expected_var = 1.0 / (1.0 / v).sum(axis=1)
    np.testing.assert_allclose(var.numpy(), expected_var, rtol=1e-12)
    np.testing.assert_allclose(mu.numpy(), expected_var * (m / v).sum(axis=1), rtol=1e-12)
    perm = torch.randperm(7, generator=gen)
    mu_p, var_p = product_of_gaussians(mus[:, perm], vars_[:, perm])
    torch.testing.assert_close(mu_p, mu)
    torch.testing.assert_close(var_p, var)
    # the encoder's posterior over a shuffled context is the same distribution
    torch.manual_seed(0)
    encoder = ContextEncoder(6, 3, [16, 16])
    context = torch.randn(2, 9, 6, generator=gen)
    a, b = encoder.posterior(context), encoder.posterior(context[:, torch.randperm(9, generator=gen)])
    torch.testing.assert_close(a[0], b[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a[1], b[1], rtol=1e-5, atol=1e-6)
    # more context, a narrower posterior
    assert (encoder.posterior(context[:, :3])[1] > a[1]).all()


def test_kl_to_standard_normal_matches_closed_form():
    mu = torch.tensor([[0.0, 1.0, -2.0], [0.5, 0.0, 3.0]], dtype=torch.float64)
    var = torch.tensor([[1.0, 0.25, 2.0], [0.1, 1.0, 4.0]], dtype=torch.float64)
    expected = 0.5 * (var + mu**2 - 1.0 - torch.log(var)).sum(-1)
    torch.testing.assert_close(kl_to_standard_normal(mu, var), expected)
    assert kl_to_standard_normal(torch.zeros(1, 5), torch.ones(1, 5)).item() == 0.0


def test_tanh_gaussian_log_prob_has_the_change_of_variables():
    gen = torch.Generator().manual_seed(1)
    mean = torch.randn(50, 2, dtype=torch.float64, generator=gen)
    log_std = torch.randn(50, 2, dtype=torch.float64, generator=gen) * 0.3
    action, log_prob = TanhGaussianPolicy.sample(mean, log_std, torch.Generator().manual_seed(2))
    u = torch.atanh(action)
    expected = (torch.distributions.Normal(mean, log_std.exp()).log_prob(u)
                - torch.log(1.0 - torch.tanh(u) ** 2)).sum(-1)
    torch.testing.assert_close(log_prob, expected, rtol=1e-6, atol=1e-6)
    assert action.abs().max() < 1.0
    torch.testing.assert_close(TanhGaussianPolicy.mode(mean), torch.tanh(mean))


# ---------------------------------------------------------------------------- SAC targets by hand
class StubQ(nn.Module):
    """Q(s, a, z) = w * (sum s + sum a) + sum z."""

    def __init__(self, w: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, obs, action, z):
        return self.w * (obs.sum(-1) + action.sum(-1)) + z.sum(-1)


class StubV(nn.Module):
    """V(s, z) = 2 sum s - z_0."""

    def __init__(self) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.tensor(0.0))

    def forward(self, obs, z):
        return 2.0 * obs.sum(-1) - z[:, 0] + self.b


def test_sac_targets_and_losses_on_a_hand_made_batch():
    agent, _ = make_agent(reward_scale=5.0, gamma=0.9, kl_lambda=0.5)
    learner = agent.learner
    learner.qf1, learner.qf2, learner.vf, learner.target_vf = StubQ(1.0), StubQ(-0.5), StubV(), StubV()
    # 2 tasks x 2 transitions of (s (2), a (2), r, r_context, s' (2), terminal)
    rows = torch.tensor([[[0.1, 0.2, 0.5, -0.5, -1.0, 0.0, 0.3, 0.1, 0.0],
                          [1.0, 0.0, 0.0, 0.2, 0.5, 0.0, 1.1, 0.0, 1.0]],
                         [[0.0, -1.0, 1.0, 1.0, 2.0, 1.0, 0.1, -0.9, 0.0],
                          [0.5, 0.5, -1.0, 0.0, 0.0, 0.0, 0.4, 0.5, 0.0]]])
    z = torch.tensor([[0.5, 1.0, -1.0], [2.0, 0.0, 0.0]])
    mu = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, -1.0]])
    var = torch.tensor([[1.0, 0.5, 2.0], [0.25, 1.0, 1.0]])
    b = agent.learner.flat_batch(rows, z)
    out = agent.learner.critic_loss(mu, var, b)
    # by hand: target V(s', z) = 2 (s'_0 + s'_1) - z_0; Q target = 5 r + (1 - d) 0.9 V'
    v_next = [2 * 0.4 - 0.5, 2 * 1.1 - 0.5, 2 * -0.8 - 2.0, 2 * 0.9 - 2.0]
    r, d = [-1.0, 0.5, 2.0, 0.0], [0.0, 1.0, 0.0, 0.0]
    q_target = np.array([5 * r[i] + (1 - d[i]) * 0.9 * v_next[i] for i in range(4)])
    np.testing.assert_allclose(out["q_target"].numpy(), q_target, rtol=1e-6)
    sa = np.array([0.1 + 0.2 + 0.5 - 0.5, 1.0 + 0.0 + 0.0 + 0.2, 0.0 - 1.0 + 1.0 + 1.0, 0.5 + 0.5 - 1.0 + 0.0])
    zsum = np.array([0.5, 0.5, 2.0, 2.0])
    q1, q2 = 1.0 * sa + zsum, -0.5 * sa + zsum
    kl = sum(0.5 * (v + m**2 - 1 - np.log(v)) for m, v in zip(mu.flatten().tolist(), var.flatten().tolist(),
                                                                 strict=True))
    np.testing.assert_allclose(out["kl"].item(), kl, rtol=1e-6)
    qf_loss = np.mean((q1 - q_target) ** 2) + np.mean((q2 - q_target) ** 2)
    np.testing.assert_allclose(out["qf_loss"].item(), qf_loss, rtol=1e-6)
    np.testing.assert_allclose(out["loss"].item(), qf_loss + 0.5 * kl, rtol=1e-6)
    # V target = min(Q1, Q2)(s, a ~ pi, z) - log pi; policy loss = mean(log pi - min Q) + L2 penalties
    a_new = torch.tensor([[0.5, 0.5], [-1.0, 0.0], [0.0, 0.2], [0.3, -0.3]])
    log_pi = torch.tensor([-1.0, 0.5, 0.0, 2.0])
    pi = {"action": a_new, "log_pi": log_pi, "mean": torch.full((4, 2), 2.0), "log_std": torch.full((4, 2), -1.0)}
    losses = agent.learner.actor_value_losses(b, pi)
    s_new = np.array([0.3 + 1.0, 1.0 - 1.0, -1.0 + 0.2, 1.0 + 0.0])
    min_q = np.minimum(1.0 * s_new + zsum, -0.5 * s_new + zsum)
    v_target = min_q - log_pi.numpy()
    np.testing.assert_allclose(losses["v_target"].numpy(), v_target, rtol=1e-6)
    v_pred = np.array([2 * 0.3 - 0.5, 2 * 1.0 - 0.5, 2 * -1.0 - 2.0, 2 * 1.0 - 2.0])
    np.testing.assert_allclose(losses["vf_loss"].item(), np.mean((v_pred - v_target) ** 2), rtol=1e-6)
    policy_loss = np.mean(log_pi.numpy() - min_q) + 1e-3 * 4.0 + 1e-3 * 1.0
    np.testing.assert_allclose(losses["policy_loss"].item(), policy_loss, rtol=1e-6)


def test_target_v_is_polyak_averaged():
    agent, env = make_agent(tau=0.25)
    agent.train_iteration(env)  # fills the buffers
    target_before = [p.detach().clone() for p in agent.learner.target_vf.parameters()]
    agent.learner.gradient_step(*agent.sample_batches(np.array([0, 1, 2])))
    learner = agent.learner
    for old, new, v in zip(target_before, learner.target_vf.parameters(), learner.vf.parameters(), strict=True):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * v.detach())


# ---------------------------------------------------------------------------- which losses train the encoder
def _encoder_grads(agent):
    return [p.grad for p in agent.encoder.parameters()]


def _zero_all(agent):
    for net in agent.networks.values():
        net.zero_grad(set_to_none=True)


def test_critic_gradient_reaches_the_encoder_actor_and_value_do_not():
    agent, env = make_agent()
    agent.train_iteration(env)
    context, batch = agent.sample_batches(np.array([0, 1, 2]))

    def fresh():
        _zero_all(agent)
        mu, var, z = agent.learner.infer(context)
        return mu, var, agent.learner.flat_batch(batch, z)

    mu, var, b = fresh()
    critic = agent.learner.critic_loss(mu, var, b)
    critic["qf_loss"].backward()
    assert all(g is not None and g.abs().sum() > 0 for g in _encoder_grads(agent))
    assert all(p.grad is None for p in agent.policy.parameters())
    mu, var, b = fresh()
    agent.learner.critic_loss(mu, var, b)["kl"].backward()
    assert all(g is not None for g in _encoder_grads(agent)) and any(g.abs().sum() > 0 for g in _encoder_grads(agent))
    mu, var, b = fresh()
    losses = agent.learner.actor_value_losses(b, agent.learner.policy_outputs(b))
    losses["policy_loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.policy.parameters())
    assert all(g is None for g in _encoder_grads(agent))
    mu, var, b = fresh()
    losses = agent.learner.actor_value_losses(b, agent.learner.policy_outputs(b))
    losses["vf_loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.learner.vf.parameters())
    assert all(g is None for g in _encoder_grads(agent))
    # the full step: the encoder moves, and an encoder optimiser step alone would not change the policy
    before = [p.detach().clone() for p in agent.encoder.parameters()]
    agent.learner.gradient_step(context, batch)
    assert any(not torch.equal(a, p) for a, p in zip(before, agent.encoder.parameters(), strict=True))


# ---------------------------------------------------------------------------- Algorithm 1's data
def test_collection_counts_buffers_and_dense_reward_for_critic():
    agent, env = make_agent(dense_rewards_for_critic=True)
    stats = agent.train_iteration(env)
    # 3 tasks x 40 initial + 2 sampled x (20 prior + 20 posterior + 40 extra)
    assert stats.frames == 3 * 40 + 2 * 80
    assert agent.rl_buffer.sizes().sum() == stats.frames
    assert agent.obs_dim == 2 and agent.layout.width == 2 + 2 + 1 + 1 + 2 + 1  # the done flag is stripped
    sampled_rows = agent.enc_buffer.sizes()
    assert sorted(sampled_rows.tolist()) in ([40, 40, 40], [40, 40, 80])  # 80: a task drawn twice this round
    lay = agent.layout
    for t, goal in enumerate(agent.train_tasks):
        rows = agent.rl_buffer[t].contents()
        d = np.linalg.norm(rows[:, lay.next_obs] - goal, axis=1)
        np.testing.assert_allclose(rows[:, lay.reward][:, 0], -d, rtol=1e-5, atol=1e-6)  # dense for the critic
        np.testing.assert_allclose(rows[:, lay.context_reward][:, 0], np.where(d <= 0.2, 1 - d, 0.0), atol=1e-6)
        # s' follows from s and a: s' = s + 0.1 clip(a)
        np.testing.assert_allclose(rows[:, lay.next_obs], rows[:, lay.obs] + 0.1 * rows[:, lay.action], atol=1e-5)
    assert all(k in stats.metrics for k in ("sac/qf_loss", "sac/kl", "sac/policy_loss", "train/return_prior"))


def test_context_is_drawn_only_from_the_latest_round_never_older_or_rl_only_data():
    # one task per round, one env copy: a round adds prior (1 episode), posterior (1) to both buffers, then the
    # RL-only extra steps (2 episodes); the initial pool is every task's first round
    agent, env = make_agent(num_envs=1, num_tasks_sample=1, num_train_steps_per_itr=20)
    allowed: dict[int, set[bytes]] = {}
    older_seen = {"rl": 0}
    recorded: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    original = agent.sample_batches

    def spy(task_ids):
        context, batch = original(task_ids)
        recorded.append((task_ids.copy(), context.numpy().copy(), batch.numpy().copy()))
        return context, batch

    agent.sample_batches = spy
    for it in range(4):
        sizes = agent.rl_buffer.sizes() if agent.rl_buffer is not None else None
        recorded.clear()
        agent.train_iteration(env)
        new_sizes = agent.rl_buffer.sizes()
        for t in range(3):
            start = 0 if sizes is None else sizes[t]
            added = agent.rl_buffer[t].contents()[start:new_sizes[t]]
            if it == 0 and len(added) > 40:  # the initial pool (40 rows) followed by a round on this task
                allowed[t] = {r.tobytes() for r in added[40:80]}
            elif it == 0:
                allowed[t] = {r.tobytes() for r in added}
            elif len(added):
                assert len(added) == 80
                allowed[t] = {r.tobytes() for r in added[:40]}  # prior + posterior; the last 40 are RL-only
        assert recorded
        for task_ids, context, batch in recorded:
            for k, t in enumerate(task_ids):
                assert all(row.tobytes() in allowed[int(t)] for row in context[k]), "context from outside the window"
                older_seen["rl"] += sum(row.tobytes() not in allowed[int(t)] for row in batch[k])
    # the RL batches do use the whole buffer (so the check above could fail if context came from it)
    assert older_seen["rl"] > 0


def test_distinct_training_tasks_are_drawn_from_a_discrete_distribution():
    class FakeEnv:
        calls = 0

        def draw_tasks(self, n):
            FakeEnv.calls += 1
            return np.array([[1.0]] * n if FakeEnv.calls < 3 else [[-1.0]] * n, np.float32)

    tasks = PEARLAgent._draw_distinct_tasks(FakeEnv(), 2)
    assert sorted(tasks[:, 0].tolist()) == [-1.0, 1.0]


# ---------------------------------------------------------------------------- meta-test (Algorithm 2)
@pytest.mark.parametrize("exploration", [1, 2])
def test_meta_test_prior_first_then_posterior_over_all_context_and_reset_on_task_done(monkeypatch, exploration):
    agent, _ = make_agent(exploration_episodes_eval=exploration)
    draws: list[tuple[np.ndarray, np.ndarray]] = []

    def mean_sample(mu, var, generator):  # z = the mean, so each z tells which distribution it came from
        draws.append((mu.detach().numpy().copy(), var.detach().numpy().copy()))
        return mu.clone()

    monkeypatch.setattr(pearl_agent, "reparameterised_sample", mean_sample)
    log = []
    update = agent.update_belief

    def spy(belief, obs, action, reward, next_obs, episode_done, task_done):
        new = update(belief, obs, action, reward, next_obs, episode_done, task_done)
        log.append((belief.z.clone(), obs.copy(), action.copy(), reward.copy(), next_obs.copy(), episode_done.copy(),
                    task_done.copy(), new))
        return new

    agent.update_belief = spy
    tasks = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    rows = meta_test(agent, "pointrobot_sparse", tasks, episodes=3, horizon=5)
    assert len(rows) == 6 and len(log) == 15
    assert np.allclose(draws[0][0], 0.0) and np.allclose(draws[0][1], 1.0)  # initial belief: the prior
    seen = []
    for step, (z_used, obs, action, reward, next_obs, ep_done, task_done, new) in enumerate(log):
        episode = step // 5  # this transition's episode (0-based)
        if episode < exploration:
            assert torch.all(z_used == 0), "z must come from the prior in the exploration episodes"
        seen.append((obs, action, reward, next_obs))
        if ep_done.all() and not task_done.any():
            # the posterior over ALL transitions of the task so far, computed from scratch
            o, a, r, s2 = (np.stack([t[i] for t in seen], axis=1) for i in range(4))
            parts = [o[..., :2], a, r[..., None]] + ([s2[..., :2]] if agent.cfg.context_next_obs else [])
            context = torch.as_tensor(np.concatenate(parts, -1), dtype=torch.float32)
            with torch.no_grad():
                mu, var = agent.encoder.posterior(context)
            if episode + 1 >= exploration:
                torch.testing.assert_close(new.z, mu, rtol=1e-4, atol=1e-5)
                torch.testing.assert_close(new.posterior()[1], var, rtol=1e-4, atol=1e-6)
            else:
                assert torch.all(new.z == 0)
            assert (new.count == len(seen)).all()
        elif not ep_done.any():
            assert torch.equal(new.z, z_used)  # held fixed within an episode
    last = log[-1][-1]
    assert log[-1][6].all() and (last.count == 0).all() and (last.episodes == 0).all()
    assert torch.all(last.precision_sum == 0) and torch.all(last.z == 0)


def test_deterministic_action_is_tanh_of_the_mean_and_actions_map_back():
    agent, env = make_agent()
    obs, _ = env.reset()
    belief = agent.initial_belief(2)
    action = agent.act(obs, belief, deterministic=True)
    with torch.no_grad():
        mean, _ = agent.policy(torch.as_tensor(obs[:, :2]), belief.z)
    np.testing.assert_allclose(action, torch.tanh(mean).numpy(), rtol=1e-6)
    np.testing.assert_allclose(agent._from_env_action(agent._to_env_action(action)), action, atol=1e-6)


# ---------------------------------------------------------------------------- resume
def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def test_exact_resume_gives_the_same_next_iteration():
    agent, env = make_agent(seed=5, env_seed=7)
    agent.train_iteration(env)
    state = _roundtrip(agent.state_dict(resume=True))
    env_state = copy.deepcopy(env.get_state())
    expected = [agent.train_iteration(env).metrics for _ in range(2)]
    fresh, env2 = make_agent(seed=99, env_seed=99)
    env2.set_state(env_state)
    fresh.load_state_dict(state)
    got = [fresh.train_iteration(env2).metrics for _ in range(2)]
    for e, g in zip(expected, got, strict=True):
        e = {k: v for k, v in e.items() if not k.startswith("time/")}
        g = {k: v for k, v in g.items() if not k.startswith("time/")}
        assert e == g
    for a, b in zip(agent.policy.parameters(), fresh.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    # the small (non-resume) state has no buffers
    assert "rl_buffer" not in agent.state_dict(resume=False)


class _StopAfter:
    """``should_stop`` that says yes from its ``n``-th question on (it is asked once before each gradient step)."""

    def __init__(self, n: int) -> None:
        self.n, self.asked = n, 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.asked > self.n


def _without_timing(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}


@pytest.mark.parametrize("steps_before_stop", [0, 2])
def test_a_stop_between_gradient_steps_carries_the_iteration_on_after_a_resume(steps_before_stop):
    """A stop inside an iteration keeps the collected data and the gradient steps done (in the resume state); the
    resumed agent neither collects again nor repeats a step, and ends where an uninterrupted one does."""
    agent, env = make_agent(seed=5, env_seed=7, num_train_steps_per_itr=4)
    agent.train_iteration(env)
    state, env_state = _roundtrip(agent.state_dict(resume=True)), copy.deepcopy(env.get_state())
    expected = [agent.train_iteration(env) for _ in range(2)]

    stopped, env2 = make_agent(seed=5, env_seed=7, num_train_steps_per_itr=4)
    stopped.load_state_dict(_roundtrip(state))
    env2.set_state(copy.deepcopy(env_state))
    grad_steps_before = stopped.grad_steps
    with pytest.raises(IterationInterrupted, match=f"after {steps_before_stop} of 4 gradient steps"):
        stopped.train_iteration(env2, _StopAfter(steps_before_stop))
    assert stopped.grad_steps == grad_steps_before + steps_before_stop and stopped.iterations == 1
    mid_state, mid_env = _roundtrip(stopped.state_dict(resume=True)), copy.deepcopy(env2.get_state())
    assert mid_state["in_progress"]["steps_done"] == steps_before_stop and mid_state["in_progress"]["frames"] > 0

    resumed, env3 = make_agent(seed=99, env_seed=99, num_train_steps_per_itr=4)
    resumed.load_state_dict(mid_state)
    env3.set_state(mid_env)
    got = [resumed.train_iteration(env3) for _ in range(2)]
    for e, g in zip(expected, got, strict=True):
        assert e.frames == g.frames and _without_timing(e.metrics) == _without_timing(g.metrics)
    assert resumed.iterations == agent.iterations and resumed.grad_steps == agent.grad_steps
    for a, b in zip(agent.networks.values(), resumed.networks.values(), strict=True):
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(pa, pb)
    assert "in_progress" not in resumed.state_dict(resume=True)  # a finished iteration leaves nothing pending


def test_task_buffer_is_a_ring_with_oldest_first_contents_and_roundtrips():
    buf = TaskBuffer(capacity=5, width=1, initial=2)
    buf.add(np.arange(3, dtype=np.float32)[:, None])
    assert buf.contents()[:, 0].tolist() == [0, 1, 2]
    buf.add(np.arange(3, 7, dtype=np.float32)[:, None])
    assert len(buf) == 5 and buf.contents()[:, 0].tolist() == [2, 3, 4, 5, 6]
    rng = np.random.default_rng(0)
    assert set(buf.sample(200, rng)[:, 0].tolist()) == {2, 3, 4, 5, 6}
    other = TaskBuffer(capacity=5, width=1)
    other.load_state_dict(buf.state_dict())
    assert other.contents()[:, 0].tolist() == [2, 3, 4, 5, 6]
    buf.clear()
    assert len(buf) == 0
    with pytest.raises(RuntimeError):
        buf.sample(1, rng)


# ---------------------------------------------------------------------------- configuration and registry
CONTINUOUS = sorted(name for name, spec in REGISTRY.items() if spec.action_type == "continuous")
FIXED_TRAIN_SETS = {"pointrobot_sparse": 80, "walker_params": 40, "ml1_reach": 50, "ml1_push": 50,
                    "ml1_pick_place": 50}
ITERATIONS = 500  # oyster's num_iterations


@pytest.mark.parametrize("env", CONTINUOUS)
def test_every_continuous_env_has_a_pearl_config_whose_budget_is_500_oyster_iterations(env):
    cfg = compose_config("algo=pearl", f"env={env}")
    algo = load_config(cfg.algo)
    assert (ROOT / "conf" / "algo_env" / f"pearl_{env}.yaml").exists()
    horizon = cfg.env.horizon or get_spec(env).horizon

    def whole(steps):
        return -(-steps // horizon) * horizon

    tasks = FIXED_TRAIN_SETS.get(env, algo.num_train_tasks)
    per_iteration = algo.num_tasks_sample * sum(whole(s) for s in (algo.num_steps_prior, algo.num_steps_posterior,
                                                                    algo.num_extra_rl_steps_posterior))
    assert cfg.train.num_frames == tasks * whole(algo.num_initial_steps) + ITERATIONS * per_iteration
    assert cfg.train.log_interval_iterations == 1 and algo.num_envs == algo.num_tasks_sample


def test_pointrobot_config_is_the_papers():
    cfg = compose_config("algo=pearl", "env=pointrobot_sparse")
    algo = load_config(cfg.algo)
    assert cfg.env.horizon == 20 and cfg.env.kwargs.task_set == "pearl" and cfg.eval.episodes > 5
    assert (algo.gamma, algo.reward_scale, algo.kl_lambda, algo.num_steps_prior, algo.num_steps_posterior) == (
        0.9, 100.0, 1.0, 100, 900)
    assert algo.dense_rewards_for_critic and algo.exploration_episodes_eval == 5
    defaults = load_config(compose_config("algo=pearl", "env=cheetah_vel").algo)
    assert (defaults.latent_dim, defaults.net_layers, defaults.encoder_layers, defaults.batch_size) == (
        5, [300, 300, 300], [200, 200, 200], 256)


def test_registry_and_config_validation():
    spec = get_algo("pearl")
    assert spec.action_types == frozenset({"continuous"}) and spec.devices == frozenset({"cpu", "cuda"})
    with pytest.raises(IncompatibleError):
        check_compatible(spec, get_spec("gridworld"))
    with pytest.raises(ConfigKeyError):
        load_config({"name": "pearl", "no_such_key": 1})
    with pytest.raises(ValueError, match="num_steps_prior"):
        load_config({"num_steps_prior": 0, "num_steps_posterior": 0})


# ---------------------------------------------------------------------------- whole runs through train.run
def _tiny_overrides(env, tmp_path, *extra):
    return ["algo=pearl", f"env={env}", f"results_dir={tmp_path}", "progress=false", "algo.num_envs=2",
            "algo.num_tasks_sample=2", "algo.net_layers=[16,16]", "algo.encoder_layers=[16,16]",
            "algo.batch_size=16", "algo.meta_batch=2", "algo.embedding_batch_size=16",
            "algo.num_train_steps_per_itr=2", "train.log_interval_iterations=1", "eval.num_tasks=2",
            "eval.episodes=2", *extra]


def _tiny_run(env, tmp_path, *extra):
    final = train.run(compose_config(*_tiny_overrides(env, tmp_path, *extra)))
    run = next((tmp_path / env / "pearl").iterdir())
    meta = json.loads((run / "metadata.json").read_text())
    metrics = pd.read_csv(run / "train_metrics.csv")
    evals = pd.read_csv(run / "eval.csv")
    assert meta["status"] == "completed" and (run / "checkpoints" / "final.pt").exists()
    assert metrics.filter(like="sac/").notna().all().all() and len(metrics) >= 1
    assert len(final) == 2 * 2 and final["return"].notna().all()
    return meta, metrics, evals


def test_tiny_pearl_run_on_pointrobot_sparse(tmp_path):
    # 80 tasks x 20 initial steps, then 2 tasks x (20 + 20) per iteration: two iterations
    frames = 80 * 20 + 2 * 2 * 40
    meta, metrics, evals = _tiny_run("pointrobot_sparse", tmp_path, "algo.num_initial_steps=20",
                                     "algo.num_steps_prior=20", "algo.num_steps_posterior=20",
                                     f"train.num_frames={frames}", f"train.eval_interval_frames={frames}",
                                     f"train.checkpoint_interval_frames={frames}")
    assert meta["frames"] == frames and len(metrics) == 2
    assert sorted(evals["frames"].unique()) == [0, frames]


def test_sigterm_during_gradient_steps_checkpoints_mid_iteration_and_the_rerun_equals_an_uninterrupted_run(
        tmp_path, monkeypatch):
    """A scheduler gives a stopped job seconds (Slurm: 30 s by default), PEARL's iteration takes minutes: the stop is
    acted on before the next gradient step, and running the same command again finishes the run as if unstopped."""
    frames = 80 * 20 + 2 * 2 * 40  # the initial pool and two iterations of 4 gradient steps
    args = ("pointrobot_sparse", "algo.num_initial_steps=20", "algo.num_steps_prior=20", "algo.num_steps_posterior=20",
            "algo.num_train_steps_per_itr=4", f"train.num_frames={frames}", f"train.eval_interval_frames={frames}",
            "train.checkpoint_interval_frames=1000000", "seed=4")
    _, whole_metrics, whole_evals = _tiny_run(*args[:1], tmp_path / "whole", *args[1:])

    original_step = SACLearner.gradient_step
    calls = {"n": 0}

    def signalled_step(self, *tensors):
        calls["n"] += 1
        if calls["n"] == 6:  # the 2nd of 4 steps of the 2nd iteration
            os.kill(os.getpid(), signal.SIGTERM)
        return original_step(self, *tensors)

    monkeypatch.setattr(SACLearner, "gradient_step", signalled_step)
    overrides = _tiny_overrides(args[0], tmp_path / "stopped", *args[1:], "run_name=stopped")
    with pytest.raises(SystemExit) as stop:
        train.run(compose_config(*overrides))
    assert stop.value.code == 128 + signal.SIGTERM
    run = tmp_path / "stopped" / "pointrobot_sparse" / "pearl" / "stopped"
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["status"] == "preempted" and meta["stop_signal"] == "SIGTERM"
    state = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert state["iteration"] == 1 and state["agent"]["in_progress"]["steps_done"] == 2  # no step after the signal
    assert calls["n"] == 6

    monkeypatch.setattr(SACLearner, "gradient_step", original_step)
    train.run(compose_config(*overrides))
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["status"] == "completed" and meta["frames"] == frames
    timing = [c for c in whole_metrics.columns if c.startswith("time/") or c in ("wall_time", "fps")]
    pd.testing.assert_frame_equal(pd.read_csv(run / "train_metrics.csv").drop(columns=timing),
                                  whole_metrics.drop(columns=timing), check_exact=True)
    pd.testing.assert_frame_equal(pd.read_csv(run / "eval.csv").drop(columns=["run_id"]),
                                  whole_evals.drop(columns=["run_id"]), check_exact=True)


def test_tiny_pearl_run_on_cheetah_dir(tmp_path):
    pytest.importorskip("mujoco")
    # 2 tasks x 1 initial episode of 50, then 2 tasks x (1 prior + 1 RL-only episode): one iteration
    frames = 2 * 50 + 2 * 100
    meta, metrics, _ = _tiny_run("cheetah_dir", tmp_path, "env.horizon=50", "env.kwargs.num_workers=0",
                                 "algo.num_initial_steps=50", "algo.num_steps_prior=50",
                                 "algo.num_extra_rl_steps_posterior=50", f"train.num_frames={frames}",
                                 f"train.eval_interval_frames={frames}", f"train.checkpoint_interval_frames={frames}")
    assert meta["frames"] == frames and "train/return_posterior" in metrics.columns


def test_adapted_belief_is_a_posterior_sample_where_there_is_context_and_the_prior_elsewhere(monkeypatch):
    """Meta-World's ``adapt``: PEARL commits to z ~ q(z | c) over everything seen, even before
    ``exploration_episodes_eval`` episodes (the protocol, not the agent, ends exploration)."""
    agent, _ = make_agent(exploration_episodes_eval=5)
    monkeypatch.setattr(pearl_agent, "reparameterised_sample", lambda mu, var, generator: mu.clone())
    belief = agent.initial_belief(2)
    obs = np.zeros((2, 3), np.float32)
    action = np.full((2, 2), 0.5, np.float32)
    for _ in range(3):  # context for env 0 only: env 1's rows are then reset by task_done
        belief = agent.update_belief(belief, obs, action, np.ones(2, np.float32), obs, np.zeros(2, bool),
                                     np.zeros(2, bool))
    belief.count[1] = 0
    belief.precision_sum[1] = 0.0
    belief.weighted_mean_sum[1] = 0.0
    adapted = agent.adapted_belief(belief)
    mu, _ = belief.posterior()
    torch.testing.assert_close(adapted.z[0], mu[0])
    assert torch.all(adapted.z[1] == 0)  # no context: the prior (its mean, under the patched sampler)
    assert (adapted.count == belief.count).all()


def test_context_is_oysters_s_a_r_by_default_and_s_prime_is_an_option():
    agent, env = make_agent()
    obs_dim, act_dim = env.obs_dim - 1, 2  # PointRobot: 2-d state (the done flag is stripped), 2-d action
    assert not PEARLConfig().context_next_obs
    assert agent.context_dim == obs_dim + act_dim + 1
    with_next, _ = make_agent(context_next_obs=True)
    assert with_next.context_dim == 2 * obs_dim + act_dim + 1
    rows = torch.arange(agent.layout.width, dtype=torch.float32)[None].repeat(4, 1)
    assert agent.context_from_rows(rows).shape == (4, obs_dim + act_dim + 1)


def test_each_collection_phase_starts_from_the_prior_as_oysters_collect_data():
    from algorithms.pearl.collection import Phase, WorkItem

    item = WorkItem(0, [Phase("prior", 40, True), Phase("posterior", 40, True), Phase("posterior", 40, False)])
    kinds = []
    while not item.done:
        kinds.append(item.latent_kind)
        item.finish_episode(20)
    assert kinds == ["prior", "prior", "prior", "posterior", "prior", "posterior"]


def test_first_posterior_phase_trajectory_is_collected_with_a_prior_z(monkeypatch):
    """With posterior phases one trajectory long (H = 20 steps), oyster collects them entirely with prior z: no
    posterior is ever inferred for collection."""
    agent, env = make_agent(num_steps_prior=20, num_steps_posterior=20, num_extra_rl_steps_posterior=20)
    requested = []
    real = agent._episode_latents

    def spy(tasks, kinds):
        requested.extend(kinds)
        return real(tasks, kinds)

    monkeypatch.setattr(agent, "_episode_latents", spy)
    agent.train_iteration(env)
    assert requested and set(requested) == {"prior"}
    # with two trajectories per posterior phase the second one uses the posterior
    agent2, env2 = make_agent(num_steps_prior=20, num_steps_posterior=40, num_extra_rl_steps_posterior=40)
    requested.clear()
    real = agent2._episode_latents
    monkeypatch.setattr(agent2, "_episode_latents", spy)
    agent2.train_iteration(env2)
    assert requested.count("posterior") > 0


def test_initialisation_bounds_are_rlkits():
    from algorithms.pearl.networks import TanhGaussianPolicy, rlkit_mlp

    torch.manual_seed(0)
    net = rlkit_mlp(7, [300, 50], 1)
    first, second, out = net[0], net[2], net[4]
    # fanin_init bounds by 1/sqrt(size[0]) = 1/sqrt(out_features): 1/sqrt(300) for the first layer, not 1/sqrt(7)
    assert first.weight.abs().max() <= 1 / 300 ** 0.5 and first.weight.abs().max() > 0.9 / 300 ** 0.5
    assert second.weight.abs().max() <= 1 / 50 ** 0.5 and second.weight.abs().max() > 0.9 / 50 ** 0.5
    assert torch.all(first.bias == 0.1) and out.weight.abs().max() <= 3e-3
    policy = TanhGaussianPolicy(5, 2, 3, [64])
    for head in (policy.mean, policy.log_std):
        assert head.weight.abs().max() <= 1e-3 and head.bias.abs().max() <= 1e-3
        assert head.weight.abs().max() > 0.5e-3


def test_task_buffer_keeps_every_row_when_a_fill_ends_at_the_array_end():
    """A fill that ends exactly at the end of the growing array, then more rows: all rows kept, in order, and no
    never-written (zero) row is counted as stored (the rows after the boundary used to overwrite the oldest ones)."""
    from algorithms.pearl.buffers import TaskBuffer

    buffer = TaskBuffer(capacity=10_000, width=1, initial=8)
    rows = np.arange(1, 31, dtype=np.float32)[:, None]
    buffer.add(rows[:8])  # exactly fills the initial array
    buffer.add(rows[8:13])
    buffer.add(rows[13:])
    np.testing.assert_array_equal(buffer.contents(), rows)
    assert (buffer.data[:len(buffer)] != 0).all()


def test_task_buffer_state_keeps_the_ring_layout_so_resumed_sampling_is_identical():
    from algorithms.pearl.buffers import TaskBuffer

    buffer = TaskBuffer(capacity=50, width=2, initial=8)
    for start in range(0, 130, 13):  # wraps the full ring several times
        buffer.add(np.arange(start, start + 13, dtype=np.float32)[:, None].repeat(2, axis=1))
    restored = TaskBuffer(capacity=50, width=2)
    restored.load_state_dict(_roundtrip(buffer.state_dict()))
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    np.testing.assert_array_equal(buffer.sample(200, a), restored.sample(200, b))
    new_rows = np.full((7, 2), -1.0, np.float32)
    buffer.add(new_rows)
    restored.add(new_rows)
    np.testing.assert_array_equal(buffer.contents(), restored.contents())
    np.testing.assert_array_equal(buffer.sample(200, a), restored.sample(200, b))


# ---------------------------------------------------------------------------- algo.hidden_precision (mixed precision)
def test_bfloat16_hidden_layers_give_float32_outputs_and_gradients_close_to_float32():
    """Same weights (the state dicts are interchangeable), bf16 hidden products, float32 out: outputs and weight
    gradients agree with float32 to bf16's accuracy, and are not bit-equal (the bf16 path really ran)."""
    from algorithms.pearl.networks import rlkit_mlp

    torch.manual_seed(0)
    net32 = rlkit_mlp(31, [300, 300, 300], 1)
    net16 = rlkit_mlp(31, [300, 300, 300], 1, hidden_dtype=torch.bfloat16)
    net16.load_state_dict(net32.state_dict())
    x = 3.0 * torch.randn(512, 31)
    out32, out16 = net32(x), net16(x)
    assert out16.dtype == torch.float32 and out16.shape == out32.shape
    error = (out16 - out32).abs().max() / out32.abs().max()
    assert 0 < error < 0.02
    out32.pow(2).mean().backward()
    out16.pow(2).mean().backward()
    for p32, p16 in zip(net32.parameters(), net16.parameters(), strict=True):
        assert p16.grad is not None and p16.grad.dtype == torch.float32 and p16.dtype == torch.float32
        cosine = F.cosine_similarity(p32.grad.flatten(), p16.grad.flatten(), dim=0)
        assert cosine > 0.99


def test_bfloat16_agent_takes_the_float32_gradient_step_to_bf16_accuracy():
    rows = {}
    metrics = {}
    for precision in ("float32", "bfloat16"):
        agent, env = make_agent(seed=4, net_layers=[64, 64], encoder_layers=[32, 32], hidden_precision=precision)
        env.close()
        W = 2 * agent.obs_dim + agent.action_dim + 3
        gen = torch.Generator().manual_seed(0)
        context, batch = torch.randn(3, 8, W, generator=gen), torch.randn(3, 8, W, generator=gen)
        batch[..., agent.layout.terminal] = 0.0
        before = [p.detach().clone() for p in agent.learner.qf1.parameters()]
        metrics[precision] = agent.learner.gradient_step(context, batch)
        rows[precision] = [p.detach() - b for p, b in zip(agent.learner.qf1.parameters(), before, strict=True)]
        assert all(p.dtype == torch.float32 for net in agent.networks.values() for p in net.parameters())
    assert metrics["bfloat16"].dtype == torch.float32
    torch.testing.assert_close(metrics["bfloat16"], metrics["float32"], rtol=0.05, atol=1e-3)
    step32, step16 = (torch.cat([d.flatten() for d in rows[p]]) for p in ("float32", "bfloat16"))
    assert F.cosine_similarity(step32, step16, dim=0) > 0.9


def test_unknown_hidden_precision_is_an_error_that_names_the_key():
    from algorithms.common.errors import ConfigError

    with pytest.raises(ConfigError, match=r"algo\.hidden_precision"):
        load_config({"hidden_precision": "float16"})


def test_the_throughput_benchmark_times_the_agents_own_gradient_steps():
    """``make bench``'s PEARL figures call the agent's private collection and update loop: keep them in step."""
    pytest.importorskip("mujoco")
    from benchmarks.pearl_throughput import measure

    results = measure(2, ["float32", "bfloat16"], steps=2, warmup=1, repeats=1, device="cpu", pool_steps=20)
    assert [r["hidden_precision"] for r in results] == ["float32", "bfloat16"]
    assert all(len(r["repeats"]) == 1 and r["best_steps_per_s"] > 0 for r in results)
