"""Cost of one VariBAD VAE update (ELBO forward and backward, Adam step) with each env's paper configuration.

The ELBO decodes every (ELBO term, transition) pair (eq. 10; PointRobot and ML1 use no subsampling), which makes
activations of n x D x B x width entries. The update decodes them a block of ELBO terms at a time
(``vae.PAIR_BLOCK_ENTRIES``); this benchmark times the update for several block sizes against one pass over all
pairs, measured in the same run on the same batch as the baseline (the machine is shared and noisy). Batches are
the paper's (``vae_batch_trajectories`` whole BAMDP trajectories of the env's full length) filled with random
transitions: the cost does not depend on the values. One torch thread. Writes ``bench/vae_elbo.json``.

    python -m benchmarks.vae_elbo [--env pointrobot_sparse ml1_push cheetah_dir] [--repeats 3]
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from algorithms import builder
from algorithms.onpolicy.storage import TrajectoryBatch
from algorithms.varibad import vae as vae_module
from records.command_line import command_line

ONE_PASS = 1 << 40
BLOCK_SIZES = (1 << 18, 1 << 19, 1 << 20, 1 << 21, 1 << 22)


def random_batch(agent, seed: int = 0) -> TrajectoryBatch:
    """A batch shaped like ``agent.buffer.sample``: full-length trajectories of random transitions."""
    g = torch.Generator().manual_seed(seed)
    cfg, info = agent.cfg, agent.info
    T, B = info.max_trajectory_len, cfg.vae_batch_trajectories
    obs = torch.randn(T + 1, B, info.obs_dim, generator=g)
    return TrajectoryBatch(prev_obs=obs[:-1], actions=torch.randn(T, B, agent.encoder_action_dim, generator=g),
                           rewards=torch.randn(T, B, 1, generator=g), next_obs=obs[1:], state_index=None,
                           tasks=torch.randn(B, info.task_dim, generator=g), lengths=torch.full((B,), T))


def time_update(agent, batch: TrajectoryBatch, repeats: int) -> float:
    """Best-of-``repeats`` seconds of one VAE gradient step on ``batch`` (after one warm-up step)."""
    agent.vae_step(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        agent.vae_step(batch)
        times.append(time.perf_counter() - start)
    return min(times)


def measure(env_name: str, repeats: int) -> dict:
    cfg = builder.compose_config("algo=varibad", f"env={env_name}", "progress=false")
    setup = builder.build(cfg)
    agent, env = setup.agent, setup.env
    env.close()
    batch = random_batch(agent)
    default = vae_module.PAIR_BLOCK_ENTRIES
    timings: dict[str, float] = {}
    try:
        for entries in (ONE_PASS, *BLOCK_SIZES):
            vae_module.PAIR_BLOCK_ENTRIES = entries
            timings["one_pass" if entries == ONE_PASS else str(entries)] = time_update(agent, batch, repeats)
    finally:
        vae_module.PAIR_BLOCK_ENTRIES = default
    T, B = batch.actions.shape[:2]
    return {"env": env_name, "trajectory_len": T, "batch_trajectories": B,
            "subsample_elbos": agent.cfg.subsample_elbos, "subsample_decodes": agent.cfg.subsample_decodes,
            "decode_state": agent.cfg.decode_state, "update_s": timings, "default_block_entries": default,
            "speedup_default_over_one_pass": timings["one_pass"] / timings[str(default)],
            "updates_per_iteration": agent.cfg.vae_updates_per_iteration,
            "torch_threads": torch.get_num_threads(), "host": platform.node(), "time": time.strftime("%FT%T")}


def main() -> None:
    parser = command_line(__doc__, whole_doc=True)
    parser.add_argument("--env", nargs="+", default=["pointrobot_sparse", "ml1_push", "cheetah_dir"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench")
    args = parser.parse_args()
    builder.configure_process(1)
    results = []
    for env_name in args.env:
        torch.manual_seed(0)
        np.random.seed(0)
        r = measure(env_name, args.repeats)
        results.append(r)
        t = r["update_s"]
        blocks = ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in t.items() if k != "one_pass")
        print(f"{env_name} (T={r['trajectory_len']}, B={r['batch_trajectories']}, subsample elbos "
              f"{r['subsample_elbos']} decodes {r['subsample_decodes']}): one VAE update, one pass "
              f"{1000 * t['one_pass']:.0f} ms; blocks of {blocks}; default ({r['default_block_entries']}) "
              f"{r['speedup_default_over_one_pass']:.2f}x faster than one pass")
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    (out / "vae_elbo.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out / 'vae_elbo.json'}")


if __name__ == "__main__":
    main()
