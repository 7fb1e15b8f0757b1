"""Meta-RL environments (task distributions) and their registry."""

from envs.base import BatchedTaskEnv, MetaVecEnv
from envs.gridworld import GridWorld
from envs.gymnasium_api import register_gymnasium
from envs.metaworld_ml1 import ML1PickPlace, ML1Push, ML1Reach
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
# Meta-World ML1 (VariBAD sec. 5.4; design.md §2): metaworld is imported only when a copy is built
# (pip install -e .[metaworld]). H = 150 as in the paper's protocol; make_meta_env(horizon=...) up to 500.
for _name, _factory, _what in (("ml1_reach", ML1Reach, "reach unknown goals"),
                               ("ml1_push", ML1Push, "push a puck to unknown goals"),
                               ("ml1_pick_place", ML1PickPlace, "pick a puck and place it at unknown goals")):
    register(
        EnvSpec(
            name=_name,
            factory=_factory,
            horizon=150,
            episodes_per_task=2,
            episodes_eval=10,
            action_type="continuous",
            description=f"Meta-World 3.1.1 ML1 {_factory.env_name}: {_what} (50 train / 50 test tasks)",
            default_kwargs={"num_workers": 2, "benchmark_seed": 0},
        )
    )
del _name, _factory, _what
# MuJoCo suite (VariBAD sec. 5.2; design.md §2): mujoco is imported only when a copy is built
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
