"""Meta-World ML1 (Yu et al. 2019) on Meta-World 3.1.1: ``ml1_reach``, ``ml1_push``, ``ml1_pick_place``.

design.md §2. Each copy is a plain Meta-World env built the documented way,
``ml1 = metaworld.ML1(name, seed=benchmark_seed)``, ``env = ml1.train_classes[name]()``,
``env.set_task(task)`` with a ``Task`` from ``ml1.train_tasks`` / ``ml1.test_tasks`` (never the
``Meta-World/ML1-train`` gymnasium id: in 3.1.1 it hands out the test tasks). ``metaworld`` is imported lazily,
so ``import envs`` works without it (``pip install -e .[metaworld]``).

* Observation: Meta-World's 39-d vector (hand xyz, gripper opening, 14 object dims, the same 18 of the previous
  step, then the goal xyz, which is zeroed: ML tasks are partially observable). Action: ``Box(-1, 1, (4,))``
  (hand xyz displacement, gripper effort), passed to Meta-World as float32 (its action dtype).
* Reward: Meta-World v3's own (``reward_function_version="v2"``, in [0, 10]). ``success`` per step is
  ``info["success"]``; an episode succeeds if any step does (the evaluator records it that way).
* Task vector (``task_dim = 6``): the task's ``rand_vec``, ``pickle.loads(task.data)["rand_vec"]`` = initial
  object xyz then goal xyz (push ignores the goal's z and uses the object's height). In the batched env it is
  float32; each copy maps it back to the exact ``Task`` object by an exact float32 lookup among ML1's 50 train
  and 50 test tasks for that benchmark seed (an unknown vector raises). ``train_tasks()`` are ML1's 50 train
  tasks (training samples uniformly from them), ``held_out_tasks()`` its 50 test tasks (the meta-test set).
* Benchmark seed: ``metaworld.ML1(name, seed=s)`` draws the train goals with global ``np.random`` seeded ``s``
  and the test goals with ``s + 1`` (then restores the global state). So the TEST tasks of seed ``s`` are the
  TRAIN tasks of seed ``s + 1``: keep ``benchmark_seed`` fixed across the runs of a study (default 0) and vary the
  run seed.
* Horizon: Meta-World v3 episodes are at most ``max_path_length = 500`` steps; ``env.step`` raises on step 501
  without a reset. The BAMDP layer resets every ``H`` steps, so any ``H <= 500`` works (default 150, the
  protocol of the paper; ``make_meta_env(..., horizon=500)`` for v3's own length); ``H > 500`` raises a clear
  error on the first step past 500.
* Seeding: Meta-World ignores ``reset(seed=)``. ``env.seed(s)`` re-creates ``env.np_random`` (and the space
  RNGs); each copy calls it with its copy seed, and ``get_state`` saves ``np_random``. But with an ML1 task set
  nothing random happens at reset: ``set_task`` freezes the task's ``rand_vec`` (``_freeze_rand_vec``), so the
  object and goal positions come from the task, the hand is driven to its fixed start by 50 deterministic mocap
  steps, and the physics has no noise. A copy's trajectory is a deterministic function of (task, actions):
  the randomness of an env stream is the task sequence, drawn by :class:`~envs.base.MetaVecEnv` from
  ``make_meta_env``'s seed (tests/test_metaworld_ml1.py checks both facts).
* ``get_state``/``set_state``: MuJoCo's full integration state (``mj_getState(mjSTATE_INTEGRATION)``: time, qpos,
  qvel, act, warm start, ctrl, mocap pose, ...), the model's site positions (reset moves the goal site), the
  env's ``np_random`` state, and every plain attribute of the Meta-World env (``curr_path_length``,
  ``_prev_obs`` of the frame-stacked observation, ``_last_stable_obs``, ``_target_pos``, ``obj_init_pos``,
  ``init_tcp``, ``maxPushDist``, ...). Arrays that are live views into MuJoCo's buffers (pick-place's
  ``init_left_pad``/``init_right_pad`` are ``data.body(...).xpos`` views, so its reward reads the *current* pad
  position) are not copied: restoring resets the env on its task first, which re-creates those views.
"""

from __future__ import annotations

import functools
import pickle
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from envs.simulator import SimulatorBatchedEnv

#: registry name -> Meta-World v3 env name
ML1_ENVS = {"ml1_reach": "reach-v3", "ml1_push": "push-v3", "ml1_pick_place": "pick-place-v3"}
TASK_DIM = 6
#: Meta-World v3's episode limit (``SawyerXYZEnv.max_path_length``)
MAX_PATH_LENGTH = 500


@functools.cache
def ml1_benchmark(env_name: str, benchmark_seed: int) -> Any:
    """``metaworld.ML1(env_name, seed=benchmark_seed)``, built once per process (about 1 s: 100 env resets)."""
    import metaworld

    return metaworld.ML1(env_name, seed=int(benchmark_seed))


def rand_vec(task: Any) -> np.ndarray:
    """A Meta-World ``Task``'s ``rand_vec`` (float64): initial object xyz then goal xyz."""
    return np.asarray(pickle.loads(task.data)["rand_vec"], dtype=np.float64)


def _key(vector: np.ndarray) -> tuple[float, ...]:
    return tuple(float(x) for x in np.asarray(vector, dtype=np.float32).reshape(-1))


@functools.cache
def ml1_task_sets(env_name: str, benchmark_seed: int) -> tuple[np.ndarray, np.ndarray, dict[tuple[float, ...], Any]]:
    """``(train vectors (50, 6), test vectors (50, 6), float32 vector -> Task)`` for one ML1 benchmark."""
    ml1 = ml1_benchmark(env_name, benchmark_seed)
    train = np.stack([rand_vec(t) for t in ml1.train_tasks]).astype(np.float32)
    test = np.stack([rand_vec(t) for t in ml1.test_tasks]).astype(np.float32)
    lookup = {}
    for vector, task in zip(np.concatenate([train, test]), [*ml1.train_tasks, *ml1.test_tasks], strict=True):
        if _key(vector) in lookup:
            raise RuntimeError(f"ML1({env_name!r}, seed={benchmark_seed}) has two tasks with the same float32 "
                               "rand_vec: task vectors would be ambiguous")
        lookup[_key(vector)] = task
    train.setflags(write=False)
    test.setflags(write=False)
    return train, test, lookup


def _owns_memory(value: np.ndarray) -> bool:
    """False for views into memory numpy does not own (MuJoCo's ``data``/``model`` buffers)."""
    root = value
    while isinstance(root.base, np.ndarray):
        root = root.base
    return root.base is None


def _plain_attributes(env: Any) -> dict[str, Any]:
    """Copies of the env's plain attributes (numbers, flags, arrays it owns): its episode bookkeeping."""
    out: dict[str, Any] = {}
    for name, value in vars(env).items():
        if isinstance(value, np.ndarray):
            if _owns_memory(value):
                out[name] = value.copy()
        elif value is None or isinstance(value, (bool, int, float, str, np.generic)):
            out[name] = value
    return out


class MetaWorldML1Copy:
    """One Meta-World ML1 env (a :class:`~envs.simulator.SimCopy`); ``factory(seed)`` via ``functools.partial``."""

    def __init__(self, env_name: str, benchmark_seed: int, seed: int) -> None:
        import mujoco

        self._mujoco = mujoco
        self.env_name, self.benchmark_seed = env_name, int(benchmark_seed)
        train, _test, self._lookup = ml1_task_sets(env_name, self.benchmark_seed)
        ml1 = ml1_benchmark(env_name, self.benchmark_seed)
        self.env = ml1.train_classes[env_name]()  # ML1's train and test classes are the same class
        self.env.seed(int(seed))  # env.np_random; reset(seed=) is ignored by Meta-World
        self.set_task(train[0])  # any valid task until the batched env assigns one
        space = self.env.observation_space
        self.observation_space = gym.spaces.Box(space.low.astype(np.float32), space.high.astype(np.float32),
                                                dtype=np.float32)
        self.action_space = self.env.action_space
        self._state_spec = mujoco.mjtState.mjSTATE_INTEGRATION

    def task_object(self, task: np.ndarray) -> Any:
        """The ML1 ``Task`` whose ``rand_vec`` is ``task`` (exact float32 match)."""
        try:
            return self._lookup[_key(task)]
        except KeyError:
            raise ValueError(f"{np.asarray(task).tolist()} is not the rand_vec of one of the 100 tasks of "
                             f"metaworld.ML1({self.env_name!r}, seed={self.benchmark_seed})") from None

    def set_task(self, task: np.ndarray) -> None:
        self.env.set_task(self.task_object(task))
        self.task = np.asarray(task, dtype=np.float32).copy()

    def reset(self) -> np.ndarray:
        obs, _info = self.env.reset()
        return obs.astype(np.float32)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        if self.env.curr_path_length >= MAX_PATH_LENGTH:
            raise ValueError(f"Meta-World episodes are at most {MAX_PATH_LENGTH} steps (max_path_length): "
                             f"use a horizon <= {MAX_PATH_LENGTH}")
        obs, reward, _terminated, _truncated, info = self.env.step(np.asarray(action, dtype=np.float32))
        return obs.astype(np.float32), float(reward), False, bool(info["success"])

    def get_state(self) -> dict[str, Any]:
        mujoco, env = self._mujoco, self.env
        physics = np.empty(mujoco.mj_stateSize(env.model, self._state_spec), dtype=np.float64)
        mujoco.mj_getState(env.model, env.data, physics, self._state_spec)
        return {"task": self.task.copy(), "physics": physics, "site_pos": env.model.site_pos.copy(),
                "attributes": _plain_attributes(env), "np_random": env.np_random.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        mujoco, env = self._mujoco, self.env
        self.set_task(state["task"])
        env.reset()  # task-dependent setup, incl. the live views into MuJoCo's buffers
        env.model.site_pos[:] = state["site_pos"]
        mujoco.mj_setState(env.model, env.data, state["physics"], self._state_spec)
        mujoco.mj_forward(env.model, env.data)  # derived quantities (positions, contacts), as after env.step
        # mj_forward rewrites the solver's warm start: set the state again so the next mj_step is bit-identical
        mujoco.mj_setState(env.model, env.data, state["physics"], self._state_spec)
        for name, value in state["attributes"].items():
            setattr(env, name, value.copy() if isinstance(value, np.ndarray) else value)
        env.np_random.bit_generator.state = state["np_random"]

    def close(self) -> None:
        self.env.close()


class MetaWorldML1(SimulatorBatchedEnv):
    """``num_envs`` copies of one ML1 env in ``num_workers`` processes; tasks are ML1's fixed train/test sets."""

    task_dim = TASK_DIM
    #: Meta-World env name, set by the subclasses
    env_name: ClassVar[str]

    def __init__(self, num_envs: int, rng: np.random.Generator, num_workers: int = 2,
                 benchmark_seed: int = 0) -> None:
        self.benchmark_seed = int(benchmark_seed)
        self._train, self._test, _ = ml1_task_sets(self.env_name, self.benchmark_seed)
        factory = functools.partial(MetaWorldML1Copy, self.env_name, self.benchmark_seed)
        super().__init__(num_envs, rng, factory, num_workers)
        self.tasks[:] = self._train[0]  # what the copies start with, so that every task vector is a valid one

    def sample_tasks(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Uniformly from ML1's 50 train tasks."""
        return self._train[rng.integers(len(self._train), size=n)].copy()

    def train_tasks(self) -> np.ndarray:
        return self._train.copy()

    def held_out_tasks(self) -> np.ndarray:
        return self._test.copy()


class ML1Reach(MetaWorldML1):
    env_name = "reach-v3"


class ML1Push(MetaWorldML1):
    env_name = "push-v3"


class ML1PickPlace(MetaWorldML1):
    env_name = "pick-place-v3"
