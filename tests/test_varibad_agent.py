"""VariBAD agent: which losses reach the encoder, rollout bookkeeping, determinism."""

import numpy as np
import pytest
import torch

import envs
from algorithms.common.agent import EnvInfo
from algorithms.common.evaluator import meta_test
from algorithms.varibad import VariBADAgent, VariBADConfig


def make_agent(seed=0, **overrides):
    cfg = VariBADConfig(**{"num_envs": 4, "precollect_frames": 0, "vae_batch_trajectories": 4, **overrides})
    env = envs.make_meta_env("gridworld", num_envs=cfg.num_envs, seed=seed)
    torch.manual_seed(seed)
    return VariBADAgent(cfg, EnvInfo.from_env(env), seed=seed), env


def encoder_snapshot(agent):
    return [p.detach().clone() for p in agent.encoder.parameters()]


@pytest.mark.parametrize("through_encoder", [False, True])
def test_policy_loss_reaches_encoder_only_when_switched_on(through_encoder):
    agent, env = make_agent(rl_loss_through_encoder=through_encoder)
    agent._collect(env)
    before = encoder_snapshot(agent)
    for p in agent.encoder.parameters():
        p.grad = None
    agent.update_policy()
    grads = [p.grad for p in agent.encoder.parameters()]
    changed = any(not torch.equal(a, b) for a, b in zip(before, agent.encoder.parameters(), strict=True))
    if through_encoder:
        assert any(g is not None and g.abs().sum() > 0 for g in grads) and changed
    else:
        assert all(g is None for g in grads) and not changed


def test_vae_update_trains_encoder_and_decoder_not_policy():
    agent, env = make_agent()
    agent._collect(env)
    enc_before = encoder_snapshot(agent)
    pol_before = [p.detach().clone() for p in agent.policy.parameters()]
    agent.update_vae()
    assert any(not torch.equal(a, b) for a, b in zip(enc_before, agent.encoder.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(pol_before, agent.policy.parameters(), strict=True))


def test_rollout_fills_vae_buffer_with_whole_trajectories():
    agent, env = make_agent(num_steps=90)  # 1.5 BAMDPs of 60 steps per env
    agent._collect(env)
    assert len(agent.buffer) == 4
    assert (agent.buffer.lengths[:4] == 60).all()
    assert (agent._cursor == 30).all()
    # stored rewards are the env's raw rewards (-0.1 or +1), not the policy's normalised ones
    assert set(np.unique(agent.buffer.rewards[:4])) <= {np.float32(-0.1), np.float32(1.0)}
    # the hidden state of the unfinished trajectories equals re-encoding them from scratch
    before = agent._hidden.clone()
    agent._refresh_hidden()
    assert torch.allclose(before, agent._hidden, atol=1e-5)
    # after a VAE update the re-encoded hidden states follow the new encoder
    agent.update_vae()
    agent._refresh_hidden()
    assert not torch.allclose(before, agent._hidden, atol=1e-5)


def hand_gae(rewards, values, last_value, dones, episode_ends, gamma, lam, cut):
    """GAE for one env written out step by step (reference: algorithms/online_storage.py)."""
    T = len(rewards)
    adv, gae = np.zeros(T), 0.0
    for t in reversed(range(T)):
        next_value = 0.0 if dones[t] else (last_value if t == T - 1 else values[t + 1])
        delta = rewards[t] + gamma * next_value - values[t]
        gae = delta + gamma * lam * (0.0 if dones[t] else gae)
        if cut and episode_ends[t]:
            gae = 0.0
        adv[t] = gae
    return adv


@pytest.mark.parametrize("boundary", ["reference", "bamdp"])
def test_gae_never_bootstraps_the_bamdp_end_and_reference_cuts_every_episode_end(boundary):
    agent, env = make_agent(num_steps=120, episode_boundary=boundary)
    agent._collect(env)
    st = agent.storage
    # GridWorld: H = 15, K = 4, so episodes end every 15 steps and the BAMDP every 60
    assert st.dones[59].all() and st.dones[119].all() and not st.dones[:59].any()
    assert st.time_limit_ends[14::15].all() and st.time_limit_ends.sum() == 8 * st.num_envs
    agent.update_policy()
    for env_index in range(st.num_envs):
        expected = hand_gae(st.rewards[:, env_index].numpy(), st.values[:, env_index].numpy(),
                            float(st.last_values[env_index]), st.dones[:, env_index].numpy(),
                            st.time_limit_ends[:, env_index].numpy(), 0.95, 0.95, boundary == "reference")
        np.testing.assert_allclose(st.advantages[:, env_index].numpy(), expected, rtol=1e-4, atol=1e-5)
    if boundary == "reference":
        assert torch.all(st.advantages[st.time_limit_ends] == 0)  # the end of every episode, the last included
        torch.testing.assert_close(st.returns[st.time_limit_ends], st.values[st.time_limit_ends])
    else:
        # the BAMDP's last step: r - V, no bootstrap from the terminal observation
        torch.testing.assert_close(st.advantages[59], st.rewards[59] - st.values[59])
        # inside the BAMDP advantages flow through episode ends
        assert torch.all(st.advantages[14] != 0)


def run_short(seed):
    agent, env = make_agent(seed=seed)
    metrics = [agent.train_iteration(env).metrics for _ in range(3)]
    # wall-clock timings are the only metrics allowed to differ between identical runs
    metrics = [{k: v for k, v in m.items() if not k.startswith("time/")} for m in metrics]
    assert all("vae/loss" in m and "ppo/value_loss" in m for m in metrics)
    rows = meta_test(agent, "gridworld", env.inner.held_out_tasks()[:5], episodes=2, deterministic=False, seed=1)
    return metrics, rows


def test_same_seed_gives_identical_results():
    m1, r1 = run_short(0)
    m2, r2 = run_short(0)
    assert m1 == m2
    assert r1.equals(r2)
    m3, _ = run_short(1)
    assert m1 != m3


def test_meta_test_keeps_belief_across_episodes_and_resets_per_task():
    agent, _ = make_agent()
    belief = agent.initial_belief(2)
    obs = np.zeros((2, 3), np.float32)
    b = agent.update_belief(belief, obs, np.array([1, 1]), np.array([-0.1, -0.1], np.float32),
                            np.array([[0, 1, 1], [0, 1, 1]], np.float32), np.array([True, True]),
                            np.array([False, True]))
    assert b.hidden[0].abs().sum() > 0  # episode boundary: belief carried
    assert b.hidden[1].abs().sum() == 0  # task boundary: back to the prior


def test_rl_loss_through_the_encoder_trains_the_vae_in_every_ppo_step_as_the_reference(monkeypatch):
    # the reference's ppo.py with rlloss_through_encoder: loss += vae_loss_coeff * compute_vae_loss() in every
    # minibatch, the VAE optimiser (encoder and decoders) stepped with the policy's, and no VAE updates after PPO
    import algorithms.varibad.agent as agent_module

    agent, env = make_agent(rl_loss_through_encoder=True)
    in_policy_optimizer = {id(p) for group in agent.policy_optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in in_policy_optimizer for p in agent.encoder.parameters())
    elbo_calls, separate_updates = [], []
    real_elbo = agent_module.elbo_loss
    monkeypatch.setattr(agent_module, "elbo_loss", lambda *a, **k: elbo_calls.append(1) or real_elbo(*a, **k))
    monkeypatch.setattr(agent, "update_vae", lambda: separate_updates.append(1) or {})
    decoders_before = [p.detach().clone() for p in agent.vae.decoder_parameters()]
    stats = agent.train_iteration(env)
    assert len(agent.buffer) > 0 and not separate_updates
    assert len(elbo_calls) == agent.cfg.ppo_epochs * agent.cfg.ppo_minibatches
    assert any(not torch.equal(a, b) for a, b in zip(decoders_before, agent.vae.decoder_parameters(), strict=True))
    assert any(k.startswith("vae/") for k in stats.metrics)
