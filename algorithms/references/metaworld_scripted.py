"""Meta-World's scripted expert policies as agents that see the goal: a reference that needs no training.

Meta-World ships one hand-written policy per task (``metaworld.policies``); each reads the goal from the last
three observation entries, which ML1 zeroes (the goal is hidden). :class:`ScriptedML1Agent` is given the true
task (``uses_true_task``, like the multi-task oracle), writes the task's goal (``rand_vec[3:6]``) into those
entries and asks the scripted policy. Optional Gaussian action noise makes success stochastic, so that two
evaluators can be compared where it is neither 0 nor 1; the noise is drawn from a generator held in the belief,
seeded at ``initial_belief``, so that a task set gets the same noise whichever loop steps it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from algorithms.common.agent import Agent, IterationStats, StopQuery
from envs.base import MetaVecEnv

#: registry name -> the scripted policy's class in ``metaworld.policies``
SCRIPTED_POLICIES = {"ml1_reach": "SawyerReachV3Policy", "ml1_push": "SawyerPushV3Policy",
                     "ml1_pick_place": "SawyerPickPlaceV3Policy"}
#: Meta-World's observation width (our envs append the BAMDP done flag after it)
OBS_DIM = 39


@dataclass
class ScriptedBelief:
    """The true goals (one row per env) and the action-noise generator of this task set."""

    goals: np.ndarray
    noise: np.random.Generator


class ScriptedML1Agent(Agent):
    """Meta-World's scripted policy for ``env_name`` with the goal made visible; nothing to learn."""

    uses_true_task = True

    def __init__(self, env_name: str, noise_std: float = 0.0, seed: int = 0) -> None:
        if env_name not in SCRIPTED_POLICIES:
            raise ValueError(f"no scripted policy for {env_name!r}; choose one of: {', '.join(SCRIPTED_POLICIES)}")
        import metaworld.policies

        self.name = f"scripted_{env_name}"
        self.policy = getattr(metaworld.policies, SCRIPTED_POLICIES[env_name])()
        self.noise_std, self.seed = float(noise_std), int(seed)

    def train_iteration(self, env: MetaVecEnv, should_stop: StopQuery | None = None) -> IterationStats:
        raise NotImplementedError("a scripted policy is not trained")

    def initial_belief(self, num_envs: int, tasks: np.ndarray | None = None) -> ScriptedBelief:
        if tasks is None:
            raise ValueError("the scripted policy must be given the true tasks (it reads the goal from them)")
        goals = np.asarray(tasks, dtype=np.float64)[:, 3:6]
        if len(goals) != num_envs:
            raise ValueError(f"{len(goals)} tasks for {num_envs} envs")
        return ScriptedBelief(goals, np.random.default_rng(self.seed))

    def act(self, obs: np.ndarray, belief: ScriptedBelief, deterministic: bool) -> np.ndarray:
        seen = np.asarray(obs, dtype=np.float64)[:, :OBS_DIM].copy()
        seen[:, -3:] = belief.goals
        with warnings.catch_warnings():  # "Constant(s) may be too high": the env clips, as it does ours
            warnings.simplefilter("ignore", UserWarning)
            actions = np.stack([self.policy.get_action(row) for row in seen])
        if self.noise_std > 0:  # drawn for every env at every step, so the stream does not depend on which are done
            actions = actions + self.noise_std * belief.noise.standard_normal(actions.shape)
        return np.clip(actions, -1.0, 1.0).astype(np.float32)

    def update_belief(self, belief: ScriptedBelief, obs, action, reward, next_obs, episode_done,
                      task_done) -> ScriptedBelief:
        return belief

    def state_dict(self, resume: bool = True) -> dict[str, Any]:
        return {"noise_std": self.noise_std, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.noise_std, self.seed = float(state["noise_std"]), int(state["seed"])
