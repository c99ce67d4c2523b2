"""HO-3D v2 / v3 (Hampali et al. 2020) -> prepared cache.

On disk::

    ROOT/train.txt, ROOT/evaluation.txt          lines "<sequence>/<frame id>"
    ROOT/{train,evaluation}/<seq>/rgb/<id>.jpg   640 x 480 (v3: .jpg; v2: .png also accepted)
    ROOT/{train,evaluation}/<seq>/meta/<id>.pkl  pickles (read with encoding="latin1"):
        handJoints3D (21, 3) metres, MANO-with-tips order, OpenGL axes (y up, z backwards)
        camMat (3, 3); handPose, handBeta, handTrans (MANO parameters, not used here)
        evaluation split: handJoints3D is the root (wrist) only, (3,), and
        handBoundingBox [x0, y0, x1, y1] is given.

Joints are turned into our camera frame with ``diag(1, -1, -1)`` and reordered to F
(:func:`bmclib.skeleton.from_ho3d`); HO-3D shows right hands. Training samples get full
labels; evaluation samples are cropped from their bounding box and carry only the root
(``xyz[0]``; ``has_3d`` False, uv NaN), which is what the benchmark releases.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from .. import skeleton as sk
from .cache import CacheWriter
from .crop import crop_resize, square_box

__all__ = ["OPENGL_TO_CAMERA", "read_ho3d_meta", "ho3d_to_cache"]

OPENGL_TO_CAMERA = np.diag([1.0, -1.0, -1.0])


def read_ho3d_meta(path: str | os.PathLike, evaluation: bool = False) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HO-3D: missing meta file: expected {path}")
    try:
        with open(path, "rb") as f:
            meta = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ValueError(f"{path}: cannot be read ({e}); the file may be truncated") from None
    need = ["handJoints3D", "camMat"] + (["handBoundingBox"] if evaluation else [])
    for key in need:
        if not isinstance(meta, dict) or key not in meta or meta[key] is None:
            raise ValueError(f"{path}: missing key {key!r}")
    joints = np.asarray(meta["handJoints3D"], dtype=np.float64)
    want = (3,) if evaluation else (21, 3)
    if joints.shape != want:
        raise ValueError(f"{path}: handJoints3D has shape {joints.shape}, expected {want}")
    if np.shape(meta["camMat"]) != (3, 3):
        raise ValueError(f"{path}: camMat has shape {np.shape(meta['camMat'])}, expected (3, 3)")
    return meta


def ho3d_to_cache(root: str | os.PathLike, out: str | os.PathLike, split: str = "train", size: int = 128,
                  overwrite: bool = False, progress: bool = True) -> Path:
    from PIL import Image
    from tqdm.auto import tqdm

    if split not in ("train", "evaluation"):
        raise ValueError(f"split must be 'train' or 'evaluation', got {split!r}")
    root = Path(root)
    listing = root / f"{split}.txt"
    if not listing.is_file():
        raise FileNotFoundError(f"HO-3D: missing list of frames: expected {listing}")
    frames = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    if not frames:
        raise ValueError(f"{listing}: no frames listed")
    evaluation = split == "evaluation"
    source = {"kind": "ho3d", "root": str(root.resolve()), "split": split,
              "labels": "root-only" if evaluation else "3d"}
    with CacheWriter(out, len(frames), size, source, overwrite=overwrite) as w:
        for n, name in enumerate(tqdm(frames, desc=f"HO-3D {split}", unit="img", disable=not progress)):
            if name.count("/") != 1:
                raise ValueError(f"{listing}: line {n + 1} {name!r} is not '<sequence>/<frame id>'")
            seq, fid = name.split("/")
            meta = read_ho3d_meta(root / split / seq / "meta" / f"{fid}.pkl", evaluation)
            rgb = next((p for p in (root / split / seq / "rgb" / f"{fid}{ext}" for ext in (".jpg", ".png"))
                        if p.is_file()), None)
            if rgb is None:
                raise FileNotFoundError(f"HO-3D: missing image: expected {root / split / seq / 'rgb' / (fid + '.jpg')}")
            image = np.asarray(Image.open(rgb).convert("RGB"))
            K = np.asarray(meta["camMat"], dtype=np.float64)
            if evaluation:
                root_xyz = np.asarray(meta["handJoints3D"], dtype=np.float64) @ OPENGL_TO_CAMERA
                x0, y0, x1, y1 = (float(v) for v in meta["handBoundingBox"])
                side = max(x1 - x0, y1 - y0) * 1.2
                box = ((x0 + x1) / 2 - side / 2, (y0 + y1) / 2 - side / 2, side)
                xyz = np.full((21, 3), np.nan)
                xyz[0] = root_xyz
                uv = np.full((21, 2), np.nan)
                vis = np.zeros(21, dtype=bool)
                scale = np.nan
            else:
                xyz = sk.from_ho3d(np.asarray(meta["handJoints3D"], dtype=np.float64) @ OPENGL_TO_CAMERA)
                uv_full = (xyz @ K.T)[:, :2] / (xyz @ K.T)[:, 2:]
                box = square_box(uv_full)
                vis = np.ones(21, dtype=bool)
                scale = float(sk.reference_length(xyz))
            crop, A = crop_resize(np.ascontiguousarray(image), box, size)
            K2 = A @ K
            if not evaluation:
                uv = uv_full @ A[:2, :2].T + A[:2, 2]
                vis = (uv >= -0.5).all(1) & (uv <= size - 0.5).all(1)
            w.write(n, crop[None], uv=uv[None], K=K2[None], xyz=xyz[None], visible=vis[None],
                    side=np.zeros(1, np.uint8), has_3d=np.array([not evaluation]), scale=np.array([scale]),
                    source_index=np.array([n]))
    return Path(out)
