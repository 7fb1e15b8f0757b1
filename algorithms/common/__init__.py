"""Building blocks shared by every agent: networks, PPO, storage, normalisation, trainer and evaluator."""
