"""`make train ALGO=varibad|rl2 ENV=<every registered env>` runs a few updates with the paper configuration (budget,
parallel envs and meta-test shrunk), through the same entry point as a real run."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import train
from envs import REGISTRY
from tests.helpers import compose_config

SIMULATOR_EXTRAS = {"cheetah": "mujoco", "ant": "mujoco", "humanoid": "mujoco", "walker": "mujoco",
                    "ml1": "metaworld"}


def _needs(env: str) -> str | None:
    return next((extra for prefix, extra in SIMULATOR_EXTRAS.items() if env.startswith(prefix)), None)


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["varibad", "rl2"])
@pytest.mark.parametrize("env", sorted(REGISTRY))
def test_a_few_updates_on_every_env(env, algo, tmp_path):
    extra = _needs(env)
    if extra:
        pytest.importorskip(extra, reason=f"{env} needs the {extra} extra (installed by `make install` and CI)")
    base = compose_config(f"algo={algo}", f"env={env}")
    spec = REGISTRY[env]
    horizon = base.env.horizon or spec.horizon
    episodes = base.env.episodes_per_task or spec.episodes_per_task
    num_envs = 2
    steps = horizon * episodes  # one whole BAMDP trajectory per env per update: the VAE buffer fills at once
    frames = 2 * num_envs * steps  # two updates
    cfg = compose_config(
        f"algo={algo}", f"env={env}", f"results_dir={tmp_path}", "progress=false", f"algo.num_envs={num_envs}",
        f"algo.num_steps={steps}", f"train.num_frames={frames}", f"train.eval_interval_frames={frames}",
        "train.log_interval_iterations=1", f"train.checkpoint_interval_frames={frames}", "eval.num_tasks=1",
        *([f"algo.precollect_frames={num_envs * steps}"] if algo == "varibad" else []))
    final = train.run(cfg)
    run = next((tmp_path / env / algo).iterdir())
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["status"] == "completed" and meta["frames"] == frames
    metrics = pd.read_csv(run / "train_metrics.csv")
    assert "ppo/policy_loss" in metrics.columns and metrics.filter(like="loss").notna().all().all()
    if algo == "varibad":
        assert "vae/loss" in metrics.columns
    assert len(final) == spec.episodes_eval and final["return"].notna().all()
