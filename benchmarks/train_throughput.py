"""Training throughput of an agent with its paper configuration (default: VariBAD on GridWorld).

Frames per second over a fixed number of training iterations, rollout and all updates included, with the
breakdown rollout / policy update / VAE update, and the raw env throughput (random actions, same batching)
measured in the same run as a baseline. One torch thread. Writes ``bench/<algo>_<env>.json``.

    python -m benchmarks.train_throughput [--algo varibad] [--env gridworld] [--iterations 200]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import train
from envs.registry import make_meta_env

TARGET_FPS = {("varibad", "gridworld"): 10_000}


def raw_env_fps(env_name: str, num_envs: int, steps: int, seed: int = 0) -> float:
    env = make_meta_env(env_name, num_envs=num_envs, seed=seed)
    env.reset()
    env.action_space.seed(seed)
    actions = np.stack([env.action_space.sample() for _ in range(64)])
    start = time.perf_counter()
    for t in range(steps):
        env.step(actions[t % 64])
    return steps * num_envs / (time.perf_counter() - start)


def measure(algo: str, env_name: str, iterations: int, warmup: int, repeats: int) -> dict:
    cfg = train.compose_config(f"algo={algo}", f"env={env_name}", "progress=false")
    agent, env = train.build(cfg)
    while agent.frames < int(cfg.algo.get("precollect_frames", 0)) or warmup > 0:
        agent.train_iteration(env)
        warmup -= 1
    runs = []
    for _ in range(repeats):
        frames, phases = 0, {"rollout": 0.0, "policy_update": 0.0, "vae_update": 0.0}
        start = time.perf_counter()
        for _ in range(iterations):
            stats = agent.train_iteration(env)
            frames += stats.frames
            for k in phases:
                phases[k] += stats.metrics.get(f"time/{k}_s", 0.0)
        wall = time.perf_counter() - start
        runs.append({"fps": frames / wall, "wall_s": wall, "frames": frames,
                     "per_iteration_ms": {k: 1000 * v / iterations for k, v in phases.items()}})
    best = max(runs, key=lambda r: r["fps"])
    num_envs = int(cfg.algo.num_envs)
    steps = int(cfg.algo.num_steps) if "num_steps" in cfg.algo else 100
    raw = raw_env_fps(env_name, num_envs, steps * iterations // 4)
    target = TARGET_FPS.get((algo, env_name))
    return {
        "algo": algo, "env": env_name, "iterations": iterations, "frames_per_iteration": best["frames"] // iterations,
        "torch_threads": torch.get_num_threads(), "repeats": runs, "best_fps": best["fps"],
        "median_fps": float(np.median([r["fps"] for r in runs])), "raw_env_fps": raw,
        "agent_overhead_fraction": 1.0 - best["fps"] / raw, "target_fps": target,
        "meets_target": None if target is None else best["fps"] >= target,
        "frames_2e7_minutes": 2e7 / best["fps"] / 60, "host": platform.node(), "time": time.strftime("%FT%T"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="varibad")
    parser.add_argument("--env", default="gridworld")
    parser.add_argument("--iterations", type=int, default=200, help="training iterations per repeat")
    parser.add_argument("--warmup", type=int, default=10, help="iterations after pre-collection before timing")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (the machine is shared: best counts)")
    parser.add_argument("--out", default="bench")
    args = parser.parse_args()
    train.configure_process(1)
    torch.manual_seed(0)
    result = measure(args.algo, args.env, args.iterations, args.warmup, args.repeats)
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    path = out / f"{args.algo}_{args.env}.json"
    path.write_text(json.dumps(result, indent=2))
    b = max(result["repeats"], key=lambda r: r["fps"])["per_iteration_ms"]
    print(f"{args.algo} on {args.env}: {result['best_fps']:,.0f} frames/s best of {args.repeats} "
          f"(median {result['median_fps']:,.0f}); raw env {result['raw_env_fps']:,.0f} frames/s")
    print(f"per iteration ({result['frames_per_iteration']} frames): rollout {b['rollout']:.1f} ms, "
          f"policy update {b['policy_update']:.1f} ms, VAE update {b['vae_update']:.1f} ms")
    print(f"2e7 frames would take {result['frames_2e7_minutes']:.1f} min; target "
          f"{result['target_fps']} frames/s: {'met' if result['meets_target'] else 'NOT met'}; wrote {path}")


if __name__ == "__main__":
    main()
