"""Meta-RL environments (task distributions) and their registry."""

from envs.base import BatchedTaskEnv, MetaVecEnv
from envs.gridworld import GridWorld
from envs.gymnasium_api import register_gymnasium
from envs.pointrobot import PointRobotSparse
from envs.registry import REGISTRY, EnvSpec, UnknownEnvError, get_spec, make_meta_env, register

register(
    EnvSpec(
        name="gridworld",
        factory=GridWorld,
        horizon=15,
        episodes_per_task=4,
        episodes_eval=6,
        action_type="discrete",
        description="5x5 GridWorld, hidden goal (VariBAD paper sec. 5.1)",
    )
)
register(
    EnvSpec(
        name="pointrobot_sparse",
        factory=PointRobotSparse,
        horizon=100,
        episodes_per_task=3,
        episodes_eval=5,
        action_type="continuous",
        description="sparse 2D navigation to a goal on the unit semicircle (PEARL sec. 6.3, VariBAD sec. 5.1)",
    )
)
register_gymnasium()

__all__ = [
    "REGISTRY",
    "BatchedTaskEnv",
    "EnvSpec",
    "GridWorld",
    "MetaVecEnv",
    "PointRobotSparse",
    "UnknownEnvError",
    "get_spec",
    "make_meta_env",
    "register",
]
