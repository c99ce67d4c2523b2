"""Collapse diagnostics of predicted hands: is the 2D shrinking, are the bones turning onto the ray?

BMC has degenerate minimisers (DESIGN.md): a flat hand, and fingers lined up with the viewing ray
while the predicted 2D shrinks (benchmark v2's run 3: 2D extent 0.47-0.75 of the truth's, median
|cos(bone, ray)| 0.73-0.96 against the truth's 0.62). Both show in these two numbers long before
the depth error is measured, so training logs them and every evaluation reports them.

    >>> import torch
    >>> uv = torch.rand(4, 21, 2) * 50
    >>> round(float(extent_ratio(uv * 0.5 + 3, uv).median()), 6)
    0.5
"""
from __future__ import annotations

from torch import Tensor

from . import skeleton as sk

__all__ = ["extent_ratio", "bone_ray_cos"]

_CHILD = list(range(1, sk.NUM_JOINTS))
_PARENT = [sk.PARENTS[j] for j in _CHILD]


def extent_ratio(uv_pred: Tensor, uv_true: Tensor) -> Tensor:
    """``(...)`` the predicted 2D hand's size over the truth's: the rms distance of the 21 keypoints
    from their centroid, predicted over true (1: no shrink)."""
    def size(uv: Tensor) -> Tensor:
        c = uv - uv.mean(-2, keepdim=True)
        return c.pow(2).sum(-1).mean(-1).sqrt()
    return size(uv_pred.float()) / size(uv_true.float()).clamp_min(1e-9)


def bone_ray_cos(joints: Tensor) -> Tensor:
    """``(..., 20)`` ``|cos|`` of the angle between each bone of camera-frame ``joints (..., 21, 3)``
    and the viewing ray through its midpoint (1: the bone points at the camera)."""
    j = joints.float()
    bone = j[..., _CHILD, :] - j[..., _PARENT, :]
    ray = 0.5 * (j[..., _CHILD, :] + j[..., _PARENT, :])
    cos = (bone * ray).sum(-1) / (bone.norm(dim=-1) * ray.norm(dim=-1)).clamp_min(1e-12)
    return cos.abs()
