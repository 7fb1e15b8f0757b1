"""`make reproduce`: manifests, and a campaign that is killed, resumed at its own commit, published and reported."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis.load import IN_PROGRESS_SUFFIX, load_results
from launch.manifest import Manifest, ManifestError, RunSpec, load_manifest, manifest_names
from launch.reproduce import longest_first, open_campaign, start_niced_session, train_overrides
from launch.run_status import RunStatus, print_plan, published_commit
from tests.helpers import compose_config

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", manifest_names())
def test_every_shipped_manifest_names_runs_that_compose(name, tmp_path):
    manifest = load_manifest(name)
    assert manifest.runs
    for spec in manifest.runs:
        overrides = [o for o in train_overrides(spec, manifest, tmp_path) if not o.startswith("results_dir=")]
        cfg = compose_config(*overrides)  # Hydra rejects a misspelt key or group
        assert cfg.env.name == spec.env and cfg.label == spec.label


def test_the_required_manifests_exist():
    assert {"gridworld", "gridworld-ablations", "pointrobot", "cheetah_dir", "ml1"} <= set(manifest_names())
    pointrobot = load_manifest("pointrobot")
    assert pointrobot.final_episodes == 30
    varibad = [r for r in pointrobot.runs if r.algo == "varibad"]
    assert [r.seed for r in varibad] == [0, 1, 2]
    # runs meta-tested under different protocols are in different panels
    assert {r.panel for r in pointrobot.runs if r.algo == "pearl"} != {r.panel for r in varibad}


def test_a_belief_picture_must_name_gridworld_runs_of_the_manifest(tmp_path):
    path = tmp_path / "beliefs.yaml"
    runs = [{"label": "a", "algo": "varibad", "env": "gridworld", "seeds": [0, 1]}]
    path.write_text(yaml.safe_dump({"runs": runs, "beliefs": [{"name": "b", "labels": ["a"], "seed": 2}]}))
    with pytest.raises(ManifestError, match=r"beliefs\[0\]: no GridWorld run 'a' with seed 2"):
        load_manifest(path)
    path.write_text(yaml.safe_dump({"runs": runs, "beliefs": [{"labels": ["a"], "seed": 0}]}))
    with pytest.raises(ManifestError, match="needs name, labels and seed"):
        load_manifest(path)
    path.write_text(yaml.safe_dump({"runs": runs, "beliefs": [{"name": "b", "labels": ["a"], "seed": 1,
                                                                "kind": "heatmap"}]}))
    with pytest.raises(ManifestError, match=r"kind must be cells .* or latent"):
        load_manifest(path)
    path.write_text(yaml.safe_dump({"runs": runs, "beliefs": [{"name": "b", "labels": ["a"], "seed": 1,
                                                                "kind": "latent"}]}))
    assert load_manifest(path).data["beliefs"][0]["seed"] == 1


def test_a_bad_manifest_is_refused_with_its_reason(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"runs": [{"label": "x", "algo": "varibad", "env": "gridworld", "seeds": "0"}]}))
    with pytest.raises(ManifestError, match="seeds must be a list"):
        load_manifest(path)
    with pytest.raises(ManifestError, match=r"no manifest 'nope'; the figures are: .*pointrobot"):
        load_manifest("nope")
    runs = [{"label": "x", "algo": "varibad", "env": "gridworld", "seeds": [0], "panel": "p"}]
    path.write_text(yaml.safe_dump({"runs": runs, "panels": {"p": {"title": "t", "pooled": [1, 2]}}}))
    with pytest.raises(ManifestError, match=r"panels\.p must be a mapping of include, pooled_episodes, protocol"):
        load_manifest(path)


def test_a_claim_must_name_labels_of_the_manifest_and_known_keys(tmp_path):
    path = tmp_path / "claims.yaml"
    runs = [{"label": "a", "algo": "varibad", "env": "gridworld", "seeds": [0]}]
    path.write_text(yaml.safe_dump({"runs": runs, "claims": [{"text": "t", "label": "a", "better_than": "b"}]}))
    with pytest.raises(ManifestError, match=r"claims\[0\]: better_than 'b' is not a label of the manifest's runs"):
        load_manifest(path)
    path.write_text(yaml.safe_dump({"runs": runs, "claims": [{"text": "t", "label": "a", "at_lest": 1}]}))
    with pytest.raises(ManifestError, match=r"claims\[0\]: unknown key\(s\) at_lest"):
        load_manifest(path)


def test_per_seed_table_shows_the_arc_of_goals_a_seed_finds(tmp_path):
    """PointRobot: goals on the semicircle; a seed that finds the goals at 0-90 degrees in episode 1 and none beyond
    searches a quarter circle, one that finds them all the whole arc."""
    import math

    from analysis.seed_report import found_arcs, per_seed_table

    rows = []
    for seed, reach in ((0, 90.0), (1, 180.0)):
        for frames in (1, 2, 3):
            for degrees in range(5, 180, 10):
                task = f"[{math.cos(math.radians(degrees)):.5f}, {math.sin(math.radians(degrees)):.5f}]"
                for episode in (1, 2):
                    found = degrees < reach or episode == 2
                    rows.append({"algo": "v", "env": "pointrobot_sparse", "seed": seed, "frames": frames,
                                 "episode": episode, "task": task, "return": 50.0 * found, "success": found})
    ev = pd.DataFrame(rows)
    first = ev[(ev["seed"] == 0) & (ev["episode"] == 1)]
    assert found_arcs(first, 12) == "0-90°" and found_arcs(first, 6) == "0-90°"
    assert found_arcs(first.assign(success=False), 12) == "none (bins of 15°)"
    table, summary = per_seed_table({"label": "v", "episodes": [1], "goal_angle_bins": 12}, ev, None)
    assert list(table["ep 1 finds goals at"]) == ["0-90°", "0-180°"] and list(table["ep 1 success"]) == ["50%", "100%"]
    assert "pattern" not in table and summary.startswith("Each seed's mean over its last 3 meta-tests")
    assert list(table.columns[:3]) == ["seed", "frames", "ep 1"]
    # no reference pattern: the entropy figure draws every seed alike
    from analysis.seed_report import plot_seed_entropy

    train = pd.DataFrame({"algo": "v", "seed": [0, 0, 1, 1], "frames": [1, 2, 1, 2], "ppo/entropy": [1.0, 0.5] * 2})
    assert plot_seed_entropy(train, table, "t", tmp_path / "e.png") and (tmp_path / "e.png").is_file()


def test_a_per_seed_entry_must_name_a_label_of_the_manifest(tmp_path):
    path = tmp_path / "p.yaml"
    runs = [{"label": "a", "algo": "varibad", "env": "gridworld", "seeds": [0]}]
    path.write_text(yaml.safe_dump({"runs": runs, "per_seed": [{"label": "b"}]}))
    with pytest.raises(ManifestError, match=r"per_seed\[0\]: label 'b' is not a label of the manifest's runs"):
        load_manifest(path)
    path.write_text(yaml.safe_dump({"runs": runs, "per_seed": [{"label": "a", "bins": 3}]}))
    with pytest.raises(ManifestError, match=r"per_seed\[0\]: unknown key\(s\) bins"):
        load_manifest(path)


def _claim_rows(label: str, per_seed: list[float], episodes: int = 4) -> list[dict]:
    """Eval rows of one label: per seed, three meta-tests whose every episode returns the seed's value."""
    return [{"algo": label, "env": "gridworld", "run_id": f"{label}{seed}", "seed": seed, "frames": frames,
             "episode": episode, "return": value}
            for seed, value in enumerate(per_seed) for frames in (1, 2, 3) for episode in range(1, episodes + 1)]


def test_claims_between_variants_hold_only_where_the_seeds_show_them():
    from analysis.claims import check_claim

    ev = pd.DataFrame(_claim_rows("main", [10.4, 10.4, 10.4, 10.6, 10.4, 7.9, 10.4, 10.4])
                      + _claim_rows("worse", [6.0, 5.5, 7.0]) + _claim_rows("close", [9.9, 10.4, 10.0])
                      + _claim_rows("tie", [10.4, 10.4, 10.4]))
    worse = {"text": "t", "label": "main", "episodes": [1, 2, 3, 4], "better_than": "worse"}
    measured, verdict = check_claim(worse, ev)
    assert verdict == "holds" and "Mann-Whitney U p = " in measured and "episodes 1-4 (mean)" in measured
    assert check_claim({**worse, "better_than": "close"}, ev)[1] == "not shown at 8 vs 3 seeds"
    assert check_claim({**worse, "better_than": "tie"}, ev)[1] == "does not hold"  # equal is not better
    near = {"text": "t", "label": "close", "episodes": [1, 2, 3, 4], "near_label": "main", "tolerance": 0.1}
    assert check_claim(near, ev)[1] == "holds"
    assert check_claim({**near, "label": "worse"}, ev)[1] == "does not hold"


def test_a_claim_on_the_final_meta_test_reads_each_seeds_final_rollout_relative_to_its_own_early_episodes():
    from analysis.claims import check_claim

    def final_rows(label: str, per_seed: list[tuple[float, float]]) -> list[dict]:
        # 30 episodes: episodes 2-3 return `early`, episodes 21-30 `late`, the rest 0 (never read); run ids sort in
        # the reverse of seed order (the report lists seeds in seed order)
        return [{"algo": label, "env": "pointrobot_sparse", "run_id": f"{label}{9 - seed}", "seed": seed, "frames": 5,
                 "episode": episode, "return": early if episode in (2, 3) else late if episode > 20 else 0.0}
                for seed, (early, late) in enumerate(per_seed) for episode in range(1, 31)]

    final = pd.DataFrame(final_rows("steady", [(90.0, 88.0), (80.0, 78.0), (85.0, 84.0)])
                         + final_rows("fading", [(90.0, 60.0), (88.0, 70.0), (86.0, 50.0)]))
    training = pd.DataFrame(_claim_rows("steady", [1.0, 1.0, 1.0], episodes=5))  # never read by a final claim
    stable = {"text": "t", "label": "steady", "meta_test": "final", "episodes": list(range(21, 31)),
              "relative_to": [2, 3], "at_least": 0.9}
    measured, verdict = check_claim(stable, training, final)
    assert verdict == "holds" and "of the final meta-test" in measured and "relative to episodes 2-3" in measured
    assert ": 0.98 (mean over 3 seeds of the final meta-test" in measured  # (88/90 + 78/80 + 84/85) / 3
    assert "per seed 0: 0.978, 1: 0.975, 2: 0.988)" in measured
    assert check_claim({**stable, "label": "fading"}, training, final)[1] == "does not hold"
    steadier = {**stable, "better_than": "fading"}
    del steadier["at_least"]
    measured, verdict = check_claim(steadier, training, final)
    assert verdict == "not shown at 3 vs 3 seeds" and "p = 0.05" in measured  # 3 vs 3 seeds: p never below 0.05
    assert check_claim({**steadier, "label": "fading", "better_than": "steady"}, training, final)[1] == "does not hold"
    assert check_claim(stable, training, None) == ("steady: no runs with a final meta-test", "no data")


def test_a_rise_over_the_episodes_must_be_strict():
    from analysis.claims import check_claim

    def final_rows(label: str, first: float, late: float) -> list[dict]:
        # one seed's 30-episode final meta-test: episode 6 succeeds `first`, episodes 21-30 `late`
        return [{"algo": label, "env": "pointrobot_sparse", "run_id": label, "seed": 0, "frames": 5, "episode": e,
                 "success": first if e == 6 else late if e > 20 else 0.0} for e in range(1, 31)]

    final = pd.DataFrame(final_rows("rising", 0.4, 0.9) + final_rows("flat", 0.9, 0.9)
                         + final_rows("falling", 0.9, 0.5))
    rise = {"text": "t", "label": "rising", "metric": "success", "meta_test": "final",
            "episodes": list(range(21, 31)), "above_episode": 6}
    measured, verdict = check_claim(rise, final.iloc[0:0], final)
    assert verdict == "holds" and measured.endswith("; episode 6: 40.0%")
    assert check_claim({**rise, "label": "flat"}, final.iloc[0:0], final)[1] == "does not hold"  # equal is no rise
    assert check_claim({**rise, "label": "falling"}, final.iloc[0:0], final)[1] == "does not hold"


def test_a_claim_on_the_final_meta_test_needs_one_in_the_manifest(tmp_path):
    path = tmp_path / "p.yaml"
    runs = [{"label": "a", "algo": "varibad", "env": "gridworld", "seeds": [0]}]
    claim = {"text": "t", "label": "a", "meta_test": "final", "episodes": [5, 6], "at_least": 1.0}
    path.write_text(yaml.safe_dump({"runs": runs, "claims": [claim]}))
    with pytest.raises(ManifestError, match=r"claims\[0\]: meta_test: final needs final_meta_test_episodes"):
        load_manifest(path)
    path.write_text(yaml.safe_dump({"runs": runs, "claims": [{**claim, "meta_test": "last"}]}))
    with pytest.raises(ManifestError, match=r"claims\[0\]: meta_test must be training .* or final"):
        load_manifest(path)
    path.write_text(yaml.safe_dump({"runs": runs, "final_meta_test_episodes": 6, "claims": [claim]}))
    assert load_manifest(path).final_episodes == 6


# ------------------------------------------------------------------------------------------- a whole campaign
TINY_MANIFEST = {
    "title": "tiny",
    "checkpoint_interval_frames": 1920,
    "final_meta_test_episodes": 7,
    "panels": {"main": {"title": "GridWorld, tiny"}},
    "runs": [{"label": "tiny", "algo": "varibad", "env": "gridworld", "seeds": [0, 1], "panel": "main",
              "overrides": ["train.num_frames=28800", "train.eval_interval_frames=9600",
                            "train.log_interval_iterations=1", "algo.precollect_frames=960", "eval.episodes=2",
                            "eval.num_tasks=4"]}],
    "claims": [{"text": "episode 2 no worse than episode 1", "label": "tiny", "metric": "return", "episode": 2,
                "at_least_episode": 1},
               {"text": "a probability of the tiny decoder", "label": "tiny", "belief": "beliefs",
                "holds_if": ["unseen <= 1"]}],
    "beliefs": [{"name": "beliefs", "title": "tiny beliefs", "labels": ["tiny"], "seed": 0, "episodes": 2}],
}


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True, env=env).stdout.strip()


def _copy_of_this_repository(dest: Path) -> Path:
    """The working tree's files (tracked and untracked, not ignored; shipped results left out) as a fresh git repo."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.splitlines()
    for name in listed:
        if name.startswith("benchmarks/results/") or not (REPO / name).is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    _git(dest, "init", "-q")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-qm", "campaign commit")
    return dest


def _reproduce(repo: Path, manifest: Path, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "launch.reproduce", str(manifest), "--results", str(repo / "results"),
               "--shipped", str(repo / "shipped"), "--jobs", "2", "--n-resamples", "200", *extra]
    env = {**os.environ, "WANDB_MODE": "disabled", "METARL_SHIPPED_RESULTS": str(repo / "shipped")}
    return subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=timeout, env=env)


def _kill_everything_of(marker: str) -> None:
    subprocess.run(["pkill", "-KILL", "-f", marker], check=False)
    deadline = time.time() + 30
    while time.time() < deadline and subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0:
        time.sleep(0.2)


def start_and_kill(repo: Path, manifest: Path, ready: Callable[[], bool], what: str, jobs: int = 2) -> None:
    """Start the campaign of ``manifest`` in ``repo`` (results in ``repo/results``, shipped runs in
    ``repo/shipped``), and SIGKILL it and its runs as soon as ``ready()`` (``what`` it waits for)."""
    results = repo / "results"
    command = [sys.executable, "-m", "launch.reproduce", str(manifest), "--results", str(results), "--shipped",
               str(repo / "shipped"), "--jobs", str(jobs)]
    env = {**os.environ, "WANDB_MODE": "disabled", "METARL_SHIPPED_RESULTS": str(repo / "shipped")}
    tool = subprocess.Popen(command, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while time.time() < deadline:
        if ready():
            break
        assert tool.poll() is None, f"the campaign ended before {what}"
        time.sleep(0.1)
    else:
        pytest.fail(f"not within 300 s: {what}")
    tool.send_signal(signal.SIGKILL)
    tool.wait()
    _kill_everything_of(str(results))


def test_a_campaign_whose_folder_is_lost_goes_on_at_the_commit_of_its_published_runs(tmp_path, capsys):
    """A new machine has the shipped runs but no ``results/``: the rest of the figure must not run main's HEAD."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "train.py").write_text("# the campaign's code\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "the commit of the published run")
    first = _git(repo, "rev-parse", "HEAD")
    (repo / "train.py").write_text("# main moved on\n")
    _git(repo, "commit", "-qam", "main moves on")
    specs = [RunSpec("v", "varibad", "gridworld", seed, (), "main") for seed in (0, 1)]
    manifest = Manifest("tiny", repo / "tiny.yaml", {"title": "tiny"}, specs)
    found = [RunStatus(specs[0], "published", commit=first), RunStatus(specs[1], "missing")]

    print_plan(manifest, found, None)
    assert f"the first call pins {first[:10]}, the commit of its published runs" in capsys.readouterr().out
    assert published_commit(found) == first
    campaign = open_campaign(manifest, tmp_path / "results", repo=repo, published=published_commit(found))
    assert campaign is not None and campaign.commit == first
    assert (campaign.code / "train.py").read_text() == "# the campaign's code\n"
    # pinned once: a later call keeps it, whatever is published meanwhile
    assert open_campaign(manifest, tmp_path / "results", repo=repo, published=None).commit == first
    # nothing published: HEAD, as before
    assert open_campaign(manifest, tmp_path / "other", repo=repo).commit == _git(repo, "rev-parse", "HEAD")

    head = _git(repo, "rev-parse", "HEAD")
    # the seeds of a label still to finish from two commits: nothing tells which one the campaign ran
    third = RunSpec("v", "varibad", "gridworld", 2, (), "main")
    mixed = [*found[:1], RunStatus(specs[1], "published", commit=head), RunStatus(third, "missing")]
    with pytest.raises(ManifestError, match=r"the runs of v, still to finish, come from 2 commits"):
        published_commit(mixed)
    with pytest.raises(ManifestError, match="which this clone does not have"):
        open_campaign(manifest, tmp_path / "third", repo=repo, published="0" * 40)


def test_a_figure_that_reuses_complete_labels_of_other_commits_runs_its_missing_labels_at_head(capsys):
    """The GridWorld figure takes its VariBAD seeds from the ablations' campaign and its exact posterior sampling
    from an older commit: its other labels run at the commit of the first call, each label at one commit."""
    def spec(label: str, seed: int) -> RunSpec:
        return RunSpec(label, "varibad", "gridworld", seed, (), "main")

    found = [RunStatus(spec("varibad", 0), "published", commit="a" * 40),
             RunStatus(spec("varibad", 1), "published", commit="a" * 40),
             RunStatus(spec("exact", 0), "published", commit="b" * 40),
             RunStatus(spec("rl2", 0), "missing"), RunStatus(spec("rl2", 1), "missing")]
    assert published_commit(found) is None
    manifest = Manifest("tiny", Path("tiny.yaml"), {"title": "tiny"}, [s.spec for s in found])
    print_plan(manifest, found, None)
    captured = capsys.readouterr()
    assert "pins HEAD; its published runs keep their commits, aaaaaaaaaa, bbbbbbbbbb" in captured.out
    assert "warning" not in captured.err
    # a label with seeds still to run goes on at the commit of its published seeds, whatever the other labels ran
    found[4] = RunStatus(spec("rl2", 1), "published", commit="c" * 40)
    assert published_commit(found) == "c" * 40
    # every published run at one commit: that is the figure's commit, for its labels not started yet too
    assert published_commit([found[0], found[1], found[3]]) == "a" * 40


@pytest.mark.slow
def test_a_campaign_survives_sigkill_resumes_at_its_commit_publishes_and_reports(tmp_path):
    repo = _copy_of_this_repository(tmp_path / "repo")
    manifest = repo / "tiny.yaml"
    manifest.write_text(yaml.safe_dump(TINY_MANIFEST))
    pinned = _git(repo, "rev-parse", "HEAD")
    results = repo / "results"

    # 1. start, and kill everything (the tool and both runs) once both runs have a checkpoint
    runs_dir = results / "gridworld" / "tiny"
    start_and_kill(repo, manifest, lambda: len(list(runs_dir.glob("*/checkpoints/latest.pt"))) == 2,
                   "both runs have a checkpoint")
    metas = [json.loads((run / "metadata.json").read_text()) for run in sorted(runs_dir.iterdir())]
    assert [m["status"] for m in metas] == ["running", "running"]  # killed: no chance to say anything
    assert all(m["frames"] < 28800 for m in metas)

    # 2. the plan: both stopped, frames done, hours left; nothing is started
    plan = _reproduce(repo, manifest, "--plan")
    assert plan.returncode == 0, plan.stderr
    lines = [line for line in plan.stdout.splitlines() if " gridworld " in line]
    assert len(lines) == 2 and all(" stopped " in line for line in lines), plan.stdout
    assert "hours left" in plan.stdout and pinned[:10] in plan.stdout
    assert all(m["status"] == "running" for m in
               (json.loads((run / "metadata.json").read_text()) for run in runs_dir.iterdir()))

    # 3. a progress snapshot is published, shown in progress, and left out of the index
    snap = _reproduce(repo, manifest, "--snapshot")
    assert snap.returncode == 0, snap.stderr
    shipped = load_results(repo / "shipped")
    assert set(shipped.runs["algo"]) == {"tiny" + IN_PROGRESS_SUFFIX}
    index = (repo / "shipped" / "README.md").read_text()
    assert "No published runs yet" in index  # the index's tables: completed runs only
    assert "## In progress" in index and len([line for line in index.splitlines() if "| tiny " in line]) == 2

    # 4. main moves on; the same command resumes both runs at the campaign's commit and completes them
    (repo / "README.md").write_text((repo / "README.md").read_text() + "\nmoved on\n")
    _git(repo, "commit", "-qam", "main moves on")
    assert _git(repo, "rev-parse", "HEAD") != pinned
    second = _reproduce(repo, manifest)
    assert second.returncode == 0, second.stdout + second.stderr
    runs = sorted(runs_dir.iterdir())
    assert len(runs) == 2  # resumed in place, no new run folders
    for run in runs:
        meta = json.loads((run / "metadata.json").read_text())
        assert meta["status"] == "completed" and meta["frames"] == 28800
        assert meta["git_commit"] == pinned
        assert "resuming" in (results / "reproduce" / "tiny" / "logs" /
                              f"gridworld_tiny_seed{meta['seed']}.log").read_text()
    # each run is published as it completes, not once the whole campaign has
    events = [line.split()[1] for line in second.stdout.splitlines()
              if line.startswith("[reproduce] ") and line.split()[1] in ("published", "tiny")]
    assert events == ["tiny", "published", "tiny", "published"], second.stdout

    # 5. a third call starts nothing, finds both published (the snapshot replaced), and writes the report
    third = _reproduce(repo, manifest)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "[reproduce] start" not in third.stdout
    published = sorted((repo / "shipped" / "gridworld" / "tiny").iterdir())
    assert len(published) == 2
    for run in published:
        meta = json.loads((run / "metadata.json").read_text())
        assert meta["status"] == "completed" and "snapshot" not in meta and meta["git_commit"] == pinned
        assert (run / "final_eval.csv").is_file()
    assert set(load_results(repo / "shipped").runs["algo"]) == {"tiny"}
    report = results / "reproduce" / "tiny" / "report"
    assert (report / "tiny_main_per_episode.png").stat().st_size > 10_000
    text = (report / "report.md").read_text()
    assert "ep 7" in text and "episode 2 no worse than episode 1" in text
    # the belief picture's trace was exported when seed 0 completed, published with it, and drawn from it
    traces = {run.name: sorted(p.name for p in run.glob("beliefs_goal*.npz")) for run in published}
    assert sorted(traces.values()) == [[], ["beliefs_goal3_4.npz"]]
    assert (report / "tiny_beliefs.png").stat().st_size > 10_000 and "![belief along one rollout]" in text
    # and the numbers the belief claims read: a probability is at most 1
    assert "tiny, seed 0, one rollout to the goal (3, 4): unseen <= 1 (unseen = " in text
    assert "goal entered at step" in text and "no belief trace" not in text


@pytest.mark.slow
def test_stop_halts_a_campaign_running_in_the_background_and_every_run_checkpoints(tmp_path):
    repo = _copy_of_this_repository(tmp_path / "repo")
    manifest = repo / "tiny.yaml"
    long = {**TINY_MANIFEST, "runs": [{**TINY_MANIFEST["runs"][0], "overrides": [
        o.replace("num_frames=28800", "num_frames=2000000") for o in TINY_MANIFEST["runs"][0]["overrides"]]}]}
    manifest.write_text(yaml.safe_dump(long))
    results = repo / "results"
    idle = _reproduce(repo, manifest, "--stop")
    assert idle.returncode == 0 and "no campaign of tiny is running" in idle.stdout
    command = [sys.executable, "-m", "launch.reproduce", str(manifest), "--results", str(results), "--shipped",
               str(repo / "shipped"), "--jobs", "2"]
    env = {**os.environ, "WANDB_MODE": "disabled", "METARL_SHIPPED_RESULTS": str(repo / "shipped")}
    tool = subprocess.Popen(command, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)  # as under nohup: no terminal's Ctrl-C reaches it
    runs_dir = results / "gridworld" / "tiny"
    try:
        deadline = time.time() + 300
        while time.time() < deadline and len(list(runs_dir.glob("*/checkpoints/latest.pt"))) < 2:
            assert tool.poll() is None, "the campaign ended before it could be stopped"
            time.sleep(0.2)
        stop = _reproduce(repo, manifest, "--stop", timeout=300)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert "stopped; the same command resumes it" in stop.stdout
        assert tool.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if tool.poll() is None:
            tool.kill()
        _kill_everything_of(str(results))
    metas = [json.loads((run / "metadata.json").read_text()) for run in sorted(runs_dir.iterdir())]
    assert [m["status"] for m in metas] == ["preempted", "preempted"]
    assert not (results / "reproduce" / "tiny" / "launcher.pid").exists()


@pytest.mark.slow
def test_a_campaign_runs_through_the_sweep_launchers_too(tmp_path):
    """``--launcher submitit_local``: the code path of ``--launcher slurm`` (one multirun per label), without a
    cluster."""
    repo = _copy_of_this_repository(tmp_path / "repo")
    manifest = repo / "tiny.yaml"
    manifest.write_text(yaml.safe_dump(TINY_MANIFEST))
    done = _reproduce(repo, manifest, "--launcher", "submitit_local")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "launcher=submitit_local" in done.stdout and "seed=0,1" in done.stdout
    published = sorted((repo / "shipped" / "gridworld" / "tiny").iterdir())
    assert [json.loads((run / "metadata.json").read_text())["status"] for run in published] == ["completed"] * 2
    assert (repo / "results" / "reproduce" / "tiny" / "report" / "report.md").is_file()


def test_per_seed_table_counts_the_seeds_that_reach_the_reference_pattern():
    from analysis.references import DEFAULT_REFERENCES, load_references
    from analysis.seed_report import per_seed_table

    refs, _ = load_references(DEFAULT_REFERENCES)
    bayes = [4.0] + [11.071] * 5
    rows = []
    for seed, ep1 in ((0, 4.0), (1, 2.0)):  # seed 1 searches badly in episode 1 and never finds the goal (0, 3)
        for frames in (1_000_000, 2_000_000, 3_000_000, 4_000_000):
            early = frames == 1_000_000  # only the last three meta-tests count
            for episode in range(1, 7):
                value = -1.0 if early else (ep1 if episode == 1 else bayes[episode - 1])
                for task in ("[0.0, 3.0]", "[4.0, 4.0]"):
                    found = not early and not (seed == 1 and task == "[0.0, 3.0]")
                    rows.append({"algo": "v", "env": "gridworld", "seed": seed, "frames": frames,
                                 "episode": episode, "task": task, "return": value, "success": found})
    # seed 1's entropy collapses early: 0.2 from 300k frames on, seed 0's stays at 1.0 until 1M
    train = pd.DataFrame([{"algo": "v", "seed": seed, "frames": f,
                           "ppo/entropy": 0.2 if seed == 1 and f > 200_000 else (1.0 if f <= 1_000_000 else 0.5)}
                          for seed in (0, 1) for f in range(100_000, 4_000_001, 100_000)])
    table, summary = per_seed_table({"label": "v", "reference": "bayes_optimal"}, pd.DataFrame(rows), refs, train)
    assert list(table["pattern"]) == ["yes", "no"] and list(table["ep 1"]) == [4.0, 2.0]
    assert summary.startswith("1 of 2 seeds reach the bayes_optimal pattern")
    assert list(table["never solved"]) == ["-", "(0, 3)"]
    assert list(table["ep 1 success"]) == ["100%", "50%"]
    assert list(table["entropy @400k"]) == ["1.00", "0.20"] and list(table["entropy @4M"]) == ["0.50", "0.20"]


def test_pictures_that_share_a_run_and_goal_export_its_trace_once(tmp_path):
    from launch.reproduce import belief_exports
    from launch.run_status import RunStatus

    path = tmp_path / "m.yaml"
    runs = [{"label": "a", "algo": "varibad", "env": "gridworld", "seeds": [0]},
            {"label": "b", "algo": "varibad", "env": "gridworld", "seeds": [0]}]
    beliefs = [{"name": "one", "labels": ["a", "b"], "seed": 0}, {"name": "two", "labels": ["a"], "seed": 0},
               {"name": "three", "labels": ["a"], "seed": 0, "goal": [1, 2]}]
    path.write_text(yaml.safe_dump({"runs": runs, "beliefs": beliefs}))
    manifest = load_manifest(path)
    run = tmp_path / "run"
    run.mkdir()
    status = RunStatus(manifest.runs[0], "completed", run)
    assert [name for name, _ in belief_exports(manifest, status)] == ["beliefs_goal3_4.npz", "beliefs_goal1_2.npz"]
    (run / "beliefs_goal3_4.npz").write_bytes(b"")
    assert [name for name, _ in belief_exports(manifest, status)] == ["beliefs_goal1_2.npz"]


def test_the_plan_estimates_a_run_not_started_yet_from_its_config_and_its_algos_runs_here(tmp_path):
    from launch.run_status import statuses

    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"runs": [{"label": "new", "algo": "varibad", "env": "gridworld", "seeds": [0],
                                              "overrides": ["train.num_frames=12345"]}]}))
    manifest = load_manifest(path)
    results, shipped = tmp_path / "results", tmp_path / "shipped"
    other = results / "gridworld" / "another_label" / "20260101-000000_seed3"  # the same algo and env, another label
    other.mkdir(parents=True)
    (other / "config.yaml").write_text(yaml.safe_dump({"algo": {"name": "varibad"}, "train": {"num_frames": 99}}))
    pd.DataFrame({"frames": [0, 1000, 2000], "wall_time": [0.0, 1.0, 2.0]}).to_csv(other / "train_metrics.csv")
    (status,) = statuses(manifest, results, shipped)
    assert status.state == "missing" and status.estimated
    assert status.budget == 12345 and status.fps == pytest.approx(1000.0)
    assert status.hours_left == pytest.approx(12345 / 1000 / 3600)


def test_runs_start_longest_first_after_those_whose_length_is_unknown():
    def run(label: str, seed: int, state: str, frames: int | None, fps: float | None,
            budget: int = 50_000_000) -> RunStatus:
        return RunStatus(RunSpec(label, "rl2", "pointrobot_sparse", seed, (), "varibad"), state,
                         frames=frames, budget=budget, fps=fps)

    # two seeds stopped near their end, one not started (its algo's speed), a long run estimated, one unknown
    todo = [run("rl2", 0, "stopped", 45_000_000, 6_500.0), run("rl2", 1, "stopped", 44_000_000, 6_500.0),
            run("rl2", 2, "missing", None, 6_500.0), run("pearl", 0, "missing", None, 59.0, budget=1_016_000),
            run("new", 0, "missing", None, None), run("new", 1, "missing", None, None)]
    order = [(s.spec.label, s.spec.seed) for s in longest_first(todo)]
    assert order == [("new", 0), ("new", 1), ("pearl", 0), ("rl2", 2), ("rl2", 1), ("rl2", 0)]
    # equal hours left keep the manifest's order
    tied = [*todo[:2], run("rl2", 2, "stopped", 45_000_000, 6_500.0)]
    assert [s.spec.seed for s in longest_first(tied)] == [1, 0, 2]


def test_reference_lines_of_the_learning_curves_sit_at_each_episodes_value_and_the_pooled_mean():
    from analysis.reproduce_report import POOLED, reference_levels

    refs = {"bayes_optimal": [4.0, 11.07, 11.07, 11.07], "short": [1.0]}
    levels = reference_levels(refs, [1, 2, POOLED], pooled=[1, 2, 3, 4])
    assert levels["bayes_optimal"] == pytest.approx({1: 4.0, 2: 11.07, POOLED: (4.0 + 3 * 11.07) / 4})
    assert levels["short"] == {1: 1.0}  # a reference without episode 2 (or 2-4) draws no line there
    assert reference_levels(refs, [1, 2]) == {"bayes_optimal": {1: 4.0, 2: 11.07}, "short": {1: 1.0}}


def test_learning_curves_pool_the_training_episodes_as_the_papers_curves_do(tmp_path):
    from analysis.reproduce_report import POOLED, plot_curves

    # two seeds, two tasks; episode k returns k (seed 0) or 2k (seed 1): pooled over episodes 1-4, 2.5 and 5
    rows = [{"algo": "v", "env": "gridworld", "run_id": f"r{seed}", "seed": seed, "frames": frames, "task_id": task,
             "episode": episode, "return": float(episode * (seed + 1)), "success": episode > 1}
            for seed in (0, 1) for frames in (100, 200) for task in (0, 1) for episode in range(1, 7)]
    curves = plot_curves(pd.DataFrame(rows), [1, 2], "t", tmp_path / "c.png", n_resamples=99, pooled=[1, 2, 3, 4])
    pooled = curves[curves["episode"] == POOLED]
    assert list(pooled["mean"]) == pytest.approx([3.75, 3.75]) and list(pooled["n"]) == [2, 2]
    assert list(curves[curves["episode"] == 2]["mean"]) == pytest.approx([3.0, 3.0])
    assert (tmp_path / "c.png").stat().st_size > 10_000


def test_each_seeds_episode_1_curve_is_its_success_over_meta_tests_or_its_return_without_success(tmp_path):
    from analysis.seed_report import plot_seed_curves, seed_curves

    rows = [{"algo": "v", "seed": seed, "frames": frames, "task_id": task, "episode": episode,
             "return": float(frames * (seed + 1)), "success": episode == 1 and task < seed + frames // 100}
            for seed in (0, 1) for frames in (0, 100, 200) for task in range(4) for episode in (1, 2)]
    ev = pd.DataFrame(rows)
    value, curves = seed_curves(ev, "v")
    assert value == "success" and sorted(curves) == [0, 1]
    assert list(curves[0]) == [0.0, 0.25, 0.5] and list(curves[1]) == [0.25, 0.5, 0.75]
    value, curves = seed_curves(ev.assign(success=False), "v", episode=2)
    assert value == "return" and list(curves[1]) == [0.0, 200.0, 400.0]
    table = pd.DataFrame({"seed": [0, 1], "pattern": ["yes", "no"]})
    assert plot_seed_curves(ev, "v", table, "t", tmp_path / "s.png") and (tmp_path / "s.png").stat().st_size > 5_000
    assert not plot_seed_curves(ev, "other", table, "t", tmp_path / "none.png") and not (tmp_path / "none.png").exists()


def test_a_campaign_run_yields_the_cpu_in_its_own_session_too(tmp_path):
    """A run is niced and alone in its session; where the kernel groups sessions (autogroup scheduling, which shares
    the CPU between sessions before niceness counts), its session's group is niced as well: else a campaign competes
    with every terminal as an equal."""
    proc = start_niced_session(["sleep", "30"], 7, cwd=tmp_path, stdout=subprocess.DEVNULL, env=dict(os.environ))
    try:
        deadline = time.time() + 10
        # until `nice` has set the niceness and exec'd the command: `nice`'s own argv names `sleep` too, so only its
        # first word tells them apart
        while not Path(f"/proc/{proc.pid}/cmdline").read_bytes().startswith(b"sleep\0") and time.time() < deadline:
            time.sleep(0.05)
        assert os.getsid(proc.pid) == proc.pid  # a session of its own: a Ctrl-C at the terminal does not reach it
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == min(os.getpriority(os.PRIO_PROCESS, 0) + 7, 19)
        enabled = Path("/proc/sys/kernel/sched_autogroup_enabled")
        if enabled.is_file() and enabled.read_text().strip() == "1":
            assert Path(f"/proc/{proc.pid}/autogroup").read_text().split()[-2:] == ["nice", "7"]
    finally:
        proc.kill()
        proc.wait()
