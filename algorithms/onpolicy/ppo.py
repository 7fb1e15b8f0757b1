"""Proximal policy optimisation (Schulman et al., 2017) over a :class:`RolloutStorage`.

Clipped surrogate objective, clipped value loss, entropy bonus, advantage normalisation and gradient-norm
clipping, with the structure of the VariBAD reference implementation's PPO.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from algorithms.onpolicy.policy import BeliefConditionedActorCritic
from algorithms.onpolicy.storage import RolloutStorage


@dataclass
class PPOConfig:
    epochs: int
    num_minibatches: int
    clip: float
    value_loss_coef: float
    entropy_coef: float
    clipped_value_loss: bool = True
    normalise_advantages: bool = True
    #: huber (smooth L1, the reference's ppo_use_huberloss) | mse
    value_loss: str = "mse"
    #: with the RL loss through the encoder, what a minibatch is. steps: random (t, env) samples of the whole rollout,
    #: the beliefs recomputed over every env's sequence before each step (the reference's ``ppo.py`` with
    #: ``online_storage.feed_forward_generator`` and ``utils/helpers.recompute_embeddings``) | sequences: whole env
    #: sequences, only those re-encoded (num_minibatches x cheaper re-encoding, noisier gradients)
    through_encoder_minibatches: str = "steps"


#: what ``through_encoder_minibatches`` may be
THROUGH_ENCODER_MINIBATCHES = ("steps", "sequences")

#: parameters whose gradient norm is clipped together, and the norm (``None``: not clipped)
ClipGroup = tuple[Sequence[nn.Parameter], float | None]


def value_loss_fn(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, cfg: PPOConfig
                  ) -> torch.Tensor:
    """The critic's loss as the VariBAD reference computes it (``algorithms/ppo.py``): with the clipped value loss
    ``0.5 * max(l(v, R), l(v_clip, R))`` for l = squared error or smooth L1; without it ``0.5 * (v - R)^2`` or
    plain smooth L1 (no factor 0.5 there, as in the reference)."""
    if cfg.value_loss not in ("mse", "huber"):
        raise ValueError(f"unknown value loss {cfg.value_loss!r}; choose mse or huber")

    def per_sample(v: torch.Tensor) -> torch.Tensor:
        if cfg.value_loss == "huber":
            return F.smooth_l1_loss(v, returns, reduction="none")
        return (v - returns).pow(2)

    if cfg.clipped_value_loss:
        clipped = old_values + (values - old_values).clamp(-cfg.clip, cfg.clip)
        return 0.5 * torch.max(per_sample(values), per_sample(clipped)).mean()
    return per_sample(values).mean() if cfg.value_loss == "huber" else 0.5 * per_sample(values).mean()


#: given env indices, recompute the (normalised) policy beliefs for the whole rollout, shape (T, n, belief)
BeliefRecompute = Callable[[torch.Tensor], torch.Tensor]


def ppo_update(
    policy: BeliefConditionedActorCritic,
    optimizers: Sequence[torch.optim.Optimizer],
    clip_groups: Sequence[ClipGroup],
    storage: RolloutStorage,
    cfg: PPOConfig,
    recompute_beliefs: BeliefRecompute | None = None,
    auxiliary_loss: Callable[[], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Run ``epochs x num_minibatches`` PPO steps and return mean losses.

    Without ``recompute_beliefs`` the stored (detached) beliefs are used and minibatches are random sets of
    single steps. With it (RL loss through the encoder) the beliefs are recomputed with gradients before each
    step, over the whole rollout or over the minibatch's env sequences (``cfg.through_encoder_minibatches``).
    Each of ``clip_groups`` has its gradient norm clipped on its own (the reference clips the actor-critic at
    ``policy_max_grad_norm`` and, when the RL loss reaches it, the encoder at ``encoder_max_grad_norm``), then every
    one of ``optimizers`` steps. ``auxiliary_loss()`` is added to every minibatch's loss (the reference adds the VAE's
    ELBO there when the RL loss trains the encoder: ``loss += vae_loss_coeff * compute_vae_loss()``).
    """
    if cfg.through_encoder_minibatches not in THROUGH_ENCODER_MINIBATCHES:
        raise ValueError(f"unknown through_encoder_minibatches {cfg.through_encoder_minibatches!r}; choose "
                         f"{' or '.join(THROUGH_ENCODER_MINIBATCHES)}")
    by_sequence = recompute_beliefs is not None and cfg.through_encoder_minibatches == "sequences"
    T, N = storage.num_steps, storage.num_envs
    every_env = torch.arange(N, device=storage.actions.device)
    advantages = storage.advantages
    if cfg.normalise_advantages:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-5)
    totals = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0, "clip_fraction": 0.0}
    num_updates = 0
    for _ in range(cfg.epochs):
        chunks = (torch.randperm(N) if by_sequence else torch.randperm(T * N)).chunk(cfg.num_minibatches)
        for chunk in chunks:
            if by_sequence:
                def take(x: torch.Tensor, c: torch.Tensor = chunk) -> torch.Tensor:
                    return x[:, c].reshape(T * len(c), *x.shape[2:])
                belief = recompute_beliefs(chunk).reshape(T * len(chunk), -1)
            else:
                def take(x: torch.Tensor, c: torch.Tensor = chunk) -> torch.Tensor:
                    return x.reshape(T * N, *x.shape[2:])[c]
                # through the encoder: every env's sequence re-encoded with the current weights, then the steps
                belief = take(storage.policy_belief if recompute_beliefs is None else recompute_beliefs(every_env))
            log_probs, entropies, values = policy.evaluate_actions(take(storage.policy_obs), belief,
                                                                   take(storage.actions))
            old_log_probs, old_values = take(storage.log_probs), take(storage.values)
            adv, returns = take(advantages), take(storage.returns)
            ratio = torch.exp(log_probs - old_log_probs)
            surrogate = torch.min(ratio * adv, ratio.clamp(1.0 - cfg.clip, 1.0 + cfg.clip) * adv)
            policy_loss = -surrogate.mean()
            value_loss = value_loss_fn(values, old_values, returns, cfg)
            entropy = entropies.mean()
            loss = policy_loss + cfg.value_loss_coef * value_loss - cfg.entropy_coef * entropy
            if auxiliary_loss is not None:
                loss = loss + auxiliary_loss()
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for params, max_norm in clip_groups:
                if max_norm is not None:
                    nn.utils.clip_grad_norm_(params, max_norm)
            for optimizer in optimizers:
                optimizer.step()
            with torch.no_grad():
                log_ratio = log_probs - old_log_probs
                totals["approx_kl"] += float(((ratio - 1) - log_ratio).mean())
                totals["clip_fraction"] += float(((ratio - 1).abs() > cfg.clip).float().mean())
            totals["policy_loss"] += float(policy_loss.detach())
            totals["value_loss"] += float(value_loss.detach())
            totals["entropy"] += float(entropy.detach())
            num_updates += 1
    return {k: v / num_updates for k, v in totals.items()}
