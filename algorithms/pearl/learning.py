"""PEARL's learner (Rakelly et al. 2019, Algorithm 1 lines 13-21): the context encoder, the SAC networks and their
optimisers, one gradient step at a time.

SAC variant: the paper's (sec. 5.1, and oyster's ``PEARLSoftActorCritic``): twin Q-functions, a state value V and a
target V updated by Polyak averaging (``tau``); no learned temperature, the entropy weight being set by
``reward_scale`` (the reward is multiplied by it in the Q target). Every PEARL hyperparameter we reproduce
(``reward_scale`` 5 / 100 above all, which *is* the inverse temperature) was tuned for this variant. The encoder is
trained by the critic's Bellman loss plus ``kl_lambda * KL(q(z|c) || N(0, I))`` (eq. 3), never by the actor: ``z`` is
detached for the policy loss, for V's regression and for the target V. The Q targets bootstrap through time limits
and stop only where the MDP itself terminated.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from algorithms.pearl.buffers import TransitionLayout
from algorithms.pearl.config import PEARLConfig
from algorithms.pearl.networks import (
    HIDDEN_DTYPES,
    ContextEncoder,
    QNetwork,
    TanhGaussianPolicy,
    VNetwork,
    kl_to_standard_normal,
    reparameterised_sample,
)


class SACLearner:
    """The networks PEARL trains and the gradient step that trains them."""

    #: the metrics :meth:`gradient_step` returns, in order
    METRIC_NAMES = ("sac/qf_loss", "sac/kl", "sac/vf_loss", "sac/policy_loss", "sac/q_mean", "sac/log_pi",
                    "sac/z_mean_abs", "sac/z_var")

    def __init__(self, cfg: PEARLConfig, obs_dim: int, action_dim: int, context_dim: int, layout: TransitionLayout,
                 context_from_rows: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                 init_seed: int, gen: torch.Generator) -> None:
        """``init_seed`` initialises the networks (not the global torch stream); ``gen`` is the training stream
        the agent's collection shares."""
        self.cfg, self.layout, self.context_from_rows, self.gen = cfg, layout, context_from_rows, gen
        L = cfg.latent_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            dtype = HIDDEN_DTYPES[cfg.hidden_precision]
            self.encoder = ContextEncoder(context_dim, L, cfg.encoder_layers, hidden_dtype=dtype)
            self.policy = TanhGaussianPolicy(obs_dim, L, action_dim, cfg.net_layers, hidden_dtype=dtype)
            self.qf1 = QNetwork(obs_dim, action_dim, L, cfg.net_layers, hidden_dtype=dtype)
            self.qf2 = QNetwork(obs_dim, action_dim, L, cfg.net_layers, hidden_dtype=dtype)
            self.vf = VNetwork(obs_dim, L, cfg.net_layers, hidden_dtype=dtype)
        self.target_vf = copy.deepcopy(self.vf)
        for p in self.target_vf.parameters():
            p.requires_grad_(False)
        for net in self.networks.values():
            net.to(device)
        self.policy_optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.policy_lr)
        self.qf_optimizer = torch.optim.Adam([*self.qf1.parameters(), *self.qf2.parameters()], lr=cfg.qf_lr)
        self.vf_optimizer = torch.optim.Adam(self.vf.parameters(), lr=cfg.vf_lr)
        self.context_optimizer = torch.optim.Adam(self.encoder.parameters(), lr=cfg.context_lr)
        self.grad_steps = 0

    @property
    def networks(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "policy": self.policy, "qf1": self.qf1, "qf2": self.qf2, "vf": self.vf,
                "target_vf": self.target_vf}

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"policy": self.policy_optimizer, "qf": self.qf_optimizer, "vf": self.vf_optimizer,
                "context": self.context_optimizer}

    def infer(self, context_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q(z | c) per task and a reparameterised z ``(T, L)`` (differentiable into the encoder)."""
        mu, var = self.encoder.posterior(self.context_from_rows(context_rows))
        return mu, var, reparameterised_sample(mu, var, self.gen)

    def flat_batch(self, batch: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        T, B, _ = batch.shape
        lay = self.layout
        flat = batch.reshape(T * B, -1)
        return {"obs": flat[:, lay.obs], "action": flat[:, lay.action], "reward": flat[:, lay.reward].squeeze(-1),
                "next_obs": flat[:, lay.next_obs], "terminal": flat[:, lay.terminal].squeeze(-1),
                "z": z.unsqueeze(1).expand(T, B, z.shape[-1]).reshape(T * B, -1)}

    def critic_loss(self, mu: torch.Tensor, var: torch.Tensor, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Eq. 3 plus the KL: the Q-functions see z with its gradient (the encoder's only RL signal)."""
        cfg = self.cfg
        q1, q2 = self.qf1(b["obs"], b["action"], b["z"]), self.qf2(b["obs"], b["action"], b["z"])
        with torch.no_grad():
            target_v = self.target_vf(b["next_obs"], b["z"].detach())
            q_target = cfg.reward_scale * b["reward"] + (1.0 - b["terminal"]) * cfg.gamma * target_v
        qf_loss = F.mse_loss(q1, q_target) + F.mse_loss(q2, q_target)
        kl = kl_to_standard_normal(mu, var).sum()  # summed over the meta-batch's tasks, as oyster
        return {"loss": qf_loss + cfg.kl_lambda * kl, "qf_loss": qf_loss, "kl": kl, "q_target": q_target, "q1": q1}

    def policy_outputs(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """pi(. | s, z) with z detached: the actor never trains the encoder."""
        mean, log_std = self.policy(b["obs"], b["z"].detach())
        action, log_pi = self.policy.sample(mean, log_std, self.gen)
        return {"mean": mean, "log_std": log_std, "action": action, "log_pi": log_pi}

    def actor_value_losses(self, b: dict[str, torch.Tensor], pi: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """V regression onto ``min Q(s, a~pi, z) - log pi`` and the policy loss (eq. 4), z detached in both."""
        cfg = self.cfg
        z = b["z"].detach()
        min_q = torch.min(self.qf1(b["obs"], pi["action"], z), self.qf2(b["obs"], pi["action"], z))
        v_target = (min_q - pi["log_pi"]).detach()
        vf_loss = F.mse_loss(self.vf(b["obs"], z), v_target)
        policy_loss = ((pi["log_pi"] - min_q).mean() + cfg.policy_mean_reg_weight * pi["mean"].pow(2).mean()
                       + cfg.policy_std_reg_weight * pi["log_std"].pow(2).mean())
        return {"vf_loss": vf_loss, "policy_loss": policy_loss, "v_target": v_target}

    def gradient_step(self, context_rows: torch.Tensor, batch_rows: torch.Tensor) -> torch.Tensor:
        """One step of Algorithm 1 lines 13-21 (in oyster's order: Q and encoder, V and its target, policy).
        Returns the step's metrics as one tensor (kept on the device: no synchronisation per step)."""
        mu, var, z = self.infer(context_rows)
        b = self.flat_batch(batch_rows, z)
        pi = self.policy_outputs(b)
        critic = self.critic_loss(mu, var, b)
        self.qf_optimizer.zero_grad(set_to_none=True)
        self.context_optimizer.zero_grad(set_to_none=True)
        critic["loss"].backward(inputs=[*self.qf_optimizer.param_groups[0]["params"],
                                        *self.context_optimizer.param_groups[0]["params"]])
        self.qf_optimizer.step()
        self.context_optimizer.step()
        losses = self.actor_value_losses(b, pi)  # with the updated Q-functions, as oyster
        self.vf_optimizer.zero_grad(set_to_none=True)
        losses["vf_loss"].backward(inputs=list(self.vf.parameters()))
        self.vf_optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(self.target_vf.parameters()), list(self.vf.parameters()), self.cfg.tau)
        self.policy_optimizer.zero_grad(set_to_none=True)
        losses["policy_loss"].backward(inputs=list(self.policy.parameters()))
        self.policy_optimizer.step()
        self.grad_steps += 1
        return torch.stack([critic["qf_loss"].detach(), critic["kl"].detach(), losses["vf_loss"].detach(),
                            losses["policy_loss"].detach(), critic["q1"].detach().mean(), pi["log_pi"].detach().mean(),
                            mu.detach().abs().mean(), var.detach().mean()])
