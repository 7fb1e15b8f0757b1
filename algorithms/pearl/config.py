"""PEARL's configuration: every field documented; defaults are the reference code's (oyster, ``configs/default.py``,
design.md §3); values per env come from ``conf/algo_env/pearl_<env>.yaml`` (oyster's ``configs/<env>.json``).

This dataclass is the one place the defaults are written: Hydra composes onto it (``algorithms/configs.py``), so a
misspelt key or a value of the wrong type is an error that names it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from algorithms.common.errors import ConfigError
from algorithms.pearl.networks import HIDDEN_DTYPES


@dataclass
class PEARLConfig:
    name: str = "pearl"
    # ----- training tasks and data collection (Algorithm 1)
    #: env copies stepped together by the batched env: this many tasks are collected on at once
    num_envs: int = 5
    #: size of the finite training task set, drawn once (distinct tasks) with ``env.draw_tasks`` where the env fixes
    #: no set of its own; ignored where it does (PointRobot/Walker ``task_set=pearl``: 80/40, ML1: 50); oyster
    #: ``n_train_tasks``
    num_train_tasks: int = 100
    #: steps collected per training task with z ~ prior before any update (first iteration only)
    num_initial_steps: int = 2000
    #: training tasks (drawn with replacement, as oyster) collected on per iteration
    num_tasks_sample: int = 5
    #: per sampled task and iteration: steps with z ~ prior (a fresh prior sample per episode); RL + encoder buffers
    num_steps_prior: int = 400
    #: steps with z ~ q(z|c), c drawn from this round's data of the task; RL + encoder buffers
    num_steps_posterior: int = 0
    #: steps with z ~ q(z|c) added to the RL buffer only ("the policy needs to learn to handle z ~ posterior")
    num_extra_rl_steps_posterior: int = 400
    #: transitions kept per task in the RL buffer (oldest overwritten first); the encoder buffer has the same cap
    #: (oyster ``replay_buffer_size``)
    replay_buffer_size: int = 1_000_000
    #: the critic learns from ``info["dense_reward"]`` while the context holds the env's (sparse) reward
    #: (PEARL sec. 6.2 / oyster ``sparse_rewards``: sparse PointRobot)
    dense_rewards_for_critic: bool = False
    # ----- inference network q(z | c)
    latent_dim: int = 5  #: oyster ``latent_size``
    #: the inference network's MLP (oyster ``launch_experiment.py``)
    encoder_layers: list[int] = field(default_factory=lambda: [200, 200, 200])
    #: false: a context transition is (s, a, r), as every one of oyster's configs (``use_next_obs_in_context=False``)
    #: and design.md §3; true: (s, a, r, s') as PEARL sec. 3 writes it
    context_next_obs: bool = False
    #: context transitions per task per gradient step, and per posterior during collection ("embedding_batch_size")
    embedding_batch_size: int = 64
    #: beta, the weight of KL(q(z|c) || N(0, I)) (summed over the meta-batch's tasks) in the encoder loss
    kl_lambda: float = 0.1
    # ----- SAC (the paper's: twin Q, V and a target V; see algorithms/pearl/agent.py)
    #: hidden widths of the policy, both Q-functions and V (oyster ``net_size`` x 3 layers)
    net_layers: list[int] = field(default_factory=lambda: [300, 300, 300])
    policy_lr: float = 3e-4
    qf_lr: float = 3e-4
    vf_lr: float = 3e-4
    context_lr: float = 3e-4
    #: tasks per gradient step (drawn with replacement from the training tasks)
    meta_batch: int = 16
    #: RL transitions per task per gradient step, uniform from the task's whole RL buffer
    batch_size: int = 256
    #: gradient steps per iteration (after each iteration's collection)
    num_train_steps_per_itr: int = 2000
    gamma: float = 0.99
    #: Polyak rate of the target V (oyster ``soft_target_tau``)
    tau: float = 0.005
    #: multiplies the reward in the Q target (equivalently an entropy temperature of 1 / reward_scale)
    reward_scale: float = 5.0
    #: weights of the L2 penalties on the policy's pre-tanh mean and log-std (oyster ``PEARLSoftActorCritic``)
    policy_mean_reg_weight: float = 1e-3
    policy_std_reg_weight: float = 1e-3
    #: the dtype of the hidden layers' products in every network: float32 (oyster's arithmetic) or bfloat16 (mixed
    #: precision: weights, gradients, Adam, output layers and losses stay float32; 2.6-3x the gradient steps per
    #: second on a CPU with AVX512-BF16 and faster on a GPU; see ``networks.RlkitMLP``). On cheetah_dir at 104k
    #: frames, 3 seeds each, the per-direction returns of the two match within the spread between seeds (README)
    hidden_precision: str = "float32"
    # ----- meta-test (Algorithm 2)
    #: episodes of a test task acted on with z ~ prior (a fresh sample each) before posterior sampling starts;
    #: 1 is Algorithm 2 (prior for episode 1, then q(z | all context so far)); oyster's ``num_exp_traj_eval``
    exploration_episodes_eval: int = 1

    def validate(self) -> None:
        positive = ("num_envs", "num_train_tasks", "num_initial_steps", "num_tasks_sample", "replay_buffer_size",
                    "latent_dim", "embedding_batch_size", "meta_batch", "batch_size", "exploration_episodes_eval")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"algo.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("num_steps_prior", "num_steps_posterior", "num_extra_rl_steps_posterior",
                    "num_train_steps_per_itr"):
            if getattr(self, key) < 0:
                raise ConfigError(f"algo.{key} must be >= 0, got {getattr(self, key)}")
        if self.num_steps_prior + self.num_steps_posterior == 0:
            raise ConfigError("algo.num_steps_prior + algo.num_steps_posterior must be > 0: the encoder buffer of a "
                              "sampled task is emptied before its collection and only these steps refill it")
        if not 0.0 < self.tau <= 1.0 or not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"need 0 < algo.tau <= 1 and 0 <= algo.gamma <= 1, got {self.tau}, {self.gamma}")
        if self.hidden_precision not in HIDDEN_DTYPES:
            raise ConfigError(f"algo.hidden_precision must be one of {sorted(HIDDEN_DTYPES)}, "
                              f"got {self.hidden_precision!r}")
        if self.kl_lambda < 0:
            raise ConfigError(f"algo.kl_lambda must be >= 0, got {self.kl_lambda}")


def load_config(cfg: DictConfig | dict[str, Any]) -> PEARLConfig:
    """Merge a Hydra ``algo`` node onto :class:`PEARLConfig` (unknown keys raise, naming the key)."""
    merged = OmegaConf.merge(OmegaConf.structured(PEARLConfig), cfg)
    out: PEARLConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    out.validate()
    return out
