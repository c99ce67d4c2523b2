"""Plausibility audit of 3D hand predictions, and figures of fitted limits.

``bmc audit pred.json [--limits L]`` reads FreiHAND-format predictions (``[xyz, verts]``)
or this project's ``predictions.npz`` and reports, against BMC limits, the share of
poses and of each joint / term outside them and the worst samples: a Markdown report
and a CSV of per-sample violations. No benchmark measures this today.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .limits import BMCLimits
from .losses import TERM_NAMES, VIOLATION_TOL
from .validate import as_array, check_finite

__all__ = ["TERM_NAMES", "load_predictions", "audit", "write_audit", "plot_limits"]


def load_predictions(path: str | os.PathLike) -> np.ndarray:
    """``(N, 21, 3)`` joints from a FreiHAND ``pred.json``, a ``predictions.npz`` (key ``xyz``)
    or a ``.npy`` array; a wrong shape or a NaN / inf value is a ``ValueError`` naming the file,
    the field and the sample."""
    from .evaluate import read_pred_json

    path = Path(path)
    if path.suffix == ".json":
        return read_pred_json(path)[0]
    if not path.is_file():
        raise FileNotFoundError(f"predictions not found: {path}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "xyz" not in z.files:
                raise ValueError(f"{path}: no 'xyz' array (has {z.files})")
            xyz = z["xyz"]
    elif path.suffix == ".npy":
        xyz = np.load(path, allow_pickle=False)
    else:
        raise ValueError(f"{path}: expected .json (FreiHAND pred.json), .npz or .npy")
    xyz = as_array(xyz, path, "xyz", (None, 21, 3))
    check_finite(xyz, path, "xyz")
    return xyz


def audit(xyz: np.ndarray, limits: BMCLimits | None = None, side: str = "right") -> dict:
    """Violations of ``xyz (N, 21, 3)`` against ``limits`` (default: literature limits).

    Returns per-term violation rates (43 terms), the share of implausible poses and joints,
    and per-sample distances (the exact BMC terms) for ranking the worst samples. Poses with a
    NaN / inf coordinate are counted in ``non_finite`` and left out of every rate (their
    per-sample values are NaN).

    ``side``: ``"right"`` (BMC's limits are a right hand's) or ``"left"`` (mirrored into right
    hands first, :func:`bmclib.skeleton.mirror_joints`). The result's ``mirrored_implausible_poses``
    is the share the poses would have mirrored; far below ``implausible_poses``, the input is
    probably of the other side, and ``side_hint`` says so."""
    from . import skeleton as sk

    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    limits = limits or BMCLimits.default()
    j = torch.from_numpy(np.asarray(xyz, dtype=np.float64))
    if side == "left":
        j = sk.mirror_joints(j)
    result = _audit_right(j, limits)
    other = _audit_right(sk.mirror_joints(j), limits)
    result["side"] = side
    result["mirrored_implausible_poses"] = other["implausible_poses"]
    result["side_hint"] = ""
    if other["implausible_poses"] < 0.5 * result["implausible_poses"] - 0.05:
        flip = "left" if side == "right" else "right"
        result["side_hint"] = (f"{100 * result['implausible_poses']:.1f}% of the poses are implausible as {side} "
                               f"hands but {100 * other['implausible_poses']:.1f}% mirrored: are they {flip} hands? "
                               f"(bmc audit --side {flip})")
    return result


def _audit_right(j: torch.Tensor, limits: BMCLimits) -> dict:
    """:func:`audit` of right-hand joints ``(N, 21, 3)`` float64."""
    from .losses import BMCLoss

    finite = torch.isfinite(j).all(-1).all(-1)
    if not bool(finite.any()):
        raise ValueError(f"audit: none of the {len(j)} poses is finite")
    out = BMCLoss(limits, reduction="none", angle_distance="exact", check=False)(torch.where(
        finite[:, None, None], j, torch.zeros_like(j)))
    per = out.per_term.numpy()  # (N, 43)
    per[~finite.numpy()] = np.nan  # non-finite poses are reported, never scored
    total = np.where(finite.numpy(), out.total.numpy(), np.nan)
    bad = per[finite.numpy()] > VIOLATION_TOL
    return {"n": int(len(j)), "non_finite": int((~finite).sum()), "term_rate": bad.mean(0),
            "implausible_poses": float(bad.any(1).mean()), "implausible_joints": float(bad[:, 28:].mean()),
            "per_sample": per, "total": total, "limits": limits.meta.get("source", "?")}


def write_audit(result: dict, out_dir: str | os.PathLike, name: str = "predictions", worst: int = 10) -> Path:
    """``audit.md`` (summary, per-term rates, worst samples) and ``audit.csv`` (per sample)."""
    import csv

    from .results import atomic_path, write_text_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    order = np.argsort(-np.nan_to_num(result["total"], nan=-np.inf))[:worst]
    lines = [f"# Plausibility audit: {name}", "",
             f"{result['n']} poses ({result.get('side', 'right')} hands) against limits: {result['limits']}.", "",
             *([f"**{result['side_hint']}**", ""] if result.get("side_hint") else []),
             f"- implausible poses (any term outside): **{100 * result['implausible_poses']:.1f}%**",
             f"- joint-angle terms outside their polygons: **{100 * result['implausible_joints']:.1f}%**",
             f"- non-finite poses (left out of every rate): {result['non_finite']}", "",
             "| term | outside |", "|---|---:|"]
    lines += [f"| {t} | {100 * r:.1f}% |" for t, r in zip(TERM_NAMES, result["term_rate"])]
    lines += ["", f"Worst {len(order)} samples (weighted BMC total):", "", "| sample | BMC total | worst term |",
              "|---:|---:|---|"]
    for i in order:
        k = int(np.argmax(result["per_sample"][i]))
        lines.append(f"| {i} | {result['total'][i]:.4f} | {TERM_NAMES[k]} ({result['per_sample'][i, k]:.3f}) |")
    write_text_atomic(out / "audit.md", "\n".join(lines) + "\n")
    with atomic_path(out / "audit.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sample", "bmc_total", *TERM_NAMES])
        for i, row in enumerate(result["per_sample"]):
            w.writerow([i, f"{result['total'][i]:.6g}"] + [f"{v:.6g}" for v in row])
    return out / "audit.md"


def plot_limits(limits: BMCLimits, joints: np.ndarray | None, path: str | os.PathLike,
                max_points: int = 4000) -> Path:
    """One panel per joint: the (flexion, abduction) points of ``joints (N, 21, 3)`` (if given;
    a seeded sample of ``max_points``) and the limit polygon, in degrees."""
    from .viz.static import envelope_figure, save

    return save(envelope_figure(limits, joints, max_points), path)
