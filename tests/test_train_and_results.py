"""The training entry point end to end: results folder schema, never overwriting, clear errors."""

import json

import pandas as pd
import pytest
import yaml

import train
from algorithms import builder
from algorithms.common.checkpoints import load_checkpoint
from algorithms.registry import IncompatibleError, UnknownAlgorithmError, check_compatible, get_algo
from envs import REGISTRY, EnvSpec, GridWorld, UnknownEnvError
from tests.helpers import compose_config

TINY = ["train.num_frames=2880", "train.eval_interval_frames=1920", "train.log_interval_iterations=1",
        "train.checkpoint_interval_frames=1920", "algo.precollect_frames=960", "eval.episodes=2",
        "eval.num_tasks=4", "progress=false"]


def test_tiny_run_writes_the_results_schema(tmp_path):
    cfg = compose_config(f"results_dir={tmp_path}", "seed=5", *TINY)
    final = train.run(cfg)
    runs = list((tmp_path / "gridworld" / "varibad").iterdir())
    assert len(runs) == 1
    run = runs[0]
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["status"] == "completed" and meta["seed"] == 5 and meta["frames"] == 2880
    assert meta["packages"]["torch"].startswith("2.13") and meta["end_time"] is not None
    assert yaml.safe_load((run / "config.yaml").read_text())["algo"]["latent_dim"] == 5
    metrics = pd.read_csv(run / "train_metrics.csv")
    assert list(metrics["frames"]) == [960, 1920, 2880]
    assert {"wall_time", "fps", "ppo/policy_loss", "vae/kl"} <= set(metrics.columns)
    ev = pd.read_csv(run / "eval.csv")
    assert list(ev.columns) == ["run_id", "frames", "task_id", "task", "episode", "return", "success",
                                "steps_to_success"]
    assert sorted(ev["frames"].unique()) == [0, 1920, 2880]  # at 0, at the interval, at the end
    assert len(ev) == 3 * 4 * 2
    assert ev["return"].between(-1.5, 15.0).all()
    assert ev.loc[ev["success"], "steps_to_success"].between(1, 15).all()
    assert ev.loc[~ev["success"], "steps_to_success"].isna().all()
    assert (run / "checkpoints" / "final.pt").exists() and (run / "checkpoints" / "latest.pt").exists()
    assert final.equals(ev[ev["frames"] == 2880].drop(columns=["run_id", "frames", "task"]).reset_index(drop=True))


def test_a_final_meta_test_with_more_episodes_goes_to_its_own_file(tmp_path, capsys):
    cfg = compose_config(f"results_dir={tmp_path}", "seed=5", "eval.final_episodes=7", *TINY)
    train.run(cfg)
    (run,) = (tmp_path / "gridworld" / "varibad").iterdir()
    out = capsys.readouterr().out  # the end-of-run table is the last meta-test's; the longer one is named
    assert "meta-test at frame 2,880, per episode (4 tasks" in out
    assert f"final meta-test, 7 episodes per task: {run / 'final_eval.csv'}" in out
    ev, final = pd.read_csv(run / "eval.csv"), pd.read_csv(run / "final_eval.csv")
    assert list(final.columns) == list(ev.columns)
    assert ev["episode"].max() == 2 and sorted(final["episode"].unique()) == list(range(1, 8))
    assert set(final["frames"]) == {2880} and final["task_id"].nunique() == 4


def test_the_random_policy_baseline_is_computed_once_and_reused(tmp_path, monkeypatch, capsys):
    from algorithms.references import random_policy

    calls = []
    real = random_policy.compute
    monkeypatch.setattr(random_policy, "compute", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    train.run(compose_config(f"results_dir={tmp_path}", "seed=1", *TINY))
    assert calls == ["gridworld"]
    first = capsys.readouterr().out
    assert "random-policy baseline for gridworld (4 tasks x 2 episodes): computing it once" in first
    train.run(compose_config(f"results_dir={tmp_path}", "seed=2", *TINY))
    assert calls == ["gridworld"]  # the second run reads the kept values
    second = capsys.readouterr().out
    assert "random-policy baseline" not in second
    def random_row(out):
        line = next(line for line in out.splitlines() if line.startswith("random policy mean"))
        return [float(v) for v in line.split()[3:]]

    assert random_row(first) == random_row(second) and len(random_row(first)) == 2
    cache = json.loads((tmp_path / "references" / "random_policy.json").read_text())
    assert [entry["episodes"] for entry in cache.values()] == [2]


def test_runs_are_never_overwritten(tmp_path):
    cfg = compose_config(f"results_dir={tmp_path}", "run_name=fixed", *TINY)
    train.run(cfg)
    first = (tmp_path / "gridworld" / "varibad" / "fixed" / "eval.csv").read_text()
    with pytest.raises(FileExistsError, match="never overwritten"):
        train.run(cfg)
    assert (tmp_path / "gridworld" / "varibad" / "fixed" / "eval.csv").read_text() == first


def test_unknown_names_fail_before_any_work(tmp_path):
    cfg = compose_config(f"results_dir={tmp_path}", *TINY)
    cfg.env.name = "gridwrld"
    with pytest.raises(UnknownEnvError, match=r"registered environments: ant_dir, .*gridworld, .*walker_params"):
        train.run(cfg)
    cfg = compose_config(f"results_dir={tmp_path}", *TINY)
    cfg.algo.name = "varibda"
    with pytest.raises(UnknownAlgorithmError, match=r"available algorithms: oracle, .*posterior_sampling, .*, varibad"):
        train.run(cfg)
    assert not any(tmp_path.iterdir())  # no results folder was created


def test_incompatible_combination_is_reported():
    continuous_only = EnvSpec("cont", GridWorld, 1, 1, 1, "continuous")
    from algorithms.registry import AlgoSpec

    discrete_agent = AlgoSpec("disc", get_algo("varibad").build, frozenset({"discrete"}))
    with pytest.raises(IncompatibleError, match="'disc' supports discrete actions but env 'cont' has continuous"):
        check_compatible(discrete_agent, continuous_only)


def test_env_options_reach_training_and_meta_test(tmp_path):
    import numpy as np

    from envs.pointrobot import PointRobotSparse

    cfg = compose_config(f"results_dir={tmp_path}", "env=pointrobot_sparse", "env.kwargs.task_set=pearl",
                         "env.horizon=10", "algo.num_steps=30", "algo.num_envs=2", "algo.precollect_frames=0",
                         "algo.vae_batch_trajectories=2", "train.num_frames=120", "train.eval_interval_frames=120",
                         "train.log_interval_iterations=1", "eval.episodes=2", "progress=false")
    setup = builder.build(cfg)
    _, env = setup.agent, setup.env
    assert env.horizon == 10 and env.inner.task_set == "pearl"
    final = train.run(cfg)
    ev = pd.read_csv(next((tmp_path / "pointrobot_sparse" / "varibad").iterdir()) / "eval.csv")
    expected = PointRobotSparse(1, np.random.default_rng(0), task_set="pearl").held_out_tasks()
    assert final["task_id"].nunique() == 20
    got = np.array([json.loads(t) for t in ev.drop_duplicates("task_id")["task"]])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # a 10-step episode: the sparse return is bounded by 10 * 1
    assert ev["return"].between(0.0, 10.0).all()


def test_nan_loss_stops_the_run_naming_it_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    """A NaN in the ELBO itself (not just in a logged number) reaches the gradients and the parameters; the run
    stops at that update naming the loss, and the checkpoint written before it is finite and loads."""
    import torch

    from algorithms.common.trainer import NonFiniteLossError
    from algorithms.varibad import agent as varibad_agent

    original = varibad_agent.elbo_loss
    seen: dict = {"calls": 0}

    def poisoned(vae, batch, cfg):
        out = original(vae, batch, cfg)
        seen["calls"] += 1
        seen["vae"] = vae
        # 3 VAE updates per iteration from iteration 1 on: call 10 is iteration 4's first, after the checkpoint
        # at 1920 frames (iteration 2)
        if seen["calls"] == 10:
            out.loss = out.loss * torch.tensor(float("nan"))
        return out

    monkeypatch.setattr(varibad_agent, "elbo_loss", poisoned)
    cfg = compose_config(f"results_dir={tmp_path}", "run_name=poisoned", *TINY, "train.num_frames=9600")
    with pytest.raises(NonFiniteLossError, match=r"vae/loss is nan at iteration 4 \(frame 3840\)"):
        train.run(cfg)
    assert not all(torch.isfinite(p).all() for p in seen["vae"].parameters())  # the NaN did reach the weights
    run = tmp_path / "gridworld" / "varibad" / "poisoned"
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["status"] == "failed" and "vae/loss is nan" in meta["error"]
    state = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert state["frames"] == 1920 and state["iteration"] == 2
    assert not (run / "checkpoints" / "final.pt").exists()
    for part in ("vae", "policy"):
        assert all(torch.isfinite(v).all() for v in state["agent"][part].values()), part
    setup = builder.build(cfg)
    fresh, env = setup.agent, setup.env
    fresh.load_state_dict(state["agent"])  # loadable into a new agent
    assert all(torch.isfinite(p).all() for p in fresh.vae.parameters())
    env.close()


@pytest.mark.parametrize(("name", "key", "values"), [
    ("decode_horizon", "decode_horizon", "all,past,future,next"),
    ("kl", "kl_variant", "filtering,gauss_prior,detached_prev,none"),
    ("latent_dim", "latent_dim", "1,2,5,32,1000"),
    ("rl_through_encoder", "rl_loss_through_encoder", "false,true"),
])
def test_ablations_are_named_sweeps_with_one_label_per_variant(name, key, values):
    from omegaconf import OmegaConf

    declared = OmegaConf.load(f"{builder.CONF_DIR}/ablation/{name}.yaml")
    assert dict(declared.hydra.sweeper.params) == {f"algo.{key}": values}  # what --multirun sweeps
    labels = set()
    for value in values.split(","):
        cfg = compose_config(f"+ablation={name}", f"algo.{key}={value}")
        assert cfg.label.startswith("varibad_") and cfg.label.lower().endswith(value)
        labels.add(cfg.label)
    assert len(labels) == len(values.split(","))  # every variant lands in a folder of its own


def test_label_names_the_results_folder_and_analysis_groups_by_it(tmp_path):
    from analysis.load import load_results

    for variant in ("past", "all"):
        cfg = compose_config(f"results_dir={tmp_path}", "+ablation=decode_horizon", f"algo.decode_horizon={variant}",
                             *TINY)
        train.run(cfg)
    runs = sorted(p.relative_to(tmp_path).parts[:2] for p in tmp_path.glob("gridworld/*/*"))
    assert runs == [("gridworld", "varibad_decode-all"), ("gridworld", "varibad_decode-past")]
    meta = json.loads(next(tmp_path.glob("gridworld/varibad_decode-past/*/metadata.json")).read_text())
    assert meta["algo"] == "varibad" and meta["label"] == "varibad_decode-past"
    loaded = load_results(tmp_path)
    assert sorted(loaded.eval["algo"].unique()) == ["varibad_decode-all", "varibad_decode-past"]


def test_devices_resolve_or_fail_before_any_work(tmp_path):
    from algorithms.common.errors import ConfigError
    from algorithms.registry import AlgoSpec, resolve_device

    varibad = get_algo("varibad")
    for name in ("varibad", "rl2", "posterior_sampling", "oracle", "pearl"):  # every learning agent: GPU or CPU
        assert resolve_device("auto", get_algo(name), cuda_available=True) == "cuda"
        assert resolve_device("auto", get_algo(name), cuda_available=False) == "cpu"
    exact = get_algo("posterior_sampling_exact")  # a CPU-only agent
    assert resolve_device("auto", exact, cuda_available=True) == "cpu"
    cpu_agent = AlgoSpec("c", varibad.build, varibad.action_types, devices=frozenset({"cpu"}))
    assert resolve_device("cuda", varibad, cuda_available=True) == "cuda"
    with pytest.raises(ConfigError, match="torch sees no GPU"):
        resolve_device("cuda", varibad, cuda_available=False)
    with pytest.raises(IncompatibleError, match="runs on cpu only"):
        resolve_device("cuda", cpu_agent, cuda_available=True)
    with pytest.raises(ConfigError, match="unknown device 'tpu'; choose one of: auto, cpu, cuda"):
        resolve_device("tpu", varibad, cuda_available=False)
    cfg = compose_config(f"results_dir={tmp_path}", "device=tpu", *TINY)
    with pytest.raises(ConfigError, match="device=tpu must be one of auto, cpu, cuda"):
        train.run(cfg)
    assert not any(tmp_path.iterdir())  # no results folder


def test_a_pair_without_its_paper_configuration_is_refused():
    from algorithms.common.errors import ConfigError

    cfg = compose_config("algo=oracle", "env=gridworld")
    builder.check_paper_config(cfg)  # conf/algo_env/oracle_gridworld.yaml exists
    cfg.algo.name, cfg.env.name = "posterior_sampling_exact", "cheetah_vel"
    with pytest.raises(ConfigError, match=r"no configuration conf/algo_env/posterior_sampling_exact_cheetah_vel\.yaml"
                                          r" .*\(envs with one: gridworld\)"):
        builder.check_paper_config(cfg)
    cfg.allow_default_hyperparameters = True
    builder.check_paper_config(cfg)
    for algo in ("varibad", "rl2", "posterior_sampling", "oracle"):  # every env has all four
        for env in sorted(REGISTRY):
            builder.check_paper_config(compose_config(f"algo={algo}", f"env={env}"))


def test_meta_test_progress_reports_its_envs_start_then_each_episode():
    """A meta-test's progress counts the time its envs take to start (Meta-World's workers: tens of seconds, which
    progress lines that started after them left out)."""
    from algorithms.common.evaluator import meta_test
    from algorithms.common.random_agent import RandomAgent

    env = envs_make("gridworld")
    calls = []
    meta_test(RandomAgent(env.single_action_space, seed=0), "gridworld", env.inner.held_out_tasks()[:3], 2,
              on_episode=lambda k, total, seconds: calls.append((k, total, seconds >= 0)))
    env.close()
    assert calls == [(0, 2, True), (1, 2, True), (2, 2, True)]


def envs_make(name):
    import envs

    return envs.make_meta_env(name, num_envs=1, seed=0, split="test")
