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

__all__ = ["project", "pixel_rays"]


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
