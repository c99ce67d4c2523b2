"""Anatomical hand shapes built from :mod:`bmclib.anatomy`: palm, segment lengths, template poses.

The shapes feed :func:`bmclib.biomech.compose_parts`, so every hand made here is posed
through the same angles the BMC losses measure.

Convention:
    Metres, camera frame (x right, y down, z forward). The template right hand faces
    the camera with its palm, fingers pointing up the image (axial = -y), thumb on the
    image's right (radial = +x), palm normal towards the camera (-z).

Example:
    >>> import torch
    >>> joints = template_pose(hand_length=0.19, dtype=torch.float64)
    >>> joints.shape
    torch.Size([21, 3])
    >>> round(float((joints[12] - joints[0]).norm()), 3)  # Buchholz: wrist -> middle tip = 0.99 HL
    0.188
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from . import anatomy
from . import skeleton as sk
from .biomech import compose_parts

__all__ = ["random_poses", "HandShape", "root_bones_from_anatomy", "palm_volar_offset_mid", "finger_lengths_from_anatomy", "template_pose",
           "sample_hand_shapes"]

_RADIAL = torch.tensor([1.0, 0.0, 0.0])
_AXIAL = torch.tensor([0.0, -1.0, 0.0])
_VOLAR = torch.tensor([0.0, 0.0, -1.0])


def palm_volar_offset_mid() -> Tensor:
    """``(5,)`` the middle of each ray's palmar offset range (:data:`bmclib.anatomy.PALM_VOLAR_OFFSET`), x HB."""
    return torch.tensor([sum(anatomy.PALM_VOLAR_OFFSET[f]) / 2 for f in sk.FINGER_NAMES])


def root_bones_from_anatomy(hand_length: Tensor, hand_breadth: Tensor, ring_arch_deg: Tensor | float = 0.0,
                            little_arch_deg: Tensor | float = 0.0, volar_offset: Tensor | None = None) -> Tensor:
    """Wrist -> CMC/MCP vectors ``(..., 5, 3)`` from Buchholz's palm coordinates.

    Args:
        hand_length, hand_breadth: ``(...)`` in metres.
        ring_arch_deg, little_arch_deg: carpometacarpal flexion of the ring and little
            rays in degrees (palm arch; :data:`bmclib.anatomy.RING_LITTLE_ARCH`), which
            tilts their root bones towards the palm.
        volar_offset: ``(..., 5)`` how far each root joint lies palmar of the palm plane, as a
            fraction of HB (:data:`bmclib.anatomy.PALM_VOLAR_OFFSET`); default: the middle of
            each range (the thumb CMC palmar, the index MCP slightly so). Pass zeros for the
            old, planar thumb-index-middle palm.
    """
    hl = torch.as_tensor(hand_length, dtype=torch.get_default_dtype())
    hb = torch.as_tensor(hand_breadth, dtype=hl.dtype)
    axial = torch.tensor([anatomy.PALM_JOINTS[f][0] for f in sk.FINGER_NAMES], dtype=hl.dtype)  # (5,)
    radial = torch.tensor([anatomy.PALM_JOINTS[f][1] for f in sk.FINGER_NAMES], dtype=hl.dtype)  # (5,)
    arch = torch.zeros(hl.shape + (5,), dtype=hl.dtype)
    arch[..., 3] = math.pi / 180 * torch.as_tensor(ring_arch_deg, dtype=hl.dtype)
    arch[..., 4] = math.pi / 180 * torch.as_tensor(little_arch_deg, dtype=hl.dtype)
    off = palm_volar_offset_mid().to(hl.dtype) if volar_offset is None else torch.as_tensor(volar_offset, dtype=hl.dtype)
    a = axial * hl[..., None]  # (..., 5)
    r = radial * hb[..., None]  # (..., 5)
    ax, rad, vol = (v.to(hl.dtype) for v in (_AXIAL, _RADIAL, _VOLAR))
    return (r[..., None] * rad + (a * torch.cos(arch))[..., None] * ax
            + (a * torch.sin(arch) + off * hb[..., None])[..., None] * vol)  # (..., 5, 3)


def finger_lengths_from_anatomy(hand_length: Tensor) -> Tensor:
    """Lengths ``(..., 5, 3)`` of the three bones after each root bone (Buchholz ratios x HL).

    Thumb: metacarpal, proximal, distal; fingers: proximal, middle, distal phalanx.
    """
    hl = torch.as_tensor(hand_length, dtype=torch.get_default_dtype())
    ratios = []
    for f in sk.FINGER_NAMES:
        meta, prox, mid, dist = anatomy.SEGMENT_RATIOS[f]
        ratios.append((meta, prox, dist) if mid is None else (prox, mid, dist))
    return torch.tensor(ratios, dtype=hl.dtype) * hl[..., None, None]  # (..., 5, 3)


def template_pose(hand_length: float = 0.19, breadth_ratio: float | None = None, angles: Tensor | None = None,
                  arch_deg: tuple[float, float] = (0.0, 0.0), dtype: torch.dtype = torch.float32,
                  volar_offset: Tensor | None = None) -> Tensor:
    """One right hand ``(21, 3)`` in metres, wrist at the origin; all joint angles 0 by default.

    ``breadth_ratio`` defaults to the male mean HB / HL of ANSUR II; ``volar_offset`` to the
    middle of :data:`bmclib.anatomy.PALM_VOLAR_OFFSET` (thumb CMC palmar of the palm plane);
    ``volar_offset=torch.zeros(5)`` gives a planar palm (every root bone in one plane).
    """
    if breadth_ratio is None:
        male = anatomy.HAND_SIZE["male"]
        breadth_ratio = male.breadth_mean / male.length_mean
    hl = torch.tensor(hand_length, dtype=dtype)
    roots = root_bones_from_anatomy(hl, hl * breadth_ratio, *arch_deg, volar_offset=volar_offset)
    if angles is None:
        angles = torch.zeros(5, 3, 2, dtype=dtype)
    return compose_parts(roots, finger_lengths_from_anatomy(hl), angles.to(dtype))


@dataclass(frozen=True)
class HandShape:
    """A batch of hand shapes: ``root_bones (N, 5, 3)``, ``finger_lengths (N, 5, 3)`` metres,
    ``hand_length (N,)``, ``hand_breadth (N,)``, ``female (N,)`` bool."""

    root_bones: Tensor
    finger_lengths: Tensor
    hand_length: Tensor
    hand_breadth: Tensor
    female: Tensor


def sample_hand_shapes(n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
                       segment_cv: float = anatomy.SEGMENT_NOISE_CV) -> HandShape:
    """Sample ``n`` adult hands: sex 50/50, (HL, HB) correlated normal from ANSUR II,
    segment lengths from Buchholz ratios with ``segment_cv`` noise, palm arch uniform in
    :data:`bmclib.anatomy.RING_LITTLE_ARCH`, palmar offsets of the root joints uniform in
    :data:`bmclib.anatomy.PALM_VOLAR_OFFSET`. Deterministic for a seeded ``generator``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    g = generator
    female = torch.rand(n, generator=g, dtype=dtype) < 0.5
    z = torch.randn(n, 2, generator=g, dtype=dtype)
    stats = [anatomy.HAND_SIZE["male"], anatomy.HAND_SIZE["female"]]
    sel = female.long()
    lm, ls, bm, bs, rho = (torch.tensor([getattr(s, k) for s in stats], dtype=dtype)[sel]
                           for k in ("length_mean", "length_sd", "breadth_mean", "breadth_sd", "corr"))
    hl = (lm + ls * z[:, 0]) / 1000.0
    hb = (bm + bs * (rho * z[:, 0] + torch.sqrt(1 - rho ** 2) * z[:, 1])) / 1000.0
    (r_lo, r_hi), (l_lo, l_hi) = anatomy.RING_LITTLE_ARCH["ring"], anatomy.RING_LITTLE_ARCH["little"]
    u = torch.rand(n, 4, generator=g, dtype=dtype)
    ring_arch = u[:, 2] * (r_lo + (r_hi - r_lo) * u[:, 0])
    little_arch = u[:, 3] * (l_lo + (l_hi - l_lo) * u[:, 1])
    v_lo, v_hi = (torch.tensor([anatomy.PALM_VOLAR_OFFSET[f][k] for f in sk.FINGER_NAMES], dtype=dtype) for k in (0, 1))
    volar = v_lo + (v_hi - v_lo) * torch.rand(n, 5, generator=g, dtype=dtype)
    roots = root_bones_from_anatomy(hl, hb, ring_arch, little_arch, volar)
    roots = roots * (1 + segment_cv * torch.randn(n, 5, 1, generator=g, dtype=dtype))
    lengths = finger_lengths_from_anatomy(hl) * (1 + segment_cv * torch.randn(n, 5, 3, generator=g, dtype=dtype))
    return HandShape(roots, lengths, hl, hb, female)


def random_poses(n: int, seed: int = 0, spread: float = 0.6) -> torch.Tensor:
    """``(n, 21, 3)`` float32 anatomical hand shapes with random angles (rad, uniform +-spread
    around a half-closed hand), some of them outside the limits."""
    g = torch.Generator().manual_seed(seed)
    shapes = sample_hand_shapes(n, g)
    angles = torch.empty(n, 5, 3, 2, dtype=torch.float64).uniform_(-spread, spread, generator=g)
    angles[..., 0] += 0.6
    return compose_parts(shapes.root_bones, shapes.finger_lengths, angles).float()
