"""RL^2 is VariBAD's machinery by configuration: no decoder, no KL, the RL loss trains the GRU."""

import pytest
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


class RecordingAdam:
    """The agent's optimiser, recording each step's gradient norm per parameter list before it steps."""

    def __init__(self, inner: torch.optim.Optimizer, groups: dict[str, list[torch.nn.Parameter]]) -> None:
        self.inner, self.groups, self.norms = inner, groups, []

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.norms.append({name: float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None]))) for name, params in
            self.groups.items()})
        self.inner.step()


def clipped_norms(clip: str, encoder_max_grad_norm: float | None = None) -> list[dict[str, float]]:
    overrides = {"through_encoder_clip": clip}
    if encoder_max_grad_norm is not None:
        overrides["encoder_max_grad_norm"] = encoder_max_grad_norm
    agent, env, _ = build("rl2", **overrides)
    agent._collect(env)
    agent.ppo_cfg.value_loss_coef = 1e4  # gradients far above every clipping norm, in both networks
    recorder = RecordingAdam(agent.policy_optimizer, {"policy": list(agent.policy.parameters()),
                                                      "encoder": list(agent.encoder.parameters())})
    agent.policy_optimizer = recorder
    agent.update_policy()
    return recorder.norms


def test_rl2_clips_the_actor_critic_and_the_encoder_each_on_its_own_as_the_reference():
    # the reference's ppo.py: clip_grad_norm_(actor_critic, policy_max_grad_norm), then, the RL loss reaching the
    # encoder, clip_grad_norm_(encoder, encoder_max_grad_norm) where that is set (GridWorld RL^2: None)
    for step in clipped_norms("separate"):
        assert step["policy"] <= 0.5 + 1e-4 and step["encoder"] > 1.0
    for step in clipped_norms("separate", encoder_max_grad_norm=0.25):
        assert step["policy"] <= 0.5 + 1e-4 and 0.2 < step["encoder"] <= 0.25 + 1e-4
    for step in clipped_norms("joint"):  # the alternative: one norm over both
        assert (step["policy"] ** 2 + step["encoder"] ** 2) ** 0.5 <= 0.5 + 1e-4


def minibatch_calls(mode: str):
    """The env indices of every belief recomputation and the size of every PPO minibatch of one policy update."""
    agent, env, cfg = build("rl2", through_encoder_minibatches=mode)
    agent._collect(env)
    calls, batch_sizes = [], []
    recompute, evaluate = agent._recompute_beliefs, agent.policy.evaluate_actions

    def spy_recompute(env_idx):
        calls.append(sorted(env_idx.tolist()))
        return recompute(env_idx)

    def spy_evaluate(obs, belief, actions):
        batch_sizes.append(len(belief))
        return evaluate(obs, belief, actions)

    agent._recompute_beliefs, agent.policy.evaluate_actions = spy_recompute, spy_evaluate
    agent.update_policy()
    return calls, batch_sizes, cfg.algo


def test_rl2_minibatches_are_random_steps_with_every_env_re_encoded_as_the_reference():
    # the reference's ppo.py: minibatches from feed_forward_generator (random (t, env) samples of the rollout), the
    # embeddings of the whole rollout recomputed (recompute_embeddings) before every minibatch step
    for mode, envs_per_call in (("steps", 4), ("sequences", 1)):
        calls, batch_sizes, algo = minibatch_calls(mode)
        assert len(calls) == algo.ppo_epochs * algo.ppo_minibatches == len(batch_sizes)
        assert all(len(c) == envs_per_call for c in calls), (mode, calls)
        assert batch_sizes == [algo.num_steps * 4 // algo.ppo_minibatches] * len(batch_sizes)
        if mode == "sequences":  # each epoch re-encodes each env once
            assert sorted(i for c in calls[:algo.ppo_minibatches] for i in c) == [0, 1, 2, 3]


# the reference's config/<family>/args_<env>_rl2.py: policy_num_steps, ppo_num_minibatch, encoder_max_grad_norm
REFERENCE_RL2 = {"gridworld": (60, 4, None), "pointrobot_sparse": (600, 8, 0.5), "cheetah_dir": (200, 4, 0.5),
                 "cheetah_vel": (800, 4, 0.5), "ant_dir": (200, 4, 0.5), "ant_goal": (200, 1, 0.5),
                 "humanoid_dir": (400, 2, 1.0), "walker_params": (200, 1, 0.5)}


@pytest.mark.parametrize("env", sorted(REFERENCE_RL2))
def test_rl2_rollout_minibatches_and_encoder_clipping_are_the_reference_configs(env):
    algo = compose_config("algo=rl2", f"env={env}").algo
    assert (algo.num_steps, algo.ppo_minibatches, algo.encoder_max_grad_norm) == REFERENCE_RL2[env]
    assert algo.max_grad_norm == 0.5  # policy_max_grad_norm in every one of them
    assert algo.through_encoder_minibatches == "steps" and algo.through_encoder_clip == "separate"
