"""The PEARL agent (Rakelly et al., ICML 2019): off-policy meta-RL with a probabilistic, permutation-invariant context.

Inference. ``q(z | c)`` is a product of Gaussian factors, one per context transition ``c_n = (s, a, r, s')``
(PEARL sec. 3 and 4.1, design.md §3; ``context_next_obs=false`` gives oyster's default ``(s, a, r)``, which oyster
overrides for Walker only): an MLP gives ``(mu_n, sigma_n^2)`` per transition, and ``sigma^2 = 1 / sum 1/sigma_n^2``,
``mu = sigma^2 sum mu_n / sigma_n^2``. ``z`` is a reparameterised sample; the encoder is trained by the critic's
Bellman loss plus ``kl_lambda * KL(q(z|c) || N(0, I))`` (eq. 3, Algorithm 1 line 19), never by the actor: ``z`` is
detached for the policy loss, for V's regression and for the target V.

SAC variant. The paper's (sec. 5.1, and oyster's ``PEARLSoftActorCritic``): twin Q-functions, a state value V and a
target V updated by Polyak averaging (``tau``); no learned temperature, the entropy weight being set by
``reward_scale`` (the reward is multiplied by it in the Q target). Chosen over twin-Q + target-Q + learned alpha
because every PEARL hyperparameter we reproduce (``reward_scale`` 5 / 100 above all, which *is* the inverse
temperature) was tuned for this variant; a learned alpha would silently change what those numbers mean. Losses, as
oyster: ``Q_i <- r * reward_scale + (1 - terminal) gamma V_target(s', z)``; ``V <- min_i Q_i(s, a~pi, z) - log pi``;
policy: ``mean(log pi - min_i Q_i(s, a~pi, z))`` plus 1e-3 L2 penalties on the pre-tanh mean and log-std. The Q
targets bootstrap through time limits and stop only where the MDP itself terminated (``info["mdp_terminated"]``).

Sampling scheme (Algorithm 1). A finite set of training tasks: the env's fixed set where it has one
(``env.inner.train_tasks()``: PointRobot/Walker ``task_set=pearl``, ML1), else ``num_train_tasks`` distinct tasks
drawn once with ``env.draw_tasks``. Each task has an RL buffer (all its data) and an encoder buffer (its most recent
collection round: emptied before the task is collected on again, as oyster). First iteration: ``num_initial_steps``
per training task with z ~ prior (both buffers). Every iteration: ``num_tasks_sample`` tasks (with replacement);
their encoder buffers are emptied; per task ``num_steps_prior`` steps with z ~ prior (a fresh sample per episode),
``num_steps_posterior`` steps with z ~ q(z | c), c = ``embedding_batch_size`` transitions drawn from the task's encoder
buffer (this round's data) before each episode, both into both buffers, then ``num_extra_rl_steps_posterior`` steps
with posterior z into the RL buffer only. Steps are collected in whole episodes (at least the number asked, as
oyster). Then ``num_train_steps_per_itr`` gradient steps, each on ``meta_batch`` tasks drawn with replacement: the
context from each task's encoder buffer, the RL batch (``batch_size``) from its whole RL buffer.

Batched collection. The trainer's ``MetaVecEnv`` steps ``num_envs`` copies, K episodes of H steps per reset (H: the
env's horizon, PEARL's max path length). Work items (task, phases) are handed to copies; the env is reset with
``options={"tasks": ...}`` whenever every copy has finished its item or its K episodes; a copy with an unfinished
item carries it on after the reset. Steps of copies with nothing to do until that reset (an item finished mid-block,
or no item left) are discarded and not counted as frames (``collect/discarded_steps`` reports them); frames are the
env steps stored. Tasks sampled twice in one iteration are collected side by side and share their encoder buffer
(oyster collects them one after the other, the second emptying what the first gathered).

Observations. The BAMDP done flag that ``MetaVecEnv`` appends is stripped: PEARL's policy is Markov in (s, z) and
learns of episode boundaries only through the resampling of z; the flag would only mark terminal observations s'
(which the policy never acts on) and break the permutation-invariant context's "one transition = (s, a, r, s')".

Meta-test (Algorithm 2). The belief holds the context's sufficient statistics for the (fixed) encoder: the sums of
the per-transition precisions 1/sigma_n^2 and of mu_n/sigma_n^2 over every transition seen in the task, so the
posterior over ALL context so far is exact at any time. z ~ prior for the first ``exploration_episodes_eval`` episodes
(1: Algorithm 2), then at each episode boundary z ~ q(z | all context so far); held fixed within an episode; on
``task_done`` the belief returns to the prior. Deterministic acting uses tanh(mean).

Randomness: a numpy Generator (task and batch indices) and two torch Generators on the agent's device (training;
meta-test), all in the state dict, so a resumed run equals an uninterrupted one and meta-tests do not perturb
training.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from algorithms.common.agent import Agent, EnvInfo, IterationInterrupted, IterationStats, StopQuery
from algorithms.common.errors import ConfigError
from algorithms.pearl.buffers import MultiTaskBuffer, TransitionLayout
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


@dataclass
class _Phase:
    kind: str  # "prior" | "posterior"
    steps: int
    to_encoder_buffer: bool


@dataclass
class _WorkItem:
    """The collection for one task in one round: phases run in order, each until it has >= its steps."""

    task: int
    phases: list[_Phase]
    phase: int = 0
    collected: int = 0  # steps collected in the current phase
    episodes_in_phase: int = 0

    @property
    def done(self) -> bool:
        return self.phase >= len(self.phases)

    @property
    def current(self) -> _Phase:
        return self.phases[self.phase]

    @property
    def latent_kind(self) -> str:
        """Where the z of the next episode comes from. Oyster's ``collect_data`` starts every phase from the prior
        (``clear_z``) and infers the posterior only after each trajectory, so the first trajectory of a posterior
        phase is collected with a prior z too."""
        return "posterior" if self.current.kind == "posterior" and self.episodes_in_phase > 0 else "prior"

    def finish_episode(self, length: int) -> None:
        self.collected += length
        self.episodes_in_phase += 1
        while not self.done and self.collected >= self.current.steps:
            self.phase += 1
            self.collected = 0
            self.episodes_in_phase = 0


@dataclass
class _CollectStats:
    frames: int = 0
    discarded: int = 0
    returns: dict[str, list[float]] = field(default_factory=lambda: {"prior": [], "posterior": []})


@dataclass
class _IterationInProgress:
    """An iteration whose data is collected and whose gradient steps are under way. Part of the resume state, so
    that a stop between two gradient steps (``train_iteration``'s ``should_stop``) loses no work: the resumed run
    carries on from step ``steps_done`` with the same random streams, as if it had not stopped."""

    frames: int
    discarded: int
    returns: dict[str, list[float]]
    collect_s: float
    steps_done: int = 0
    update_s: float = 0.0
    #: running sum of :meth:`PEARLAgent.gradient_step`'s metric vectors (on the agent's device)
    metric_sum: torch.Tensor | None = None


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
        L = cfg.latent_dim
        torch_seed, eval_seed = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(2))
        with torch.random.fork_rng(devices=[]):  # initialise the networks from the seed, not from global state
            torch.manual_seed(torch_seed)
            dtype = HIDDEN_DTYPES[cfg.hidden_precision]
            self.encoder = ContextEncoder(self.context_dim, L, cfg.encoder_layers, hidden_dtype=dtype)
            self.policy = TanhGaussianPolicy(self.obs_dim, L, self.action_dim, cfg.net_layers, hidden_dtype=dtype)
            self.qf1 = QNetwork(self.obs_dim, self.action_dim, L, cfg.net_layers, hidden_dtype=dtype)
            self.qf2 = QNetwork(self.obs_dim, self.action_dim, L, cfg.net_layers, hidden_dtype=dtype)
            self.vf = VNetwork(self.obs_dim, L, cfg.net_layers, hidden_dtype=dtype)
        self.target_vf = copy.deepcopy(self.vf)
        for p in self.target_vf.parameters():
            p.requires_grad_(False)
        for net in self.networks.values():
            net.to(self.device)
        self.policy_optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.policy_lr)
        self.qf_optimizer = torch.optim.Adam([*self.qf1.parameters(), *self.qf2.parameters()], lr=cfg.qf_lr)
        self.vf_optimizer = torch.optim.Adam(self.vf.parameters(), lr=cfg.vf_lr)
        self.context_optimizer = torch.optim.Adam(self.encoder.parameters(), lr=cfg.context_lr)
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(torch_seed + 1)
        self.eval_gen = torch.Generator(device=self.device)
        self.eval_gen.manual_seed(eval_seed)
        #: the finite training task set (Algorithm 1), fixed at the first iteration
        self.train_tasks: np.ndarray | None = None
        self.rl_buffer: MultiTaskBuffer | None = None
        self.enc_buffer: MultiTaskBuffer | None = None
        self.frames = 0
        self.iterations = 0
        self.grad_steps = 0
        self._in_progress: _IterationInProgress | None = None

    @property
    def networks(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "policy": self.policy, "qf1": self.qf1, "qf2": self.qf2, "vf": self.vf,
                "target_vf": self.target_vf}

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
            metrics = self._train(cfg.num_train_steps_per_itr, progress, should_stop)
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

    def _collect_iteration_data(self, env: MetaVecEnv) -> _IterationInProgress:
        """Algorithm 1 lines 3-10: the initial pool (first iteration only), then this iteration's sampled tasks."""
        cfg = self.cfg
        assert self.train_tasks is not None and self.rl_buffer is not None and self.enc_buffer is not None
        started = time.perf_counter()
        stats = _CollectStats()
        if self.iterations == 0:  # Algorithm 1's initial pool: every training task, z ~ prior
            initial = [_WorkItem(t, [_Phase("prior", cfg.num_initial_steps, True)])
                       for t in range(len(self.train_tasks))]
            self._collect(env, initial, stats)
        sampled = self.rng.integers(len(self.train_tasks), size=cfg.num_tasks_sample)
        for task in np.unique(sampled):
            self.enc_buffer[int(task)].clear()
        phases = [_Phase("prior", cfg.num_steps_prior, True), _Phase("posterior", cfg.num_steps_posterior, True),
                  _Phase("posterior", cfg.num_extra_rl_steps_posterior, False)]
        items = [_WorkItem(int(t), [p for p in phases if p.steps > 0]) for t in sampled]
        self._collect(env, items, stats)
        return _IterationInProgress(frames=stats.frames, discarded=stats.discarded, returns=stats.returns,
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
    def _collect(self, env: MetaVecEnv, items: list[_WorkItem], stats: _CollectStats) -> None:
        """Run the work items on the batched env (module docstring: batched collection)."""
        assert self.train_tasks is not None and self.rl_buffer is not None and self.enc_buffer is not None
        N, H = env.num_envs, env.horizon
        use_dense = self.cfg.dense_rewards_for_critic
        queue = deque(items)
        slots: list[_WorkItem | None] = [None] * N
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

    def infer(self, context_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q(z | c) per task and a reparameterised z ``(T, L)`` (differentiable into the encoder)."""
        mu, var = self.encoder.posterior(self.context_from_rows(context_rows))
        return mu, var, reparameterised_sample(mu, var, self.gen)

    def _flat(self, batch: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
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
        b = self._flat(batch_rows, z)
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

    METRIC_NAMES = ("sac/qf_loss", "sac/kl", "sac/vf_loss", "sac/policy_loss", "sac/q_mean", "sac/log_pi",
                    "sac/z_mean_abs", "sac/z_var")

    def _train(self, steps: int, progress: _IterationInProgress | None = None,
               should_stop: StopQuery | None = None) -> dict[str, float]:
        """Gradient steps ``progress.steps_done .. steps - 1`` (all ``steps`` without ``progress``: the throughput
        benchmark); the mean of their metrics once all are done."""
        assert self.train_tasks is not None
        if progress is None:
            progress = _IterationInProgress(frames=0, discarded=0, returns={}, collect_s=0.0)
        started = time.perf_counter()
        try:
            while progress.steps_done < steps:
                if should_stop is not None and should_stop():
                    raise IterationInterrupted(f"PEARL stopped after {progress.steps_done} of {steps} gradient steps "
                                               f"of iteration {self.iterations + 1}")
                task_ids = self.rng.integers(len(self.train_tasks), size=self.cfg.meta_batch)
                out = self.gradient_step(*self.sample_batches(task_ids))
                progress.metric_sum = out if progress.metric_sum is None else progress.metric_sum + out
                progress.steps_done += 1
        finally:
            progress.update_s += time.perf_counter() - started
        if steps == 0:
            return {}
        assert progress.metric_sum is not None
        means = (progress.metric_sum / steps).cpu().numpy()
        return {k: float(v) for k, v in zip(self.METRIC_NAMES, means, strict=True)}

    # ------------------------------------------------------------------ persistence
    def state_dict(self, resume: bool = True) -> dict[str, Any]:
        state: dict[str, Any] = {
            "networks": {k: net.state_dict() for k, net in self.networks.items()},
            "optimizers": {"policy": self.policy_optimizer.state_dict(), "qf": self.qf_optimizer.state_dict(),
                           "vf": self.vf_optimizer.state_dict(), "context": self.context_optimizer.state_dict()},
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
        self.policy_optimizer.load_state_dict(state["optimizers"]["policy"])
        self.qf_optimizer.load_state_dict(state["optimizers"]["qf"])
        self.vf_optimizer.load_state_dict(state["optimizers"]["vf"])
        self.context_optimizer.load_state_dict(state["optimizers"]["context"])
        self.frames, self.iterations, self.grad_steps = state["frames"], state["iterations"], state["grad_steps"]
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
        self._in_progress = None if in_progress is None else _IterationInProgress(**copy.deepcopy(in_progress))
        if self._in_progress is not None and self._in_progress.metric_sum is not None:
            self._in_progress.metric_sum = self._in_progress.metric_sum.to(self.device)
