"""The speed paths compute what the plain modules compute: the rollout's fused networks, the actor-critic's
closed-form log-probabilities, entropies and samples, tanh via sigmoid, and the per-state decoder's prefix sums."""

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent, Normal

import envs
from algorithms import builder
from algorithms.common.agent import EnvInfo
from algorithms.onpolicy.acting import FusedActing
from algorithms.onpolicy.networks import FAST_TANH_MIN_ELEMENTS, tanh
from algorithms.onpolicy.storage import TrajectoryBatch
from algorithms.varibad import VariBADAgent, VariBADConfig
from algorithms.varibad.vae import VAE, elbo_loss, horizon_mask
from tests.helpers import compose_config


def trained_agent(algo: str, env_name: str, *overrides: str) -> tuple[VariBADAgent, envs.MetaVecEnv]:
    cfg = compose_config(f"algo={algo}", f"env={env_name}", "progress=false", "algo.num_envs=4",
                         "algo.num_steps=40", "algo.precollect_frames=0", *overrides)
    setup = builder.build(cfg)
    agent, env = setup.agent, setup.env
    for _ in range(3):  # normalisers with real statistics, weights moved off their initialisation
        agent.train_iteration(env)
    return agent, env


@pytest.mark.parametrize(("algo", "env_name", "overrides"), [
    ("varibad", "gridworld", ()),
    ("rl2", "gridworld", ()),
    ("oracle", "gridworld", ()),
    ("posterior_sampling", "gridworld", ()),
    ("varibad", "pointrobot_sparse", ("algo.norm_actions_pre_sampling=true",)),
    ("varibad", "pointrobot_sparse", ("algo.policy_belief=mean", "algo.policy_layers=[16,16,8]")),
])
def test_fused_acting_equals_the_modules(algo, env_name, overrides):
    agent, env = trained_agent(algo, env_name, *overrides)
    assert agent.fused_acting
    P, belief_dim = agent.policy_obs_dim, agent.storage.policy_belief.shape[-1]
    fused = FusedActing(agent.policy, agent.encoder, agent.obs_norm, agent.belief_norm, P, belief_dim,
                        agent.cfg.policy_belief)
    gen = torch.Generator().manual_seed(3)
    hidden = agent._hidden + 0.3 * torch.randn(agent._hidden.shape, generator=gen)
    obs = agent._obs[:, :P]
    tasks = torch.as_tensor(env.tasks, dtype=torch.float32) if agent.uses_true_task else None
    belief = agent.belief_input(hidden, agent._held, tasks)
    if agent.cfg.policy_belief in ("mean", "mean_logvar"):
        torch.testing.assert_close(fused.belief(hidden), belief, rtol=1e-5, atol=1e-6)
    params, value = agent.policy.heads(agent.obs_norm(obs), agent.belief_norm(belief))
    fused_params, fused_value = fused.heads(obs, belief)
    torch.testing.assert_close(fused_params, params, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused_value, value, rtol=1e-4, atol=1e-5)
    action = agent.policy.act(agent.obs_norm(obs), agent.belief_norm(belief))[0]
    enc_action, reward = agent._encode_action(action), torch.randn(obs.shape[0], 1, generator=gen)
    torch.testing.assert_close(fused.encoder_step(enc_action, reward, agent._obs, hidden),
                               agent.encoder.step(enc_action, reward, agent._obs, hidden), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("override", ["algo.policy_activation=leaky_relu", "algo.policy_input_clip=5.0",
                                      "algo.encoder_layers_before_gru=[8]"])
def test_structures_fused_acting_cannot_take_fall_back_to_the_modules(override):
    agent, _ = trained_agent("varibad", "gridworld", override)
    assert not agent.fused_acting  # and it trained through the plain modules above


def test_first_ppo_ratio_after_a_fused_rollout_is_one():
    """The log-probabilities stored at acting time are those PPO recomputes (up to float rounding)."""
    agent, env = trained_agent("varibad", "gridworld")
    agent._collect(env)
    st = agent.storage
    T, N = st.num_steps, st.num_envs
    log_probs, _, values = agent.policy.evaluate_actions(st.policy_obs.reshape(T * N, -1),
                                                         st.policy_belief.reshape(T * N, -1),
                                                         st.actions.reshape(T * N))
    torch.testing.assert_close(log_probs, st.log_probs.reshape(-1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(values, st.values.reshape(-1), rtol=1e-4, atol=1e-5)


def policy_and_inputs(env_name: str, squash: bool = False):
    env = envs.make_meta_env(env_name, num_envs=6, seed=0)
    torch.manual_seed(0)
    cfg = VariBADConfig(num_envs=6, norm_actions_pre_sampling=squash,
                        reward_decoder="per_state_bernoulli" if env_name == "gridworld" else "mse")
    agent = VariBADAgent(cfg, EnvInfo.from_env(env), seed=0)
    gen = torch.Generator().manual_seed(1)
    policy = agent.policy
    obs = torch.randn(500, agent.policy_obs_dim, generator=gen)
    belief = torch.randn(500, agent.storage.policy_belief.shape[-1], generator=gen)
    with torch.no_grad():  # spread the logits so that no action has probability ~1
        policy.action_head.weight.mul_(50.0)
    return policy, obs, belief


@pytest.mark.parametrize(("env_name", "squash"), [("gridworld", False), ("pointrobot_sparse", False),
                                                  ("pointrobot_sparse", True)])
def test_closed_forms_equal_torch_distributions(env_name, squash):
    policy, obs, belief = policy_and_inputs(env_name, squash)
    dist, value = policy(obs, belief)
    actions = dist.sample()
    log_prob, entropy, value2 = policy.evaluate_actions(obs, belief, actions)
    torch.testing.assert_close(log_prob, dist.log_prob(actions))
    torch.testing.assert_close(entropy, dist.entropy())
    torch.testing.assert_close(value2, value)
    action, action_log_prob, _ = policy.act(obs, belief, deterministic=True)
    torch.testing.assert_close(action.to(actions.dtype), policy.mode(dist))
    torch.testing.assert_close(action_log_prob, dist.log_prob(action))
    assert isinstance(dist, Categorical if env_name == "gridworld" else Independent)


def test_categorical_samples_follow_the_probabilities():
    policy, obs, belief = policy_and_inputs("gridworld")
    row = (obs[:1].expand(40_000, -1), belief[:1].expand(40_000, -1))
    action, log_prob, _ = policy.act(*row, generator=torch.Generator().manual_seed(5))
    probs = torch.softmax(policy.heads(*row)[0][0], dim=-1).detach()
    frequencies = torch.bincount(action, minlength=probs.numel()).float() / action.numel()
    assert (frequencies - probs).abs().max() < 4 * (probs * (1 - probs) / action.numel()).sqrt().max() + 1e-3
    torch.testing.assert_close(log_prob, probs.log()[action])


def test_gaussian_samples_have_the_policy_mean_and_std():
    policy, obs, belief = policy_and_inputs("pointrobot_sparse")
    with torch.no_grad():
        policy.log_std.fill_(-0.7)
    row = (obs[:1].expand(40_000, -1), belief[:1].expand(40_000, -1))
    action, log_prob, _ = policy.act(*row, generator=torch.Generator().manual_seed(5))
    mean = policy.heads(*row)[0][0].detach()
    torch.testing.assert_close(action.mean(0), mean, atol=0.02, rtol=0)
    torch.testing.assert_close(action.std(0), torch.full_like(mean, np.exp(-0.7)), atol=0.02, rtol=0)
    torch.testing.assert_close(log_prob, Independent(Normal(mean, np.exp(-0.7)), 1).log_prob(action))


def test_tanh_via_sigmoid_matches_torch_tanh():
    x = torch.linspace(-12, 12, 3 * FAST_TANH_MIN_ELEMENTS, dtype=torch.float32).reshape(-1, 3).requires_grad_()
    y = tanh(x)
    torch.testing.assert_close(y, torch.tanh(x), rtol=0, atol=2.5e-7)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, 1 - torch.tanh(x.detach()) ** 2, rtol=0, atol=5e-7)
    small = torch.randn(16, 8)
    assert torch.equal(tanh(small), torch.tanh(small))  # small tensors: torch's own kernel


@pytest.mark.parametrize("horizon", ["all", "past", "future", "next"])
@pytest.mark.parametrize("subsample_elbos", [None, 7])
def test_per_state_reward_loss_by_prefix_sums_equals_the_pairwise_sum(horizon, subsample_elbos):
    """rec_reward of the per-state Bernoulli decoder = sum over (ELBO term t, transition j) pairs in the horizon of
    the BCE of cell s_j's logit under latent t (the definition, computed here pair by pair)."""
    cfg = VariBADConfig(decode_horizon=horizon, subsample_elbos=subsample_elbos)
    torch.manual_seed(0)
    vae = VAE(cfg, obs_dim=2, action_dim=5, task_dim=2, num_states=25)
    T, B = 12, 4
    gen = torch.Generator().manual_seed(2)
    state_index = torch.randint(25, (T, B), generator=gen)
    rewards = torch.where(torch.rand(T, B, 1, generator=gen) < 0.3, 1.0, -0.1)
    lengths = torch.tensor([12, 9, 5, 12])
    batch = TrajectoryBatch(prev_obs=torch.randn(T, B, 2, generator=gen),
                            actions=torch.nn.functional.one_hot(torch.randint(5, (T, B), generator=gen), 5).float(),
                            rewards=rewards, next_obs=torch.randn(T, B, 2, generator=gen), state_index=state_index,
                            tasks=torch.randn(B, 2, generator=gen), lengths=lengths)
    torch.manual_seed(9)
    out = elbo_loss(vae, batch, cfg, deterministic_latent=True)
    mean, _ = vae.encoder.encode_trajectories(batch.actions, batch.rewards, batch.next_obs)
    latent = mean.gather(0, out.elbo_times[..., None].expand(-1, -1, mean.shape[-1]))
    logits = vae.reward_decoder(latent)  # (n, B, S)
    j = torch.arange(T)[:, None].expand(T, B)
    weights = horizon_mask(out.elbo_times, j, horizon) & (j < lengths)[None]
    expected = torch.zeros(logits.shape[:2])
    for n in range(logits.shape[0]):
        for b in range(B):
            for step in range(T):
                if weights[n, step, b]:
                    logit = logits[n, b, state_index[step, b]]
                    expected[n, b] += torch.nn.functional.binary_cross_entropy_with_logits(
                        logit, (rewards[step, b, 0] == 1.0).float())
    valid = out.elbo_times <= lengths[None] if subsample_elbos is None else torch.ones_like(expected, dtype=bool)
    torch.testing.assert_close(out.rec_reward, expected * valid, rtol=1e-5, atol=1e-5)
