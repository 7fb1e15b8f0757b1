"""VariBAD's configuration: every field documented, with its default (the reference code's). This dataclass is the
one place the defaults are written: Hydra composes onto it (``algorithms/configs.py``), so a misspelt key or a value
of the wrong type is an error that names it; ``conf/algo_env/varibad_<env>.yaml`` sets the paper's App. E values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from algorithms.common.errors import ConfigError
from algorithms.onpolicy.ppo import THROUGH_ENCODER_MINIBATCHES

KL_VARIANTS = ("filtering", "gauss_prior", "detached_prev", "none")
DECODE_HORIZONS = ("all", "past", "future", "next")
POLICY_BELIEF_INPUTS = ("mean_logvar", "mean", "sample", "task")
SAMPLE_HOLDS = ("step", "episode")
REWARD_DECODERS = ("per_state_bernoulli", "mse")
EPISODE_BOUNDARIES = ("reference", "bamdp")
VAE_BATCH_REDUCTIONS = ("reference", "mean")
VALUE_LOSSES = ("huber", "mse")
LAYER_INITS = ("default", "orthogonal", "normc")
THROUGH_ENCODER_CLIPS = ("separate", "joint")


@dataclass
class VariBADConfig:
    name: str = "varibad"
    # ----- data collection
    num_envs: int = 16  #: parallel envs ("num processes")
    num_steps: int = 60  #: env steps per env between policy updates ("policy num steps")
    precollect_frames: int = 5000  #: frames collected before any update ("precollect len")
    # ----- policy network and inputs (App. E)
    policy_layers: list[int] = field(default_factory=lambda: [32])
    policy_activation: str = "tanh"
    policy_init: str = "normc"  #: the actor's and critic's hidden layers: normc | orthogonal
    #: the value head: default (torch's nn.Linear initialisation, as the reference's critic_linear) | orthogonal
    value_head_init: str = "default"
    policy_state_embed_dim: int = 16  #: 0 feeds the raw state
    policy_belief_embed_dim: int = 16  #: 0 feeds the raw belief ("policy latent embedding dim")
    #: what the policy conditions on: mean_logvar (VariBAD) | mean | sample (a latent drawn from q(m|tau)) |
    #: task (the TRUE task vector: the multi-task oracle upper bound, no inference at all)
    policy_belief: str = "mean_logvar"
    #: with policy_belief=sample: draw a fresh latent every step, or once per episode and hold it fixed
    #: (learned posterior sampling, VariBAD paper sec. 4)
    belief_sample_hold: str = "step"
    #: the policy sees the env state besides the belief (RL^2 reference: false, the state enters via the GRU)
    policy_sees_state: bool = True
    norm_state_for_policy: bool = True
    norm_belief_for_policy: bool = True
    norm_rew_for_policy: bool = True
    #: clip the normalised policy inputs to +-this (None: no clipping, as the reference's policy.py)
    policy_input_clip: float | None = None
    #: tanh on the Gaussian policy's mean before sampling (the reference's norm_actions_pre_sampling; its
    #: cheetah_dir VariBAD config sets it)
    norm_actions_pre_sampling: bool = False
    # ----- PPO
    lr_policy: float = 7e-4
    policy_eps: float = 1e-8  #: Adam epsilon
    ppo_epochs: int = 2
    ppo_minibatches: int = 4
    ppo_clip: float = 0.05
    value_loss_coef: float = 0.5
    entropy_coef: float = 0.01
    max_grad_norm: float = 0.5
    gamma: float = 0.95
    gae_lambda: float = 0.95
    #: how GAE treats episode ends inside the BAMDP (its end is never bootstrapped: a finite horizon).
    #: reference: an episode that ends by its time limit is a truncation, advantage 0 there, nothing flows into the
    #: previous episode; one that ends because the MDP terminated (a fall) is not cut: it bootstraps from the next
    #: episode inside the BAMDP and is an ordinary terminal step at its end (the reference code with
    #: use_proper_time_limits=True, its PointRobot/MuJoCo configs: only TimeLimitMask's bad_transition cuts) |
    #: bamdp: one return over all K episodes, the paper's objective (use_proper_time_limits=False, its GridWorld)
    episode_boundary: str = "reference"
    #: huber: smooth L1 (the reference's ppo_use_huberloss, on in every one of its configs; with the clipped value
    #: loss 0.5 x max(huber(v), huber(v_clipped))) | mse: 0.5 x squared error
    value_loss: str = "huber"
    # ----- encoder q(m | tau_:t)
    latent_dim: int = 5
    gru_hidden_size: int = 64
    action_embed_dim: int = 0  #: 0: the encoder does not see actions
    state_embed_dim: int = 8
    reward_embed_dim: int = 8
    encoder_layers_before_gru: list[int] = field(default_factory=list)
    encoder_layers_after_gru: list[int] = field(default_factory=list)
    latent_activation: str = "none"  #: none (VariBAD) | relu (RL^2)
    #: the decoders' layers and the encoder's layers before/after the GRU: default (torch's nn.Linear
    #: initialisation, as the reference's models/decoder.py and encoder.py) | orthogonal
    vae_init: str = "default"
    # ----- VAE training
    vae_enabled: bool = True  #: False gives RL^2's machinery: no decoder, no KL
    lr_vae: float = 1e-3
    vae_buffer_size: int = 100_000  #: most recent whole trajectories kept for the VAE
    vae_batch_trajectories: int = 25
    vae_updates_per_iteration: int = 3
    kl_weight: float = 0.01
    #: how a VAE batch of B trajectories is reduced. reference: the reward/state reconstruction terms are averaged
    #: over the B trajectories but the KL (and task-decoder) terms SUMMED over them (the reference's vae.py:
    #: kl_loss.sum(dim=0).mean()), so kl_weight acts as kl_weight x B, as in its published results | mean: every
    #: term averaged over the trajectories (kl_weight is then the weight of one trajectory's KL)
    vae_batch_reduction: str = "reference"
    #: filtering: KL(q_t || q_t-1), q_-1 = N(0,I) (paper) | gauss_prior: KL(q_t || N(0,I)) |
    #: detached_prev: KL(q_t || stopgrad(q_t-1)) | none
    kl_variant: str = "filtering"
    #: which transitions each ELBO_t decodes: all (past and future, paper) | past (j < t) | future (j >= t) |
    #: next (j == t)
    decode_horizon: str = "all"
    decode_reward: bool = True
    reward_decoder: str = "per_state_bernoulli"  #: per_state_bernoulli (GridWorld: one head per cell) | mse
    reward_decoder_layers: list[int] = field(default_factory=lambda: [32, 32])
    reward_decoder_input_prev_state: bool = False
    reward_decoder_input_action: bool = False
    rew_loss_coeff: float = 1.0
    decode_state: bool = False
    state_decoder_layers: list[int] = field(default_factory=lambda: [32, 32])
    state_loss_coeff: float = 1.0
    decode_task: bool = False  #: decode the true task (Humplik et al. 2019 style auxiliary target)
    task_decoder_layers: list[int] = field(default_factory=lambda: [32, 32])
    task_loss_coeff: float = 1.0
    subsample_elbos: int | None = None  #: number of ELBO_t terms sampled per trajectory (None: all)
    subsample_decodes: int | None = None  #: number of decoded transitions sampled per trajectory (None: all)
    avg_elbo_terms: bool = False  #: average (instead of sum) over ELBO_t terms
    avg_reconstruction_terms: bool = False  #: average (instead of sum) over decoded transitions
    tbptt: int | None = None  #: truncate back-propagation through the GRU every this many steps
    encoder_max_grad_norm: float | None = None
    decoder_max_grad_norm: float | None = None
    #: let the PPO loss train the encoder too (ablation, App. C.5; RL^2 sets it). With a VAE, every PPO step then adds
    #: the ELBO of a fresh VAE batch and steps the VAE's optimiser too, and no VAE updates follow PPO (the reference's
    #: ppo.py): vae_updates_per_iteration is not used
    rl_loss_through_encoder: bool = False
    #: with the RL loss through the encoder, PPO's minibatches. steps: random (t, env) samples, every env's beliefs
    #: recomputed before each step (the reference's ppo.py) | sequences: whole env sequences, only those re-encoded
    #: (about ppo_minibatches x cheaper on a CPU, noisier gradients)
    through_encoder_minibatches: str = "steps"
    #: with the RL loss through the encoder, gradient-norm clipping. separate: the actor-critic at max_grad_norm, the
    #: encoder at encoder_max_grad_norm (null: not clipped), as the reference's ppo.py | joint: one norm over both
    #: at max_grad_norm
    through_encoder_clip: str = "separate"

    def validate(self) -> None:
        checks = {"kl_variant": KL_VARIANTS, "decode_horizon": DECODE_HORIZONS,
                  "policy_belief": POLICY_BELIEF_INPUTS, "reward_decoder": REWARD_DECODERS,
                  "belief_sample_hold": SAMPLE_HOLDS, "episode_boundary": EPISODE_BOUNDARIES,
                  "vae_batch_reduction": VAE_BATCH_REDUCTIONS, "value_loss": VALUE_LOSSES,
                  "value_head_init": LAYER_INITS, "vae_init": LAYER_INITS, "policy_init": LAYER_INITS[1:],
                  "through_encoder_minibatches": THROUGH_ENCODER_MINIBATCHES,
                  "through_encoder_clip": THROUGH_ENCODER_CLIPS}
        for key, allowed in checks.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"algo.{key}={getattr(self, key)!r} is not one of {', '.join(allowed)}")
        if self.vae_enabled and not (self.decode_reward or self.decode_state or self.decode_task):
            raise ConfigError("vae_enabled needs at least one of decode_reward, decode_state, decode_task")
        if not self.vae_enabled and not self.rl_loss_through_encoder and self.policy_belief != "task":
            raise ConfigError("with vae_enabled=false nothing trains the encoder: set rl_loss_through_encoder=true")
        if self.belief_sample_hold == "episode" and (self.policy_belief != "sample" or self.rl_loss_through_encoder):
            raise ConfigError("belief_sample_hold=episode needs policy_belief=sample and rl_loss_through_encoder=false")


def load_config(cfg: DictConfig | dict[str, Any]) -> VariBADConfig:
    """Merge a Hydra ``algo`` node onto :class:`VariBADConfig` (unknown keys raise, naming the key)."""
    merged = OmegaConf.merge(OmegaConf.structured(VariBADConfig), cfg)
    out: VariBADConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    out.validate()
    return out
