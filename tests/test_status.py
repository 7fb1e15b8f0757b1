"""The status board and stale runs (metadata says running, no live process holds the run)."""

import json
import subprocess
import sys

import pandas as pd

from analysis.load import is_live, load_results, run_state
from analysis.status import collect, main, render
from tests.test_analysis import GOOD, write_run


def test_a_run_whose_process_is_gone_is_stale(tmp_path):
    live = write_run(tmp_path, "gw", "alg", 0, GOOD, status="running")
    gone = write_run(tmp_path, "gw", "alg", 1, GOOD, status="running", live=False)
    assert is_live(live) and not is_live(gone)
    assert run_state(live, {"status": "running"}) == "running"
    assert run_state(gone, {"status": "running"}) == "stale"
    # a lock held by a process that then died (SIGKILL) is released by the OS: stale
    code = ("import sys, time; from algorithms.common.results import _acquire_lock; "
            f"h = _acquire_lock(__import__('pathlib').Path({str(gone)!r})); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    assert is_live(gone)
    proc.kill()
    proc.wait()
    assert not is_live(gone)
    res = load_results(tmp_path)
    assert res.eval.groupby("seed")["status"].first().to_dict() == {0: "running", 1: "stale"}
    assert any("stale" in note and "resumes it" in note for note in res.notes)


def _all_states(root):
    write_run(root, "gw", "alg", 0, GOOD, status="completed")
    write_run(root, "gw", "alg", 1, GOOD, status="running")
    write_run(root, "gw", "alg", 2, GOOD, status="running", live=False)
    failed = write_run(root, "gw", "alg", 3, GOOD, status="failed")
    preempted = write_run(root, "gw", "other", 0, GOOD, status="preempted")
    meta = json.loads((preempted / "metadata.json").read_text())
    meta.update(stop_signal="SIGINT", resumes=[{"time": "x"}, {"time": "y"}])
    (preempted / "metadata.json").write_text(json.dumps(meta))
    for run in root.glob("gw/*/*"):
        (run / "config.yaml").write_text("seed: 0\ntrain:\n  num_frames: 400\n")
        pd.DataFrame({"frames": [100, 200, 300], "iteration": [1, 2, 3], "wall_time": [10.0, 20.0, 30.0],
                      "fps": 10.0}).to_csv(run / "train_metrics.csv", index=False)
    return failed


def test_status_rows_for_runs_in_every_state(tmp_path):
    _all_states(tmp_path)
    table = collect(tmp_path)
    rows = {(r.label, r.seed): r for r in table.itertuples()}
    assert {k: r.state for k, r in rows.items()} == {
        ("alg", 0): "completed", ("alg", 1): "running", ("alg", 2): "stale", ("alg", 3): "failed",
        ("other", 0): "preempted"}
    running = rows[("alg", 1)]
    assert running.budget == 400 and running.fps == 10.0 and running.eta_s == (400 - 100) / 10.0  # frames: 100
    assert running.wall_s == 30.0 and running.last_meta_test == [2.0, 3.0] and running.eval_frames == 100
    assert pd.isna(rows[("alg", 2)].eta_s) and "resumes it" in rows[("alg", 2)].note
    assert rows[("alg", 3)].note == "RuntimeError: boom"
    assert rows[("other", 0)].resumes == 2 and "SIGINT" in rows[("other", 0)].note
    assert list(collect(tmp_path, labels=["other"])["label"]) == ["other"]


def test_status_cli_prints_the_board(tmp_path, capsys):
    _all_states(tmp_path)
    assert main(["--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for text in ("gw / alg", "gw / other", "stale", "preempted", "failed", "RuntimeError: boom", "100 / 400 (25%)",
                 "@100: 2.00 3.00", "5 runs"):
        assert text in out, text
    assert main(["--results", str(tmp_path / "missing")]) == 2
    assert render(collect(tmp_path / "gw" / "alg" / "run_seed0"), tmp_path) is not None


def test_the_curve_so_far_is_episode_1_over_evenly_spaced_complete_meta_tests(tmp_path):
    from analysis.status import SPARK_LEVELS, curve_so_far

    # success (write_run: return > 0) of two tasks in episode 1 rises 0 -> 50% -> 100% over 20 meta-tests
    returns = {100 * i: [[1.0 if i >= 10 else -1.0, 0.0], [1.0 if i >= 5 else -1.0, 0.0]] for i in range(20)}
    run = write_run(tmp_path, "gw", "alg", 0, returns)
    with open(run / "eval.csv", "a") as f:  # a meta-test still being written: one row of its two tasks
        f.write("run_seed0,2000,0,\"[0.0, 1.0]\",1,-1.0,False,\n")
    curve = curve_so_far(run, points=5)
    line, rest = curve.split(" ", 1)
    # meta-tests 0, 5, 10, 14, 19 of the 20 complete ones: 0%, 50%, 100%, 100%, 100%
    assert line == SPARK_LEVELS[0] + SPARK_LEVELS[4] + SPARK_LEVELS[-1] * 3
    assert rest == "(success 0-100%, 5 of 20 meta-tests)"
    # no success anywhere: the mean return, on the line's own scale (-1 is 2/3 of the way from -2 to -0.5)
    flat = write_run(tmp_path, "gw", "alg", 1, {0: [[-3.0], [-1.0]], 100: [[-1.0], [-1.0]], 200: [[-0.5], [-0.5]]})
    assert curve_so_far(flat) == f"{SPARK_LEVELS[0]}{SPARK_LEVELS[5]}{SPARK_LEVELS[-1]} (return -2 to -0.5, 3 of 3 " \
                                 "meta-tests)"
    assert curve_so_far(write_run(tmp_path, "gw", "alg", 2, None)) == ""  # no meta-test yet
    assert curve_so_far(tmp_path / "missing") == ""
