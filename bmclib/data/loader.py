"""Mixed 3D / 2D batches from prepared caches, and augmentation on tensors.

Sampling is stateless: the samples of step ``t`` are drawn by a generator seeded with
``(seed, t)``, so a resumed run sees exactly the batches an uninterrupted one would, and
``W`` distributed processes with batch ``B`` each see the same samples as one process
with batch ``W * B`` (each rank takes its slice of the global batch).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
import torch.nn.functional as F

from .cache import PreparedCache

__all__ = ["Batch", "MixedSampler", "load_batch", "augment", "AugmentConfig"]


@dataclass
class Batch:
    """``images (B, 3, S, S)`` float in [0, 1]; ``uv (B, 21, 2)``; ``xyz (B, 21, 3)`` (NaN where no
    3D label); ``K (B, 3, 3)``; ``has_3d (B,)``; ``scale (B,)`` (NaN where no 3D label)."""

    images: Tensor
    uv: Tensor
    xyz: Tensor
    K: Tensor
    has_3d: Tensor
    scale: Tensor

    def to(self, device) -> "Batch":
        return Batch(*(getattr(self, f).to(device, non_blocking=True) for f in
                       ("images", "uv", "xyz", "K", "has_3d", "scale")))


def load_batch(cache: PreparedCache, idx: np.ndarray) -> Batch:
    """Gather samples ``idx`` of a cache into a :class:`Batch` (float32)."""
    order = np.argsort(idx)  # read the memmap in file order, then restore the batch order
    inv = np.empty_like(order)
    inv[order] = np.arange(len(idx))
    images = torch.from_numpy(np.ascontiguousarray(cache.images[idx[order]][inv]))
    a = cache.annotations
    t = lambda k: torch.from_numpy(np.ascontiguousarray(a[k][idx])).float()  # noqa: E731
    return Batch(images.permute(0, 3, 1, 2).float().div_(255), t("uv"), t("xyz"), t("K"),
                 torch.from_numpy(a["has_3d"][idx].copy()), t("scale"))


class MixedSampler:
    """Indices for step ``t``: ``ratio`` of each global batch from ``first`` (e.g. the 3D set),
    the rest from ``second`` (e.g. the 2D-only set); with replacement, seeded by (seed, t)."""

    def __init__(self, sizes: tuple[int, int | None], batch_size: int, ratio: float, seed: int,
                 rank: int = 0, world: int = 1):
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"ratio must be in [0, 1], got {ratio}")
        if sizes[1] is None and ratio < 1.0:
            raise ValueError("a second data set is needed when ratio < 1")
        self.sizes, self.batch, self.ratio, self.seed = sizes, batch_size, ratio, seed
        self.rank, self.world = rank, world

    def indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """``(which (B,), index (B,))`` for this rank's slots of the global batch at ``step``:
        ``which`` is 0 for the first data set, 1 for the second."""
        g = np.random.default_rng([self.seed, step])
        total = self.batch * self.world
        n1 = int(round(self.ratio * total))
        which = np.ones(total, dtype=np.int64)
        which[:n1] = 0
        g.shuffle(which)  # where in the global batch each set's samples go
        index = np.where(which == 0, g.integers(0, self.sizes[0], total),
                         g.integers(0, self.sizes[1] or 1, total))
        lo, hi = self.rank * self.batch, (self.rank + 1) * self.batch
        return which[lo:hi], index[lo:hi]

    def load(self, step: int, caches: tuple) -> Batch:
        """This rank's batch at ``step``, in slot order, gathered from ``caches = (first, second)``."""
        which, index = self.indices(step)
        parts, pos = [], []
        for k, cache in enumerate(caches):
            sel = np.nonzero(which == k)[0]
            if len(sel):
                parts.append(load_batch(cache, index[sel]))
                pos.append(sel)
        order = np.argsort(np.concatenate(pos), kind="stable")
        fields = ("images", "uv", "xyz", "K", "has_3d", "scale")
        cat = [torch.cat([getattr(p, f) for p in parts]) for f in fields]
        return Batch(*(t[torch.from_numpy(order)] for t in cat))


@dataclass
class AugmentConfig:
    rotation_deg: float = 30.0
    scale: float = 0.1
    translate: float = 0.05
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2


def augment(batch: Batch, cfg: AugmentConfig, generator: torch.Generator, offset: int = 0,
            total: int | None = None, affine_grid: bool = False) -> Batch:
    """Rotate (about the principal point, i.e. about the optical axis), scale and shift the
    images, with labels and intrinsics following exactly; then jitter colours.

    The in-plane rotation turns the 3D joints about the camera's z axis (exact for
    ``fx == fy``); scale and shift change ``K``. Every image keeps ``project(K', xyz') == uv'``.
    Parameters are drawn for a global batch of ``total`` samples and this batch takes
    ``offset:offset+B`` of them, so distributed ranks augment like one process.

    ``affine_grid``: the fast compute path's arithmetic: the sampling grid from the affine map in
    normalised coordinates by broadcasting, and the colour jitter in fewer passes (the same maps, equal
    to float32 round-off, a third of the augmentation's time), instead of the explicit per-pixel product
    and the step-by-step jitter (the reference path, kept bit for bit).
    """
    B, _, S, _ = batch.images.shape
    g = generator
    n = total or B
    sl = slice(offset, offset + B)
    th = ((torch.rand(n, generator=g) * 2 - 1) * math.radians(cfg.rotation_deg))[sl]
    sc = (1 + (torch.rand(n, generator=g) * 2 - 1) * cfg.scale)[sl]
    tr = ((torch.rand(n, 2, generator=g) * 2 - 1) * cfg.translate * S)[sl]
    c, s = torch.cos(th), torch.sin(th)
    K = batch.K
    cx, cy = K[:, 0, 2], K[:, 1, 2]
    eye = torch.eye(3).expand(B, 3, 3)
    rot = torch.zeros(B, 3, 3)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1
    # pixel map of the rotation about (cx, cy): p -> R (p - c) + c
    rp = rot.clone()
    rp[:, 0, 2] = cx - (c * cx - s * cy)
    rp[:, 1, 2] = cy - (s * cx + c * cy)
    centre = (S - 1) / 2
    sm = eye.clone()
    sm[:, 0, 0], sm[:, 1, 1] = sc, sc
    sm[:, 0, 2] = centre - sc * centre + tr[:, 0]
    sm[:, 1, 2] = centre - sc * centre + tr[:, 1]
    A = sm @ rp  # input pixel -> output pixel
    uv_h = torch.cat([batch.uv, torch.ones_like(batch.uv[..., :1])], -1) @ A.transpose(1, 2)
    xyz = batch.xyz @ rot.transpose(1, 2)  # NaN stays NaN
    K_new = sm @ K
    # sample: output pixel p -> input A^-1 p, in grid_sample's [-1, 1] (align_corners=False)
    if affine_grid:  # the same map in normalised coordinates: N A^-1 N^-1, N(p) = (2p + 1) / S - 1
        N = torch.tensor([[2 / S, 0, 1 / S - 1], [0, 2 / S, 1 / S - 1], [0, 0, 1]])
        theta = (N @ torch.linalg.inv(A) @ torch.linalg.inv(N))[:, :2]  # (B, 2, 3)
        pc = (2 * torch.arange(S, dtype=torch.float32) + 1) / S - 1  # (S,) output pixel centres, normalised
        grid = torch.empty(B, S, S, 2)
        for k in range(2):  # x' = t_k0 x + t_k1 y + t_k2, by broadcasting: no (B, S*S, 3) product
            t = theta[:, k]  # (B, 3)
            grid[..., k] = (t[:, 0, None, None] * pc[None, None, :] + t[:, 1, None, None] * pc[None, :, None]
                            + t[:, 2, None, None])
    else:
        lin = torch.arange(S, dtype=torch.float32)
        yy, xx = torch.meshgrid(lin, lin, indexing="ij")
        pts = torch.stack([xx, yy, torch.ones_like(xx)], -1).view(1, -1, 3)  # (1, S*S, 3)
        src = pts @ torch.linalg.inv(A).transpose(1, 2)  # (B, S*S, 3)
        grid = ((2 * src[..., :2] + 1) / S - 1).view(B, S, S, 2)
    img = F.grid_sample(batch.images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # colour: brightness, contrast, saturation
    br = (1 + (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * cfg.brightness)[sl]
    ct = (1 + (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * cfg.contrast)[sl]
    sa = (1 + (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * cfg.saturation)[sl]
    if affine_grid:  # the same jitter in fewer passes: with g the channel mean and m the image mean,
        # ((x br - m br) ct + m br) then (. - grey) sa + grey = (x - g) br ct sa + (g br ct + m br (1 - ct))
        g0 = img.mean(1, keepdim=True)  # (B, 1, S, S)
        m0 = g0.mean((2, 3), keepdim=True)  # (B, 1, 1, 1)
        grey = g0 * (br * ct) + m0 * (br * (1 - ct))
        img = torch.addcmul(grey, img - g0, br * ct * sa).clamp_(0, 1)
    else:
        img = img * br
        mean = img.mean((1, 2, 3), keepdim=True)
        img = (img - mean) * ct + mean
        grey = img.mean(1, keepdim=True)
        img = ((img - grey) * sa + grey).clamp(0, 1)
    return Batch(img, uv_h[..., :2], xyz, K_new, batch.has_3d, batch.scale)
