"""How fast a trained agent infers the direction on HalfCheetahDir: per direction, the return of each meta-test
episode and the step of each episode from which the cheetah runs the task's way.

On ``cheetah_dir`` a policy that does not infer the direction can at best run one way, which averages about 0 over
the two tasks; an agent that infers it within episode 1 turns around there. The forward velocity is read
off the reward (``envs/mujoco_suite.py``: ``r = dir * v - 0.05 |a|^2``, so ``v = dir * (r + 0.05 |a|^2)``), and the
*settling step* is the first step of the episode from which the running mean of the last ``window`` velocities
keeps the task's sign to the episode's end (``None``: it never does). Episode 1 is where VariBAD and RL² adapt;
PEARL acts on a prior sample of z there by design (Algorithm 2) and adapts from episode 2.

    python -m tools.direction_inference RUN [RUN ...] [--episodes 2] [--window 10]

Writes ``direction_inference.json`` next to each run's ``eval.csv`` and prints a table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from algorithms.builder import configure_process, env_options, load_run_agent
from algorithms.common.agent import Agent
from envs.registry import make_meta_env
from records.command_line import command_line

#: cheetah_dir's control cost weight (``envs/mujoco_suite.py``)
CONTROL_COST = 0.05
DIRECTIONS = (1.0, -1.0)


def settling_step(velocity: np.ndarray, direction: float, window: int) -> int | None:
    """First step t (0-based) from which the mean of ``velocity[max(0, s - window + 1) : s + 1]`` has the sign of
    ``direction`` for every s >= t; ``None`` if the last one does not."""
    v = np.asarray(velocity, dtype=np.float64) * np.sign(direction)
    cumulative = np.concatenate([[0.0], np.cumsum(v)])
    ends = np.arange(1, len(v) + 1)
    starts = np.maximum(0, ends - window)
    running = (cumulative[ends] - cumulative[starts]) / (ends - starts)
    wrong = np.flatnonzero(running <= 0)
    if len(wrong) == 0:
        return 0
    return None if wrong[-1] == len(v) - 1 else int(wrong[-1] + 1)


def rollout(agent: Agent, episodes: int, seed: int, deterministic: bool = True,
            **env_kwargs: Any) -> dict[float, dict[str, Any]]:
    """Episodes 1..``episodes`` on each direction: returns and each episode's per-step forward velocity."""
    tasks = np.array([[d] for d in DIRECTIONS], np.float32)
    env = make_meta_env("cheetah_dir", num_envs=len(tasks), seed=seed, split="test", episodes_per_task=episodes,
                        **env_kwargs)
    obs, _ = env.reset(options={"tasks": tasks})
    belief = agent.initial_belief(len(tasks), tasks if agent.uses_true_task else None)
    returns = np.zeros((len(tasks), episodes))
    velocities: list[list[list[float]]] = [[[] for _ in range(episodes)] for _ in tasks]
    for _ in range(env.horizon * episodes):
        action = agent.act(obs, belief, deterministic)
        next_obs, reward, _, _, info = env.step(action)
        episode = info["episode_index"]
        returns[np.arange(len(tasks)), episode] += reward
        velocity = tasks[:, 0] * (reward + CONTROL_COST * np.square(action).sum(axis=1))
        for i in range(len(tasks)):
            velocities[i][episode[i]].append(float(velocity[i]))
        belief = agent.update_belief(belief, obs, action, reward, info["final_obs"], info["episode_done"],
                                     info["task_done"])
        obs = next_obs
    env.close()
    return {float(d): {"returns": returns[i].tolist(), "velocities": velocities[i]} for i, d in enumerate(DIRECTIONS)}


def analyse(run: Path, episodes: int = 2, window: int = 10) -> dict[str, Any]:
    agent, cfg, progress = load_run_agent(run)
    if cfg.env.name != "cheetah_dir":
        raise ValueError(f"{run} is a {cfg.env.name} run; this analysis is for cheetah_dir")
    options = env_options(cfg)
    out = rollout(agent, episodes, seed=int(cfg.seed) + 20_000, **options)
    result = {"run": str(run), "frames": progress["frames"], "window": window, "episodes": episodes,
              "directions": {}}
    for direction, data in out.items():
        steps = [settling_step(np.array(v), direction, window) for v in data["velocities"]]
        means = [float(np.mean(v)) for v in data["velocities"]]
        result["directions"][str(direction)] = {
            "returns": data["returns"],
            "settling_steps": steps,  # per episode
            "mean_velocities": means,
            "settling_step": steps[0],  # episode 1, as the files written before the per-episode lists
            "mean_velocity_episode_1": means[0],
        }
    (run / "direction_inference.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--window", type=int, default=10)
    args = parser.parse_args(argv)
    configure_process(1)
    print("run | frames | direction | return ep 1..K | mean velocity ep 1..K | settling step ep 1..K")
    for run in args.runs:
        result = analyse(run, args.episodes, args.window)
        for direction, d in result["directions"].items():
            returns = " / ".join(f"{r:.1f}" for r in d["returns"])
            velocities = " / ".join(f"{v:.2f}" for v in d["mean_velocities"])
            steps = " / ".join(str(s) for s in d["settling_steps"])
            print(f"{run.name} | {result['frames']:,} | {direction} | {returns} | {velocities} | {steps}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
