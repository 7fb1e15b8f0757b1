"""Commands that load trained runs (a run folder's config and checkpoint) and measure something the training loop
does not: the belief along a GridWorld rollout, how fast a cheetah infers its direction, Meta-World's own
evaluation of an agent.

They sit above the agents and the registry (``algorithms.builder.load_run_agent``); nothing in ``algorithms/``
imports them.
"""
