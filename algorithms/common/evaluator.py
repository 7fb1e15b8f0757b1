"""The one meta-test protocol for every agent (design.md §4).

Per test task: ``K_eval`` consecutive episodes, the belief starting at the prior and carried across episodes;
deterministic actions by default. One row per (task, episode) with the return, success (any step with
``info["success"]``) and, where the env reports success, the steps until it was first reached.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from algorithms.common.agent import Agent
from envs.registry import get_spec, make_meta_env

EVAL_COLUMNS = ["task_id", "episode", "return", "success", "steps_to_success"]


class EvaluationInterrupted(Exception):  # noqa: N818 - a stop, not an error
    """``should_stop`` said stop: the meta-test was abandoned part way (no rows)."""


def meta_test_tasks(env_name: str, num_tasks: int | None, seed: int, **env_options) -> np.ndarray:
    """The env's fixed test set where one exists, else a fixed seeded sample of ``num_tasks`` tasks (default:
    the registry's ``default_eval_tasks``)."""
    probe = make_meta_env(env_name, num_envs=1, seed=seed, split="test", **env_options)
    tasks = probe.inner.held_out_tasks()
    if tasks is None:
        n = get_spec(env_name).default_eval_tasks if num_tasks is None else num_tasks
        tasks = probe.inner.sample_tasks(n, np.random.default_rng(seed))
    elif num_tasks is not None and num_tasks < len(tasks):
        tasks = tasks[:num_tasks]
    probe.close()
    return np.asarray(tasks, dtype=np.float32)


def meta_test(agent: Agent, env_name: str, tasks: np.ndarray, episodes: int, deterministic: bool = True,
              seed: int = 0, should_stop: Callable[[], bool] | None = None,
              on_episode: Callable[[int, int, float], None] | None = None, **env_kwargs) -> pd.DataFrame:
    """Roll ``agent`` out online on every task for ``episodes`` episodes; one row per (task, episode).

    ``should_stop`` is asked every step: when it says yes the meta-test is abandoned (:class:`EvaluationInterrupted`)
    instead of run to its end. ``on_episode(k, episodes, seconds)`` is called when every task has finished its
    k-th episode, with the seconds its episodes took so far, and once with ``k = 0`` when the meta-test's envs have
    started, with the seconds that took (tens of seconds for Meta-World's worker processes: a progress line that
    left it out made a meta-test look twice as fast as it was)."""
    n = len(tasks)
    setup_started = time.perf_counter()
    env = make_meta_env(env_name, num_envs=n, seed=seed, split="test", episodes_per_task=episodes, **env_kwargs)
    obs, _ = env.reset(options={"tasks": tasks})
    if on_episode is not None:
        on_episode(0, episodes, time.perf_counter() - setup_started)
    belief = agent.initial_belief(n, tasks if agent.uses_true_task else None)
    returns = np.zeros((n, episodes))
    success = np.zeros((n, episodes), dtype=bool)
    first_success = np.full((n, episodes), np.nan)
    step_in_episode = np.zeros(n, dtype=np.int64)
    finished = np.zeros(n, dtype=bool)
    started, reported = time.perf_counter(), 0
    while not finished.all():
        if should_stop is not None and should_stop():
            env.close()
            raise EvaluationInterrupted(f"meta-test stopped after {reported} of {episodes} episodes")
        action = agent.act(obs, belief, deterministic)
        next_obs, reward, _, _, info = env.step(action)
        ep = info["episode_index"]
        live = ~finished
        rows = np.flatnonzero(live)
        step_in_episode[live] += 1
        returns[rows, ep[rows]] += reward[rows]
        hit = live & info["success"]
        new_hit = hit & np.isnan(first_success[np.arange(n), ep])
        first_success[np.flatnonzero(new_hit), ep[new_hit]] = step_in_episode[new_hit]
        success[np.flatnonzero(hit), ep[hit]] = True
        belief = agent.update_belief(belief, obs, action, reward, info["final_obs"], info["episode_done"],
                                     info["task_done"])
        step_in_episode[info["episode_done"]] = 0
        finished |= info["task_done"]
        obs = next_obs
        episodes_done = ep + info["episode_done"]  # per task, episodes finished after this step
        completed = int(episodes if finished.all() else episodes_done[~finished].min())
        if on_episode is not None and completed > reported:
            reported = completed
            on_episode(completed, episodes, time.perf_counter() - started)
    env.close()
    task_ids = np.repeat(np.arange(n), episodes)
    return pd.DataFrame({
        "task_id": task_ids,
        "episode": np.tile(np.arange(1, episodes + 1), n),
        "return": returns.reshape(-1).round(6),  # rewards are float32: digits beyond are noise
        "success": success.reshape(-1),
        "steps_to_success": first_success.reshape(-1),
    })


def summary_table(final: pd.DataFrame, name: str, random_returns: list[float] | None,
                  show_success: bool = False) -> pd.DataFrame:
    """The end-of-run table, one column per meta-test episode: the agent's mean and std return, its success rate (%)
    where asked (Meta-World's metric) or where any episode succeeded, and the random policy's mean return where
    known."""
    per_episode = final.groupby("episode")
    episodes = list(per_episode.groups)
    rows = {f"{name} mean": [f"{v:.3f}" for v in per_episode["return"].mean()],
            f"{name} std": [f"{v:.3f}" for v in per_episode["return"].std()]}
    if show_success or final["success"].astype(bool).any():
        rows[f"{name} success %"] = [f"{100 * v:.0f}" for v in per_episode["success"].mean()]
    if random_returns is not None:
        rows["random policy mean"] = [f"{random_returns[k - 1]:.3f}" if k <= len(random_returns) else "" for k in
                                      episodes]
    table = pd.DataFrame(rows, index=episodes).T
    table.columns.name = "episode"
    return table
