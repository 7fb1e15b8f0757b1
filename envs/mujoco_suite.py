"""The MuJoCo meta-RL suite (design.md §2): HalfCheetahDir/Vel, AntDir/Goal, HumanoidDir, Walker2d random params.

Every env is a :class:`~envs.simulator.SimulatorBatchedEnv`: ``N`` copies stepped in worker processes, each copy a
gymnasium v5 model (``gymnasium.make("<Name>-v5").unwrapped``: no TimeLimit or checker wrappers, the BAMDP layer
owns the horizon H = 200). The copies keep gymnasium's v5 *observation* and physics (``do_simulation``: the
control is written to ``data.ctrl``, ``mj_step`` x ``frame_skip``, then ``mj_rnePostConstraint`` so that
``data.cfrc_ext`` is current) but compute the *per-task reward* and the termination here, from the simulator
state, exactly by these formulas (dt = ``timestep * frame_skip``; ``a`` is the action as passed to ``step``):

* ``cheetah_dir`` (obs 17, act 6, task 1): ``dir * (x' - x) / dt - 0.05 |a|^2``, ``x = qpos[0]``; never terminates.
* ``cheetah_vel`` (obs 17, act 6, task 1): ``-|(x' - x) / dt - v_goal| - 0.05 |a|^2``; never terminates.
* ``ant_dir`` (obs 27, act 8, task 1):
  ``(p' - p) / dt . (cos g, sin g) - 0.5 |a|^2 - 5e-4 |clip(cfrc_ext, -1, 1)|^2 + 1`` with ``p`` the torso's
  ``xpos[:2]``; terminates unless qpos and qvel are finite and ``0.2 <= qpos[2] <= 1``.
* ``ant_goal`` (obs 107, act 8, task 2): ``-|p' - goal|_1 - 0.1 |a|^2 - 5e-4 |clip(cfrc_ext, -1, 1)|^2``; never
  terminates.
* ``humanoid_dir`` (obs 348, act 17, task 2):
  ``0.25 (c' - c) . d / timestep - 0.1 |ctrl|^2 - min(5e-7 |cfrc_ext|^2, 10) + 5`` with ``c`` the centre of mass
  (``body_mass``-weighted mean of ``xipos[:, :2]``), ``d`` the task direction and ``ctrl = 0.4 a``; note the division
  by the simulator ``timestep``, not dt, as in the reference code (PEARL, VariBAD); terminates if ``qpos[2] < 1`` or
  ``qpos[2] > 2``.
* ``walker_params`` (obs 17, act 6, task 65): ``(x' - x) / dt + 1 - 1e-3 |a|^2``, ``x = qpos[0]``; terminates unless
  ``0.8 < qpos[1] < 2`` (height) and ``-1 < qpos[2] < 1`` (angle).

Choices, stated once:

* **Actions.** Every env exposes ``Box(-1, 1)``; the control is ``scale * a`` with ``scale`` the model's symmetric
  ``ctrlrange`` bound (1 for cheetah, ant and walker; 0.4 for the humanoid, as PEARL/VariBAD's HumanoidDir rescales
  its ``Box(-1, 1)`` to the model's +-0.4). Actions are *not* clipped by the env: MuJoCo clamps ``ctrl`` to
  ``ctrlrange`` in the physics (all actuators are ``ctrllimited``) and the control costs use the action as given
  (humanoid: ``data.ctrl``, i.e. ``0.4 a``), as the reference code does.
* **Positions.** Cheetah and walker use ``qpos[0]`` (reference code); ant uses the torso body's ``xpos`` and the
  humanoid the centre of mass from ``xipos`` and ``body_mass`` (reference code and gymnasium v5). Positions are read
  after each step/reset and kept, so "before" is the value after the previous step (and is part of the saved state).
* **Observations.** gymnasium v5 defaults except: ant_dir leaves contact forces out (27-d, as the reference
  AntDir's ``qpos[2:], qvel``; ``contact_forces_in_obs=True`` adds the 78 clipped ``cfrc_ext[1:]`` entries through
  v5's ``include_cfrc_ext_in_observation``), ant_goal keeps them (as the reference AntGoal) and also keeps the
  torso's x, y (``exclude_current_positions_from_observation=False``: the goal reward depends on the position).
  The rewards always use ``cfrc_ext`` whether or not it is observed. Cheetah: ``torso_com_in_obs=True`` appends the
  torso's position (oyster's 20-d observation, for PEARL's ``protocol=oyster``).
* **Tasks** (drawn only from the ``rng`` passed in): cheetah_dir ``dir`` in {-1, +1}; cheetah_vel ``v_goal ~ U(0, 3)``;
  ant_dir the angle ``g`` in {0, pi} (forward/backward; ``directions="legacy_radians"`` gives the old code's
  g in {-1, +1} *radians*); ant_goal ``(x, y)`` uniform on the disc of radius 3 (angle ``U(0, 2 pi)``, radius
  ``3 sqrt(U)``); humanoid_dir the unit vector ``(cos t, sin t)``, ``t ~ U(0, 2 pi)`` (a vector rather than the angle
  so that the task has no wrap-around at 0 / 2 pi); walker_params the 65 log-scale exponents below.
* **Walker parameters.** The task is the concatenation of exponents for ``body_mass`` (8), ``body_inertia`` (8x3),
  ``dof_damping`` (9), ``geom_friction`` (8x3) (the reference code's order), each ``U(-3, 3)``; the model arrays are
  set to ``original * base ** exponent`` (base 1.5, damping 1.3) from the values saved at construction, so tasks never
  compound, followed by ``mj_setConst`` (derived constants such as ``body_subtreemass`` and ``dof_invweight0``
  follow the new masses). ``task_set="random"`` (default, VariBAD) samples fresh parameters for every task and
  meta-tests on a seeded sample; ``task_set="pearl"`` uses PEARL's protocol of 40 train / 10 test fixed parameter
  sets. PEARL draws its 50 sets with the global RNG when the env is built (``rand_param_envs``' ``sample_tasks``), so
  its exact sets cannot be reproduced: here they are drawn once from ``numpy.random.default_rng(PEARL_WALKER_SEED)``,
  the same sets on every machine and in every run.
* **Success.** None of these envs has a success notion: ``success`` is always False.
* **Seeding and resume.** Copy ``i`` is seeded once (``env.reset(seed=...)`` at construction) with the seed
  :class:`~envs.simulator.SimulatorBatchedEnv` draws for it; later resets draw their noise from gymnasium's
  ``np_random``. A copy's state is MuJoCo's full integration state (``mj_getState(mjSTATE_INTEGRATION)``: time,
  qpos, qvel, act, the solver's warm start, ...), the kept position and the ``np_random`` state, so that a restored
  copy continues bit for bit. (In the tests qpos, qvel and time alone already resume exactly; the integration state
  also carries the solver's warm start, which can change a step when the constraint solver stops before convergence.)

``mujoco`` and gymnasium's MuJoCo envs are imported only inside the copies, so ``import envs`` works without them.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np

from envs.simulator import SimulatorBatchedEnv

HORIZON = 200
#: PEARL's walker protocol: 40 train and 10 test parameter sets, drawn once from this seed
PEARL_WALKER_SEED = 1337
PEARL_WALKER_TRAIN, PEARL_WALKER_TEST = 40, 10
WALKER_LOG_SCALE_LIMIT = 3.0
#: (model array, base of the scale factor, shape in Walker2d-v5); the task vector concatenates them in this order
WALKER_PARAMS: tuple[tuple[str, float, tuple[int, ...]], ...] = (
    ("body_mass", 1.5, (8,)),
    ("body_inertia", 1.5, (8, 3)),
    ("dof_damping", 1.3, (9,)),
    ("geom_friction", 1.5, (8, 3)),
)
WALKER_TASK_DIM = sum(int(np.prod(shape)) for _, _, shape in WALKER_PARAMS)


# ====================================================================== copies (live in the worker processes)
class MujocoTaskCopy:
    """One gymnasium v5 MuJoCo model with a settable task; subclasses define the position, reward and termination."""

    gym_id: ClassVar[str]

    def __init__(self, seed: int, **make_kwargs: Any) -> None:
        self.env = gym.make(self.gym_id, disable_env_checker=True, **make_kwargs).unwrapped
        self.model, self.data = self.env.model, self.env.data
        self.frame_skip = int(self.env.frame_skip)
        self.dt = float(self.env.dt)
        low, high = self.model.actuator_ctrlrange[:, 0], self.model.actuator_ctrlrange[:, 1]
        if not (np.allclose(low, -high) and self.model.actuator_ctrllimited.all()):
            raise ValueError(f"{self.gym_id}: expected symmetric, limited control ranges")
        #: the policy acts in [-1, 1]; ctrl = ctrl_scale * action
        self.ctrl_scale = high.astype(np.float64)
        nu = int(self.model.nu)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(nu,), dtype=np.float32)
        obs_dim = int(self.env.observation_space.shape[0])
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float32)
        self.task = np.zeros(0)
        self.env.reset(seed=int(seed))  # the only seeded reset: later resets continue np_random's stream
        self.position = self.measure()

    # ---------------------------------------------------------------- per-env definitions
    def measure(self) -> np.ndarray:
        """The position the reward differentiates (read after each step and reset)."""
        raise NotImplementedError

    def reward(self, before: np.ndarray, after: np.ndarray, action: np.ndarray) -> float:
        raise NotImplementedError

    def terminated(self) -> bool:
        return False

    # ---------------------------------------------------------------- SimCopy
    def set_task(self, task: np.ndarray) -> None:
        self.task = np.asarray(task, dtype=np.float64).copy()

    def observe(self) -> np.ndarray:
        """The observation of the current state (gymnasium v5's ``_get_obs``)."""
        return np.asarray(self.env._get_obs(), dtype=np.float32)

    def reset(self) -> np.ndarray:
        self.env.reset()
        self.position = self.measure()
        return self.observe()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        action = np.asarray(action, dtype=np.float64).reshape(self.ctrl_scale.shape)
        before = self.position
        self.env.do_simulation(self.ctrl_scale * action, self.frame_skip)
        self.position = self.measure()
        reward = self.reward(before, self.position, action)
        return self.observe(), float(reward), bool(self.terminated()), False

    def get_state(self) -> dict[str, Any]:
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        physics = np.empty(mujoco.mj_stateSize(self.model, spec), dtype=np.float64)
        mujoco.mj_getState(self.model, self.data, physics, spec)
        return {"physics": physics, "position": np.copy(self.position),
                "np_random": self.env.np_random.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        import mujoco

        mujoco.mj_setState(self.model, self.data, np.asarray(state["physics"], dtype=np.float64),
                           mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(self.model, self.data)  # derived quantities (xpos, ...) consistent with the state
        # the live position's shape: checkpoints written before the 0-d fix hold HalfCheetah's scalar as shape (1,)
        self.position = np.array(state["position"], dtype=np.float64).reshape(np.shape(self.position))
        self.env.np_random.bit_generator.state = state["np_random"]

    def close(self) -> None:
        self.env.close()


class _CheetahCopy(MujocoTaskCopy):
    """``torso_com_in_obs``: oyster's 20-d HalfCheetah observation (``rlkit/envs/half_cheetah.py``: qpos[1:], qvel,
    then ``get_body_com("torso")``), so that PEARL's numbers can be put next to oyster's; default v5's 17-d."""

    gym_id = "HalfCheetah-v5"

    def __init__(self, seed: int, torso_com_in_obs: bool = False) -> None:
        super().__init__(seed)
        self.torso_com_in_obs = bool(torso_com_in_obs)
        if self.torso_com_in_obs:
            dim = int(self.observation_space.shape[0]) + 3
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)

    def observe(self) -> np.ndarray:
        obs = super().observe()
        if self.torso_com_in_obs:
            obs = np.concatenate([obs, np.asarray(self.env.get_body_com("torso"), dtype=np.float32)])
        return obs

    def measure(self) -> np.ndarray:
        return np.array(self.data.qpos[0])

    def velocity(self, before: np.ndarray, after: np.ndarray) -> float:
        return float(after - before) / self.dt


class CheetahDirCopy(_CheetahCopy):
    """task = (dir,), dir in {-1, +1}."""

    def reward(self, before, after, action):
        return self.task[0] * self.velocity(before, after) - 0.05 * float(np.sum(action**2))


class CheetahVelCopy(_CheetahCopy):
    """task = (v_goal,)."""

    def reward(self, before, after, action):
        return -abs(self.velocity(before, after) - self.task[0]) - 0.05 * float(np.sum(action**2))


class _AntCopy(MujocoTaskCopy):
    gym_id = "Ant-v5"

    def __init__(self, seed: int, contact_forces_in_obs: bool, positions_in_obs: bool) -> None:
        super().__init__(seed, include_cfrc_ext_in_observation=bool(contact_forces_in_obs),
                         exclude_current_positions_from_observation=not positions_in_obs)

    def measure(self) -> np.ndarray:
        return self.data.body("torso").xpos[:2].copy()

    def contact_cost(self) -> float:
        return 5e-4 * float(np.sum(np.clip(self.data.cfrc_ext, -1.0, 1.0) ** 2))


class AntDirCopy(_AntCopy):
    """task = (g,), the goal direction's angle in radians."""

    def __init__(self, seed: int, contact_forces_in_obs: bool = False) -> None:
        super().__init__(seed, contact_forces_in_obs, positions_in_obs=False)

    def reward(self, before, after, action):
        direction = np.array([np.cos(self.task[0]), np.sin(self.task[0])])
        forward = float(np.dot((after - before) / self.dt, direction))
        return forward - 0.5 * float(np.sum(action**2)) - self.contact_cost() + 1.0

    def terminated(self) -> bool:
        z = self.data.qpos[2]
        finite = np.isfinite(self.data.qpos).all() and np.isfinite(self.data.qvel).all()
        return not (finite and 0.2 <= z <= 1.0)


class AntGoalCopy(_AntCopy):
    """task = (x, y) of the goal."""

    def __init__(self, seed: int, contact_forces_in_obs: bool = True) -> None:
        super().__init__(seed, contact_forces_in_obs, positions_in_obs=True)

    def reward(self, before, after, action):
        return -float(np.sum(np.abs(after - self.task))) - 0.1 * float(np.sum(action**2)) - self.contact_cost()


class HumanoidDirCopy(MujocoTaskCopy):
    """task = (cos t, sin t), the unit direction to run in."""

    gym_id = "Humanoid-v5"

    def measure(self) -> np.ndarray:
        mass = self.model.body_mass[:, None]
        return (np.sum(mass * self.data.xipos, axis=0) / np.sum(mass))[:2].copy()

    def reward(self, before, after, action):
        forward = 0.25 * float(np.dot(self.task, after - before)) / self.model.opt.timestep
        ctrl_cost = 0.1 * float(np.sum(np.square(self.data.ctrl)))
        impact_cost = min(5e-7 * float(np.sum(np.square(self.data.cfrc_ext))), 10.0)
        return forward - ctrl_cost - impact_cost + 5.0

    def terminated(self) -> bool:
        z = self.data.qpos[2]
        return bool(z < 1.0 or z > 2.0)


class WalkerParamsCopy(MujocoTaskCopy):
    """task = log-scale exponents of body_mass, body_inertia, dof_damping, geom_friction (WALKER_PARAMS)."""

    gym_id = "Walker2d-v5"

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        import mujoco

        for name, _, shape in WALKER_PARAMS:
            if getattr(self.model, name).shape != shape:
                raise ValueError(f"Walker2d-v5 {name} has shape {getattr(self.model, name).shape}, expected {shape}")
        #: the model's values at construction: every task scales these, so factors never compound
        self.original = {name: getattr(self.model, name).copy() for name, _, _ in WALKER_PARAMS}
        self._scratch = mujoco.MjData(self.model)  # mj_setConst's workspace (keeps self.data untouched)

    def set_task(self, task: np.ndarray) -> None:
        import mujoco

        super().set_task(task)
        if self.task.shape != (WALKER_TASK_DIM,):
            raise ValueError(f"walker task must have {WALKER_TASK_DIM} entries, got shape {self.task.shape}")
        start = 0
        for name, base, shape in WALKER_PARAMS:
            size = int(np.prod(shape))
            exponents = self.task[start:start + size].reshape(shape)
            getattr(self.model, name)[:] = self.original[name] * base**exponents
            start += size
        mujoco.mj_setConst(self.model, self._scratch)

    def measure(self) -> np.ndarray:
        return np.array(self.data.qpos[0])

    def reward(self, before, after, action):
        return float(after - before) / self.dt + 1.0 - 1e-3 * float(np.sum(action**2))

    def terminated(self) -> bool:
        height, angle = self.data.qpos[1], self.data.qpos[2]
        return not (0.8 < height < 2.0 and -1.0 < angle < 1.0)


# ====================================================================== batched envs (main process)
class _MujocoSuiteEnv(SimulatorBatchedEnv):
    copy_class: ClassVar[type[MujocoTaskCopy]]

    def __init__(self, num_envs: int, rng: np.random.Generator, num_workers: int = 2, **copy_kwargs: Any) -> None:
        super().__init__(num_envs, rng, functools.partial(self.copy_class, **copy_kwargs), num_workers)


class HalfCheetahDir(_MujocoSuiteEnv):
    """HalfCheetah running forward or backward; task (dir,), dir in {-1, +1}."""

    task_dim = 1
    copy_class = CheetahDirCopy

    def sample_tasks(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(n, 1))


class HalfCheetahVel(_MujocoSuiteEnv):
    """HalfCheetah running at a target velocity; task (v_goal,), v_goal ~ U(0, 3)."""

    task_dim = 1
    copy_class = CheetahVelCopy

    def sample_tasks(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(0.0, 3.0, size=(n, 1)).astype(np.float32)


ANT_DIRECTIONS = {"forward_backward": (0.0, np.pi), "legacy_radians": (-1.0, 1.0)}


class AntDir(_MujocoSuiteEnv):
    """Ant running in direction g; task (g,), g in {0, pi} (or the old code's {-1, +1} radians)."""

    task_dim = 1
    copy_class = AntDirCopy

    def __init__(self, num_envs: int, rng: np.random.Generator, num_workers: int = 2,
                 directions: Literal["forward_backward", "legacy_radians"] = "forward_backward",
                 contact_forces_in_obs: bool = False) -> None:
        if directions not in ANT_DIRECTIONS:
            raise ValueError(f"directions must be one of {', '.join(ANT_DIRECTIONS)}, got {directions!r}")
        self.directions = np.array(ANT_DIRECTIONS[directions], dtype=np.float32)
        super().__init__(num_envs, rng, num_workers, contact_forces_in_obs=contact_forces_in_obs)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(self.directions, size=(n, 1))


class AntGoal(_MujocoSuiteEnv):
    """Ant walking to a goal uniform on the disc of radius 3; task (x, y)."""

    task_dim = 2
    copy_class = AntGoalCopy

    def __init__(self, num_envs: int, rng: np.random.Generator, num_workers: int = 2,
                 contact_forces_in_obs: bool = True) -> None:
        super().__init__(num_envs, rng, num_workers, contact_forces_in_obs=contact_forces_in_obs)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> np.ndarray:
        angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
        radius = 3.0 * np.sqrt(rng.uniform(0.0, 1.0, size=n))
        return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1).astype(np.float32)


class HumanoidDir(_MujocoSuiteEnv):
    """Humanoid running in direction t ~ U(0, 2 pi); task (cos t, sin t)."""

    task_dim = 2
    copy_class = HumanoidDirCopy

    def sample_tasks(self, n: int, rng: np.random.Generator) -> np.ndarray:
        angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
        return np.stack([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32)


def pearl_walker_param_sets() -> np.ndarray:
    """PEARL's 50 walker parameter sets (40 train, then 10 test), as log-scale exponents ``(50, 65)``."""
    rng = np.random.default_rng(PEARL_WALKER_SEED)
    n = PEARL_WALKER_TRAIN + PEARL_WALKER_TEST
    return rng.uniform(-WALKER_LOG_SCALE_LIMIT, WALKER_LOG_SCALE_LIMIT, size=(n, WALKER_TASK_DIM)).astype(np.float32)


class Walker2DRandParams(_MujocoSuiteEnv):
    """Walker2d with random body masses, inertias, joint damping and friction; task = the 65 log-scale exponents."""

    task_dim = WALKER_TASK_DIM
    copy_class = WalkerParamsCopy

    def __init__(self, num_envs: int, rng: np.random.Generator, num_workers: int = 2,
                 task_set: Literal["random", "pearl"] = "random") -> None:
        if task_set not in ("random", "pearl"):
            raise ValueError(f"task_set must be 'random' or 'pearl', got {task_set!r}")
        self.task_set = task_set
        self._pearl_sets = pearl_walker_param_sets()
        super().__init__(num_envs, rng, num_workers)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.task_set == "pearl":
            return self._pearl_sets[:PEARL_WALKER_TRAIN][rng.integers(PEARL_WALKER_TRAIN, size=n)].copy()
        limit = WALKER_LOG_SCALE_LIMIT
        return rng.uniform(-limit, limit, size=(n, WALKER_TASK_DIM)).astype(np.float32)

    def train_tasks(self) -> np.ndarray | None:
        return self._pearl_sets[:PEARL_WALKER_TRAIN].copy() if self.task_set == "pearl" else None

    def held_out_tasks(self) -> np.ndarray | None:
        return self._pearl_sets[PEARL_WALKER_TRAIN:].copy() if self.task_set == "pearl" else None


#: (registry name, batched env, description) for envs/__init__.py
MUJOCO_ENVS: tuple[tuple[str, type[_MujocoSuiteEnv], str], ...] = (
    ("cheetah_dir", HalfCheetahDir, "HalfCheetah-v5 running forward or backward (VariBAD sec. 5.2, MAML)"),
    ("cheetah_vel", HalfCheetahVel, "HalfCheetah-v5 running at a target velocity U(0, 3) (VariBAD sec. 5.2)"),
    ("ant_dir", AntDir, "Ant-v5 running forward or backward (VariBAD sec. 5.2, PEARL)"),
    ("ant_goal", AntGoal, "Ant-v5 walking to a goal on the disc of radius 3 (VariBAD sec. 5.2, PEARL)"),
    ("humanoid_dir", HumanoidDir, "Humanoid-v5 running in a direction U(0, 2 pi) (VariBAD sec. 5.2, PEARL)"),
    ("walker_params", Walker2DRandParams,
     "Walker2d-v5 with random masses, inertias, damping and friction (VariBAD sec. 5.2, PEARL)"),
)
