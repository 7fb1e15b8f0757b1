"""PEARL (Rakelly et al., ICML 2019): probabilistic embeddings for actor-critic meta-RL."""

from algorithms.pearl.agent import PEARLAgent, PEARLBelief
from algorithms.pearl.config import PEARLConfig, load_config

__all__ = ["PEARLAgent", "PEARLBelief", "PEARLConfig", "load_config"]
