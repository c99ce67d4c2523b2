"""Shared test helpers: seeded anatomical hands, rotations, hypothesis profiles."""
from __future__ import annotations

import math
import os

import pytest
import torch
from hypothesis import HealthCheck, settings

from bmclib import anatomy
from bmclib import skeleton as sk
from bmclib.biomech import compose_parts
from bmclib.handmodel import sample_hand_shapes

settings.register_profile("ci", deadline=None, derandomize=True, max_examples=100,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def rom_angles(n: int, generator: torch.Generator, shrink: float = 0.9, dtype=torch.float64) -> torch.Tensor:
    """``(n, 5, 3, 2)`` angles uniform inside each joint's range of motion, shrunk about its centre."""
    lo = torch.tensor([[[r.flexion[0], r.abduction[0]] for r in anatomy.RANGE_OF_MOTION[f]] for f in sk.FINGER_NAMES],
                      dtype=dtype) * math.pi / 180
    hi = torch.tensor([[[r.flexion[1], r.abduction[1]] for r in anatomy.RANGE_OF_MOTION[f]] for f in sk.FINGER_NAMES],
                      dtype=dtype) * math.pi / 180
    mid, half = (lo + hi) / 2, (hi - lo) / 2 * shrink
    u = torch.rand(n, 5, 3, 2, generator=generator, dtype=dtype) * 2 - 1
    return mid + half * u


def random_rotation(n: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """``(n, 3, 3)`` uniformly random proper rotations."""
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=generator, dtype=dtype))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    det = torch.linalg.det(q)
    return q * torch.where(det < 0, -1.0, 1.0).to(dtype)[:, None, None]


def anatomical_hands(n: int, seed: int = 0, dtype=torch.float64, rotate: bool = True):
    """``(joints (n, 21, 3) metres, angles (n, 5, 3, 2))``: hands posed inside the ranges of motion,
    randomly rotated and placed 0.5-0.8 m in front of a camera."""
    g = torch.Generator().manual_seed(seed)
    shapes = sample_hand_shapes(n, g, dtype=torch.float64)
    angles = rom_angles(n, g)
    joints = compose_parts(shapes.root_bones, shapes.finger_lengths, angles)
    if rotate:
        joints = joints @ random_rotation(n, g).transpose(-1, -2)
        joints = joints + torch.tensor([0.0, 0.0, 0.65]) + 0.1 * torch.randn(n, 1, 3, generator=g, dtype=torch.float64)
    return joints.to(dtype), angles.to(dtype)


@pytest.fixture(scope="session")
def hands():
    return anatomical_hands(256, seed=1)
