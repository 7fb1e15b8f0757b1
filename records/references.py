"""Where the reference values live (``records/reference_data/``): the exact per-episode lines of the VariBAD
paper's figures, computed by ``python -m algorithms.references.<env>`` (``make references``) and drawn by
``analysis``, and the random-policy returns ``train.py`` prints beside a run's own."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().with_name("reference_data")
#: envs with a file of reference lines
ENVS_WITH_REFERENCES = ("gridworld", "pointrobot", "cheetah_vel")
#: the random policy's mean return per episode for the envs' default meta-test sets
RANDOM_POLICY_FILE = DATA_DIR / "random_policy.json"


def reference_file(env: str) -> Path:
    """``<env>_references.json`` (``env``: one of :data:`ENVS_WITH_REFERENCES`)."""
    return DATA_DIR / f"{env}_references.json"
