"""The biomechanical constraint (BMC) losses of Spurr et al., ECCV 2020.

``L_BMC = lambda_BL L_BL + lambda_RB L_RB + lambda_A L_A`` on scale-normalised poses:

- ``L_BL``: interval (hinge) loss on the 20 bone lengths;
- ``L_RB``: interval loss on the 4 palm curvatures and the 4 root angular distances;
- ``L_A``: distance of each of the 15 (flexion, abduction) pairs to its joint's
  convex polygon (zero inside).

Each term is the mean over its elements (20, 8 and 15), so the lambdas weigh terms
of comparable size. The loss normalises scale itself: a metric pose and the same pose
divided by its reference bone give the same loss.

Angle distance, two forms (``angle_distance=``):
    ``"halfplane"`` (default, for training): the largest signed distance to the
    polygon's edge lines, clamped at 0. One batched product with the padded edge
    normals. Equal to the exact distance wherever the nearest boundary point lies on
    an edge, a lower bound near vertices, zero exactly inside.
    ``"exact"``: Euclidean distance to the nearest boundary point (reports, plots).

Example:
    >>> import torch
    >>> from bmclib.handmodel import template_pose
    >>> from bmclib.biomech import decompose, compose
    >>> loss = BMCLoss()                              # literature-default limits
    >>> flat = template_pose()[None]                  # (1, 21, 3), metres
    >>> float(loss(flat).total)
    0.0
    >>> d = decompose(flat).with_angle("index", 1, flexion=-0.5)  # PIP hyperextended
    >>> out = loss(compose(d))
    >>> round(float(out.angle * 15), 4)              # 0.5 rad outside, one joint of 15
    0.5
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from . import skeleton as sk
from .biomech import EPS_DEGENERATE, SaturatingUpcast, compute_dtype, decompose_cm, to_component_major, validate_joints
from .fused import bmc_terms, loss_weights
from .limits import BMCLimits

__all__ = ["GRAD_BOUND", "guarded_bmc", "root_extent", "BMCLoss", "BMCLossOutput", "interval_loss", "polygon_distance", "TERM_NAMES", "VIOLATION_TOL", "violations",
           "plausible"]

#: The 43 terms of a pose, in the order of :attr:`BMCLossOutput.per_term`: 20 bone lengths,
#: 4 palm curvatures, 4 root angular distances, 15 joint-angle distances (finger-major).
TERM_NAMES: tuple[str, ...] = tuple(
    [f"length {sk.JOINT_NAMES[p]}->{sk.JOINT_NAMES[c]}" for p, c in sk.BONES]
    + [f"curvature {sk.FINGER_NAMES[f]}-{sk.FINGER_NAMES[f + 1]}" for f in range(4)]
    + [f"root angle {sk.FINGER_NAMES[f]}-{sk.FINGER_NAMES[f + 1]}" for f in range(4)]
    + [f"angles {n}" for n in sk.ANGLE_JOINT_NAMES])

#: A term is violated when its exact distance to the limits exceeds this (reference-bone units
#: for lengths and curvatures, radians for angles): above float64 round-off, far below anything
#: visible. Every count of violations in bmclib (evaluation, audit, inspector) uses it.
VIOLATION_TOL = 1e-9

_REDUCTIONS = ("none", "mean", "sum")


#: documented bound on ``max |d loss / d joint| x pose_size`` for the per-pose total of the BMC loss
#: (default lambdas), on every family, in float32 and float64, on both loss paths. The floors that
#: keep degenerate poses finite (:data:`bmclib.biomech.EPS_DEGENERATE` = 0.01 of the pose's size) set its
#: order: a bone just above the floor has a gradient of about 1 / EPS_DEGENERATE^2 pose sizes.
#: Measured (``results/benchmarks/fuzz_gradients.md``, 512 poses a family; seeds 0-3 of 256 reach
#: 1.0e6 in ``shrunk``): ``shrunk`` 8.4e5, ``shrunk_palm`` 1.6e5, ``collapsed`` 1.4e5, ``fold_pi`` 24,
#: ``scale_ref`` 12, the rest below 10.
GRAD_BOUND = 1e7


def interval_loss(x: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """``max(low - x, 0) + max(x - high, 0)``, elementwise, same shape as ``x``."""
    return torch.relu(low - x) + torch.relu(x - high)


def polygon_distance(points: Tensor, vertices: Tensor, normals: Tensor, offsets: Tensor,
                     exact: bool = False) -> Tensor:
    """Distance of points to convex polygons, zero inside.

    Args:
        points: ``(..., J, 2)`` one point per polygon.
        vertices: ``(J, M, 2)`` CCW vertices (padded by repeating the last one).
        normals: ``(J, M, 2)`` outward unit edge normals; offsets: ``(J, M)``.
        exact: Euclidean distance to the boundary instead of the half-plane bound.

    Returns:
        ``(..., J)``.
    """
    signed = (points[..., None, :] * normals).sum(-1) - offsets  # (..., J, M)
    outside = signed.amax(-1)  # (..., J)
    if not exact:
        return torch.relu(outside)  # relu: zero gradient on the boundary, where the loss is 0
    edge = torch.roll(vertices, -1, dims=-2) - vertices  # (J, M, 2)
    rel = points[..., None, :] - vertices  # (..., J, M, 2)
    t = ((rel * edge).sum(-1) / (edge * edge).sum(-1).clamp_min(1e-30)).clamp(0.0, 1.0)  # (..., J, M)
    gap = rel - t[..., None] * edge  # (..., J, M, 2)
    dist = (gap * gap).sum(-1).amin(-1).clamp_min(torch.finfo(points.dtype).tiny).sqrt()  # (..., J)
    return torch.where(outside > 0, dist, torch.zeros_like(dist))


@dataclass(frozen=True)
class BMCLossOutput:
    """Result of :class:`BMCLoss`. Terms are reduced as asked (scalars for mean/sum,
    ``(...)`` per pose for ``"none"``); the per-element tensors are set for ``"none"``.

    Attributes:
        total, bone_length, root_bone, angle: the weighted total and the three
            unweighted terms.
        per_bone: ``(..., 20)`` interval loss per bone length.
        per_root: ``(..., 8)`` 4 curvatures then 4 root angular distances.
        per_angle: ``(..., 15)`` distance of each joint's angles to its polygon (rad).
        per_term: ``(..., 43)`` the three above in :data:`TERM_NAMES` order.
    """

    total: Tensor
    bone_length: Tensor
    root_bone: Tensor
    angle: Tensor
    per_bone: Tensor | None = None
    per_root: Tensor | None = None
    per_angle: Tensor | None = None

    @property
    def per_term(self) -> Tensor:
        if self.per_bone is None:
            raise ValueError("per_term needs BMCLoss(reduction='none')")
        return torch.cat([self.per_bone, self.per_root, self.per_angle], dim=-1)


class BMCLoss(nn.Module):
    """Biomechanical constraint loss on 3D hand poses.

    Args:
        limits: :class:`~bmclib.limits.BMCLimits` (default: ``BMCLimits.default()``).
        lambda_bl, lambda_rb, lambda_a: weights of the three terms.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` over the pose dimensions.
        angle_distance: ``"halfplane"`` (fast, training) or ``"exact"``.
        check: validate input shape, dtype and finiteness (one host sync per call).
        compile: run the loss through ``torch.compile`` (a one-off compile per input
            shape; on a GPU it fuses the ~700 small ops of the autograd path).
        fused: on CPU tensors with ``angle_distance="halfplane"``, compute the loss in one
            step with a hand-written backward (:mod:`bmclib.fused`, several times faster
            eagerly; its backward is not itself differentiable). ``False`` records every op
            with autograd (the reference; use it for double backward). CUDA tensors,
            ``"exact"``, ``compile=True`` and ``torch.func`` transforms take the autograd path.
        side: ``"right"`` (the limits are a right hand's) or ``"left"``: left hands are mirrored
            (x negated, :func:`bmclib.skeleton.mirror_joints`) inside the loss, gradients included.
            A left hand scored as a right one is silently wrong (it reads implausible), so say it.

    Call it on ``joints (..., 21, 3)`` (camera-frame hands of ``side``, any units, any float dtype;
    half/bfloat16 are computed in float32). Buffers follow ``.to(device)``.

    Input that is not a tensor raises ``TypeError``. An empty batch (no poses, e.g.
    ``(0, 21, 3)``) has the loss 0 with a zero gradient for ``"mean"`` and ``"sum"`` (not the
    NaN of a mean over nothing) and empty per-pose tensors for ``"none"``.

    Gradients are finite for every finite pose the loss accepts, including degenerate ones
    (zero-length bones, collapsed palms, bones folded back by pi, poses of 1e-6 of a hand's
    size, coincident joints), and ``|d total / d joint| x pose size`` stays below
    :data:`GRAD_BOUND` for the per-pose total with the default lambdas (scale-free:
    the gradient grows as 1 / size). ``tests/test_robustness.py`` checks it family by family.
    """

    def __init__(self, limits: BMCLimits | None = None, lambda_bl: float = 1.0, lambda_rb: float = 1.0,
                 lambda_a: float = 1.0, reduction: str = "mean", angle_distance: str = "halfplane",
                 check: bool = True, compile: bool = False, fused: bool = True, side: str = "right") -> None:
        super().__init__()
        if side not in ("right", "left"):
            raise ValueError(f"side must be 'right' or 'left', got {side!r}")
        self.side = side
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        if angle_distance not in ("halfplane", "exact"):
            raise ValueError(f"angle_distance must be 'halfplane' or 'exact', got {angle_distance!r}")
        for name, lam in (("lambda_bl", lambda_bl), ("lambda_rb", lambda_rb), ("lambda_a", lambda_a)):
            if not (float(lam) >= 0.0):
                raise ValueError(f"{name} must be >= 0, got {lam!r}")
        self.limits = BMCLimits.default() if limits is None else limits
        if not isinstance(self.limits, BMCLimits):
            raise TypeError(f"limits: expected BMCLimits, got {type(self.limits).__name__}")
        self.lambda_bl, self.lambda_rb, self.lambda_a = float(lambda_bl), float(lambda_rb), float(lambda_a)
        self.reduction = reduction
        self.angle_distance = angle_distance
        self.check = check
        self.compiled = bool(compile)
        self.fused = bool(fused) and angle_distance == "halfplane" and not compile
        # torch.compile fuses the ~700 small ops of forward + backward: ~5x faster at small
        # batches once compiled (20-40 s per new batch size on a 2-core CPU; see README)
        self._terms = torch.compile(self._terms_eager) if compile else self._terms_eager
        lim = self.limits
        f64 = torch.float64  # exact limits; cast once per input dtype / device (see _consts)
        # the 28 interval terms in one tensor: 20 bone lengths, 4 curvatures, 4 root angles
        intervals = torch.tensor(np.concatenate([lim.bone_length, lim.root_curvature, lim.root_angle]), dtype=f64)
        verts, normals, offsets = lim.polygon_tensors(f64)
        self.register_buffer("interval_low", intervals[:, :1].contiguous(), persistent=False)  # (28, 1)
        self.register_buffer("interval_high", intervals[:, 1:].contiguous(), persistent=False)  # (28, 1)
        self.register_buffer("poly_vertices", verts, persistent=False)  # (15, M, 2)
        self.register_buffer("poly_normals", normals, persistent=False)  # (15, M, 2)
        self.register_buffer("poly_offsets", offsets, persistent=False)  # (15, M)
        self._cast: dict[tuple, tuple[Tensor, ...]] = {}
        self._cast_np: dict[tuple, tuple[np.ndarray, ...]] = {}
        # the reference bone's place in the (finger, bone) layout of the decomposition
        self.ref_finger, self.ref_k = divmod(sk.bone_index(*lim.reference_bone), 4)

    _CONSTS = ("interval_low", "interval_high", "poly_vertices", "poly_normals", "poly_offsets")

    def _consts(self, dtype: torch.dtype) -> tuple[Tensor, ...]:
        """The limit buffers in ``dtype`` (cached; rebuilt when the module is moved)."""
        bufs = tuple(getattr(self, n) for n in self._CONSTS)
        key = (dtype,) + tuple(id(b) for b in bufs)
        if key not in self._cast:
            cast = tuple(b.to(dtype) for b in bufs)
            self._cast = {key: cast + (cast[4][..., None].contiguous(),)}  # + offsets as (15, M, 1)
        return self._cast[key]

    def _apply(self, fn, *args, **kwargs):
        self._cast_np = {}  # .to() / .double() / .cuda() replace the buffers
        return super()._apply(fn, *args, **kwargs)

    def _numpy_consts(self, dtype: torch.dtype) -> tuple[np.ndarray, ...]:
        """The ``consts`` of :func:`bmclib.fused.bmc_terms` in ``dtype`` (cached until the module
        is moved or its lambdas change)."""
        key = (dtype, self.lambda_bl, self.lambda_rb, self.lambda_a)
        if key not in self._cast_np:
            low, high, _, normals, offsets = (getattr(self, n).detach().to("cpu", dtype).numpy() for n in self._CONSTS)
            normals_t = np.concatenate([normals.transpose(0, 2, 1), np.ones_like(normals[:, None, :, 0])], 1)
            self._cast_np = {key: (low, high, normals, normals_t,
                                   np.ascontiguousarray(offsets[..., None]), loss_weights(key[1:], low.dtype))}
        return self._cast_np[key]

    def extra_repr(self) -> str:
        return (f"lambda_bl={self.lambda_bl}, lambda_rb={self.lambda_rb}, lambda_a={self.lambda_a}, "
                f"reduction={self.reduction!r}, angle_distance={self.angle_distance!r}, compiled={self.compiled}, "
                f"fused={self.fused}, side={self.side!r}, "
                f"limits={self.limits!r}")

    def _reduce(self, x: Tensor) -> Tensor:
        if self.reduction == "mean":
            return x.mean()
        if self.reduction == "sum":
            return x.sum()
        return x

    def forward(self, joints: Tensor) -> BMCLossOutput:
        """Args: joints ``(..., 21, 3)``. Returns :class:`BMCLossOutput`."""
        if not isinstance(joints, Tensor):
            raise TypeError(f"BMCLoss: joints must be a torch.Tensor of shape (..., 21, 3), got "
                            f"{type(joints).__module__}.{type(joints).__name__}"
                            + (" (convert with torch.from_numpy)" if isinstance(joints, np.ndarray) else ""))
        if self.side == "left" and joints.shape[-1:] == (3,):  # mirrored into right hands (in the graph)
            joints = joints * joints.new_tensor([-1.0, 1.0, 1.0])
        if self.reduction != "none" and joints.numel() == 0:
            validate_joints(joints, check_finite=False)  # the same dtype and shape rules as a full batch
            zero = joints.sum().to(compute_dtype(joints.dtype)) * 0  # in the graph: a zero gradient, not NaN
            return BMCLossOutput(zero, zero, zero, zero)
        fused = (self.fused and joints.device.type == "cpu" and joints.numel() > 0
                 and not torch._C._functorch.is_functorch_wrapped_tensor(joints))  # torch.func: autograd path
        if self.check:
            validate_joints(joints, check_finite=not fused)
        batch = joints.shape[:-2]
        if joints.dtype == torch.float16:  # computed in float32; gradients saturate at fp16's range
            joints = SaturatingUpcast.apply(joints)
        if fused:
            return self._forward_fused(joints, batch)
        terms = self._terms(joints)  # (total, bl, rb, a) each (N,), per-element (20|8|15, N)
        if self.reduction == "none":
            per = [x.T.reshape(batch + x.shape[:1]) for x in terms[4:]]  # (k, N) -> (..., k)
            return BMCLossOutput(*(x.reshape(batch) for x in terms[:4]), *per)
        return BMCLossOutput(*(self._reduce(x) for x in terms[:4]))

    def _forward_fused(self, joints: Tensor, batch: torch.Size) -> BMCLossOutput:
        flat = joints.reshape(-1, sk.NUM_JOINTS, 3).to(compute_dtype(joints.dtype))
        if self.check and not np.isfinite(np.add.reduce(flat.detach().numpy(), None, np.float64)):  # NaN/inf reach it
            validate_joints(joints)  # raises, naming the first bad poses (or passes: the sum overflowed)
        terms = bmc_terms(flat, self._numpy_consts(flat.dtype), (self.ref_finger, self.ref_k), self.reduction)
        if self.reduction == "none":
            per = [x.T.reshape(batch + x.shape[:1]) for x in terms[4:]]  # (k, N) -> (..., k)
            return BMCLossOutput(*(x.reshape(batch) for x in terms[:4]), *per)
        return BMCLossOutput(*terms)

    def _terms_eager(self, joints: Tensor) -> tuple[Tensor, ...]:
        j, _ = to_component_major(joints.to(compute_dtype(joints.dtype)), 2)  # (3, 21, N)
        p = decompose_cm(j)
        low, high, verts, normals, offsets, offsets_col = self._consts(j.dtype)
        # scale normalisation by the reference bone (floored at EPS_DEGENERATE of the pose size)
        ref = p.lengths[self.ref_finger, self.ref_k].clamp_min(EPS_DEGENERATE * p.palm.scale)  # (N,)
        values = torch.cat([p.lengths.flatten(0, 1) / ref, p.curvatures * ref, p.root_angles])  # (28, N)
        per_interval = interval_loss(values, low, high)  # (28, N)
        points = p.angles.permute(2, 0, 1, 3).reshape(15, 2, -1)  # (15, 2, N) joints finger-major
        if self.angle_distance == "halfplane":
            signed = torch.baddbmm(offsets_col, normals, points, beta=-1.0)  # (15, M, N) n . p - offset
            per_angle = torch.relu(signed.amax(1))  # (15, N); relu: a zero loss has a zero gradient
        else:
            per_angle = polygon_distance(points.permute(2, 0, 1), verts, normals, offsets, exact=True).T
        per_bone, per_root = per_interval[:20], per_interval[20:]  # (20, N), (8, N)
        bl, rb, a = per_bone.mean(0), per_root.mean(0), per_angle.mean(0)  # (N,)
        total = self.lambda_bl * bl + self.lambda_rb * rb + self.lambda_a * a
        return total, bl, rb, a, per_bone, per_root, per_angle


def violations(joints: Tensor, limits: BMCLimits | None = None, tol: float = VIOLATION_TOL) -> Tensor:
    """``(..., 43)`` bool per term (:data:`TERM_NAMES` order) of poses ``(..., 21, 3)``: is the
    exact distance to ``limits`` (default: literature) above ``tol``? float32 input stays float32,
    anything else is computed in float64."""
    loss = BMCLoss(limits, reduction="none", angle_distance="exact").to(joints.device)
    return loss(joints if joints.dtype == torch.float32 else joints.to(torch.float64)).per_term > tol


def plausible(joints: Tensor, limits: BMCLimits | None = None, tol: float = VIOLATION_TOL) -> Tensor:
    """``(...,)`` bool: is every term of each pose ``(..., 21, 3)`` inside ``limits``?"""
    return ~violations(joints, limits, tol).any(-1)


def root_extent(z_rel: Tensor, bone: tuple[int, int] = sk.REFERENCE_BONE) -> Tensor:
    """``|z_n - z_m| (B,)`` of the reference bone, in its lengths: the closed-form root depth
    exists only where this is at most 1."""
    return (z_rel[..., bone[0]] - z_rel[..., bone[1]]).abs()


def guarded_bmc(per_pose: Tensor, z_rel: Tensor, margin: float = 0.05) -> Tensor:
    """The BMC of the poses whose closed-form root exists (``root_extent < 1 - margin``), plus a
    hinge on ``root_extent`` pushing the others back; both averaged over the batch."""
    extent = root_extent(z_rel)
    valid = extent < 1.0 - margin
    return torch.where(valid, per_pose, torch.zeros_like(per_pose)).mean() + torch.relu(extent - (1.0 - margin)).mean()
