"""Biomechanical decomposition of a 3D hand pose, and its inverse.

:func:`decompose` turns joints into bones, bone lengths, palm terms (angular
distances and curvatures between neighbouring root bones) and 15 (flexion,
abduction) pairs measured in local finger frames; :func:`compose` rebuilds the
joints from them, so editing an angle or a length and composing again poses a hand.
No inverse kinematics and no iterative fitting: every step is a closed form,
differentiable, batched over any leading dimensions and over fingers.

Convention:
    Joint order, parents and bones from :mod:`bmclib.skeleton` (right hands).
    Palm normals ``n_f = normalize(r_{f+1} x r_f)`` point to the back of a right
    hand. A finger's first frame has ``z`` along its root bone, ``x`` = minus the
    palm normal (towards the palm) and ``y = z x x`` (towards the thumb for the four
    fingers). Flexion ``atan2(b.x, b.z)`` is positive towards the palm; abduction
    ``atan2(b.y, |b - (b.y) y|)`` is positive towards ``y``. Each next frame is the
    previous one turned by the minimal rotation taking its ``z`` onto the bone.
    Angles in radians; lengths and curvatures in the units of the input.

Numerics:
    The angles use ``atan2`` (no ``arccos`` of clamped cosines) and the rotation is
    Rodrigues' formula with the unnormalised axis ``v = z x d``:
    ``R = I + [v]x + [v]x^2 / (1 + z.d)``, which is finite for a straight finger
    (``v = 0``). Degenerate input (all-zero pose, zero-length bones, collinear root
    bones) gives finite values and gradients. float16/bfloat16 input is computed and
    returned in float32.

Example:
    >>> import torch
    >>> from bmclib.handmodel import template_pose
    >>> joints = template_pose(dtype=torch.float64)          # flat right hand, (21, 3)
    >>> d = decompose(joints)
    >>> d.angles.shape, float(d.angles.abs().max()) < 1e-12
    (torch.Size([5, 3, 2]), True)
    >>> bent = d.with_angle("index", 1, flexion=torch.pi / 2)  # PIP bent 90 degrees
    >>> round(float(decompose(compose(bent)).angles[1, 1, 0]), 6)
    1.570796
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from . import skeleton as sk

__all__ = ["Decomposition", "decompose", "decompose_cm", "compose", "compose_parts", "normalize_scale", "validate_joints",
           "compute_dtype", "pose_scale", "EPS_DEGENERATE", "PALM_FLOOR"]

_NUM_F = sk.NUM_FINGERS
# Relative floors, in units of the pose's own size (pose_scale: the rms root-bone length, floored).
EPS_NORMAL = 1e-6  # curvature denominators
EPS_ANGLE = 1e-15  # nudge that keeps atan2 away from (0, 0)
# Degenerate bones: a bone (or a pair of root bones' cross / dot product) shorter than this
# many pose sizes has its direction faded to "straight" (angle 0) and its normalisation
# floored, so that a collapsed bone inside a normal hand has bounded gradients (they
# reached 1e14-1e26 with the 1e-15 / 1e-6 floors alone). The flexion fades the same way at
# gimbal lock (|(l_x, l_z)| below it), and palm normals are floored at it. Exact above it;
# real hands' shortest bone is ~0.2 pose sizes.
EPS_DEGENERATE = 1e-2
# The pose's size is floored at this share of the rms length of all 20 bones: a palm that collapsed
# inside a hand with fingers (root bones near zero, the fingers intact) is measured by the fingers,
# so the scale-free terms (bone lengths / the reference bone, curvatures x the reference bone) stay
# bounded. Real hands have an rms root-bone length of 1.5-2 x the rms of all bones (measured on
# every synthetic population and anatomical hand), 3x above this floor. (At 0.01 of all bones a
# palm shrunk to 1e-3 of its size still had |grad| x size ~ 1e6 through its curvatures.)
PALM_FLOOR = 0.5
# Rodrigues' minimal rotation divides by 1 + cos(turn); a bone folded back onto its parent (a turn
# of pi) has no minimal rotation. The divisor is floored here (turns beyond ~179.2 deg; real joints
# stop below 120 deg), which bounds the gradient of an exact fold: with a 1e-12 floor float32
# rounding of the fold's direction gave |grad| x size of 4e6-4e9 (float64: ~1).
EPS_TURN = EPS_DEGENERATE ** 2


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype decomposition runs in: float32 for half/bfloat16, else the input's."""
    if dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return dtype


def scale_floor(dtype: torch.dtype) -> float:
    # Smallest pose size treated as a real pose; below it, results stay finite but
    # are no longer scale invariant. Chosen so that a few chained divisions by it
    # cannot overflow the dtype.
    return 1e-10 if dtype == torch.float32 else 1e-30


class SaturatingUpcast(torch.autograd.Function):
    """float16 -> float32 whose backward clamps the gradient to float16's finite range
    (+-65504) before casting it back: a plain cast turns a gradient above 65504 into inf."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.float()

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        big = torch.finfo(torch.float16).max
        return g.clamp(-big, big).half()


def upcast(joints: Tensor) -> Tensor:
    """``joints`` in :func:`compute_dtype`; float16 through :class:`SaturatingUpcast`, so that a
    gradient beyond float16's range comes back saturated, not as inf."""
    if joints.dtype == torch.float16:
        return SaturatingUpcast.apply(joints)
    return joints.to(compute_dtype(joints.dtype))


def validate_joints(joints: Tensor, name: str = "joints", n: int = sk.NUM_JOINTS, check_finite: bool = True) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``joints`` is a finite float ``(..., n, 3)`` tensor."""
    if not isinstance(joints, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(joints).__name__}")
    if not joints.is_floating_point():
        raise ValueError(f"{name}: expected a floating point tensor, got dtype {joints.dtype} "
                         f"with shape {tuple(joints.shape)}")
    if joints.dim() < 2 or joints.shape[-2:] != (n, 3):
        raise ValueError(f"{name}: expected shape (..., {n}, 3), got {tuple(joints.shape)}")
    if check_finite and not bool(torch.isfinite(joints).all()):
        bad = (~torch.isfinite(joints)).reshape(-1, n * 3).any(-1).nonzero()[:5, 0].tolist()
        raise ValueError(f"{name}: contains NaN or inf (shape {tuple(joints.shape)}; "
                         f"first bad poses at flat index {bad})")


# ----------------------------------------------------------------------------------
# Internal layout: component-major, batch last. A vector field is ``(3, ..., N)``, so
# dot products are sums over dim 0 of contiguous planes and no op reduces over a
# size-3 trailing dimension (slow on CPU). The public functions convert at the edges.


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(0)


def _fade(r2: Tensor) -> Tensor:
    """``min(1, r2 / EPS_DEGENERATE^2)``: multiplies an angle ``atan2(y, x)`` with
    ``r2 = x^2 + y^2`` so its gradient (``1 / r``) stays bounded as ``r -> 0``; 1 above the floor."""
    return (r2 * EPS_DEGENERATE ** -2).clamp_max(1.0)


def _vnorm(v: Tensor) -> Tensor:
    """|v| over dim 0, with zero gradient at v = 0 instead of NaN. (Not
    ``linalg.vector_norm``: over dim 0 it is ~50x slower on CPU.)"""
    return (v * v).sum(0).clamp_min(torch.finfo(v.dtype).tiny).sqrt()


def _normalize(v: Tensor, eps: float) -> Tensor:
    """v / max(|v|, eps) over dim 0: exactly unit for |v| >= eps, finite gradient down to 0."""
    return v / _vnorm(v).clamp_min(eps)


_INDEX_CACHE: dict[tuple[str, torch.device], Tensor] = {}


def _index(name: str, values: tuple[int, ...], device: torch.device) -> Tensor:
    key = (name, device)
    if key not in _INDEX_CACHE:
        _INDEX_CACHE[key] = torch.tensor(values, device=device)
    return _INDEX_CACHE[key]


# rows of cat([n_0..n_3, m_01, m_12, m_23]) that make the edge normals and the finger palm normals
EDGE_ROWS = (0, 4, 5, 6, 3)
PALM_ROWS = (0, 1, 5, 6, 3)


@dataclass(frozen=True)
class _Palm:
    scale: Tensor        # (N,)          rms root-bone length (input units)
    r: Tensor            # (3, 5, N)     root bones / scale
    cross_norm: Tensor   # (4, N)        |r_{f+1} x r_f|
    normals: Tensor      # (3, 4, N)     n_f between root bones f and f+1
    edge_normals: Tensor  # (3, 5, N)
    frame0: Tensor       # (3, 3, 5, N)  first frame per finger: rows x, y, z; then components


def pose_scale(roots: Tensor, bones: Tensor | None = None) -> Tensor:
    """The pose's size ``(N,)`` from component-major root bones ``(3, 5, N)`` (and all 20 bones
    ``(3, 20, N)``): the rms root-bone length, floored at :data:`PALM_FLOOR` x the rms length of
    all bones (a hand whose root bones collapsed is still measured by its fingers, so the
    scale-free terms stay bounded: with an absolute floor alone its loss reached 1e30), then at the
    dtype's smallest real pose size. The one rule for :func:`decompose`, the BMC loss (both paths)
    and :func:`normalize_scale`."""
    scale = _vnorm(roots.flatten(0, 1)) * _NUM_F ** -0.5
    if bones is not None:
        scale = torch.maximum(scale, PALM_FLOOR * _vnorm(bones.flatten(0, 1)) * bones.shape[1] ** -0.5)
    return scale.clamp_min(scale_floor(roots.dtype))


def _palm(roots: Tensor, bones: Tensor | None = None) -> _Palm:
    """Palm normals and the first finger frames from root bones ``(3, 5, N)`` (the pose's size
    from :func:`pose_scale`, with all bones ``(3, 20, N)`` where given)."""
    scale = pose_scale(roots, bones)  # (N,)
    r = roots / scale  # (3, 5, N) unitless
    w = torch.linalg.cross(r[:, 1:], r[:, :-1], dim=0)  # (3, 4, N)
    w_norm = _vnorm(w)  # (4, N)
    n = w / w_norm.clamp_min(EPS_DEGENERATE)  # (3, 4, N)
    mid = _normalize(n[:, 1:] + n[:, :-1], EPS_DEGENERATE)  # (3, 3, N): n01, n12, n23
    nm = torch.cat([n, mid], dim=1)  # (3, 7, N)
    edge = nm.index_select(1, _index("edge", EDGE_ROWS, nm.device))  # (3, 5, N)
    palm = nm.index_select(1, _index("palm", PALM_ROWS, nm.device))  # (3, 5, N)
    z = _normalize(r, EPS_DEGENERATE)  # (3, 5, N)
    y = torch.linalg.cross(palm, z, dim=0)  # = z x (-palm)
    return _Palm(scale, r, w_norm, n, edge, torch.stack([-palm, y, z]))  # frame0 (3, 3, 5, N)


def _next_frame(frame: Tensor, d: Tensor) -> Tensor:
    """Turn ``frame (3, 3, ...)`` (rows x, y, z) by the minimal rotation taking z onto the
    unit direction ``d (3, ...)`` given in frame coordinates. Returns ``(3, 3, ...)``;
    its z row is that direction.

    Rodrigues' minimal rotation ``R = I + [v]x + [v]x^2 / (1 + d_z)`` with ``v = e_z x d``
    (never normalised) gives ``x' = x - d_x / (1 + d_z) (z + z')`` and
    ``y' = y - d_y / (1 + d_z) (z + z')``: finite for a straight joint (``d = e_z``)."""
    z_new = (frame * d[:, None]).sum(0)  # (3, ...) world
    k = d[:2] / (1.0 + d[2:]).clamp_min(EPS_TURN)  # (2, ...)
    xy = frame[:2] - k[:, None] * (frame[2] + z_new)  # (2, 3, ...)
    return torch.cat([xy, z_new[None]])


def _direction(angles: Tensor) -> Tensor:
    """Unit direction ``(3, ...)`` in frame coordinates from ``angles (2, ...)`` = (flexion, abduction)."""
    cos, sin = torch.cos(angles), torch.sin(angles)  # (2, ...)
    ca = cos[1]
    return torch.stack([ca * sin[0], sin[1], ca * cos[0]])


@dataclass(frozen=True)
class _Parts:
    """Internal decomposition, component-major (see the layout note above)."""

    wrist: Tensor      # (3, N)
    bones: Tensor      # (3, 5, 4, N) per finger, root bone first
    lengths: Tensor    # (5, 4, N)
    palm: _Palm
    root_angles: Tensor  # (4, N)
    curvatures: Tensor   # (4, N)
    frames: Tensor     # (3 bones, 3 rows, 3 comps, 5, N)
    angles: Tensor     # (3 bones, 2, 5, N)


def decompose_cm(j: Tensor) -> _Parts:
    """Decompose joints ``(3, 21, N)`` (component-major, batch last; see the layout note above):
    the fast path that :class:`~bmclib.losses.BMCLoss` uses. :func:`decompose` wraps it."""
    wrist = j[:, 0]  # (3, N)
    fj = j[:, 1:].unflatten(1, (_NUM_F, 4))  # (3, 5, 4, N) finger joints
    parents = torch.cat([wrist[:, None, None].expand(-1, _NUM_F, 1, -1), fj[:, :, :3]], dim=2)
    fb = fj - parents  # (3, 5, 4, N) bones, root bone first
    lengths = _vnorm(fb)  # (5, 4, N)
    palm = _palm(fb[:, :, 0], fb.flatten(1, 2))
    r = palm.r
    # phi = atan2(|r_f x r_f+1|, r_f . r_f+1); the offset keeps a zero root bone at (0, +tiny)
    dots = _dot(r[:, :-1], r[:, 1:])
    root_angles = torch.atan2(palm.cross_norm, dots + EPS_ANGLE)  # (4, N)
    root_angles = root_angles * _fade(palm.cross_norm ** 2 + dots ** 2)  # a collapsed root bone: bounded grads
    dr = r[:, 1:] - r[:, :-1]  # (3, 4, N)
    de = palm.edge_normals[:, 1:] - palm.edge_normals[:, :-1]  # (3, 4, N)
    dr2 = _dot(dr, dr)
    # neighbouring root bones closer than EPS_DEGENERATE pose sizes fade to curvature 0 (the curvature
    # of a fold grows as 1 / |dr| and its gradient as 1 / |dr|^2; real hands have |dr| >= 0.2)
    curv = _dot(de, dr) / ((dr2 + EPS_NORMAL ** 2) * palm.scale) * _fade(dr2)  # (4, N)

    fbn = fb / palm.scale  # (3, 5, 4, N) unitless
    # a 1e-15 nudge along z: a zero-length bone reads as straight (angles 0) with finite
    # gradients; real angles move by 1e-15 / |bone| (|bone| in units of the pose size)
    nudge = j.new_tensor([0.0, 0.0, EPS_ANGLE]).view(3, 1, 1)
    frame = palm.frame0  # (3, 3, 5, N)
    tiny = torch.finfo(j.dtype).tiny
    ez = j.new_tensor([0.0, 0.0, 1.0]).view(3, 1, 1)
    frames, angles = [], []
    for k in range(1, 4):  # the three bones after the root bone (a chain: sequential by nature)
        local = (frame * fbn[None, :, :, k]).sum(1) + nudge  # (3, 5, N) bone in frame coordinates
        # flexion = atan2(l_x, l_z); abduction = atan2(l_y, |(l_x, l_z)|); both scale free
        sq = local * local
        xz2 = sq[0] + sq[2]  # (5, N)
        r2 = torch.stack([xz2, xz2 + sq[1]]).clamp_min(tiny)  # (2, 5, N): |(l_x, l_z)|^2, |l|^2
        norms = r2.sqrt()
        # a bone exactly along the frame's y axis has (l_x, l_z) = (0, 0) despite the nudge (it can
        # cancel): atan2 there has the gradient 0 / 0, so it reads (0, 1) -- the fade zeroes it anyway
        along_y = xz2 <= tiny
        ang = torch.atan2(torch.stack([local[0].masked_fill(along_y, 0.0), local[1]]),
                          torch.stack([local[2].masked_fill(along_y, 1.0), norms[0]]))
        ang = ang * _fade(r2)  # (2, 5, N); a collapsed bone reads as straight
        frames.append(frame)
        angles.append(ang)
        # the unit direction; below the floor it turns towards e_z (length -> 0: exactly e_z)
        floor = norms[1].clamp_min(EPS_DEGENERATE)
        frame = _next_frame(frame, (local + (floor - norms[1]) * ez) / floor)
    return _Parts(wrist, fb, lengths, palm, root_angles, curv, torch.stack(frames), torch.stack(angles))


def _compose_cm(roots: Tensor, lengths: Tensor, angles: Tensor, wrist: Tensor) -> Tensor:
    """roots ``(3, 5, N)``, lengths ``(3 bones, 5, N)``, angles ``(3 bones, 2, 5, N)``,
    wrist ``(3, N)`` -> joints ``(3, 21, N)``."""
    frame = _palm(roots).frame0  # (3, 3, 5, N)
    pos = wrist[:, None] + roots  # (3, 5, N) CMC / MCP joints
    chain = [pos]
    for k in range(3):
        frame = _next_frame(frame, _direction(angles[k]))
        pos = pos + lengths[k] * frame[2]  # (3, 5, N)
        chain.append(pos)
    fingers = torch.stack(chain, dim=2).flatten(1, 2)  # (3, 20, N) = joints 1..20
    return torch.cat([wrist[:, None], fingers], dim=1)


def to_component_major(x: Tensor, tail: int) -> tuple[Tensor, torch.Size]:
    """``(..., *T)`` with ``len(T) == tail`` -> ``(*reversed(T), N)`` contiguous, and the batch shape."""
    batch = x.shape[: x.dim() - tail]
    flat = x.reshape((-1,) + tuple(x.shape[x.dim() - tail:]))
    return flat.permute(tuple(range(tail, 0, -1)) + (0,)).contiguous(), batch


@dataclass(frozen=True)
class Decomposition:
    """A hand pose split into its biomechanical constituents.

    Attributes (``...`` are the input's leading dimensions):
        wrist: ``(..., 3)`` wrist position.
        bones: ``(..., 20, 3)`` bone vectors, bone ``b`` ends at joint ``b + 1``.
        bone_lengths: ``(..., 20)``.
        palm_normals: ``(..., 4, 3)`` unit normals ``n_f`` between root bones f, f+1.
        root_angles: ``(..., 4)`` angular distance phi_f between root bones f, f+1 (rad).
        root_curvatures: ``(..., 4)`` palm curvature between root bones f, f+1 (1/length).
        frames: ``(..., 5, 3, 3, 3)`` the frame (rows x, y, z) each angle bone is measured in.
        angles: ``(..., 5, 3, 2)`` (flexion, abduction) of the three bones after each
            root bone, thumb -> little, proximal -> distal (rad).
        scale: ``(...)`` rms length of the five root bones (the pose's own size).

    :func:`compose` reads ``wrist``, the root-bone directions in ``bones``,
    ``bone_lengths`` and ``angles``; edit those (``dataclasses.replace`` or
    :meth:`with_angle`) to pose a hand. The other fields are derived and ignored.
    """

    wrist: Tensor
    bones: Tensor
    bone_lengths: Tensor
    palm_normals: Tensor
    root_angles: Tensor
    root_curvatures: Tensor
    frames: Tensor
    angles: Tensor
    scale: Tensor

    @property
    def root_bones(self) -> Tensor:
        """``(..., 5, 3)`` the five root bones (wrist -> CMC/MCP), thumb -> little."""
        return self.bones[..., list(sk.ROOT_BONES), :]

    @property
    def flexion(self) -> Tensor:
        """``(..., 5, 3)`` flexion angles."""
        return self.angles[..., 0]

    @property
    def abduction(self) -> Tensor:
        """``(..., 5, 3)`` abduction angles."""
        return self.angles[..., 1]

    def replace(self, **changes: Tensor) -> "Decomposition":
        """A copy with some fields replaced (see :func:`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)

    def with_angle(self, finger: int | str, joint: int, flexion: float | Tensor | None = None,
                   abduction: float | Tensor | None = None) -> "Decomposition":
        """A copy with one joint's angles set; ``finger`` is 0..4 or a name, ``joint`` 0..2."""
        f = sk.FINGER_NAMES.index(finger) if isinstance(finger, str) else int(finger)
        if not (0 <= f < _NUM_F and 0 <= joint < 3):
            raise ValueError(f"finger must be 0..4 or one of {sk.FINGER_NAMES}, joint 0..2; got {finger!r}, {joint!r}")
        angles = self.angles.clone()
        if flexion is not None:
            angles[..., f, joint, 0] = flexion
        if abduction is not None:
            angles[..., f, joint, 1] = abduction
        return self.replace(angles=angles)


def decompose(joints: Tensor, *, check: bool = True) -> Decomposition:
    """Split hand poses into bones, palm terms and joint angles.

    Args:
        joints: ``(..., 21, 3)`` joints in the F order of :mod:`bmclib.skeleton`, any
            float dtype and device. Right hands (mirror left hands first).
        check: validate shape, dtype and finiteness (raises ``ValueError``).

    Returns:
        :class:`Decomposition` with ``angles (..., 5, 3, 2)`` and the palm terms.
    """
    if check:
        validate_joints(joints)
    j, batch = to_component_major(upcast(joints), 2)  # (3, 21, N)
    p = decompose_cm(j)
    return Decomposition(
        wrist=p.wrist.T.reshape(batch + (3,)),
        bones=p.bones.permute(3, 1, 2, 0).reshape(batch + (sk.NUM_BONES, 3)),
        bone_lengths=p.lengths.permute(2, 0, 1).reshape(batch + (sk.NUM_BONES,)),
        palm_normals=p.palm.normals.permute(2, 1, 0).reshape(batch + (4, 3)),
        root_angles=p.root_angles.T.reshape(batch + (4,)),
        root_curvatures=p.curvatures.T.reshape(batch + (4,)),
        frames=p.frames.permute(4, 3, 0, 1, 2).reshape(batch + (_NUM_F, 3, 3, 3)),
        angles=p.angles.permute(3, 2, 0, 1).reshape(batch + (_NUM_F, 3, 2)),
        scale=p.palm.scale.reshape(batch),
    )


def compose_parts(root_bones: Tensor, finger_lengths: Tensor, angles: Tensor, wrist: Tensor | None = None) -> Tensor:
    """Build joints from root bones, the lengths of the other 15 bones and their angles.

    Args:
        root_bones: ``(..., 5, 3)`` wrist -> CMC/MCP vectors, thumb -> little; they fix
            the palm and the global orientation.
        finger_lengths: ``(..., 5, 3)`` lengths of the three bones after each root bone.
        angles: ``(..., 5, 3, 2)`` (flexion, abduction) in radians.
        wrist: ``(..., 3)`` wrist position (default: the origin).

    Returns:
        ``(..., 21, 3)`` joints in F order.
    """
    for name, t, tail in (("root_bones", root_bones, (5, 3)), ("finger_lengths", finger_lengths, (5, 3)),
                          ("angles", angles, (5, 3, 2)), ("wrist", wrist, (3,))):
        if name == "wrist" and t is None:
            continue
        if not isinstance(t, Tensor) or t.dim() < len(tail) or tuple(t.shape[-len(tail):]) != tail:
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{name}: expected shape (..., {', '.join(map(str, tail))}), got {got}")
    dtype = compute_dtype(torch.promote_types(root_bones.dtype, angles.dtype))
    batch = torch.broadcast_shapes(root_bones.shape[:-2], finger_lengths.shape[:-2], angles.shape[:-3],
                                   wrist.shape[:-1] if wrist is not None else ())
    if wrist is None:
        wrist = root_bones.new_zeros(batch + (3,), dtype=dtype)
    r, _ = to_component_major(root_bones.to(dtype).expand(batch + (5, 3)), 2)  # (3, 5, N)
    ln, _ = to_component_major(finger_lengths.to(dtype).expand(batch + (5, 3)), 2)  # (3, 5, N)
    an, _ = to_component_major(angles.to(dtype).expand(batch + (5, 3, 2)), 3)  # (2, 3, 5, N)
    w, _ = to_component_major(wrist.to(dtype).expand(batch + (3,)), 1)  # (3, N)
    j = _compose_cm(r, ln, an.transpose(0, 1), w)  # (3, 21, N)
    return j.permute(2, 1, 0).reshape(batch + (sk.NUM_JOINTS, 3))


def compose(decomposition: Decomposition) -> Tensor:
    """Rebuild ``(..., 21, 3)`` joints from a (possibly edited) :class:`Decomposition`.

    Uses ``wrist``, the root bones' directions scaled to ``bone_lengths``, the other
    bone lengths and ``angles``. ``compose(decompose(j))`` equals ``j`` to ~1e-12 in
    float64 and ~1e-6 relative in float32.
    """
    d = decomposition
    lengths = d.bone_lengths.unflatten(-1, (_NUM_F, 4))  # (..., 5, 4)
    roots = d.root_bones
    cur = torch.linalg.vector_norm(roots, dim=-1)
    roots = roots * (lengths[..., 0] / cur.clamp_min(torch.finfo(cur.dtype).tiny))[..., None]  # edited lengths
    return compose_parts(roots, lengths[..., 1:], d.angles, d.wrist)


def normalize_scale(joints: Tensor, reference_bone: tuple[int, int] = sk.REFERENCE_BONE) -> tuple[Tensor, Tensor]:
    """Root-relative, scale-normalised joints: ``(joints - wrist) / |reference bone|``.

    Args:
        joints: ``(..., 21, 3)``.
        reference_bone: ``(parent, child)`` joint pair whose length becomes 1.

    Returns:
        ``(normalised (..., 21, 3), scale (...))``. The scale is floored at
        :data:`EPS_DEGENERATE` x the pose's size (:func:`pose_scale`), the rule of
        :class:`bmclib.losses.BMCLoss`, so a zero-length reference bone still gives finite output.
    """
    p, c = reference_bone
    sk.bone_index(p, c)  # validates the pair
    rel = joints - joints[..., :1, :]  # (..., 21, 3)
    ref = torch.linalg.vector_norm(rel[..., c, :] - rel[..., p, :], dim=-1)  # (...,)
    bones = rel[..., 1:, :] - rel[..., list(sk.PARENTS[1:]), :]  # (..., 20, 3)
    roots = rel[..., list(sk.ROOT_BONE_JOINTS), :]  # (..., 5, 3) root bones (wrist at 0)
    batch = roots.shape[:-2]
    size = pose_scale(roots.reshape(-1, 5, 3).permute(2, 1, 0), bones.reshape(-1, 20, 3).permute(2, 1, 0))
    scale = ref.clamp_min(EPS_DEGENERATE * size.reshape(batch))  # (...,)
    return rel / scale[..., None, None], scale
