"""Synthetic hands: anatomical shapes and poses, cameras, crops and rendering, in two domains.

``source`` plays RHD's role (broad poses across the ranges of motion, any
orientation, plain or gradient backgrounds, one lighting style, 3D labels);
``target`` plays FreiHAND's (natural grasp-like poses mostly facing the camera,
textured and cluttered backgrounds, varied skin, light and camera, occluders).

Every pose is built with :func:`bmclib.biomech.compose_parts` from angles sampled
inside :data:`bmclib.anatomy.RANGE_OF_MOTION`, so each sample lies inside the
anatomical ranges by construction.

Example:
    >>> batch = generate_batch("target", 4, size=64, generator=torch.Generator().manual_seed(0))
    >>> batch.images.shape, batch.uv.shape, batch.xyz.shape, batch.K.shape
    (torch.Size([4, 64, 64, 3]), torch.Size([4, 21, 2]), torch.Size([4, 21, 3]), torch.Size([4, 3, 3]))
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import anatomy
from .. import skeleton as sk
from ..biomech import compose_parts
from ..camera import project
from ..handmodel import sample_hand_shapes
from .render import Rendered, Scene, backgrounds, render

__all__ = ["Domain", "DOMAINS", "PRESETS", "rom_bounds", "sample_angles", "sample_orientations", "SynthBatch",
           "Keypoints", "sample_keypoints", "generate_batch", "visibility", "generate_dataset", "contact_sheet", "render_hands"]

_DEG = math.pi / 180


@dataclass(frozen=True)
class Domain:
    """How one synthetic domain differs from the other."""

    name: str
    poses: str                      # "broad" | "natural"
    orientation: str                # "any" | "facing"
    backgrounds: tuple[str, ...]    # kinds drawn uniformly
    skin: tuple[float, float]       # range along the skin-tone palette (0 light .. 1 dark)
    light_spread_deg: float         # light direction spread around the camera axis
    ambient: tuple[float, float]
    focal: tuple[float, float]      # median focal length (px, full frame) and log-normal sigma
    distance: tuple[float, float]   # hand distance from the camera (m)
    crop_scale: tuple[float, float]  # crop side / hand's 2D extent
    crop_jitter: float              # crop centre jitter, as a share of the crop side
    occluder_prob: float
    noise: float                    # pixel noise sd
    n_hands: int | None = None      # distinct hands in the population (None: every sample its own) ...
    population_seed: int = 0        # ... drawn once from this seed, the same for every batch
    appearance: str = "skin"        # "skin" | "glove" (one hue per finger, one brightness per segment)
    #                                 | "markers" (the glove with a white sphere on each joint)


#: The coloured glove (``appearance="glove"``): one hue per finger (thumb .. little), three brightness
#: levels along each finger (proximal, middle, distal segment) and a grey palm, so that every
#: keypoint sits where two identifiable colours meet, as in coloured-glove hand tracking. Everything
#: else (poses, camera, light, backgrounds, occluders, noise) stays the domain's.
GLOVE_HUES = ((0.85, 0.15, 0.12), (0.15, 0.70, 0.15), (0.15, 0.30, 0.90), (0.90, 0.80, 0.10), (0.75, 0.20, 0.80))
GLOVE_LEVELS = (1.0, 0.68, 0.40)
GLOVE_PALM = (0.55, 0.55, 0.55)
APPEARANCES = ("skin", "glove", "markers")
#: ``appearance="markers"``: the glove with a sphere on each joint, this many times the capsule radius
#: there, of this albedo
MARKER_RADIUS = 1.15
MARKER_ALBEDO = 0.95


def glove_albedo(n: int, dtype=torch.float64) -> Tensor:
    """Albedo ``(n, 31, 3)`` of the hand capsules in the glove (15 finger bones finger by finger,
    proximal first, then the 16 palm capsules, as :func:`_capsules` orders them)."""
    fingers = torch.tensor([[[c * lv for c in hue] for lv in GLOVE_LEVELS] for hue in GLOVE_HUES], dtype=dtype)
    palm = torch.tensor(GLOVE_PALM, dtype=dtype).expand(_NUM_HAND_CAPSULES - 15, 3)
    return torch.cat([fingers.reshape(15, 3), palm], 0).expand(n, -1, -1).clone()


DOMAINS: dict[str, Domain] = {
    "source": Domain("source", "broad", "any", ("plain", "gradient"), (0.0, 0.45), 25.0, (0.35, 0.45),
                     (500.0, 0.05), (0.5, 0.8), (1.3, 1.5), 0.05, 0.0, 0.005),
    # FreiHAND: fx ~ 500 px, p5 348, p95 672 -> log-normal sigma ~ 0.2 (anatomy.CAMERAS)
    "target": Domain("target", "natural", "facing", ("texture", "clutter"), (0.0, 1.0), 70.0, (0.15, 0.5),
                     (500.0, 0.2), (0.5, 0.8), (1.15, 1.6), 0.12, 0.35, 0.02),
}


def rom_bounds(dtype=torch.float64) -> tuple[Tensor, Tensor]:
    """Low and high ``(5, 3, 2)`` (flexion, abduction) limits in radians from the ranges of motion."""
    lo = [[[r.flexion[0], r.abduction[0]] for r in anatomy.RANGE_OF_MOTION[f]] for f in sk.FINGER_NAMES]
    hi = [[[r.flexion[1], r.abduction[1]] for r in anatomy.RANGE_OF_MOTION[f]] for f in sk.FINGER_NAMES]
    return torch.tensor(lo, dtype=dtype) * _DEG, torch.tensor(hi, dtype=dtype) * _DEG


def _uniform(n, lo, hi, g, dtype=torch.float64):
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=dtype)


def sample_angles(n: int, mode: str, generator: torch.Generator) -> Tensor:
    """Joint angles ``(n, 5, 3, 2)`` in radians, inside the ranges of motion.

    ``broad``: across each joint's whole range, with the couplings of
    :mod:`bmclib.anatomy` (:func:`_broad_angles`): MCP abduction narrowing with MCP flexion,
    DIP following PIP within a band, thumb CMC flexion and abduction moving together along the
    opposition path; so every joint's (flexion, abduction) envelope is a real shape, not a box.
    ``box``: uniform and independent over each joint's rectangle of ranges (the benchmark-v1
    source sampler, kept for the box-vs-hull comparison). ``natural``: a grasp type (open, power,
    precision, point) sets a closing latent per finger (ulnar fingers close more, MCP and
    PIP flex together: Santello's first synergy), a spread latent opens the fingers when
    the hand is open (second synergy), DIP ~ 2/3 PIP with 10 degree noise (Rijpkema &
    Girard), and an opposition latent moves the thumb; everything is clipped to the ranges.
    """
    g = generator
    lo, hi = rom_bounds()
    if mode == "broad":
        return _broad_angles(n, lo, hi, g)
    if mode == "box":
        return lo + (hi - lo) * torch.rand(n, 5, 3, 2, generator=g, dtype=torch.float64)
    if mode != "natural":
        raise ValueError(f"pose mode must be 'broad', 'box' or 'natural', got {mode!r}")
    grasp = torch.multinomial(torch.tensor([0.3, 0.3, 0.25, 0.15]), n, replacement=True, generator=g)
    close_lo = torch.tensor([0.0, 0.55, 0.2, 0.5], dtype=torch.float64)[grasp]
    close_hi = torch.tensor([0.3, 1.0, 0.7, 1.0], dtype=torch.float64)[grasp]
    s = _uniform(n, close_lo, close_hi, g)  # (n,) closing latent
    c = s[:, None] + 0.08 * torch.randn(n, 5, generator=g, dtype=torch.float64)  # per finger
    c = c + torch.tensor([0.0, 0.0, 0.03, 0.06, 0.1], dtype=torch.float64)  # ulnar fingers flex more
    point = grasp == 3
    c[point, 1] = _uniform(int(point.sum()), 0.0, 0.15, g)  # pointing: index stays extended
    c = c.clamp(0, 1)
    spread = torch.rand(n, 1, generator=g, dtype=torch.float64) * (1 - c[:, 1:])  # (n, 4)
    noise = lambda sd: sd * _DEG * torch.randn(n, 4, generator=g, dtype=torch.float64)  # noqa: E731
    a = torch.zeros(n, 5, 3, 2, dtype=torch.float64)
    a[:, 1:, 0, 0] = c[:, 1:] * 85 * _DEG + noise(8)  # MCP flexion
    a[:, 1:, 1, 0] = c[:, 1:] * 100 * _DEG + noise(8)  # PIP flexion
    a[:, 1:, 2, 0] = a[:, 1:, 1, 0] * anatomy.PIP_DIP_COUPLING["ratio"] + noise(anatomy.PIP_DIP_COUPLING["noise_deg"])
    base = torch.tensor([14.0, 2.0, -10.0, -22.0], dtype=torch.float64) * _DEG  # MCP spread, radial +
    a[:, 1:, 0, 1] = spread * base + noise(3)
    a[:, 1:, 1:, 1] = 2 * _DEG * torch.randn(n, 4, 2, generator=g, dtype=torch.float64)
    opp = (0.6 * s + 0.4 * torch.rand(n, generator=g, dtype=torch.float64)).clamp(0, 1)  # thumb opposition
    a[:, 0, 0, 0] = (-10 + 40 * opp) * _DEG + 5 * _DEG * torch.randn(n, generator=g, dtype=torch.float64)
    a[:, 0, 0, 1] = (30 - 40 * opp) * _DEG + 5 * _DEG * torch.randn(n, generator=g, dtype=torch.float64)
    a[:, 0, 1, 0] = (5 + 45 * s) * _DEG + 8 * _DEG * torch.randn(n, generator=g, dtype=torch.float64)
    a[:, 0, 2, 0] = (10 + 50 * s) * _DEG + 10 * _DEG * torch.randn(n, generator=g, dtype=torch.float64)
    a[:, 0, 1:, 1] = 3 * _DEG * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return torch.maximum(torch.minimum(a, hi), lo)


def _broad_angles(n: int, lo: Tensor, hi: Tensor, g: torch.Generator) -> Tensor:
    """The ``broad`` pose sampler: uniform along each joint's range, with anatomical couplings."""
    f64 = torch.float64
    u = torch.rand(n, 5, 3, 2, generator=g, dtype=f64)
    a = lo + (hi - lo) * u  # independent draws first; then the couplings replace some of them
    # finger MCPs: the abduction range shrinks with flexion (collateral ligaments)
    k = anatomy.MCP_ABDUCTION_FLEXION_COUPLING
    flex = a[:, 1:, 0, 0]
    shrink = 1 - k * (flex / (90 * _DEG)).clamp(0, 1)  # (n, 4)
    a[:, 1:, 0, 1] = shrink * (lo[1:, 0, 1] + (hi[1:, 0, 1] - lo[1:, 0, 1]) * u[:, 1:, 0, 1])
    # finger DIPs follow their PIPs within a band
    band = anatomy.BROAD_DIP_PIP_BAND * _DEG
    dip = anatomy.PIP_DIP_COUPLING["ratio"] * a[:, 1:, 1, 0] + band * (2 * u[:, 1:, 2, 0] - 1)
    a[:, 1:, 2, 0] = torch.maximum(torch.minimum(dip, hi[1:, 2, 0]), lo[1:, 2, 0])
    # thumb CMC: flexion up and abduction down together along the opposition path
    o = torch.rand(n, generator=g, dtype=f64)
    w = anatomy.THUMB_OPPOSITION_BAND
    (f0, a0), (f1, a1) = lo[0, 0].tolist(), hi[0, 0].tolist()
    cmc_f = f0 + (f1 - f0) * (o + w * (2 * u[:, 0, 0, 0] - 1))
    cmc_a = a1 - (a1 - a0) * (o + w * (2 * u[:, 0, 0, 1] - 1))
    a[:, 0, 0, 0] = cmc_f.clamp(f0, f1)
    a[:, 0, 0, 1] = cmc_a.clamp(a0, a1)
    return a


def _rotation(axis: Tensor, angle: Tensor) -> Tensor:
    """``(n, 3, 3)`` rotations about unit ``axis (n, 3)`` by ``angle (n,)``."""
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).view(-1, 3, 3)
    s, c = torch.sin(angle)[:, None, None], torch.cos(angle)[:, None, None]
    return torch.eye(3, dtype=axis.dtype) + s * k + (1 - c) * k @ k


def sample_orientations(n: int, mode: str, generator: torch.Generator) -> Tensor:
    """Rotations ``(n, 3, 3)`` applied to the template hand (palm to the camera, fingers up).

    ``any``: uniform over SO(3). ``facing``: in-plane rotation ~ N(0, 45 deg), tilts ~
    N(0, 25 deg), and 40% of hands turned to show their back."""
    g = generator
    if mode == "any":
        q = torch.randn(n, 4, generator=g, dtype=torch.float64)
        q = q / q.norm(dim=-1, keepdim=True)
        w, x, y, z = q.unbind(-1)
        return torch.stack([
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1).view(n, 3, 3)
    if mode != "facing":
        raise ValueError(f"orientation must be 'any' or 'facing', got {mode!r}")
    e = torch.eye(3, dtype=torch.float64)
    ax = lambda i: e[i].expand(n, 3)  # noqa: E731
    back = (torch.rand(n, generator=g) < 0.4).to(torch.float64) * math.pi
    roll = 45 * _DEG * torch.randn(n, generator=g, dtype=torch.float64)
    tilt_x = 25 * _DEG * torch.randn(n, generator=g, dtype=torch.float64)
    tilt_y = 25 * _DEG * torch.randn(n, generator=g, dtype=torch.float64)
    return _rotation(ax(2), roll) @ _rotation(ax(0), tilt_x) @ _rotation(ax(1), tilt_y + back)


_NUM_HAND_CAPSULES = 31


def _capsules(joints: Tensor, hand_breadth: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Hand capsules: end points ``(B, 31, 3)`` and radii ``(B, 31)`` from joints ``(B, 21, 3)``.

    15 finger bones, then the palm: 5 root bones, webs between neighbouring MCPs (3) and
    thumb CMC - index MCP (1), cross-pieces between neighbouring root bones at 1/3 and
    2/3 of their length (6), and a forearm stub below the wrist (1)."""
    frac = anatomy.RENDER_RADIUS_FRACTION
    finger_r = torch.tensor([frac["thumb"]] + [frac["finger"]] * 3 + [[x * frac["little_scale"] for x in frac["finger"]]],
                            dtype=joints.dtype)  # (5, 3)
    child = torch.tensor([b[1:] for b in sk.FINGER_JOINTS])  # (5, 3) joint at the end of each finger bone
    parent = torch.tensor([[sk.PARENTS[j] for j in row] for row in child.tolist()])
    roots = list(sk.ROOT_BONE_JOINTS)
    wrist = joints[:, :1]  # (B, 1, 3)
    mcp = joints[:, roots[1:]]  # (B, 4, 3) index..little
    cross_a = torch.cat([wrist + t * (mcp[:, :-1] - wrist) for t in (1 / 3, 2 / 3)], 1)  # (B, 6, 3)
    cross_b = torch.cat([wrist + t * (mcp[:, 1:] - wrist) for t in (1 / 3, 2 / 3)], 1)
    middle_mcp = roots[2]
    forearm = wrist + 0.5 * (wrist - joints[:, middle_mcp:middle_mcp + 1])  # half a palm length below the wrist
    # webs: index-middle, middle-ring, ring-little MCPs, and thumb CMC - index MCP
    web_a, web_b = roots[1:4] + roots[:1], roots[2:5] + roots[1:2]
    a = torch.cat([joints[:, parent.flatten()], wrist.expand(-1, 5, -1), joints[:, web_a], cross_a, wrist], 1)
    b = torch.cat([joints[:, child.flatten()], joints[:, roots], joints[:, web_b], cross_b, forearm], 1)
    r = torch.cat([finger_r.flatten().expand(len(joints), 15),
                   torch.full((len(joints), 15), frac["palm"], dtype=joints.dtype),
                   torch.full((len(joints), 1), 1.3 * frac["palm"], dtype=joints.dtype)], 1) * hand_breadth[:, None]
    return a, b, r


def visibility(joints: Tensor, uv: Tensor, depth: Tensor, radius: Tensor, margin: float = 0.004) -> Tensor:
    """``(B, 21)`` bool: a joint is visible when it projects into the image and nothing lies in
    front of its own surface at that pixel (depth >= z - radius - margin)."""
    B, S = depth.shape[0], depth.shape[1]
    px = uv.round().long()
    inside = (px >= 0).all(-1) & (px < S).all(-1)
    pc = px.clamp(0, S - 1)
    d = depth[torch.arange(B)[:, None], pc[..., 1], pc[..., 0]]  # (B, 21)
    return inside & (d >= joints[..., 2] - radius - margin)


@dataclass
class SynthBatch:
    """One generated batch. ``images (B, S, S, 3)`` and ``masks (B, S, S)`` uint8; ``uv (B, 21, 2)``
    pixels; ``xyz (B, 21, 3)`` metres, camera frame; ``K (B, 3, 3)``; ``visible (B, 21)`` bool;
    ``scale (B,)`` middle MCP->PIP length in metres; ``angles (B, 5, 3, 2)``."""

    images: Tensor
    masks: Tensor
    uv: Tensor
    xyz: Tensor
    K: Tensor
    visible: Tensor
    scale: Tensor
    angles: Tensor


def _joint_radius(radius: Tensor) -> Tensor:
    """Capsule radius at each joint ``(B, 21)`` from the hand capsules ``(B, 31)``: the largest
    capsule ending there."""
    B = radius.shape[0]
    out = torch.zeros(B, 21, dtype=radius.dtype)
    child = [j for row in sk.FINGER_JOINTS for j in row[1:]]
    out[:, child] = radius[:, :15]
    out[:, list(sk.ROOT_BONE_JOINTS)] = torch.maximum(radius[:, 15:20], out[:, list(sk.ROOT_BONE_JOINTS)])
    out[:, 0] = torch.maximum(radius[:, 15:20].amax(1), radius[:, -1])  # root bones and the forearm stub
    return out


@dataclass
class Keypoints:
    """Hands placed in front of a camera, without images: ``xyz (B, 21, 3)`` metres,
    ``uv (B, 21, 2)`` pixels of a ``size`` crop with intrinsics ``K (B, 3, 3)``, ``scale (B,)``,
    ``angles (B, 5, 3, 2)``, ``hand_breadth (B,)`` and the capsules (for rendering)."""

    xyz: Tensor
    uv: Tensor
    K: Tensor
    scale: Tensor
    angles: Tensor
    hand_breadth: Tensor
    capsules: tuple[Tensor, Tensor, Tensor]


def sample_keypoints(domain: str | Domain, n: int, size: int = 128, generator: torch.Generator | None = None) -> Keypoints:
    """The geometric half of :func:`generate_batch` (shapes, poses, orientation, camera, crop):
    fast, for experiments on keypoints alone (e.g. 2D-to-3D lifting). Same random draws, in
    the same order, as the first half of ``generate_batch``."""
    dom = DOMAINS[domain] if isinstance(domain, str) else domain
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if size < 16 or size % 8:
        raise ValueError(f"size must be a multiple of 8 and >= 16, got {size}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    f64 = torch.float64
    if dom.n_hands is None:
        shapes = sample_hand_shapes(n, g, dtype=f64)
    else:  # a fixed population: the same n_hands people in every batch, each sample one of them
        people = sample_hand_shapes(dom.n_hands, torch.Generator().manual_seed(dom.population_seed), dtype=f64)
        pick = torch.randint(0, dom.n_hands, (n,), generator=g)
        shapes = type(people)(*(getattr(people, f)[pick] for f in ("root_bones", "finger_lengths", "hand_length",
                                                                    "hand_breadth", "female")))
    angles = sample_angles(n, dom.poses, g)
    local = compose_parts(shapes.root_bones, shapes.finger_lengths, angles)  # (n, 21, 3) template frame
    rot = sample_orientations(n, dom.orientation, g)
    centre = local.mean(1, keepdim=True)
    dist = _uniform(n, *dom.distance, g)
    offset = torch.stack([0.05 * torch.randn(n, generator=g, dtype=f64), 0.05 * torch.randn(n, generator=g, dtype=f64),
                          dist], -1)
    xyz = (local - centre) @ rot.transpose(-1, -2) + offset[:, None]  # (n, 21, 3) camera frame

    # full-frame camera, then a square crop around the hand, resized to `size`
    f = dom.focal[0] * torch.exp(dom.focal[1] * torch.randn(n, generator=g, dtype=f64))
    uv_full = f[:, None, None] * xyz[..., :2] / xyz[..., 2:]  # principal point at 0
    seg_a, seg_b, radius = _capsules(xyz, shapes.hand_breadth)
    r_px = (radius.amax(1) * f / xyz[..., 2].amin(1))  # (n,) thickest capsule in pixels
    lo, hi = uv_full.amin(1) - r_px[:, None], uv_full.amax(1) + r_px[:, None]
    side = (hi - lo).amax(-1) * _uniform(n, *dom.crop_scale, g)
    mid = (lo + hi) / 2 + dom.crop_jitter * side[:, None] * (2 * torch.rand(n, 2, generator=g, dtype=f64) - 1)
    x0 = mid - side[:, None] / 2
    k = size / side
    K = torch.zeros(n, 3, 3, dtype=f64)
    K[:, 0, 0], K[:, 1, 1] = f * k, f * k
    K[:, 0, 2], K[:, 1, 2] = -x0[:, 0] * k - 0.5, -x0[:, 1] * k - 0.5  # pixel centres at integers
    K[:, 2, 2] = 1.0
    uv = project(xyz, K)
    return Keypoints(xyz, uv, K, sk.reference_length(xyz), angles, shapes.hand_breadth, (seg_a, seg_b, radius))


def generate_batch(domain: str | Domain, n: int, size: int = 128, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> SynthBatch:
    """Sample, pose, place, crop and render ``n`` hands of one domain.

    Deterministic for a seeded CPU ``generator`` (all random draws happen on the CPU).
    ``device`` runs the renderer there (e.g. ``"cuda"``).
    """
    dom = DOMAINS[domain] if isinstance(domain, str) else domain
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    kp = sample_keypoints(dom, n, size, g)
    xyz, uv, K, angles, f64 = kp.xyz, kp.uv, kp.K, kp.angles, torch.float64
    seg_a, seg_b, radius = kp.capsules

    # appearance
    tone = _uniform(n, *dom.skin, g) * (len(anatomy.SKIN_TONES) - 1)
    palette = torch.tensor(anatomy.SKIN_TONES, dtype=f64)
    i0 = tone.floor().long().clamp(max=len(palette) - 2)
    skin = palette[i0] + (tone - i0)[:, None] * (palette[i0 + 1] - palette[i0])  # (n, 3)
    jitter = 1 + 0.04 * torch.randn(n, _NUM_HAND_CAPSULES, 1, generator=g, dtype=f64)
    if dom.appearance not in APPEARANCES:
        raise ValueError(f"domain {dom.name!r}: appearance must be one of {APPEARANCES}, got {dom.appearance!r}")
    # the glove replaces the skin's colour only: every random draw stays the same, so the two
    # appearances of one seed show the same hands, poses, cameras and scenes
    albedo = (skin[:, None] if dom.appearance == "skin" else glove_albedo(n)) * jitter
    is_hand = torch.ones(n, _NUM_HAND_CAPSULES, dtype=torch.bool)
    if dom.appearance == "markers":  # the glove + a white sphere on every joint (motion-capture markers)
        seg_a, seg_b = torch.cat([seg_a, xyz], 1), torch.cat([seg_b, xyz], 1)
        radius = torch.cat([radius, MARKER_RADIUS * _joint_radius(radius)], 1)
        albedo = torch.cat([albedo, torch.full((n, 21, 3), MARKER_ALBEDO, dtype=f64)], 1)
        is_hand = torch.cat([is_hand, torch.ones(n, 21, dtype=torch.bool)], 1)
    # occluders: up to two spheres / short rods between the camera and the hand
    occ = torch.rand(n, generator=g) < dom.occluder_prob
    pick = torch.randint(0, 21, (n, 2), generator=g)
    target_pt = xyz[torch.arange(n)[:, None], pick]  # (n, 2, 3)
    toward = _uniform(n * 2, 0.05, 0.15, g).view(n, 2, 1)
    o_a = target_pt * (1 - toward / target_pt[..., 2:])  # on the ray to the joint, 5-15 cm in front
    o_dir = torch.randn(n, 2, 3, generator=g, dtype=f64)
    o_b = o_a + 0.04 * o_dir * (torch.rand(n, 2, 1, generator=g, dtype=f64) < 0.5)
    o_r = _uniform(n * 2, 0.008, 0.02, g).view(n, 2) * occ[:, None] * (torch.rand(n, 2, generator=g) < 0.7)
    seg_a, seg_b = torch.cat([seg_a, o_a], 1), torch.cat([seg_b, o_b], 1)
    radius = torch.cat([radius, o_r], 1)
    albedo = torch.cat([albedo, torch.rand(n, 2, 3, generator=g, dtype=f64)], 1).clamp(0, 1)
    is_hand = torch.cat([is_hand, torch.zeros(n, 2, dtype=torch.bool)], 1)
    # light: a direction around the camera axis (towards the camera is -z)
    spread = dom.light_spread_deg * _DEG * torch.rand(n, generator=g, dtype=f64)
    az = 2 * math.pi * torch.rand(n, generator=g, dtype=f64)
    light = torch.stack([torch.sin(spread) * torch.cos(az), torch.sin(spread) * torch.sin(az), -torch.cos(spread)], -1)
    ambient = _uniform(n, *dom.ambient, g)
    kinds = [dom.backgrounds[int(i)] for i in torch.randint(0, len(dom.backgrounds), (n,), generator=g)]
    bg = backgrounds(kinds, size, g)
    noise = dom.noise * torch.randn(n, size, size, 3, generator=g)

    dev = torch.device(device) if device is not None else torch.device("cpu")
    f32 = torch.float32
    scene = Scene(K.to(dev, f32), seg_a.to(dev, f32), seg_b.to(dev, f32), radius.to(dev, f32),
                  albedo.to(dev, f32), is_hand.to(dev), light.to(dev, f32), ambient.to(dev, f32))
    out = render(scene, size, bg.to(dev))
    image = (out.image.cpu() + noise).clamp(0, 1)
    joint_r = _joint_radius(radius[:, :_NUM_HAND_CAPSULES]) * (MARKER_RADIUS if dom.appearance == "markers" else 1.0)
    vis = visibility(xyz, uv, out.depth.cpu().to(f64), joint_r)
    scale = kp.scale
    return SynthBatch((image * 255).round().to(torch.uint8), out.mask.cpu().to(torch.uint8) * 255,
                      uv, xyz, K, vis, scale, angles)


# ----------------------------------------------------------------------------- data sets on disk
#: Sizes of the synthetic data per preset: (training, evaluation) samples per domain. The one
#: home of these numbers: ``bmc synth --preset``, ``bmc experiment`` and ``bmc reproduce`` use
#: them (``bmc synth`` made 256 + 64 / 20,000 + 2,000 before, the experiment 128 + 32 / 12,000
#: + 1,000, which the committed benchmark runs were trained on).
PRESETS = {"tiny": (128, 32), "cpu": (12000, 1000), "cpu-long": (24000, 2000), "gpu": (100000, 5000)}
_CHUNK = 64  # samples per generator stream: output does not depend on the batch size used


def _chunk_generator(seed: int, split: str, chunk: int) -> torch.Generator:
    salt = {"training": 1, "evaluation": 2}[split]
    return torch.Generator().manual_seed((seed * 1_000_003 + salt * 7_919 + chunk * 104_729) % (2 ** 63))


def generate_dataset(out: str, domain: str, num_train: int, num_eval: int, seed: int = 0, size: int = 128,
                     device: str | None = None, make_cache: bool = True, progress: bool = True,
                     overwrite: bool = False, n_hands: int | None = None, population_seed: int = 0,
                     appearance: str = "skin") -> dict:
    """Render one domain to ``out`` in the FreiHAND v2 layout, then convert it to prepared
    caches ``out/cache/training`` and ``out/cache/evaluation``.

    The target domain's training cache is 2D-only (its weakly supervised role); its
    evaluation cache and all of the source domain are 3D-labelled. Same seed, same bytes.
    ``n_hands``: a population of that many people (drawn from ``population_seed``) instead of
    a new hand per sample. ``appearance``: ``"skin"``, ``"glove"`` (:data:`GLOVE_HUES`) or ``"markers"``. Returns a
    summary (counts, seconds, images/s).
    """
    import time
    from pathlib import Path

    from ..results import provenance, replace_dir, staging_dir, write_json_atomic
    from .freihand import freihand_to_cache

    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {sorted(DOMAINS)}, got {domain!r}")
    if appearance not in APPEARANCES:
        raise ValueError(f"appearance must be one of {APPEARANCES}, got {appearance!r}")
    if num_train < 1 or num_eval < 0:
        raise ValueError(f"need num_train >= 1 and num_eval >= 0, got {num_train}, {num_eval}")
    final = Path(out)
    if (final / "training_xyz.json").exists() and not overwrite:
        raise FileExistsError(f"{final} already holds a data set; pass --force (overwrite=True in Python) to "
                              f"replace it")
    layout = {"training", "evaluation", "cache", "provenance.json"} | {
        f"{sp}_{k}.json" for sp in ("training", "evaluation") for k in ("xyz", "K", "scale", "bmc")}
    if final.exists() and (not final.is_dir() or any(p.name not in layout for p in final.iterdir())):
        raise FileExistsError(f"{final} exists and is not a synthetic data set (it holds other files); refusing "
                              f"to replace it: choose another output folder")
    # render into a hidden folder beside the destination and swap it in when complete: a failed
    # or killed run leaves an earlier data set as it was (and no stale images of a larger one)
    import shutil

    root = staging_dir(final)
    try:
        summary, t0 = _render_layout(root, domain, num_train, num_eval, seed, size, device, progress, n_hands,
                                     population_seed, appearance)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    root = replace_dir(root, final)
    render_s = time.perf_counter() - t0
    if make_cache:
        for split in summary["splits"]:
            labels = "2d" if (domain == "target" and split == "training") else "3d"
            freihand_to_cache(root, root / "cache" / split, split, labels=labels, overwrite=True, progress=progress)
    total_s = time.perf_counter() - t0
    n = sum(summary["splits"].values())
    summary.update({"render_and_write_s": render_s, "total_s": total_s, "images_per_s": n / total_s})
    write_json_atomic(root / "provenance.json", provenance(config={k: summary[k] for k in ("domain", "seed", "size", "n_hands",
                                                                                       "population_seed", "appearance")},
                                                           splits=summary["splits"], device=str(device or "cpu")))
    return summary


def _render_layout(root, domain: str, num_train: int, num_eval: int, seed: int, size: int, device, progress: bool,
                   n_hands, population_seed: int, appearance: str = "skin"):
    """Render both splits of one domain into the FreiHAND layout at ``root``; ``(summary, t0)``."""
    import dataclasses
    import time
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from PIL import Image
    from ..progress import tqdm

    from .freihand import split_paths, write_split

    t0 = time.perf_counter()
    summary: dict = {"domain": domain, "seed": seed, "size": size, "n_hands": n_hands,
                     "population_seed": population_seed, "appearance": appearance, "splits": {}}
    dom = dataclasses.replace(DOMAINS[domain], n_hands=n_hands, population_seed=population_seed, appearance=appearance)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for split, num in (("training", num_train), ("evaluation", num_eval)):
            if num == 0:
                continue
            paths = split_paths(root, split)
            paths["rgb"].mkdir(parents=True, exist_ok=True)
            paths["mask"].mkdir(parents=True, exist_ok=True)
            xyz, K, scale, vis, jobs = [], [], [], [], []
            bar = tqdm(total=num, desc=f"{domain} {split}", unit="img", disable=not progress)
            for chunk, start in enumerate(range(0, num, _CHUNK)):
                b = min(_CHUNK, num - start)
                batch = generate_batch(dom, b, size, _chunk_generator(seed, split, chunk), device)
                imgs, masks = batch.images.numpy(), batch.masks.numpy()
                for i in range(b):
                    idx = start + i
                    jobs.append(pool.submit(Image.fromarray(imgs[i]).save, paths["rgb"] / f"{idx:08d}.jpg", quality=95))
                    jobs.append(pool.submit(Image.fromarray(masks[i]).save, paths["mask"] / f"{idx:08d}.jpg",
                                            quality=95))
                xyz.append(batch.xyz.numpy())
                K.append(batch.K.numpy())
                scale.append(batch.scale.numpy())
                vis.append(batch.visible.numpy())
                bar.update(b)
                if len(jobs) > 512:
                    for j in jobs:
                        j.result()
                    jobs = []
            for j in jobs:
                j.result()
            bar.close()
            write_split(root, split, np.concatenate(xyz), np.concatenate(K), np.concatenate(scale),
                        np.concatenate(vis), info={"generator": "bmclib.data.synth", "domain": domain,
                                                   "seed": seed, "size": size, "n_hands": n_hands,
                                                   "appearance": appearance})
            summary["splits"][split] = num
    return summary, t0


def contact_sheet(batch: SynthBatch, path: str, cols: int = 8, keypoints: bool = True) -> None:
    """Save a grid of a batch's images (with 2D keypoints: filled = visible, hollow = occluded)."""
    from PIL import Image, ImageDraw

    imgs = batch.images.numpy()
    n, s = len(imgs), imgs.shape[1]
    rows = (n + cols - 1) // cols
    sheet = Image.new("RGB", (cols * s, rows * s), "white")
    for i in range(n):
        tile = Image.fromarray(imgs[i])
        if keypoints:
            d = ImageDraw.Draw(tile)
            uv = batch.uv[i].numpy()
            for c, p in sk.BONES:
                d.line([tuple(uv[p]), tuple(uv[c])], fill=(255, 255, 255), width=1)
            for j in range(21):
                x, y = uv[j]
                box = [x - 2, y - 2, x + 2, y + 2]
                d.ellipse(box, fill=(255, 40, 40) if batch.visible[i, j] else None, outline=(255, 40, 40))
        sheet.paste(tile, ((i % cols) * s, (i // cols) * s))
    sheet.save(path)


def render_hands(xyz: Tensor, hand_breadth: Tensor, K: Tensor, size: int) -> tuple["Rendered", Tensor]:
    """Render bare hands ``xyz (B, 21, 3)`` (camera frame, metres) with a fixed skin colour and
    a head light; returns the :class:`~bmclib.data.render.Rendered` output and the joints'
    visibility ``(B, 21)``. For tests and figures: no background, no occluders."""
    a, b, r = _capsules(xyz.to(torch.float64), hand_breadth.to(torch.float64))
    n, p = r.shape
    f32 = torch.float32
    scene = Scene(K.to(f32), a.to(f32), b.to(f32), r.to(f32), torch.full((n, p, 3), 0.8),
                  torch.ones(n, p, dtype=torch.bool), torch.tensor([[0.0, 0.0, -1.0]]).expand(n, 3),
                  torch.full((n,), 0.3))
    out = render(scene, size)
    uv = project(xyz.to(torch.float64), K.to(torch.float64))
    return out, visibility(xyz.to(torch.float64), uv, out.depth.to(torch.float64), _joint_radius(r))
