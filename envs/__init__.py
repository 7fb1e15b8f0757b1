"""Meta-RL environments (task distributions) and their registry."""

from envs.base import BatchedTaskEnv, MetaVecEnv
from envs.gridworld import GridWorld
from envs.gymnasium_api import register_gymnasium
from envs.mujoco_suite import MUJOCO_ENVS
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
# MuJoCo suite (VariBAD sec. 5.2; SPEC sec. 2): mujoco is imported only when a copy is built
# (pip install -e .[mujoco]). H = 200, K = 2 in meta-training and 5 at meta-test; a seeded sample of 20 test tasks
# (the walker's PEARL task set has its own 10): 20 x 5 x 200 = 20k steps per evaluation.
for _name, _factory, _what in MUJOCO_ENVS:
    register(
        EnvSpec(
            name=_name,
            factory=_factory,
            horizon=200,
            episodes_per_task=2,
            episodes_eval=5,
            action_type="continuous",
            description=_what,
            default_kwargs={"num_workers": 2},
            default_eval_tasks=20,
        )
    )
del _name, _factory, _what
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
