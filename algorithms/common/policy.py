"""Actor-critic conditioned on the environment state and the agent's belief (VariBAD sec. 3, App. E)."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from algorithms.common.networks import INITIALISERS, FeatureExtractor, mlp


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
    ) -> None:
        super().__init__()
        self.state_embed = FeatureExtractor(obs_dim, state_embed_dim, act) if state_embed_dim else None
        self.belief_embed = FeatureExtractor(belief_dim, belief_embed_dim, act) if belief_embed_dim else None
        in_dim = (state_embed_dim or obs_dim) + (belief_embed_dim or belief_dim)
        self.actor = mlp(in_dim, hidden, act=act, init=init)
        self.critic = mlp(in_dim, hidden, act=act, init=init)
        last = hidden[-1] if hidden else in_dim
        self.value_head = INITIALISERS["orthogonal"](nn.Linear(last, 1), 1.0)
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
        s = self.state_embed(obs) if self.state_embed is not None else obs
        b = self.belief_embed(belief) if self.belief_embed is not None else belief
        return torch.cat([s, b], dim=-1)

    def forward(self, obs: torch.Tensor, belief: torch.Tensor) -> tuple[Distribution, torch.Tensor]:
        x = self.features(obs, belief)
        out = self.action_head(self.actor(x))
        value = self.value_head(self.critic(x)).squeeze(-1)
        if self.discrete:
            return Categorical(logits=out), value
        mean = torch.tanh(out) if self.squash_action_mean else out
        return Independent(Normal(mean, self.log_std.exp().expand_as(mean)), 1), value

    def value(self, obs: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        return self.value_head(self.critic(self.features(obs, belief))).squeeze(-1)

    @staticmethod
    def mode(dist: Distribution) -> torch.Tensor:
        """The deterministic action used at meta-test by default (SPEC sec. 4)."""
        if isinstance(dist, Categorical):
            return dist.logits.argmax(dim=-1)
        return dist.mean
