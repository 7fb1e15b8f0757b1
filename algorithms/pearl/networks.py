"""PEARL's networks: the permutation-invariant inference network q(z | c), the tanh-Gaussian policy, Q and V.

Initialisation as rlkit's ``Mlp`` (oyster's networks): hidden weights U(+-1/sqrt(out_features)) with bias 0.1, ReLU,
and the output layer U(+-3e-3) (weights and bias); the policy's mean and log-std heads U(+-1e-3). rlkit's
``fanin_init`` takes ``size[0]`` of the weight as its fan-in, which in torch's (out, in) layout is the number of
OUTPUT features: a quirk of the code that produced PEARL's curves, kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Normal, kl_divergence
from torch.nn import functional as F

#: rlkit's clamp of the policy's log standard deviation
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
#: floor of each per-transition variance before the product (oyster's ``_product_of_gaussians``)
MIN_VARIANCE = 1e-7


#: ``algo.hidden_precision`` -> the dtype the hidden layers compute in
HIDDEN_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class RlkitMLP(nn.Sequential):
    """rlkit's ``Mlp``: ``Linear -> ReLU`` per hidden width, then an optional linear output layer.

    ``hidden_dtype=torch.bfloat16`` runs the hidden layers under autocast (bf16 products, fp32 weights, gradients and
    optimiser state) and the output layer, and so every value a loss or a distribution sees, in float32: mixed
    precision that keeps Q-values of thousands and the encoder's variances exact to float32 at the output. Not the
    reference's arithmetic (oyster computes in float32, the default); 2.6-3x the gradient steps per second on a CPU with
    AVX512-BF16 (``python -m benchmarks.pearl_throughput``)."""

    def __init__(self, *layers: nn.Module, has_output: bool, hidden_dtype: torch.dtype = torch.float32) -> None:
        super().__init__(*layers)
        self.has_output = has_output
        self.hidden_dtype = hidden_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hidden_dtype == torch.float32:
            return super().forward(x)
        layers = list(self)
        num_hidden = len(layers) - int(self.has_output)
        with torch.autocast(device_type=x.device.type, dtype=self.hidden_dtype):
            for layer in layers[:num_hidden]:
                x = layer(x)
        x = x.float()
        for layer in layers[num_hidden:]:
            x = layer(x)
        return x


def rlkit_mlp(input_dim: int, hidden: Sequence[int], output_dim: int | None, init_w: float = 3e-3,
              bias_init: float = 0.1, hidden_dtype: torch.dtype = torch.float32) -> RlkitMLP:
    """``Linear -> ReLU`` per hidden width, then an optional small-initialised linear output layer."""
    layers: list[nn.Module] = []
    last = input_dim
    for width in hidden:
        layer = nn.Linear(last, width)
        bound = 1.0 / math.sqrt(layer.weight.size(0))  # rlkit fanin_init: size[0] = out_features (see above)
        nn.init.uniform_(layer.weight, -bound, bound)
        nn.init.constant_(layer.bias, bias_init)
        layers += [layer, nn.ReLU()]
        last = width
    if output_dim is not None:
        out = nn.Linear(last, output_dim)
        nn.init.uniform_(out.weight, -init_w, init_w)
        nn.init.uniform_(out.bias, -init_w, init_w)
        layers.append(out)
    return RlkitMLP(*layers, has_output=output_dim is not None, hidden_dtype=hidden_dtype)


def product_of_gaussians(mu: torch.Tensor, var: torch.Tensor, dim: int = -2) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian proportional to the product of the factors ``N(mu_n, var_n)`` along ``dim``:
    ``var = 1 / sum(1 / var_n)``, ``mu = var * sum(mu_n / var_n)`` (PEARL eq. 2). Permutation invariant in ``n``."""
    precision = 1.0 / var.clamp(min=MIN_VARIANCE)
    post_var = 1.0 / precision.sum(dim=dim)
    return post_var * (mu * precision).sum(dim=dim), post_var


def kl_to_standard_normal(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag var) || N(0, I)), summed over the last dimension."""
    posterior = Normal(mu, var.sqrt())
    prior = Normal(torch.zeros_like(mu), torch.ones_like(var))
    return kl_divergence(posterior, prior).sum(dim=-1)


def reparameterised_sample(mu: torch.Tensor, var: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``Normal(mu, sqrt(var)).rsample()`` with the noise drawn from ``generator`` (the agent's own stream, so that
    training and meta-test are reproducible and resume exactly): ``loc + scale * eps``, differentiable in both."""
    dist = Normal(mu, var.sqrt())
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return dist.loc + dist.scale * eps


class ContextEncoder(nn.Module):
    """The inference network's per-transition factor: an MLP on one context transition c_n giving the mean and the
    variance (softplus) of the Gaussian factor Psi(z | c_n) (PEARL sec. 4.1, fig. 1)."""

    def __init__(self, input_dim: int, latent_dim: int, hidden: Sequence[int],
                 hidden_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = rlkit_mlp(input_dim, hidden, 2 * latent_dim, hidden_dtype=hidden_dtype)

    def factors(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(..., D)`` transitions -> per-transition ``mu_n, var_n`` of shape ``(..., latent_dim)``."""
        out = self.net(context)
        mu, raw = out[..., :self.latent_dim], out[..., self.latent_dim:]
        return mu, F.softplus(raw).clamp(min=MIN_VARIANCE)

    def posterior(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(T, C, D)``: C transitions of each of T tasks -> ``mu, var`` of q(z | c) per task, ``(T, latent_dim)``."""
        return product_of_gaussians(*self.factors(context), dim=-2)


class TanhGaussianPolicy(nn.Module):
    """pi(a | s, z) = tanh(N(mean(s, z), std(s, z))) in [-1, 1]^A."""

    def __init__(self, obs_dim: int, latent_dim: int, action_dim: int, hidden: Sequence[int],
                 init_w: float = 1e-3, hidden_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.trunk = rlkit_mlp(obs_dim + latent_dim, hidden, None, hidden_dtype=hidden_dtype)
        last = hidden[-1] if hidden else obs_dim + latent_dim
        self.mean = nn.Linear(last, action_dim)
        self.log_std = nn.Linear(last, action_dim)
        for layer in (self.mean, self.log_std):
            nn.init.uniform_(layer.weight, -init_w, init_w)
            nn.init.uniform_(layer.bias, -init_w, init_w)

    def forward(self, obs: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-tanh mean and (clamped) log standard deviation."""
        h = self.trunk(torch.cat([obs, z], dim=-1))
        return self.mean(h), self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)

    @staticmethod
    def sample(mean: torch.Tensor, log_std: torch.Tensor,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised action ``tanh(u)``, ``u ~ N(mean, std)``, and its log-probability with the change of
        variables: ``log N(u) - sum log(1 - tanh(u)^2)``, written as ``2 (log 2 - u - softplus(-2u))`` (stable)."""
        std = log_std.exp()
        u = mean + std * torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        log_prob = Normal(mean, std).log_prob(u).sum(-1)
        log_prob = log_prob - (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
        return torch.tanh(u), log_prob

    @staticmethod
    def mode(mean: torch.Tensor) -> torch.Tensor:
        return torch.tanh(mean)


class QNetwork(nn.Module):
    """Q(s, a, z)."""

    def __init__(self, obs_dim: int, action_dim: int, latent_dim: int, hidden: Sequence[int],
                 hidden_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.net = rlkit_mlp(obs_dim + action_dim + latent_dim, hidden, 1, hidden_dtype=hidden_dtype)

    def forward(self, obs: torch.Tensor, action: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action, z], dim=-1)).squeeze(-1)


class VNetwork(nn.Module):
    """V(s, z)."""

    def __init__(self, obs_dim: int, latent_dim: int, hidden: Sequence[int],
                 hidden_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.net = rlkit_mlp(obs_dim + latent_dim, hidden, 1, hidden_dtype=hidden_dtype)

    def forward(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, z], dim=-1)).squeeze(-1)
