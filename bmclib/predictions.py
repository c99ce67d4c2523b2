"""Prediction and camera file formats, read and written in one place.

FreiHAND's ``pred.json`` (``[xyz_list, verts_list]``, or a plain list of poses), this project's
``predictions.npz`` (key ``xyz``; any other key named) or a ``.npy`` array of ``(N, 21, 3)`` joints in metres, MediaPipe Hands' JSON output,
and per-sample intrinsics. Every reader validates what it returns and names the file, the
field and the sample at fault.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .validate import as_array, check_finite

__all__ = ["load_predictions", "read_predictions", "write_predictions", "read_pred_json", "write_pred_json",
           "read_mediapipe", "load_intrinsics"]


def load_predictions(path: str | os.PathLike, key: str | None = None, non_finite: str = "error") -> np.ndarray:
    """``(N, 21, 3)`` joints from a FreiHAND ``pred.json`` (``[xyz_list, verts_list]``, or a plain
    list of N poses of 21 ``[x, y, z]``), an ``.npz`` (the array ``key``; default ``xyz``, or the
    file's only array) or a ``.npy`` array.

    ``non_finite``: what a pose with a NaN / inf coordinate does: ``"error"`` (a ``ValueError``
    naming the file, the field and the first such pose) or ``"keep"`` (returned as it is, for a
    caller that skips and counts them). A file with no pose, a wrong shape or an unreadable file is a
    ``ValueError`` naming the file and the field."""
    if non_finite not in ("error", "keep"):
        raise ValueError(f"non_finite: expected 'error' or 'keep', got {non_finite!r}")
    path = Path(path)
    if path.suffix == ".json":
        if key is not None:
            raise ValueError(f"{path}: key={key!r} applies to an .npz, not to a .json")
        xyz, field = read_pred_json(path, non_finite=non_finite)[0], "xyz_list"
    else:
        if not path.is_file():
            raise FileNotFoundError(f"predictions not found: {path}")
        if path.suffix == ".npz":
            xyz, field = _read_npz_array(path, key)
        elif path.suffix == ".npy":
            if key is not None:
                raise ValueError(f"{path}: key={key!r} applies to an .npz, not to a .npy")
            xyz, field = _load_npy(path), "xyz"
        else:
            raise ValueError(f"{path}: expected .json (FreiHAND pred.json or a list of poses), .npz or .npy")
        xyz = as_array(xyz, path, field, (None, 21, 3))
    if len(xyz) == 0:
        raise ValueError(f"{path}: field '{field}': no poses (shape {xyz.shape})")
    if non_finite == "error":
        check_finite(xyz, path, field)
    return xyz


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:  # an object array (pickled) or a broken header
        raise ValueError(f"{path}: not a plain numeric .npy ({e})") from None
    except (EOFError, OSError) as e:
        raise ValueError(f"{path}: not a readable .npy ({type(e).__name__}: {e})") from None


def _read_npz_array(path: Path, key: str | None) -> tuple[np.ndarray, str]:
    """``(array, its name)``: the array ``key`` of an ``.npz`` (default ``xyz``, else the file's only
    array when it is ``(N, 21, 3)``), read without pickle."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            if key is None and "xyz" not in names and len(names) == 1:
                only = z[names[0]]
                if only.ndim == 3 and only.shape[1:] == (21, 3):
                    return only, names[0]
            want = key or "xyz"
            if want not in names:
                raise ValueError(f"{path}: no {want!r} array (has {names}); name the joints' array with --key")
            return z[want], want
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ValueError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from None


def read_pred_json(path: str | os.PathLike, non_finite: str = "error") -> tuple[np.ndarray, np.ndarray | None]:
    """FreiHAND's ``pred.json``: ``[xyz_list, verts_list]`` -> ``(xyz (N, 21, 3), verts (N, 778, 3) or None)``;
    a plain list of N poses (``[[[x, y, z] x 21] x N]``) is read as ``(xyz, None)``. ``non_finite``:
    as in :func:`load_predictions`."""
    from .results import read_json

    path = Path(path)
    data = read_json(path, f"predictions not found: {path}")
    if isinstance(data, list) and data and _is_pose_list(data):
        xyz = as_array(data, path, "poses", (None, 21, 3))
        if non_finite == "error":
            check_finite(xyz, path, "poses")
        return xyz, None
    if not isinstance(data, list) or len(data) != 2:
        got = (f"a list of length {len(data)}" if isinstance(data, list) else
               f"a dict with keys {sorted(map(str, data))[:8]}" if isinstance(data, dict) else
               f"a {type(data).__name__}")
        raise ValueError(f"{path}: expected a list [xyz_list, verts_list] or a list of poses (N x 21 x 3), got {got}")
    if data[0] == []:
        raise ValueError(f"{path}: field 'xyz_list': no poses")
    xyz = as_array(data[0], path, "xyz_list", (None, 21, 3))
    if non_finite == "error":
        check_finite(xyz, path, "xyz_list")
    verts = as_array(data[1], path, "verts_list", (len(xyz), 778, 3)) if data[1] else None
    return xyz, verts


def _is_pose_list(data: list) -> bool:
    """Whether parsed JSON is a plain list of poses (its first entry 21 lists of numbers), not
    FreiHAND's ``[xyz_list, verts_list]`` (whose first entry is a list of poses)."""
    first = data[0]
    return (isinstance(first, list) and len(first) == 21 and isinstance(first[0], list) and bool(first[0])
            and not isinstance(first[0][0], list))


def write_pred_json(path: str | os.PathLike, xyz: np.ndarray, verts: np.ndarray | None = None) -> Path:
    """Write FreiHAND's submission format. Without vertices (this project predicts joints only)
    every sample gets 778 zero vertices, so the file is accepted; its mesh scores are meaningless."""
    import json

    from .results import write_text_atomic

    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 3 or xyz.shape[1:] != (21, 3):
        raise ValueError(f"xyz: expected (N, 21, 3), got {xyz.shape}")
    if verts is None:
        verts = np.zeros((len(xyz), 778, 3))
    verts = np.asarray(verts, dtype=np.float64)
    if verts.shape != (len(xyz), 778, 3):
        raise ValueError(f"verts: expected ({len(xyz)}, 778, 3) for {len(xyz)} poses, got {verts.shape}")
    return write_text_atomic(path, json.dumps([xyz.tolist(), verts.tolist()]))


def read_mediapipe(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Hands from MediaPipe Hands output saved as JSON: ``(xyz (N, 21, 3), sides)``, one entry
    per detected hand, frames in order, ``sides[i]`` ``"left"`` / ``"right"`` — the side of the
    *landmarks' geometry*, which is what the audit needs.

    The file holds one frame or a list of frames, each either

    * the Tasks API's ``HandLandmarkerResult`` as a mapping: ``handedness`` (per hand a list
      of categories with ``category_name`` "Left" / "Right"), ``hand_world_landmarks`` (per hand
      21 landmarks), optionally ``hand_landmarks``; or
    * the legacy ``mp.solutions.hands`` output through ``MessageToDict``: ``multi_handedness``
      (per hand ``{"classification": [{"label": ...}]}``), ``multi_hand_world_landmarks``
      (per hand ``{"landmark": [...]}``).

    A landmark is ``{"x", "y", "z"}`` or ``[x, y, z]``. World landmarks (metres, origin near the
    hand's centre) are used as camera-frame joints (MediaPipe's x right, y down, z away from
    the camera); MediaPipe's 21 landmarks are in our joint order. **Handedness:** the Tasks
    API labels the subject's hand and inverts the label for a mirrored image, so the label is
    the landmarks' side; the legacy API assumes a mirrored (selfie) input and labels the
    subject's hand under that assumption, so its landmarks are always of the *other* side
    than its label. Each is read accordingly. Wrong joint counts, non-finite values, unknown
    labels and a handedness list that does not match the hands are errors naming the frame
    and hand."""
    from .results import read_json

    path = Path(path)
    data = read_json(path, f"MediaPipe output not found: {path}")
    frames = data if isinstance(data, list) else [data]
    xyz, sides = [], []
    for f, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise ValueError(f"{path}: frame {f}: expected a mapping of MediaPipe results, got {type(frame).__name__}")
        if "hand_world_landmarks" in frame or "handedness" in frame:
            hands, labels, legacy = frame.get("hand_world_landmarks"), frame.get("handedness"), False
            field, hfield = "hand_world_landmarks", "handedness"
        elif "multi_hand_world_landmarks" in frame or "multi_handedness" in frame:
            hands = [h.get("landmark") if isinstance(h, dict) else h for h in frame.get("multi_hand_world_landmarks") or []]
            labels = [h.get("classification") if isinstance(h, dict) else h for h in frame.get("multi_handedness") or []]
            legacy, field, hfield = True, "multi_hand_world_landmarks", "multi_handedness"
        else:
            raise ValueError(f"{path}: frame {f}: no MediaPipe hands (expected 'hand_world_landmarks' and "
                             f"'handedness', or 'multi_hand_world_landmarks' and 'multi_handedness'); has {sorted(frame)}")
        hands, labels = hands or [], labels or []
        if len(labels) != len(hands):
            raise ValueError(f"{path}: frame {f}: field '{hfield}': {len(labels)} handedness entries for "
                             f"{len(hands)} hands in '{field}'")
        for h, (marks, cats) in enumerate(zip(hands, labels)):
            where = f"{path}: frame {f}: hand {h}"
            if not isinstance(marks, list) or len(marks) != 21:
                raise ValueError(f"{where}: field '{field}': expected 21 landmarks, got "
                                 f"{len(marks) if isinstance(marks, list) else type(marks).__name__}")
            try:
                pts = [[m["x"], m["y"], m["z"]] if isinstance(m, dict) else list(m) for m in marks]
                arr = np.asarray(pts, dtype=np.float64)
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{where}: field '{field}': landmarks must be {{x, y, z}} or [x, y, z] ({e})") from None
            if arr.shape != (21, 3) or not np.isfinite(arr).all():
                raise ValueError(f"{where}: field '{field}': expected 21 finite (x, y, z), got shape {arr.shape}"
                                 + ("" if arr.shape != (21, 3) else " with NaN / inf"))
            top = cats[0] if isinstance(cats, list) and cats else cats
            label = (top.get("category_name", top.get("label")) if isinstance(top, dict) else top)
            if not isinstance(label, str) or label.lower() not in ("left", "right"):
                raise ValueError(f"{where}: field '{hfield}': handedness must be 'Left' or 'Right', got {label!r}")
            side = label.lower()
            if legacy:
                side = "left" if side == "right" else "right"
            xyz.append(arr)
            sides.append(side)
    if not xyz:
        raise ValueError(f"{path}: no hands in {len(frames)} frame(s)")
    return np.stack(xyz), sides


def load_intrinsics(path: str | os.PathLike) -> np.ndarray:
    """Per-sample camera intrinsics ``(N, 3, 3)`` in pixels from a prepared cache folder (its
    ``K``), a ``.npy`` array or a JSON list of 3x3 matrices. A wrong shape, a non-finite value,
    or a zero focal length is a ``ValueError`` naming the
    file and the field."""
    from .validate import check_intrinsics

    path = Path(path)
    if path.is_dir():
        from .data.cache import PreparedCache

        K = PreparedCache(path).annotations["K"].astype(np.float64)
    elif path.suffix == ".npy":
        if not path.is_file():
            raise FileNotFoundError(f"intrinsics not found: {path}")
        K = np.load(path, allow_pickle=False)
    else:
        from .results import read_json

        K = read_json(path, f"intrinsics not found: {path}")
    K = as_array(K, path, "K", (None, 3, 3))
    check_intrinsics(K, path)
    return K


def read_predictions(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """This project's ``predictions.npz``: ``{"xyz": (N, 21, 3) metres}`` and, where saved,
    ``"uv": (N, 21, 2)`` pixels, as float64; a missing key, a wrong shape or a NaN / inf value is
    a ``ValueError`` naming the file and the field."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "xyz" not in z.files:
                raise ValueError(f"{path}: no 'xyz' array (has {z.files})")
            out = {"xyz": as_array(z["xyz"], path, "xyz", (None, 21, 3)).astype(np.float64)}
            if "uv" in z.files:
                out["uv"] = as_array(z["uv"], path, "uv", (len(out["xyz"]), 21, 2)).astype(np.float64)
    except (zipfile.BadZipFile, EOFError, OSError) as e:  # truncated, empty or not an .npz at all
        raise ValueError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from None
    for k, v in out.items():
        check_finite(v, path, k)
    return out


def write_predictions(path: str | os.PathLike, xyz: np.ndarray, uv: np.ndarray | None = None) -> Path:
    """Write predictions atomically: ``.npz`` (compressed float32 ``xyz (N, 21, 3)`` metres, and
    ``uv (N, 21, 2)`` pixels where given: :func:`read_predictions` reads it) or ``.npy`` (the
    joints alone)."""
    from .results import atomic_path

    path = Path(path)
    xyz = np.asarray(xyz)
    if xyz.ndim != 3 or xyz.shape[1:] != (21, 3):
        raise ValueError(f"xyz: expected (N, 21, 3), got {xyz.shape}")
    if uv is not None and np.shape(uv) != (len(xyz), 21, 2):
        raise ValueError(f"uv: expected ({len(xyz)}, 21, 2), got {np.shape(uv)}")
    if path.suffix not in (".npz", ".npy"):
        raise ValueError(f"{path}: expected .npz or .npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        if path.suffix == ".npy":
            np.save(f, xyz)
        else:
            arrays = {"xyz": xyz.astype(np.float32)}
            if uv is not None:
                arrays["uv"] = np.asarray(uv).astype(np.float32)
            np.savez_compressed(f, **arrays)
    return path
