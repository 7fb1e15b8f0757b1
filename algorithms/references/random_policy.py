"""The uniform random policy's meta-test return per episode: the floor a run's end-of-run table is read against.

It is the same for every run of one env, protocol, task set and episode count, so it is computed once and kept:
``records/reference_data/random_policy.json`` holds the values ``make references`` computed for the envs' default
protocols, and a run that needs another combination computes it (saying so, and stopping on a signal) and keeps it in
``<results_dir>/references/random_policy.json`` for the next run. Keyed by a hash of the env, its options, the
meta-test tasks and the episode count; the random policy is seeded by a constant, not by the run's seed.

    python -m algorithms.references.random_policy [--envs gridworld pointrobot_sparse ...]
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from records.command_line import command_line
from records.references import RANDOM_POLICY_FILE

SHIPPED = RANDOM_POLICY_FILE
#: the random policy's seed and the meta-test's: fixed, so that one value serves every run
SEED = 12_345
#: envs whose values ``make references`` computes (the simulator envs take minutes each: ``--envs`` adds them)
DEFAULT_ENVS = ("gridworld", "pointrobot_sparse")


def baseline_key(env_name: str, env_options: dict[str, Any], tasks: np.ndarray, episodes: int) -> str:
    """What the baseline depends on, hashed: env, its options, the meta-test tasks (to 6 decimals) and K."""
    payload = json.dumps({"env": env_name, "options": env_options, "episodes": int(episodes),
                          "tasks": np.round(np.asarray(tasks, dtype=np.float64), 6).tolist()},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def cached(key: str, cache: Path | None) -> list[float] | None:
    """The kept per-episode returns for ``key``: the shipped file first, then ``cache``."""
    for path in (SHIPPED, cache):
        if path is not None:
            entry = _read(path).get(key)
            if isinstance(entry, dict) and isinstance(entry.get("return"), list):
                return [float(v) for v in entry["return"]]
    return None


def compute(env_name: str, env_options: dict[str, Any], tasks: np.ndarray, episodes: int,
            should_stop: Callable[[], bool] | None = None) -> list[float]:
    """The random policy's mean return per meta-test episode over ``tasks`` (raises the evaluator's
    ``EvaluationInterrupted`` when ``should_stop`` says so)."""
    from algorithms.common.evaluator import meta_test
    from algorithms.common.random_agent import RandomAgent
    from envs import make_meta_env

    env = make_meta_env(env_name, num_envs=1, seed=SEED, split="test", **env_options)
    space = env.single_action_space
    env.close()
    rows = meta_test(RandomAgent(space, seed=SEED), env_name, tasks, episodes, seed=SEED, should_stop=should_stop,
                     **env_options)
    return [round(float(v), 6) for v in rows.groupby("episode")["return"].mean().to_numpy()]


def random_policy_returns(env_name: str, env_options: dict[str, Any], tasks: np.ndarray, episodes: int,
                          cache: Path | None, should_stop: Callable[[], bool] | None = None,
                          log: Callable[[str], None] = print) -> list[float]:
    """Kept values where they exist; else computed once (logged, interruptible) and kept in ``cache``."""
    key = baseline_key(env_name, env_options, tasks, episodes)
    values = cached(key, cache)
    if values is not None:
        return values
    log(f"random-policy baseline for {env_name} ({len(tasks)} tasks x {episodes} episodes): computing it once, kept "
        f"in {cache} for the next runs (Ctrl-C skips it)")
    started = time.perf_counter()
    values = compute(env_name, env_options, tasks, episodes, should_stop)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        data = _read(cache)
        data[key] = {"env": env_name, "options": env_options, "tasks": len(tasks), "episodes": episodes,
                     "return": values}
        cache.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    log(f"random-policy baseline computed in {time.perf_counter() - started:.0f}s")
    return values


def main(argv: list[str] | None = None) -> int:
    from algorithms.common.evaluator import meta_test_tasks
    from envs import get_spec

    parser = command_line(__doc__)
    parser.add_argument("--envs", nargs="+", default=list(DEFAULT_ENVS))
    parser.add_argument("--out", type=Path, default=SHIPPED)
    args = parser.parse_args(argv)
    data = _read(args.out)
    for env_name in args.envs:
        spec = get_spec(env_name)
        tasks = meta_test_tasks(env_name, None, seed=0)
        key = baseline_key(env_name, {}, tasks, spec.episodes_eval)
        values = compute(env_name, {}, tasks, spec.episodes_eval)
        data[key] = {"env": env_name, "options": {}, "tasks": len(tasks), "episodes": spec.episodes_eval,
                     "return": values}
        print(f"{env_name}: {len(tasks)} tasks x {spec.episodes_eval} episodes: {values}")
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
