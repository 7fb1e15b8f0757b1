"""Our agents under Meta-World's own meta-RL evaluation (``metaworld.evaluation``), and a check of our evaluator.

Meta-World 3.x evaluates a ``MetaLearningAgent`` (``init``, ``reset(env_mask)``, ``adapt_action``, ``step``,
``adapt``, ``eval_action``) with ``metalearning_evaluation``: per round (``num_evals``) every env draws a test task
(``sample_tasks``), the agent starts it (``init``), acts for ``adaptation_episodes`` episodes with rewards handed
to it (``adapt_action`` / ``step``), is told adaptation is over (``adapt``), and is then scored by
``evaluation(agent, envs, evaluation_episodes)``: ``eval_action`` on observations only, terminate-on-success on.

:class:`MetaWorldAgent` makes any :class:`~algorithms.common.agent.Agent` speak that protocol. The belief starts
at the prior in ``init`` and is carried across every episode of the task: ``reset(env_mask)`` marks episode ends
only (it must not wipe the belief, or a meta-learner would forget what it inferred); during ``evaluation`` no
rewards reach the agent, so the belief stays the adapted one (``Agent.adapted_belief``: PEARL draws its posterior
sample there). Meta-World's ``Timestep`` carries the observation *before* each action, and after an automatic
reset the vector env returns the next episode's first observation, so the terminal observation the belief update
needs is recorded by :class:`TransitionRecorder`, a vector-env wrapper the adapter puts around the envs
(``adapter.envs``). Observations get our BAMDP done flag appended, as :class:`~envs.base.MetaVecEnv` does.

How ``evaluation`` counts (metaworld 3.1.1, ``metaworld/evaluation.py``): episodes are pooled by task NAME and the
loop stops once every name has ``num_episodes`` finished episodes. In ML1 all envs share one name (``push-v3``),
so it stops after ``evaluation_episodes`` episodes have finished over ALL envs together, and with
terminate-on-success the successful ones finish first: its success rate is that of the first few episodes to end,
not of ``evaluation_episodes`` episodes per task. :func:`compare` measures this against our evaluator and a direct
count (``python -m tools.metaworld_eval --scripted ml1_reach --compare``).

    python -m tools.metaworld_eval results/ml1_push/varibad/<run-id>        # writes metaworld_eval.json
    python -m tools.metaworld_eval --scripted ml1_reach --noise 2.0 --compare --out results/metaworld_check
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from algorithms.common.agent import Agent
from algorithms.common.evaluator import meta_test, meta_test_tasks
from envs.metaworld_ml1 import ML1_ENVS
from envs.registry import get_spec
from records.command_line import command_line


class TransitionRecorder(gym.vector.VectorWrapper):
    """Passes every call through and records, per step, the true successor observation (the terminal one where
    an episode ended) and, per env, every episode's return, success (any step) and length, finished or not."""

    def __init__(self, env: gym.vector.VectorEnv) -> None:
        super().__init__(env)
        self.successor_obs: np.ndarray | None = None
        self.dones: np.ndarray | None = None
        self.episodes: list[dict[str, Any]] = []
        self.phase = "adaptation"
        self._open: dict[int, dict[str, Any]] = {}
        self._finished = 0

    # Meta-World's evaluation talks to its envs through these three (VectorWrapper does not forward them)
    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        return self.env.call(name, *args, **kwargs)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return self.env.get_attr(name)

    def set_attr(self, name: str, values: Any) -> None:
        self.env.set_attr(name, values)

    def tasks(self) -> np.ndarray:
        """Each env's current task as our task vector (``rand_vec``: object xyz then goal xyz), float32."""
        return np.stack([np.asarray(v, dtype=np.float32) for v in self.env.get_attr("_last_rand_vec")])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        for env_index, episode in self._open.items():  # cut short by the reset: recorded, not finished
            self.episodes.append({**episode, "env": env_index, "finished": False, "finish_order": np.nan})
        self._open = {}
        self.successor_obs, self.dones = None, None
        return obs, info

    def step(self, actions):
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        dones = np.logical_or(terminations, truncations)
        successor = np.array(obs, dtype=np.float64, copy=True)
        success = np.asarray(infos.get("success", np.zeros(len(dones))), dtype=bool).copy()
        if dones.any():
            final_success = np.asarray(infos["final_info"]["success"], dtype=bool)
            for i in np.flatnonzero(dones):
                successor[i] = infos["final_obs"][i]
                success[i] = final_success[i]
        for i in range(len(dones)):
            episode = self._open.setdefault(i, {"phase": self.phase, "return": 0.0, "success": False, "length": 0})
            episode["return"] += float(rewards[i])
            episode["success"] |= bool(success[i])
            episode["length"] += 1
            if dones[i]:
                self.episodes.append({**self._open.pop(i), "env": i, "finished": True,
                                      "finish_order": self._finished})
                self._finished += 1
        self.successor_obs, self.dones = successor, dones
        return obs, rewards, terminations, truncations, infos

    def episode_table(self) -> pd.DataFrame:
        """Every recorded episode (the open ones included, unfinished), with its index within its env's task."""
        rows = self.episodes + [{**e, "env": i, "finished": False, "finish_order": np.nan}
                                for i, e in self._open.items()]
        table = pd.DataFrame(rows, columns=["env", "phase", "return", "success", "length", "finished",
                                            "finish_order"])
        table["episode"] = table.groupby("env").cumcount() + 1
        return table


def _with_flag(obs: np.ndarray, flag: np.ndarray | float) -> np.ndarray:
    obs = np.asarray(obs, dtype=np.float32)
    flags = np.broadcast_to(np.asarray(flag, dtype=np.float32), (obs.shape[0],))
    return np.concatenate([obs, flags[:, None]], axis=1)


class MetaWorldAgent:
    """Any of our agents as a ``metaworld.evaluation.MetaLearningAgent``; pass ``adapter.envs`` (the recorded
    envs) to ``metalearning_evaluation``."""

    def __init__(self, agent: Agent, envs: gym.vector.VectorEnv, deterministic: bool = True) -> None:
        self.agent, self.deterministic = agent, deterministic
        self.envs = envs if isinstance(envs, TransitionRecorder) else TransitionRecorder(envs)
        self.belief: Any = None
        #: how many tasks were started (``init`` calls) and belief updates made: for tests and logs
        self.tasks_started = 0
        self.updates = 0

    def init(self) -> None:
        """A new task in every env: the belief returns to the prior."""
        self.envs.phase = "adaptation"
        tasks = self.envs.tasks()
        self.belief = self.agent.initial_belief(len(tasks), tasks if self.agent.uses_true_task else None)
        self.tasks_started += 1

    def reset(self, env_mask: np.ndarray) -> None:
        """Episode ends (Meta-World calls this every step with the envs that finished): the belief is kept."""

    def adapt_action(self, observations: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        self._require_init()
        return self.agent.act(_with_flag(observations, 0.0), self.belief, self.deterministic), {}

    def step(self, timestep: Any) -> None:
        """Bayes-filter the belief with the transition just taken (the successor from the recorder)."""
        self._require_init()
        rec = self.envs
        if rec.successor_obs is None:
            raise RuntimeError("step() before any env step: the envs must be the adapter's recorded ones "
                               "(adapter.envs)")
        obs = _with_flag(timestep.observation, 0.0)
        next_obs = _with_flag(rec.successor_obs, rec.dones.astype(np.float32))
        self.belief = self.agent.update_belief(
            self.belief, obs, np.asarray(timestep.action), np.asarray(timestep.reward, dtype=np.float32), next_obs,
            rec.dones.copy(), np.zeros(len(rec.dones), dtype=bool))
        self.updates += 1

    def adapt(self) -> None:
        self._require_init()
        self.belief = self.agent.adapted_belief(self.belief)
        self.envs.phase = "evaluation"

    def eval_action(self, observations: np.ndarray) -> np.ndarray:
        self._require_init()
        return self.agent.act(_with_flag(observations, 0.0), self.belief, self.deterministic)

    def _require_init(self) -> None:
        if self.belief is None:
            raise RuntimeError("init() starts a task: call it before acting")


def make_eval_envs(env_name: str, num_envs: int = 50, horizon: int | None = None,
                   benchmark_seed: int = 0) -> gym.vector.VectorEnv:
    """Meta-World's own ML1 test envs, built the way its users build them (``gym.make_vec("Meta-World/ML1-test")``):
    ``num_envs`` must divide the 50 test tasks; with 50 each env holds one test task."""
    if env_name not in ML1_ENVS:
        raise ValueError(f"Meta-World's evaluation runs on ML1 envs ({', '.join(ML1_ENVS)}), not {env_name!r}")
    if 50 % num_envs:
        raise ValueError(f"num_envs={num_envs} must divide ML1's 50 test tasks (1, 2, 5, 10, 25 or 50)")
    import metaworld  # noqa: F401 - registers the Meta-World ids

    horizon = horizon or get_spec(env_name).horizon
    return gym.make_vec("Meta-World/ML1-test", env_name=ML1_ENVS[env_name], seed=benchmark_seed,
                        meta_batch_size=num_envs, max_episode_steps=horizon, vector_strategy="sync")


@dataclass
class MetaWorldResult:
    """``metalearning_evaluation``'s three return values, and how it was called."""

    env: str
    mean_success_rate: float
    mean_return: float
    success_rate_per_task: dict[str, float]
    num_evals: int
    adaptation_episodes: int
    evaluation_episodes: int
    horizon: int
    num_envs: int


def metaworld_evaluate(agent: Agent, env_name: str, num_evals: int = 1, adaptation_episodes: int = 1,
                       evaluation_episodes: int = 3, horizon: int | None = None, num_envs: int = 50,
                       benchmark_seed: int = 0, deterministic: bool = True
                       ) -> tuple[MetaWorldResult, pd.DataFrame]:
    """``metaworld.evaluation.metalearning_evaluation`` on ``agent``, unchanged; returns its result and the
    recorder's episode table (every episode each env ran, by phase)."""
    from metaworld.evaluation import metalearning_evaluation

    horizon = horizon or get_spec(env_name).horizon
    envs = make_eval_envs(env_name, num_envs, horizon, benchmark_seed)
    adapter = MetaWorldAgent(agent, envs, deterministic)
    try:
        success, ret, per_task = metalearning_evaluation(
            adapter, adapter.envs, num_evals=num_evals, adaptation_steps=1, adaptation_episodes=adaptation_episodes,
            evaluation_episodes=evaluation_episodes)
        episodes = adapter.envs.episode_table()
    finally:
        envs.close()
    result = MetaWorldResult(env_name, float(success), float(ret), {k: float(v) for k, v in per_task.items()},
                             num_evals, adaptation_episodes, evaluation_episodes, horizon, num_envs)
    return result, episodes


def count_directly(agent: Agent, env_name: str, episodes: int, horizon: int | None = None, num_envs: int = 50,
                   benchmark_seed: int = 0, deterministic: bool = True) -> pd.DataFrame:
    """Success counted by hand on Meta-World's own envs: one task per env (``sample_tasks``), ``episodes``
    episodes each with the belief carried, no terminate-on-success, every step's ``info["success"]``. One row per
    (task, episode) with the task vector, like our evaluator's."""
    from metaworld.evaluation import Timestep

    envs = make_eval_envs(env_name, num_envs, horizon, benchmark_seed)
    adapter = MetaWorldAgent(agent, envs, deterministic)
    rec = adapter.envs
    try:
        rec.call("toggle_sample_tasks_on_reset", False)
        rec.call("toggle_terminate_on_success", False)
        rec.call("sample_tasks")
        adapter.init()
        tasks = rec.tasks()
        obs, _ = rec.reset()
        finished = np.zeros(num_envs, dtype=np.int64)
        while (finished < episodes).any():
            actions, aux = adapter.adapt_action(obs)
            next_obs, rewards, terminations, truncations, _ = rec.step(actions)
            adapter.step(Timestep(obs, actions, rewards, terminations, truncations, aux))
            finished += np.logical_or(terminations, truncations)
            obs = next_obs
        table = rec.episode_table()
    finally:
        envs.close()
    table = table[table["finished"] & (table["episode"] <= episodes)].sort_values(["env", "episode"])
    table["task"] = [tasks[i].tolist() for i in table["env"]]
    return table.reset_index(drop=True)


def compare(agent: Agent, env_name: str, adaptation_episodes: int = 1, evaluation_episodes: int = 1,
            horizon: int | None = None, benchmark_seed: int = 0, deterministic: bool = True,
            seed: int = 0) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The same agent on ML1's 50 test tasks, scored three ways (design.md §4 vs Meta-World's protocol):

    * ``ours``: our evaluator (``meta_test``), ``A + E`` episodes per task, success = any step in the episode;
    * ``direct``: :func:`count_directly` on Meta-World's envs, the same episodes (must equal ``ours``);
    * ``metaworld``: ``metalearning_evaluation(num_evals=1, adaptation_episodes=A, evaluation_episodes=E)`` as it
      reports, and ``metaworld_recount``, its number recomputed from the recorded episodes (the first E to finish
      over all 50 envs), which shows what it counts.

    Returns a summary table (one row per way of scoring) and the per-episode tables behind it."""
    horizon = horizon or get_spec(env_name).horizon
    A, E = adaptation_episodes, evaluation_episodes
    options = {"horizon": horizon, "benchmark_seed": benchmark_seed}
    tasks = meta_test_tasks(env_name, None, seed, **options)
    ours = meta_test(agent, env_name, tasks, A + E, deterministic=deterministic, seed=seed, **options)
    direct = count_directly(agent, env_name, A + E, horizon, 50, benchmark_seed, deterministic)
    mw, mw_episodes = metaworld_evaluate(agent, env_name, 1, A, E, horizon, 50, benchmark_seed, deterministic)

    by_vector = {t.tobytes(): i for i, t in enumerate(np.asarray(tasks, dtype=np.float32))}
    direct["task_id"] = [by_vector[np.asarray(t, dtype=np.float32).tobytes()] for t in direct["task"]]
    if sorted(direct["task_id"].unique()) != list(range(len(tasks))):
        raise RuntimeError("Meta-World's ML1-test envs did not hold ML1's 50 test tasks one per env")
    evaluated = ours[ours["episode"] > A]
    direct_evaluated = direct[direct["episode"] > A]
    mw_eval = mw_episodes[mw_episodes["phase"] == "evaluation"]
    counted = mw_eval[mw_eval["finished"]].sort_values("finish_order").head(E)
    first_eval = mw_eval.sort_values(["env", "episode"]).groupby("env").head(1)
    rows = [
        {"scoring": "ours (meta_test)", "episodes counted": f"episodes {A + 1}-{A + E} of each of {len(tasks)} tasks",
         "n": len(evaluated), "success rate": evaluated["success"].mean()},
        {"scoring": "direct count on Meta-World's envs", "episodes counted": f"the same {len(direct_evaluated)}",
         "n": len(direct_evaluated), "success rate": direct_evaluated["success"].mean()},
        {"scoring": "metaworld.evaluation (reported)",
         "episodes counted": f"the first {E} evaluation episodes to end, over all envs", "n": E,
         "success rate": mw.mean_success_rate},
        {"scoring": "metaworld recount from the recorded episodes",
         "episodes counted": (f"the first {E} to end: tasks {sorted(counted['env'].tolist())}; "
                              f"{int((~first_eval['finished']).sum())} of {len(first_eval)} tasks had not finished "
                              "an evaluation episode when it stopped"),
         "n": len(counted), "success rate": counted["success"].mean() if len(counted) else np.nan},
    ]
    summary = pd.DataFrame(rows)
    return summary, {"ours": ours, "direct": direct, "metaworld_episodes": mw_episodes,
                     "metaworld_result": pd.DataFrame([asdict(mw)])}


def main(argv: list[str] | None = None) -> None:
    from algorithms.builder import configure_process, env_options, load_run_agent
    from algorithms.references.metaworld_scripted import ScriptedML1Agent

    parser = command_line(__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("run_dir", nargs="?", type=Path, help="a run folder of an ML1 env (its checkpoint is used)")
    source.add_argument("--scripted", choices=sorted(ML1_ENVS), help="Meta-World's scripted policy, goal visible")
    parser.add_argument("--checkpoint", default="final", help="checkpoint name under checkpoints/ (default: final)")
    parser.add_argument("--noise", type=float, default=0.0, help="--scripted: Gaussian action noise std")
    parser.add_argument("--num-evals", type=int, default=1, help="metalearning_evaluation's num_evals")
    parser.add_argument("--adaptation-episodes", type=int, default=1)
    parser.add_argument("--evaluation-episodes", type=int, default=3)
    parser.add_argument("--stochastic", action="store_true", help="sample actions (default: the policy's mode)")
    parser.add_argument("--compare", action="store_true", help="also score with our evaluator and a direct count")
    parser.add_argument("--out", type=Path, help="output folder (default: the run folder)")
    args = parser.parse_args(argv)
    configure_process(1)
    if args.run_dir is not None:
        agent, cfg, progress = load_run_agent(args.run_dir, args.checkpoint)
        env_name, options = str(cfg.env.name), env_options(cfg)
        horizon = int(options.get("horizon") or get_spec(env_name).horizon)
        benchmark_seed = int(options.get("benchmark_seed", 0))
        out = args.out or args.run_dir
        source_info = {"run": str(args.run_dir), "checkpoint": args.checkpoint, "frames": progress["frames"]}
    else:
        env_name, horizon, benchmark_seed = args.scripted, get_spec(args.scripted).horizon, 0
        agent = ScriptedML1Agent(env_name, args.noise, seed=0)
        out = args.out or Path("results") / "metaworld_eval" / f"scripted_{env_name}_noise{args.noise:g}"
        source_info = {"scripted": env_name, "noise_std": args.noise}
    if env_name not in ML1_ENVS:
        parser.error(f"{env_name!r} is not an ML1 env; Meta-World's evaluation runs on {', '.join(ML1_ENVS)}")
    out.mkdir(parents=True, exist_ok=True)
    deterministic = not args.stochastic
    result, episodes = metaworld_evaluate(agent, env_name, args.num_evals, args.adaptation_episodes,
                                          args.evaluation_episodes, horizon, 50, benchmark_seed, deterministic)
    (out / "metaworld_eval.json").write_text(json.dumps({**source_info, **asdict(result)}, indent=2))
    episodes.to_csv(out / "metaworld_eval_episodes.csv", index=False)
    print(f"metalearning_evaluation on {env_name}: success rate {result.mean_success_rate:.3f}, "
          f"return {result.mean_return:.2f} -> {out / 'metaworld_eval.json'}")
    if args.compare:
        summary, tables = compare(agent, env_name, args.adaptation_episodes, args.evaluation_episodes, horizon,
                                  benchmark_seed, deterministic)
        summary.to_csv(out / "metaworld_comparison.csv", index=False)
        (out / "metaworld_comparison.md").write_text(summary.to_markdown(index=False, floatfmt=".3f") + "\n")
        for name, table in tables.items():
            table.to_csv(out / f"metaworld_comparison_{name}.csv", index=False)
        print(summary.to_string(index=False))


if __name__ == "__main__":
    main()
