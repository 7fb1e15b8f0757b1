"""Meta-RL agents behind one :class:`~algorithms.common.agent.Agent` interface."""
