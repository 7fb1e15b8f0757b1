"""Actor-critic conditioned on the environment state and the agent's belief (VariBAD sec. 3, App. E).

Two ways in: :meth:`BeliefConditionedActorCritic.forward` returns a ``torch.distributions`` object (the readable
API, used by tests and analysis), while :meth:`~BeliefConditionedActorCritic.act` (rollouts) and
:meth:`~BeliefConditionedActorCritic.evaluate_actions` (PPO) compute the same log-probabilities, entropies and
samples in closed form. Building a distribution object, validating it and sampling through it costs more than the
whole network on GridWorld's 16-env batches, and the rollout runs it once per env step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal
from torch.nn import functional as F

from algorithms.onpolicy.networks import INITIALISERS, FeatureExtractor, mlp, run_sequential


class BeliefConditionedActorCritic(nn.Module):
    """``pi(a | s, b)`` and ``V(s, b)``: state and belief are each embedded (Linear + act), concatenated and fed
    to separate actor and critic MLPs, as in the reference implementation's policy."""

    def __init__(
        self,
        obs_dim: int,
        belief_dim: int,
        action_space: gym.spaces.Space,
        hidden: Sequence[int],
        state_embed_dim: int = 0,
        belief_embed_dim: int = 0,
        act: str = "tanh",
        init: str = "normc",
        squash_action_mean: bool = False,
        value_head_init: str = "default",
    ) -> None:
        super().__init__()
        self.state_embed = FeatureExtractor(obs_dim, state_embed_dim, act) if state_embed_dim else None
        self.belief_embed = FeatureExtractor(belief_dim, belief_embed_dim, act) if belief_embed_dim else None
        in_dim = (state_embed_dim or obs_dim) + (belief_embed_dim or belief_dim)
        self.actor = mlp(in_dim, hidden, act=act, init=init)
        self.critic = mlp(in_dim, hidden, act=act, init=init)
        last = hidden[-1] if hidden else in_dim
        # the reference's critic_linear keeps torch's nn.Linear initialisation (models/policy.py)
        self.value_head = INITIALISERS[value_head_init](nn.Linear(last, 1), 1.0)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            self.action_head = INITIALISERS["orthogonal"](nn.Linear(last, int(action_space.n)), 0.01)
        else:
            # the reference's DiagGaussian: mean head normc with gain 1, log-std parameter starting at log 1
            action_dim = int(action_space.shape[0])
            self.action_head = INITIALISERS["normc"](nn.Linear(last, action_dim), 1.0)
            self.log_std = nn.Parameter(torch.zeros(action_dim))
        #: tanh on the Gaussian's mean before sampling (the reference's norm_actions_pre_sampling)
        self.squash_action_mean = squash_action_mean

    def features(self, obs: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        s = self.state_embed.forward(obs) if self.state_embed is not None else obs
        b = self.belief_embed.forward(belief) if self.belief_embed is not None else belief
        return torch.cat([s, b], dim=-1)

    def forward(self, obs: torch.Tensor, belief: torch.Tensor) -> tuple[Distribution, torch.Tensor]:
        params, value = self.heads(obs, belief)
        if self.discrete:
            return Categorical(logits=params), value
        return Independent(Normal(params, self.log_std.exp().expand_as(params)), 1), value

    def value(self, obs: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        return self.value_head(self.critic(self.features(obs, belief))).squeeze(-1)

    def heads(self, obs: torch.Tensor, belief: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The action distribution's parameters (logits, or the Gaussian's mean) and the value."""
        x = self.features(obs, belief)
        head, value_head = self.action_head, self.value_head
        out = F.linear(run_sequential(self.actor, x), head.weight, head.bias)
        value = F.linear(run_sequential(self.critic, x), value_head.weight, value_head.bias).squeeze(-1)
        if not self.discrete and self.squash_action_mean:
            out = torch.tanh(out)
        return out, value

    def _log_prob_entropy(self, params: torch.Tensor, actions: torch.Tensor,
                          with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.discrete:
            log_p = torch.log_softmax(params, dim=-1)
            log_prob = log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            return log_prob, (-(log_p.exp() * log_p).sum(-1) if with_entropy else None)
        # diagonal Gaussian with a state-independent log-std (the reference's DiagGaussian)
        log_std = self.log_std
        z = (actions - params) * torch.exp(-log_std)
        log_prob = (-0.5 * z.pow(2) - log_std).sum(-1) - 0.5 * math.log(2 * math.pi) * params.shape[-1]
        if not with_entropy:
            return log_prob, None
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum().expand(params.shape[:-1])
        return log_prob, entropy

    def act(self, obs: torch.Tensor, belief: torch.Tensor, deterministic: bool = False,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(action, log_prob, value)``: a sample of ``pi(. | s, b)`` (or its mode) with its log-probability.

        Categorical samples by inverting the CDF with one uniform draw per env; Gaussians as mean + std * noise.
        """
        params, value = self.heads(obs, belief)
        return (*self.sample_from(params, deterministic, generator), value)

    def sample_from(self, params: torch.Tensor, deterministic: bool = False,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(action, log_prob)`` from the distribution's parameters (see :meth:`act`)."""
        if self.discrete:
            log_p = torch.log_softmax(params, dim=-1)
            if deterministic:
                action = params.argmax(dim=-1)
            else:
                u = torch.rand(params.shape[0], 1, generator=generator, device=params.device, dtype=params.dtype)
                # the first action whose CDF exceeds u; the clamp guards a last CDF entry that rounds below u
                action = (log_p.exp().cumsum(dim=-1) < u).sum(dim=-1).clamp_(max=params.shape[-1] - 1)
            return action, log_p.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        action = params if deterministic else params + self.log_std.exp() * torch.randn(
            params.shape, generator=generator, device=params.device, dtype=params.dtype)
        log_prob, _ = self._log_prob_entropy(params, action, with_entropy=False)
        return action, log_prob

    def evaluate_actions(self, obs: torch.Tensor, belief: torch.Tensor,
                         actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log_prob, entropy, value)`` of given actions, as PPO needs them (same values as :meth:`forward`'s
        distribution gives)."""
        params, value = self.heads(obs, belief)
        log_prob, entropy = self._log_prob_entropy(params, actions, with_entropy=True)
        assert entropy is not None
        return log_prob, entropy, value

    @staticmethod
    def mode(dist: Distribution) -> torch.Tensor:
        """The deterministic action used at meta-test by default (design.md §4)."""
        if isinstance(dist, Categorical):
            return dist.logits.argmax(dim=-1)
        return dist.mean
