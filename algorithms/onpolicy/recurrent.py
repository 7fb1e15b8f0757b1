"""The recurrent belief encoder shared by VariBAD and RL^2 (VariBAD paper sec. 3 and 5, App. E).

A GRU runs over embedded transitions ``(a_t, r_t, s'_t)``; a linear head maps its hidden state to the
parameters (mean, log-variance) of the approximate posterior ``q(m | tau_:t)``. The head applied to the
all-zero initial hidden state gives the prior ``q(m)`` at ``t = 0``, so "belief = head(h)" holds at every t.
RL^2 uses the same module with a ReLU on the latent and its outputs read as a deterministic embedding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from algorithms.onpolicy.gru import gru_sequence
from algorithms.onpolicy.networks import FeatureExtractor, mlp, run_sequential


class RecurrentEncoder(nn.Module):
    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        latent_dim: int,
        hidden_size: int,
        action_embed_dim: int,
        state_embed_dim: int,
        reward_embed_dim: int,
        layers_before_gru: Sequence[int] = (),
        layers_after_gru: Sequence[int] = (),
        latent_activation: str = "none",
        init: str = "default",
    ) -> None:
        super().__init__()
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.hidden_size, self.latent_dim = hidden_size, latent_dim
        self.action_embed = FeatureExtractor(action_dim, action_embed_dim, "relu")
        self.state_embed = FeatureExtractor(obs_dim, state_embed_dim, "relu")
        self.reward_embed = FeatureExtractor(1, reward_embed_dim, "relu")
        embed_dim = action_embed_dim + state_embed_dim + reward_embed_dim
        if embed_dim == 0:
            raise ValueError("the encoder needs at least one of action/state/reward embedding dims > 0")
        self.before_gru = (mlp(embed_dim, layers_before_gru, act="relu", init=init) if layers_before_gru
                           else nn.Identity())
        self.has_layers_before_gru = bool(layers_before_gru)
        gru_input = layers_before_gru[-1] if layers_before_gru else embed_dim
        self.gru = nn.GRU(gru_input, hidden_size)
        for name, param in self.gru.named_parameters():
            if "bias" in name:
                nn.init.zeros_(param)
            else:
                nn.init.orthogonal_(param)
        self.after_gru = (mlp(hidden_size, layers_after_gru, act="relu", init=init) if layers_after_gru
                          else nn.Identity())
        head_input = layers_after_gru[-1] if layers_after_gru else hidden_size
        self.fc_mean = nn.Linear(head_input, latent_dim)
        self.fc_logvar = nn.Linear(head_input, latent_dim)
        if latent_activation not in ("none", "relu"):
            raise ValueError(f"latent_activation must be 'none' or 'relu', got {latent_activation!r}")
        self.latent_activation = latent_activation

    # ------------------------------------------------------------------ pieces
    def embed(self, actions: torch.Tensor, rewards: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Embed transitions; ``actions`` already one-hot for discrete spaces, ``rewards`` shape ``(..., 1)``."""
        parts = [(self.action_embed, actions), (self.state_embed, next_obs), (self.reward_embed, rewards)]
        x = torch.cat([embed.forward(v) for embed, v in parts if embed.output_dim > 0], dim=-1)
        return self.before_gru(x) if self.has_layers_before_gru else x

    def head(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Belief parameters (mean, logvar) from GRU hidden states of any leading shape."""
        h = run_sequential(self.after_gru, hidden) if isinstance(self.after_gru, nn.Sequential) else hidden
        mean = F.linear(h, self.fc_mean.weight, self.fc_mean.bias)
        logvar = F.linear(h, self.fc_logvar.weight, self.fc_logvar.bias)
        if self.latent_activation == "relu":
            mean, logvar = torch.relu(mean), torch.relu(logvar)
        return mean, logvar

    def initial_hidden(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.hidden_size, device=self.fc_mean.weight.device)

    # ------------------------------------------------------------------ online (one step at a time)
    def step(self, actions: torch.Tensor, rewards: torch.Tensor, next_obs: torch.Tensor,
             hidden: torch.Tensor) -> torch.Tensor:
        """One GRU step on a batch of transitions: the next hidden state, shape ``(B, hidden)``."""
        x = self.embed(actions, rewards, next_obs)
        g = self.gru
        return torch.gru_cell(x, hidden, g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0)

    # ------------------------------------------------------------------ whole sequences
    def encode_trajectories(self, actions: torch.Tensor, rewards: torch.Tensor, next_obs: torch.Tensor,
                            tbptt: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Beliefs for ``t = 0..T`` of trajectories that start at a task's start (time-major, ``(T, B, .)``).

        Returns mean and logvar of shape ``(T + 1, B, latent)``; index 0 is the prior. ``tbptt`` truncates
        back-propagation through time every that many steps.
        """
        return self.head(self.hidden_sequence(actions, rewards, next_obs, tbptt))

    def hidden_sequence(self, actions: torch.Tensor, rewards: torch.Tensor, next_obs: torch.Tensor,
                        tbptt: int | None = None) -> torch.Tensor:
        """GRU hidden states ``h_0..h_T`` (``h_0 = 0``) of trajectories starting at a task's start."""
        x = self.embed(actions, rewards, next_obs)
        h0 = self.initial_hidden(x.shape[1])
        step = max(1, x.shape[0] if tbptt is None else tbptt)
        chunks, h = [h0.unsqueeze(0)], h0
        for start in range(0, x.shape[0], step):
            out = gru_sequence(self.gru, x[start:start + step], h)
            chunks.append(out)
            h = out[-1].detach()
        return torch.cat(chunks, dim=0)

    def encode_with_resets(self, actions: torch.Tensor, rewards: torch.Tensor, next_obs: torch.Tensor,
                           task_done: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        """Hidden states ``h_0..h_{T-1}`` along a rollout that may cross task boundaries.

        ``h_{t+1} = GRU(x_t, h_t)``, reset to zeros (the prior) after a transition with ``task_done``; ``h0``
        is the hidden state at the rollout's start. Used when the RL loss trains the encoder (RL^2), where
        the embeddings must be recomputed for every PPO minibatch.
        """
        x = self.embed(actions, rewards, next_obs)
        keep = (1.0 - task_done.to(x.dtype)).unsqueeze(-1)
        return torch.cat([h0.unsqueeze(0), gru_sequence(self.gru, x[:-1], h0, keep[:-1])], dim=0)
