"""Plotly 3D hands (rotatable in JupyterLab; needs the ``notebooks`` extra).

Example:
    >>> import torch
    >>> from bmclib.handmodel import template_pose
    >>> fig = hand_figure(template_pose(dtype=torch.float64), frames=True)
    >>> len(fig.data)  # 5 fingers + palm normals + 3 frame axes
    9
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .. import skeleton as sk
from . import FINGER_COLORS
from .static import finger_chains, to_numpy

__all__ = ["hand_traces", "frame_traces", "hand_figure"]


def plot_axes(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera frame -> plot axes: x, depth, up (-y)."""
    return p[..., 0], p[..., 2], -p[..., 1]


def hand_traces(joints, name: str = "hand", color: str | None = None, joint_colors: Sequence[str] | None = None,
                width: float = 6.0, opacity: float = 1.0) -> list:
    """One ``Scatter3d`` per finger (wrist -> tip); ``joint_colors`` (21) colours the markers
    (e.g. red for joints that violate a limit)."""
    import plotly.graph_objects as go

    j = to_numpy(joints)
    out = []
    for f, chain in enumerate(finger_chains()):
        x, y, z = plot_axes(j[chain])
        mc = [joint_colors[i] for i in chain] if joint_colors is not None else (color or FINGER_COLORS[f])
        out.append(go.Scatter3d(x=x, y=y, z=z, mode="lines+markers", name=f"{name}: {sk.FINGER_NAMES[f]}",
                                legendgroup=name, showlegend=f == 0, opacity=opacity,
                                line=dict(color=color or FINGER_COLORS[f], width=width),
                                marker=dict(size=3.5, color=mc),
                                hovertext=[sk.JOINT_NAMES[i] for i in chain], hoverinfo="text"))
    return out


def _segments(starts: np.ndarray, vectors: np.ndarray) -> tuple[list, list, list]:
    """Line segments as one trace with None separators (plot axes)."""
    xs, ys, zs = [], [], []
    for a, v in zip(starts, vectors):
        b = a + v
        (ax, ay, az), (bx, by, bz) = plot_axes(a), plot_axes(b)
        xs += [ax, bx, None]
        ys += [ay, by, None]
        zs += [az, bz, None]
    return xs, ys, zs


def frame_traces(joints, length: float = 0.25) -> list:
    """The palm normals (black) and the local frame each angle is measured in (x red, y green,
    z blue), arrows ``length`` x the pose's root-bone scale long."""
    import plotly.graph_objects as go

    from ..biomech import decompose

    j = torch.as_tensor(to_numpy(joints))
    d = decompose(j)
    jn, s = j.numpy(), length * float(d.scale)
    roots = list(sk.ROOT_BONE_JOINTS)
    centres = np.stack([(jn[0] + jn[roots[f]] + jn[roots[f + 1]]) / 3 for f in range(4)])
    x, y, z = _segments(centres, d.palm_normals.numpy() * s)
    out = [go.Scatter3d(x=x, y=y, z=z, mode="lines", name="palm normals", line=dict(color="black", width=4))]
    origins = np.stack([jn[chain[k]] for chain in sk.FINGER_JOINTS for k in range(3)])  # (15, 3)
    frames = d.frames.numpy().reshape(15, 3, 3)
    for axis, (col, label) in enumerate(zip(("#d62728", "#2ca02c", "#1f77b4"), ("frame x", "frame y", "frame z"))):
        x, y, z = _segments(origins, frames[:, axis] * s * 0.6)
        out.append(go.Scatter3d(x=x, y=y, z=z, mode="lines", name=label, line=dict(color=col, width=3)))
    return out


def hand_figure(joints, frames: bool = False, others: dict | None = None, title: str = "", height: int = 450):
    """A rotatable figure of one hand (optionally its frames), plus ``others`` ``{name: joints}``
    drawn thinner (e.g. ground truth)."""
    import plotly.graph_objects as go

    data = hand_traces(joints)
    if frames:
        data += frame_traces(joints)
    for i, (name, other) in enumerate((others or {}).items()):
        data += hand_traces(other, name=name, color=["black", "gray", "#8c6d31"][i % 3], width=3, opacity=0.7)
    fig = go.Figure(data=data)
    fig.update_layout(title=title, height=height, margin=dict(l=0, r=0, t=30 if title else 0, b=0),
                      scene=dict(aspectmode="data", xaxis_title="x", yaxis_title="depth", zaxis_title="up"),
                      legend=dict(font=dict(size=9)))
    return fig
