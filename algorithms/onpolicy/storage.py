"""On-policy rollout storage and a replay buffer of whole BAMDP trajectories (for the VAE)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


class RolloutStorage:
    """``num_steps x num_envs`` on-policy samples, time-major.

    Policy inputs are stored already normalised (as at acting time) so PPO's probability ratios compare like
    with like. The raw transitions and the hidden state at the rollout's start are kept too, so that beliefs can
    be recomputed with gradients when the RL loss trains the encoder (RL^2).
    """

    def __init__(self, num_steps: int, num_envs: int, obs_dim: int, policy_obs_dim: int, belief_dim: int,
                 action_shape: tuple, encoder_action_dim: int, hidden_size: int, discrete: bool,
                 device: str | torch.device = "cpu") -> None:
        T, N = num_steps, num_envs
        self.num_steps, self.num_envs = T, N
        self.device = device = torch.device(device)
        with torch.device(device):
            self._allocate(T, N, obs_dim, policy_obs_dim, belief_dim, action_shape, encoder_action_dim, hidden_size,
                           discrete)

    def _allocate(self, T: int, N: int, obs_dim: int, policy_obs_dim: int, belief_dim: int, action_shape: tuple,
                  encoder_action_dim: int, hidden_size: int, discrete: bool) -> None:
        self.policy_obs = torch.zeros(T, N, policy_obs_dim)
        self.policy_belief = torch.zeros(T, N, belief_dim)
        self.actions = torch.zeros(T, N, *action_shape, dtype=torch.long if discrete else torch.float32)
        self.log_probs = torch.zeros(T, N)
        self.values = torch.zeros(T, N)
        self.rewards = torch.zeros(T, N)
        #: the BAMDP ended after step t: GAE does not run through it, and nothing is bootstrapped (finite horizon)
        self.dones = torch.zeros(T, N, dtype=torch.bool)
        #: an MDP episode (any of the K, the last included) ended after step t because its time was up (not because
        #: the MDP terminated)
        self.time_limit_ends = torch.zeros(T, N, dtype=torch.bool)
        self.last_values = torch.zeros(N)
        self.returns = torch.zeros(T, N)
        self.advantages = torch.zeros(T, N)
        # raw transitions for recomputing beliefs
        self.enc_actions = torch.zeros(T, N, encoder_action_dim)
        self.enc_rewards = torch.zeros(T, N, 1)
        self.enc_next_obs = torch.zeros(T, N, obs_dim)
        self.task_done = torch.zeros(T, N, dtype=torch.bool)
        self.initial_hidden = torch.zeros(N, hidden_size)

    def compute_gae(self, gamma: float, gae_lambda: float, cut_at_time_limits: bool = False) -> None:
        """Generalised advantage estimation (Schulman et al., 2016) over the BAMDP.

        The BAMDP ends after K episodes: a finite horizon, so its last step bootstraps from nothing (the terminal
        observation, with its done flag, is an input the value net never learns). ``cut_at_time_limits`` treats
        every episode end by time limit as a truncation, as the VariBAD reference does with
        ``use_proper_time_limits`` (``algorithms/online_storage.py``: ``gae = gae * bad_masks[step + 1]``, where
        ``bad_masks`` is 0 only at a time limit): the advantage there is 0 and none flows from one episode into the
        one before it. An episode that ends because the MDP terminated (a fall) is not cut: inside the BAMDP its
        last step bootstraps from the next episode's first value, and at the BAMDP's end it is an ordinary
        terminal step (``r - V``), as in the reference. Without the cut one return runs over all K episodes.
        """
        # the parts that do not depend on the recursion, for all t at once
        live = (~self.dones).float()
        next_values = torch.cat([self.values[1:], self.last_values.unsqueeze(0)])
        deltas = self.rewards + gamma * live * next_values - self.values
        carry = gamma * gae_lambda * live
        if cut_at_time_limits:
            cut = (~self.time_limit_ends).float()
            deltas, carry = deltas * cut, carry * cut
        gae = torch.zeros_like(self.last_values)
        for t in reversed(range(self.num_steps)):
            gae = torch.addcmul(deltas[t], carry[t], gae)
            self.advantages[t] = gae
        self.returns = self.advantages + self.values


@dataclass
class TrajectoryBatch:
    """Time-major tensors ``(T, B, .)`` of whole trajectories (zero-padded after ``lengths``)."""

    prev_obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    state_index: torch.Tensor | None
    tasks: torch.Tensor
    lengths: torch.Tensor

    def to(self, device: torch.device) -> TrajectoryBatch:
        """The batch on ``device`` (one copy per field; the same object where it is there already)."""
        if self.tasks.device == device:
            return self
        return TrajectoryBatch(*(None if v is None else v.to(device, non_blocking=True) for v in (
            self.prev_obs, self.actions, self.rewards, self.next_obs, self.state_index, self.tasks, self.lengths)))


class TrajectoryBuffer:
    """FIFO buffer of the most recent whole BAMDP trajectories (VariBAD's VAE buffer).

    A batch is drawn uniformly WITHOUT replacement and holds at most as many trajectories as the buffer, as the
    reference's ``utils/storage_vae.py`` (``get_batch``) does: early in training, when the buffer holds fewer
    trajectories than a batch, the batch is smaller, which under the KL summed over a batch's trajectories
    (``vae_batch_reduction=reference``) lowers the KL's effective weight.
    """

    def __init__(self, capacity: int, max_len: int, obs_dim: int, action_dim: int, task_dim: int,
                 with_state_index: bool) -> None:
        self.capacity, self.max_len = capacity, max_len
        self.prev_obs = np.zeros((capacity, max_len, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, max_len, obs_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, max_len, action_dim), dtype=np.float32)
        self.rewards = np.zeros((capacity, max_len, 1), dtype=np.float32)
        self.state_index = np.zeros((capacity, max_len), dtype=np.int64) if with_state_index else None
        self.tasks = np.zeros((capacity, task_dim), dtype=np.float32)
        self.lengths = np.zeros(capacity, dtype=np.int64)
        self.size = 0
        self.cursor = 0

    def __len__(self) -> int:
        return self.size

    def add(self, prev_obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
            state_index: np.ndarray | None, tasks: np.ndarray, lengths: np.ndarray) -> None:
        """Add ``n`` trajectories given as ``(n, max_len, .)`` arrays."""
        n = len(lengths)
        idx = (self.cursor + np.arange(n)) % self.capacity
        self.prev_obs[idx], self.actions[idx], self.rewards[idx] = prev_obs, actions, rewards
        self.next_obs[idx], self.tasks[idx], self.lengths[idx] = next_obs, tasks, lengths
        if self.state_index is not None:
            self.state_index[idx] = state_index
        self.cursor = int((self.cursor + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> TrajectoryBatch:
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty trajectory buffer")
        idx = rng.choice(self.size, size=min(batch_size, self.size), replace=False)
        lengths = self.lengths[idx]
        T = int(lengths.max())

        def tm(a: np.ndarray) -> torch.Tensor:  # time-major
            return torch.from_numpy(np.ascontiguousarray(a[idx, :T].swapaxes(0, 1)))

        return TrajectoryBatch(
            prev_obs=tm(self.prev_obs), actions=tm(self.actions), rewards=tm(self.rewards),
            next_obs=tm(self.next_obs), state_index=None if self.state_index is None else tm(self.state_index),
            tasks=torch.from_numpy(self.tasks[idx]), lengths=torch.from_numpy(lengths),
        )

    _ARRAYS = ("prev_obs", "next_obs", "actions", "rewards", "state_index", "tasks", "lengths")

    def state_dict(self) -> dict:
        """The filled part only (a buffer that is not yet full checkpoints small)."""
        state: dict = {k: None if getattr(self, k) is None else getattr(self, k)[:self.size].copy()
                       for k in self._ARRAYS}
        return {**state, "size": self.size, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        if state["size"] > self.capacity:
            raise ValueError(f"checkpointed buffer holds {state['size']} trajectories, capacity is {self.capacity}")
        for k in self._ARRAYS:
            if state[k] is not None:
                getattr(self, k)[:state["size"]] = state[k]
        self.size, self.cursor = int(state["size"]), int(state["cursor"])
