"""The cheetah_dir direction-inference analysis: the settling step, velocities read off the reward, the CLI."""

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from algorithms import builder
from algorithms.common.checkpoints import save_checkpoint
from tests.helpers import compose_config
from tools.direction_inference import main, settling_step


def test_settling_step():
    assert settling_step(np.ones(30), 1.0, window=5) == 0
    assert settling_step(-np.ones(30), 1.0, window=5) is None
    assert settling_step(-np.ones(30), -1.0, window=5) == 0
    # runs backwards for 10 steps, then forwards: the 4-step running mean turns positive at step 12
    v = np.concatenate([-np.ones(10), np.ones(20)])
    assert settling_step(v, 1.0, window=4) == 12
    # turns back at the very end: not settled
    assert settling_step(np.concatenate([np.ones(20), -np.ones(5)]), 1.0, window=3) is None


def test_velocity_read_off_the_reward_is_the_simulated_forward_velocity():
    """``dir * (r + 0.05 |a|^2)`` equals ``(x' - x) / dt`` of the simulator, in both directions."""
    import envs
    from tools.direction_inference import CONTROL_COST

    env = envs.make_meta_env("cheetah_dir", num_envs=2, seed=0, num_workers=0, horizon=30)
    env.reset(options={"tasks": np.array([[1.0], [-1.0]], np.float32)})
    copies = env.inner._local.copies
    rng = np.random.default_rng(0)
    for _ in range(20):
        action = rng.uniform(-1, 1, size=(2, 6)).astype(np.float32)
        before = [c.data.qpos[0] for c in copies]
        _, reward, _, _, _ = env.step(action)
        for i, direction in enumerate((1.0, -1.0)):
            simulated = (copies[i].data.qpos[0] - before[i]) / copies[i].dt
            from_reward = direction * (reward[i] + CONTROL_COST * np.square(action[i]).sum())
            assert from_reward == pytest.approx(simulated, rel=1e-4, abs=1e-4)
    env.close()


def test_cli_writes_the_analysis_next_to_the_run(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    cfg = compose_config("algo=varibad", "env=cheetah_dir", "env.horizon=15", "algo.num_envs=2", "progress=false")
    setup = builder.build(cfg)
    agent, env = setup.agent, setup.env
    env.close()
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    save_checkpoint({"agent": agent.state_dict(resume=False), "frames": 77}, run / "checkpoints" / "final.pt")
    assert main([str(run), "--episodes", "2", "--window", "5"]) == 0
    written = json.loads((run / "direction_inference.json").read_text())
    assert written["frames"] == 77 and set(written["directions"]) == {"1.0", "-1.0"}
    for d in written["directions"].values():
        assert len(d["returns"]) == 2 and (d["settling_step"] is None or 0 <= d["settling_step"] < 15)
        assert len(d["settling_steps"]) == len(d["mean_velocities"]) == 2
        assert d["settling_steps"][0] == d["settling_step"] and d["mean_velocities"][0] == d["mean_velocity_episode_1"]
        assert all(s is None or 0 <= s < 15 for s in d["settling_steps"])
