"""Square hand crops of real images, with the intrinsics and labels following the crop.

Shared by the RHD and HO-3D converters: pick a square around the hand's keypoints (or
a given box), resize it to the cache size with bilinear sampling, and map ``K`` and
``uv`` exactly (pixel centres at integer coordinates).
"""
from __future__ import annotations

import numpy as np

__all__ = ["square_box", "crop_resize", "flip_horizontal"]


def square_box(uv: np.ndarray, visible: np.ndarray | None = None, pad: float = 1.5,
               min_side: float = 32.0) -> tuple[float, float, float]:
    """``(x0, y0, side)`` of a square around the (visible) keypoints ``uv (J, 2)``, ``pad`` x their extent."""
    pts = uv if visible is None or not visible.any() else uv[visible]
    lo, hi = pts.min(0), pts.max(0)
    side = max(float((hi - lo).max()) * pad, min_side)
    cx, cy = (lo + hi) / 2
    return float(cx - side / 2), float(cy - side / 2), side


def crop_resize(image: np.ndarray, box: tuple[float, float, float], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop ``image (H, W, 3)`` uint8 to the square ``box = (x0, y0, side)`` (continuous pixel
    coordinates, zero padding outside) and resize to ``size``. Returns the crop and the
    ``3 x 3`` affine ``A`` mapping original pixel coordinates to crop pixel coordinates."""
    from PIL import Image

    x0, y0, side = box
    k = size / side
    # the box covers original coordinates [x0, x0 + side]; crop pixel i's centre sits at
    # x0 + (i + 0.5) / k, so i = k (u - x0) - 0.5
    A = np.array([[k, 0.0, -k * x0 - 0.5], [0.0, k, -k * y0 - 0.5], [0.0, 0.0, 1.0]])
    a, b, c = np.linalg.inv(A)[0]
    d, e, f = np.linalg.inv(A)[1]
    # PIL samples input position (a, b, c; d, e, f) . (x + 0.5, y + 0.5, 1) with pixel edges at
    # integers; convert our centre-based map to that convention
    coeffs = (a, b, c + 0.5 - 0.5 * (a + b), d, e, f + 0.5 - 0.5 * (d + e))
    out = Image.fromarray(image).transform((size, size), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)
    return np.asarray(out), A


def flip_horizontal(image: np.ndarray, uv: np.ndarray, xyz: np.ndarray, K: np.ndarray):
    """Mirror a left hand into a right one: flip the image, ``u -> W - 1 - u``, ``x -> -x`` and
    ``cx -> W - 1 - cx`` (so ``project(K', xyz') == uv'`` still holds)."""
    from .. import skeleton as sk

    w = image.shape[1]
    K2 = K.copy()
    K2[0, 2] = w - 1 - K[0, 2]
    return image[:, ::-1].copy(), sk.mirror_uv(uv, w), sk.mirror_joints(xyz), K2
