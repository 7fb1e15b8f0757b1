"""The VariBAD agent (Zintgraf et al., JMLR 2021, sec. 3): a recurrent VAE infers a belief over the task, a PPO
policy acts on (state, belief). VAE and policy are trained alternately with separate optimisers; the VAE learns
from its own buffer of whole BAMDP trajectories. With ``rl_loss_through_encoder=true`` (App. C.5) the two are trained
together instead: every PPO step adds the ELBO of a fresh VAE batch and steps both optimisers, as the reference's
``ppo.py``. With ``vae_enabled=false`` and ``rl_loss_through_encoder=true`` the same machinery is RL^2.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from algorithms.common.agent import Agent, EnvInfo, IterationStats, StopQuery
from algorithms.onpolicy.acting import FusedActing
from algorithms.onpolicy.normalization import InputNormalizer, RewardNormalizer
from algorithms.onpolicy.policy import BeliefConditionedActorCritic
from algorithms.onpolicy.ppo import ClipGroup, PPOConfig, ppo_update
from algorithms.onpolicy.storage import RolloutStorage, TrajectoryBatch, TrajectoryBuffer
from algorithms.varibad.config import VariBADConfig
from algorithms.varibad.vae import VAE, elbo_loss
from envs.base import MetaVecEnv


@dataclass
class RecurrentBelief:
    """GRU hidden state per env; the belief parameters are ``encoder.head(hidden)``. ``sample`` is the latent
    held for the current episode (learned posterior sampling); ``task`` the true task (oracle only)."""

    hidden: torch.Tensor
    sample: torch.Tensor | None = None
    task: torch.Tensor | None = None


class _StepIO:
    """The env's per-step output as one ``(T, N, W)`` device array: ``[final_obs, next_obs, reward, task_done,
    time_limit_end]`` along the last axis. Each step is packed on the host and copied in one transfer; on the CPU the
    copy is the only cost."""

    def __init__(self, num_steps: int, num_envs: int, obs_dim: int, device: torch.device) -> None:
        self.obs_dim = obs_dim
        self.width = 2 * obs_dim + 3
        self.data = torch.empty(num_steps, num_envs, self.width, device=device)
        self.host = np.empty((num_envs, self.width), np.float32)
        self._obs_np: np.ndarray | None = None

    def put(self, t: int, final_obs: np.ndarray, next_obs: np.ndarray, reward: np.ndarray, task_done: np.ndarray,
            time_limit_end: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Store step ``t``; returns its ``final_obs (N, obs)``, ``next_obs (N, obs)`` and ``reward (N, 1)`` on the
        device."""
        D, h = self.obs_dim, self.host
        h[:, :D], h[:, D:2 * D], h[:, 2 * D] = final_obs, next_obs, reward
        h[:, 2 * D + 1], h[:, 2 * D + 2] = task_done, time_limit_end
        row = self.data[t]
        row.copy_(torch.from_numpy(h), non_blocking=False)
        self._obs_np = next_obs
        return row[:, :D], row[:, D:2 * D], row[:, 2 * D:2 * D + 1]

    def host_obs(self, t: int, obs: torch.Tensor) -> np.ndarray:
        """The observation step ``t`` acted on, on the host (the previous step's ``next_obs``; no transfer)."""
        if t > 0 and self._obs_np is not None:
            return self._obs_np
        return obs.cpu().numpy()

    def live(self, t: int) -> torch.Tensor:
        """``(N, 1)``: 0 where the task ended at step ``t`` (the belief returns to the prior), else 1."""
        return 1.0 - self.data[t, :, 2 * self.obs_dim + 1:2 * self.obs_dim + 2]

    def fill_storage(self, st: RolloutStorage) -> None:
        D = self.obs_dim
        st.enc_next_obs.copy_(self.data[..., :D])
        st.enc_rewards.copy_(self.data[..., 2 * D:2 * D + 1])
        st.task_done.copy_(self.data[..., 2 * D + 1] > 0.5)
        st.dones.copy_(st.task_done)
        st.time_limit_ends.copy_(self.data[..., 2 * D + 2] > 0.5)


def _mean_metrics(steps: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over the VAE steps of one iteration."""
    return {k: float(np.mean([m[k] for m in steps])) for k in steps[0]}


class VariBADAgent(Agent):
    name = "varibad"

    def __init__(self, cfg: VariBADConfig, env_info: EnvInfo, seed: int, device: str = "cpu",
                 update_threads: int = 1) -> None:
        self.cfg, self.info = cfg, env_info
        self.update_threads = update_threads
        self.name = cfg.name
        self.device = torch.device(device)
        self.rng = np.random.default_rng(seed)
        space = env_info.action_space
        self.discrete = isinstance(space, gym.spaces.Discrete)
        self.encoder_action_dim = int(space.n) if self.discrete else int(space.shape[0])
        self.vae = VAE(cfg, env_info.obs_dim, self.encoder_action_dim, env_info.task_dim, env_info.num_states)
        self.encoder = self.vae.encoder
        belief_dim = {"mean_logvar": 2 * cfg.latent_dim, "task": env_info.task_dim}.get(cfg.policy_belief,
                                                                                         cfg.latent_dim)
        #: the multi-task oracle conditions on the true task and runs no inference
        self.uses_true_task = cfg.policy_belief == "task"
        self.hold_sample = cfg.policy_belief == "sample" and cfg.belief_sample_hold == "episode"
        #: width of the state input to the policy (0 when it acts on the belief alone)
        self.policy_obs_dim = env_info.obs_dim if cfg.policy_sees_state else 0
        self.policy = BeliefConditionedActorCritic(
            self.policy_obs_dim, belief_dim, space, cfg.policy_layers, cfg.policy_state_embed_dim,
            cfg.policy_belief_embed_dim, cfg.policy_activation, cfg.policy_init, cfg.norm_actions_pre_sampling,
            cfg.value_head_init)
        self.vae.to(self.device)
        self.policy.to(self.device)
        policy_params = list(self.policy.parameters())
        encoder_params = list(self.encoder.parameters()) if cfg.rl_loss_through_encoder else []
        #: the PPO step's gradient-norm clipping: the actor-critic at max_grad_norm and an encoder the RL loss trains
        #: at encoder_max_grad_norm, each on its own, as the reference's ppo.py (or both at max_grad_norm together)
        self.ppo_clip_groups: list[ClipGroup] = (
            [(policy_params + encoder_params, cfg.max_grad_norm)] if cfg.through_encoder_clip == "joint"
            else [(policy_params, cfg.max_grad_norm)] + ([(encoder_params, cfg.encoder_max_grad_norm)]
                                                          if encoder_params else []))
        #: one-hot rows of the discrete actions, for the encoder's input (on the device and on the host)
        self._eye = torch.eye(self.encoder_action_dim, device=self.device)
        self._eye_np = np.eye(self.encoder_action_dim, dtype=np.float32)
        # fused: one kernel for the whole parameter list (the same update as the per-tensor loop, ~3x less overhead
        # on these small networks)
        fused = self.device.type in ("cpu", "cuda")
        # the reference steps the encoder with its VAE optimiser. Without a VAE (RL^2) that is Adam with the policy's
        # learning rate and epsilon in every one of its RL^2 configs (lr_vae = lr_policy, eps 1e-8): one Adam over
        # both is the same update. With a VAE the encoder stays in the VAE's optimiser, stepped in every PPO step.
        rl2_encoder = encoder_params if not cfg.vae_enabled else []
        self.policy_optimizer = torch.optim.Adam(policy_params + rl2_encoder, lr=cfg.lr_policy, eps=cfg.policy_eps,
                                                 fused=fused)
        self.vae_optimizer = (torch.optim.Adam([*self.encoder.parameters(), *self.vae.decoder_parameters()],
                                               lr=cfg.lr_vae, fused=fused) if cfg.vae_enabled else None)
        self.obs_norm = InputNormalizer(self.policy_obs_dim, cfg.norm_state_for_policy, cfg.policy_input_clip)
        self.belief_norm = InputNormalizer(belief_dim, cfg.norm_belief_for_policy, cfg.policy_input_clip)
        self.reward_norm = RewardNormalizer(env_info.num_envs, cfg.gamma, cfg.norm_rew_for_policy)
        self.ppo_cfg = PPOConfig(cfg.ppo_epochs, cfg.ppo_minibatches, cfg.ppo_clip, cfg.value_loss_coef,
                                 cfg.entropy_coef, value_loss=cfg.value_loss,
                                 through_encoder_minibatches=cfg.through_encoder_minibatches)
        N, T = env_info.num_envs, cfg.num_steps
        action_shape = () if self.discrete else (self.encoder_action_dim,)
        self.storage = RolloutStorage(T, N, env_info.obs_dim, self.policy_obs_dim, belief_dim, action_shape,
                                      self.encoder_action_dim, cfg.gru_hidden_size, self.discrete, self.device)
        L = env_info.max_trajectory_len
        self.per_state = cfg.vae_enabled and cfg.decode_reward and cfg.reward_decoder == "per_state_bernoulli"
        self.buffer = (TrajectoryBuffer(cfg.vae_buffer_size, L, env_info.obs_dim, self.encoder_action_dim,
                                        env_info.task_dim, self.per_state) if cfg.vae_enabled else None)
        # the running (unfinished) trajectory of each env, for the VAE buffer and for re-encoding
        self._traj = {
            "prev_obs": np.zeros((N, L, env_info.obs_dim), np.float32),
            "actions": np.zeros((N, L, self.encoder_action_dim), np.float32),
            "rewards": np.zeros((N, L, 1), np.float32),
            "next_obs": np.zeros((N, L, env_info.obs_dim), np.float32),
            "state_index": np.zeros((N, L), np.int64),
        }
        #: the rollout runs the networks through :class:`FusedActing` where their structure allows it
        self.fused_acting = FusedActing.supports(self.policy, self.encoder, self.obs_norm, self.belief_norm)
        self._cursor = np.zeros(N, np.int64)
        self._arange = np.arange(N)
        self._obs: torch.Tensor | None = None
        self._hidden = self.encoder.initial_hidden(N)
        self._held: torch.Tensor | None = None  # latent held for the current episode (learned posterior sampling)
        self._episode_returns: np.ndarray | None = None  # (N, K) returns of the running tasks' episodes
        self.frames = 0
        self.iterations = 0

    # ------------------------------------------------------------------ belief helpers
    def _encode_action(self, action: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return self._eye[action.long()]
        return action.float()

    def draw_latent(self, hidden: torch.Tensor) -> torch.Tensor:
        """A latent sample from the posterior ``q(m | tau_:t) = head(hidden)`` (reparameterised)."""
        mean, logvar = self.encoder.head(hidden)
        return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)

    def belief_input(self, hidden: torch.Tensor, held_sample: torch.Tensor | None = None,
                     tasks: torch.Tensor | None = None) -> torch.Tensor:
        """The raw (un-normalised) belief features the policy sees."""
        mode = self.cfg.policy_belief
        if mode == "task":
            assert tasks is not None, "the oracle needs the true tasks"
            return tasks
        if mode == "sample":
            return held_sample if held_sample is not None else self.draw_latent(hidden)
        mean, logvar = self.encoder.head(hidden)
        return torch.cat([mean, logvar], dim=-1) if mode == "mean_logvar" else mean

    # ------------------------------------------------------------------ meta-test interface
    @torch.no_grad()
    def initial_belief(self, num_envs: int, tasks: np.ndarray | None = None) -> RecurrentBelief:
        hidden = self.encoder.initial_hidden(num_envs)
        if self.uses_true_task and tasks is None:
            raise ValueError("the oracle agent must be given the true tasks")
        return RecurrentBelief(hidden, self.draw_latent(hidden) if self.hold_sample else None,
                               self._tensor(tasks) if self.uses_true_task else None)

    @torch.no_grad()
    def act(self, obs: np.ndarray, belief: RecurrentBelief, deterministic: bool) -> np.ndarray:
        obs_t = self._tensor(obs)[:, :self.policy_obs_dim]
        features = self.belief_input(belief.hidden, belief.sample, belief.task)
        action, _, _ = self.policy.act(self.obs_norm(obs_t), self.belief_norm(features), deterministic)
        return action.cpu().numpy()

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        """A host array as a float32 tensor on the agent's device."""
        return torch.as_tensor(np.asarray(array, dtype=np.float32), device=self.device)

    @torch.no_grad()
    def update_belief(self, belief: RecurrentBelief, obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
                      next_obs: np.ndarray, episode_done: np.ndarray, task_done: np.ndarray) -> RecurrentBelief:
        if self.uses_true_task:
            return belief
        action_t = torch.as_tensor(action, device=self.device)
        hidden = self.encoder.step(self._encode_action(action_t), self._tensor(reward)[:, None],
                                   self._tensor(next_obs), belief.hidden)
        hidden = hidden * self._tensor(~task_done)[:, None]
        sample = belief.sample
        if self.hold_sample and episode_done.any():  # a new hypothesis at every episode boundary
            sample = sample.clone()
            done = torch.as_tensor(episode_done, device=self.device)
            sample[done] = self.draw_latent(hidden[done])
        return RecurrentBelief(hidden, sample, belief.task)

    # ------------------------------------------------------------------ meta-training
    def train_iteration(self, env: MetaVecEnv, should_stop: StopQuery | None = None) -> IterationStats:
        cfg = self.cfg
        t0 = time.perf_counter()
        raw_obs, raw_beliefs, finished = self._collect(env)
        self.obs_norm.update(raw_obs)
        self.belief_norm.update(raw_beliefs)
        t1 = time.perf_counter()
        frames = cfg.num_steps * self.info.num_envs
        self.frames += frames
        self.iterations += 1
        metrics: dict[str, float] = {}
        for k in range(finished.shape[1]):
            if not np.isnan(finished[:, k]).all():
                metrics[f"train/return_ep{k + 1}"] = float(np.nanmean(finished[:, k]))
        t2 = t3 = t1
        if self.frames >= cfg.precollect_frames:
            with self.updating():
                metrics.update(self.update_policy())
                t2 = t3 = time.perf_counter()
                # the VAE learns from whole BAMDP trajectories: none yet when pre-collection is shorter than one
                if (self.vae_optimizer is not None and self.buffer is not None and len(self.buffer) > 0
                        and not cfg.rl_loss_through_encoder):
                    vae_metrics = [self.update_vae() for _ in range(cfg.vae_updates_per_iteration)]
                    metrics.update(_mean_metrics(vae_metrics))
                    t3 = time.perf_counter()
        metrics.update({"time/rollout_s": t1 - t0, "time/policy_update_s": t2 - t1, "time/vae_update_s": t3 - t2})
        return IterationStats(frames=frames, metrics=metrics)

    @torch.no_grad()
    def _collect(self, env: MetaVecEnv) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Roll the policy out for ``num_steps``; returns raw policy inputs and finished per-episode returns.

        Per env step the host and the device exchange one array each way: the actions go to the env, and the env's
        observation, successor, reward and flags come back packed in one array (``_StepIO``). Everything PPO needs
        that is elementwise in what was observed (normalised observations and beliefs, normalised rewards, flags)
        is written to the storage once, after the loop.
        """
        cfg, st, N, dev = self.cfg, self.storage, self.info.num_envs, self.device
        T, P = cfg.num_steps, self.policy_obs_dim
        if self._obs is None:
            obs_np, _ = env.reset()
            self._obs = torch.as_tensor(obs_np, device=dev)
            self._episode_returns = np.zeros((N, env.episodes_per_task), np.float64)
        elif self._cursor.any():
            self._refresh_hidden()  # the encoder changed since these hidden states were computed
        st.initial_hidden.copy_(self._hidden)
        obs, hidden = self._obs, self._hidden
        if self.hold_sample and self._held is None:
            self._held = self.draw_latent(hidden)
        io = _StepIO(T, N, self.info.obs_dim, dev)
        raw_obs = torch.empty(T, N, P, device=dev)
        raw_beliefs = torch.empty(T, N, st.policy_belief.shape[-1], device=dev)
        normalised_rewards = np.empty((T, N), np.float32)
        finished_returns: list[np.ndarray] = []
        fused = (FusedActing(self.policy, self.encoder, self.obs_norm, self.belief_norm, P, raw_beliefs.shape[-1],
                             cfg.policy_belief) if self.fused_acting else None)
        belief_from_hidden = fused is not None and cfg.policy_belief in ("mean_logvar", "mean")
        pending: tuple | None = None  # the previous step's host-side bookkeeping, done while the env steps
        for t in range(T):
            if belief_from_hidden:
                belief = fused.belief(hidden)
            else:
                belief = self.belief_input(hidden, self._held, self._tasks_tensor(env) if self.uses_true_task else None)
            raw_obs[t], raw_beliefs[t] = obs[:, :P], belief
            if fused is not None:
                action, log_prob, value = fused.act(obs[:, :P], belief)
            else:
                action, log_prob, value = self.policy.act(self.obs_norm(obs[:, :P]), self.belief_norm(belief))
            st.actions[t], st.log_probs[t], st.values[t] = action, log_prob, value
            action_np = action.cpu().numpy()
            obs_np = io.host_obs(t, obs)
            env.step_async(action_np)
            if pending is not None:
                self._bookkeep(env, *pending, normalised_rewards, finished_returns)
                pending = None
            next_obs_np, reward_np, _, _, info = env.step_wait()
            task_done, episode_done = info["task_done"], info["episode_done"]
            final_obs, next_obs, reward = io.put(t, info["final_obs"], next_obs_np, reward_np, task_done,
                                                 info["time_limit"])
            enc_action = self._encode_action(action)
            st.enc_actions[t] = enc_action
            if not self.uses_true_task:
                hidden = (fused.encoder_step(enc_action, reward, final_obs, hidden) if fused is not None
                          else self.encoder.step(enc_action, reward, final_obs, hidden))
            if task_done.any():
                hidden = hidden * io.live(t)
            if self.hold_sample and episode_done.any():
                ep_done = torch.as_tensor(episode_done, device=dev)
                self._held[ep_done] = self.draw_latent(hidden[ep_done])
            obs = next_obs
            # step t's host-side bookkeeping waits until simulator workers run step t + 1 (same order, same values)
            pending = (t, obs_np, action_np, reward_np, info)
        if pending is not None:
            self._bookkeep(env, *pending, normalised_rewards, finished_returns)
        # elementwise in what the loop saw: the same values as computing them step by step
        st.policy_obs.copy_(self.obs_norm(raw_obs))
        st.policy_belief.copy_(self.belief_norm(raw_beliefs))
        st.rewards.copy_(torch.as_tensor(normalised_rewards, device=dev))
        io.fill_storage(st)
        tasks = self._tasks_tensor(env) if self.uses_true_task else None
        st.last_values = self.policy.value(self.obs_norm(obs[:, :P]),
                                           self.belief_norm(self.belief_input(hidden, self._held, tasks)))
        self._obs, self._hidden = obs.clone(), hidden
        K = env.episodes_per_task
        finished = np.concatenate(finished_returns) if finished_returns else np.full((1, K), np.nan)
        return raw_obs, raw_beliefs, finished

    def _bookkeep(self, env: MetaVecEnv, t: int, obs_np: np.ndarray, action_np: np.ndarray, reward_np: np.ndarray,
                  info: dict, normalised_rewards: np.ndarray, finished_returns: list[np.ndarray]) -> None:
        """Step ``t``'s host-side work that the next action does not need: the normalised reward, the running
        trajectories (VAE buffer, re-encoding) and the per-episode training returns. Steps are processed in order."""
        task_done = info["task_done"]
        normalised_rewards[t] = self.reward_norm(reward_np, task_done)
        c, tr, arange = self._cursor, self._traj, self._arange
        tr["prev_obs"][arange, c] = obs_np
        tr["actions"][arange, c] = self._encoded_action_np(action_np)
        tr["rewards"][arange, c, 0] = reward_np
        tr["next_obs"][arange, c] = info["final_obs"]
        if self.per_state:
            tr["state_index"][arange, c] = env.inner.state_index(info["final_obs"])
        self._episode_returns[arange, info["episode_index"]] += reward_np
        self._cursor += 1
        if task_done.any():
            done_idx = np.flatnonzero(task_done)
            if self.buffer is not None:
                self.buffer.add(tr["prev_obs"][done_idx], tr["actions"][done_idx], tr["rewards"][done_idx],
                                tr["next_obs"][done_idx], tr["state_index"][done_idx] if self.per_state else None,
                                info["task"][done_idx], self._cursor[done_idx])
            finished_returns.append(self._episode_returns[done_idx].copy())
            self._episode_returns[done_idx] = 0.0
            self._cursor[done_idx] = 0

    def _tasks_tensor(self, env: MetaVecEnv) -> torch.Tensor:
        return torch.as_tensor(env.tasks, dtype=torch.float32, device=self.device)

    def _encoded_action_np(self, action_np: np.ndarray) -> np.ndarray:
        """The encoder's action input on the host (one-hot for discrete actions), for the VAE's trajectories."""
        if self.discrete:
            return self._eye_np[action_np]
        return action_np

    @torch.no_grad()
    def _refresh_hidden(self) -> None:
        """Re-encode unfinished trajectories with the updated encoder (as the reference code does)."""
        T = int(self._cursor.max())
        tr = self._traj
        seq = [self._tensor(np.ascontiguousarray(tr[k][:, :T].swapaxes(0, 1)))
               for k in ("actions", "rewards", "next_obs")]
        hidden = self.encoder.hidden_sequence(*seq)  # (T + 1, N, H)
        rows = torch.as_tensor(self._cursor, device=self.device)
        self._hidden = hidden[rows, torch.arange(self.info.num_envs, device=self.device)]

    def update_policy(self) -> dict[str, float]:
        """PPO on the last rollout. The encoder is only trained by it if ``rl_loss_through_encoder``."""
        st = self.storage
        st.compute_gae(self.cfg.gamma, self.cfg.gae_lambda, self.cfg.episode_boundary == "reference")
        through = self.cfg.rl_loss_through_encoder
        recompute = self._recompute_beliefs if through else None
        optimizers = [self.policy_optimizer]
        elbo_metrics: list[dict[str, float]] = []
        elbo = None
        if through and self.vae_optimizer is not None:
            # the reference's ppo.py with rlloss_through_encoder: every PPO step also takes the VAE's loss on a fresh
            # batch and steps the VAE's optimiser (and no VAE updates of their own follow PPO)
            optimizers.append(self.vae_optimizer)
            buffer = self.buffer
            if buffer is not None and len(buffer) > 0:
                def elbo() -> torch.Tensor:
                    out = elbo_loss(self.vae, buffer.sample(self.cfg.vae_batch_trajectories, self.rng).to(self.device),
                                    self.cfg)
                    elbo_metrics.append(out.metrics())
                    return out.loss
        stats = ppo_update(self.policy, optimizers, self.ppo_clip_groups, st, self.ppo_cfg, recompute, elbo)
        metrics = {f"ppo/{k}": v for k, v in stats.items()}
        if elbo_metrics:
            metrics.update(_mean_metrics(elbo_metrics))
        return metrics

    def _recompute_beliefs(self, env_idx: torch.Tensor) -> torch.Tensor:
        st = self.storage
        hidden = self.encoder.encode_with_resets(st.enc_actions[:, env_idx], st.enc_rewards[:, env_idx],
                                                 st.enc_next_obs[:, env_idx], st.task_done[:, env_idx],
                                                 st.initial_hidden[env_idx])
        return self.belief_norm(self.belief_input(hidden))

    def update_vae(self) -> dict[str, float]:
        """One gradient step on the ELBO (eq. 10) with a batch of whole trajectories from the VAE buffer."""
        assert self.buffer is not None
        return self.vae_step(self.buffer.sample(self.cfg.vae_batch_trajectories, self.rng))

    def vae_step(self, batch: TrajectoryBatch) -> dict[str, float]:
        """One gradient step on the ELBO of ``batch``, with the decoders' and encoder's gradient clipping."""
        assert self.vae_optimizer is not None
        out = elbo_loss(self.vae, batch.to(self.device), self.cfg)
        self.vae_optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if self.cfg.encoder_max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.encoder.parameters(), self.cfg.encoder_max_grad_norm)
        if self.cfg.decoder_max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.vae.decoder_parameters(), self.cfg.decoder_max_grad_norm)
        self.vae_optimizer.step()
        return out.metrics()

    # ------------------------------------------------------------------ persistence
    def state_dict(self, resume: bool = True) -> dict[str, Any]:
        state: dict[str, Any] = {
            "vae": self.vae.state_dict(), "policy": self.policy.state_dict(),
            "policy_optimizer": self.policy_optimizer.state_dict(),
            "vae_optimizer": None if self.vae_optimizer is None else self.vae_optimizer.state_dict(),
            "obs_norm": self.obs_norm.state_dict(), "belief_norm": self.belief_norm.state_dict(),
            "reward_norm": self.reward_norm.state_dict(), "frames": self.frames, "iterations": self.iterations,
            "numpy_rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            # on a GPU the samples come from its generator: without it a resumed run would diverge there
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }
        if resume:
            # the rollout in flight and the VAE buffer: without them a resumed run would diverge from an
            # uninterrupted one (design.md §5: resume continues the same record)
            state["rollout"] = {
                "obs": self._obs, "hidden": self._hidden, "held": self._held, "cursor": self._cursor.copy(),
                "episode_returns": None if self._episode_returns is None else self._episode_returns.copy(),
                "trajectories": {k: v.copy() for k, v in self._traj.items()},
            }
            state["vae_buffer"] = None if self.buffer is None else self.buffer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.vae.load_state_dict(state["vae"])
        self.policy.load_state_dict(state["policy"])
        self.policy_optimizer.load_state_dict(state["policy_optimizer"])
        if self.vae_optimizer is not None and state["vae_optimizer"] is not None:
            self.vae_optimizer.load_state_dict(state["vae_optimizer"])
        self.obs_norm.load_state_dict(state["obs_norm"])
        self.belief_norm.load_state_dict(state["belief_norm"])
        self.reward_norm.load_state_dict(state["reward_norm"])
        self.frames, self.iterations = state["frames"], state["iterations"]
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        if "rollout" in state:
            rollout = state["rollout"]

            def here(x: torch.Tensor | None) -> torch.Tensor | None:  # checkpoints hold CPU tensors
                return None if x is None else x.to(self.device)

            self._obs, self._hidden, self._held = here(rollout["obs"]), here(rollout["hidden"]), here(rollout["held"])
            self._cursor = rollout["cursor"].copy()
            returns = rollout["episode_returns"]
            self._episode_returns = None if returns is None else returns.copy()
            self._traj = {k: v.copy() for k, v in rollout["trajectories"].items()}
        if state.get("vae_buffer") is not None and self.buffer is not None:
            self.buffer.load_state_dict(state["vae_buffer"])
