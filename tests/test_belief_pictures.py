"""Belief pictures: the agent-side export writes a consistent trace; analysis draws it from the file alone."""

import subprocess
import sys
from pathlib import Path

import numpy as np

import train
from algorithms import builder
from envs.gridworld import ACTION_DELTAS
from tools.export_beliefs import export

REPO = Path(__file__).resolve().parents[1]


def test_export_then_draw(tmp_path):
    cfg = builder.compose_config(f"results_dir={tmp_path}", "train.num_frames=1920", "train.eval_interval_frames=1920",
                               "algo.precollect_frames=960", "eval.num_tasks=2", "eval.episodes=2", "progress=false")
    train.run(cfg)
    run = next((tmp_path / "gridworld" / "varibad").iterdir())
    path = export(run, goal=(2, 3), episodes=2)
    trace = np.load(path)
    T = 2 * 15
    assert trace["reward_prob"].shape == (T + 1, 5, 5) and trace["latent_mean"].shape == (T + 1, 5)
    assert ((trace["reward_prob"] >= 0) & (trace["reward_prob"] <= 1)).all()
    # the trace is a real rollout: replaying its actions from (0, 0) gives its positions and rewards
    pos = np.zeros(2, dtype=int)
    for t in range(T):
        if t % 15 == 0:
            pos[:] = 0
        pos = np.clip(pos + ACTION_DELTAS[trace["actions"][t]], 0, 4)
        np.testing.assert_array_equal(trace["positions"][t + 1], pos)
        assert trace["rewards"][t] == (1.0 if tuple(pos) == (2, 3) else np.float32(-0.1))
        assert trace["episode_index"][t] == t // 15
    out = tmp_path / "figs"
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from analysis.belief_pictures import main; "
            f"assert main([{str(run)!r}, '--out', {str(out)!r}]) == 0; "
            "leaked = [m for m in sys.modules if m.split('.')[0] in ('algorithms', 'envs', 'torch')]; "
            "assert not leaked, leaked")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [f"{run.name}_goal2_3_cells.png", f"{run.name}_goal2_3_latent.png"]


def test_comparison_rows_show_the_prior_episode_one_and_part_of_episode_two(tmp_path):
    from analysis.belief_pictures import comparison_steps, draw_comparison

    assert comparison_steps(15, 61) == [0, 2, 4, 6, 8, 10, 12, 14, 15, 18, 22, 26, 30]
    rng = np.random.default_rng(0)
    T = 30
    trace = {"reward_prob": rng.random((T + 1, 5, 5)), "positions": rng.integers(0, 5, (T + 1, 2)),
             "goal": np.array([3, 4]), "horizon": np.array(15), "frames": np.array(1000)}
    fig = draw_comparison([("all", trace), ("past", trace)], "test")
    assert len(fig.axes) == 2 * len(comparison_steps(15, T + 1))
    fig.savefig(tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 5_000


def test_latent_comparison_draws_mean_and_std_per_variant(tmp_path):
    from analysis.belief_pictures import draw_latent_comparison

    rng = np.random.default_rng(0)
    T = 30
    rewards = np.full(T, -0.1)
    rewards[7] = 1.0
    trace = {"latent_mean": rng.normal(size=(T + 1, 5)), "latent_logvar": rng.normal(size=(T + 1, 5)),
             "rewards": rewards, "horizon": np.array(15)}
    fig = draw_latent_comparison([("filtering", trace), ("fixed prior", trace), ("none", trace)], "test")
    assert len(fig.axes) == 3 * 2
    first_mean, first_std = fig.axes[0], fig.axes[1]
    assert len(first_mean.lines) == 5 + 3 and first_std.get_yscale() == "log"  # 5 dims, 2 episode ends, goal found
    assert [line.get_xdata()[0] for line in first_mean.lines[5:]] == [15, 30, 8]
    fig.savefig(tmp_path / "l.png")
    assert (tmp_path / "l.png").stat().st_size > 5_000
