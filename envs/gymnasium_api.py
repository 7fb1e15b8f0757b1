"""Gymnasium registration: every registry env is available through ``gymnasium.make`` / ``make_vec``.

``gymnasium.make("metarl/GridWorld-v0")`` gives one BAMDP as a plain ``gymnasium.Env`` (one gymnasium episode =
K MDP episodes on one task); ``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")`` gives the
natively batched :class:`~envs.base.MetaVecEnv`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from envs.base import MetaVecEnv
from envs.registry import make_meta_env


class SingleBAMDPEnv(gym.Env):
    """One BAMDP of a registry env behind the single-env gymnasium API."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, name: str, seed: int = 0, **kwargs: Any) -> None:
        self.name = name
        self._kwargs = kwargs
        self._vec: MetaVecEnv = make_meta_env(name, num_envs=1, seed=seed, **kwargs)
        self.observation_space = self._vec.single_observation_space
        self.action_space = self._vec.single_action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._vec = make_meta_env(self.name, num_envs=1, seed=seed, **self._kwargs)
        tasks = None if options is None or "task" not in options else np.asarray(options["task"])[None]
        obs, info = self._vec.reset(options={"tasks": tasks} if tasks is not None else None)
        return obs[0], {k: v[0] for k, v in info.items()}

    def step(self, action):
        obs, reward, terminated, truncated, info = self._vec.step(np.asarray(action)[None])
        done = bool(terminated[0] or truncated[0])
        # The BAMDP is over: return the terminal observation rather than the first one of a new task.
        out_obs = info["final_obs"][0] if done else obs[0]
        return out_obs, float(reward[0]), bool(terminated[0]), bool(truncated[0]), {k: v[0] for k, v in info.items()}


def make_vector(name: str, num_envs: int = 1, seed: int = 0, **kwargs: Any) -> MetaVecEnv:
    return make_meta_env(name, num_envs=num_envs, seed=seed, **kwargs)


GYMNASIUM_IDS = {"gridworld": "metarl/GridWorld-v0", "pointrobot_sparse": "metarl/PointRobotSparse-v0"}
GYMNASIUM_IDS.update({"ml1_reach": "metarl/ML1Reach-v0", "ml1_push": "metarl/ML1Push-v0",
                      "ml1_pick_place": "metarl/ML1PickPlace-v0"})
GYMNASIUM_IDS.update({"cheetah_dir": "metarl/HalfCheetahDir-v0", "cheetah_vel": "metarl/HalfCheetahVel-v0",
                      "ant_dir": "metarl/AntDir-v0", "ant_goal": "metarl/AntGoal-v0",
                      "humanoid_dir": "metarl/HumanoidDir-v0", "walker_params": "metarl/Walker2DRandParams-v0"})


def register_gymnasium() -> None:
    for name, env_id in GYMNASIUM_IDS.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="envs.gymnasium_api:SingleBAMDPEnv",
                vector_entry_point="envs.gymnasium_api:make_vector",
                kwargs={"name": name},
            )
