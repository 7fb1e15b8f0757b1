"""RL^2 is VariBAD's machinery by configuration: no decoder, no KL, the RL loss trains the GRU."""

import torch

import envs
from algorithms.builder import compose_config
from algorithms.common.agent import EnvInfo
from algorithms.registry import build_agent
from algorithms.varibad import VariBADAgent


def build(algo, **overrides):
    cfg = compose_config(f"algo={algo}", "algo.num_envs=4", *[f"algo.{k}={v}" for k, v in overrides.items()])
    env = envs.make_meta_env("gridworld", num_envs=4, seed=0)
    torch.manual_seed(0)
    return build_agent(algo, cfg.algo, EnvInfo.from_env(env), 0, "cpu"), env, cfg


def test_rl2_config_is_varibad_machinery_configured():
    agent, _, cfg = build("rl2")
    assert isinstance(agent, VariBADAgent) and agent.name == "rl2"
    assert cfg.algo.latent_dim == 32 and cfg.algo.lr_policy == 7e-4 and cfg.algo.latent_activation == "relu"
    assert agent.buffer is None and agent.vae_optimizer is None and agent.vae.reward_decoder is None
    assert agent.policy_obs_dim == 0  # the reference RL^2 policy acts on the recurrent latent alone
    gru_params = {id(p) for p in agent.encoder.gru.parameters()}
    assert gru_params <= {id(p) for group in agent.policy_optimizer.param_groups for p in group["params"]}


def gru_grads_after_policy_update(agent, env):
    agent._collect(env)
    for p in agent.encoder.parameters():
        p.grad = None
    agent.update_policy()
    return [p.grad for p in agent.encoder.gru.parameters()]


def test_rl2_gradients_reach_the_gru_and_varibads_do_not():
    rl2, env, _ = build("rl2")
    assert all(g is not None and g.abs().sum() > 0 for g in gru_grads_after_policy_update(rl2, env))
    varibad, env, _ = build("varibad")
    assert all(g is None for g in gru_grads_after_policy_update(varibad, env))


def test_rl2_beliefs_are_recomputed_per_minibatch_with_resets():
    agent, env, _ = build("rl2", num_steps=90)
    agent._collect(env)
    st = agent.storage
    recomputed = agent._recompute_beliefs(torch.arange(4))
    # recomputing from the stored transitions and start-of-rollout hidden state reproduces the acting beliefs
    torch.testing.assert_close(recomputed.detach(), st.policy_belief, atol=1e-5, rtol=1e-5)
    assert recomputed.requires_grad
