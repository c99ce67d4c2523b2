"""One validation layer for what comes from files: labels, configs, checkpoints, pickles.

Every check raises ``ValueError`` whose message starts with the file (or the config) and
names the field and, for per-sample data, the first bad sample's index, e.g.::

    /data/FreiHAND/training_K.json: field 'K': sample 2: focal lengths must be > 0, got fx=0, fy=0

What is checked (the README's "Data" section says the same):

- labels: arrays of numbers of the expected shape (not ragged, not strings, not a mapping),
  finite, intrinsics invertible with positive focal lengths and last row ``(0, 0, 1)``,
  3D points in front of the camera (z > 0), positive finite scales;
- configs: every field of the dataclass has its declared type (``steps: ten``,
  ``batch_size: 8.5`` and ``use_bmc: 'no'`` are refused, not coerced) and a usable range;
- checkpoints: loaded with ``torch.load(weights_only=True)`` (tensors and plain containers
  only: no code runs from the file), with the keys a run needs;
- pickles (RHD, HO-3D annotations): a restricted unpickler that admits only numpy arrays,
  numpy scalars and builtin containers, so a crafted file cannot run code.
"""
from __future__ import annotations

import dataclasses
import math
import os
import pickle
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["as_array", "check_finite", "check_intrinsics", "check_in_front", "check_positive", "check_labels",
           "check_fields", "safe_pickle_load", "load_checkpoint", "first_bad"]


def _where(where: str | os.PathLike, field: str, index: int | None = None, ids: Any = None) -> str:
    s = f"{where}: field {field!r}"
    if index is None:
        return s
    return f"{s}: sample {index if ids is None else ids[index]}"


def first_bad(mask: np.ndarray) -> int | None:
    """Index of the first sample (axis 0) where ``mask`` is True anywhere, or None."""
    m = np.asarray(mask).reshape(len(mask), -1).any(1) if np.ndim(mask) > 1 else np.asarray(mask)
    idx = np.flatnonzero(m)
    return int(idx[0]) if len(idx) else None


def as_array(value: Any, where: str | os.PathLike, field: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """``value`` (parsed JSON, a pickled array, ...) as a float64 array of ``shape`` (``None``
    matches any length), or a ``ValueError`` naming ``where`` and ``field``: a mapping where a
    list is expected, ragged lists, strings and booleans are refused."""
    if isinstance(value, dict):
        raise ValueError(f"{_where(where, field)}: expected a list of numbers, got a mapping (keys "
                         f"{list(value)[:3]}{'...' if len(value) > 3 else ''})")
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{_where(where, field)}: expected numbers, got the string {value[:40]!r}")
    try:
        arr = np.asarray(value)
    except ValueError as e:  # numpy >= 1.24 refuses ragged nested lists
        raise ValueError(f"{_where(where, field)}: ragged lists (the entries differ in length: {e})") from None
    if arr.dtype == object:
        raise ValueError(f"{_where(where, field)}: ragged or mixed entries (not an array of numbers)")
    if arr.dtype.kind not in "iuf":
        what = {"U": "strings", "S": "strings", "b": "booleans"}.get(arr.dtype.kind, f"dtype {arr.dtype}")
        raise ValueError(f"{_where(where, field)}: expected numbers, got {what}")
    arr = arr.astype(np.float64)
    if arr.ndim != len(shape) or any(s is not None and a != s for a, s in zip(arr.shape, shape)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{_where(where, field)}: shape {arr.shape}, expected {want}")
    return arr


def check_finite(arr: np.ndarray, where: str | os.PathLike, field: str, skip: np.ndarray | None = None,
                 ids: Any = None) -> None:
    """Every value of ``arr (N, ...)`` finite (samples where ``skip`` is True are not checked).
    ``ids`` (here and below): the sample ids messages name (default: the position in ``arr``)."""
    bad = ~np.isfinite(np.asarray(arr, dtype=np.float64))
    if skip is not None:
        bad &= ~np.asarray(skip, dtype=bool).reshape((len(bad),) + (1,) * (bad.ndim - 1))
    i = first_bad(bad)
    if i is not None:
        v = np.asarray(arr)[i]
        kind = "NaN" if np.isnan(v).any() else "infinite"
        raise ValueError(f"{_where(where, field, i, ids)}: {kind} value(s)")


def check_intrinsics(K: np.ndarray, where: str | os.PathLike, field: str = "K", ids: Any = None) -> None:
    """``K (N, 3, 3)``: finite, ``fx, fy > 0``, last row ``(0, 0, 1)``, invertible."""
    K = np.asarray(K, dtype=np.float64)
    check_finite(K, where, field, ids=ids)
    i = first_bad((K[:, 0, 0] <= 0) | (K[:, 1, 1] <= 0))
    if i is not None:
        raise ValueError(f"{_where(where, field, i, ids)}: focal lengths must be > 0, got fx={K[i, 0, 0]:g}, "
                         f"fy={K[i, 1, 1]:g} (an all-zero or transposed matrix?)")
    i = first_bad(np.abs(K[:, 2] - [0.0, 0.0, 1.0]).max(1) > 1e-6)
    if i is not None:
        raise ValueError(f"{_where(where, field, i, ids)}: last row must be (0, 0, 1), got {K[i, 2].tolist()} "
                         f"(a transposed matrix?)")
    i = first_bad(np.abs(np.linalg.det(K)) < 1e-12)
    if i is not None:
        raise ValueError(f"{_where(where, field, i, ids)}: matrix is singular")


def check_in_front(xyz: np.ndarray, where: str | os.PathLike, field: str = "xyz", min_z: float = 1e-4,
                   skip: np.ndarray | None = None, ids: Any = None) -> None:
    """Every 3D point of ``xyz (N, J, 3)`` (metres, camera frame) finite and in front of the camera."""
    xyz = np.asarray(xyz, dtype=np.float64)
    check_finite(xyz, where, field, skip, ids)
    bad = xyz[..., 2] < min_z
    if skip is not None:
        bad &= ~np.asarray(skip, dtype=bool)[:, None]
    i = first_bad(bad)
    if i is not None:
        j = int(np.flatnonzero(bad[i])[0])
        raise ValueError(f"{_where(where, field, i, ids)}: joint {j} is behind the camera or on its plane "
                         f"(z = {xyz[i, j, 2]:.4g} m; the camera looks along +z)")


def check_positive(x: np.ndarray, where: str | os.PathLike, field: str, skip: np.ndarray | None = None,
                   ids: Any = None) -> None:
    x = np.asarray(x, dtype=np.float64)
    check_finite(x, where, field, skip, ids)
    bad = x <= 0
    if skip is not None:
        bad &= ~np.asarray(skip, dtype=bool)
    i = first_bad(bad)
    if i is not None:
        raise ValueError(f"{_where(where, field, i, ids)}: must be > 0, got {x[i]:g}")


def check_labels(where: str | os.PathLike, *, uv: np.ndarray, xyz: np.ndarray, K: np.ndarray, visible: np.ndarray,
                 has_3d: np.ndarray, scale: np.ndarray, offset: int = 0, **_: Any) -> None:
    """The labels of a batch of cache samples (what :class:`~bmclib.data.cache.CacheWriter`
    stores): K valid; uv finite at visible joints; for 3D-labelled samples xyz finite and in
    front of the camera and scale > 0. Sample indices in messages are ``offset + i``."""
    ids = range(offset, offset + len(K))
    check_intrinsics(K, where, ids=ids)
    uv = np.asarray(uv, dtype=np.float64)
    bad = ~np.isfinite(uv).all(-1) & np.asarray(visible, dtype=bool)
    i = first_bad(bad)
    if i is not None:
        raise ValueError(f"{_where(where, 'uv', i, ids)}: non-finite 2D label at visible joint "
                         f"{int(np.flatnonzero(bad[i])[0])}")
    no3d = ~np.asarray(has_3d, dtype=bool)
    check_in_front(xyz, where, "xyz", skip=no3d, ids=ids)
    check_positive(scale, where, "scale", skip=no3d, ids=ids)


# ----------------------------------------------------------------------------- configs
def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
            and math.isfinite(float(value))
    if hint is str:
        return isinstance(value, str)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint)
    return True


def _type_name(hint: Any) -> str:
    args = typing.get_args(hint)
    if args:
        return " or ".join(_type_name(a) for a in args)
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "a string",
            type(None): "null"}.get(hint, getattr(hint, "__name__", str(hint)))


def check_fields(obj: Any, where: str) -> None:
    """Every field of the dataclass ``obj`` (and of nested dataclasses) has its declared type;
    a ``ValueError`` names ``where`` and the field: ``config.steps must be an integer, got 'ten'``."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        hint = hints.get(f.name, Any)
        if not _type_ok(value, hint):
            raise ValueError(f"{where}.{f.name} must be {_type_name(hint)}, got {value!r}")
        if dataclasses.is_dataclass(value):
            check_fields(value, f"{where}.{f.name}")


# ----------------------------------------------------------------------------- pickles
#: the globals the RHD and HO-3D annotation pickles need (numpy arrays, dtypes and scalars,
#: under numpy 1.x and 2.x module names)
SAFE_PICKLE_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol 2 stores bytes (an array's buffer) under Python 3
    ("builtins", "list"), ("builtins", "dict"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "int"), ("builtins", "float"), ("builtins", "complex"),
    ("__builtin__", "list"), ("__builtin__", "dict"), ("__builtin__", "tuple"), ("__builtin__", "set"),
})


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in SAFE_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays, numpy scalars and "
                                     f"builtin containers are admitted (the file may carry code)")


def safe_pickle_load(path: str | os.PathLike, encoding: str = "ASCII") -> Any:
    """Unpickle ``path`` admitting only numpy arrays / scalars and builtin containers; a file
    that names anything else (``os.system``, ...) is refused with a ``ValueError`` before any of
    it runs."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _SafeUnpickler(f, encoding=encoding).load()
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: cannot be read ({e})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError,
            UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot be read ({type(e).__name__}: {e}); the file may be truncated or "
                         f"not a pickle") from None


# ----------------------------------------------------------------------------- checkpoints
def _unpickling_reason(message: str) -> str:
    """What was wrong with the file, from torch's weights-only refusal, without torch's advice (which
    suggests loading with ``weights_only=False``: for a file that names code, the unsafe load)."""
    import re

    m = re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", message)
    if m:
        return f"it names {m.group(1)!r}, which is neither a tensor nor a plain container"
    m = re.search(r"Unsupported operand (\d+)", message)
    if m:
        return f"not a torch checkpoint (unsupported pickle operand {m.group(1)})"
    return "not a checkpoint torch can read safely"


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu",
                    need: tuple[str, ...] = ("model", "config", "step")) -> dict[str, Any]:
    """A training checkpoint, loaded with ``weights_only=True`` (no code runs from the file)
    and checked for the keys in ``need``; every failure is a ``ValueError`` naming the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty checkpoint file (delete it to start the run again)")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: refused: {_unpickling_reason(str(e))}; a checkpoint holds tensors and plain "
                         f"containers only, and nothing else in it is ever loaded (delete the file, or train "
                         f"the run again)") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, TypeError) as e:
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:200]}); the file may "
                         f"be truncated or corrupted (delete it to start the run again)") from None
    if not isinstance(ck, dict):
        raise ValueError(f"{path}: expected a checkpoint mapping, got {type(ck).__name__}")
    missing = [k for k in need if k not in ck]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {missing} (has {sorted(ck)})")
    if "config" in need and not isinstance(ck["config"], dict):
        raise ValueError(f"{path}: field 'config' must be a mapping, got {type(ck['config']).__name__}")
    if "step" in need and (not isinstance(ck["step"], int) or isinstance(ck["step"], bool) or ck["step"] < 0):
        raise ValueError(f"{path}: field 'step' must be an integer >= 0, got {ck['step']!r}")
    if "model" in need and not (isinstance(ck["model"], dict)
                                and all(isinstance(v, torch.Tensor) for v in ck["model"].values())):
        raise ValueError(f"{path}: field 'model' must be a state dict of tensors")
    return ck
