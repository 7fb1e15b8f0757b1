"""Batched task distributions and the BAMDP (multi-episode) layer shared by every environment.

Two layers, so that the multi-episode logic is written once:

* :class:`BatchedTaskEnv` is the *physical* layer: ``N`` copies of one MDP family, each with its own task,
  stepped together. It knows nothing about episodes per task.
* :class:`MetaVecEnv` turns any ``BatchedTaskEnv`` into a batch of BAMDPs (a gymnasium ``VectorEnv``):
  ``K`` consecutive episodes of horizon ``H`` on the same task (``H+ = K x H``). Between the episodes of a
  task only the physical state resets; after ``K`` episodes a new task is drawn. The agent learns of each
  episode boundary through ``info["episode_done"]`` and through a done flag appended to the observation
  (1.0 in the terminal observation of an episode, 0.0 otherwise), as in the VariBAD reference code.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space


class BatchedTaskEnv(abc.ABC):
    """``num_envs`` copies of one MDP family with per-copy tasks, stepped by array operations.

    Subclasses define the physical dynamics only; the episode/task bookkeeping lives in :class:`MetaVecEnv`.
    All randomness comes from the ``numpy.random.Generator`` passed in (never from global state).
    """

    #: observation of one copy, before the BAMDP done flag is appended
    single_observation_space: gym.spaces.Box
    single_action_space: gym.spaces.Space
    #: length of the task vector (analysis and oracle only: agents never see it)
    task_dim: int
    #: number of discrete states for per-state reward decoders (``None`` for continuous state spaces)
    num_states: int | None = None
    #: attributes holding the physical state (arrays over copies), saved by :meth:`get_state` for resume
    state_attributes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, num_envs: int, rng: np.random.Generator) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs
        self.rng = rng
        self.tasks = np.zeros((num_envs, self.task_dim), dtype=np.float32)
        self._sent: tuple | None = None  # the result of a step_send() not yet received (envs stepped in-process)

    @abc.abstractmethod
    def sample_tasks(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` tasks from the training distribution, shape ``(n, task_dim)``."""

    def train_tasks(self) -> np.ndarray | None:
        """The benchmark's fixed training task set, or ``None`` where tasks are sampled fresh."""
        return None

    def held_out_tasks(self) -> np.ndarray | None:
        """The benchmark's fixed meta-test task set, or ``None`` (then the evaluator draws a seeded sample)."""
        return None

    def set_tasks(self, tasks: np.ndarray, idx: np.ndarray | None = None) -> None:
        """Assign tasks to the copies ``idx`` (all copies when ``None``)."""
        idx = np.arange(self.num_envs) if idx is None else idx
        self.tasks[idx] = tasks

    @abc.abstractmethod
    def reset_state(self, idx: np.ndarray) -> np.ndarray:
        """Reset the physical state of the copies ``idx``; return their observations ``(len(idx), obs_dim)``."""

    @abc.abstractmethod
    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Step all copies: ``obs (N, obs_dim)``, ``reward (N,)``, ``terminated (N,)``, ``info`` of arrays.

        ``info["success"]`` (bool, ``(N,)``) is reported by every env.
        """

    def step_send(self, actions: np.ndarray) -> None:
        """Start stepping all copies (:meth:`step_receive` returns the result). Envs whose copies run in other
        processes return at once, so the caller can work while they step; the default steps here and now."""
        self._sent = self.step(actions)

    def step_receive(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """The result of the step :meth:`step_send` started (what :meth:`step` returns)."""
        result, self._sent = self._sent, None
        if result is None:
            raise RuntimeError("step_receive() without a step_send() before it")
        return result

    def state_index(self, obs: np.ndarray) -> np.ndarray:
        """Map observations to discrete state ids (only for envs with ``num_states``)."""
        raise NotImplementedError(f"{type(self).__name__} has no discrete state index")

    def close(self) -> None:  # noqa: B027 - optional hook, most envs hold nothing to release
        """Release resources (worker processes for simulator envs)."""

    def get_state(self) -> dict[str, Any]:
        """Everything that determines future steps: RNG, tasks and the physical state (for exact resume).
        Simulator envs whose state lives outside numpy arrays override this pair."""
        state = {name: np.copy(getattr(self, name)) for name in self.state_attributes}
        return {"rng": self.rng.bit_generator.state, "tasks": self.tasks.copy(), "physical": state}

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.tasks = state["tasks"].copy()
        for name, value in state["physical"].items():
            setattr(self, name, np.copy(value))


class MetaVecEnv(VectorEnv):
    """A batch of BAMDPs: ``episodes_per_task`` episodes of ``horizon`` steps per task, then a new task.

    Autoreset happens in the same step (gymnasium's ``SAME_STEP`` mode): where an episode ended, the returned
    observation is the first one of the next episode and the true terminal observation is in
    ``info["final_obs"]``. Keys of ``info`` (arrays over envs):

    * ``episode_done``: this transition ended an MDP episode (time limit or termination);
    * ``task_done``: it ended the last episode of the task (the BAMDP is over; a new task starts);
    * ``final_obs``: the terminal observation (with done flag 1) where ``episode_done``, else the next obs;
    * ``mdp_terminated``: the MDP itself terminated (e.g. a robot fell), not a time limit;
    * ``time_limit``: the episode ended because its ``horizon`` steps were up (also where the MDP terminated on
      that very step: the reference code's ``TimeLimitMask`` marks those as time-limit ends too);
    * ``episode_index``: index (0-based) within the task of the episode this transition belongs to;
    * ``success``: the env's per-step success signal; ``task``: the task of this transition.
    """

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        inner: BatchedTaskEnv,
        horizon: int,
        episodes_per_task: int,
        rng: np.random.Generator,
        task_pool: np.ndarray | None = None,
        add_done_flag: bool = True,
    ) -> None:
        self.inner = inner
        self.num_envs = inner.num_envs
        self.horizon = int(horizon)
        self.episodes_per_task = int(episodes_per_task)
        self.rng = rng
        #: if given, new tasks are drawn uniformly from this fixed set, else from ``inner.sample_tasks``
        self.task_pool = task_pool
        self.add_done_flag = add_done_flag
        base = inner.single_observation_space
        if add_done_flag:
            low = np.append(base.low, 0.0).astype(np.float32)
            high = np.append(base.high, 1.0).astype(np.float32)
            self.single_observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        else:
            self.single_observation_space = base
        self.single_action_space = inner.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self.closed = False
        self.step_in_episode = np.zeros(self.num_envs, dtype=np.int64)
        self.episode_index = np.zeros(self.num_envs, dtype=np.int64)

    # ------------------------------------------------------------------ helpers
    @property
    def obs_dim(self) -> int:
        return int(self.single_observation_space.shape[0])

    @property
    def tasks(self) -> np.ndarray:
        return self.inner.tasks

    def _with_flag(self, obs: np.ndarray, flag: float | np.ndarray) -> np.ndarray:
        obs = obs.astype(np.float32, copy=False)
        if not self.add_done_flag:
            return obs
        flags = np.broadcast_to(np.asarray(flag, dtype=np.float32), (obs.shape[0],))
        return np.concatenate([obs, flags[:, None]], axis=1)

    def draw_tasks(self, n: int) -> np.ndarray:
        if self.task_pool is not None:
            return self.task_pool[self.rng.integers(len(self.task_pool), size=n)]
        return self.inner.sample_tasks(n, self.rng)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start a new task in every env. ``options={"tasks": array}`` fixes the tasks (meta-test)."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
            self.inner.rng = np.random.default_rng(self.rng.integers(2**63))
        tasks = None if options is None else options.get("tasks")
        tasks = self.draw_tasks(self.num_envs) if tasks is None else np.asarray(tasks, dtype=np.float32)
        if tasks.shape != (self.num_envs, self.inner.task_dim):
            raise ValueError(f"tasks must have shape {(self.num_envs, self.inner.task_dim)}, got {tasks.shape}")
        self.inner.set_tasks(tasks)
        all_envs = np.arange(self.num_envs)
        obs = self.inner.reset_state(all_envs)
        self.step_in_episode[:] = 0
        self.episode_index[:] = 0
        info = {"task": self.inner.tasks.copy(), "episode_index": self.episode_index.copy()}
        return self._with_flag(obs, 0.0), info

    def step(self, actions):
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: np.ndarray) -> None:
        """Start a step (gymnasium's async vector-env protocol): with simulator workers they step while the caller
        works on something else until :meth:`step_wait`."""
        self.inner.step_send(np.asarray(actions))

    def step_wait(self):
        """Finish the step :meth:`step_async` started; returns what :meth:`step` returns."""
        obs, reward, terminated, inner_info = self.inner.step_receive()
        self.step_in_episode += 1
        episode_done = terminated | (self.step_in_episode >= self.horizon)
        task_done = episode_done & (self.episode_index + 1 >= self.episodes_per_task)
        info: dict[str, Any] = dict(inner_info)
        info["task"] = self.inner.tasks.copy()
        info["episode_index"] = self.episode_index.copy()
        info["episode_done"] = episode_done
        info["task_done"] = task_done
        info["mdp_terminated"] = terminated.copy()
        info["time_limit"] = self.step_in_episode >= self.horizon
        final_obs = self._with_flag(obs, episode_done.astype(np.float32))
        info["final_obs"] = final_obs
        next_obs = final_obs.copy()
        if episode_done.any():
            done_idx = np.flatnonzero(episode_done)
            self.episode_index[done_idx] += 1
            self.step_in_episode[done_idx] = 0
            new_task_idx = np.flatnonzero(task_done)
            if new_task_idx.size:
                self.inner.set_tasks(self.draw_tasks(new_task_idx.size), new_task_idx)
                self.episode_index[new_task_idx] = 0
            next_obs[done_idx] = self._with_flag(self.inner.reset_state(done_idx), 0.0)
        # The BAMDP ends by a time limit after K episodes: report it as truncation (agents decide whether to
        # treat it as the end of a finite horizon: VariBAD never bootstraps there, cf. `episode_boundary`).
        truncated = task_done.copy()
        terminated_bamdp = np.zeros(self.num_envs, dtype=bool)
        return next_obs, reward.astype(np.float32), terminated_bamdp, truncated, info

    def get_state(self) -> dict[str, Any]:
        """The BAMDP bookkeeping and the physical layer's state: restoring it continues the exact same stream
        of tasks, observations and rewards (checkpoint/resume)."""
        return {"rng": self.rng.bit_generator.state, "step_in_episode": self.step_in_episode.copy(),
                "episode_index": self.episode_index.copy(), "inner": self.inner.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.step_in_episode = state["step_in_episode"].copy()
        self.episode_index = state["episode_index"].copy()
        self.inner.set_state(state["inner"])

    def close_extras(self, **kwargs: Any) -> None:
        self.inner.close()
