"""Exact reference policies and values for the benchmark's envs (VariBAD paper fig. 1e / fig. 12 reference lines).

Computed from the environment definitions, never typed in (:mod:`algorithms.references.gridworld`,
:mod:`~algorithms.references.pointrobot`, :mod:`~algorithms.references.cheetah_vel`); the values are kept in
``records/reference_data/`` for ``analysis`` to draw.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from records.command_line import command_line


def write_references(description: str, compute: Callable[[], dict[str, Any]], default_out: Path,
                     argv: Sequence[str] | None = None) -> tuple[dict[str, Any], Path]:
    """The command line of a reference module: ``--out`` (default ``default_out``), compute, write the JSON."""
    parser = command_line(description)
    parser.add_argument("--out", type=Path, default=default_out, help="JSON file to write")
    args = parser.parse_args(argv)
    refs = compute()
    args.out.write_text(json.dumps(refs, indent=1) + "\n")
    return refs, args.out
