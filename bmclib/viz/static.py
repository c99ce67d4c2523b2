"""Static matplotlib figures (the fallbacks for every interactive view).

Every function returns a :class:`matplotlib.figure.Figure` (or draws into a given axis)
and never calls ``plt.show``; :func:`save` writes one atomically.

Example:
    >>> import torch
    >>> from bmclib.handmodel import template_pose
    >>> fig = decomposition_figure(template_pose(dtype=torch.float64))
    >>> len(fig.axes)
    2
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .. import skeleton as sk
from . import FINGER_COLORS

__all__ = ["to_numpy", "finger_chains", "draw_hand_3d", "draw_hand_2d", "decomposition_figure", "envelope_figure", "loss_curves",
           "pose_views", "prediction_figure", "compare_runs_figure", "true_depth_figure", "save", "WithPicture"]


def pyplot():
    # matplotlib picks Agg itself where there is no display, and the inline backend in a kernel
    import matplotlib.pyplot as plt

    return plt


def to_numpy(x) -> np.ndarray:
    """A tensor or array-like as a float64 numpy array (detached, on the CPU)."""
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def finger_chains() -> list[list[int]]:
    """Five joint chains from the wrist to each fingertip, for drawing a hand as lines."""
    return [[0, *joints] for joints in sk.FINGER_JOINTS]


def draw_hand_3d(ax, joints, color: str | None = None, label: str | None = None, alpha: float = 1.0, lw: float = 2.0):
    """Draw a hand ``(21, 3)`` in metres into a 3D axis, one colour per finger (or one ``color``).
    Camera frame shown with y up (the camera's -y) and depth going away."""
    j = to_numpy(joints)
    for f, chain in enumerate(finger_chains()):
        p = j[chain]
        ax.plot(p[:, 0], p[:, 2], -p[:, 1], color=color or FINGER_COLORS[f], alpha=alpha, lw=lw,
                label=label if f == 0 else None, marker="o", ms=2.5)
    ax.set_xlabel("x (m)", fontsize=8, labelpad=2)
    ax.set_ylabel("depth z (m)", fontsize=8, labelpad=2)
    ax.set_zlabel("up, -y (m)", fontsize=8, labelpad=2)
    ax.tick_params(labelsize=6, pad=0)
    _equal_3d(ax, j)
    return ax


def _equal_3d(ax, j: np.ndarray) -> None:
    pts = j[:, [0, 2, 1]] * np.array([1, 1, -1])
    mid, r = pts.mean(0), (pts.max(0) - pts.min(0)).max() / 2 * 1.1 + 1e-9
    ax.set_xlim(mid[0] - r, mid[0] + r)
    ax.set_ylim(mid[1] - r, mid[1] + r)
    ax.set_zlim(mid[2] - r, mid[2] + r)


def draw_hand_2d(ax, uv, color: str | None = None, label: str | None = None, alpha: float = 1.0, lw: float = 1.5):
    """Draw 2D keypoints ``(21, 2)`` (pixels) over an image axis."""
    p2 = to_numpy(uv)
    for f, chain in enumerate(finger_chains()):
        p = p2[chain]
        ax.plot(p[:, 0], p[:, 1], color=color or FINGER_COLORS[f], alpha=alpha, lw=lw, marker="o", ms=2,
                label=label if f == 0 else None)
    return ax


def decomposition_figure(joints, frames: bool = True, normals: bool = True):
    """Left: the skeleton with palm normals and the local frames each angle is measured in
    (x red, y green, z blue). Right: the 15 (flexion, abduction) pairs in degrees."""
    from ..biomech import decompose

    plt = pyplot()
    j = torch.as_tensor(to_numpy(joints))
    d = decompose(j)
    fig = plt.figure(figsize=(10, 4.5))
    ax = fig.add_subplot(1, 2, 1, projection="3d")
    draw_hand_3d(ax, j)
    jn = j.numpy()
    s = 0.25 * float(d.scale)
    if normals:
        roots = list(sk.ROOT_BONE_JOINTS)
        for f in range(4):
            c = (jn[0] + jn[roots[f]] + jn[roots[f + 1]]) / 3
            n = d.palm_normals[f].numpy() * s
            ax.quiver(c[0], c[2], -c[1], n[0], n[2], -n[1], color="black", lw=1)
    if frames:
        for f, chain in enumerate(sk.FINGER_JOINTS):
            for k in range(3):
                origin = jn[chain[k]]
                for axis, col in zip(range(3), ("#d62728", "#2ca02c", "#1f77b4")):
                    v = d.frames[f, k, axis].numpy() * s * 0.6
                    ax.quiver(origin[0], origin[2], -origin[1], v[0], v[2], -v[1], color=col, lw=0.8)
    ax.set_title("bones, palm normals (black), local frames", fontsize=9)
    ax2 = fig.add_subplot(1, 2, 2)
    ang = np.degrees(d.angles.numpy())  # (5, 3, 2)
    for f in range(5):
        ax2.plot(ang[f, :, 0], ang[f, :, 1], "o-", color=FINGER_COLORS[f], label=sk.FINGER_NAMES[f])
    ax2.set_xlabel("flexion (deg)")
    ax2.set_ylabel("abduction (deg)")
    ax2.legend(fontsize=7)
    ax2.set_title("per-joint angles, proximal -> distal", fontsize=9)
    fig.tight_layout()
    return fig


def envelope_figure(limits, joints=None, max_points: int = 4000, highlight=None, joint_ids: Sequence[int] | None = None,
                    other=None, labels: tuple[str, str] = ("hull", "box")):
    """One panel per angle joint: (flexion, abduction) points of ``joints (N, 21, 3)`` (a
    seeded sample of ``max_points``), the limit polygon, optionally a second set of limits
    ``other`` (dashed; ``labels`` name the two in a legend) and one ``highlight`` pose (red cross)."""
    from ..biomech import decompose, normalize_scale

    plt = pyplot()
    ids = list(range(15)) if joint_ids is None else list(joint_ids)

    def angles_deg(x):
        x = to_numpy(x)
        norm, _ = normalize_scale(torch.from_numpy(x))
        return np.degrees(decompose(norm).angles.reshape(-1, 15, 2).numpy())

    pts = None
    if joints is not None:
        x = to_numpy(joints)
        if len(x) > max_points:
            x = x[np.random.default_rng(0).choice(len(x), max_points, replace=False)]
        pts = angles_deg(x)
    hl = angles_deg(to_numpy(highlight)[None]) if highlight is not None else None
    cols = 3 if len(ids) > 3 else len(ids)
    rows = -(-len(ids) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.7 * cols, 2.4 * rows), squeeze=False)
    for ax, j in zip(axes.flat, ids):
        if pts is not None:
            ax.scatter(pts[:, j, 0], pts[:, j, 1], s=1, alpha=0.3, color="#3182bd", rasterized=True)
        poly = limits.angle_polygons[j]
        p = np.degrees(np.vstack([poly, poly[:1]]))
        ax.plot(p[:, 0], p[:, 1], color="#e6550d", lw=1.2, label=labels[0])
        if other is not None:
            q = np.degrees(np.vstack([other.angle_polygons[j], other.angle_polygons[j][:1]]))
            ax.plot(q[:, 0], q[:, 1], color="#31a354", lw=1.0, ls="--", label=labels[1])
        if hl is not None:
            ax.scatter(hl[:, j, 0], hl[:, j, 1], marker="x", color="red", s=40, zorder=4)
        ax.set_title(sk.ANGLE_JOINT_NAMES[j], fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes.flat[len(ids):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("flexion (deg)", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("abduction (deg)", fontsize=7)
    if other is not None:
        axes.flat[0].legend(fontsize=6, loc="best")
    fig.tight_layout()
    return fig


def loss_curves(logs: dict[str, list[dict[str, float]]], keys: Sequence[str] = ("total",), logy: bool = True):
    """One panel per key, one line per run, from training logs (rows with ``step``)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, rows in logs.items():
            xs = [r["step"] for r in rows if key in r]
            if xs:
                ax.plot(xs, [r[key] for r in rows if key in r], label=name, lw=1.2)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step")
        if logy:
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def pose_views(poses: dict[str, Any], elev: float = 15.0, azims: Sequence[float] = (-60.0, 30.0), title: str = "",
               highlight: Sequence[int] = ()):
    """Several 3D poses (root-relative, same units) in one set of views. The first pose (the
    reference: ground truth, or the pose before an edit) is a wide light-grey band, the others
    thin coloured lines over it, so where they agree both stay visible. One pose alone keeps
    its finger colours. ``highlight``: joint indices drawn as large red dots on the last pose
    (e.g. the joints outside the limits)."""
    plt = pyplot()
    colors = ["#e6550d", "#3182bd", "#31a354", "#756bb1"]
    fig = plt.figure(figsize=(4 * len(azims), 4))
    allj = np.concatenate([to_numpy(p) - to_numpy(p)[:1] for p in poses.values()])
    for i, az in enumerate(azims):
        ax = fig.add_subplot(1, len(azims), i + 1, projection="3d")
        for k, (name, p) in enumerate(poses.items()):
            style = dict(color=None, lw=1.8) if len(poses) == 1 else \
                dict(color="#9e9e9e", lw=5.0, alpha=0.45) if k == 0 else dict(color=colors[(k - 1) % 4], lw=1.5)
            draw_hand_3d(ax, to_numpy(p) - to_numpy(p)[:1], label=name, **style)
        if len(highlight):
            last = to_numpy(list(poses.values())[-1])
            h = (last - last[:1])[list(highlight)]
            ax.scatter(h[:, 0], h[:, 2], -h[:, 1], s=40, color="#de2d26", depthshade=False, zorder=5,
                       label="outside the limits")
        _equal_3d(ax, allj)
        ax.view_init(elev=elev, azim=az)
        if i == 0 and len(poses) > 1:
            ax.legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def prediction_figure(image, uv_pred, uv_gt, xyz_pred, xyz_gt, title: str = "", violations=None):
    """One sample: image with predicted (colours) and ground-truth (white) 2D, the two 3D poses
    (root-relative), and the per-joint 3D error (red bars: joints whose angle violates the limits)."""
    plt = pyplot()
    fig = plt.figure(figsize=(11, 3.4))
    ax = fig.add_subplot(1, 3, 1)
    ax.imshow(np.asarray(image))
    draw_hand_2d(ax, uv_gt, color="white", alpha=0.8, lw=1)
    draw_hand_2d(ax, uv_pred)
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    ax3 = fig.add_subplot(1, 3, 2, projection="3d")
    p, g = to_numpy(xyz_pred), to_numpy(xyz_gt)
    draw_hand_3d(ax3, g - g[:1], color="black", label="ground truth", lw=1.2)
    draw_hand_3d(ax3, p - p[:1], label="prediction", lw=1.5)
    _equal_3d(ax3, np.concatenate([g - g[:1], p - p[:1]]))
    ax3.legend(fontsize=6)
    axe = fig.add_subplot(1, 3, 3)
    err = np.linalg.norm((p - p[:1]) - (g - g[:1]), axis=-1) * 1000
    colors = ["#9ecae1"] * 21
    if violations is not None:
        for j in np.flatnonzero(np.asarray(violations)):
            colors[int(j)] = "#de2d26"
    axe.bar(range(21), err, color=colors)
    axe.set_xticks(range(21), sk.JOINT_NAMES, rotation=90, fontsize=6)
    axe.set_ylabel("3D error, root-relative (mm)")
    if violations is not None and np.asarray(violations).any():
        from matplotlib.patches import Patch

        axe.legend(handles=[Patch(color="#de2d26", label="angle or bone out of limits"),
                            Patch(color="#9ecae1", label="within limits")], fontsize=6)
    fig.tight_layout()
    return fig


def compare_runs_figure(images, gt_xyz, preds: dict[str, Any], elev: float = 15.0, azim: float = -60.0):
    """The same samples predicted by several runs: one row per sample, the image, then one 3D
    view per run with the ground truth (black) under each prediction."""
    plt = pyplot()
    n, runs = len(images), list(preds)
    fig = plt.figure(figsize=(2.6 * (1 + len(runs)), 2.6 * n))
    for i in range(n):
        ax = fig.add_subplot(n, 1 + len(runs), i * (1 + len(runs)) + 1)
        ax.imshow(np.asarray(images[i]))
        ax.set_axis_off()
        g = to_numpy(gt_xyz[i])
        g = g - g[:1]
        for k, run in enumerate(runs):
            p = to_numpy(preds[run][i])
            p = p - p[:1]
            ax3 = fig.add_subplot(n, 1 + len(runs), i * (1 + len(runs)) + 2 + k, projection="3d")
            draw_hand_3d(ax3, g, color="black", lw=1.0, alpha=0.7)
            draw_hand_3d(ax3, p, lw=1.5)
            _equal_3d(ax3, np.concatenate([g, p]))
            ax3.view_init(elev=elev, azim=azim)
            ax3.set_xticklabels([])
            ax3.set_yticklabels([])
            ax3.set_zticklabels([])
            err = np.linalg.norm(p - g, axis=-1)[1:].mean() * 1000
            ax3.set_title(f"{run}\n3D error {err:.0f} mm" if i == 0 else f"{err:.0f} mm", fontsize=8)
    fig.tight_layout()
    return fig


def true_depth_figure(curve, runs, title: str = ""):
    """BMC against 2D error: ``curve`` (rows with ``epe_2d_px``, ``bmc_total``: the true depths
    through noisy 2D) as a line; ``runs`` (rows with ``run``, ``epe_2d_px``, ``bmc_true_depth``,
    ``bmc_pred``) as pairs of markers — the true depths on the run's 2D (o) and the run's
    own prediction (x), joined by a dotted line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 4.2))
    c = curve[curve["epe_2d_px"] > 0]
    ax.plot(c["epe_2d_px"], c["bmc_total"], "-", color="0.3", lw=2, label="true depth, 2D + Gaussian noise")
    ax.plot([], [], "o", color="0.5", label="o: true depth on the run's 2D")
    ax.plot([], [], "x", color="0.5", mew=2, label="x: the run's prediction")
    colors = plt.get_cmap("tab10")
    for i, (_, r) in enumerate(runs.iterrows()):
        col = colors(i % 10)
        ax.plot([r["epe_2d_px"]] * 2, [r["bmc_true_depth"], r["bmc_pred"]], ":", color=col, lw=1)
        ax.plot(r["epe_2d_px"], r["bmc_true_depth"], "o", color=col, label=r["run"])
        ax.plot(r["epe_2d_px"], r["bmc_pred"], "x", color=col, ms=8, mew=2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("mean 2D error (px)")
    ax.set_ylabel("mean BMC (all terms, lambdas 1)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def save(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write a figure atomically (a temporary file, then a rename) and close it."""
    plt = pyplot()
    from ..results import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    return path


class WithPicture:
    """An interactive object (a plotly figure, an ipywidget) that also carries a PNG of its
    matplotlib twin. A live JupyterLab shows the interactive view; viewers that render neither
    plotly.js nor widgets (GitHub, nbviewer, an executed notebook opened offline, nbconvert)
    show the picture. The bundle has no ``text/html``, which those viewers would pick (and show
    blank) before the PNG."""

    def __init__(self, obj, figure, note: str = "", dpi: int = 100):
        import base64
        import io

        buf = io.BytesIO()
        figure.savefig(buf, format="png", dpi=dpi)
        pyplot().close(figure)
        self.obj, self.png, self.note = obj, base64.b64encode(buf.getvalue()).decode("ascii"), note

    def _repr_mimebundle_(self, include=None, exclude=None):
        if hasattr(self.obj, "to_plotly_json"):  # a plotly figure: its own MIME type, no HTML
            import json

            import plotly.io as pio

            bundle = {"application/vnd.plotly.v1+json": json.loads(pio.to_json(self.obj, validate=False))}
        else:
            bundle = dict(self.obj._repr_mimebundle_(include=include, exclude=exclude))
            bundle.pop("text/html", None)
        bundle["image/png"] = self.png
        bundle["text/plain"] = self.note or f"<{type(self.obj).__name__}: interactive in JupyterLab; a picture elsewhere>"
        return bundle
