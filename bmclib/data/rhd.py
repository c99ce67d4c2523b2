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
import pickle
from pathlib import Path

import numpy as np

from .. import skeleton as sk
from .cache import CacheWriter
from .crop import crop_resize, flip_horizontal, square_box

__all__ = ["read_rhd_annotations", "rhd_to_cache"]


def read_rhd_annotations(root: str | os.PathLike, split: str) -> dict:
    if split not in ("training", "evaluation"):
        raise ValueError(f"split must be 'training' or 'evaluation', got {split!r}")
    path = Path(root) / split / f"anno_{split}.pickle"
    if not Path(root).is_dir():
        raise FileNotFoundError(f"RHD: folder not found: {root}")
    if not path.is_file():
        raise FileNotFoundError(f"RHD: missing annotations: expected {path}")
    try:
        with open(path, "rb") as f:
            anno = pickle.load(f)
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ValueError(f"{path}: cannot be read ({e}); the file may be truncated") from None
    if not isinstance(anno, dict) or not anno:
        raise ValueError(f"{path}: expected a non-empty dict id -> annotation")
    for i, a in anno.items():
        for key, shape in (("xyz", (42, 3)), ("uv_vis", (42, 3)), ("K", (3, 3))):
            if not isinstance(a, dict) or key not in a:
                raise ValueError(f"{path}: sample {i} lacks {key!r}")
            if np.shape(a[key]) != shape:
                raise ValueError(f"{path}: sample {i} {key!r} has shape {np.shape(a[key])}, expected {shape}")
    return anno


def rhd_to_cache(root: str | os.PathLike, out: str | os.PathLike, split: str = "training", size: int = 128,
                 labels: str = "3d", overwrite: bool = False, progress: bool = True) -> Path:
    """Convert one RHD split into a prepared cache of right-hand ``size`` crops."""
    from PIL import Image
    from tqdm.auto import tqdm

    anno = read_rhd_annotations(root, split)
    ids = sorted(anno)
    folder = Path(root) / split
    for sub in ("color", "mask"):
        if not (folder / sub).is_dir():
            raise FileNotFoundError(f"RHD: missing image folder: expected {folder / sub}")
    source = {"kind": "rhd", "root": str(Path(root).resolve()), "split": split, "labels": labels}
    with CacheWriter(out, len(ids), size, source, overwrite=overwrite) as w:
        for n, i in enumerate(tqdm(ids, desc=f"RHD {split}", unit="img", disable=not progress)):
            a = anno[i]
            paths = [folder / "color" / f"{i:05d}.png", folder / "mask" / f"{i:05d}.png"]
            for p in paths:
                if not p.is_file():
                    raise FileNotFoundError(f"RHD: missing image for sample {i}: expected {p}")
            try:
                image = np.asarray(Image.open(paths[0]).convert("RGB"))
                mask = np.asarray(Image.open(paths[1]))
            except OSError as e:
                raise ValueError(f"{paths[0].parent.parent}: sample {i} cannot be decoded ({e})") from None
            left_px = int(((mask >= 2) & (mask <= 17)).sum())
            right_px = int((mask >= 18).sum())
            vis42 = np.asarray(a["uv_vis"])[:, 2] > 0.5
            left = (left_px, vis42[:21].sum()) > (right_px, vis42[21:].sum())
            side = "left" if left else "right"
            xyz = sk.rhd_hand(np.asarray(a["xyz"], dtype=np.float64), side)
            uv = sk.rhd_hand(np.asarray(a["uv_vis"], dtype=np.float64)[:, :2], side)
            vis = sk.rhd_hand(vis42[:, None], side)[:, 0]
            K = np.asarray(a["K"], dtype=np.float64)
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
