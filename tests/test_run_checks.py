"""Bad values on the training command line: one line naming the key and what is allowed, exit 2, no traceback, and
nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import train
from algorithms.cli import check_command_line
from algorithms.common.errors import ConfigError
from tests.helpers import compose_config

REPO = Path(__file__).resolve().parents[1]

BAD_VALUES = {
    "train.num_frames=abc": "train.num_frames=abc must be a whole number >= 0",
    "seed=x": "seed=x must be a whole number >= 0",
    "train.num_frames=-5": "train.num_frames=-5 must be a whole number >= 0",
    "eval.episodes=0": "eval.episodes=0 must be a whole number >= 1 or null",
    "eval.num_tasks=-1": "eval.num_tasks=-1 must be a whole number >= 1 or null",
    "train.eval_interval_frames=0": "train.eval_interval_frames=0 must be a whole number >= 1",
    "update_threads=many": "update_threads=many must be 'auto' or a whole number >= 1",
    "eval.deterministic=maybe": "eval.deterministic=maybe must be true or false",
    "device=tpu": "device=tpu must be one of auto, cpu, cuda",
    # agent keys: typed by the agents' config dataclasses (structured configs) when the config is composed
    "algo.latent_dim=five": "algo.latent_dim=five must be a whole number",
    "algo.kl_weight=lots": "algo.kl_weight=lots must be a number",
    "algo.vae_enabled=maybe": "algo.vae_enabled=maybe must be true or false",
    "algo.policy_layers=abc": "algo.policy_layers must be a list, e.g. algo.policy_layers=[32,32]",
}


@pytest.mark.parametrize("override", sorted(BAD_VALUES))
def test_a_bad_value_is_named_with_what_is_allowed(override, tmp_path):
    assert check_command_line([f"results_dir={tmp_path}", override]) == BAD_VALUES[override]
    assert list(tmp_path.iterdir()) == []


def test_results_dir_that_is_a_file_under_a_file_or_read_only(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert check_command_line([f"results_dir={afile}"]) == (
        f"results_dir={afile} is a file; it must be a folder (made if missing)")
    assert check_command_line([f"results_dir={afile}/runs"]) == (
        f"results_dir={afile}/runs is under the file {afile}; it must be a folder (made if missing)")
    # /sys is read-only even for root (a chmod'ed folder is not, for root)
    problem = check_command_line(["results_dir=/sys/metarl-runs"])
    assert problem is not None and problem.startswith("results_dir=/sys/metarl-runs: cannot write in /sys")


def test_misspelt_keys_and_options_get_the_nearest_ones():
    assert check_command_line(["train.num_frame=5"]).startswith(
        "unknown config key train.num_frame; did you mean train.num_frames")
    assert "did you mean algo.kl_lambda" in check_command_line(["algo=pearl", "algo.kl_lamda=1"])
    assert check_command_line(["algo=varibd"]).startswith("algo=varibd does not exist; did you mean varibad?")


def test_a_sweep_is_checked_on_its_first_job_and_every_job_before_it_starts(tmp_path):
    assert check_command_line(["--multirun", "seed=x,0"]) == "seed=x must be a whole number >= 0"
    assert check_command_line(["--multirun", "seed=0,1", f"results_dir={tmp_path}"]) is None
    with pytest.raises(ConfigError, match="seed=-1 must be"):
        train.run(compose_config(f"results_dir={tmp_path}", "seed=-1"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("override", ["train.num_frames=abc", "algo.kl_wieght=1", "results_dir=/sys/metarl-runs"])
def test_the_command_exits_2_with_one_line_and_writes_nothing(override, tmp_path):
    args = [f"results_dir={tmp_path}", override] if not override.startswith("results_dir") else [override]
    result = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "WANDB_MODE": "disabled"})
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout and result.stdout == ""
    assert list(tmp_path.iterdir()) == []
