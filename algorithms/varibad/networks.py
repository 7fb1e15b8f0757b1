"""VariBAD's decoders p(r | m, s'), p(s' | m, s, a) and p(task | m) (paper sec. 3.2, App. E).

Their layers keep torch's ``nn.Linear`` initialisation by default, as the reference's ``models/decoder.py`` does
(``init="orthogonal"`` is the alternative, ``algo.vae_init``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from algorithms.onpolicy.networks import FeatureExtractor, mlp


class PerStateRewardDecoder(nn.Module):
    """One Bernoulli head per discrete state: ``logit p(r_j = goal reward | m)`` for every cell at once.

    The reference GridWorld decoder (App. E: reward decoder [32, 32], "multihead for reward").
    """

    def __init__(self, latent_dim: int, num_states: int, layers: Sequence[int], init: str = "default") -> None:
        super().__init__()
        self.net = mlp(latent_dim, layers, output_dim=num_states, act="relu", init=init)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.net(latent)


def transition_part(net: nn.Sequential, features: torch.Tensor, latent_dim: int) -> torch.Tensor:
    """The transition's share of the first layer, ``W_f f_j + b``: ``features (D, B, F)`` -> ``(D, B, H)``."""
    first = net[0]
    assert isinstance(first, nn.Linear)
    flat = torch.addmm(first.bias, features.reshape(-1, features.shape[-1]), first.weight[:, latent_dim:].T)
    return flat.reshape(*features.shape[:-1], -1)


def latent_pairs(net: nn.Sequential, latent: torch.Tensor, per_transition: torch.Tensor) -> torch.Tensor:
    """``net(cat[latent_t, f_j])`` for every pair (t, j) from ``latent (n, B, L)`` and
    ``per_transition = transition_part(net, f) (D, B, H)``: ``(n, D, B, out)``."""
    per_latent = latent @ net[0].weight[:, :latent.shape[-1]].T  # (n, B, H)
    return net[1:](per_latent[:, None] + per_transition[None])


def decode_pairs(net: nn.Sequential, latent: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """``net(cat[latent_t, features_j])`` for every pair (t, j): ``latent (n, B, L)``, ``features (D, B, F)``
    -> ``(n, D, B, out)``.

    The first layer is linear, so ``W [m_t; f_j] + b = W_m m_t + (W_f f_j + b)``: each part is computed once and
    the pairs are formed by a broadcast add. The same function as decoding the concatenated pairs, without
    embedding each transition and multiplying the first layer n times (the ELBO decodes all n x D pairs).
    """
    return latent_pairs(net, latent, transition_part(net, features, latent.shape[-1]))


class RewardDecoder(nn.Module):
    """``r_hat(m, s'_j [, s_j, a_j])``, trained by squared error. ``s_j`` and ``s'_j`` go through ONE state
    embedding, as in the reference's ``models/decoder.py`` (``state_encoder`` for both)."""

    def __init__(self, latent_dim: int, obs_dim: int, action_dim: int, state_embed_dim: int,
                 action_embed_dim: int, layers: Sequence[int], input_prev_state: bool, input_action: bool,
                 init: str = "default") -> None:
        super().__init__()
        self.state_embed = FeatureExtractor(obs_dim, state_embed_dim, "relu")
        self.input_prev_state = input_prev_state
        self.action_embed = FeatureExtractor(action_dim, action_embed_dim, "relu") if input_action else None
        in_dim = latent_dim + state_embed_dim * (2 if input_prev_state else 1)
        in_dim += action_embed_dim if input_action else 0
        self.net = mlp(in_dim, layers, output_dim=1, act="relu", init=init)

    def forward(self, latent: torch.Tensor, next_obs: torch.Tensor, prev_obs: torch.Tensor,
                actions: torch.Tensor) -> torch.Tensor:
        parts = [latent, self.state_embed(next_obs)]
        if self.input_prev_state:
            parts.append(self.state_embed(prev_obs))
        if self.action_embed is not None:
            parts.append(self.action_embed(actions))
        return self.net(torch.cat(parts, dim=-1)).squeeze(-1)

    def transition_features(self, next_obs: torch.Tensor, prev_obs: torch.Tensor,
                            actions: torch.Tensor) -> torch.Tensor:
        """The decoder's non-latent input of each transition, ``(D, B, F)``."""
        parts = [self.state_embed(next_obs)]
        if self.input_prev_state:
            parts.append(self.state_embed(prev_obs))
        if self.action_embed is not None:
            parts.append(self.action_embed(actions))
        return torch.cat(parts, dim=-1)

    def forward_pairs(self, latent: torch.Tensor, next_obs: torch.Tensor, prev_obs: torch.Tensor,
                      actions: torch.Tensor) -> torch.Tensor:
        """Predictions for every (latent_t, transition_j) pair: ``(n, B, L)`` x ``(D, B, .)`` -> ``(n, D, B)``;
        equal to :meth:`forward` on the expanded pairs (see :func:`decode_pairs`)."""
        return decode_pairs(self.net, latent, self.transition_features(next_obs, prev_obs, actions)).squeeze(-1)


class StateDecoder(nn.Module):
    """``s'_hat(m, s_j, a_j)``, trained by squared error."""

    def __init__(self, latent_dim: int, obs_dim: int, action_dim: int, state_embed_dim: int,
                 action_embed_dim: int, layers: Sequence[int], init: str = "default") -> None:
        super().__init__()
        self.state_embed = FeatureExtractor(obs_dim, state_embed_dim, "relu")
        self.action_embed = FeatureExtractor(action_dim, action_embed_dim, "relu")
        self.net = mlp(latent_dim + state_embed_dim + action_embed_dim, layers, output_dim=obs_dim, act="relu",
                       init=init)

    def forward(self, latent: torch.Tensor, prev_obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([latent, self.state_embed(prev_obs), self.action_embed(actions)], dim=-1))

    def transition_features(self, prev_obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The decoder's non-latent input of each transition, ``(D, B, F)``."""
        return torch.cat([self.state_embed(prev_obs), self.action_embed(actions)], dim=-1)

    def forward_pairs(self, latent: torch.Tensor, prev_obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``(n, B, L)`` x ``(D, B, .)`` -> ``(n, D, B, obs_dim)``; equal to :meth:`forward` on the expanded pairs."""
        return decode_pairs(self.net, latent, self.transition_features(prev_obs, actions))


class TaskDecoder(nn.Module):
    """``task_hat(m)``, trained by squared error on the task vector."""

    def __init__(self, latent_dim: int, task_dim: int, layers: Sequence[int], init: str = "default") -> None:
        super().__init__()
        self.net = mlp(latent_dim, layers, output_dim=task_dim, act="relu", init=init)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.net(latent)
