"""The PEARL agent (Rakelly et al., ICML 2019): off-policy meta-RL with a probabilistic, permutation-invariant context.

``q(z | c)`` is a product of Gaussian factors, one per context transition ``c_n = (s, a, r[, s'])`` (sec. 4.1):
``sigma^2 = 1 / sum 1/sigma_n^2``, ``mu = sigma^2 sum mu_n / sigma_n^2``. The learner (``learning.py``) trains it
with SAC; the schedule of what is collected (``collection.py``) follows Algorithm 1. This module acts, collects and
keeps the buffers and the resume state.

Batched collection. ``num_envs`` env copies step together, K episodes per reset. Work items (task, phases) are handed
to copies; the env is reset when every copy has finished its item or its K episodes. Steps of copies with nothing to
do until that reset are discarded and not counted as frames (``collect/discarded_steps``). Tasks sampled twice in
one iteration are collected side by side and share their encoder buffer (oyster collects them one after the other).

The BAMDP done flag ``MetaVecEnv`` appends is stripped: PEARL's policy is Markov in (s, z).

Meta-test (Algorithm 2). The belief holds the context's sufficient statistics (sums of 1/sigma_n^2 and of
mu_n/sigma_n^2 over every transition of the task), so the posterior over all context so far is exact. z ~ prior for
the first ``exploration_episodes_eval`` episodes, then at each episode boundary z ~ q(z | all context so far), held
within the episode. Deterministic acting uses tanh(mean).

Randomness: a numpy Generator (task and batch indices) and two torch Generators (training; meta-test), all in the
state dict, so a resumed run equals an uninterrupted one and meta-tests do not perturb training.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from algorithms.common.agent import Agent, EnvInfo, IterationInterrupted, IterationStats, StopQuery
from algorithms.common.errors import ConfigError
from algorithms.pearl.buffers import MultiTaskBuffer, TransitionLayout
from algorithms.pearl.collection import CollectStats, IterationInProgress, WorkItem, initial_pool, iteration_items
from algorithms.pearl.config import PEARLConfig
from algorithms.pearl.learning import SACLearner
from algorithms.pearl.networks import reparameterised_sample
from envs.base import MetaVecEnv


@dataclass
class PEARLBelief:
    """Per env: sufficient statistics of the task's whole context for q(z | c), and the z held this episode."""

    precision_sum: torch.Tensor  # (n, L): sum over the context of 1 / sigma_n^2
    weighted_mean_sum: torch.Tensor  # (n, L): sum of mu_n / sigma_n^2
    count: np.ndarray  # (n,): transitions in the context
    episodes: np.ndarray  # (n,): episodes finished in the current task
    z: torch.Tensor  # (n, L)

    def posterior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """mu, var of q(z | c) over all context so far (rows with no context: meaningless, never used)."""
        var = 1.0 / self.precision_sum
        return var * self.weighted_mean_sum, var


class PEARLAgent(Agent):
    name = "pearl"

    def __init__(self, cfg: PEARLConfig, env_info: EnvInfo, seed: int, device: str = "cpu",
                 update_threads: int = 1) -> None:
        self.update_threads = update_threads
        space = env_info.action_space
        if not isinstance(space, gym.spaces.Box):
            raise ConfigError(f"PEARL needs a continuous (Box) action space, got {space}")
        low, high = np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ConfigError("PEARL's tanh policy needs a bounded action space")
        self.cfg, self.info = cfg, env_info
        self.name = cfg.name
        self.device = torch.device(device)
        self.obs_dim = env_info.obs_dim - 1  # the BAMDP done flag is stripped (module docstring)
        self.action_dim = int(np.prod(space.shape))
        self._action_low, self._action_high = low, high
        #: the policy acts in [-1, 1]^A; other bounds are mapped affinely (every env here has [-1, 1])
        self._rescale = not (np.all(low == -1.0) and np.all(high == 1.0))
        self.layout = TransitionLayout(self.obs_dim, self.action_dim)
        self.context_dim = self.obs_dim + self.action_dim + 1 + (self.obs_dim if cfg.context_next_obs else 0)
        torch_seed, eval_seed = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(2))
        self.rng = np.random.default_rng(seed)
        #: the training stream: collection's actions and z, and the learner's samples
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(torch_seed + 1)
        self.learner = SACLearner(cfg, self.obs_dim, self.action_dim, self.context_dim, self.layout,
                                  self.context_from_rows, self.device, torch_seed, self.gen)
        self.eval_gen = torch.Generator(device=self.device)
        self.eval_gen.manual_seed(eval_seed)
        #: the finite training task set (Algorithm 1), fixed at the first iteration
        self.train_tasks: np.ndarray | None = None
        self.rl_buffer: MultiTaskBuffer | None = None
        self.enc_buffer: MultiTaskBuffer | None = None
        self.frames = 0
        self.iterations = 0
        self._in_progress: IterationInProgress | None = None

    @property
    def networks(self) -> dict[str, nn.Module]:
        return self.learner.networks

    @property
    def encoder(self) -> nn.Module:
        return self.learner.encoder

    @property
    def policy(self) -> nn.Module:
        return self.learner.policy

    @property
    def grad_steps(self) -> int:
        return self.learner.grad_steps

    # ------------------------------------------------------------------ helpers
    def _strip(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(obs, dtype=np.float32)[:, :self.obs_dim]

    def _to_env_action(self, action: np.ndarray) -> np.ndarray:
        if not self._rescale:
            return action
        return self._action_low + (action + 1.0) * 0.5 * (self._action_high - self._action_low)

    def _from_env_action(self, action: np.ndarray) -> np.ndarray:
        if not self._rescale:
            return np.asarray(action, np.float32)
        return 2.0 * (np.asarray(action, np.float32) - self._action_low) / (self._action_high - self._action_low) - 1.0

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32).to(self.device, non_blocking=True)

    def context_from_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Context transitions ``(s, a, r[, s'])`` from buffer rows (the env's reward, not the critic's)."""
        lay = self.layout
        parts = [rows[..., lay.obs], rows[..., lay.action], rows[..., lay.context_reward]]
        if self.cfg.context_next_obs:
            parts.append(rows[..., lay.next_obs])
        return torch.cat(parts, dim=-1)

    def _prior_sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        L = self.cfg.latent_dim
        return reparameterised_sample(torch.zeros(n, L, device=self.device), torch.ones(n, L, device=self.device),
                                      generator)

    # ------------------------------------------------------------------ meta-test interface (Algorithm 2)
    @torch.no_grad()
    def initial_belief(self, num_envs: int, tasks: np.ndarray | None = None) -> PEARLBelief:
        L = self.cfg.latent_dim
        return PEARLBelief(torch.zeros(num_envs, L, device=self.device), torch.zeros(num_envs, L, device=self.device),
                           np.zeros(num_envs, np.int64), np.zeros(num_envs, np.int64),
                           self._prior_sample(num_envs, self.eval_gen))

    @torch.no_grad()
    def act(self, obs: np.ndarray, belief: PEARLBelief, deterministic: bool) -> np.ndarray:
        mean, log_std = self.policy(self._tensor(self._strip(obs)), belief.z)
        action = self.policy.mode(mean) if deterministic else self.policy.sample(mean, log_std, self.eval_gen)[0]
        return self._to_env_action(action.cpu().numpy())

    @torch.no_grad()
    def update_belief(self, belief: PEARLBelief, obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
                      next_obs: np.ndarray, episode_done: np.ndarray, task_done: np.ndarray) -> PEARLBelief:
        n = len(obs)
        rows = self.layout.rows(self._strip(obs), self._from_env_action(action), reward, reward,
                                self._strip(next_obs), np.zeros(n, np.float32))
        mu_n, var_n = self.encoder.factors(self.context_from_rows(self._tensor(rows)))
        precision = belief.precision_sum + 1.0 / var_n
        weighted = belief.weighted_mean_sum + mu_n / var_n
        count = belief.count + 1
        episodes = belief.episodes + episode_done.astype(np.int64)
        z = belief.z
        new = PEARLBelief(precision, weighted, count, episodes, z)
        if episode_done.any():
            z = z.clone()
            keep = torch.as_tensor(~task_done, device=self.device)[:, None]
            new.precision_sum = torch.where(keep, precision, 0.0)
            new.weighted_mean_sum = torch.where(keep, weighted, 0.0)
            new.count = np.where(task_done, 0, count)
            new.episodes = np.where(task_done, 0, episodes)
            posterior_rows = episode_done & ~task_done & (new.episodes >= self.cfg.exploration_episodes_eval)
            prior_rows = episode_done & ~posterior_rows
            if prior_rows.any():
                z[torch.as_tensor(prior_rows, device=self.device)] = self._prior_sample(int(prior_rows.sum()),
                                                                                        self.eval_gen)
            if posterior_rows.any():
                idx = torch.as_tensor(posterior_rows, device=self.device)
                mu, var = new.posterior()
                z[idx] = reparameterised_sample(mu[idx], var[idx], self.eval_gen)
            new.z = z
        return new

    @torch.no_grad()
    def adapted_belief(self, belief: PEARLBelief) -> PEARLBelief:
        """z ~ q(z | c) over all the context collected so far (the prior where there is none): PEARL's meta-test
        acts on a posterior sample once exploration is over (paper sec. 4.2)."""
        z = self._prior_sample(len(belief.count), self.eval_gen)
        seen = torch.as_tensor(belief.count > 0, device=self.device)
        if seen.any():
            mu, var = belief.posterior()
            z[seen] = reparameterised_sample(mu[seen], var[seen], self.eval_gen)
        return PEARLBelief(belief.precision_sum, belief.weighted_mean_sum, belief.count.copy(),
                           belief.episodes.copy(), z)

    def evaluation_rng_state(self) -> torch.Tensor:
        return self.eval_gen.get_state()

    def set_evaluation_rng_state(self, state: torch.Tensor) -> None:
        self.eval_gen.set_state(state)

    # ------------------------------------------------------------------ meta-training (Algorithm 1)
    def _setup_tasks(self, env: MetaVecEnv) -> None:
        if not env.add_done_flag:
            raise ConfigError("PEARL expects the MetaVecEnv's done flag as the last observation entry")
        fixed = env.inner.train_tasks()
        if fixed is not None:
            tasks = np.asarray(fixed, np.float32)
        else:
            tasks = self._draw_distinct_tasks(env, self.cfg.num_train_tasks)
        self.train_tasks = tasks
        width = self.layout.width
        self.rl_buffer = MultiTaskBuffer(len(tasks), self.cfg.replay_buffer_size, width)
        self.enc_buffer = MultiTaskBuffer(len(tasks), self.cfg.replay_buffer_size, width)

    @staticmethod
    def _draw_distinct_tasks(env: MetaVecEnv, n: int, max_rounds: int = 100) -> np.ndarray:
        """``n`` distinct tasks from the training distribution (a discrete one, e.g. cheetah_dir's two directions,
        needs several draws); an error if the distribution has fewer than ``n``."""
        found: list[np.ndarray] = []
        seen: set[bytes] = set()
        for _ in range(max_rounds):
            for task in np.asarray(env.draw_tasks(n), np.float32):
                key = task.tobytes()
                if key not in seen:
                    seen.add(key)
                    found.append(task)
                    if len(found) == n:
                        return np.stack(found)
        raise ConfigError(f"algo.num_train_tasks={n}, but {max_rounds} x {n} draws from the env's task distribution "
                          f"gave only {len(found)} distinct tasks")

    def train_iteration(self, env: MetaVecEnv, should_stop: StopQuery | None = None) -> IterationStats:
        """Algorithm 1's outer loop body: collect, then ``num_train_steps_per_itr`` gradient steps. A pending stop
        (``should_stop``) is acted on between gradient steps (:class:`IterationInterrupted`); the next call then
        carries the same iteration on without collecting again."""
        cfg = self.cfg
        if self.train_tasks is None:
            self._setup_tasks(env)
        if self._in_progress is None:
            self._in_progress = self._collect_iteration_data(env)
        progress = self._in_progress
        with self.updating():
            metrics = self.train_steps(cfg.num_train_steps_per_itr, progress, should_stop)
        self._in_progress = None
        self.frames += progress.frames
        self.iterations += 1
        for kind, values in progress.returns.items():
            if values:
                metrics[f"train/return_{kind}"] = float(np.mean(values))
        metrics.update({"collect/discarded_steps": float(progress.discarded),
                        "train/grad_steps": float(self.grad_steps), "time/collect_s": progress.collect_s,
                        "time/update_s": progress.update_s})
        return IterationStats(frames=progress.frames, metrics=metrics)

    def _collect_iteration_data(self, env: MetaVecEnv) -> IterationInProgress:
        """Algorithm 1 lines 3-10: the initial pool (first iteration only), then this iteration's sampled tasks."""
        cfg = self.cfg
        assert self.train_tasks is not None and self.rl_buffer is not None and self.enc_buffer is not None
        started = time.perf_counter()
        stats = CollectStats()
        if self.iterations == 0:
            self.collect(env, initial_pool(len(self.train_tasks), cfg), stats)
        sampled = self.rng.integers(len(self.train_tasks), size=cfg.num_tasks_sample)
        for task in np.unique(sampled):
            self.enc_buffer[int(task)].clear()
        self.collect(env, iteration_items(sampled, cfg), stats)
        return IterationInProgress(frames=stats.frames, discarded=stats.discarded, returns=stats.returns,
                                    collect_s=time.perf_counter() - started)

    @torch.no_grad()
    def _episode_latents(self, tasks: list[int], kinds: list[str]) -> torch.Tensor:
        """z for a new episode of each listed copy: prior, or q(z | c) with c from the task's encoder buffer
        (this round's data; the prior while that is still empty)."""
        assert self.enc_buffer is not None
        z = self._prior_sample(len(tasks), self.gen)
        rows = [i for i, (t, k) in enumerate(zip(tasks, kinds, strict=True))
                if k == "posterior" and len(self.enc_buffer[t]) > 0]
        if rows:
            context = self._tensor(self.enc_buffer.sample(np.array([tasks[i] for i in rows]),
                                                          self.cfg.embedding_batch_size, self.rng))
            mu, var = self.encoder.posterior(self.context_from_rows(context))
            z[torch.as_tensor(rows, device=self.device)] = reparameterised_sample(mu, var, self.gen)
        return z

    @torch.no_grad()
    def collect(self, env: MetaVecEnv, items: list[WorkItem], stats: CollectStats) -> None:
        """Run the work items on the batched env (module docstring: batched collection)."""
        assert self.train_tasks is not None and self.rl_buffer is not None and self.enc_buffer is not None
        N, H = env.num_envs, env.horizon
        use_dense = self.cfg.dense_rewards_for_critic
        queue = deque(items)
        slots: list[WorkItem | None] = [None] * N
        staged = np.zeros((N, H, self.layout.width), np.float32)
        while True:
            for i in range(N):
                if (slots[i] is None or slots[i].done) and queue:
                    slots[i] = queue.popleft()
                elif slots[i] is not None and slots[i].done:
                    slots[i] = None
            live = [s for s in slots if s is not None]
            if not live:
                return
            task_ids = [s.task if s is not None else live[0].task for s in slots]
            obs, _ = env.reset(options={"tasks": self.train_tasks[task_ids]})
            active = np.array([s is not None for s in slots])
            kinds = [s.latent_kind if s is not None else "prior" for s in slots]
            z = self._episode_latents(task_ids, kinds)
            length = np.zeros(N, np.int64)
            ret = np.zeros(N, np.float64)
            while active.any():
                mean, log_std = self.policy(self._tensor(self._strip(obs)), z)
                action = self.policy.sample(mean, log_std, self.gen)[0].cpu().numpy()
                next_obs, reward, _, _, info = env.step(self._to_env_action(action))
                if use_dense and "dense_reward" not in info:
                    raise ConfigError("algo.dense_rewards_for_critic=true but the env reports no info['dense_reward']")
                critic_reward = info["dense_reward"] if use_dense else reward
                rows = self.layout.rows(self._strip(obs), action, critic_reward, reward,
                                        self._strip(info["final_obs"]), info["mdp_terminated"].astype(np.float32))
                staged[np.arange(N), np.minimum(length, H - 1)] = rows
                stats.discarded += int((~active).sum())
                length += 1
                ret += reward
                ended = np.flatnonzero(info["episode_done"] & active)
                new_z_rows: list[int] = []
                new_z_tasks: list[int] = []
                new_z_kinds: list[str] = []
                for i in ended:
                    item = slots[i]
                    assert item is not None
                    n = int(length[i])
                    phase = item.current
                    self.rl_buffer[item.task].add(staged[i, :n])
                    if phase.to_encoder_buffer:
                        self.enc_buffer[item.task].add(staged[i, :n])
                    stats.frames += n
                    stats.returns[phase.kind].append(float(ret[i]))
                    item.finish_episode(n)
                    length[i], ret[i] = 0, 0.0
                    if item.done or info["task_done"][i]:
                        active[i] = False  # finished, or its K episodes are used up: wait for the next reset
                    else:
                        new_z_rows.append(int(i))
                        new_z_tasks.append(item.task)
                        new_z_kinds.append(item.latent_kind)
                length[~active] = 0
                if new_z_rows:
                    z[torch.as_tensor(new_z_rows, device=self.device)] = self._episode_latents(new_z_tasks,
                                                                                               new_z_kinds)
                obs = next_obs

    # ------------------------------------------------------------------ gradient steps
    def sample_batches(self, task_ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Context rows ``(T, embedding_batch_size, W)`` from the encoder buffers (recent data) and RL rows
        ``(T, batch_size, W)`` from the whole RL buffers of the tasks ``task_ids``; each moved to the device once."""
        assert self.enc_buffer is not None and self.rl_buffer is not None
        context = self.enc_buffer.sample(task_ids, self.cfg.embedding_batch_size, self.rng)
        batch = self.rl_buffer.sample(task_ids, self.cfg.batch_size, self.rng)
        return self._tensor(context), self._tensor(batch)

    def train_steps(self, steps: int, progress: IterationInProgress | None = None,
               should_stop: StopQuery | None = None) -> dict[str, float]:
        """Gradient steps ``progress.steps_done .. steps - 1`` (all ``steps`` without ``progress``: the throughput
        benchmark); the mean of their metrics once all are done."""
        assert self.train_tasks is not None
        if progress is None:
            progress = IterationInProgress(frames=0, discarded=0, returns={}, collect_s=0.0)
        started = time.perf_counter()
        try:
            while progress.steps_done < steps:
                if should_stop is not None and should_stop():
                    raise IterationInterrupted(f"PEARL stopped after {progress.steps_done} of {steps} gradient steps "
                                               f"of iteration {self.iterations + 1}")
                task_ids = self.rng.integers(len(self.train_tasks), size=self.cfg.meta_batch)
                out = self.learner.gradient_step(*self.sample_batches(task_ids))
                progress.metric_sum = out if progress.metric_sum is None else progress.metric_sum + out
                progress.steps_done += 1
        finally:
            progress.update_s += time.perf_counter() - started
        if steps == 0:
            return {}
        assert progress.metric_sum is not None
        means = (progress.metric_sum / steps).cpu().numpy()
        return {k: float(v) for k, v in zip(SACLearner.METRIC_NAMES, means, strict=True)}

    # ------------------------------------------------------------------ persistence
    def state_dict(self, resume: bool = True) -> dict[str, Any]:
        state: dict[str, Any] = {
            "networks": {k: net.state_dict() for k, net in self.networks.items()},
            "optimizers": {k: opt.state_dict() for k, opt in self.learner.optimizers.items()},
            "train_tasks": None if self.train_tasks is None else self.train_tasks.copy(),
            "frames": self.frames, "iterations": self.iterations, "grad_steps": self.grad_steps,
            "numpy_rng": copy.deepcopy(self.rng.bit_generator.state),
            "torch_gen": self.gen.get_state(), "eval_gen": self.eval_gen.get_state(),
        }
        if resume and self.rl_buffer is not None and self.enc_buffer is not None:
            state["rl_buffer"] = self.rl_buffer.state_dict()
            state["enc_buffer"] = self.enc_buffer.state_dict()
        if resume and self._in_progress is not None:
            state["in_progress"] = asdict(self._in_progress)  # a deep copy
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, net in self.networks.items():
            net.load_state_dict(state["networks"][key])
        for key, optimizer in self.learner.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][key])
        self.frames, self.iterations = state["frames"], state["iterations"]
        self.learner.grad_steps = state["grad_steps"]
        self.rng.bit_generator.state = copy.deepcopy(state["numpy_rng"])
        self.gen.set_state(state["torch_gen"])
        self.eval_gen.set_state(state["eval_gen"])
        tasks = state["train_tasks"]
        self.train_tasks = None if tasks is None else np.asarray(tasks, np.float32).copy()
        if tasks is not None:
            width = self.layout.width
            self.rl_buffer = MultiTaskBuffer(len(tasks), self.cfg.replay_buffer_size, width)
            self.enc_buffer = MultiTaskBuffer(len(tasks), self.cfg.replay_buffer_size, width)
            if "rl_buffer" in state:
                self.rl_buffer.load_state_dict(state["rl_buffer"])
                self.enc_buffer.load_state_dict(state["enc_buffer"])
        in_progress = state.get("in_progress")  # absent: stopped at an iteration's end (or an older checkpoint)
        self._in_progress = None if in_progress is None else IterationInProgress(**copy.deepcopy(in_progress))
        if self._in_progress is not None and self._in_progress.metric_sum is not None:
            self._in_progress.metric_sum = self._in_progress.metric_sum.to(self.device)
