"""The agents' config dataclasses as Hydra structured configs: the one source of their defaults.

``conf/algo/varibad.yaml`` and ``conf/algo/pearl.yaml`` list ``<name>_defaults`` (stored here) first and carry no
values of their own; ``conf/algo_env/<algo>_<env>.yaml`` sets the paper's values for one env. Composition then
rejects a misspelt key or a value of the wrong type by name, before anything runs. Every place that composes a config
imports this module first (``builder``, ``cli``, ``launch.slurm_script``).
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from algorithms.pearl.config import PEARLConfig
from algorithms.varibad.config import VariBADConfig

#: group option -> dataclass, as ``conf/algo/<option without _defaults>.yaml`` refers to it
STRUCTURED_DEFAULTS = {"varibad_defaults": VariBADConfig, "pearl_defaults": PEARLConfig}


def register() -> None:
    """Store the dataclasses in Hydra's config store (idempotent)."""
    store = ConfigStore.instance()
    for name, node in STRUCTURED_DEFAULTS.items():
        store.store(group="algo", name=name, node=node)


register()
