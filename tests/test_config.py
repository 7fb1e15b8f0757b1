"""Hydra config composition: groups, the algo x env layer, validation of keys and values."""

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from algorithms.varibad import load_config
from tests.helpers import compose_config


def test_default_composition_is_varibad_gridworld_with_paper_values():
    cfg = compose_config()
    assert cfg.algo.name == "varibad" and cfg.env.name == "gridworld"
    algo = load_config(cfg.algo)
    # App. E, GridWorld column
    assert cfg.train.num_frames == 20_000_000
    assert (algo.num_envs, algo.num_steps, algo.latent_dim, algo.gru_hidden_size) == (16, 60, 5, 64)
    assert (algo.ppo_epochs, algo.ppo_minibatches, algo.ppo_clip) == (2, 4, 0.05)
    assert (algo.gamma, algo.gae_lambda, algo.kl_weight, algo.lr_policy, algo.lr_vae) == (0.95, 0.95, 0.01, 7e-4, 1e-3)
    assert (algo.vae_buffer_size, algo.vae_batch_trajectories, algo.vae_updates_per_iteration) == (100_000, 25, 3)
    assert algo.policy_layers == [32] and algo.reward_decoder_layers == [32, 32]
    assert not algo.rl_loss_through_encoder and algo.decode_horizon == "all" and algo.kl_variant == "filtering"


def test_command_line_overrides_and_ablation_switches():
    cfg = compose_config("algo.decode_horizon=past", "algo.kl_variant=detached_prev", "algo.latent_dim=32",
                         "algo.rl_loss_through_encoder=true", "seed=3")
    algo = load_config(cfg.algo)
    assert (algo.decode_horizon, algo.kl_variant, algo.latent_dim, algo.rl_loss_through_encoder) == (
        "past", "detached_prev", 32, True)
    assert cfg.seed == 3


def test_unknown_key_is_rejected_by_name():
    with pytest.raises(ConfigCompositionException, match="kl_wieght"):
        compose_config("algo.kl_wieght=0.1")
    with pytest.raises(ConfigKeyError, match="kl_wieght"):
        load_config({"kl_wieght": 0.1})


def test_bad_values_are_rejected_with_choices():
    with pytest.raises(ValueError, match="decode_horizon='sideways' is not one of all, past, future, next"):
        load_config({"decode_horizon": "sideways"})
    with pytest.raises(ValidationError, match="latent_dim"):
        load_config({"latent_dim": "five"})


def test_unknown_group_choice_lists_options():
    with pytest.raises(ConfigCompositionException, match="gridworld"):
        compose_config("env=nowhere")


@pytest.mark.parametrize(("algo", "dataclass_path"), [("varibad", "algorithms.varibad.config.VariBADConfig"),
                                                    ("pearl", "algorithms.pearl.config.PEARLConfig")])
def test_the_dataclass_is_the_one_source_of_an_agents_defaults(algo, dataclass_path):
    """conf/algo/<algo>.yaml writes no value of its own: without the algo x env layer, the composed agent config is
    the dataclass's defaults, field for field."""
    import dataclasses
    import importlib

    import yaml

    from algorithms.builder import CONF_DIR

    module, name = dataclass_path.rsplit(".", 1)
    schema = getattr(importlib.import_module(module), name)
    with open(f"{CONF_DIR}/algo/{algo}.yaml") as f:
        assert yaml.safe_load(f) == {"defaults": [f"{algo}_defaults", "_self_"]}
    cfg = compose_config(f"algo={algo}", "env=cheetah_dir", "~algo_env")
    assert OmegaConf.to_container(cfg.algo) == dataclasses.asdict(schema())


def test_a_value_of_the_wrong_type_is_rejected_when_the_config_is_composed():
    with pytest.raises(ConfigCompositionException, match="latent_dim"):
        compose_config("algo.latent_dim=five")
    with pytest.raises(ConfigCompositionException, match="reward_scale"):
        compose_config("algo=pearl", "env=cheetah_dir", "algo.reward_scale=lots")


def test_algo_env_layer_overrides_the_top_level_defaults():
    """The paper's budgets in conf/algo_env/ win over conf/config.yaml's defaults (``_self_`` first)."""
    assert compose_config("env=pointrobot_sparse").train.num_frames == 50_000_000
    assert compose_config("env=pointrobot_sparse").train.eval_interval_frames == 1_000_000
    assert compose_config("algo=posterior_sampling_exact").train.num_frames == 0
    assert compose_config("algo=varibad").train.num_frames == 20_000_000
    assert compose_config("algo=varibad", "train.num_frames=5").train.num_frames == 5  # the command line wins


def test_env_episodes_eval_reaches_the_trainer(tmp_path):
    """``env.episodes_eval`` in conf/env/*.yaml (or on the command line) sets K at meta-test."""
    import train

    cfg = compose_config(f"results_dir={tmp_path}", "env.episodes_eval=2", "train.num_frames=960",
                         "train.eval_interval_frames=960", "algo.precollect_frames=0", "eval.num_tasks=2",
                         "progress=false")
    final = train.run(cfg)
    assert sorted(final["episode"].unique()) == [1, 2]


def test_oyster_protocol_profile_for_pearl():
    from algorithms.builder import check_protocol
    from algorithms.common.errors import ConfigError

    default = compose_config("algo=pearl", "env=cheetah_dir")
    assert default.protocol.name == "default" and default.algo.exploration_episodes_eval == 1
    assert "torso_com_in_obs" not in default.env.kwargs
    oyster = compose_config("algo=pearl", "env=cheetah_dir", "protocol=oyster")
    assert oyster.protocol.name == "oyster"
    assert (oyster.algo.exploration_episodes_eval, oyster.eval.episodes) == (2, 3)
    assert oyster.env.kwargs.torso_com_in_obs is True
    check_protocol(oyster)
    point = compose_config("algo=pearl", "env=pointrobot_sparse", "protocol=oyster")
    assert (point.algo.exploration_episodes_eval, point.eval.episodes, point.env.horizon) == (5, 20, 20)
    assert point.env.kwargs.task_set == "pearl"
    with pytest.raises(ConfigError, match="protocol=oyster is not defined for varibad on cheetah_dir"):
        check_protocol(compose_config("algo=varibad", "env=cheetah_dir", "protocol=oyster"))
