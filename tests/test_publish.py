"""Publishing finished runs as shipped reference results, and reports that draw them next to the user's runs."""

import json
import subprocess
from pathlib import Path

import pytest

from analysis import report
from analysis.publish import (
    README_END,
    README_START,
    PublishError,
    index_table,
    publish,
    snapshot,
    summary_markdown,
    write_index,
)
from tests.test_analysis import GOOD, write_run


def _completed(root, seed, algo="alg", commit="0123456789abcdef"):
    run = write_run(root, "gw", algo, seed, GOOD)
    meta = json.loads((run / "metadata.json").read_text())
    meta.update(git_commit=commit, label=algo, wall_time_s=60.0 * (seed + 1))
    (run / "metadata.json").write_text(json.dumps(meta))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "latest.pt").write_bytes(b"x" * 10)
    return run


def test_publish_copies_a_completed_clean_run_without_checkpoints_and_never_overwrites(tmp_path):
    runs, shipped = tmp_path / "results", tmp_path / "shipped"
    run = _completed(runs, 0)
    target = publish(run, shipped)
    assert target == shipped / "gw" / "alg" / "run_seed0"
    assert sorted(p.name for p in target.iterdir()) == ["config.yaml", "eval.csv", "metadata.json",
                                                         "train_metrics.csv"]
    meta = json.loads((target / "metadata.json").read_text())
    assert meta["published"]["source"] == str(run) and meta["published"]["machine"]["cpus"] >= 1
    with pytest.raises(PublishError, match="already published"):
        publish(run, shipped)
    with pytest.raises(PublishError, match="only completed runs"):
        publish(write_run(runs, "gw", "alg", 5, GOOD, status="running"), shipped)
    with pytest.raises(PublishError, match="uncommitted changes"):
        publish(_completed(runs, 6, commit="abc-dirty"), shipped)
    no_training = _completed(runs, 7)  # a 0-frame run (exact posterior sampling) writes no train_metrics.csv
    (no_training / "train_metrics.csv").unlink()
    other = tmp_path / "shipped_elsewhere"
    assert sorted(p.name for p in publish(no_training, other).iterdir()) == ["config.yaml", "eval.csv",
                                                                             "metadata.json"]
    broken = _completed(runs, 8)
    (broken / "eval.csv").unlink()
    with pytest.raises(PublishError, match=r"missing eval\.csv"):
        publish(broken, other)
    index = index_table(shipped, n_resamples=99)
    row = next(line for line in index.splitlines() if line.startswith("| alg "))
    assert "## gw" in index and "01234567" in row and "1 min" in row and "2.00" in row


def test_report_draws_shipped_runs_alone_and_next_to_the_users(tmp_path):
    shipped, users, out = tmp_path / "shipped", tmp_path / "results", tmp_path / "report"
    for seed in (0, 1):
        publish(_completed(tmp_path / "produced", seed), shipped)
    # a fresh clone: no results of the user's own
    assert report.main(["--results", str(users), "--shipped", str(shipped), "--out", str(out),
                        "--n-resamples", "99"]) == 0
    table = (out / "gw_per_episode.md").read_text()
    assert "alg (shipped)" in table and (out / "gw_per_episode.png").stat().st_size > 10_000
    assert not (shipped / "README.md").exists()  # only publishing writes the shipped folder's index
    assert (out / "shipped_results.md").read_text().startswith("# Shipped reference results")
    # with a run of the user's own: both, labelled apart
    write_run(users, "gw", "alg", 0, {0: [[0.0, 0.0], [0.0, 0.0]], 100: [[9.0, 9.0], [9.0, 9.0]]})
    assert report.main(["--results", str(users), "--shipped", str(shipped), "--out", str(out),
                        "--n-resamples", "99"]) == 0
    table = (out / "gw_per_episode.md").read_text()
    rows = {line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| alg ")}
    assert rows == {"alg", "alg (shipped)"}
    assert "shipped reference runs" in (out / "index.md").read_text()
    # and without them when asked
    assert report.main(["--results", str(users), "--no-shipped", "--out", str(tmp_path / "r2"),
                        "--n-resamples", "99"]) == 0
    assert "(shipped)" not in (tmp_path / "r2" / "gw_per_episode.md").read_text()


def test_make_report_leaves_the_tracked_files_unchanged(tmp_path):
    """The repository's own shipped runs and README: ``make report`` reads them, never writes them."""
    repo = Path(__file__).resolve().parents[1]

    def tracked_state() -> str:
        return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", "README.md",
                               "benchmarks/results"], cwd=repo, capture_output=True, text=True, check=True).stdout

    before = tracked_state()
    stamps = {p: p.stat().st_mtime_ns for p in [repo / "README.md", *(repo / "benchmarks/results").rglob("*.md")]}
    users = tmp_path / "results"
    write_run(users, "gridworld", "alg", 0, {0: [[0.0] * 6], 100: [[9.0] * 6]})
    assert report.main(["--results", str(users), "--out", str(tmp_path / "report"), "--shipped",
                        str(repo / "benchmarks" / "results"),
                        "--n-resamples", "99"]) == 0
    assert tracked_state() == before
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (tmp_path / "report" / "shipped_results.md").is_file()


def test_the_readme_block_of_shipped_results_is_generated(tmp_path):
    shipped, readme = tmp_path / "shipped", tmp_path / "README.md"
    for seed in (0, 1):
        publish(_completed(tmp_path / "produced", seed), shipped)
    readme.write_text(f"# Title\n\nBefore.\n\n{README_START}\nold, typed table\n{README_END}\n\nAfter.\n")
    write_index(shipped, n_resamples=99, readme=readme)
    text = readme.read_text()
    assert text.startswith("# Title\n\nBefore.\n\n") and text.endswith(f"{README_END}\n\nAfter.\n")
    block = text.split(README_START)[1].split(README_END)[0]
    assert "old, typed table" not in block and "| gw " in block and "| alg " in block and "docs/results.md" in block
    ours = next(line for line in block.splitlines() if line.startswith("| gw "))
    assert [c.strip() for c in ours.split("|")[3:4]] == ["2"]  # n = 2 seeds, said once
    from analysis.publish import README

    before = README.read_text()
    write_index(shipped, n_resamples=99)  # without readme=: the repository README is not touched
    assert README.read_text() == before
    untouched = tmp_path / "OTHER.md"
    untouched.write_text("no markers here\n")
    write_index(shipped, n_resamples=99, readme=untouched)
    assert untouched.read_text() == "no markers here\n"


def test_the_index_of_an_ml1_env_has_the_papers_table_1_layout(tmp_path):
    # write_run: success = return > 0; 2 test tasks x 10 episodes, half solved in episode 1
    run = write_run(tmp_path / "results", "ml1_reach", "varibad", 0, {500: [[1.0] * 10, [-1.0] * 10]})
    meta = json.loads((run / "metadata.json").read_text())
    meta.update(git_commit="0123456789abcdef")
    (run / "metadata.json").write_text(json.dumps(meta))
    publish(run, tmp_path / "shipped")
    index = index_table(tmp_path / "shipped", n_resamples=99)
    assert "the paper's table 1 layout" in index
    ours = next(line for line in index.splitlines() if line.startswith("| varibad") and "| 1/1 " in line)
    assert [c.strip() for c in ours.split("|")[2:3] + ours.split("|")[5:7]] == ["1", "50 [n/a]", "50 [n/a]"]
    paper = next(line for line in index.splitlines() if line.startswith("| paper: variBAD"))
    assert [c.strip() for c in paper.split("|")[5:7]] == ["100", "100"]


def test_the_index_lists_progress_snapshots_apart_with_their_frames_and_last_meta_tests(tmp_path):
    runs, shipped = tmp_path / "results", tmp_path / "shipped"
    publish(_completed(runs, 0), shipped)
    # a run at 200 of its 1,000 frames, three meta-tests so far: the last three's episode-1 mean is (1 + 2 + 4) / 3
    going = write_run(runs, "gw", "alg", 1, {0: [[-1.0, -1.0]], 100: [[1.0, 1.0]], 150: [[2.0, 2.0]],
                                             200: [[4.0, 5.0]]}, status="running")
    (going / "config.yaml").write_text("seed: 1\ntrain:\n  num_frames: 1000\n")
    snapshot(going, shipped)
    index = index_table(shipped, n_resamples=99)
    tables, progress = index.split("## In progress")
    assert "| alg " in tables and "run_seed1" not in tables  # the completed run alone in the tables
    (row,) = [line for line in progress.splitlines() if line.startswith("| gw ")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:3] == ["gw", "alg", "1"] and cells[3] == "200 of 1k" and cells[5] == "100 to 200"
    assert cells[6] == "2.33 (100%)" and cells[7] == "2.67 (100%)"
    assert "In progress" in summary_markdown(shipped, n_resamples=99).split("| alg ")[-1]  # the README's line,
    assert "gw `alg` (seed 1: 200 of 1k)" in summary_markdown(shipped, n_resamples=99)  # below its table
    publish(_completed(runs, 2), tmp_path / "completed_only")
    assert "In progress" not in index_table(tmp_path / "completed_only", n_resamples=99)  # no snapshot, no section


def test_a_run_started_again_supersedes_the_snapshot_of_its_lost_attempt(tmp_path):
    """A machine lost mid-run leaves a snapshot of the attempt; the seed's new run replaces it, snapshot or done."""
    runs, shipped = tmp_path / "results", tmp_path / "shipped"
    lost = write_run(runs, "gw", "alg", 1, {0: [[1.0, 1.0]], 300: [[2.0, 2.0]]}, status="running", run_id="a_seed1")
    other_seed = write_run(runs, "gw", "alg", 2, {0: [[1.0, 1.0]]}, status="running", run_id="a_seed2")
    snapshot(lost, shipped)
    snapshot(other_seed, shipped)
    again = write_run(runs, "gw", "alg", 1, {0: [[1.0, 1.0]]}, status="running", run_id="b_seed1")
    snapshot(again, shipped)
    assert sorted(p.name for p in (shipped / "gw" / "alg").iterdir()) == ["a_seed2", "b_seed1"]
    done = _completed(runs, 1)
    publish(done, shipped)
    assert sorted(p.name for p in (shipped / "gw" / "alg").iterdir()) == ["a_seed2", "run_seed1"]
    # a completed run is never removed: a snapshot of another run of its seed sits beside it
    snapshot(write_run(runs, "gw", "alg", 1, {0: [[1.0, 1.0]]}, status="running", run_id="c_seed1"), shipped)
    assert sorted(p.name for p in (shipped / "gw" / "alg").iterdir()) == ["a_seed2", "c_seed1", "run_seed1"]


def test_a_publish_that_publishes_nothing_says_why_and_leaves_the_index_alone(tmp_path, capsys):
    from analysis.publish import main

    dest = tmp_path / "shipped"
    assert main([str(tmp_path / "no_such_run"), "--dest", str(dest), "--n-resamples", "99"]) == 1
    assert "metadata.json missing" in capsys.readouterr().err and not dest.exists()
    run = _completed(tmp_path / "results", 0)
    assert main([str(run), str(tmp_path / "no_such_run"), "--dest", str(dest), "--n-resamples", "99"]) == 1
    assert (dest / "README.md").is_file()  # one of the two published: the index is rewritten
