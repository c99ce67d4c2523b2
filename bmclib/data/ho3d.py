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
from pathlib import Path

import numpy as np

from .. import skeleton as sk
from ..results import read_text
from ..validate import as_array, check_finite, check_in_front, check_intrinsics, safe_pickle_load
from .cache import CacheWriter
from .crop import crop_resize, square_box

__all__ = ["OPENGL_TO_CAMERA", "HO3D_IMAGE_SIZE", "read_ho3d_meta", "ho3d_to_cache"]

OPENGL_TO_CAMERA = np.diag([1.0, -1.0, -1.0])


#: HO-3D's images are 640 x 480
HO3D_IMAGE_SIZE = (640, 480)


def read_ho3d_meta(path: str | os.PathLike, evaluation: bool = False) -> dict:
    """One frame's meta pickle, checked: ``handJoints3D`` finite of the split's shape, ``camMat``
    a valid intrinsic matrix, ``handBoundingBox`` (evaluation) four finite numbers with
    ``x1 > x0`` and ``y1 > y0``. Read with a restricted unpickler (numpy and builtins only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HO-3D: missing meta file: expected {path}")
    meta = safe_pickle_load(path, encoding="latin1")
    need = ["handJoints3D", "camMat"] + (["handBoundingBox"] if evaluation else [])
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a meta dict with keys {need}, got a {type(meta).__name__}")
    for key in need:
        if key not in meta:
            raise ValueError(f"{path}: missing key {key!r} (has {sorted(map(str, meta))[:12]})")
        if meta[key] is None:
            raise ValueError(f"{path}: field {key!r} is None (HO-3D leaves it empty for frames without a hand "
                             f"annotation); expected {'a (3, 3) matrix' if key == 'camMat' else 'an array'}")
    want = (3,) if evaluation else (21, 3)
    joints = as_array(meta["handJoints3D"], path, "handJoints3D", (None,) * len(np.shape(meta["handJoints3D"])))
    if joints.shape != want:
        raise ValueError(f"{path}: handJoints3D has shape {joints.shape}, expected {want}")
    check_finite(joints[None], path, "handJoints3D", ids=[path.stem])
    K = as_array(meta["camMat"], path, "camMat", (None,) * len(np.shape(meta["camMat"])))
    if K.shape != (3, 3):
        raise ValueError(f"{path}: camMat has shape {K.shape}, expected (3, 3)")
    check_intrinsics(K[None], path, "camMat", ids=[path.stem])
    meta = dict(meta, handJoints3D=joints, camMat=K)
    if evaluation:
        box = as_array(meta["handBoundingBox"], path, "handBoundingBox", (4,))
        check_finite(box[None], path, "handBoundingBox", ids=[path.stem])
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"{path}: field 'handBoundingBox': [x0, y0, x1, y1] = {box.tolist()} has zero or "
                             f"negative size")
        meta["handBoundingBox"] = box
    return meta


def ho3d_to_cache(root: str | os.PathLike, out: str | os.PathLike, split: str = "train", size: int = 128,
                  overwrite: bool = False, progress: bool = True) -> Path:
    from PIL import Image
    from ..progress import tqdm

    if split not in ("train", "evaluation"):
        raise ValueError(f"split must be 'train' or 'evaluation', got {split!r}")
    root = Path(root)
    listing = root / f"{split}.txt"
    text = read_text(listing, f"HO-3D: missing list of frames: expected {listing}")
    frames = [line.strip() for line in text.splitlines() if line.strip()]
    if not frames:
        raise ValueError(f"{listing}: no frames listed")
    for k, name in enumerate(frames):
        if name.count("/") != 1 or not all(name.split("/")):
            raise ValueError(f"{listing}: line {k + 1} {name!r} is not '<sequence>/<frame id>'")
    evaluation = split == "evaluation"
    source = {"kind": "ho3d", "root": str(root.resolve()), "split": split,
              "labels": "root-only" if evaluation else "3d"}
    with CacheWriter(out, len(frames), size, source, overwrite=overwrite) as w:
        for n, name in enumerate(tqdm(frames, desc=f"HO-3D {split}", unit="img", disable=not progress)):
            seq, fid = name.split("/")
            meta_path = root / split / seq / "meta" / f"{fid}.pkl"
            meta = read_ho3d_meta(meta_path, evaluation)
            rgb = next((p for p in (root / split / seq / "rgb" / f"{fid}{ext}" for ext in (".jpg", ".png"))
                        if p.is_file()), None)
            if rgb is None:
                raise FileNotFoundError(f"HO-3D: missing image: expected {root / split / seq / 'rgb' / (fid + '.jpg')}")
            try:
                with Image.open(rgb) as im:
                    image = np.asarray(im.convert("RGB"))
            except OSError as e:
                raise ValueError(f"{rgb}: cannot be decoded ({e})") from None
            if image.shape[1::-1] != HO3D_IMAGE_SIZE:
                raise ValueError(f"{rgb}: image is {image.shape[1]}x{image.shape[0]}, HO-3D's are "
                                 f"{HO3D_IMAGE_SIZE[0]}x{HO3D_IMAGE_SIZE[1]}")
            K = meta["camMat"]
            if evaluation:
                root_xyz = meta["handJoints3D"] @ OPENGL_TO_CAMERA
                check_in_front(root_xyz[None, None], meta_path, "handJoints3D", ids=[fid])
                x0, y0, x1, y1 = (float(v) for v in meta["handBoundingBox"])
                side = max(x1 - x0, y1 - y0) * 1.2
                box = ((x0 + x1) / 2 - side / 2, (y0 + y1) / 2 - side / 2, side)
                xyz = np.full((21, 3), np.nan)
                xyz[0] = root_xyz
                uv = np.full((21, 2), np.nan)
                vis = np.zeros(21, dtype=bool)
                scale = np.nan
            else:
                xyz = sk.from_ho3d(meta["handJoints3D"] @ OPENGL_TO_CAMERA)
                check_in_front(xyz[None], meta_path, "handJoints3D", ids=[fid])
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
