"""The multi-task oracle: PPO conditioned on the true task, the only agent the evaluator hands the tasks to."""

import numpy as np
import pytest
import torch

import envs
from algorithms.builder import compose_config
from algorithms.common.agent import EnvInfo
from algorithms.common.evaluator import meta_test
from algorithms.registry import build_agent


def oracle(*overrides):
    cfg = compose_config("algo=oracle", "algo.num_envs=4", *overrides)
    env = envs.make_meta_env("gridworld", num_envs=4, seed=0)
    torch.manual_seed(0)
    return build_agent("oracle", cfg.algo, EnvInfo.from_env(env), 0, "cpu"), env


def test_oracle_policy_sees_the_current_tasks_in_training():
    agent, env = oracle("algo.norm_belief_for_policy=false", "algo.num_steps=90")
    assert agent.uses_true_task and agent.buffer is None and agent.vae_optimizer is None
    _, info = envs.make_meta_env("gridworld", num_envs=4, seed=0).reset()  # same seed: the same first tasks
    agent._collect(env)
    inputs = agent.storage.policy_belief
    first, second = torch.as_tensor(info["task"]), torch.as_tensor(env.tasks)
    assert not torch.equal(first, second)
    assert all(torch.equal(inputs[t], first) for t in range(60))  # BAMDP 1: its goals
    assert all(torch.equal(inputs[t], second) for t in range(60, 90))  # after the task boundary: the new goals


def test_evaluator_gives_tasks_only_to_the_oracle():
    agent, _ = oracle()
    with pytest.raises(ValueError, match="true tasks"):
        agent.initial_belief(3)
    tasks = np.array([[4, 4], [2, 0], [0, 3]], np.float32)
    belief = agent.initial_belief(3, tasks)
    assert torch.equal(belief.task, torch.as_tensor(tasks))
    rows = meta_test(agent, "gridworld", tasks, episodes=2)
    assert len(rows) == 6
