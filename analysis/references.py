"""Reference lines as analysis reads them, from the JSON files ``make references`` writes (read as data; no agent
code is imported): GridWorld's exact optimal / Bayes-optimal / posterior-sampling values
(``algorithms/references/gridworld.py``), sparse PointRobot's known-goal optimum and semicircle searcher
(``algorithms/references/pointrobot.py``) and HalfCheetahVel's bound on a task-agnostic policy
(``algorithms/references/cheetah_vel.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.stats import clip_to_upper
from records.references import ENVS_WITH_REFERENCES, reference_file

DEFAULT_REFERENCES = [reference_file(env) for env in ENVS_WITH_REFERENCES]


def _load_one(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    if not path.exists():
        return None, f"no reference file {path}: reference lines skipped"
    try:
        refs = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"reference file {path} unreadable ({exc}): reference lines skipped"
    if not isinstance(refs, dict):
        return None, f"reference file {path} is not a JSON object: reference lines skipped"
    return refs, None


def load_references(paths: Path | list[Path] | None) -> tuple[dict[str, Any] | None, str | None]:
    """The reference JSON files merged into one object, or ``None`` and a note saying why there are no reference
    lines. A file that names its env (``"env": "pointrobot_sparse"``) goes under that key; a file that does not is
    merged as it is (its top-level keys, GridWorld's layout)."""
    if paths is None:
        return None, None
    merged: dict[str, Any] = {}
    notes = []
    for path in [paths] if isinstance(paths, Path) else list(paths):
        refs, note = _load_one(Path(path))
        if note:
            notes.append(note)
        if refs is None:
            continue
        if isinstance(refs.get("env"), str):
            merged[refs["env"]] = refs
        else:
            merged.update(refs)
    return (merged or None), ("; ".join(notes) or None)


def protocol_setting(refs: dict[str, Any], protocol: str) -> dict[str, Any] | None:
    """The ``settings`` block of an env's references that belongs to ``protocol`` (a task set it names: ``task
    set=pearl`` takes the ``pearl`` block), or ``None`` for the file's main block."""
    settings = refs.get("settings")
    if not isinstance(settings, dict) or not protocol:
        return None
    for part in protocol.split(", "):
        if part.startswith("task set="):
            name = part.split("=", 1)[1]
            if isinstance(settings.get(name), dict):
                return settings[name]
    return None


def references_for(refs: dict[str, Any] | None, env: str, episodes: int, key: str = "K",
                   protocol: str = "") -> tuple[dict[str, list[float]], str | None]:
    """Per-episode reference values for ``env`` evaluated with ``episodes`` episodes (key ``K<episodes>``; ``key``
    names another block of the same layout, e.g. ``success_K`` for success rates).

    The file holds GridWorld references: they apply to envs named ``gridworld*``, or to an env named as a top-level
    key. Entries that are not a number or a list of numbers (e.g. a description) are ignored.
    """
    if refs is None:
        return {}, None
    if env in refs and isinstance(refs[env], dict):
        refs = refs[env]
        setting = protocol_setting(refs, protocol)
        if setting is not None:  # a protocol with its own block (PointRobot: PEARL's 20 goals at H = 20)
            block = setting.get("return" if key == "K" else "success", {})
            return {name: [float(v) for v in values[:episodes]] for name, values in block.items()
                    if isinstance(values, list)}, None
    elif env.startswith("gridworld") and isinstance(refs.get("gridworld"), dict):
        refs = refs["gridworld"]
    elif not env.startswith("gridworld"):
        return {}, None
    # two layouts: {"K": {"4": {...}}} (algorithms/references/gridworld.py writes this) or {"K4": {...}}
    if key != "K":
        if not isinstance(refs.get(key), dict):
            return {}, None
        by_k = refs[key]
    else:
        by_k = refs["K"] if isinstance(refs.get("K"), dict) else {k[1:]: v for k, v in refs.items()
                                                                   if k.startswith("K")}
    block = by_k.get(str(episodes))
    if not isinstance(block, dict) and refs.get("per_episode_independent_of_K"):
        # an episode's value does not depend on the episodes after it: a longer curve's prefix is this K's curve
        longer = [int(k) for k, v in by_k.items() if str(k).isdigit() and int(k) >= episodes and isinstance(v, dict)]
        if longer:
            block = {name: values[:episodes] if isinstance(values, list) else values
                     for name, values in by_k[str(min(longer))].items()}
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


def upper_bound(refs: dict[str, Any] | None, env: str, lines: dict[str, list[float]],
                eval_rows: pd.DataFrame) -> list[float] | None:
    """Per episode, the expected return no policy exceeds, where the env's reference file names such a line among
    the ``lines`` drawn (``"upper_bound": {"line": "optimal", "tasks": 21}``: GridWorld's known-goal optimum, which
    bounds even an agent told the goal) and every meta-test in ``eval_rows`` covers as many tasks as its expectation
    averages (every candidate goal; a sample of them can do better); else ``None``. The mean return over those tasks
    cannot exceed it, so neither need its confidence interval."""
    if refs is None or eval_rows.empty:
        return None
    tasks = int(eval_rows.groupby(["run_id", "frames"])["task"].nunique().min())
    block = refs.get(env) if isinstance(refs.get(env), dict) else \
        refs.get("gridworld") if env.startswith("gridworld") and isinstance(refs.get("gridworld"), dict) else refs
    bound = block.get("upper_bound") if isinstance(block, dict) else None
    if not isinstance(bound, dict) or bound.get("tasks") != tasks:
        return None
    return lines.get(str(bound.get("line")))


def within_bound(table: pd.DataFrame, refs: dict[str, Any] | None, env: str, eval_rows: pd.DataFrame,
                 protocol: str = "") -> pd.DataFrame:
    """A table of mean returns per episode (``analysis.stats.per_episode`` or ``aggregate``) with its intervals cut
    at the env's :func:`upper_bound` for the meta-tests ``eval_rows`` it was computed from, where there is one."""
    if eval_rows.empty:
        return table
    lines, _ = references_for(refs, env, int(eval_rows["episode"].max()), protocol=protocol)
    bound = upper_bound(refs, env, lines, eval_rows)
    return clip_to_upper(table, dict(enumerate(bound, start=1))) if bound else table


def panel_references(refs: dict[str, Any] | None, env: str, setting: str | None, episodes: int,
                     value: str = "return") -> dict[str, list[float]]:
    """Reference lines for one panel: the ``settings[setting]`` block of the env's reference file (PointRobot: one per
    protocol), else the env's per-K block (GridWorld)."""
    if refs is None:
        return {}
    env_refs = refs.get(env) if isinstance(refs.get(env), dict) else None
    if setting and env_refs and isinstance(env_refs.get("settings", {}).get(setting), dict):
        block = env_refs["settings"][setting].get(value, {})
        return {name: [float(v) for v in values[:episodes]] for name, values in block.items()
                if isinstance(values, list)}
    lines, _ = references_for(refs, env, episodes, key="K" if value == "return" else "success_K")
    return lines
