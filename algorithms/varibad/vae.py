"""VariBAD's ELBO (paper sec. 3.2, eq. 8-10).

For a trajectory ``tau_:H+`` and every ``t = 0..H+`` (``t = 0`` is the prior), the encoder gives
``q(m | tau_:t)``; a latent sample decodes the *whole* trajectory (past and future, eq. 10):

    ELBO_t = E_q[ sum_j log p(r_j | m, s'_j) + log p(s'_j | m, s_j, a_j) ] - KL(q(m | tau_:t) || q(m | tau_:t-1))

with ``q(m | tau_:-1) = N(0, I)``. The loss sums the negative ELBO_t over t; over the trajectories of a batch it
averages the reconstruction terms and, as the reference code does, sums the KL terms (``vae_batch_reduction``).
Ablations (design.md §3): the decoding horizon, the KL variant, optional subsampling of ELBO and decode terms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from algorithms.onpolicy.recurrent import RecurrentEncoder
from algorithms.onpolicy.storage import TrajectoryBatch
from algorithms.varibad.config import VariBADConfig
from algorithms.varibad.networks import (
    PerStateRewardDecoder,
    RewardDecoder,
    StateDecoder,
    TaskDecoder,
    latent_pairs,
    transition_part,
)


class VAE(nn.Module):
    """Encoder plus the decoders the config enables."""

    def __init__(self, cfg: VariBADConfig, obs_dim: int, action_dim: int, task_dim: int,
                 num_states: int | None) -> None:
        super().__init__()
        self.encoder = RecurrentEncoder(
            obs_dim=obs_dim, action_dim=action_dim, latent_dim=cfg.latent_dim, hidden_size=cfg.gru_hidden_size,
            action_embed_dim=cfg.action_embed_dim, state_embed_dim=cfg.state_embed_dim,
            reward_embed_dim=cfg.reward_embed_dim, layers_before_gru=cfg.encoder_layers_before_gru,
            layers_after_gru=cfg.encoder_layers_after_gru, latent_activation=cfg.latent_activation,
            init=cfg.vae_init,
        )
        self.reward_decoder: nn.Module | None = None
        self.state_decoder: StateDecoder | None = None
        self.task_decoder: TaskDecoder | None = None
        if cfg.vae_enabled and cfg.decode_reward:
            if cfg.reward_decoder == "per_state_bernoulli":
                if num_states is None:
                    raise ValueError("reward_decoder=per_state_bernoulli needs an env with discrete states; use mse")
                self.reward_decoder = PerStateRewardDecoder(cfg.latent_dim, num_states, cfg.reward_decoder_layers,
                                                            cfg.vae_init)
            else:
                self.reward_decoder = RewardDecoder(
                    cfg.latent_dim, obs_dim, action_dim, cfg.state_embed_dim, cfg.action_embed_dim,
                    cfg.reward_decoder_layers, cfg.reward_decoder_input_prev_state, cfg.reward_decoder_input_action,
                    cfg.vae_init)
        if cfg.vae_enabled and cfg.decode_state:
            self.state_decoder = StateDecoder(cfg.latent_dim, obs_dim, action_dim, cfg.state_embed_dim,
                                              cfg.action_embed_dim, cfg.state_decoder_layers, cfg.vae_init)
        if cfg.vae_enabled and cfg.decode_task:
            self.task_decoder = TaskDecoder(cfg.latent_dim, task_dim, cfg.task_decoder_layers, cfg.vae_init)

    def decoder_parameters(self) -> list[nn.Parameter]:
        return [p for d in (self.reward_decoder, self.state_decoder, self.task_decoder) if d is not None
                for p in d.parameters()]


def kl_terms(mean: torch.Tensor, logvar: torch.Tensor, variant: str) -> torch.Tensor:
    """KL term of each ELBO_t, shape ``(T+1, B)``, for beliefs of shape ``(T+1, B, L)``."""
    if variant == "none":
        return mean.new_zeros(mean.shape[:-1])
    if variant == "gauss_prior":
        prior_mean, prior_logvar = torch.zeros_like(mean), torch.zeros_like(logvar)
    else:  # filtering / detached_prev: q_{t-1}, with q_{-1} = N(0, I)
        prior_mean = torch.cat([torch.zeros_like(mean[:1]), mean[:-1]])
        prior_logvar = torch.cat([torch.zeros_like(logvar[:1]), logvar[:-1]])
        if variant == "detached_prev":
            prior_mean, prior_logvar = prior_mean.detach(), prior_logvar.detach()
    # KL(N(m, e^v) || N(m', e^v')) = 1/2 (v' - v + (e^v + (m - m')^2) / e^v' - 1), summed over the latent dims
    ratio = torch.exp(logvar - prior_logvar) + (mean - prior_mean).pow(2) * torch.exp(-prior_logvar)
    return 0.5 * (ratio - (logvar - prior_logvar) - 1.0).sum(dim=-1)


def horizon_mask(elbo_times: torch.Tensor, decode_times: torch.Tensor, horizon: str) -> torch.Tensor:
    """Which (ELBO term, decoded transition) pairs enter the loss: ``(n, D, B)`` bool.

    ``elbo_times (n, B)``: the t of each ELBO term (it has seen transitions ``0..t-1``);
    ``decode_times (D, B)``: the index j of each decoded transition, or ``(n, D, B)`` when drawn per ELBO term.
    """
    t = elbo_times[:, None, :]
    j = decode_times if decode_times.dim() == 3 else decode_times[None, :, :]
    if horizon == "all":
        return torch.ones(t.shape[0], j.shape[1], t.shape[2], dtype=torch.bool, device=t.device)
    if horizon == "past":
        return j < t
    if horizon == "future":
        return j >= t
    if horizon == "next":
        return j == t
    raise ValueError(f"unknown decode horizon {horizon!r}")


def _horizon_sums(per_transition: torch.Tensor, elbo_times: torch.Tensor, horizon: str) -> torch.Tensor:
    """``sum_j horizon_mask[n, j, b] * per_transition[j, b, :]`` for every ELBO term: ``(T, B, S)`` and
    ``elbo_times (n, B)`` -> ``(n, B, S)``, from one cumulative sum over j instead of an (n x T) weighted sum.

    Each horizon is a contiguous range of j for ELBO term t: all j, ``j < t`` (past), ``j >= t`` (future) or
    ``j == t`` (next), so each sum is a difference of two prefix sums ``C[t] = sum_{j < t}``.
    """
    T = per_transition.shape[0]
    prefix = torch.cat([torch.zeros_like(per_transition[:1]), per_transition.cumsum(dim=0)])  # (T + 1, B, S)
    total = prefix[T].expand(elbo_times.shape[0], *prefix.shape[1:])
    if horizon == "all":
        return total
    index = elbo_times[..., None].expand(*elbo_times.shape, prefix.shape[-1])
    before = prefix.gather(0, index)
    if horizon == "past":
        return before
    if horizon == "future":
        return total - before
    if horizon == "next":
        return prefix.gather(0, (index + 1).clamp(max=T)) - before
    raise ValueError(f"unknown decode horizon {horizon!r}")


@dataclass
class ELBOOutput:
    loss: torch.Tensor
    #: per-ELBO-term reconstruction losses (n, B) and KL (n, B), before weighting/reduction (for tests, logging)
    rec_reward: torch.Tensor
    rec_state: torch.Tensor
    rec_task: torch.Tensor
    kl: torch.Tensor
    elbo_times: torch.Tensor

    def metrics(self) -> dict[str, float]:
        return {"vae/loss": float(self.loss.detach()), "vae/rec_reward": float(self.rec_reward.detach().sum(0).mean()),
                "vae/rec_state": float(self.rec_state.detach().sum(0).mean()),
                "vae/kl": float(self.kl.detach().sum(0).mean())}


def _gather_time(x: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """``x (T, B, ...)`` at per-column times ``(D, B)`` -> ``(D, B, ...)``."""
    index = times.reshape(*times.shape, *([1] * (x.dim() - 2))).expand(*times.shape, *x.shape[2:])
    return x.gather(0, index)


def _sample_times(upper: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` uniform integers in ``[0, upper_b)`` per column b: shape ``(n, B)``."""
    return (torch.rand(n, upper.shape[0], device=upper.device) * upper[None].float()).long().clamp(max=upper.max() - 1)


#: Entries of the first decoder layer's (ELBO term x decoded transition) activations computed at once. Decoding
#: every pair makes tensors of n x D x B x width (350 MB on PointRobot); blocks that stay in the CPU cache make
#: the ELBO forward and backward ~3x faster there than one pass over the whole tensor (benchmarks/vae_elbo.py).
PAIR_BLOCK_ENTRIES = 1 << 20


def elbo_loss(vae: VAE, batch: TrajectoryBatch, cfg: VariBADConfig, deterministic_latent: bool = False) -> ELBOOutput:
    """Negative ELBO summed over t (eq. 10) and averaged over the batch of trajectories.

    ``deterministic_latent`` decodes the posterior mean instead of a sample (tests use it to compare losses).
    """
    mean, logvar = vae.encoder.encode_trajectories(batch.actions, batch.rewards, batch.next_obs, cfg.tbptt)
    T, B = batch.actions.shape[:2]
    lengths = batch.lengths
    all_elbo_times = torch.arange(T + 1, device=lengths.device)[:, None].expand(T + 1, B)
    elbo_valid = all_elbo_times <= lengths[None]
    kl = kl_terms(mean, logvar, cfg.kl_variant)
    if cfg.subsample_elbos is not None:
        elbo_times = _sample_times(lengths + 1, cfg.subsample_elbos)
        mean, logvar = _gather_time(mean, elbo_times), _gather_time(logvar, elbo_times)
        kl = kl.gather(0, elbo_times)
        elbo_valid = torch.ones_like(elbo_times, dtype=torch.bool)
    else:
        elbo_times = all_elbo_times
    latent = mean if deterministic_latent else mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)

    n = latent.shape[0]
    # with subsampling the reference draws the decoded transitions separately for every ELBO term (vae.py:
    # ``indices1`` holds num_elbos x subsample_decodes x batch draws): decode_times is then (n, D, B)
    per_term = cfg.subsample_decodes is not None
    if per_term:
        D = cfg.subsample_decodes
        decode_times = _sample_times(lengths, n * D).reshape(n, D, B)
        weights = horizon_mask(elbo_times, decode_times, cfg.decode_horizon).float()
    else:
        decode_times = torch.arange(T, device=lengths.device)[:, None].expand(T, B)
        decode_valid = decode_times < lengths[None]
        weights = (horizon_mask(elbo_times, decode_times, cfg.decode_horizon) & decode_valid[None]).float()

    def at(x: torch.Tensor) -> torch.Tensor:
        """The decoded transitions' values: ``(T, B, ...)``, or ``(n, D, B, ...)`` when drawn per ELBO term."""
        if not per_term:
            return x
        return _gather_time(x, decode_times.reshape(n * D, B)).reshape(n, D, B, *x.shape[2:])

    def paired(target: torch.Tensor) -> torch.Tensor:
        """A decoded transition's target, broadcastable against the (n, D, B, ...) predictions."""
        return target if per_term else target[None]

    def reduce_decodes(per_pair: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # (n, D, B) -> (n, B)
        total = (per_pair * w).sum(dim=1)
        return total / w.sum(dim=1).clamp(min=1.0) if cfg.avg_reconstruction_terms else total

    def per_elbo_term(net: nn.Sequential, features: torch.Tensor,
                      pair_loss: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Decode every (ELBO term, transition) pair with ``net`` and reduce ``pair_loss(prediction (n, D, B,
        out)) -> (n, D, B)`` over the decodes, a block of ELBO terms at a time (see PAIR_BLOCK_ENTRIES): the
        same sums as one pass over all pairs. Per-term draws (``features (n, D, B, F)``) are decoded directly."""
        if per_term:
            inputs = torch.cat([latent[:, None].expand(-1, features.shape[1], -1, -1), features], dim=-1)
            return reduce_decodes(pair_loss(net(inputs)), weights)
        per_transition = transition_part(net, features, latent.shape[-1])  # (D, B, H)
        step = max(1, PAIR_BLOCK_ENTRIES // per_transition.numel())
        return torch.cat([reduce_decodes(pair_loss(latent_pairs(net, latent[i:i + step], per_transition)),
                                         weights[i:i + step]) for i in range(0, latent.shape[0], step)])

    zeros = latent.new_zeros(n, B)
    rec_reward, rec_state, rec_task = zeros, zeros, zeros
    rewards, next_obs, prev_obs, actions = at(batch.rewards), at(batch.next_obs), at(batch.prev_obs), at(batch.actions)
    if isinstance(vae.reward_decoder, PerStateRewardDecoder):
        # sum_j w_tj BCE(logit_t[cell_j], y_j) with BCE(l, y) = y softplus(-l) + (1 - y) softplus(l), grouped
        # by cell: weighted visit counts (one batched matmul) times per-cell terms, instead of a gather over
        # all (t, j) pairs. Same value, several times cheaper for whole-trajectory decoding.
        logits = vae.reward_decoder(latent)  # (n, B, S)
        visits = F.one_hot(at(batch.state_index), logits.shape[-1]).float()  # (D, B, S) or (n, D, B, S)
        hit = (rewards[..., 0] == 1.0).float()[..., None]  # y_j, the Bernoulli target (reward == goal reward)
        if per_term:
            pos = torch.einsum("njb,njbs->nbs", weights, visits * hit)
            neg = torch.einsum("njb,njbs->nbs", weights, visits * (1.0 - hit))
        else:
            counts = visits * decode_valid[..., None].float()  # (T, B, S), transitions past a length count 0
            pos = _horizon_sums(counts * hit, elbo_times, cfg.decode_horizon)
            neg = _horizon_sums(counts * (1.0 - hit), elbo_times, cfg.decode_horizon)
        rec_reward = (pos * F.softplus(-logits) + neg * F.softplus(logits)).sum(dim=-1)
        if cfg.avg_reconstruction_terms:
            rec_reward = rec_reward / weights.sum(dim=1).clamp(min=1.0)
    elif vae.reward_decoder is not None:
        features = vae.reward_decoder.transition_features(next_obs, prev_obs, actions)
        rec_reward = per_elbo_term(vae.reward_decoder.net, features,
                                   lambda pred: (pred[..., 0] - paired(rewards)[..., 0]).pow(2))
    if vae.state_decoder is not None:
        features = vae.state_decoder.transition_features(prev_obs, actions)
        rec_state = per_elbo_term(vae.state_decoder.net, features,
                                  lambda pred: (pred - paired(next_obs)).pow(2).mean(dim=-1))
    if vae.task_decoder is not None:
        rec_task = (vae.task_decoder(latent) - batch.tasks[None]).pow(2).mean(dim=-1)

    ev = elbo_valid.float()

    def reduce_elbos(per_term: torch.Tensor) -> torch.Tensor:  # (n, B) -> (B,)
        total = (per_term * ev).sum(dim=0)
        return total / ev.sum(dim=0).clamp(min=1.0) if cfg.avg_elbo_terms else total

    reconstruction = cfg.rew_loss_coeff * reduce_elbos(rec_reward) + cfg.state_loss_coeff * reduce_elbos(rec_state)
    regulariser = cfg.task_loss_coeff * reduce_elbos(rec_task) + cfg.kl_weight * reduce_elbos(kl)
    # the reference sums the KL and task terms over the batch's trajectories (see VariBADConfig.vae_batch_reduction)
    loss = reconstruction.mean() + (regulariser.sum() if cfg.vae_batch_reduction == "reference" else regulariser.mean())
    return ELBOOutput(loss=loss, rec_reward=rec_reward * ev, rec_state=rec_state * ev,
                      rec_task=rec_task * ev, kl=kl * ev, elbo_times=elbo_times)
