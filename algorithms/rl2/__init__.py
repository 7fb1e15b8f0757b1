"""RL^2 (Duan et al. 2016; Wang et al. 2016) as the VariBAD paper runs it (sec. 5, App. B.2).

Not a separate implementation: RL^2 is VariBAD's recurrent machinery configured with no decoder and no KL
(``vae_enabled: false``), the PPO loss trained end to end through the GRU (``rl_loss_through_encoder: true``:
every env's beliefs recomputed before each PPO step on random steps of the rollout, the encoder's gradients clipped
apart from the actor-critic's, as the reference's ``algorithms/ppo.py``) and a ReLU on the latent
(``latent_activation: relu``).
See ``conf/algo/rl2.yaml`` and ``conf/algo_env/rl2_<env>.yaml``.
"""

from __future__ import annotations

from omegaconf import DictConfig

from algorithms.common.agent import Agent, EnvInfo
from algorithms.common.errors import ConfigError
from algorithms.varibad import VariBADAgent, load_config


def build_rl2(cfg: DictConfig, info: EnvInfo, seed: int, device: str, update_threads: int = 1) -> Agent:
    config = load_config(cfg)
    if config.vae_enabled or not config.rl_loss_through_encoder:
        raise ConfigError("rl2 needs algo.vae_enabled=false and algo.rl_loss_through_encoder=true "
                         "(otherwise it is VariBAD: use algo=varibad)")
    return VariBADAgent(config, info, seed=seed, device=device, update_threads=update_threads)
