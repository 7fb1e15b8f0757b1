"""PEARL gradient steps per second with its cheetah_dir configuration (full networks: policy, twin Q and V of
[300, 300, 300], encoder [200, 200, 200]; RL batch 256 per task; context 256 per task).

Measured for the configuration's own meta-batch (oyster's cheetah-dir.json: 4 tasks) and for the default meta-batch of
16 tasks (design.md §3), on the device the agent would train on (``--device auto``: the GPU where one exists), one
torch thread, in float32 (oyster's arithmetic) and with bfloat16 hidden layers (``algo.hidden_precision``), the two
interleaved in the same run so that the ratio does not depend on the machine's load. The buffers are filled by the
agent's own collection on the real env (a short initial pool), so the timed steps sample, move to the device, infer
q(z|c) and update exactly as in training. The machine is shared: the best of ``--repeats`` timed runs counts (the
median is reported too). Writes ``bench/pearl_cheetah_dir.json``.

    python -m benchmarks.pearl_throughput [--steps 30] [--repeats 3] [--meta-batch 4 16] [--precision float32]
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from algorithms import builder
from algorithms.pearl.collection import CollectStats, Phase, WorkItem
from records.command_line import command_line

ENV = "cheetah_dir"


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(meta_batch: int, precisions: list[str], steps: int, warmup: int, repeats: int, device: str,
            pool_steps: int) -> list[dict]:
    """One agent per precision, the same seed and data; their timed repeats alternate."""
    agents = {}
    for precision in precisions:
        cfg = builder.compose_config("algo=pearl", f"env={ENV}", "progress=false", f"device={device}",
                                   f"algo.meta_batch={meta_batch}", "env.kwargs.num_workers=0",
                                   f"algo.hidden_precision={precision}")
        setup = builder.build(cfg)
        agent, env = setup.agent, setup.env
        agent._setup_tasks(env)
        assert agent.train_tasks is not None
        pool = [WorkItem(t, [Phase("prior", pool_steps, True)]) for t in range(len(agent.train_tasks))]
        agent.collect(env, pool, CollectStats())
        env.close()
        agent.train_steps(warmup)
        agents[precision] = agent
    runs: dict[str, list[float]] = {p: [] for p in precisions}
    for _ in range(repeats):
        for precision, agent in agents.items():
            _synchronise(agent.device)
            start = time.perf_counter()
            agent.train_steps(steps)  # ends with a device-to-host copy of the metrics: the device has finished
            runs[precision].append(steps / (time.perf_counter() - start))
    return [_summary(cfg.algo, meta_batch, precision, str(agents[precision].device), steps, runs[precision])
            for precision in precisions]


def _summary(algo, meta_batch: int, precision: str, device: str, steps: int, runs: list[float]) -> dict:
    return {"meta_batch": meta_batch, "hidden_precision": precision, "batch_size": int(algo.batch_size),
            "embedding_batch_size": int(algo.embedding_batch_size), "net_layers": list(algo.net_layers),
            "encoder_layers": list(algo.encoder_layers), "latent_dim": int(algo.latent_dim),
            "device": device, "steps_per_repeat": steps, "repeats": runs,
            "best_steps_per_s": max(runs), "median_steps_per_s": float(np.median(runs)),
            "transitions_per_s": max(runs) * meta_batch * int(algo.batch_size),
            "num_train_steps_per_itr": int(algo.num_train_steps_per_itr),
            "iteration_minutes": int(algo.num_train_steps_per_itr) / max(runs) / 60}


def main() -> None:
    parser = command_line(__doc__, whole_doc=True)
    parser.add_argument("--steps", type=int, default=30, help="gradient steps per timed repeat")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--meta-batch", type=int, nargs="+", default=[4, 16],
                        help="tasks per step: 4 is cheetah-dir.json's, 16 the default")
    parser.add_argument("--precision", nargs="+", default=["float32", "bfloat16"],
                        help="algo.hidden_precision values, measured alternately")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--pool-steps", type=int, default=400, help="env steps collected per training task first")
    parser.add_argument("--out", default="bench")
    args = parser.parse_args()
    builder.configure_process(1)
    results = [r for mb in args.meta_batch
               for r in measure(mb, args.precision, args.steps, args.warmup, args.repeats, args.device,
                                args.pool_steps)]
    report = {"algo": "pearl", "env": ENV, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "load_average": os.getloadavg(), "host": platform.node(), "time": time.strftime("%FT%T"),
              "torch": torch.__version__, "results": results}
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    path = out / f"pearl_{ENV}.json"
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    for r in results:
        print(f"pearl on {ENV}, {r['hidden_precision']} hidden layers, meta_batch {r['meta_batch']} x batch "
              f"{r['batch_size']} (context "
              f"{r['embedding_batch_size']}), {r['device']}: {r['best_steps_per_s']:.2f} gradient steps/s best of "
              f"{len(r['repeats'])} (median {r['median_steps_per_s']:.2f}); "
              f"{r['num_train_steps_per_itr']}-step iteration "
              f"{r['iteration_minutes']:.1f} min")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
