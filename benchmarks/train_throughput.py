"""Training throughput of an agent with its paper configuration, against the raw env throughput and against the
project's code as it was before the speed work, all measured in the same run.

Per env: training frames per second over whole training iterations (rollout and all updates), with the breakdown
rollout / policy update / VAE update, and the raw env throughput with random actions and the *same batching*
(number of envs and, for simulator envs, worker processes) measured in the same run as the baseline, since this
machine is shared and noisy. For simulator envs the raw throughput is also measured for 0, 1, 2, 4 and 16 worker
processes (the choice of ``num_workers``).

``--baseline REV`` (``make bench BENCH_BASELINE=REV``; default ``HEAD``, the committed code, against the working
tree's) also measures GridWorld training with
that revision's code, checked out in a temporary git worktree and run by its own ``benchmarks.train_throughput``,
interleaved with runs of the current code (``--rounds`` of each, best counts), and reports the speed-up.

Targets: VariBAD on GridWorld at least 2x the baseline on the same machine; on cheetah_dir and ml1_push
training at least 60% of raw env throughput. Updates use ``update_threads`` (default ``auto``: 2 here), the rollout
one thread. Where a GPU is present the simulator envs are measured with ``device=cuda`` too. Writes
``bench/<algo>_<env>[_cuda].json``, ``bench/gridworld_vs_baseline.json`` and ``bench/summary.md``.

    python -m benchmarks.train_throughput [--algo varibad] [--env gridworld cheetah_dir ml1_push] [--baseline REV]
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate

from algorithms import builder
from envs.registry import make_meta_env
from records.command_line import command_line

TARGET_FPS = {("varibad", "gridworld"): 10_000}
#: training fps / the baseline revision's on the same machine (the speed work's target against its starting point)
TARGET_SPEEDUP = {("varibad", "gridworld"): 2.0}
#: training fps / raw env fps with the same batching (the speed target: the agent's overhead at most 40%)
TARGET_FRACTION = {("varibad", "cheetah_dir"): 0.6, ("varibad", "ml1_push"): 0.6}


def raw_env_fps(env_name: str, num_envs: int, steps: int, seed: int = 0, **env_kwargs: object) -> float:
    """Random-action frames per second of ``num_envs`` BAMDPs built as training builds them."""
    env = make_meta_env(env_name, num_envs=num_envs, seed=seed, **env_kwargs)
    env.reset()
    env.action_space.seed(seed)
    actions = np.stack([env.action_space.sample() for _ in range(64)])
    env.step(actions[0])  # warm up (worker processes, caches)
    start = time.perf_counter()
    for t in range(steps):
        env.step(actions[t % 64])
    fps = steps * num_envs / (time.perf_counter() - start)
    env.close()
    return fps


def measure(algo: str, env_name: str, min_frames: int, warmup: int, repeats: int, device: str = "cpu",
            raw: bool = True) -> dict:
    cfg = builder.compose_config(f"algo={algo}", f"env={env_name}", "progress=false", f"device={device}")
    options = builder.env_options(cfg)
    setup = builder.build(cfg)
    agent, env = setup.agent, setup.env
    frames_per_iteration = int(cfg.algo.num_envs) * int(cfg.algo.num_steps)
    iterations = max(1, -(-min_frames // frames_per_iteration))
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
    env.close()
    best = max(runs, key=lambda r: r["fps"])
    num_envs = int(cfg.algo.num_envs)
    raw_steps = max(50, min_frames // num_envs // 2)
    raw_fps = max(raw_env_fps(env_name, num_envs, raw_steps, **options) for _ in range(repeats)) if raw else None
    by_workers = None
    if raw and "num_workers" in options:  # simulator env: how the batching should be split over processes
        by_workers = {w: raw_env_fps(env_name, num_envs, raw_steps, **{**options, "num_workers": w})
                      for w in (0, 1, 2, 4, 16)}
    target = TARGET_FPS.get((algo, env_name))
    fraction_target = TARGET_FRACTION.get((algo, env_name))
    fraction = best["fps"] / raw_fps if raw_fps else None
    meets = None
    if target is not None:
        meets = best["fps"] >= target
    elif fraction_target is not None and fraction is not None:
        meets = fraction >= fraction_target
    return {
        "algo": algo, "env": env_name, "iterations": iterations, "frames_per_iteration": frames_per_iteration,
        "num_envs": num_envs, "env_options": options, "torch_threads": torch.get_num_threads(),
        "update_threads": agent.update_threads, "device": device, "repeats": runs,
        "best_fps": best["fps"], "median_fps": float(np.median([r["fps"] for r in runs])), "raw_env_fps": raw_fps,
        "raw_env_fps_by_workers": by_workers, "training_over_raw": fraction,
        "agent_overhead_fraction": None if fraction is None else 1.0 - fraction,
        "target_fps": target, "target_training_over_raw": fraction_target, "meets_target": meets,
        "frames_2e7_minutes": 2e7 / best["fps"] / 60, "host": platform.node(), "time": time.strftime("%FT%T"),
    }


def _tree_gridworld_fps(tree: Path, out: Path, min_frames: int, warmup: int) -> float:
    """Best-of-one GridWorld training frames/s of the code in ``tree``, run by that tree's own benchmark script
    (a fresh process: its modules are imported from ``tree``)."""
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "benchmarks.train_throughput", "--env", "gridworld", "--repeats", "1",
               "--min-frames", str(min_frames), "--warmup", str(warmup), "--out", str(out)]
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark in {tree} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return float(json.loads((out / "varibad_gridworld.json").read_text())["best_fps"])


def compare_with_baseline(revision: str, rounds: int, min_frames: int, warmup: int) -> dict:
    """GridWorld training frames/s of the current code and of ``revision`` (a temporary git worktree), measured
    alternately ``rounds`` times each in this run; the best of each counts."""
    root = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "rev-parse", revision], cwd=root, capture_output=True, text=True,
                            check=True).stdout.strip()
    current: list[float] = []
    baseline: list[float] = []
    with tempfile.TemporaryDirectory(prefix="metarl-bench-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=root, check=True,
                       capture_output=True)
        try:
            for i in range(rounds):
                baseline.append(_tree_gridworld_fps(tree, Path(tmp) / f"base{i}", min_frames, warmup))
                current.append(_tree_gridworld_fps(root, Path(tmp) / f"cur{i}", min_frames, warmup))
                print(f"  round {i + 1}/{rounds}: baseline {baseline[-1]:,.0f} frames/s, current {current[-1]:,.0f}",
                      flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=root, capture_output=True)
    speedup = max(current) / max(baseline)
    target = TARGET_SPEEDUP[("varibad", "gridworld")]
    return {"baseline_revision": commit, "rounds": rounds, "min_frames": min_frames, "baseline_fps": baseline,
            "current_fps": current, "best_baseline_fps": max(baseline), "best_current_fps": max(current),
            "speedup": speedup, "median_speedup": float(np.median(current) / np.median(baseline)),
            "target_speedup": target, "meets_target": speedup >= target, "host": platform.node(),
            "time": time.strftime("%FT%T")}


def _row(result: dict) -> list:
    b = max(result["repeats"], key=lambda r: r["fps"])["per_iteration_ms"]
    target = (f">= {result['target_training_over_raw']:.0%} of raw" if result["target_training_over_raw"]
              else f">= {result['target_fps']:,} frames/s" if result["target_fps"] else "")
    ratio = result["training_over_raw"]
    return [result["env"], result["device"], result["update_threads"], f"{result['best_fps']:,.0f}",
            "" if result["raw_env_fps"] is None else f"{result['raw_env_fps']:,.0f}",
            "" if ratio is None else f"{ratio:.0%}", f"{b['rollout']:.0f} / {b['policy_update']:.0f} / "
            f"{b['vae_update']:.0f}", target, {True: "met", False: "NOT met", None: ""}[result["meets_target"]]]


def main() -> None:
    parser = command_line(__doc__, whole_doc=True)
    parser.add_argument("--algo", default="varibad")
    parser.add_argument("--env", nargs="+", default=["gridworld", "cheetah_dir", "ml1_push"])
    parser.add_argument("--min-frames", type=int, default=192_000, help="frames per timed repeat (whole iterations)")
    parser.add_argument("--warmup", type=int, default=2, help="iterations after pre-collection before timing")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (the machine is shared: best counts)")
    parser.add_argument("--baseline", default=None, help="git revision to compare GridWorld training against")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of baseline and current code")
    parser.add_argument("--out", default="bench")
    args = parser.parse_args()
    builder.configure_process(1)
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    rows = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for env_name in args.env:
        for device in devices if env_name != "gridworld" else ["cpu"]:
            torch.manual_seed(0)
            result = measure(args.algo, env_name, args.min_frames, args.warmup, args.repeats, device=device,
                             raw=device == "cpu")
            path = out / f"{args.algo}_{env_name}{'' if device == 'cpu' else '_' + device}.json"
            path.write_text(json.dumps(result, indent=2))
            rows.append(_row(result))
            b = max(result["repeats"], key=lambda r: r["fps"])["per_iteration_ms"]
            raw = result["raw_env_fps"]
            print(f"{args.algo} on {env_name} ({device}, {result['update_threads']} update threads): training "
                  f"{result['best_fps']:,.0f} frames/s best of {args.repeats} (median {result['median_fps']:,.0f})"
                  + ("" if raw is None else f"; raw env {raw:,.0f} frames/s with the same batching "
                     f"({result['num_envs']} envs, {result['env_options']}): training/raw "
                     f"{result['training_over_raw']:.1%}"))
            print(f"  per iteration ({result['frames_per_iteration']} frames): rollout {b['rollout']:.1f} ms, "
                  f"policy update {b['policy_update']:.1f} ms, VAE update {b['vae_update']:.1f} ms; wrote {path}")
            if result["raw_env_fps_by_workers"]:
                table = ", ".join(f"{w} workers {v:,.0f}" for w, v in result["raw_env_fps_by_workers"].items())
                print(f"  raw env frames/s by worker processes: {table}")
    headers = ["env", "device", "update threads", "training frames/s", "raw env frames/s", "training/raw",
               "rollout / policy / VAE ms per iteration", "target", ""]
    lines = [tabulate(rows, headers=headers, tablefmt="github")]
    if args.baseline:
        print(f"GridWorld training against {args.baseline} ({args.rounds} alternating rounds):", flush=True)
        cmp = compare_with_baseline(args.baseline, args.rounds, min(args.min_frames, 96_000), args.warmup)
        (out / "gridworld_vs_baseline.json").write_text(json.dumps(cmp, indent=2))
        lines.append("")
        lines.append(tabulate([[cmp["baseline_revision"][:10], f"{cmp['best_baseline_fps']:,.0f}",
                                f"{cmp['best_current_fps']:,.0f}", f"{cmp['speedup']:.2f}x",
                                f"{cmp['median_speedup']:.2f}x", f">= {cmp['target_speedup']:.0f}x",
                                "met" if cmp["meets_target"] else "NOT met"]],
                               headers=["GridWorld vs", "baseline frames/s", "current frames/s", "speed-up (best)",
                                        "speed-up (median)", "target", ""], tablefmt="github"))
    summary = "\n".join(lines)
    (out / "summary.md").write_text(f"{args.algo}, {platform.node()}, {time.strftime('%FT%T')}\n\n{summary}\n")
    print(summary)


if __name__ == "__main__":
    main()
