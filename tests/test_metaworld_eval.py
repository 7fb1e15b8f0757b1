"""Our agents under Meta-World's own evaluation (``metaworld.evaluation``), and our ML1 evaluator checked
against it and against a direct count."""

import itertools
import json

import numpy as np
import pytest
import torch

pytest.importorskip("metaworld")

from metaworld.evaluation import metalearning_evaluation

from algorithms import builder
from algorithms.common.checkpoints import save_checkpoint
from algorithms.references.metaworld_scripted import ScriptedML1Agent
from tests.helpers import compose_config
from tools.metaworld_eval import MetaWorldAgent, compare, main, make_eval_envs


class BeliefSpy:
    """Wraps an agent and records every belief it starts, updates and acts on."""

    def __init__(self, agent):
        self.agent = agent
        self.uses_true_task = agent.uses_true_task
        self.priors, self.updates, self.acted_on = [], [], []

    def initial_belief(self, n, tasks=None):
        belief = self.agent.initial_belief(n, tasks)
        self.priors.append(belief.hidden.clone())
        return belief

    def update_belief(self, belief, obs, action, reward, next_obs, episode_done, task_done):
        new = self.agent.update_belief(belief, obs, action, reward, next_obs, episode_done, task_done)
        self.updates.append({"before": belief.hidden.clone(), "after": new.hidden.clone(), "next_obs": next_obs,
                             "episode_done": episode_done.copy(), "task_done": task_done.copy()})
        return new

    def act(self, obs, belief, deterministic):
        self.acted_on.append(belief.hidden.clone())
        return self.agent.act(obs, belief, deterministic)

    def adapted_belief(self, belief):
        return self.agent.adapted_belief(belief)


@pytest.fixture(scope="module")
def varibad_reach():
    cfg = compose_config("algo=varibad", "env=ml1_reach", "algo.num_envs=2", "env.kwargs.num_workers=0")
    setup = builder.build(cfg)
    agent, env = setup.agent, setup.env
    env.close()
    return agent


def test_metalearning_evaluation_carries_the_belief_across_episodes_and_resets_it_between_tasks(varibad_reach):
    spy = BeliefSpy(varibad_reach)
    horizon, num_envs, adaptation, evals = 8, 5, 2, 2
    envs = make_eval_envs("ml1_reach", num_envs=num_envs, horizon=horizon)
    adapter = MetaWorldAgent(spy, envs)
    success, mean_return, per_task = metalearning_evaluation(
        adapter, adapter.envs, num_evals=evals, adaptation_steps=1, adaptation_episodes=adaptation,
        evaluation_episodes=2)
    envs.close()
    assert 0.0 <= success <= 1.0 and np.isfinite(mean_return) and set(per_task) == {"reach-v3"}

    # one prior per task set (init), and only there
    assert adapter.tasks_started == evals and len(spy.priors) == evals
    assert all(torch.equal(p, varibad_reach.encoder.initial_hidden(num_envs)) for p in spy.priors)
    steps_per_task = adaptation * horizon
    assert len(spy.updates) == evals * steps_per_task
    for task in range(evals):
        updates = spy.updates[task * steps_per_task:(task + 1) * steps_per_task]
        # the task starts from the prior ...
        assert torch.equal(updates[0]["before"], spy.priors[task])
        # ... and every update continues from the previous one, across the episode boundary (no wipe)
        for prev, cur in itertools.pairwise(updates):
            assert torch.equal(cur["before"], prev["after"])
        boundary = updates[horizon - 1]
        assert boundary["episode_done"].all() and not boundary["task_done"].any()
        assert (boundary["next_obs"][:, -1] == 1.0).all()  # the terminal observation, flagged as the env does
        assert torch.count_nonzero(boundary["after"]) > 0
        assert not torch.equal(updates[horizon]["before"], spy.priors[task])
    # between tasks the belief went back to the prior: the first action of task 2 acts on it
    acts_per_task = len(spy.acted_on) // evals
    assert torch.equal(spy.acted_on[acts_per_task], spy.priors[1])
    # evaluation acts on the adapted belief (no rewards reach the agent there)
    last_adapted = spy.updates[steps_per_task - 1]["after"]
    assert torch.equal(spy.acted_on[steps_per_task], last_adapted)


def test_terminal_observation_is_the_true_one_not_the_next_reset(varibad_reach):
    spy = BeliefSpy(varibad_reach)
    envs = make_eval_envs("ml1_reach", num_envs=5, horizon=6)
    adapter = MetaWorldAgent(spy, envs)
    rec = adapter.envs
    rec.call("toggle_sample_tasks_on_reset", False)
    rec.call("sample_tasks")
    adapter.init()
    obs, _ = rec.reset()
    from metaworld.evaluation import Timestep

    for _ in range(6):
        actions, aux = adapter.adapt_action(obs)
        next_obs, rewards, term, trunc, infos = rec.step(actions)
        adapter.step(Timestep(obs, actions, rewards, term, trunc, aux))
        obs = next_obs
    envs.close()
    last = spy.updates[-1]
    assert last["episode_done"].all()
    final = np.stack(infos["final_obs"]).astype(np.float32)
    np.testing.assert_array_equal(last["next_obs"][:, :-1], final)
    assert not np.array_equal(final, obs.astype(np.float32))  # the reset observation differs from the final one


def test_act_before_init_is_an_error(varibad_reach):
    envs = make_eval_envs("ml1_reach", num_envs=1, horizon=5)
    adapter = MetaWorldAgent(varibad_reach, envs)
    with pytest.raises(RuntimeError, match="init"):
        adapter.eval_action(np.zeros((1, 39)))
    envs.close()
    with pytest.raises(ValueError, match="divide"):
        make_eval_envs("ml1_reach", num_envs=3)
    with pytest.raises(ValueError, match="ML1"):
        make_eval_envs("cheetah_dir")


@pytest.mark.slow
def test_our_evaluator_equals_a_direct_count_and_metaworld_counts_the_first_episodes_to_end():
    agent = ScriptedML1Agent("ml1_reach", noise_std=1.0, seed=0)
    summary, tables = compare(agent, "ml1_reach", adaptation_episodes=1, evaluation_episodes=2, horizon=60)
    ours = tables["ours"].set_index(["task_id", "episode"])["success"].sort_index()
    direct = tables["direct"].set_index(["task_id", "episode"])["success"].sort_index()
    assert len(ours) == 50 * 3
    # the same tasks, the same actions: the same success in every (task, episode), not only on average
    assert ours.index.equals(direct.index) and (ours.to_numpy() == direct.to_numpy()).all()
    assert 0.1 < ours.mean() < 0.9  # the noise makes the comparison informative
    rates = summary.set_index("scoring")["success rate"]
    assert rates["metaworld.evaluation (reported)"] == rates["metaworld recount from the recorded episodes"]
    mw = tables["metaworld_episodes"]
    assert (mw[mw["phase"] == "evaluation"]["finished"]).sum() >= 2


def test_cli_writes_metaworld_results_next_to_a_runs_eval(tmp_path, varibad_reach):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    cfg = compose_config("algo=varibad", "env=ml1_reach", "algo.num_envs=2", "env.kwargs.num_workers=0",
                         "env.horizon=5")
    from omegaconf import OmegaConf

    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    save_checkpoint({"agent": varibad_reach.state_dict(resume=False), "frames": 123}, run / "checkpoints" / "final.pt")
    main([str(run), "--evaluation-episodes", "1"])
    written = json.loads((run / "metaworld_eval.json").read_text())
    assert written["frames"] == 123 and written["env"] == "ml1_reach" and written["horizon"] == 5
    assert 0.0 <= written["mean_success_rate"] <= 1.0
    assert (run / "metaworld_eval_episodes.csv").is_file()
