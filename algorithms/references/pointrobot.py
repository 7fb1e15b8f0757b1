"""Reference lines for sparse PointRobot (none of the reference codebases has them), evaluated by the shared
meta-test protocol (:func:`algorithms.common.evaluator.meta_test`) on the env's own test goals.

* :class:`KnownGoalAgent` (``optimal``): knows the goal and moves ``a = clip((goal - s) / 0.1, -1, 1)``. Each
  coordinate then approaches the goal's as fast as the action box allows, so the distance at EVERY step is the
  smallest any policy can reach and the return (a decreasing function of the distances) is the largest: the
  known-goal optimum, computed by rollout rather than typed in.
* :class:`SemicircleSearchAgent` (``searcher``): the strategy the VariBAD paper calls Bayes-optimal (sec. 5.2): go to
  the semicircle at the first angle not yet searched, walk along it (0.1 rad per step, which the action box allows)
  until a reward comes, keep walking while the reward grows, then go back to the best point seen and stay; in
  later episodes go straight to that point. An episode that ends before the goal is found leaves the search where
  it stopped, and the next episode resumes it (with PEARL's 20-step episodes the sweep spans several episodes).

``python -m algorithms.references.pointrobot`` (``make references``) writes ``pointrobot_references.json`` next to
this file; ``analysis/`` draws it as data (it imports no agent code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from algorithms.common.agent import Agent, IterationStats, StopQuery
from algorithms.common.evaluator import meta_test, meta_test_tasks
from algorithms.references import write_references
from envs.base import MetaVecEnv
from envs.pointrobot import STEP_SIZE
from records.references import reference_file

OUT = reference_file("pointrobot")
#: angle walked along the unit semicircle per step: its chord (< 0.1) fits the action box [-0.1, 0.1]^2
SWEEP_STEP = 0.1
#: search modes of the searcher
TO_ARC, SWEEP, HOLD = 0, 1, 2


def step_towards(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The action that brings each coordinate as close to the target's as one step allows."""
    return np.clip((target - position) / STEP_SIZE, -1.0, 1.0).astype(np.float32)


class _ScriptedAgent(Agent):
    """Nothing to learn; deterministic."""

    def train_iteration(self, env: MetaVecEnv, should_stop: StopQuery | None = None) -> IterationStats:
        raise NotImplementedError(f"{self.name} is a scripted reference: nothing to train")

    def state_dict(self, resume: bool = True) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class KnownGoalAgent(_ScriptedAgent):
    """Goes straight for the known goal (per-axis as fast as the box allows) and stays on it."""

    name = "optimal"
    uses_true_task = True

    def initial_belief(self, num_envs: int, tasks: np.ndarray | None = None) -> np.ndarray:
        if tasks is None:
            raise ValueError("the known-goal agent must be given the goals")
        return np.asarray(tasks, dtype=np.float64)

    def act(self, obs: np.ndarray, belief: np.ndarray, deterministic: bool) -> np.ndarray:
        return step_towards(np.asarray(obs, dtype=np.float64)[:, :2], belief)

    def update_belief(self, belief, obs, action, reward, next_obs, episode_done, task_done) -> np.ndarray:
        return belief


@dataclass
class SearchBelief:
    """Per env: search mode, the angle searched up to, the best rewarded point and its reward."""

    mode: np.ndarray
    searched_to: np.ndarray
    best_point: np.ndarray
    best_reward: np.ndarray
    found: np.ndarray

    @classmethod
    def prior(cls, n: int) -> SearchBelief:
        return cls(np.full(n, TO_ARC), np.zeros(n), np.zeros((n, 2)), np.zeros(n), np.zeros(n, dtype=bool))


class SemicircleSearchAgent(_ScriptedAgent):
    """Searches the unit semicircle from angle 0 to pi, then exploits the goal it found (see module docstring)."""

    name = "searcher"

    def initial_belief(self, num_envs: int, tasks: np.ndarray | None = None) -> SearchBelief:
        return SearchBelief.prior(num_envs)

    def act(self, obs: np.ndarray, belief: SearchBelief, deterministic: bool) -> np.ndarray:
        position = np.asarray(obs, dtype=np.float64)[:, :2]
        angle = np.where(belief.mode == SWEEP, belief.searched_to + SWEEP_STEP, belief.searched_to)
        target = np.stack([np.cos(angle), np.sin(angle)], axis=1)
        target = np.where((belief.mode == HOLD)[:, None], belief.best_point, target)
        return step_towards(position, target)

    def update_belief(self, belief: SearchBelief, obs, action, reward, next_obs, episode_done,
                      task_done) -> SearchBelief:
        b = SearchBelief(belief.mode.copy(), belief.searched_to.copy(), belief.best_point.copy(),
                         belief.best_reward.copy(), belief.found.copy())
        position = np.asarray(next_obs, dtype=np.float64)[:, :2]
        reward = np.asarray(reward, dtype=np.float64)
        sweeping = b.mode == SWEEP
        b.searched_to[sweeping] += SWEEP_STEP
        better = reward > b.best_reward
        b.best_point[better], b.best_reward[better] = position[better], reward[better]
        b.found |= reward > 0
        # past the peak of the reward (it fell, or vanished after being seen): go back to the best point and stay
        b.mode[sweeping & b.found & ~better] = HOLD
        arrived = (b.mode == TO_ARC) & (np.linalg.norm(position - np.stack(
            [np.cos(b.searched_to), np.sin(b.searched_to)], axis=1), axis=1) < 1e-6)
        b.mode[arrived] = SWEEP  # a reward already seen on the way is kept as the best point; the sweep may beat it
        exhausted = (b.mode == SWEEP) & (b.searched_to >= np.pi)  # the whole semicircle searched, no reward
        b.best_point[exhausted] = position[exhausted]
        b.mode[exhausted] = HOLD
        new_episode = np.asarray(episode_done, dtype=bool)
        b.mode[new_episode] = np.where(b.found[new_episode], HOLD, TO_ARC)
        b.mode[new_episode & ~b.found & (b.searched_to >= np.pi)] = TO_ARC  # searched it all: search again
        b.searched_to[new_episode & ~b.found & (b.searched_to >= np.pi)] = 0.0
        done = np.asarray(task_done, dtype=bool)
        if done.any():
            fresh = SearchBelief.prior(int(done.sum()))
            for field in ("mode", "searched_to", "best_point", "best_reward", "found"):
                getattr(b, field)[done] = getattr(fresh, field)
        return b


#: the two settings the suite runs PointRobot in: VariBAD's (sec. 5.1) and PEARL's (oyster's sparse-point-robot);
#: 30 episodes in both, as fig. 4a rolls out every agent
SETTINGS = {
    "varibad": {"description": "H = 100, goals U(0, pi) on the semicircle (VariBAD sec. 5.1); 1000 seeded goals",
                "options": {}, "num_tasks": 1000, "episodes": 30},
    "pearl": {"description": "H = 20, oyster's 20 test goals (env.kwargs.task_set=pearl), as PEARL's runs here",
              "options": {"horizon": 20, "task_set": "pearl"}, "num_tasks": None, "episodes": 30},
}


def evaluate(agent: Agent, setting: str, seed: int = 0) -> dict[str, list[float]]:
    """Mean return and success rate per meta-test episode of ``agent`` under ``setting``."""
    spec = SETTINGS[setting]
    tasks = meta_test_tasks("pointrobot_sparse", spec["num_tasks"], seed, **spec["options"])
    rows = meta_test(agent, "pointrobot_sparse", tasks, spec["episodes"], seed=seed, **spec["options"])
    by_episode = rows.groupby("episode")
    return {"return": [round(float(v), 6) for v in by_episode["return"].mean()],
            "success": [round(float(v), 6) for v in by_episode["success"].mean()]}


def compute_references(seed: int = 0) -> dict[str, Any]:
    agents = {"optimal": KnownGoalAgent(), "searcher": SemicircleSearchAgent()}
    out: dict[str, Any] = {
        "env": "pointrobot_sparse",
        "description": ("Per-episode mean return and success rate of two reference policies for sparse PointRobot, "
                        "through the shared meta-test protocol. Generated by `python -m "
                        "algorithms.references.pointrobot`."),
        "methods": {
            "optimal": "knows the goal; per-axis clip((goal - s) / 0.1): the smallest distance at every step",
            "searcher": ("walks the unit semicircle from angle 0 (0.1 rad per step) until the reward peaks, holds "
                         "the best point, and goes straight back to it in later episodes (VariBAD sec. 5.2)"),
        },
        #: an episode's value does not depend on how many episodes follow it: a K-episode curve is a prefix
        "per_episode_independent_of_K": True,
        "settings": {},
    }
    for setting, spec in SETTINGS.items():
        values = {name: evaluate(agent, setting, seed) for name, agent in agents.items()}
        out["settings"][setting] = {"description": spec["description"], "episodes": spec["episodes"],
                                    "return": {n: v["return"] for n, v in values.items()},
                                    "success": {n: v["success"] for n, v in values.items()}}
    # what analysis draws for pointrobot_sparse: VariBAD's setting (the env's defaults)
    default = out["settings"]["varibad"]
    out["K"] = {str(default["episodes"]): default["return"]}
    out["success_K"] = {str(default["episodes"]): default["success"]}
    return out


def main(argv: list[str] | None = None) -> None:
    refs, out = write_references(__doc__.split("\n\n")[0], compute_references, OUT, argv)
    for setting, block in refs["settings"].items():
        for name in block["return"]:
            ret, succ = block["return"][name], block["success"][name]
            print(f"{setting:8s} {name:9s} return ep1-5 {[round(v, 2) for v in ret[:5]]} "
                  f"success ep1-5 {[round(v, 3) for v in succ[:5]]}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
