"""Rendered Hand Pose (RHD, Zimmermann & Brox 2017) -> prepared cache.

On disk (after unpacking ``RHD_v1-1.zip``)::

    ROOT/{training,evaluation}/color/%05d.png   320 x 320 RGB
    ROOT/{training,evaluation}/mask/%05d.png    labels: 0 background, 1 person,
                                                2-17 left hand, 18-33 right hand
    ROOT/{training,evaluation}/depth/%05d.png   (not used)
    ROOT/{training,evaluation}/anno_{split}.pickle
        dict id -> {"xyz": (42, 3) metres, "uv_vis": (42, 3) (u, v, visible), "K": (3, 3)}
        keypoints 0-20 left hand, 21-41 right hand; each wrist then fingers tip -> MCP.

Per image the converter keeps the hand with more mask pixels (ties: more visible
keypoints), reorders it to F (:func:`bmclib.skeleton.rhd_hand`), mirrors left hands
into right ones (image, u, x and cx), crops a square around its keypoints and resizes
it to the cache size.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import skeleton as sk
from ..validate import as_array, check_finite, check_in_front, check_intrinsics, safe_pickle_load
from .cache import CacheWriter
from .crop import crop_resize, flip_horizontal, square_box

__all__ = ["RHD_SIZE", "read_rhd_annotations", "rhd_to_cache"]


#: RHD's images are 320 x 320
RHD_SIZE = 320


def read_rhd_annotations(root: str | os.PathLike, split: str) -> dict:
    """The annotations of one split, checked: integer sample ids, each sample's ``xyz (42, 3)``,
    ``uv_vis (42, 3)`` and ``K (3, 3)`` arrays of finite numbers, ``K`` valid. The pickle is
    read with a restricted unpickler (numpy arrays and builtin containers only)."""
    if split not in ("training", "evaluation"):
        raise ValueError(f"split must be 'training' or 'evaluation', got {split!r}")
    path = Path(root) / split / f"anno_{split}.pickle"
    if not Path(root).is_dir():
        raise FileNotFoundError(f"RHD: folder not found: {root}")
    if not path.is_file():
        raise FileNotFoundError(f"RHD: missing annotations: expected {path}")
    anno = safe_pickle_load(path)
    if not isinstance(anno, dict) or not anno:
        raise ValueError(f"{path}: expected a non-empty dict id -> annotation, got "
                         f"{'an empty dict' if isinstance(anno, dict) else 'a ' + type(anno).__name__}")
    for i, a in anno.items():
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0:
            raise ValueError(f"{path}: sample id {i!r} is not an integer >= 0 (RHD names its images by "
                             f"integer id, %05d.png)")
        if not isinstance(a, dict):
            raise ValueError(f"{path}: sample {i}: expected a dict with 'xyz', 'uv_vis', 'K', got a "
                             f"{type(a).__name__}")
        for key, shape in (("xyz", (42, 3)), ("uv_vis", (42, 3)), ("K", (3, 3))):
            if key not in a:
                raise ValueError(f"{path}: sample {i} lacks {key!r}")
            arr = as_array(a[key], path, key, (None, None))
            if arr.shape != shape:
                raise ValueError(f"{path}: sample {i} {key!r} has shape {arr.shape}, expected {shape}")
            a[key] = arr
    ids = list(anno)  # values: one batched check per field over all samples
    for key in ("xyz", "uv_vis"):
        check_finite(np.stack([anno[i][key] for i in ids]), path, key, ids=ids)
    check_intrinsics(np.stack([anno[i]["K"] for i in ids]), path, ids=ids)
    return anno


def _rhd_image(path: Path, sample, mode: str | None) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise FileNotFoundError(f"RHD: missing image for sample {sample}: expected {path}")
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert(mode) if mode else im)
    except OSError as e:
        raise ValueError(f"{path}: sample {sample} cannot be decoded ({e})") from None
    if arr.shape[:2] != (RHD_SIZE, RHD_SIZE):
        raise ValueError(f"{path}: sample {sample}: image is {arr.shape[1]}x{arr.shape[0]}, RHD's are "
                         f"{RHD_SIZE}x{RHD_SIZE}")
    return arr


def rhd_to_cache(root: str | os.PathLike, out: str | os.PathLike, split: str = "training", size: int = 128,
                 labels: str = "3d", overwrite: bool = False, progress: bool = True) -> Path:
    """Convert one RHD split into a prepared cache of right-hand ``size`` crops."""
    from ..progress import tqdm

    if labels not in ("3d", "2d"):
        raise ValueError(f"labels must be '3d' or '2d', got {labels!r}")
    anno = read_rhd_annotations(root, split)
    ids = sorted(anno)
    folder = Path(root) / split
    ann_path = folder / f"anno_{split}.pickle"
    for sub in ("color", "mask"):
        if not (folder / sub).is_dir():
            raise FileNotFoundError(f"RHD: missing image folder: expected {folder / sub}")
    source = {"kind": "rhd", "root": str(Path(root).resolve()), "split": split, "labels": labels}
    with CacheWriter(out, len(ids), size, source, overwrite=overwrite) as w:
        for n, i in enumerate(tqdm(ids, desc=f"RHD {split}", unit="img", disable=not progress)):
            a = anno[i]
            image = _rhd_image(folder / "color" / f"{i:05d}.png", i, "RGB")
            mask = _rhd_image(folder / "mask" / f"{i:05d}.png", i, None)
            left_px = int(((mask >= 2) & (mask <= 17)).sum())
            right_px = int((mask >= 18).sum())
            vis42 = a["uv_vis"][:, 2] > 0.5
            left = (left_px, vis42[:21].sum()) > (right_px, vis42[21:].sum())
            side = "left" if left else "right"
            xyz = sk.rhd_hand(a["xyz"], side)
            uv = sk.rhd_hand(a["uv_vis"][:, :2], side)
            vis = sk.rhd_hand(vis42[:, None], side)[:, 0]
            K = a["K"]
            check_in_front(xyz[None], ann_path, f"xyz ({side} hand)", ids=[i])
            if not vis.any():
                raise ValueError(f"{ann_path}: field 'uv_vis': sample {i}: no visible keypoint of the {side} hand "
                                 f"(nothing to crop around)")
            if left:
                image, uv, xyz, K = flip_horizontal(image, uv, xyz, K)
            crop, A = crop_resize(np.ascontiguousarray(image), square_box(uv, vis), size)
            K2 = A @ K
            uv2 = uv @ A[:2, :2].T + A[:2, 2]
            keep = labels == "3d"
            w.write(n, crop[None], uv=uv2[None], K=K2[None], xyz=(xyz if keep else np.full_like(xyz, np.nan))[None],
                    visible=vis[None], side=np.array([1 if left else 0], np.uint8), has_3d=np.array([keep]),
                    scale=np.array([sk.reference_length(xyz) if keep else np.nan]),
                    source_index=np.array([i]))
    return Path(out)
