"""The hand skeleton: joint order, parents, bones, fingers, and converters.

This is the one module that knows index lists. Everything else imports them.

Convention:
    Joint order "F" (FreiHAND's, identical to MediaPipe Hands'; *not* MANO's, see
    :data:`MANO_TO_F`):
    0 wrist; thumb 1-4 (CMC, MCP, IP, tip); index 5-8 (MCP, PIP, DIP, tip);
    middle 9-12; ring 13-16; little 17-20. Right hands; left hands are mirrored
    by the loaders (:func:`mirror_joints`, :func:`mirror_uv`). Bone ``b`` (0..19)
    runs from ``PARENTS[b + 1]`` to joint ``b + 1``. Tensors are ``(..., 21, 3)``.

Example:
    >>> JOINT_NAMES[REFERENCE_BONE[0]], JOINT_NAMES[REFERENCE_BONE[1]]
    ('middle_mcp', 'middle_pip')
    >>> [JOINT_NAMES[j] for j in FINGER_JOINTS[0]]
    ['thumb_cmc', 'thumb_mcp', 'thumb_ip', 'thumb_tip']
"""
from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np
import torch

__all__ = [
    "NUM_JOINTS", "NUM_BONES", "NUM_FINGERS", "FINGER_NAMES", "JOINT_NAMES",
    "PARENTS", "BONES", "FINGER_JOINTS", "FINGER_BONES", "ROOT_BONES",
    "ROOT_BONE_JOINTS", "FINGER_ANGLE_BONES", "ANGLE_JOINT_NAMES",
    "REFERENCE_BONE", "bone_index", "reference_length",
    "RHD_TO_F", "HO3D_TO_F", "MANO_TO_F", "MEDIAPIPE_TO_F", "F_TO_RHD", "F_TO_HO3D", "F_TO_MANO",
    "RHD_LEFT", "RHD_RIGHT",
    "reorder", "from_rhd", "to_rhd", "rhd_hand", "from_ho3d", "to_ho3d",
    "from_mediapipe", "from_mano", "to_mano", "mirror_joints", "mirror_uv",
]

NUM_JOINTS = 21
NUM_BONES = 20
NUM_FINGERS = 5

FINGER_NAMES = ("thumb", "index", "middle", "ring", "little")
_FINGER_JOINT_KINDS = (
    ("cmc", "mcp", "ip", "tip"),
    ("mcp", "pip", "dip", "tip"),
    ("mcp", "pip", "dip", "tip"),
    ("mcp", "pip", "dip", "tip"),
    ("mcp", "pip", "dip", "tip"),
)
JOINT_NAMES: tuple[str, ...] = ("wrist",) + tuple(
    f"{finger}_{kind}" for finger, kinds in zip(FINGER_NAMES, _FINGER_JOINT_KINDS) for kind in kinds
)

#: Parent of each joint (-1 for the wrist).
PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)

#: ``(parent, child)`` joint pairs, one per bone; bone ``b`` ends at joint ``b + 1``.
BONES: tuple[tuple[int, int], ...] = tuple((PARENTS[j], j) for j in range(1, NUM_JOINTS))

#: Joints of each finger, proximal to distal, thumb -> little. ``(5, 4)``.
FINGER_JOINTS: tuple[tuple[int, ...], ...] = tuple(tuple(range(1 + 4 * f, 5 + 4 * f)) for f in range(NUM_FINGERS))

#: Bones of each finger (bone indices), root bone first. ``(5, 4)``.
FINGER_BONES: tuple[tuple[int, ...], ...] = tuple(tuple(j - 1 for j in joints) for joints in FINGER_JOINTS)

#: Bone indices of the five root bones (wrist -> CMC/MCP), thumb -> little.
ROOT_BONES: tuple[int, ...] = tuple(bones[0] for bones in FINGER_BONES)
#: Joint index at the end of each root bone.
ROOT_BONE_JOINTS: tuple[int, ...] = tuple(joints[0] for joints in FINGER_JOINTS)

#: Bone indices of the 15 bones that carry (flexion, abduction) angles, ``(5, 3)``.
FINGER_ANGLE_BONES: tuple[tuple[int, ...], ...] = tuple(bones[1:] for bones in FINGER_BONES)
#: Name of the joint at which each of the 15 angles is measured (the bone's proximal joint).
ANGLE_JOINT_NAMES: tuple[str, ...] = tuple(
    JOINT_NAMES[PARENTS[b + 1]] for bones in FINGER_ANGLE_BONES for b in bones
)

#: Default reference bone for scale normalisation: middle MCP -> PIP (FreiHAND's ``scale``).
REFERENCE_BONE: tuple[int, int] = (9, 10)

# Consistency of the tables above (cheap, runs once at import).
assert [j for joints in FINGER_JOINTS for j in joints] == list(range(1, NUM_JOINTS))
assert all(PARENTS[joints[0]] == 0 for joints in FINGER_JOINTS)


def reference_length(joints: ArrayLike, bone: tuple[int, int] = REFERENCE_BONE) -> ArrayLike:
    """Length ``(...)`` of the reference bone of joints ``(..., 21, 3)`` (FreiHAND's ``scale``)."""
    d = joints[..., bone[1], :] - joints[..., bone[0], :]
    if isinstance(d, torch.Tensor):
        return d.norm(dim=-1)
    return np.linalg.norm(d, axis=-1)


def bone_index(parent: int, child: int) -> int:
    """Index (0..19) of the bone ``parent -> child``.

    >>> bone_index(*REFERENCE_BONE)
    9
    """
    if not (0 < child < NUM_JOINTS) or PARENTS[child] != parent:
        raise ValueError(f"({parent}, {child}) is not a bone of the F skeleton; parents are {PARENTS}")
    return child - 1


# --- other data sets' joint orders -------------------------------------------------
#: RHD, per hand (21 of its 42 keypoints; wrist then each finger tip -> MCP).
RHD_TO_F: tuple[int, ...] = (0, 4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17)
#: HO-3D / MANO with fingertips appended: MANO's 16 joints (wrist; index, middle, little, ring,
#: thumb, three each) then the 5 tips in the order thumb, index, middle, ring, little.
HO3D_TO_F: tuple[int, ...] = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)
#: MANO's kinematic joints as smplx's MANO layer returns them (the 16 joints above) with the 5
#: fingertips appended thumb, index, middle, ring, little (e.g. from the MANO vertices 745, 317,
#: 444, 556, 673, as HO-3D does): the same order as HO-3D's. Tips appended in another order need
#: their own permutation. manotorch's ``ManoLayer`` is different: it already returns 21 joints with
#: the tips in the F order (wrist, then thumb, index, ... each root to tip), so its output needs no
#: reordering (``--order f``).
MANO_TO_F: tuple[int, ...] = HO3D_TO_F
#: MediaPipe Hands uses our order.
MEDIAPIPE_TO_F: tuple[int, ...] = tuple(range(NUM_JOINTS))
#: RHD's 42 keypoints: the left hand is 0..20, the right hand 21..41.
RHD_LEFT: tuple[int, ...] = tuple(range(0, 21))
RHD_RIGHT: tuple[int, ...] = tuple(range(21, 42))


def _inverse(perm: Sequence[int]) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


F_TO_RHD = _inverse(RHD_TO_F)
F_TO_HO3D = _inverse(HO3D_TO_F)
F_TO_MANO = _inverse(MANO_TO_F)

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)


def reorder(x: ArrayLike, index: Sequence[int], *, axis: int = -2, name: str = "x") -> ArrayLike:
    """Select ``index`` along ``axis`` of a numpy array or torch tensor.

    Args:
        x: ``(..., N, C)`` keypoints (``axis=-2``), any trailing channels.
        index: source index for each output joint, e.g. :data:`RHD_TO_F`.
    """
    shape = tuple(x.shape)
    ndim_needed = -axis if axis < 0 else axis + 1
    if len(shape) < ndim_needed:
        raise ValueError(f"{name}: expected at least {abs(axis)} dimensions, got shape {shape}")
    n = shape[axis]
    if n <= max(index):
        raise ValueError(f"{name}: axis {axis} has {n} entries, index needs {max(index) + 1}; shape {shape}")
    if isinstance(x, torch.Tensor):
        return x.index_select(axis % x.dim(), torch.as_tensor(index, device=x.device))
    return np.take(x, np.asarray(index), axis=axis)


def _check_joints(x, n: int, name: str) -> None:
    if x.ndim < 2 or x.shape[-2] != n:
        raise ValueError(f"{name}: expected shape (..., {n}, C), got {tuple(x.shape)}")


def from_rhd(x: ArrayLike) -> ArrayLike:
    """One RHD hand ``(..., 21, C)`` (wrist, tips first) -> F order.

    >>> from_rhd(np.arange(21)[:, None])[:5, 0].tolist()
    [0, 4, 3, 2, 1]
    """
    _check_joints(x, NUM_JOINTS, "RHD hand")
    return reorder(x, RHD_TO_F)


def to_rhd(x: ArrayLike) -> ArrayLike:
    """F order ``(..., 21, C)`` -> one RHD hand (inverse of :func:`from_rhd`)."""
    _check_joints(x, NUM_JOINTS, "F hand")
    return reorder(x, F_TO_RHD)


def rhd_hand(x: ArrayLike, side: str) -> ArrayLike:
    """Pick one hand of RHD's 42 keypoints ``(..., 42, C)`` and reorder it to F.

    ``side`` is ``"left"`` (keypoints 0-20) or ``"right"`` (21-41). Left hands are
    returned as they are; mirror them with :func:`mirror_joints` / :func:`mirror_uv`.
    """
    _check_joints(x, 42, "RHD keypoints")
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    return from_rhd(reorder(x, RHD_LEFT if side == "left" else RHD_RIGHT))


def from_ho3d(x: ArrayLike) -> ArrayLike:
    """HO-3D / MANO-with-tips order ``(..., 21, C)`` -> F order."""
    _check_joints(x, NUM_JOINTS, "HO-3D hand")
    return reorder(x, HO3D_TO_F)


def to_ho3d(x: ArrayLike) -> ArrayLike:
    """F order -> HO-3D / MANO-with-tips order (inverse of :func:`from_ho3d`)."""
    _check_joints(x, NUM_JOINTS, "F hand")
    return reorder(x, F_TO_HO3D)


def from_mano(x: ArrayLike) -> ArrayLike:
    """MANO joints with the tips appended (:data:`MANO_TO_F`) ``(..., 21, C)`` -> F order."""
    _check_joints(x, NUM_JOINTS, "MANO hand (16 joints + 5 tips)")
    return reorder(x, MANO_TO_F)


def to_mano(x: ArrayLike) -> ArrayLike:
    """F order -> MANO joints with the tips appended (inverse of :func:`from_mano`)."""
    _check_joints(x, NUM_JOINTS, "F hand")
    return reorder(x, F_TO_MANO)


def from_mediapipe(x: ArrayLike) -> ArrayLike:
    """MediaPipe Hands ``(..., 21, C)`` -> F order (the identity, checked)."""
    _check_joints(x, NUM_JOINTS, "MediaPipe hand")
    return x


def mirror_joints(joints: ArrayLike) -> ArrayLike:
    """Mirror camera-frame 3D joints ``(..., 21, 3)`` left <-> right (negate x).

    Mirroring a left hand gives a right hand with the same joint angles.
    """
    if joints.shape[-1] != 3:
        raise ValueError(f"joints: expected (..., 3) coordinates, got shape {tuple(joints.shape)}")
    sign = [-1.0, 1.0, 1.0]
    if isinstance(joints, torch.Tensor):
        return joints * joints.new_tensor(sign)
    return joints * np.asarray(sign, dtype=joints.dtype)


def mirror_uv(uv: ArrayLike, width: int) -> ArrayLike:
    """Mirror pixel coordinates ``(..., 2)`` of an image ``width`` pixels wide: u -> W - 1 - u.

    (Pixel centres at integer coordinates 0..W-1.) Pair it with flipping the image
    and with ``K[0, 2] -> W - 1 - K[0, 2]`` so that projection stays consistent.
    """
    if uv.shape[-1] < 2:
        raise ValueError(f"uv: expected (..., 2), got shape {tuple(uv.shape)}")
    out = uv.clone() if isinstance(uv, torch.Tensor) else uv.copy()
    out[..., 0] = (width - 1) - out[..., 0]
    return out
