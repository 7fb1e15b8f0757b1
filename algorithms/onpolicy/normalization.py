"""Running normalisation of policy inputs and rewards (VariBAD App. E: norm state / latent / rew for policy)."""

from __future__ import annotations

import numpy as np
import torch


class RunningMeanStd:
    """Parallel (Chan et al.) running mean and variance over batches of shape ``(..., *shape)``."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = epsilon

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(-1, *self.mean.shape)
        batch_count = x.shape[0]
        # x.mean(0) and x.var(0) as numpy computes them (sum / n, then the mean of squared deviations), without
        # their per-call overhead: the reward normaliser calls this every env step
        batch_mean = x.sum(axis=0) / batch_count
        deviation = x - batch_mean
        batch_var = (deviation * deviation).sum(axis=0) / batch_count
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = state["mean"].copy(), state["var"].copy(), state["count"]


class InputNormalizer:
    """Normalises inputs with running statistics (and clips them to +-``clip`` unless it is ``None``); updated from
    the data it sees in training."""

    def __init__(self, dim: int, enabled: bool = True, clip: float | None = 10.0, epsilon: float = 1e-8) -> None:
        self.enabled = enabled
        self.rms = RunningMeanStd((dim,))
        self.clip = clip
        self.epsilon = epsilon
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, x: torch.Tensor | np.ndarray) -> None:
        if self.enabled:
            self.rms.update(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x)
            self._cache = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        if self._cache is None or self._cache[0].device != x.device:
            self._cache = self.affine(x)
        mean, std = self._cache
        normalised = (x - mean) / std
        return normalised if self.clip is None else normalised.clamp(-self.clip, self.clip)

    def affine(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)`` of the map ``x -> (x - mean) / std`` (before clipping), with ``like``'s dtype and device."""
        mean = torch.as_tensor(self.rms.mean, dtype=like.dtype, device=like.device)
        std = torch.as_tensor(np.sqrt(self.rms.var + self.epsilon), dtype=like.dtype, device=like.device)
        return mean, std

    def state_dict(self) -> dict:
        return self.rms.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.rms.load_state_dict(state)
        self._cache = None


class RewardNormalizer:
    """Scales rewards by the running std of the discounted return (as gym's ``VecNormalize``), then clips.

    The return accumulator restarts where a BAMDP ends (``done``), not at MDP episode boundaries, and it is zeroed
    BEFORE the statistics see it, as the reference's ``vec_normalize.py`` does (``self.ret[news] = 0.`` then
    ``ret_rms.update(self.ret)``): a finished BAMDP contributes a zero return to the running variance.
    """

    def __init__(self, num_envs: int, gamma: float, enabled: bool = True, clip: float = 10.0,
                 epsilon: float = 1e-8) -> None:
        self.enabled = enabled
        self.gamma = gamma
        self.clip = clip
        self.epsilon = epsilon
        self.rms = RunningMeanStd(())
        self.returns = np.zeros(num_envs, dtype=np.float64)

    def __call__(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return reward
        self.returns = self.returns * self.gamma + reward
        self.returns[done] = 0.0
        self.rms.update(self.returns)
        return np.clip(reward / np.sqrt(self.rms.var + self.epsilon), -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict:
        return {"rms": self.rms.state_dict(), "returns": self.returns.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.rms.load_state_dict(state["rms"])
        self.returns = state["returns"].copy()
