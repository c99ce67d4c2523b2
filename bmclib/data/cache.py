"""The prepared cache: what training and evaluation read, whatever the source data set.

A cache is a folder::

    images.u8          raw uint8 array (N, S, S, 3), memory-mapped on read
    annotations.npz    uv (N, 21, 2) px, xyz (N, 21, 3) m, K (N, 3, 3), visible (N, 21),
                       side (N,) 0 right / 1 left before mirroring, has_3d (N,), scale (N,) m,
                       source_index (N,)
    meta.json          format, version, N, size, source, label policy, sha256 of annotations.npz

``meta.json`` is written last, so an interrupted write leaves no readable cache; every
read checks the image file's length (truncation) and the annotations' checksum
(corruption). Samples whose ``has_3d`` is False carry NaN ``xyz`` and ``scale``: 2D-only
data cannot leak 3D labels into weakly supervised training.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..results import read_json, write_json_atomic

__all__ = ["CACHE_FORMAT", "CACHE_VERSION", "CacheWriter", "PreparedCache", "ANNOTATION_FIELDS"]

CACHE_FORMAT = "bmclib.cache"
CACHE_VERSION = 1

#: name -> (dtype, trailing shape)
ANNOTATION_FIELDS: dict[str, tuple[str, tuple[int, ...]]] = {
    "uv": ("float32", (21, 2)),
    "xyz": ("float32", (21, 3)),
    "K": ("float32", (3, 3)),
    "visible": ("bool", (21,)),
    "side": ("uint8", ()),
    "has_3d": ("bool", ()),
    "scale": ("float32", ()),
    "source_index": ("int64", ()),
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class CacheWriter:
    """Write a prepared cache of ``n`` samples of ``size x size`` images, batch by batch.

    Use as a context manager; :meth:`close` (on success) writes the annotations and,
    last, ``meta.json``. An exception leaves the folder without ``meta.json``.
    """

    def __init__(self, out: str | os.PathLike, n: int, size: int, source: dict[str, Any], overwrite: bool = False):
        self.out = Path(out)
        if n < 1 or size < 1:
            raise ValueError(f"cache needs n >= 1 and size >= 1, got n={n}, size={size}")
        if (self.out / "meta.json").exists() and not overwrite:
            raise FileExistsError(f"{self.out} already holds a prepared cache (pass overwrite=True to replace it)")
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "meta.json").unlink(missing_ok=True)
        self.n, self.size, self.source = n, size, source
        self._tmp = self.out / "images.u8.partial"
        self.images = np.memmap(self._tmp, dtype=np.uint8, mode="w+", shape=(n, size, size, 3))
        self.ann = {k: np.zeros((n,) + shape, dtype=dt) for k, (dt, shape) in ANNOTATION_FIELDS.items()}
        self.written = np.zeros(n, dtype=bool)

    def write(self, start: int, images: np.ndarray, **ann: np.ndarray) -> None:
        """Store ``images (b, S, S, 3)`` uint8 and their annotations at ``start``."""
        b = len(images)
        if images.shape[1:] != (self.size, self.size, 3) or images.dtype != np.uint8:
            raise ValueError(f"images: expected uint8 (b, {self.size}, {self.size}, 3), got {images.dtype} {images.shape}")
        if start < 0 or start + b > self.n:
            raise ValueError(f"samples {start}..{start + b - 1} outside the cache's {self.n}")
        missing = set(ANNOTATION_FIELDS) - set(ann)
        if missing:
            raise ValueError(f"missing annotation fields {sorted(missing)}")
        self.images[start:start + b] = images
        for k, v in ann.items():
            if k not in self.ann:
                raise ValueError(f"unknown annotation field {k!r}")
            self.ann[k][start:start + b] = v
        self.written[start:start + b] = True

    def close(self) -> Path:
        if not self.written.all():
            raise ValueError(f"{self.out}: {int((~self.written).sum())} of {self.n} samples were never written")
        self.images.flush()
        del self.images
        os.replace(self._tmp, self.out / "images.u8")
        ann_tmp = self.out / "annotations.tmp.npz"
        np.savez(ann_tmp, **self.ann)
        os.replace(ann_tmp, self.out / "annotations.npz")
        meta = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "n": self.n, "size": self.size,
                "images": {"file": "images.u8", "dtype": "uint8", "shape": [self.n, self.size, self.size, 3]},
                "annotations_sha256": _sha256(self.out / "annotations.npz"),
                "n_3d": int(self.ann["has_3d"].sum()), "source": self.source}
        write_json_atomic(self.out / "meta.json", meta)
        return self.out

    def __enter__(self) -> "CacheWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


class PreparedCache:
    """Read a prepared cache (validated on open). ``cache[i]`` is a dict of numpy arrays:
    ``image (S, S, 3)`` uint8 and every annotation field of that sample."""

    def __init__(self, path: str | os.PathLike, verify: bool = True):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not self.path.is_dir():
            raise FileNotFoundError(f"prepared cache not found: {self.path}")
        if not meta_path.is_file():
            raise ValueError(f"{self.path}: incomplete prepared cache (no meta.json; was its writing interrupted?)")
        meta = read_json(meta_path)
        if meta.get("format") != CACHE_FORMAT:
            raise ValueError(f"{meta_path}: not a bmclib prepared cache (format {meta.get('format')!r})")
        if meta.get("version") != CACHE_VERSION:
            raise ValueError(f"{meta_path}: unsupported cache version {meta.get('version')!r} (reads {CACHE_VERSION})")
        self.meta = meta
        n, size = int(meta["n"]), int(meta["size"])
        img_path = self.path / "images.u8"
        if not img_path.is_file():
            raise ValueError(f"{self.path}: missing images.u8")
        expected = n * size * size * 3
        found = img_path.stat().st_size
        if found != expected:
            raise ValueError(f"{img_path}: truncated or wrong size: expected {expected} bytes "
                             f"({n} x {size} x {size} x 3), found {found}")
        ann_path = self.path / "annotations.npz"
        if not ann_path.is_file():
            raise ValueError(f"{self.path}: missing annotations.npz")
        if verify and _sha256(ann_path) != meta.get("annotations_sha256"):
            raise ValueError(f"{ann_path}: checksum does not match meta.json (corrupted or edited)")
        try:
            with np.load(ann_path) as z:
                ann = {k: z[k] for k in z.files}
        except Exception as e:  # zipfile / pickle errors of a damaged file
            raise ValueError(f"{ann_path}: cannot be read ({e})") from None
        for k, (dt, shape) in ANNOTATION_FIELDS.items():
            if k not in ann:
                raise ValueError(f"{ann_path}: missing field {k!r}")
            if ann[k].shape != (n,) + shape:
                raise ValueError(f"{ann_path}: field {k!r} has shape {ann[k].shape}, expected {(n,) + shape}")
        self.annotations = ann
        self.images = np.memmap(img_path, dtype=np.uint8, mode="r", shape=(n, size, size, 3))
        self.size = size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} outside the cache's {len(self)}")
        out = {k: v[i] for k, v in self.annotations.items()}
        out["image"] = np.asarray(self.images[i])
        return out

    def __repr__(self) -> str:
        return (f"PreparedCache({str(self.path)!r}, n={len(self)}, size={self.size}, "
                f"n_3d={int(self.annotations['has_3d'].sum())})")
