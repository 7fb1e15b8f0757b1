"""What the reference implementations compute, where it shapes learning curves: GAE at episode ends, initialisation,
VAE batches, reward normalisation, and per-env configs (lmzintgraf/varibad, katerakelly/oyster)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from algorithms.common.agent import EnvInfo
from algorithms.onpolicy.normalization import RewardNormalizer
from algorithms.onpolicy.storage import RolloutStorage, TrajectoryBuffer
from algorithms.varibad import VariBADAgent, VariBADConfig, load_config
from envs.base import BatchedTaskEnv, MetaVecEnv
from tests.helpers import compose_config


def reference_gae(rewards, values, last_value, bamdp_done, time_limit, gamma, lam):
    """The reference's ``online_storage.compute_returns`` with GAE and ``use_proper_time_limits=True``, transcribed:
    ``masks`` is 0 after the BAMDP's end, ``bad_masks`` 0 after a time-limit end (``TimeLimitMask``)."""
    T = len(rewards)
    value_preds = np.append(values, last_value)
    masks = np.append(1.0, 1.0 - bamdp_done)  # masks[t + 1] belongs to step t
    bad_masks = np.append(1.0, 1.0 - time_limit)
    adv, gae = np.zeros(T), 0.0
    for step in reversed(range(T)):
        delta = rewards[step] + gamma * value_preds[step + 1] * masks[step + 1] - value_preds[step]
        gae = delta + gamma * lam * masks[step + 1] * gae
        gae = gae * bad_masks[step + 1]
        adv[step] = gae
    return adv


def test_gae_cuts_time_limits_only_a_fall_inside_and_at_the_end_of_the_bamdp_is_not_cut():
    T, gamma, lam = 9, 0.97, 0.9
    st = RolloutStorage(T, 1, 2, 2, 2, (1,), 1, 4, discrete=False)
    gen = torch.Generator().manual_seed(0)
    st.rewards[:, 0] = torch.rand(T, generator=gen)
    st.values[:, 0] = torch.rand(T, generator=gen)
    st.last_values[:] = 0.7
    # episode 1 ends by its time limit after step 2, episode 2 by a fall after step 4, episode 3 (the last) by a
    # fall after step 7: the BAMDP is over; step 8 starts the next task's first episode
    time_limit = np.zeros(T)
    time_limit[2] = 1
    bamdp_done = np.zeros(T)
    bamdp_done[7] = 1
    st.time_limit_ends[:, 0] = torch.as_tensor(time_limit, dtype=torch.bool)
    st.dones[:, 0] = torch.as_tensor(bamdp_done, dtype=torch.bool)
    st.compute_gae(gamma, lam, cut_at_time_limits=True)
    expected = reference_gae(st.rewards[:, 0].numpy(), st.values[:, 0].numpy(), 0.7, bamdp_done, time_limit,
                             gamma, lam)
    np.testing.assert_allclose(st.advantages[:, 0].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert st.advantages[2, 0] == 0  # the time limit: a truncation
    assert st.advantages[4, 0] != 0  # the fall inside the BAMDP bootstraps from the next episode
    torch.testing.assert_close(st.advantages[7, 0], st.rewards[7, 0] - st.values[7, 0])  # a terminal step


class FallingEnv(BatchedTaskEnv):
    """Copy 0 falls on its 2nd step of every episode; copy 1 never does. Observations count the steps."""

    single_observation_space = spaces.Box(-np.inf, np.inf, (1,), np.float32)
    single_action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    task_dim = 1
    state_attributes = ("count",)

    def __init__(self, num_envs: int, rng: np.random.Generator) -> None:
        super().__init__(num_envs, rng)
        self.count = np.zeros(num_envs)

    def sample_tasks(self, n, rng):
        return rng.uniform(size=(n, 1)).astype(np.float32)

    def reset_state(self, idx):
        self.count[idx] = 0
        return self.count[idx, None].astype(np.float32)

    def step(self, actions):
        self.count += 1
        terminated = np.array([self.count[0] == 2, False])
        return (self.count[:, None].astype(np.float32), np.ones(2, np.float32), terminated,
                {"success": np.zeros(2, bool)})


def falling_env():
    return MetaVecEnv(FallingEnv(2, np.random.default_rng(0)), horizon=4, episodes_per_task=2,
                      rng=np.random.default_rng(1))


def test_meta_env_tells_a_time_limit_from_a_fall():
    env = falling_env()
    env.reset()
    seen = []
    for _ in range(8):
        _, _, _, _, info = env.step(np.zeros((2, 1), np.float32))
        seen.append((info["episode_done"].copy(), info["time_limit"].copy(), info["mdp_terminated"].copy()))
    done, limit, fell = (np.array(x) for x in zip(*seen, strict=True))
    # copy 0: falls after 2 steps in each episode; copy 1: time limit after 4
    np.testing.assert_array_equal(done[:, 0], [0, 1, 0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(fell[:, 0], done[:, 0])
    assert not limit[:, 0].any()
    np.testing.assert_array_equal(limit[:, 1], [0, 0, 0, 1, 0, 0, 0, 1])


def test_varibad_rollout_stores_time_limit_ends_not_falls():
    env = falling_env()
    cfg = VariBADConfig(num_envs=2, num_steps=8, precollect_frames=0, reward_decoder="mse", policy_layers=[8],
                        gru_hidden_size=8, vae_batch_trajectories=2)
    agent = VariBADAgent(cfg, EnvInfo.from_env(env), seed=0)
    agent._collect(env)
    st = agent.storage
    assert not st.time_limit_ends[:, 0].any()
    np.testing.assert_array_equal(st.time_limit_ends[:, 1].numpy(), [0, 0, 0, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(st.dones[:, 0].numpy(), [0, 0, 0, 1, 0, 0, 0, 1])


def _linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def _has_torch_default_init(layer: nn.Linear) -> bool:
    """torch's ``nn.Linear`` draws weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)); orthogonal and normc
    zero the bias."""
    bound = 1.0 / np.sqrt(layer.in_features)
    return bool(layer.bias.abs().max() > 0 and layer.bias.abs().max() <= bound
                and layer.weight.abs().max() <= bound)


@pytest.mark.parametrize("reward_decoder", ["per_state_bernoulli", "mse"])
def test_decoders_encoder_layers_and_value_head_keep_torch_default_init(reward_decoder):
    import envs

    env = envs.make_meta_env("gridworld", num_envs=2, seed=0)
    cfg = VariBADConfig(num_envs=2, reward_decoder=reward_decoder, decode_state=True, decode_task=True,
                        encoder_layers_before_gru=[16], encoder_layers_after_gru=[16])
    agent = VariBADAgent(cfg, EnvInfo.from_env(env), seed=0)
    vae = agent.vae
    layers = [*_linears(vae.reward_decoder), *_linears(vae.state_decoder), *_linears(vae.task_decoder),
              *_linears(vae.encoder.before_gru), *_linears(vae.encoder.after_gru)]
    assert len(layers) >= 10 and all(_has_torch_default_init(layer) for layer in layers)
    assert _has_torch_default_init(agent.policy.value_head)
    # the policy's hidden layers stay normc (App. E "policy initialisation")
    assert all(layer.bias.abs().max() == 0 for layer in _linears(agent.policy.actor))
    # the alternative, by option
    alt = VariBADAgent(VariBADConfig(num_envs=2, reward_decoder=reward_decoder, vae_init="orthogonal",
                                     value_head_init="orthogonal"), EnvInfo.from_env(env), seed=0)
    assert all(layer.bias.abs().max() == 0 for layer in _linears(alt.vae.reward_decoder.net))
    assert alt.policy.value_head.bias.abs().max() == 0


def _buffer(n_trajectories: int) -> TrajectoryBuffer:
    buf = TrajectoryBuffer(100, 3, 1, 1, 1, with_state_index=False)
    ids = np.arange(n_trajectories, dtype=np.float32)
    z = np.zeros((n_trajectories, 3, 1), np.float32)
    buf.add(z, z, z, z, None, ids[:, None], np.full(n_trajectories, 3))
    return buf


def test_vae_batch_is_drawn_without_replacement_and_at_most_the_buffer():
    rng = np.random.default_rng(0)
    small = _buffer(5).sample(25, rng)
    assert sorted(small.tasks[:, 0].tolist()) == [0, 1, 2, 3, 4]  # every trajectory once, a batch of 5
    for _ in range(20):
        batch = _buffer(40).sample(25, rng)
        assert len(batch.tasks) == 25 and len(set(batch.tasks[:, 0].tolist())) == 25


def test_reward_normaliser_zeroes_a_finished_return_before_the_statistics_see_it():
    norm = RewardNormalizer(2, gamma=0.9)
    norm(np.array([2.0, 2.0], np.float32), np.array([True, False]))
    # the reference's vec_normalize: ret = ret * gamma + r; ret[done] = 0; then ret_rms.update(ret)
    np.testing.assert_allclose(norm.rms.mean, 1.0, rtol=1e-3)  # mean of (0, 2), not of (2, 2)
    np.testing.assert_array_equal(norm.returns, [0.0, 2.0])


def test_pearl_walker_context_includes_the_next_state_as_oyster_json():
    cfg = compose_config("algo=pearl", "env=walker_params")
    assert cfg.algo.context_next_obs is True
    for env in ("cheetah_dir", "pointrobot_sparse", "ant_goal"):  # oyster's default elsewhere
        assert compose_config("algo=pearl", f"env={env}").algo.context_next_obs is False


def test_ml1_trains_with_two_episodes_per_task_and_three_is_an_option():
    for env in ("ml1_reach", "ml1_push", "ml1_pick_place"):
        cfg = compose_config("algo=varibad", f"env={env}")
        assert load_config(cfg.algo).num_envs == 16
        from envs import get_spec
        assert (cfg.env.episodes_per_task or get_spec(env).episodes_per_task) == 2
    assert compose_config("env=ml1_push", "env.episodes_per_task=3").env.episodes_per_task == 3


# the last commit of the reference's config/<family>/args_<env>_varibad.py: num_vae_updates, tbptt_stepsize,
# vae_subsample_elbos, vae_subsample_decodes, encoder_max_grad_norm, decoder_max_grad_norm
REFERENCE_VAE_TRAINING = {
    "gridworld": (3, None, None, None, None, None),
    "pointrobot_sparse": (3, None, None, None, None, None),
    "cheetah_dir": (1, 50, 50, 50, 1.0, 1.0),
    "cheetah_vel": (1, 50, 50, 50, 1.0, 1.0),
    "ant_dir": (1, 50, 50, 50, 1.0, 1.0),
    "ant_goal": (5, None, None, None, 1.0, 1.0),  # its final config; an earlier one had 1 update, tbptt, subsampling
    "humanoid_dir": (10, None, 100, 100, 1.0, 1.0),
    "walker_params": (1, 50, 50, 50, 1.0, 1.0),
}


@pytest.mark.parametrize("env", sorted(REFERENCE_VAE_TRAINING))
def test_varibad_vae_training_is_the_reference_final_config(env):
    a = compose_config("algo=varibad", f"env={env}").algo
    assert (a.vae_updates_per_iteration, a.tbptt, a.subsample_elbos, a.subsample_decodes, a.encoder_max_grad_norm,
            a.decoder_max_grad_norm) == REFERENCE_VAE_TRAINING[env]
