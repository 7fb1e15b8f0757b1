"""Per-direction (cheetah_dir) and task-agnostic-bound (cheetah_vel) tables, on small hand-made runs."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis.load import load_results
from analysis.publish import index_table, publish
from analysis.task_breakdown import breakdown_markdown, direction_table, task_agnostic_bound, velocity_table
from tests.test_analysis import write_run


def _with_tasks(run, tasks, returns_by_frames):
    """Rewrite ``run``'s eval.csv: ``returns_by_frames[frames][task][episode - 1]`` on the given task values."""
    rows = [{"run_id": run.name, "frames": frames, "task_id": t, "task": json.dumps([float(tasks[t])]),
             "episode": e + 1, "return": value, "success": False, "steps_to_success": np.nan}
            for frames, per_task in returns_by_frames.items() for t, values in enumerate(per_task)
            for e, value in enumerate(values)]
    pd.DataFrame(rows).to_csv(run / "eval.csv", index=False)
    return run


def _cheetah_dir_run(root, seed, forward, backward, extra_frames=()):
    """Two tasks (+1, -1); at frames 0, 100, 200, 300 (+ extra) episode e's return is ``forward[e] * frames / 100``
    on the forward task and ``backward[e] * frames / 100`` on the backward one."""
    frames = [0, 100, 200, 300, *extra_frames]
    returns = {f: [[v * f / 100 for v in forward], [v * f / 100 for v in backward]] for f in frames}
    run = write_run(root, "cheetah_dir", "varibad", seed, {f: [[0.0, 0.0]] * 2 for f in frames})
    return _with_tasks(run, [1.0, -1.0], returns)


def test_direction_table_averages_each_runs_last_common_meta_tests_per_direction(tmp_path):
    run0 = _cheetah_dir_run(tmp_path, 0, forward=[10.0, 20.0], backward=[-5.0, 30.0])
    # seed 1 has one more evaluation (400): the last three COMMON points are 100, 200, 300 for both
    _cheetah_dir_run(tmp_path, 1, forward=[30.0, 40.0], backward=[15.0, 10.0], extra_frames=(400,))
    (run0 / "direction_inference.json").write_text(json.dumps(
        {"directions": {"1.0": {"settling_step": 4}, "-1.0": {"settling_step": None}}}))
    table = direction_table(load_results(tmp_path), last=3, n_resamples=99).set_index("direction")
    # mean of frames 100, 200, 300 scales the per-100 value by 2; then the mean over the two seeds
    assert table.loc["forward (+1)", "ep 1"].startswith(f"{(10 * 2 + 30 * 2) / 2:.0f} ")
    assert table.loc["forward (+1)", "ep 2"].startswith(f"{(20 * 2 + 40 * 2) / 2:.0f} ")
    assert table.loc["backward (-1)", "ep 1"].startswith(f"{(-5 * 2 + 15 * 2) / 2:.0f} ")
    assert table.loc["backward (-1)", "ep 1, lowest seed"] == "-10"
    assert table.loc["forward (+1)", "meta-tests"] == "last 3 (100 to 300)"
    # only seed 0 has its analysis file: its steps are shown, "never" for a direction it never settles in
    assert table.loc["forward (+1)", "settling step, ep 1 (per seed)"] == "4"
    assert table.loc["backward (-1)", "settling step, ep 1 (per seed)"] == "never"
    # a file from before the per-episode lists has no episode-2 step: shown as not measured, not as "never"
    assert table.loc["forward (+1)", "settling step, ep 2 (per seed)"] == "-"


def test_direction_table_shows_each_episodes_settling_step(tmp_path):
    run = _cheetah_dir_run(tmp_path, 0, forward=[10.0, 20.0], backward=[-5.0, 30.0])
    (run / "direction_inference.json").write_text(json.dumps({"directions": {
        "1.0": {"settling_steps": [None, 3], "settling_step": None},
        "-1.0": {"settling_steps": [150, 0], "settling_step": 150}}}))
    table = direction_table(load_results(tmp_path), last=3, n_resamples=99).set_index("direction")
    assert table.loc["forward (+1)", "settling step, ep 1 (per seed)"] == "never"
    assert table.loc["forward (+1)", "settling step, ep 2 (per seed)"] == "3"
    assert table.loc["backward (-1)", "settling step, ep 1 (per seed)"] == "150"
    assert table.loc["backward (-1)", "settling step, ep 2 (per seed)"] == "0"


def test_task_agnostic_bound_is_the_median_runner_and_no_constant_velocity_beats_it():
    goals = np.array([0.2, 0.5, 1.7, 2.9])
    bound = task_agnostic_bound(goals, horizon=200)
    assert bound == pytest.approx(-200 * np.mean(np.abs(goals - np.median(goals))))
    for c in np.linspace(0.0, 3.0, 301):  # every constant velocity, without control cost, does no better
        assert -200 * np.mean(np.abs(goals - c)) <= bound + 1e-9
    # U(0, 3): E|g - 1.5| = 0.75
    assert task_agnostic_bound(np.linspace(0, 3, 300_001), 200) == pytest.approx(-150.0, abs=1e-3)


def test_velocity_table_compares_episode_1_with_the_bound_on_each_runs_own_targets(tmp_path):
    refs = {"cheetah_vel": {"horizon": 200}}
    targets = {0: [0.5, 1.0, 2.5], 1: [0.1, 2.0, 2.9]}
    bound = {s: task_agnostic_bound(np.array(t), 200) for s, t in targets.items()}
    # seed 0 above its bound in episode 1, seed 1 below
    ep1 = {0: bound[0] + 30.0, 1: bound[1] - 10.0}
    for seed in (0, 1):
        run = write_run(tmp_path, "cheetah_vel", "varibad", seed, {f: [[0.0, 0.0]] * 3 for f in (0, 100)})
        _with_tasks(run, targets[seed], {f: [[ep1[seed], -50.0]] * 3 for f in (0, 100)})
    table = velocity_table(load_results(tmp_path), refs, last=2, n_resamples=99).iloc[0]
    assert table["task-agnostic bound (same targets)"] == f"{(bound[0] + bound[1]) / 2:.1f}"
    assert table["seeds with ep 1 above it"] == "1 of 2"
    assert table["ep 1"].startswith(f"{(ep1[0] + ep1[1]) / 2:.1f} ")
    with pytest.raises(ValueError, match="reference file"):
        velocity_table(load_results(tmp_path), None)


def test_publish_ships_the_direction_analysis_and_the_index_shows_the_breakdown(tmp_path):
    run = _cheetah_dir_run(tmp_path / "results", 0, forward=[10.0, 20.0], backward=[5.0, 6.0])
    meta = json.loads((run / "metadata.json").read_text())
    meta.update(git_commit="0123456789abcdef")
    (run / "metadata.json").write_text(json.dumps(meta))
    (run / "direction_inference.json").write_text(json.dumps({"directions": {
        "1.0": {"settling_steps": [2, 0], "settling_step": 2},
        "-1.0": {"settling_steps": [7, 1], "settling_step": 7}}}))
    target = publish(run, tmp_path / "shipped")
    assert (target / "direction_inference.json").is_file()
    index = index_table(tmp_path / "shipped", n_resamples=99)
    assert "Per direction" in index
    backward = next(line for line in index.splitlines() if "backward (-1)" in line)
    assert [c.strip() for c in backward.split("|")[-3:-1]] == ["7", "1"]  # settling steps of episodes 1 and 2
    assert breakdown_markdown(load_results(tmp_path / "shipped"), None).keys() == {"cheetah_dir"}


def test_the_shipped_cheetah_vel_reference_is_the_bound_of_the_envs_own_task_distribution():
    from algorithms.references.cheetah_vel import OUT, compute_references
    from envs.registry import get_spec

    refs = compute_references(num_tasks=200_000, seed=1)
    assert refs["horizon"] == get_spec("cheetah_vel").horizon == 200
    bound = refs["K"]["10"]["task_agnostic_bound"][0]
    assert bound == pytest.approx(-150.0, abs=0.5)  # -H E|g - 1.5| for g ~ U(0, 3); MC error ~0.2
    shipped = json.loads(OUT.read_text())
    assert shipped["horizon"] == refs["horizon"]
    assert shipped["K"]["10"]["task_agnostic_bound"][0] == pytest.approx(bound, abs=0.5)
