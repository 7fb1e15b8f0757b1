"""PPO's value loss against its closed forms (the VariBAD reference's algorithms/ppo.py)."""

import pytest
import torch

from algorithms.onpolicy.ppo import PPOConfig, value_loss_fn


def huber(x: torch.Tensor) -> torch.Tensor:
    """Smooth L1 with threshold 1: 0.5 x^2 inside, |x| - 0.5 outside."""
    return torch.where(x.abs() < 1, 0.5 * x.pow(2), x.abs() - 0.5)


def config(value_loss: str, clipped: bool) -> PPOConfig:
    return PPOConfig(epochs=1, num_minibatches=1, clip=0.1, value_loss_coef=0.5, entropy_coef=0.0,
                     clipped_value_loss=clipped, value_loss=value_loss)


VALUES = torch.tensor([0.0, 0.5, 3.0, -2.0, 1.05])
OLD = torch.tensor([0.2, 0.45, 0.0, -1.0, 1.0])
RETURNS = torch.tensor([0.3, 2.5, 0.0, -2.2, -0.5])


def test_huber_value_loss_is_the_closed_form():
    # both branches of the Huber loss occur in this batch
    assert (VALUES - RETURNS).abs().min() < 1 < (VALUES - RETURNS).abs().max()
    loss = value_loss_fn(VALUES, OLD, RETURNS, config("huber", clipped=False))
    torch.testing.assert_close(loss, huber(VALUES - RETURNS).mean())
    clipped_values = OLD + (VALUES - OLD).clamp(-0.1, 0.1)
    loss = value_loss_fn(VALUES, OLD, RETURNS, config("huber", clipped=True))
    torch.testing.assert_close(loss, 0.5 * torch.max(huber(VALUES - RETURNS), huber(clipped_values - RETURNS)).mean())


def test_mse_value_loss_is_the_closed_form():
    clipped_values = OLD + (VALUES - OLD).clamp(-0.1, 0.1)
    torch.testing.assert_close(value_loss_fn(VALUES, OLD, RETURNS, config("mse", clipped=False)),
                               0.5 * (VALUES - RETURNS).pow(2).mean())
    torch.testing.assert_close(value_loss_fn(VALUES, OLD, RETURNS, config("mse", clipped=True)),
                               0.5 * torch.max((VALUES - RETURNS).pow(2), (clipped_values - RETURNS).pow(2)).mean())
    # the two losses differ on this batch (large errors): the option is not a no-op
    assert value_loss_fn(VALUES, OLD, RETURNS, config("mse", False)) != value_loss_fn(
        VALUES, OLD, RETURNS, config("huber", False))


def test_unknown_value_loss_is_refused():
    with pytest.raises(ValueError, match="huber"):
        value_loss_fn(VALUES, OLD, RETURNS, config("l1", clipped=False))


def test_varibad_uses_the_configured_value_loss():
    import envs
    from algorithms.common.agent import EnvInfo
    from algorithms.varibad import VariBADAgent, VariBADConfig

    env = envs.make_meta_env("gridworld", num_envs=2, seed=0)
    for choice in ("huber", "mse"):
        agent = VariBADAgent(VariBADConfig(num_envs=2, value_loss=choice), EnvInfo.from_env(env), seed=0)
        assert agent.ppo_cfg.value_loss == choice
    assert VariBADConfig().value_loss == "huber"  # the reference's ppo_use_huberloss default


def test_gaussian_policy_head_follows_the_reference():
    """normc mean head with gain 1 (rows of norm 1), log-std 0, optional tanh on the mean before sampling."""
    import gymnasium as gym

    from algorithms.onpolicy.policy import BeliefConditionedActorCritic

    space = gym.spaces.Box(-1, 1, (6,))
    torch.manual_seed(0)
    plain = BeliefConditionedActorCritic(4, 3, space, [16], init="normc")
    torch.testing.assert_close(plain.action_head.weight.norm(dim=1), torch.ones(6))
    assert torch.all(plain.action_head.bias == 0) and torch.all(plain.log_std == 0)
    torch.manual_seed(0)
    squashed = BeliefConditionedActorCritic(4, 3, space, [16], init="normc", squash_action_mean=True)
    obs, belief = 10 * torch.randn(5, 4), 10 * torch.randn(5, 3)
    raw_mean = plain(obs, belief)[0].mean
    torch.testing.assert_close(squashed(obs, belief)[0].mean, torch.tanh(raw_mean))
    assert raw_mean.abs().max() > 1  # the raw mean leaves [-1, 1] here, so the squash is not a no-op


def test_policy_inputs_are_not_clipped_by_default():
    from algorithms.onpolicy.normalization import InputNormalizer
    from algorithms.varibad import VariBADConfig

    assert VariBADConfig().policy_input_clip is None
    data = torch.cat([torch.zeros(999, 1), torch.full((1, 1), 1000.0)])
    unclipped, clipped = InputNormalizer(1, clip=None), InputNormalizer(1, clip=10.0)
    for norm in (unclipped, clipped):
        norm.update(data)
    outlier = torch.tensor([[1000.0]])
    assert unclipped(outlier).item() > 10 and clipped(outlier).item() == 10.0
