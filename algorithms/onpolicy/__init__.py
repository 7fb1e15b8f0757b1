"""The recurrent on-policy stack VariBAD and RL² share: a GRU encoder of the history, a belief-conditioned
actor-critic, PPO with GAE, rollout and trajectory storage, and running normalisers (lmzintgraf/varibad's
``models/``, ``algorithms/ppo.py``, ``utils/`` pieces).

It knows nothing of a run (folders, checkpoints, the training loop): that is ``algorithms.common``.
"""
