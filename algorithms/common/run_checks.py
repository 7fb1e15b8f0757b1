"""Checks of a run's settings before anything is built or written: a bad value gives one line that names the key and
what is allowed (``ConfigError``; ``train.py`` prints it and exits 2), never a traceback or a half-made run folder."""

from __future__ import annotations

import difflib
import math
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from algorithms.common.errors import ConfigError


def _whole(value: Any) -> int | None:
    """``value`` as a whole number (``5e6`` and ``5000000.0`` count), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _count(minimum: int, nullable: bool = False) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value is None and nullable:
            return None
        number = _whole(value)
        if number is None or number < minimum:
            allowed = f"a whole number >= {minimum}" + (" or null" if nullable else "")
            return f"must be {allowed}"
        return None
    return check


def _positive_number(value: Any) -> str | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    return None if ok else "must be a number > 0"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _threads(value: Any) -> str | None:
    if value == "auto":
        return None
    number = _whole(value)
    return None if number is not None and number >= 1 else "must be 'auto' or a whole number >= 1"


def _choice(*allowed: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in allowed else f"must be one of {', '.join(allowed)}"
    return check


#: dotted key -> check returning what is wrong (``None``: fine); keys missing from a config are not checked
CHECKS: dict[str, Callable[[Any], str | None]] = {
    "seed": _count(0),
    "torch_threads": _count(1),
    "update_threads": _threads,
    "device": _choice("auto", "cpu", "cuda"),
    "progress": _boolean,
    "resume": _boolean,
    "allow_default_hyperparameters": _boolean,
    "train.num_frames": _count(0),
    "train.eval_interval_frames": _count(1),
    "train.log_interval_iterations": _count(1),
    "train.checkpoint_interval_frames": _count(1),
    "train.log_interval_seconds": _positive_number,
    "eval.episodes": _count(1, nullable=True),
    "eval.final_episodes": _count(1, nullable=True),
    "eval.num_tasks": _count(1, nullable=True),
    "eval.deterministic": _boolean,
}


def _shown(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def check_results_dir(results_dir: Any) -> None:
    """``results_dir`` must be a folder this process can write in, or one it can make: not a file, not under a file,
    not on a read-only file system (checked by writing nothing that stays: a temporary file, removed at once)."""
    path = Path(str(results_dir)).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"results_dir={results_dir} is a file; it must be a folder (made if missing)")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"results_dir={results_dir} is under the file {existing}; it must be a folder (made if "
                          "missing)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ConfigError(f"results_dir={results_dir}: cannot write in {existing} ({exc.strerror or exc}); choose a "
                          "folder you can write to") from None


def check_run_config(cfg: DictConfig) -> None:
    """Every checked key of ``cfg`` (:data:`CHECKS`) and ``results_dir``; raises :class:`ConfigError` for the first bad
    one."""
    for key, check in CHECKS.items():
        value = OmegaConf.select(cfg, key, throw_on_missing=False, default="__absent__")
        if value == "__absent__":
            continue
        problem = check(value)
        if problem:
            raise ConfigError(f"{key}={_shown(value)} {problem}")
    if "results_dir" in cfg:
        check_results_dir(cfg.results_dir)


def all_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config (nested mappings flattened)."""
    if not isinstance(cfg, dict | DictConfig):
        return []
    keys = []
    for key, value in (cfg.items() if isinstance(cfg, dict) else cfg.items_ex(resolve=False)):
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        keys += all_keys(value, f"{dotted}.")
    return keys


def near_matches(key: str, candidates: Iterable[str]) -> list[str]:
    """The candidates that look like a misspelling of ``key`` (same parent preferred)."""
    candidates = list(candidates)
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    siblings = [c for c in candidates if (c.rsplit(".", 1)[0] if "." in c else "") == parent]
    return difflib.get_close_matches(key, siblings, n=2, cutoff=0.6) or difflib.get_close_matches(
        key, candidates, n=2, cutoff=0.75)


_NOT_IN_STRUCT = re.compile(r"Could not override '(?P<full>[^']+)'|full_key: (?P<full2>\S+)")
_WRONG_TYPE = re.compile(r"Value '(?P<value>[^']*)' (?:of type '\w+' could not be converted to (?P<type>\w+)|"
                         r"is not a valid (?P<type2>\w+))[^\n]*\n\s*full_key: (?P<key>\S+)")
_NOT_A_LIST = re.compile(r"is not a ListConfig, list or tuple[^\n]*\n\s*full_key: (?P<key>\S+)")
_TYPE_WORDS = {"Integer": "a whole number", "Float": "a number", "bool": "true or false", "str": "a string"}
_NO_GROUP_OPTION = re.compile(r"Could not find '(?P<group>[^/']+)/(?P<option>[^']+)'")


def explain_composition_error(message: str, default_keys: Iterable[str], groups: dict[str, list[str]]) -> str:
    """One line for a Hydra composition error: the key or group option that does not exist, and what comes close.
    ``groups`` maps a config group (``algo``, ``env``, ...) to its options."""
    match = _WRONG_TYPE.search(message)
    if match:
        kind = match.group("type") or match.group("type2")
        return f"{match.group('key')}={match.group('value')} must be {_TYPE_WORDS.get(kind, kind)}"
    match = _NOT_A_LIST.search(message)
    if match:
        return f"{match.group('key')} must be a list, e.g. {match.group('key')}=[32,32]"
    match = _NOT_IN_STRUCT.search(message)
    if match:
        full = match.group("full") or match.group("full2")
        close = near_matches(full, default_keys)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        return f"unknown config key {full}{hint} (python train.py --help lists the keys)"
    match = _NO_GROUP_OPTION.search(message)
    if match:
        group, option = match.group("group"), match.group("option")
        options = groups.get(group, [])
        close = difflib.get_close_matches(option, options, n=2, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        return f"{group}={option} does not exist{hint} (choose from: {', '.join(options)})"
    first = next((line.strip() for line in message.splitlines() if line.strip()), message)
    return first
