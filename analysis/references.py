"""The GridWorld reference values (optimal, Bayes-optimal, posterior sampling) as analysis reads them: from the
JSON file ``algorithms/references/gridworld.py`` writes (read as data; no agent code is imported)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REFERENCES = REPO_ROOT / "algorithms" / "references" / "gridworld_references.json"


def load_references(path: Path | None) -> tuple[dict[str, Any] | None, str | None]:
    """The reference JSON, or ``None`` and a note saying why there are no reference lines."""
    if path is None:
        return None, None
    if not path.exists():
        return None, f"no reference file {path}: reference lines skipped"
    try:
        refs = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"reference file {path} unreadable ({exc}): reference lines skipped"
    if not isinstance(refs, dict):
        return None, f"reference file {path} is not a JSON object: reference lines skipped"
    return refs, None


def references_for(refs: dict[str, Any] | None, env: str, episodes: int) -> tuple[dict[str, list[float]], str | None]:
    """Per-episode reference values for ``env`` evaluated with ``episodes`` episodes (key ``K<episodes>``).

    The file holds GridWorld references: they apply to envs named ``gridworld*``, or to an env named as a top-level
    key. Entries that are not a number or a list of numbers (e.g. a description) are ignored.
    """
    if refs is None:
        return {}, None
    if env in refs and isinstance(refs[env], dict):
        refs = refs[env]
    elif not env.startswith("gridworld"):
        return {}, None
    # two layouts: {"K": {"4": {...}}} (algorithms/references/gridworld.py writes this) or {"K4": {...}}
    by_k = refs["K"] if isinstance(refs.get("K"), dict) else {k[1:]: v for k, v in refs.items() if k.startswith("K")}
    block = by_k.get(str(episodes))
    if not isinstance(block, dict):
        have = ", ".join(f"K={k}" for k in by_k) or "none"
        return {}, f"{env}: no K={episodes} entry in the references (have: {have}): reference lines skipped"
    methods = refs.get("methods")  # when the file names its reference policies, draw only those
    names = set(methods) if isinstance(methods, dict | list) else None
    lines: dict[str, list[float]] = {}
    for name, values in block.items():
        if names is not None and name not in names:
            continue
        if isinstance(values, int | float) and not isinstance(values, bool):
            values = [values] * episodes
        if isinstance(values, list) and values and all(isinstance(v, int | float) for v in values):
            lines[name] = [float(v) for v in values]
    return lines, None
