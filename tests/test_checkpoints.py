"""Checkpoints: weights-only loading (no code runs), numpy round trips, damaged files survived."""

import json
import os
import signal
import subprocess

import numpy as np
import pytest
import torch

from algorithms.common.checkpoints import CheckpointError, load_checkpoint, previous_path, save_checkpoint
from tests.test_resume import ROOT, _assert_same_record, _command, _env, _run_dir, _start_and_wait_for_checkpoint


def test_numpy_and_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    rng = np.random.default_rng(3)
    legacy = np.random.RandomState(5)
    state = {
        "arrays": [np.arange(6).astype(dtype).reshape(2, 3) for dtype in (np.float32, np.float64, np.int64, np.uint32,
                                                                          np.uint8, np.bool_)],
        "empty": np.zeros((0, 4), np.float32), "scalars": (np.float32(1.5), np.int64(7), np.bool_(True)),
        "generator": rng.bit_generator.state, "legacy": legacy.get_state(), "tensor": torch.randn(3),
        "plain": {"a": 1, "b": [1.0, None, "x"], "c": (1, 2)}, "fortran": np.asfortranarray(np.ones((3, 2))),
        "zero_d": np.array(2.5), "one": np.array([2.5]),
    }
    save_checkpoint(state, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    for got, want in zip(loaded["arrays"], state["arrays"], strict=True):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    assert loaded["empty"].shape == (0, 4) and np.array_equal(loaded["fortran"], state["fortran"])
    assert (loaded["zero_d"].shape, loaded["one"].shape) == ((), (1,))  # a 0-d array stays 0-d
    assert [type(v) for v in loaded["scalars"]] == [np.float32, np.int64, np.bool_]
    assert loaded["plain"] == state["plain"] and torch.equal(loaded["tensor"], state["tensor"])
    restored = np.random.default_rng()
    restored.bit_generator.state = loaded["generator"]
    assert restored.random() == rng.random()
    again = np.random.RandomState()
    again.set_state(loaded["legacy"])
    assert again.rand() == legacy.rand()


def test_a_checkpoint_whose_pickle_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"agent": Payload()}, tmp_path / "evil.pt")  # what a weights_only=False load would execute
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_unsupported_objects_are_named_when_saving(tmp_path):
    with pytest.raises(TypeError, match=r"state\['agent'\]\['buffer'\]: a set"):
        save_checkpoint({"agent": {"buffer": {1, 2}}}, tmp_path / "c.pt")


def test_damaged_file_is_a_clear_error_and_the_previous_one_is_kept(tmp_path):
    path = tmp_path / "latest.pt"
    save_checkpoint({"frames": 1, "x": np.ones(1000)}, path, keep_previous=True)
    save_checkpoint({"frames": 2, "x": np.ones(1000)}, path, keep_previous=True)
    assert load_checkpoint(previous_path(path))["frames"] == 1
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("name", ["cheetah_dir", "cheetah_vel", "ant_dir", "ant_goal", "walker_params"])
def test_mujoco_env_state_survives_a_checkpoint_file(tmp_path, name):
    """In-process copies (HalfCheetah's default): the kept position (a 0-d array on HalfCheetah) comes back as it
    was, and the restored env continues bit for bit."""
    from envs.registry import make_meta_env

    env = make_meta_env(name, num_envs=2, seed=0, num_workers=0)
    env.reset()
    act_dim = env.single_action_space.shape[0]
    rng = np.random.default_rng(0)
    for _ in range(7):
        env.step(rng.uniform(-1, 1, (2, act_dim)).astype(np.float32))
    save_checkpoint({"env": env.get_state()}, tmp_path / "env.pt")
    actions = rng.uniform(-1, 1, (5, 2, act_dim)).astype(np.float32)
    expected = [env.step(a)[:2] for a in actions]
    fresh = make_meta_env(name, num_envs=2, seed=1, num_workers=0)
    fresh.reset()
    fresh.set_state(load_checkpoint(tmp_path / "env.pt")["env"])
    for a, (obs, reward) in zip(actions, expected, strict=True):
        got_obs, got_reward = fresh.step(a)[:2]
        np.testing.assert_array_equal(got_obs, obs)
        np.testing.assert_array_equal(got_reward, reward)
    # a checkpoint written before the 0-d fix holds the position as shape (1,): it still resumes
    old_format = make_meta_env(name, num_envs=2, seed=1, num_workers=0)
    old_format.reset()
    state = load_checkpoint(tmp_path / "env.pt")["env"]
    for copy in state["inner"]["copies"]:
        copy["position"] = np.atleast_1d(copy["position"])
    old_format.set_state(state)
    for a, (obs, reward) in zip(actions, expected, strict=True):
        got_obs, got_reward = old_format.step(a)[:2]
        np.testing.assert_array_equal(got_obs, obs)
        np.testing.assert_array_equal(got_reward, reward)
    env.close()
    fresh.close()
    old_format.close()


def test_metaworld_env_state_survives_a_checkpoint_file(tmp_path):
    pytest.importorskip("metaworld")
    from envs.registry import make_meta_env

    env = make_meta_env("ml1_push", num_envs=2, seed=0, num_workers=0)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(7):
        env.step(rng.uniform(-1, 1, (2, 4)).astype(np.float32))
    save_checkpoint({"env": env.get_state()}, tmp_path / "env.pt")
    actions = rng.uniform(-1, 1, (5, 2, 4)).astype(np.float32)
    expected = [env.step(a)[0] for a in actions]
    fresh = make_meta_env("ml1_push", num_envs=2, seed=1, num_workers=0)
    fresh.reset()
    fresh.set_state(load_checkpoint(tmp_path / "env.pt")["env"])
    for a, want in zip(actions, expected, strict=True):
        np.testing.assert_array_equal(fresh.step(a)[0], want)
    env.close()
    fresh.close()


def _kill_after_second_checkpoint(results, name):
    proc = _start_and_wait_for_checkpoint(results, name, 2 * 9600)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return _run_dir(results, name)


@pytest.mark.slow
def test_truncated_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    from tests.test_resume import RESUME_ARGS  # noqa: F401 - the same run as the resume tests

    run = _kill_after_second_checkpoint(tmp_path, "damaged")
    latest = run / "checkpoints" / "latest.pt"
    assert load_checkpoint(previous_path(latest))["frames"] == 9600
    with latest.open("r+b") as f:  # a node that died mid-copy
        f.truncate(min(latest.stat().st_size // 2, 1 << 20))
    out = subprocess.run(_command(tmp_path, "damaged"), cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "damaged" in out.stderr and "previous checkpoint" in out.stderr and "at frame 9600" in out.stderr
    assert "Traceback" not in out.stderr
    assert json.loads((run / "metadata.json").read_text())["status"] == "completed"
    whole = subprocess.run(_command(tmp_path, "whole"), cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    _assert_same_record(run, _run_dir(tmp_path, "whole"))  # resuming from the older checkpoint is exact too


@pytest.mark.slow
def test_no_loadable_checkpoint_is_refused_with_the_path_and_the_choices(tmp_path):
    run = _kill_after_second_checkpoint(tmp_path, "broken")
    for path in (run / "checkpoints" / "latest.pt", previous_path(run / "checkpoints" / "latest.pt")):
        path.write_bytes(b"not a checkpoint")
    out = subprocess.run(_command(tmp_path, "broken"), cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert str(run) in out.stderr and "resume=false" in out.stderr
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["status"] == "failed" and "cannot resume" in meta["error"]
