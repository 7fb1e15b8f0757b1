"""The rollout's per-step forward pass with the networks' parallel layers side by side (VariBAD family).

During a rollout the parameters and the input normalisers do not change, and every env step runs the same small
networks on a small batch (16 envs): the belief head, two input embeddings, the actor and the critic, and the
encoder's embeddings. At that size a layer costs a fixed ~5 us whatever its width, so :class:`FusedActing` builds,
once per rollout, weights that compute what runs side by side in one product each:

- belief head: ``[fc_mean; fc_logvar]`` stacked (one product gives the policy's ``[mean, logvar]`` input);
- policy input: the state and belief normalisations folded into a block-diagonal ``[state_embed, belief_embed]``;
- hidden layers: the actor's and critic's first layers stacked, the later ones block-diagonal;
- heads: ``[action_head, value_head]`` block-diagonal;
- encoder step: the action, state and reward embeddings block-diagonal, then one GRU cell.

The functions are those of :meth:`BeliefConditionedActorCritic.heads` and :meth:`RecurrentEncoder.step`; only the
rounding differs (products summed in another order, by the zero blocks and the folded normalisation), by a few
float32 ulps, and the rollout is as deterministic as before. PPO's recomputation uses the plain modules, so its
first probability ratios are 1 up to that rounding. ``tests/test_fast_paths.py`` checks both against the modules.
"""

from __future__ import annotations

import torch
from torch import nn

from algorithms.onpolicy.networks import Tanh, tanh
from algorithms.onpolicy.normalization import InputNormalizer
from algorithms.onpolicy.policy import BeliefConditionedActorCritic
from algorithms.onpolicy.recurrent import RecurrentEncoder

_ACTIVATIONS = {Tanh: tanh, nn.Tanh: torch.tanh, nn.ReLU: torch.relu}


def _layers(seq: nn.Sequential) -> list[tuple[nn.Linear, type]]:
    """``[(linear, activation type)]`` of a Linear/activation stack; raises ``ValueError`` for anything else."""
    out: list[tuple[nn.Linear, type]] = []
    items = list(seq)
    for i in range(0, len(items), 2):
        linear = items[i]
        act = type(items[i + 1]) if i + 1 < len(items) else None
        if not isinstance(linear, nn.Linear) or (act is not None and act not in _ACTIVATIONS):
            raise ValueError("not a Linear/activation stack")
        out.append((linear, act))
    return out


def _block_diagonal(*linears: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.block_diag(*(lin.weight for lin in linears)), torch.cat([lin.bias for lin in linears])


def _normaliser_affine(norm: InputNormalizer, dim: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` of :class:`InputNormalizer`'s ``x -> (x - mean) / std`` (``0, 1`` when it is off)."""
    if not norm.enabled:
        return like.new_zeros(dim), like.new_ones(dim)
    return norm.affine(like)


class FusedActing:
    """The rollout's ``belief -> (action, log_prob, value)`` and encoder step, built from the current parameters.

    :meth:`supports` says whether the networks have the plain structure this needs (Linear/activation stacks,
    both policy embeddings or neither, no layers around the GRU); otherwise the agent uses the modules directly.
    """

    @staticmethod
    def supports(policy: BeliefConditionedActorCritic, encoder: RecurrentEncoder, obs_norm: InputNormalizer,
                 belief_norm: InputNormalizer) -> bool:
        if (policy.state_embed is None) != (policy.belief_embed is None) or encoder.has_layers_before_gru:
            return False
        if isinstance(encoder.after_gru, nn.Sequential) or obs_norm.clip is not None or belief_norm.clip is not None:
            return False
        try:
            for seq in (policy.actor, policy.critic):
                _layers(seq)
            for fe in (policy.state_embed, policy.belief_embed):
                if fe is not None:
                    _layers(fe.net)
            for fe in (encoder.action_embed, encoder.state_embed, encoder.reward_embed):
                if fe.net is not None and _layers(fe.net)[0][1] is not nn.ReLU:
                    return False
        except ValueError:
            return False
        return True

    @torch.no_grad()
    def __init__(self, policy: BeliefConditionedActorCritic, encoder: RecurrentEncoder, obs_norm: InputNormalizer,
                 belief_norm: InputNormalizer, obs_dim: int, belief_dim: int, belief_mode: str) -> None:
        self.policy, self.encoder = policy, encoder
        ref = encoder.fc_mean.weight
        # belief head: [mean, logvar] (or the mean alone) from the GRU state in one product
        if belief_mode == "mean_logvar":
            self.head_w, self.head_b = (torch.cat([encoder.fc_mean.weight, encoder.fc_logvar.weight]),
                                        torch.cat([encoder.fc_mean.bias, encoder.fc_logvar.bias]))
        else:
            self.head_w, self.head_b = encoder.fc_mean.weight.clone(), encoder.fc_mean.bias.clone()
        self.head_relu = encoder.latent_activation == "relu"
        # policy input: normalisation folded into the (block-diagonal) embedding: W ((x - m) / s) + b
        (obs_mean, obs_std), (bel_mean, bel_std) = (_normaliser_affine(obs_norm, obs_dim, ref),
                                                    _normaliser_affine(belief_norm, belief_dim, ref))
        mean, std = torch.cat([obs_mean, bel_mean]), torch.cat([obs_std, bel_std])
        if policy.state_embed is not None and policy.belief_embed is not None:
            (s_lin, s_act), = _layers(policy.state_embed.net)
            (b_lin, _), = _layers(policy.belief_embed.net)
            w, b = _block_diagonal(s_lin, b_lin)
            self.embed_act = _ACTIVATIONS[s_act]
        else:
            w, b = torch.eye(obs_dim + belief_dim, device=ref.device), ref.new_zeros(obs_dim + belief_dim)
            self.embed_act = None
        self.embed_w = w / std
        self.embed_b = b - self.embed_w @ mean
        # actor and critic: first layers stacked, later ones block-diagonal
        actor, critic = _layers(policy.actor), _layers(policy.critic)
        self.hidden: list[tuple[torch.Tensor, torch.Tensor, object]] = []
        for i, ((a_lin, a_act), (c_lin, _)) in enumerate(zip(actor, critic, strict=True)):
            if i == 0:
                w, b = torch.cat([a_lin.weight, c_lin.weight]), torch.cat([a_lin.bias, c_lin.bias])
            else:
                w, b = _block_diagonal(a_lin, c_lin)
            self.hidden.append((w, b, _ACTIVATIONS[a_act] if a_act is not None else None))
        if self.hidden:
            self.heads_w, self.heads_b = _block_diagonal(policy.action_head, policy.value_head)
        else:  # no hidden layers: both heads read the embedding
            self.heads_w = torch.cat([policy.action_head.weight, policy.value_head.weight])
            self.heads_b = torch.cat([policy.action_head.bias, policy.value_head.bias])
        self.num_params = policy.action_head.out_features
        # encoder step: block-diagonal [action, state, reward] embedding, then the GRU cell
        parts = [fe for fe in (encoder.action_embed, encoder.state_embed, encoder.reward_embed)]
        self.enc_inputs = [fe.net is not None for fe in parts]
        present = [_layers(fe.net)[0][0] for fe in parts if fe.net is not None]
        self.enc_w, self.enc_b = _block_diagonal(*present)
        # inputs of an absent embedding are dropped: zero columns for them
        widths = [encoder.action_dim, encoder.obs_dim, 1]
        columns = [torch.zeros(self.enc_w.shape[0], wd, device=ref.device) for wd in widths]
        start = 0
        for k, used in enumerate(self.enc_inputs):
            if used:
                columns[k] = self.enc_w[:, start:start + widths[k]]
                start += widths[k]
        self.enc_w = torch.cat(columns, dim=1)
        g = encoder.gru
        self.gru = (g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0)

    def belief(self, hidden: torch.Tensor) -> torch.Tensor:
        """The policy's raw belief input (``[mean, logvar]`` or the mean) from GRU states."""
        out = torch.addmm(self.head_b, hidden, self.head_w.t())
        return torch.relu(out) if self.head_relu else out

    def heads(self, obs: torch.Tensor, belief: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(distribution parameters, value)`` from the raw (un-normalised) policy inputs."""
        x = torch.addmm(self.embed_b, torch.cat([obs, belief], dim=-1), self.embed_w.t())
        if self.embed_act is not None:
            x = self.embed_act(x)
        for w, b, act in self.hidden:
            x = torch.addmm(b, x, w.t())
            if act is not None:
                x = act(x)
        out = torch.addmm(self.heads_b, x, self.heads_w.t())
        params, value = out[:, :self.num_params], out[:, self.num_params]
        if not self.policy.discrete and self.policy.squash_action_mean:
            params = torch.tanh(params)
        return params, value

    def act(self, obs: torch.Tensor, belief: torch.Tensor,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A sample of the policy with its log-probability and the value (as
        :meth:`BeliefConditionedActorCritic.act`)."""
        params, value = self.heads(obs, belief)
        return (*self.policy.sample_from(params, False, generator), value)

    def encoder_step(self, actions: torch.Tensor, rewards: torch.Tensor, next_obs: torch.Tensor,
                     hidden: torch.Tensor) -> torch.Tensor:
        """:meth:`RecurrentEncoder.step` in one embedding product."""
        x = torch.relu(torch.addmm(self.enc_b, torch.cat([actions, next_obs, rewards], dim=-1), self.enc_w.t()))
        return torch.gru_cell(x, hidden, *self.gru)

