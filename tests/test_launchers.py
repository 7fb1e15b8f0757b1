"""Hydra launchers as config choices (conf/launcher/): composition, the Slurm job script, real local sweeps."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.utils import get_class, instantiate

from launch.slurm_script import compose_sweep_config, main, render_sbatch, sweep_jobs
from tests.helpers import compose_config

ROOT = Path(__file__).resolve().parents[1]
LAUNCHERS = {
    "joblib": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "submitit_local": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
    "slurm": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
    "ray": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher",
}
TINY = ["algo=varibad", "env=gridworld", "seed=0,1", "progress=false", "train.num_frames=2000",
        "train.eval_interval_frames=1000", "eval.num_tasks=2"]


def test_launcher_files_are_the_choices():
    assert {p.stem for p in (ROOT / "conf" / "launcher").glob("*.yaml")} == set(LAUNCHERS)


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_each_launcher_composes_to_its_plugin_and_instantiates(name):
    cfg = compose_sweep_config(f"launcher={name}")
    assert cfg.hydra.launcher._target_ == LAUNCHERS[name]
    assert get_class(cfg.hydra.launcher._target_).__name__ == LAUNCHERS[name].rsplit(".", 1)[1]
    launcher = instantiate(cfg.hydra.launcher)  # every field is an argument the plugin accepts
    assert type(launcher).__name__ == LAUNCHERS[name].rsplit(".", 1)[1]
    # the choice only configures Hydra: the run's own config is the same as with the default launcher
    assert compose_config(f"launcher={name}") == compose_config()


def test_default_is_joblib_with_two_jobs():
    cfg = compose_sweep_config()
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "joblib"
    assert cfg.hydra.launcher.n_jobs == 2


def test_local_launcher_settings():
    local = compose_sweep_config("launcher=submitit_local").hydra.launcher
    assert local.timeout_min >= 24 * 60 and local.gpus_per_node == 0 and local.tasks_per_node == 1
    ray = compose_sweep_config("launcher=ray").hydra.launcher.ray
    assert ray.init.address is None and ray.init.num_cpus == 2 and ray.init.include_dashboard is False
    assert ray.remote.num_cpus == 1 and ray.remote.max_calls == 1


def test_slurm_template_fields():
    cfg = compose_sweep_config("launcher=slurm")
    slurm = cfg.hydra.launcher
    assert slurm.cpus_per_task == cfg.torch_threads == 1  # one torch thread per job
    assert slurm.partition is None and slurm.gpus_per_node is None and slurm.timeout_min == 360
    assert slurm.mem_gb == 4 and slurm.array_parallelism == 64 and slurm.name == "train"
    assert slurm.signal_delay_s == 120 and slurm.max_num_timeout == 3  # requeue on timeout / pre-emption
    assert any("OMP_NUM_THREADS=1" in line for line in slurm.setup)
    assert any(".venv/bin/activate" in line for line in slurm.setup)
    gpu = compose_sweep_config("launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=1",
                               "device=cuda")
    assert (gpu.hydra.launcher.partition, gpu.hydra.launcher.gpus_per_node, gpu.device) == ("gpu", 1, "cuda")


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_every_launcher_field_is_commented(name):
    text = (ROOT / "conf" / "launcher" / f"{name}.yaml").read_text()
    fields = [line for line in text.splitlines() if re.match(r"^ {4,}[a-z_]+:", line)]  # under hydra.launcher
    assert fields, name
    assert [line for line in fields if "#" not in line] == []
    plugin_config = {"slurm": "submitit_slurm"}.get(name, name)
    assert yaml.safe_load(text)["defaults"] == [{"override /hydra/launcher": plugin_config}]


def test_slurm_script_has_the_sbatch_lines(tmp_path):
    cfg = compose_sweep_config("launcher=slurm", "algo=varibad", "env=gridworld", "seed=0,1,2", "device=cuda",
                               "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=1",
                               "hydra.launcher.timeout_min=90", f"results_dir={tmp_path / 'results'}")
    jobs = sweep_jobs(cfg)
    assert len(jobs) == 1 and [[o for o in job if o.startswith("seed=")] for job in jobs[0]] == [
        ["seed=0"], ["seed=1"], ["seed=2"]]
    assert all("device=cuda" in job for job in jobs[0])
    script = render_sbatch(cfg, len(jobs[0]))
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    for line in ["#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=1", "#SBATCH --mem=4GB", "#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --job-name=train", "#SBATCH --array=0-2%3", "#SBATCH --signal=USR2@120",
                 "export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1", "source .venv/bin/activate",
                 "export SUBMITIT_EXECUTOR=slurm"]:
        assert line in lines, line
    sweep_dir = str(tmp_path / "results" / "sweeps")
    assert f"#SBATCH --output={sweep_dir}" in script and "/.submitit/%A_%a/" in script
    command = lines[-1]
    assert command.startswith("srun --unbuffered") and f"{sys.executable} -u -m submitit.core._submit" in command
    assert not (tmp_path / "results").exists()  # composing the script creates nothing


def test_slurm_script_cli_defaults_and_ablation_arrays(capsys):
    main(["algo=varibad", "env=gridworld", "+ablation=kl", "seed=0,1"])
    out, err = capsys.readouterr()
    assert "#SBATCH --array=0-7%8" in out  # 4 KL variants x 2 seeds, one array task per run
    assert "--partition" not in out  # null: the cluster's default partition
    assert len(re.findall(r"^# array task \d+: ", err, flags=re.M)) == 8
    assert "algo.kl_variant=gauss_prior" in err and "seed=1" in err
    main(["seed=0"])
    out, _ = capsys.readouterr()
    assert "--array" not in out  # a single run is a plain job


def test_slurm_script_refuses_other_launchers():
    with pytest.raises(ValueError, match="not the Slurm launcher"):
        render_sbatch(compose_sweep_config("launcher=submitit_local"), 2)


def run_sweep(launcher: str, results_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    command = [sys.executable, "train.py", "--multirun", f"launcher={launcher}", *TINY, *extra,
               f"results_dir={results_dir}"]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(command)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def assert_two_completed_runs(results_dir: Path, launcher: str) -> None:
    runs = sorted((results_dir / "gridworld" / "varibad").iterdir())
    metadata = [json.loads((run / "metadata.json").read_text()) for run in runs]
    assert sorted(m["seed"] for m in metadata) == [0, 1]
    assert [m["status"] for m in metadata] == ["completed", "completed"]
    assert all((run / "eval.csv").exists() for run in runs)
    (sweep,) = (results_dir / "sweeps").iterdir()
    assert yaml.safe_load((sweep / "multirun.yaml").read_text())["hydra"]["runtime"]["choices"][
        "hydra/launcher"] == launcher


def test_submitit_local_sweep_runs_two_seeds(tmp_path):
    run_sweep("submitit_local", tmp_path)
    assert_two_completed_runs(tmp_path, "submitit_local")
    (sweep,) = (tmp_path / "sweeps").iterdir()
    results = list((sweep / ".submitit").glob("*/*_result.pkl"))
    assert len(results) == 2  # two submitit jobs, each a process of its own


def test_ray_sweep_runs_two_seeds_on_a_local_instance(tmp_path):
    proc = run_sweep("ray", tmp_path, "hydra.launcher.ray.init.num_cpus=2")
    assert_two_completed_runs(tmp_path, "ray")
    assert "'num_cpus': 2" in proc.stdout + proc.stderr and "'include_dashboard': False" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_joblib_sweep_runs_a_simulator_env(tmp_path):
    """``make sweep`` on a MuJoCo env: each job, in a joblib (loky) worker, starts its own env worker processes."""
    overrides = ["env=cheetah_dir", "env.kwargs.num_workers=2", "train.num_frames=1", "train.eval_interval_frames=1",
                 "eval.num_tasks=1",
                 "eval.episodes=1"]
    run_sweep("joblib", tmp_path, *overrides)
    runs = sorted((tmp_path / "cheetah_dir" / "varibad").iterdir())
    metadata = [json.loads((run / "metadata.json").read_text()) for run in runs]
    assert sorted(m["seed"] for m in metadata) == [0, 1] and {m["status"] for m in metadata} == {"completed"}
