"""Camera helpers: pinhole projection and pixel rays.

Convention:
    Camera frame: x right, y down, z forward, metres. ``K (..., 3, 3)`` maps camera
    coordinates to pixels with pixel centres at integer coordinates 0..W-1.

Example:
    >>> import torch
    >>> K = torch.tensor([[500.0, 0, 64], [0, 500.0, 64], [0, 0, 1]])
    >>> project(torch.tensor([[0.1, 0.0, 1.0]]), K)
    tensor([[114.,  64.]])
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import skeleton as sk

__all__ = ["project", "pixel_rays", "normalised_coords", "root_depth", "from_2p5d", "to_2p5d"]


def project(xyz: Tensor, K: Tensor) -> Tensor:
    """Project points ``(..., J, 3)`` with intrinsics ``(..., 3, 3)`` to pixels ``(..., J, 2)``."""
    if xyz.shape[-1] != 3:
        raise ValueError(f"xyz: expected (..., J, 3), got {tuple(xyz.shape)}")
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"K: expected (..., 3, 3), got {tuple(K.shape)}")
    p = xyz @ K.transpose(-1, -2)  # (..., J, 3)
    return p[..., :2] / p[..., 2:]


def pixel_rays(K: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """Unit ray directions ``(B, ..., 3)`` through pixels ``u, v (B, ...)`` of cameras ``K (B, 3, 3)``."""
    fx, fy = K[:, 0, 0], K[:, 1, 1]
    cx, cy, s = K[:, 0, 2], K[:, 1, 2], K[:, 0, 1]
    shape = (-1,) + (1,) * (u.dim() - 1)
    y = (v - cy.view(shape)) / fy.view(shape)
    x = (u - cx.view(shape) - s.view(shape) * y) / fx.view(shape)
    d = torch.stack([x, y, torch.ones_like(x)], dim=-1)
    return d / d.norm(dim=-1, keepdim=True)


def normalised_coords(uv: Tensor, K: Tensor) -> Tensor:
    """``(x~, y~)`` ``(..., J, 2)`` with ``(x~, y~, 1) = K^-1 (u, v, 1)``."""
    ones = torch.ones_like(uv[..., :1])
    h = torch.cat([uv, ones], -1) @ torch.linalg.inv(K).transpose(-1, -2)  # (..., J, 3)
    return h[..., :2] / h[..., 2:]


def root_depth(uv: Tensor, z_rel: Tensor, K: Tensor, bone: tuple[int, int] = sk.REFERENCE_BONE, length: float = 1.0,
               min_a: float = 1e-8, both: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Closed-form normalised root depth ``Z (...)`` from 2.5D (Iqbal et al. 2018).

    Args:
        uv: ``(..., J, 2)`` pixels; z_rel: ``(..., J)`` root-relative depths in units of the
            reference bone; K: ``(..., 3, 3)``; bone: the reference bone ``(n, m)`` whose
            normalised length is ``length``.

    Solves ``|(Z + z_n) p_n - (Z + z_m) p_m| = length`` for the larger root, with
    ``p = K^-1 (u, v, 1)``. Guards: ``a`` (the 2D length of the bone in normalised camera
    coordinates, squared) is clamped at ``min_a`` and a negative discriminant at 0.
    ``both``: return ``(larger, smaller)`` roots (another bone than the reference may need the
    smaller one).
    """
    n, m = bone
    xy = normalised_coords(uv, K)  # (..., J, 2)
    xn, yn = xy[..., n, 0], xy[..., n, 1]
    xm, ym = xy[..., m, 0], xy[..., m, 1]
    zn, zm = z_rel[..., n], z_rel[..., m]
    a = ((xn - xm) ** 2 + (yn - ym) ** 2).clamp_min(min_a)
    b = 2 * (zn * (xn ** 2 + yn ** 2 - xn * xm - yn * ym) + zm * (xm ** 2 + ym ** 2 - xn * xm - yn * ym))
    c = (xn * zn - xm * zm) ** 2 + (yn * zn - ym * zm) ** 2 + (zn - zm) ** 2 - length ** 2
    disc = (b * b - 4 * a * c).clamp_min(0.0)
    if both:
        return (-b + disc.sqrt()) / (2 * a), (-b - disc.sqrt()) / (2 * a)
    return (-b + disc.sqrt()) / (2 * a)


def from_2p5d(uv: Tensor, z_rel: Tensor, root_z: Tensor, K: Tensor) -> Tensor:
    """Joints ``(..., J, 3)`` from pixels, root-relative depths and the root depth
    (all depths in the same units): ``J_k = (Z + z_k) K^-1 (u_k, v_k, 1)``."""
    xy = normalised_coords(uv, K)
    depth = (root_z[..., None] + z_rel)[..., None]  # (..., J, 1)
    return torch.cat([xy * depth, depth], -1)


def to_2p5d(xyz: Tensor, K: Tensor, bone: tuple[int, int] = sk.REFERENCE_BONE, root: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """2.5D of joints ``(..., J, 3)``: ``(uv (..., J, 2), z_rel (..., J), Z (...), s (...))`` with
    depths normalised by the reference bone's length ``s``: ``z_rel = (z - z_root) / s``,
    ``Z = z_root / s``."""
    n, m = bone
    s = (xyz[..., n, :] - xyz[..., m, :]).norm(dim=-1)  # (...,)
    z = xyz[..., 2]
    return project(xyz, K), (z - z[..., root:root + 1]) / s[..., None], z[..., root] / s, s
