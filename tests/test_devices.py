"""Devices, threads and the pipelined rollout: every agent trains, checkpoints and resumes with ``device``
passed explicitly; checkpoints hold CPU tensors whatever the device; ``update_threads``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from algorithms import builder
from algorithms.common.checkpoints import load_checkpoint, save_checkpoint
from algorithms.common.errors import ConfigError
from algorithms.varibad import VariBADAgent, VariBADConfig
from tests.helpers import compose_config

AGENTS = [("varibad", "gridworld"), ("rl2", "gridworld"), ("posterior_sampling", "gridworld"),
          ("oracle", "gridworld"), ("pearl", "pointrobot_sparse")]
SMALL = {
    "varibad": ["algo.num_envs=4", "algo.num_steps=30", "algo.precollect_frames=0"],
    "pearl": ["algo.num_initial_steps=60", "algo.num_steps_prior=40", "algo.num_extra_rl_steps_posterior=40",
              "algo.num_train_steps_per_itr=3", "algo.meta_batch=2", "algo.embedding_batch_size=16",
              "algo.batch_size=16", "algo.num_tasks_sample=2", "algo.num_envs=2"],
}
THREADS = "update_threads=1"
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def build(algo: str, env_name: str, device: str):
    cfg = compose_config(f"algo={algo}", f"env={env_name}", f"device={device}", "seed=4", "progress=false", THREADS,
                         *SMALL["pearl" if algo == "pearl" else "varibad"])
    setup = builder.build(cfg)
    return setup.agent, setup.env


def parameters(agent) -> list[torch.Tensor]:
    modules = [agent.policy, agent.vae] if isinstance(agent, VariBADAgent) else list(agent.networks.values())
    return [p.detach().cpu().clone() for m in modules for p in m.parameters()]


def tensors(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for v in tree.values() for t in tensors(v)]
    if isinstance(tree, list | tuple):
        return [t for v in tree for t in tensors(v)]
    return []


@pytest.mark.parametrize(("algo", "env_name"), AGENTS)
@pytest.mark.parametrize("device", DEVICES)
def test_train_checkpoint_resume_with_explicit_device(algo, env_name, device, tmp_path):
    """Two iterations, a checkpoint through the file format, a fresh agent and env restored from it: the next
    iteration equals the uninterrupted agent's, bit for bit; every tensor in the file is a CPU tensor."""
    agent, env = build(algo, env_name, device)
    assert all(p.device.type == device for p in (agent.policy.parameters() if isinstance(agent, VariBADAgent)
                                                  else next(iter(agent.networks.values())).parameters()))
    for _ in range(2):
        agent.train_iteration(env)
    path = tmp_path / "latest.pt"
    # what the trainer's checkpoint holds besides the agent (trainer.py: Trainer.checkpoint)
    save_checkpoint({"agent": agent.state_dict(resume=True), "env": env.get_state(),
                     "torch_rng": torch.get_rng_state(), "numpy_global_rng": np.random.get_state()}, path)
    state = load_checkpoint(path)
    assert all(t.device.type == "cpu" for t in tensors(state))
    agent.train_iteration(env)
    expected = parameters(agent)
    env.close()

    resumed, env2 = build(algo, env_name, device)
    resumed.load_state_dict(state["agent"])
    env2.set_state(state["env"])
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_global_rng"])
    resumed.train_iteration(env2)
    env2.close()
    for a, b in zip(parameters(resumed), expected, strict=True):
        assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: the CPU-only path is the test above")
@pytest.mark.parametrize(("algo", "env_name"), AGENTS)
def test_a_checkpoint_moves_between_devices(algo, env_name, tmp_path):
    for source, target in (("cuda", "cpu"), ("cpu", "cuda")):
        agent, env = build(algo, env_name, source)
        agent.train_iteration(env)
        save_checkpoint({"agent": agent.state_dict(resume=True)}, tmp_path / f"{source}.pt")
        env.close()
        other, env = build(algo, env_name, target)
        other.load_state_dict(load_checkpoint(tmp_path / f"{source}.pt")["agent"])
        for a, b in zip(parameters(other), parameters(agent), strict=True):
            assert torch.equal(a, b)
        other.train_iteration(env)  # and it trains on the new device
        env.close()


def test_the_varibad_family_allocates_everything_on_the_given_device():
    """Built on the ``meta`` device (no memory), every network, optimiser-visible parameter and rollout buffer is
    there: nothing is created on a default device behind the caller's back."""
    import envs
    from algorithms.common.agent import EnvInfo

    env = envs.make_meta_env("gridworld", num_envs=3, seed=0)
    for overrides in ({}, {"vae_enabled": False, "rl_loss_through_encoder": True, "latent_activation": "relu"},
                      {"policy_belief": "task", "vae_enabled": False}):
        agent = VariBADAgent(VariBADConfig(num_envs=3, **overrides), EnvInfo.from_env(env), seed=0, device="meta")
        owned = [*agent.policy.parameters(), *agent.vae.parameters(), agent._hidden, agent._eye,
                 *(v for v in vars(agent.storage).values() if isinstance(v, torch.Tensor))]
        assert {t.device.type for t in owned} == {"meta"}


def test_no_agent_code_moves_tensors_to_a_hard_coded_device():
    """Device is passed through: no ``.cuda()`` anywhere, and ``.cpu()`` only where an array leaves for the host."""
    root = Path(__file__).resolve().parents[1] / "algorithms"
    offenders = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py")
                 for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\.cuda\(\)", line)]
    assert not offenders


def test_update_threads_auto_follows_the_measurements():
    choose = builder.choose_update_threads
    assert choose(2, 1.9, "pointrobot_sparse", "cpu", False) == 2  # the other core is free: 1.4x faster updates
    assert choose(2, 0.9, "pointrobot_sparse", "cpu", False) == 1  # something else runs: 2 threads were 2.7x slower
    assert choose(2, 1.9, "gridworld", "cpu", False) == 1  # tiny networks: no gain from a second thread
    assert choose(2, 1.9, "pointrobot_sparse", "cpu", True) == 1  # a sweep's jobs share the cores
    assert choose(1, 1.0, "pointrobot_sparse", "cpu", False) == 1
    assert choose(2, 1.9, "pointrobot_sparse", "cuda", False) == 1
    assert choose(2, None, "pointrobot_sparse", "cpu", False) == 1  # cannot tell: the safe choice


def test_update_threads_auto_beside_a_busy_process_is_one_thread():
    """The default thread choice beside a busy process: one thread, never slower than one thread."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(1, os.cpu_count() - 1))]
    try:
        time.sleep(0.5)
        idle = builder.idle_cores(0.5)
        assert idle is None or idle < 1.5
        for env_name in ("pointrobot_sparse", "cheetah_dir", "gridworld"):
            assert builder.resolve_update_threads("auto", "cpu", env_name) == 1
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()


def test_update_threads_setting(monkeypatch):
    assert builder.resolve_update_threads("auto", "cuda") == 1
    assert builder.resolve_update_threads(3, "cpu") == 3
    with pytest.raises(ConfigError, match="update_threads must be >= 1"):
        builder.resolve_update_threads(0, "cpu")
    monkeypatch.setattr(builder, "in_multirun", lambda: True)  # a sweep's jobs share the cores: one each
    assert builder.resolve_update_threads("auto", "cpu") == 1
    setup = builder.build(compose_config("algo=varibad", "env=gridworld", "update_threads=2"))
    agent, env = setup.agent, setup.env
    assert agent.update_threads == 2
    before = torch.get_num_threads()
    with agent.updating():
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    env.close()


def test_async_step_protocol_errors():
    import envs

    env = envs.make_meta_env("gridworld", num_envs=2, seed=0)
    env.reset()
    with pytest.raises(RuntimeError, match="without a step_send"):
        env.step_wait()
    sim = envs.make_meta_env("cheetah_dir", num_envs=2, seed=0, num_workers=1)
    sim.reset()
    sim.step_async(np.zeros((2, 6), np.float32))
    with pytest.raises(RuntimeError, match="not been received"):
        sim.step_async(np.zeros((2, 6), np.float32))
    sim.step_wait()
    sim.close()
