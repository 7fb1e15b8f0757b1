"""Checkpoint files that load without unpickling code, survive a damaged write, and say what went wrong.

``torch.load(weights_only=False)`` unpickles: a checkpoint from someone else (a shared results folder, a downloaded
run) could run arbitrary code. Checkpoints here hold only what ``torch.load(weights_only=True)`` accepts: tensors,
numbers, strings, ``None``, lists, tuples and dicts. Numpy arrays and scalars, which agents and envs keep (buffers,
RNG states, MuJoCo state), are stored as tagged dicts holding a ``uint8`` tensor of their bytes, and turned back into
numpy on load. Every checkpoint is loaded with ``weights_only=True``: a file whose pickle names any other global
(a ``__reduce__`` that calls ``os.system``, say) is refused before anything in it runs.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

_ARRAY, _SCALAR = "__numpy_array__", "__numpy_scalar__"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, damaged, or holds something that a weights-only load refuses."""


def to_safe(obj: Any, where: str = "state") -> Any:
    """``obj`` with numpy arrays and scalars replaced by tagged dicts of tensors (see the module docstring)."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError(f"{where}: numpy object arrays cannot be stored in a weights-only checkpoint")
        # the shape is the array's own: np.ascontiguousarray returns at least 1-d, and a 0-d array (HalfCheetah's
        # kept x position) restored as shape (1,) breaks code that takes float() of it
        data = np.ascontiguousarray(obj)
        flat = data.reshape(-1).view(np.uint8)
        # torch.save writes the bytes at once, so a view of the array suffices (a copy only for read-only arrays)
        return {_ARRAY: data.dtype.str, "shape": list(obj.shape),
                "bytes": torch.from_numpy(flat if flat.flags.writeable else flat.copy())}
    if isinstance(obj, np.generic):
        return {_SCALAR: obj.dtype.str, "value": obj.item()}
    if isinstance(obj, dict):
        return {key: to_safe(value, f"{where}[{key!r}]") for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        converted = [to_safe(value, f"{where}[{i}]") for i, value in enumerate(obj)]
        return converted if isinstance(obj, list) else tuple(converted)
    if isinstance(obj, torch.Tensor):
        # every tensor is stored on the CPU, so that a checkpoint resumes on any device (the loader moves it)
        return obj if obj.device.type == "cpu" else obj.detach().cpu()
    if obj is None or isinstance(obj, bool | int | float | str | bytes):
        return obj
    raise TypeError(f"{where}: a {type(obj).__name__} cannot be stored in a weights-only checkpoint")


def from_safe(obj: Any) -> Any:
    """The inverse of :func:`to_safe`."""
    if isinstance(obj, dict):
        if _ARRAY in obj:
            raw = obj["bytes"].numpy().tobytes()
            return np.frombuffer(raw, dtype=np.dtype(obj[_ARRAY])).reshape(obj["shape"]).copy()
        if _SCALAR in obj:
            return np.dtype(obj[_SCALAR]).type(obj["value"])
        return {key: from_safe(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [from_safe(value) for value in obj]
    if isinstance(obj, tuple):
        return tuple(from_safe(value) for value in obj)
    return obj


def save_checkpoint(state: dict[str, Any], path: Path, keep_previous: bool = False) -> None:
    """Write ``state`` to ``path`` atomically (a kill mid-write leaves the old file). With ``keep_previous`` the
    file it replaces is kept as ``<name>.previous.pt``, the fallback when the new one turns out damaged."""
    path = Path(path)
    tmp = path.with_suffix(".pt.tmp")
    torch.save(to_safe(state), tmp)
    if keep_previous and path.exists():
        os.replace(path, previous_path(path))
    os.replace(tmp, path)


def previous_path(path: Path) -> Path:
    return Path(path).with_suffix(".previous.pt")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; :class:`CheckpointError` names the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: refused, it holds objects a weights-only load does not accept "
                              f"(a pickle that could run code): {reason}") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: damaged or not a checkpoint ({reason})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a checkpoint (a {type(state).__name__}, not a dict)")
    return from_safe(state)
