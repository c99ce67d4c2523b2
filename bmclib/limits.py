"""BMC limits: the plausible ranges the biomechanical losses hold a pose to.

:class:`BMCLimits` holds intervals for the 20 bone lengths, the 4 root angular
distances and the 4 palm curvatures, and one convex polygon per finger joint in the
(flexion, abduction) plane. Everything is in scale-normalised units: lengths divided
by the reference bone, curvatures in 1 / reference-bone length, angles in radians.

Example:
    >>> import torch
    >>> from bmclib.handmodel import template_pose
    >>> limits = BMCLimits.default()
    >>> len(limits.angle_polygons), limits.bone_length.shape
    (15, (20, 2))
    >>> from bmclib.losses import plausible       # (the losses judge poses; limits only hold numbers)
    >>> plausible(template_pose(dtype=torch.float64)[None], limits).tolist()  # a flat hand
    [True]
"""
from __future__ import annotations

import datetime as _dt
import functools
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import anatomy
from . import skeleton as sk
from .biomech import decompose, normalize_scale, validate_joints
from .results import read_json, write_json_atomic

__all__ = ["BMCLimits", "limits_by_rule", "LIMIT_RULES", "DEFAULT_COVERAGE", "fit_polygon", "dilate_polygon", "polygon_area", "LIMITS_FORMAT", "LIMITS_VERSION", "MIN_WIDTH",
           "DegenerateLimitsWarning"]

LIMITS_FORMAT = "bmclib.limits"
LIMITS_VERSION = 1

#: The narrowest interval :meth:`BMCLimits.fit` accepts, per kind: bone lengths 2% of the
#: interval's midpoint, root angular distances 1 degree, curvatures 0.05 / reference bone.
#: Narrower fitted intervals are widened to these (and warned about): a term that is
#: constant in the data would otherwise be an equality constraint.
MIN_WIDTH = {"bone_length": 0.02, "root_angle": math.radians(1.0), "root_curvature": 0.05}


class DegenerateLimitsWarning(UserWarning):
    """A fitted interval was (nearly) zero-width and has been widened (:data:`MIN_WIDTH`)."""


def _cross2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def polygon_area(poly: np.ndarray) -> float:
    """Signed area of a polygon ``(M, 2)`` (positive for counter-clockwise vertices)."""
    return 0.5 * float(_cross2(np.asarray(poly), np.roll(np.asarray(poly), -1, axis=0)).sum())




def _check_convex_ccw(poly: np.ndarray, name: str) -> np.ndarray:
    """Return ``poly`` counter-clockwise; raise if it is not a convex polygon."""
    poly = np.asarray(poly, dtype=np.float64)
    if poly.ndim != 2 or poly.shape[1] != 2 or poly.shape[0] < 3:
        raise ValueError(f"{name}: expected (M >= 3, 2) polygon vertices, got shape {poly.shape}")
    if not np.isfinite(poly).all():
        raise ValueError(f"{name}: polygon has non-finite vertices")
    area = polygon_area(poly)
    if area <= 0:
        if area == 0:
            raise ValueError(f"{name}: polygon has zero area")
        poly = poly[::-1].copy()
    edges = np.roll(poly, -1, axis=0) - poly  # (M, 2)
    turns = _cross2(edges, np.roll(edges, -1, axis=0))  # (M,)
    if (turns < -1e-12 * max(1.0, float(np.abs(poly).max()) ** 2)).any():
        raise ValueError(f"{name}: polygon is not convex (vertices {poly.tolist()})")
    poly = poly.copy()
    poly.setflags(write=False)
    return poly


def dilate_polygon(poly: np.ndarray, margin: float) -> np.ndarray:
    """Move every edge of a convex CCW polygon ``(M, 2)`` outwards by ``margin``."""
    if margin == 0:
        return poly
    edges = np.roll(poly, -1, axis=0) - poly  # (M, 2) edge i: v_i -> v_{i+1}
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)  # outward for CCW
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    prev = np.roll(normals, 1, axis=0)  # normal of the edge ending at v_i
    bis = prev + normals
    return poly + margin * bis / (1.0 + (prev * normals).sum(1, keepdims=True))


def _box(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])


def _hull_ccw(points: np.ndarray) -> np.ndarray | None:
    """Indices of the convex hull vertices of ``points (K, 2)``, CCW; None if degenerate."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        return ConvexHull(points).vertices  # scipy gives 2D hull vertices counter-clockwise
    except QhullError:
        return None


def _inside_count(points: np.ndarray, poly: np.ndarray, eps: float = 1e-12) -> int:
    """How many of ``points (N, 2)`` lie inside or on the convex CCW polygon ``poly (M, 2)``."""
    edges = np.roll(poly, -1, axis=0) - poly  # (M, 2)
    inside = np.ones(len(points), dtype=bool)
    for v, e in zip(poly, edges):  # M half-planes; points stay vectorised
        inside &= _cross2(e, points - v) >= -eps * max(1.0, float(np.abs(e).max()))
    return int(inside.sum())


#: the default share of each joint's (flexion, abduction) points kept inside its fitted polygon
DEFAULT_COVERAGE = 0.999

#: the rules that make limits for a data set (:func:`limits_by_rule`): the literature's, or fitted
#: on 3D poses with min / max intervals, 0.5-99.5% quantile intervals and polygons, or quantile
#: intervals and (flexion, abduction) boxes
LIMIT_RULES = ("literature", "source_minmax", "source_quantile", "source_box")


def fit_polygon(points: np.ndarray, coverage: float = DEFAULT_COVERAGE, min_extent: float = 1e-3,
                max_vertices: int | None = None) -> np.ndarray:
    """Convex polygon ``(M, 2)`` (CCW) around ``points (N, 2)`` keeping ``coverage`` of them inside.

    Start from the convex hull and peel: drop, one at a time, the hull vertex whose
    removal shrinks the hull the most (the hull of the remaining points), until
    dropping another would leave fewer than ``coverage`` of the points inside. Outliers
    go first; the result is the convex hull of the points kept. With ``max_vertices``,
    vertices are then cut (the cheapest in area first, points may be lost) until that
    many remain. Degenerate point sets (all on a line, or fewer than 3 distinct points)
    get a box at least ``min_extent`` wide in each direction.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise ValueError(f"points: expected (N >= 1, 2), got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("points: contain NaN or inf")
    if not (0.0 < coverage <= 1.0):
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    lo, hi = pts.min(0), pts.max(0)
    if (hi - lo < min_extent).any():
        mid, half = (lo + hi) / 2, np.maximum((hi - lo) / 2, min_extent / 2)
        return _box(mid - half, mid + half)
    hull = _hull_ccw(pts)
    if hull is None:
        return _box(lo, hi)
    hull = list(hull)
    keep = np.ones(len(pts), dtype=bool)
    budget = int(math.floor((1.0 - coverage) * len(pts) + 1e-9))
    cache: dict[tuple[int, int, int], tuple[float, list[int]]] = {}

    def peel(a: int, v: int, c: int) -> tuple[float, list[int]]:
        """Area lost and the new chain between a and c if vertex v leaves the kept set."""
        key = (a, v, c)
        if key not in cache:
            pa, pv, pc = pts[a], pts[v], pts[c]
            tri = 0.5 * abs(float(_cross2(pv - pa, pc - pa)))
            rel = pts - pa
            right = _cross2(pc - pa, rel) < 0  # beyond the chord a -> c
            in_tri = keep & right & (_cross2(pv - pa, rel) >= 0) & (_cross2(pc - pv, pts - pv) >= 0)
            in_tri[v] = False
            cand = np.nonzero(in_tri)[0]
            chain: list[int] = []
            kept_area = 0.0
            if len(cand):
                ids = np.concatenate([[a, c], cand])
                sub = _hull_ccw(pts[ids])
                if sub is not None:
                    order = list(ids[sub])
                    if a not in order or c not in order:
                        # a neighbour collinear with the points left (qhull drops it): this
                        # vertex cannot be peeled cleanly; never choose it
                        cache[key] = (-math.inf, [])
                        return cache[key]
                    start = order.index(a)
                    order = order[start:] + order[:start]  # a, chain..., c
                    chain = [int(i) for i in order[1:order.index(c)]]
                    kept_area = abs(polygon_area(pts[order]))
            cache[key] = (tri - kept_area, chain)
        return cache[key]

    history = [hull]
    for _ in range(budget):
        if len(hull) <= 3:
            break
        m = len(hull)
        gains = [peel(hull[i - 1], hull[i], hull[(i + 1) % m]) for i in range(m)]
        i = int(np.argmax([g for g, _ in gains]))
        if gains[i][0] == -math.inf:
            break
        keep[hull[i]] = False
        hull = hull[:i] + gains[i][1] + hull[i + 1:]
        history.append(hull)
    # Each peel marks one point as outside, but repeated points (angles clipped at a range's
    # bound pile up on the same spot) can leave together: check the share actually inside and
    # step back to the last hull that keeps ``coverage`` (the hulls nest, so the share only falls).
    need = coverage * len(pts) - 1e-9
    if _inside_count(pts, pts[hull]) < need:
        lo, hi = 0, len(history) - 1  # history[lo] keeps enough (the full hull keeps every point)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if _inside_count(pts, pts[history[mid]]) >= need else (lo, mid)
        hull = history[lo]
    poly = pts[hull]
    while max_vertices is not None and len(poly) > max(3, max_vertices):
        prev, nxt = np.roll(poly, 1, axis=0), np.roll(poly, -1, axis=0)
        poly = np.delete(poly, int(np.argmin(np.abs(_cross2(poly - prev, nxt - prev)))), axis=0)
    return poly


def _intervals(x: np.ndarray, name: str, n: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (n, 2):
        raise ValueError(f"{name}: expected shape ({n}, 2) of (low, high), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: non-finite limits")
    if (x[:, 0] > x[:, 1]).any():
        bad = np.nonzero(x[:, 0] > x[:, 1])[0].tolist()
        raise ValueError(f"{name}: low > high at rows {bad}")
    x = x.copy()
    x.setflags(write=False)
    return x


@dataclass(frozen=True)
class BMCLimits:
    """Plausible ranges for the BMC losses, in scale-normalised units.

    Attributes:
        bone_length: ``(20, 2)`` (low, high) length of each bone / reference bone.
        root_angle: ``(4, 2)`` angular distance between neighbouring root bones (rad).
        root_curvature: ``(4, 2)`` palm curvature between neighbouring root bones.
        angle_polygons: 15 convex CCW polygons ``(M_j, 2)`` in (flexion, abduction)
            radians, thumb CMC/MCP/IP, index MCP/PIP/DIP, ..., little DIP.
        reference_bone: the ``(parent, child)`` joints whose length is 1.
        meta: where the limits came from (free-form, saved with them).
    """

    bone_length: np.ndarray
    root_angle: np.ndarray
    root_curvature: np.ndarray
    angle_polygons: tuple[np.ndarray, ...]
    reference_bone: tuple[int, int] = sk.REFERENCE_BONE
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bone_length", _intervals(self.bone_length, "bone_length", sk.NUM_BONES))
        object.__setattr__(self, "root_angle", _intervals(self.root_angle, "root_angle", 4))
        object.__setattr__(self, "root_curvature", _intervals(self.root_curvature, "root_curvature", 4))
        polys = tuple(self.angle_polygons)
        if len(polys) != 15:
            raise ValueError(f"angle_polygons: expected 15 polygons, got {len(polys)}")
        polys = tuple(_check_convex_ccw(p, f"angle_polygons[{i}] ({sk.ANGLE_JOINT_NAMES[i]})")
                      for i, p in enumerate(polys))
        object.__setattr__(self, "angle_polygons", polys)
        ref = tuple(int(v) for v in self.reference_bone)
        sk.bone_index(*ref)
        object.__setattr__(self, "reference_bone", ref)

    # ---------------------------------------------------------------- construction
    @classmethod
    def fit(cls, joints: Tensor | np.ndarray, coverage: float = DEFAULT_COVERAGE, *,
            reference_bone: tuple[int, int] = sk.REFERENCE_BONE, margin: float = 0.0,
            max_vertices: int | None = None, source: str = "fit", interval_coverage: float = 1.0,
            shape: str = "hull", min_width: dict[str, float] | None = None) -> "BMCLimits":
        """Fit limits to 3D poses ``(N, 21, 3)`` (right hands, any units).

        Poses are made root-relative and scale-normalised by ``reference_bone``.

        Intervals (bone lengths, root angles, curvatures) span the central
        ``interval_coverage`` of the data: the ``(1 - c) / 2`` and ``(1 + c) / 2`` quantiles,
        so 0.99 gives the 0.5-99.5% range; 1.0 (the default) is min / max, which grows with
        the sample size (over 10k samples about +-3.9 sigma) rather than with the anatomy.

        Degenerate intervals: an interval narrower than ``min_width[kind]`` (kinds
        ``bone_length`` as a share of its midpoint, ``root_angle`` in radians,
        ``root_curvature``; defaults :data:`MIN_WIDTH`) is a quantity that is (nearly)
        constant in the data — e.g. a planar palm — and would act as an equality constraint.
        Such an interval is widened symmetrically about its midpoint to ``min_width`` and a
        :class:`DegenerateLimitsWarning` names it; ``meta["widened"]`` lists them.

        Angles: ``shape="hull"`` (default) fits each joint's convex polygon to its (flexion,
        abduction) points, simplified while ``coverage`` of them stay inside
        (:func:`fit_polygon`); ``shape="box"`` uses the axis-aligned box of each angle's
        central ``coverage`` (independent intervals: the ablation of the paper's co-dependent
        envelope). Both are dilated by ``margin`` radians.
        """
        t = torch.as_tensor(np.asarray(joints) if not isinstance(joints, Tensor) else joints)
        if t.dim() != 3:
            raise ValueError(f"joints: expected shape (N, 21, 3), got {tuple(t.shape)}")
        validate_joints(t.to(torch.float64))
        if len(t) < 3:
            raise ValueError(f"joints: need at least 3 poses to fit limits, got {len(t)}")
        if not (0.0 < interval_coverage <= 1.0):
            raise ValueError(f"interval_coverage must be in (0, 1], got {interval_coverage}")
        if shape not in ("hull", "box"):
            raise ValueError(f"shape must be 'hull' or 'box', got {shape!r}")
        widths = {**MIN_WIDTH, **(min_width or {})}
        norm, _ = normalize_scale(t.to(torch.float64), reference_bone)
        d = decompose(norm, check=False)
        widened: list[str] = []

        def interval(x: Tensor, kind: str, names: list[str]) -> np.ndarray:
            x = x.numpy()
            q = (1.0 - interval_coverage) / 2
            lohi = np.stack([x.min(0), x.max(0)] if q == 0 else [np.quantile(x, q, 0), np.quantile(x, 1 - q, 0)], -1)
            mid = lohi.mean(1)
            need = widths[kind] * (np.abs(mid) if kind == "bone_length" else np.ones_like(mid))
            small = lohi[:, 1] - lohi[:, 0] < need
            if kind == "bone_length":  # the reference bone is 1 by definition (the normalisation)
                small[sk.bone_index(*reference_bone)] = False
            for i in np.nonzero(small)[0]:
                widened.append(f"{kind}[{names[i]}] [{lohi[i, 0]:.4g}, {lohi[i, 1]:.4g}]")
            lohi[small] = np.stack([mid - need / 2, mid + need / 2], -1)[small]
            return lohi

        bones = [f"{sk.JOINT_NAMES[p]}->{sk.JOINT_NAMES[c]}" for p, c in sk.BONES]
        pairs = [f"{sk.FINGER_NAMES[f]}-{sk.FINGER_NAMES[f + 1]}" for f in range(4)]
        lengths = interval(d.bone_lengths, "bone_length", bones)
        angles = interval(d.root_angles, "root_angle", pairs)
        curv = interval(d.root_curvatures, "root_curvature", pairs)
        pts = d.angles.reshape(len(t), 15, 2).numpy()
        if shape == "hull":
            polys = tuple(dilate_polygon(fit_polygon(pts[:, j], coverage, max_vertices=max_vertices), margin)
                          for j in range(15))
        else:
            q = (1.0 - coverage) / 2
            lo, hi = np.quantile(pts, q, 0), np.quantile(pts, 1 - q, 0)  # (15, 2)
            hi = np.maximum(hi, lo + 1e-3)
            polys = tuple(dilate_polygon(_box(lo[j], hi[j]), margin) for j in range(15))
        if widened:
            warnings.warn(f"BMCLimits.fit ({source}): {len(widened)} degenerate interval(s) widened to the minimum "
                          f"width: {'; '.join(widened)}", DegenerateLimitsWarning, stacklevel=2)
        meta = {"source": source, "n_poses": int(len(t)), "coverage": coverage, "interval_coverage": interval_coverage,
                "shape": shape, "margin": margin, "min_width": widths, "widened": widened,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        return cls(lengths, angles, curv, polys, reference_bone, meta)

    @classmethod
    def default(cls) -> "BMCLimits":
        """Literature-derived limits built from :mod:`bmclib.anatomy`.

        Angle polygons are the active range-of-motion boxes
        (:data:`bmclib.anatomy.RANGE_OF_MOTION`). Bone-length, root-angle and curvature
        intervals are the min / max over 20,000 hands sampled from the ANSUR II /
        Buchholz statistics with palm arch (:func:`bmclib.handmodel.sample_hand_shapes`,
        seed 0), widened by 5% of each value (lengths) or 5 degrees / 0.05 (palm terms).
        """
        return _default_limits()

    # ---------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": LIMITS_FORMAT,
            "version": LIMITS_VERSION,
            "units": {"lengths": "reference bone", "angles": "rad", "curvature": "1 / reference bone"},
            "reference_bone": list(self.reference_bone),
            "bone_length": {f"{sk.JOINT_NAMES[p]}->{sk.JOINT_NAMES[c]}": lh.tolist()
                            for (p, c), lh in zip(sk.BONES, self.bone_length)},
            "root_angle": self.root_angle.tolist(),
            "root_curvature": self.root_curvature.tolist(),
            "angle_polygons": {name: p.tolist() for name, p in zip(sk.ANGLE_JOINT_NAMES, self.angle_polygons)},
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "limits") -> "BMCLimits":
        if not isinstance(data, dict) or data.get("format") != LIMITS_FORMAT:
            raise ValueError(f"{where}: not a bmclib limits file (expected \"format\": \"{LIMITS_FORMAT}\")")
        version = data.get("version")
        if version != LIMITS_VERSION:
            raise ValueError(f"{where}: unsupported limits version {version!r} (this bmclib reads {LIMITS_VERSION})")
        try:
            bl = data["bone_length"]
            polys = data["angle_polygons"]
            bone_length = [bl[f"{sk.JOINT_NAMES[p]}->{sk.JOINT_NAMES[c]}"] for p, c in sk.BONES]
            angle_polygons = tuple(np.asarray(polys[name], dtype=np.float64) for name in sk.ANGLE_JOINT_NAMES)
            return cls(np.asarray(bone_length, dtype=np.float64), np.asarray(data["root_angle"], dtype=np.float64),
                       np.asarray(data["root_curvature"], dtype=np.float64), angle_polygons,
                       tuple(data.get("reference_bone", sk.REFERENCE_BONE)), dict(data.get("meta", {})))
        except KeyError as e:
            raise ValueError(f"{where}: missing field {e}") from None
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write versioned JSON atomically (a crash never leaves a half-written file)."""
        path = Path(path)
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BMCLimits":
        data = read_json(path, f"limits file not found: {path}")
        return cls.from_dict(data, where=str(path))

    # ---------------------------------------------------------------- display
    def summary(self) -> str:
        """A readable table of every limit (degrees for angles)."""
        deg = 180.0 / math.pi
        lines = [f"BMCLimits (reference bone {sk.JOINT_NAMES[self.reference_bone[0]]}->"
                 f"{sk.JOINT_NAMES[self.reference_bone[1]]}; source: {self.meta.get('source', '?')})",
                 f"{'bone':<26}{'low':>8}{'high':>8}"]
        for (p, c), (lo, hi) in zip(sk.BONES, self.bone_length):
            lines.append(f"{sk.JOINT_NAMES[p] + '->' + sk.JOINT_NAMES[c]:<26}{lo:8.3f}{hi:8.3f}")
        lines.append(f"{'palm (between root bones)':<26}{'phi lo':>8}{'phi hi':>8}{'curv lo':>9}{'curv hi':>9}")
        for f in range(4):
            name = f"{sk.FINGER_NAMES[f]}-{sk.FINGER_NAMES[f + 1]}"
            (alo, ahi), (clo, chi) = self.root_angle[f], self.root_curvature[f]
            lines.append(f"{name:<26}{alo * deg:8.1f}{ahi * deg:8.1f}{clo:9.3f}{chi:9.3f}")
        lines.append(f"{'joint (deg)':<26}{'flex lo':>8}{'flex hi':>8}{'abd lo':>9}{'abd hi':>9}{'verts':>6}")
        for name, poly in zip(sk.ANGLE_JOINT_NAMES, self.angle_polygons):
            lo, hi = poly.min(0) * deg, poly.max(0) * deg
            lines.append(f"{name:<26}{lo[0]:8.1f}{hi[0]:8.1f}{lo[1]:9.1f}{hi[1]:9.1f}{len(poly):6d}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        sizes = [len(p) for p in self.angle_polygons]
        return (f"BMCLimits(source={self.meta.get('source', '?')!r}, reference_bone={self.reference_bone}, "
                f"bone_length=[{self.bone_length[:, 0].min():.2f}, {self.bone_length[:, 1].max():.2f}], "
                f"polygons=15 x {min(sizes)}..{max(sizes)} vertices)")

    def __str__(self) -> str:
        return self.summary()

    # ---------------------------------------------------------------- tensors for the loss
    def polygon_tensors(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        """Padded polygon data for batched distances.

        Returns ``vertices (15, M, 2)``, ``normals (15, M, 2)`` (outward unit normal of the
        edge from vertex m to m+1) and ``offsets (15, M)`` (``normal . vertex``). Short
        polygons repeat their last vertex, so the padded slots repeat the closing edge,
        which changes no distance.
        """
        m = max(len(p) for p in self.angle_polygons)
        verts = np.stack([np.concatenate([p, np.repeat(p[-1:], m - len(p), 0)]) for p in self.angle_polygons])
        nxt = np.stack([np.concatenate([np.roll(p, -1, 0), np.repeat(p[:1], m - len(p), 0)])
                        for p in self.angle_polygons])
        edges = nxt - verts  # (15, M, 2); a padded slot repeats the closing edge last -> first
        normals = np.stack([edges[..., 1], -edges[..., 0]], -1)
        normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
        offsets = (normals * verts).sum(-1)  # (15, M)
        as_t = functools.partial(torch.tensor, dtype=dtype, device=device)
        return as_t(verts), as_t(normals), as_t(offsets)


@functools.lru_cache(maxsize=1)
def _default_limits() -> BMCLimits:
    from .handmodel import sample_hand_shapes
    from .biomech import compose_parts

    g = torch.Generator().manual_seed(0)
    shapes = sample_hand_shapes(20000, g, dtype=torch.float64)
    joints = compose_parts(shapes.root_bones, shapes.finger_lengths,
                           torch.zeros(20000, 5, 3, 2, dtype=torch.float64))
    norm, _ = normalize_scale(joints)
    d = decompose(norm, check=False)
    lengths = torch.stack([d.bone_lengths.amin(0) * 0.95, d.bone_lengths.amax(0) * 1.05], -1).numpy()
    five = math.radians(5.0)
    root_angle = torch.stack([d.root_angles.amin(0) - five, d.root_angles.amax(0) + five], -1).numpy()
    curv = torch.stack([d.root_curvatures.amin(0) - 0.05, d.root_curvatures.amax(0) + 0.05], -1).numpy()
    polys = []
    for finger in sk.FINGER_NAMES:
        for rom in anatomy.RANGE_OF_MOTION[finger]:
            (f0, f1), (a0, a1) = (tuple(map(math.radians, r)) for r in (rom.flexion, rom.abduction))
            polys.append(np.array([[f0, a0], [f1, a0], [f1, a1], [f0, a1]]))
    meta = {"source": "literature (bmclib.anatomy: ANSUR II, Buchholz 1992, AAOS / Cobos 2008 ROM)",
            "n_poses": 20000, "seed": 0}
    return BMCLimits(lengths, root_angle, curv, tuple(polys), sk.REFERENCE_BONE, meta)


def limits_by_rule(rule: str, xyz, hull_coverage: float = DEFAULT_COVERAGE, interval_coverage: float = 0.99,
                   source: str = "fit") -> BMCLimits:
    """The limits of one of :data:`LIMIT_RULES` for 3D poses ``xyz (N, 21, 3)``: ``literature``
    (:meth:`BMCLimits.default`, ``xyz`` unused); ``source_minmax`` (min / max intervals,
    polygons keeping ``hull_coverage``); ``source_quantile`` (the central ``interval_coverage``
    of each interval, polygons keeping ``hull_coverage``); ``source_box`` (as ``source_quantile``
    with axis-aligned (flexion, abduction) boxes)."""
    if rule not in LIMIT_RULES:
        raise ValueError(f"limits rule must be one of {LIMIT_RULES}, got {rule!r}")
    if rule == "literature":
        return BMCLimits.default()
    if rule == "source_minmax":
        return BMCLimits.fit(xyz, hull_coverage, source=source)
    return BMCLimits.fit(xyz, hull_coverage, interval_coverage=interval_coverage,
                         shape="box" if rule == "source_box" else "hull", source=source)
