"""Exact reference policies for the benchmark's envs (VariBAD paper fig. 1e / fig. 12 reference lines).

Computed from the environment definitions, never typed in: see :mod:`algorithms.references.gridworld`.
The names are resolved lazily (PEP 562) so that ``python -m algorithms.references.gridworld`` does not import
the module twice.
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "BayesOptimalPlan",
    "GridSpec",
    "optimal_per_episode",
    "per_episode_references",
    "plan_bayes_optimal",
    "posterior_sampling_monte_carlo",
    "posterior_sampling_per_episode",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("algorithms.references.gridworld"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def write_references(description: str, compute: Callable[[], dict[str, Any]], default_out: Path,
                     argv: Sequence[str] | None = None) -> tuple[dict[str, Any], Path]:
    """The command line of a reference module: ``--out`` (default ``default_out``), compute, write the JSON."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=default_out, help="JSON file to write")
    args = parser.parse_args(argv)
    refs = compute()
    args.out.write_text(json.dumps(refs, indent=1) + "\n")
    return refs, args.out
