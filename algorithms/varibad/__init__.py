"""VariBAD (Zintgraf et al., 2020/2021): Bayes-adaptive deep RL via meta-learning."""

from algorithms.varibad.agent import VariBADAgent
from algorithms.varibad.config import VariBADConfig, load_config

__all__ = ["VariBADAgent", "VariBADConfig", "load_config"]
