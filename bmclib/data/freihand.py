"""The FreiHAND v2 on-disk layout: writing it (for synthetic data) and converting it to a cache.

Layout (what FreiHAND v2 ships, and what :func:`write_split` writes)::

    ROOT/training_xyz.json      list of N (21, 3) joints, metres, camera frame, F order
    ROOT/training_K.json        list of N (3, 3) intrinsics
    ROOT/training_scale.json    list of N floats: middle MCP -> PIP length (m)
    ROOT/training/rgb/%08d.jpg  image id = idx + N * v for image versions v = 0, 1, ...
    ROOT/training/mask/%08d.jpg hand masks for the first N images
    ROOT/evaluation_{xyz,K,scale}.json, ROOT/evaluation/rgb/%08d.jpg

FreiHAND itself also has ``training_{mano,verts}.json``; the converter does not need
them. Synthetic data adds ``{split}_bmc.json`` (per-joint visibility and provenance),
which FreiHAND lacks: without it every joint counts as visible.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..validate import as_array, check_in_front, check_intrinsics, check_positive
from .cache import CacheWriter
from .crop import crop_resize

__all__ = ["SPLITS", "split_paths", "write_split", "read_split", "freihand_to_cache"]

SPLITS = ("training", "evaluation")


def split_paths(root: str | os.PathLike, split: str) -> dict[str, Path]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    return {"xyz": root / f"{split}_xyz.json", "K": root / f"{split}_K.json", "scale": root / f"{split}_scale.json",
            "extra": root / f"{split}_bmc.json", "rgb": root / split / "rgb", "mask": root / split / "mask"}


def write_split(root: str | os.PathLike, split: str, xyz: np.ndarray, K: np.ndarray, scale: np.ndarray,
                visible: np.ndarray | None = None, info: dict[str, Any] | None = None) -> None:
    """Write the JSON annotations of one split (images are written separately, by id)."""
    from ..results import write_text_atomic

    p = split_paths(root, split)
    n = len(xyz)
    if xyz.shape != (n, 21, 3) or K.shape != (n, 3, 3) or scale.shape != (n,):
        raise ValueError(f"expected xyz (N, 21, 3), K (N, 3, 3), scale (N,); got {xyz.shape}, {K.shape}, {scale.shape}")
    for key, arr in (("xyz", xyz), ("K", K), ("scale", scale)):
        write_text_atomic(p[key], json.dumps(np.asarray(arr, dtype=np.float64).tolist()))
    extra = {"visible": None if visible is None else np.asarray(visible, dtype=bool).astype(int).tolist(),
             "info": info or {}}
    write_text_atomic(p["extra"], json.dumps(extra))


def _load_json(path: Path, what: str):
    from ..results import read_json

    return read_json(path, f"FreiHAND layout: missing {what}: expected {path}")


def resize_affine(native: int, size: int) -> np.ndarray:
    """The ``3 x 3`` map of pixel coordinates (centres at integers) from a ``native``-px image
    to the same image resized to ``size`` px (what :func:`crop_resize` does for the whole image)."""
    k = size / native
    return np.array([[k, 0.0, 0.5 * k - 0.5], [0.0, k, 0.5 * k - 0.5], [0.0, 0.0, 1.0]])


def read_split(root: str | os.PathLike, split: str = "training") -> dict[str, Any]:
    """Read one split's annotations, checked: ``xyz (N, 21, 3)`` (or None for FreiHAND's
    evaluation split without the 2022 archive), ``K (N, 3, 3)``, ``scale (N,)``,
    ``visible (N, 21)``, and the sorted list of image files."""
    p = split_paths(root, split)
    if not Path(root).is_dir():
        raise FileNotFoundError(f"FreiHAND layout: folder not found: {root}")
    K = as_array(_load_json(p["K"], f"{split} intrinsics"), p["K"], "K", (None, 3, 3))
    n = len(K)
    if n == 0:
        raise ValueError(f"{p['K']}: field 'K': no samples (an empty list)")
    check_intrinsics(K, p["K"])
    scale = as_array(_load_json(p["scale"], f"{split} scales"), p["scale"], "scale", (None,))
    if scale.shape != (n,):
        raise ValueError(f"{p['scale']}: expected {n} scales (one per entry of {p['K'].name}), got {scale.shape}")
    check_positive(scale, p["scale"], "scale")
    xyz = None
    if p["xyz"].is_file() or split == "training":
        xyz = as_array(_load_json(p["xyz"], f"{split} 3D joints"), p["xyz"], "xyz", (None, 21, 3))
        if xyz.shape != (n, 21, 3):
            raise ValueError(f"{p['xyz']}: expected shape ({n}, 21, 3) (one entry per entry of {p['K'].name}), "
                             f"got {xyz.shape}")
        check_in_front(xyz, p["xyz"])
    visible = np.ones((n, 21), dtype=bool)
    info: dict[str, Any] = {}
    if p["extra"].is_file():
        extra = _load_json(p["extra"], "bmc extras")
        if not isinstance(extra, dict):
            raise ValueError(f"{p['extra']}: expected a mapping with 'visible' and 'info', got a {type(extra).__name__}")
        info = extra.get("info", {})
        if extra.get("visible") is not None:
            visible = as_array(extra["visible"], p["extra"], "visible", (n, 21)) > 0.5
    if not p["rgb"].is_dir():
        raise FileNotFoundError(f"FreiHAND layout: missing image folder: expected {p['rgb']}")
    images = sorted(p["rgb"].glob("*.jpg"))
    if len(images) < n or len(images) % n:
        raise ValueError(f"{p['rgb']}: {len(images)} images for {n} annotations; expected a multiple of {n} "
                         f"(FreiHAND shares each annotation between its image versions)")
    expected_last = p["rgb"] / f"{len(images) - 1:08d}.jpg"
    if images[-1] != expected_last:
        raise ValueError(f"{p['rgb']}: image files are not numbered 00000000.jpg .. {expected_last.name}")
    return {"xyz": xyz, "K": K, "scale": scale, "visible": visible, "images": images, "info": info, "n": n}


def freihand_to_cache(root: str | os.PathLike, out: str | os.PathLike, split: str = "training",
                      labels: str = "3d", versions: Iterable[int] | None = None, overwrite: bool = False,
                      progress: bool = True, size: int | None = None) -> Path:
    """Convert one split of a FreiHAND-layout folder into a prepared cache.

    Args:
        labels: ``"3d"`` keeps xyz and scale; ``"2d"`` stores uv only (xyz and scale NaN),
            for the weakly supervised role.
        versions: image versions to include (default: all there are).
        size: resize the (square, hand-centred) images to this side, ``K`` and ``uv`` following
            exactly (default: keep FreiHAND's 224 px).
    """
    from PIL import Image
    from ..progress import tqdm

    from ..camera import project
    import torch

    if labels not in ("3d", "2d"):
        raise ValueError(f"labels must be '3d' or '2d', got {labels!r}")
    data = read_split(root, split)
    n = data["n"]
    if data["xyz"] is None:
        raise ValueError(f"{root}: the {split} split has no {split}_xyz.json; labels cannot be converted")
    n_versions = len(data["images"]) // n
    versions = list(range(n_versions)) if versions is None else list(versions)
    if any(not 0 <= v < n_versions for v in versions):
        raise ValueError(f"versions must be within 0..{n_versions - 1}, got {versions}")
    with Image.open(data["images"][0]) as im:
        native = im.size[0]
        if im.size[0] != im.size[1]:
            raise ValueError(f"{data['images'][0]}: expected square images, got {im.size}")
    xyz, K = data["xyz"], data["K"]
    size = size or native
    A = resize_affine(native, size)
    K = A @ K
    uv = project(torch.from_numpy(xyz), torch.from_numpy(K)).numpy()
    total = n * len(versions)
    source = {"kind": "freihand-layout", "root": str(Path(root).resolve()), "split": split, "labels": labels,
              "versions": versions, "info": data["info"]}
    with CacheWriter(out, total, size, source, overwrite=overwrite) as w:
        bar = tqdm(total=total, desc=f"cache {split}", unit="img", disable=not progress)
        for vi, v in enumerate(versions):
            for start in range(0, n, 256):
                idx = np.arange(start, min(start + 256, n))
                imgs = np.empty((len(idx), size, size, 3), dtype=np.uint8)
                for j, i in enumerate(idx):
                    path = data["images"][i + n * v]
                    try:
                        with Image.open(path) as im:
                            arr = np.asarray(im.convert("RGB"))
                    except OSError as e:
                        raise ValueError(f"{path}: cannot be decoded ({e})") from None
                    if arr.shape != (native, native, 3):
                        raise ValueError(f"{path}: image is {arr.shape[1]}x{arr.shape[0]}, the split's are "
                                         f"{native}x{native}")
                    imgs[j] = arr if native == size else crop_resize(arr, (0.0, 0.0, float(native)), size)[0]
                keep3d = labels == "3d"
                w.write(vi * n + start, imgs, uv=uv[idx], K=K[idx],
                        xyz=xyz[idx] if keep3d else np.full((len(idx), 21, 3), np.nan),
                        visible=data["visible"][idx], side=np.zeros(len(idx), np.uint8),
                        has_3d=np.full(len(idx), keep3d), scale=data["scale"][idx] if keep3d else np.full(len(idx), np.nan),
                        source_index=idx + n * v)
                bar.update(len(idx))
        bar.close()
    return Path(out)
