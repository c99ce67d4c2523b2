"""The prepared cache: what training and evaluation read, whatever the source data set.

A cache is a folder::

    images.u8          raw uint8 array (N, S, S, 3), memory-mapped on read
    annotations.npz    uv (N, 21, 2) px, xyz (N, 21, 3) m, K (N, 3, 3), visible (N, 21),
                       side (N,) 0 right / 1 left before mirroring, has_3d (N,), scale (N,) m,
                       source_index (N,)
    meta.json          format, version, N, size, source, label policy, sha256 of annotations.npz
                       and of images.u8

A cache is written in a hidden folder beside its destination and swapped into place only
when complete and verified, so a failed or killed conversion leaves the previous cache as
it was. Every read checks the image file's length (truncation), the annotations' checksum
(corruption) and the labels (finite, valid intrinsics, points in front of the camera);
:meth:`PreparedCache.verify_images` (``bmc verify-cache``) also checks the image bytes.
Samples whose ``has_3d`` is False carry NaN ``xyz`` and ``scale``: 2D-only data cannot leak
3D labels into weakly supervised training.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..results import read_json, replace_dir, staging_dir, write_json_atomic

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


#: the files of a cache folder (and of the v1 writer's leftovers): a folder holding only these
#: may be replaced by a new cache
CACHE_FILES = frozenset({"images.u8", "annotations.npz", "meta.json", "images.u8.partial", "annotations.tmp.npz"})


def _replaceable(out: Path) -> bool:
    return not out.exists() or (out.is_dir() and all(p.name in CACHE_FILES for p in out.iterdir()))


class CacheWriter:
    """Write a prepared cache of ``n`` samples of ``size x size`` images, batch by batch.

    Use as a context manager. Everything goes into a hidden temporary folder next to
    ``out``; :meth:`close` (on success) writes the annotations, the checksums and, last,
    ``meta.json``, re-opens the result as a :class:`PreparedCache` to verify it and only then
    swaps it into place. An exception (a bad image at sample 2, a kill) leaves a previous
    cache at ``out`` exactly as it was and removes the temporary folder. Every batch's labels
    are validated (:func:`bmclib.validate.check_labels`) as it is written.
    """

    def __init__(self, out: str | os.PathLike, n: int, size: int, source: dict[str, Any], overwrite: bool = False):
        self.out = Path(out)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 or size < 1:
            raise ValueError(f"{self.out}: a cache needs n >= 1 and size >= 1, got n={n}, size={size}")
        if (self.out / "meta.json").exists() and not overwrite:
            raise FileExistsError(f"{self.out} already holds a prepared cache; pass --force (overwrite=True in "
                                  f"Python) to replace it")
        if not _replaceable(self.out):
            raise FileExistsError(f"{self.out} exists and is not a prepared cache (it holds other files); "
                                  f"refusing to replace it: choose another output folder")
        self.tmp = staging_dir(self.out)  # (removes a killed writer's leftovers)
        self.n, self.size, self.source = int(n), size, source
        self.images = np.memmap(self.tmp / "images.u8", dtype=np.uint8, mode="w+", shape=(self.n, size, size, 3))
        self.ann = {k: np.zeros((self.n,) + shape, dtype=dt) for k, (dt, shape) in ANNOTATION_FIELDS.items()}
        self.written = np.zeros(self.n, dtype=bool)
        self._closed = False

    def write(self, start: int, images: np.ndarray, **ann: np.ndarray) -> None:
        """Store ``images (b, S, S, 3)`` uint8 and their annotations at ``start``."""
        from ..validate import check_labels

        b = len(images)
        if images.shape[1:] != (self.size, self.size, 3) or images.dtype != np.uint8:
            raise ValueError(f"images: expected uint8 (b, {self.size}, {self.size}, 3), got {images.dtype} {images.shape}")
        if start < 0 or start + b > self.n:
            raise ValueError(f"samples {start}..{start + b - 1} outside the cache's {self.n}")
        missing = set(ANNOTATION_FIELDS) - set(ann)
        if missing:
            raise ValueError(f"missing annotation fields {sorted(missing)}")
        unknown = set(ann) - set(ANNOTATION_FIELDS)
        if unknown:
            raise ValueError(f"unknown annotation fields {sorted(unknown)}")
        check_labels(f"{self.out} (being written)", offset=start, **ann)
        self.images[start:start + b] = images
        for k, v in ann.items():
            self.ann[k][start:start + b] = v
        self.written[start:start + b] = True

    def close(self) -> Path:
        if self._closed:
            return self.out
        if not self.written.all():
            raise ValueError(f"{self.out}: {int((~self.written).sum())} of {self.n} samples were never written")
        self.images.flush()
        del self.images
        np.savez(self.tmp / "annotations.npz", **self.ann)
        meta = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "n": self.n, "size": self.size,
                "images": {"file": "images.u8", "dtype": "uint8", "shape": [self.n, self.size, self.size, 3]},
                "annotations_sha256": _sha256(self.tmp / "annotations.npz"),
                "images_sha256": _sha256(self.tmp / "images.u8"),
                "n_3d": int(self.ann["has_3d"].sum()), "source": self.source}
        write_json_atomic(self.tmp / "meta.json", meta)
        PreparedCache(self.tmp, verify=True)  # what readers will see, checked before it replaces anything
        replace_dir(self.tmp, self.out)
        self._closed = True
        return self.out

    def abort(self) -> None:
        """Drop everything written so far (a previous cache at ``out`` is untouched)."""
        if not self._closed:
            if hasattr(self, "images"):
                del self.images
            shutil.rmtree(self.tmp, ignore_errors=True)
            self._closed = True

    def __enter__(self) -> "CacheWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.close()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()


class PreparedCache:
    """Read a prepared cache (validated on open). ``cache[i]`` is a dict of numpy arrays:
    ``image (S, S, 3)`` uint8 and every annotation field of that sample."""

    def __init__(self, path: str | os.PathLike, verify: bool = True):
        from ..validate import check_labels

        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not self.path.is_dir():
            raise FileNotFoundError(f"prepared cache not found: {self.path}")
        if not meta_path.is_file():
            raise ValueError(f"{self.path}: incomplete prepared cache (no meta.json; was its writing interrupted?)")
        meta = read_json(meta_path)
        if not isinstance(meta, dict):
            raise ValueError(f"{meta_path}: expected a JSON mapping, got a {type(meta).__name__}")
        if meta.get("format") != CACHE_FORMAT:
            raise ValueError(f"{meta_path}: not a bmclib prepared cache (format {meta.get('format')!r})")
        if meta.get("version") != CACHE_VERSION:
            raise ValueError(f"{meta_path}: unsupported cache version {meta.get('version')!r} (reads {CACHE_VERSION})")
        for key in ("n", "size"):
            v = meta.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{meta_path}: field {key!r} must be an integer >= 1, got {v!r}")
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
            with np.load(ann_path, allow_pickle=False) as z:
                ann = {k: z[k] for k in z.files}
        except Exception as e:  # zipfile / pickle errors of a damaged file
            raise ValueError(f"{ann_path}: cannot be read ({e})") from None
        for k, (dt, shape) in ANNOTATION_FIELDS.items():
            if k not in ann:
                raise ValueError(f"{ann_path}: missing field {k!r}")
            if ann[k].shape != (n,) + shape:
                raise ValueError(f"{ann_path}: field {k!r} has shape {ann[k].shape}, expected {(n,) + shape}")
        if verify:
            check_labels(ann_path, **ann)
        self.annotations = ann
        self.images = np.memmap(img_path, dtype=np.uint8, mode="r", shape=(n, size, size, 3))
        self.size = size

    def verify_images(self) -> bool:
        """Check ``images.u8`` against the checksum in ``meta.json``: ``True`` if it matches,
        ``False`` for a cache written before image checksums existed; a mismatch raises
        ``ValueError``. Reads the whole file (about 1 s per GB)."""
        want = self.meta.get("images_sha256")
        if want is None:
            return False
        if _sha256(self.path / "images.u8") != want:
            raise ValueError(f"{self.path / 'images.u8'}: image bytes do not match the checksum in meta.json "
                             f"(corrupted or edited); convert the data again")
        return True

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
