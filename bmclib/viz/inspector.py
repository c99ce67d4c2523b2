"""Interactive inspection in JupyterLab: a pose editor and a prediction browser.

Each tool is split in two: a plain-Python state (:class:`PoseState`, :class:`PredictionSet`)
that the unit tests drive without a browser, and an ipywidgets front end
(:class:`PoseInspector`, :class:`PredictionBrowser`) with plotly ``FigureWidget``s.

Example (no widgets needed):
    >>> import torch
    >>> from bmclib.handmodel import template_pose
    >>> s = PoseState(template_pose(dtype=torch.float64))
    >>> s.set_angle("index", 1, flexion_deg=200.0)      # far beyond any PIP
    >>> r = s.readout(); r["angle"] > 0, bool(s.violating_joints()[6])
    (True, True)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import skeleton as sk
from ..biomech import Decomposition, compose, decompose
from ..limits import BMCLimits
from ..losses import BMCLoss

__all__ = ["PoseState", "PredictionSet", "PoseInspector", "PredictionBrowser", "ANGLE_JOINTS", "joint_violations",
           "write_inspector_page"]

#: the joint at which each of the 15 angles is measured (finger-major, proximal -> distal)
ANGLE_JOINTS = tuple(sk.PARENTS[b + 1] for bones in sk.FINGER_ANGLE_BONES for b in bones)
def joint_violations(limits: BMCLimits, joints) -> np.ndarray:
    """``(..., 21)`` bool from :func:`bmclib.losses.violations` ``(..., 43)``: a joint is flagged when
    the bone ending at it (20 terms) or its angle pair (last 15 terms) is out of limits."""
    from ..losses import violations

    v = violations(torch.as_tensor(np.asarray(joints, dtype=np.float64)), limits).numpy()
    bad = np.zeros(v.shape[:-1] + (21,), dtype=bool)
    bad[..., 1:] |= v[..., :20]
    bad[..., list(ANGLE_JOINTS)] |= v[..., 28:]
    return bad


class PoseState:
    """A hand being edited through its decomposition; every edit recomposes the joints."""

    def __init__(self, joints, limits: BMCLimits | None = None):
        j = torch.as_tensor(np.asarray(joints, dtype=np.float64) if not isinstance(joints, torch.Tensor)
                            else joints.detach().double().cpu())
        if j.shape != (21, 3):
            raise ValueError(f"joints: expected (21, 3), got {tuple(j.shape)}")
        self.limits = limits or BMCLimits.default()
        self._loss = BMCLoss(self.limits, reduction="none", angle_distance="exact")
        self.original = j.clone()
        self.decomposition: Decomposition = decompose(j)
        self.joints = compose(self.decomposition)

    def angles_deg(self) -> np.ndarray:
        """``(5, 3, 2)`` current (flexion, abduction) in degrees."""
        return np.degrees(self.decomposition.angles.numpy())

    def set_angle(self, finger: int | str, joint: int, flexion_deg: float | None = None,
                  abduction_deg: float | None = None) -> None:
        rad = lambda x: None if x is None else float(np.radians(x))  # noqa: E731
        self.decomposition = self.decomposition.with_angle(finger, joint, rad(flexion_deg), rad(abduction_deg))
        self.joints = compose(self.decomposition)

    def set_length(self, bone: int, length: float) -> None:
        """Set bone ``bone`` (0..19; ends at joint ``bone + 1``) to ``length`` (input units)."""
        if not 0 <= bone < sk.NUM_BONES or not length > 0:
            raise ValueError(f"bone must be 0..19 and length > 0, got {bone!r}, {length!r}")
        lengths = self.decomposition.bone_lengths.clone()
        lengths[bone] = length
        self.decomposition = self.decomposition.replace(bone_lengths=lengths)
        self.joints = compose(self.decomposition)

    def reset(self) -> None:
        self.decomposition = decompose(self.original)
        self.joints = compose(self.decomposition)

    def _terms(self):
        return self._loss(self.joints)

    def readout(self) -> dict[str, float]:
        """The three BMC terms (unweighted) and their total."""
        out = self._terms()
        return {"bone_length": float(out.bone_length), "root_bone": float(out.root_bone), "angle": float(out.angle),
                "total": float(out.total)}

    def violating_angles(self) -> np.ndarray:
        """``(15,)`` bool: joints whose (flexion, abduction) lies outside its polygon."""
        from ..losses import VIOLATION_TOL

        return self._terms().per_angle.numpy() > VIOLATION_TOL

    def violating_joints(self) -> np.ndarray:
        """``(21,)`` bool: a joint is flagged when its angle or the bone ending at it is out of limits."""
        return joint_violations(self.limits, self.joints)


@dataclass
class PredictionSet:
    """Predictions of one or more runs on one evaluation set, with the ground truth.

    ``preds``: ``{run: {"xyz": (N, 21, 3), "uv": (N, 21, 2) or None}}``; ``gt_xyz``, ``gt_uv``;
    ``images`` (N, S, S, 3) uint8 or None."""

    preds: dict[str, dict[str, np.ndarray | None]]
    gt_xyz: np.ndarray
    gt_uv: np.ndarray | None = None
    images: Any = None
    limits: BMCLimits = field(default_factory=BMCLimits.default)

    def __post_init__(self) -> None:
        n = len(self.gt_xyz)
        for run, p in self.preds.items():
            if p["xyz"].shape != (n, 21, 3):
                raise ValueError(f"run {run!r}: xyz has shape {p['xyz'].shape}, expected ({n}, 21, 3) like the ground truth")
        self._err = {run: self._errors(p["xyz"]) for run, p in self.preds.items()}
        self._bad: dict[str, np.ndarray] = {}  # per run, (N, 21), computed once in one batch

    @classmethod
    def from_files(cls, runs: dict[str, str | Path], cache: str | Path | None = None, gt_json: str | Path | None = None,
                   limits: BMCLimits | None = None) -> "PredictionSet":
        """Predictions from ``predictions.npz`` (ours) or ``pred.json`` (FreiHAND format) files, and
        the ground truth from a prepared cache (with images) or a FreiHAND ``*_xyz.json``."""
        from ..predictions import load_predictions

        preds = {}
        for run, path in runs.items():
            path = Path(path)
            uv = None
            if path.suffix == ".npz":
                with np.load(path) as z:
                    uv = z["uv"].astype(np.float64) if "uv" in z.files else None
            preds[run] = {"xyz": load_predictions(path).astype(np.float64), "uv": uv}
        images = gt_uv = None
        if cache is not None:
            from ..data.cache import PreparedCache

            c = PreparedCache(cache)
            gt_xyz, gt_uv, images = c.annotations["xyz"].astype(np.float64), c.annotations["uv"].astype(np.float64), c.images
        elif gt_json is not None:
            from ..results import read_json

            gt_xyz = np.asarray(read_json(gt_json), dtype=np.float64)
        else:
            raise ValueError("ground truth needed: pass cache= (a prepared cache) or gt_json= (FreiHAND *_xyz.json)")
        return cls(preds, gt_xyz, gt_uv, images, limits or BMCLimits.default())

    def _errors(self, xyz: np.ndarray) -> np.ndarray:
        p = xyz - xyz[:, :1]
        g = self.gt_xyz - self.gt_xyz[:, :1]
        return np.linalg.norm(p - g, axis=-1) * 1000  # (N, 21) mm

    def __len__(self) -> int:
        return len(self.gt_xyz)

    @property
    def runs(self) -> list[str]:
        return list(self.preds)

    def errors(self, run: str) -> np.ndarray:
        """``(N, 21)`` root-relative 3D error in mm."""
        return self._err[run]

    def worst(self, run: str, k: int = 10) -> np.ndarray:
        """Indices of the ``k`` samples with the largest mean 3D error."""
        return np.argsort(-self._err[run][:, 1:].mean(1))[:k]

    def violations(self, run: str, i: int) -> np.ndarray:
        """``(21,)`` bool: joints of sample ``i`` whose angle or incoming bone is out of limits."""
        if run not in self._bad:
            self._bad[run] = joint_violations(self.limits, self.preds[run]["xyz"])
        return self._bad[run][i]

    def static_figure(self, run: str, i: int):
        """The matplotlib view of one sample (image + 2D, 3D vs ground truth, per-joint error)."""
        from .static import prediction_figure

        img = self.images[i] if self.images is not None else np.zeros((8, 8, 3), np.uint8)
        p = self.preds[run]
        uv = p["uv"][i] if p["uv"] is not None else np.full((21, 2), np.nan)
        gt_uv = self.gt_uv[i] if self.gt_uv is not None else np.full((21, 2), np.nan)
        return prediction_figure(img, uv, gt_uv, p["xyz"][i], self.gt_xyz[i],
                                 f"{run}, sample {i}: {self._err[run][i, 1:].mean():.1f} mm",
                                 self.violations(run, i))


# ----------------------------------------------------------------------------- widgets
def _hand_update(fig, joints, colors=None, start: int = 0) -> None:
    """Move the 5 finger traces of ``fig`` starting at ``start`` to ``joints``."""
    from .plotly3d import plot_axes
    from .static import finger_chains

    j = np.asarray(joints, dtype=np.float64)
    for f, chain in enumerate(finger_chains()):
        x, y, z = plot_axes(j[chain])
        tr = fig.data[start + f]
        tr.x, tr.y, tr.z = x, y, z
        if colors is not None:
            tr.marker.color = [colors[i] for i in chain]


class PoseInspector:
    """Sliders for each joint's flexion / abduction and each bone's length, a rotatable 3D
    hand (violating joints red), the BMC readout, and the edited joint against its envelope.

    ``PoseInspector(joints, limits).widget`` is what a notebook displays."""

    def __init__(self, joints, limits: BMCLimits | None = None):
        import ipywidgets as W
        import plotly.graph_objects as go

        from .plotly3d import hand_traces

        self.state = PoseState(joints, limits)
        self.fig = go.FigureWidget(hand_traces(self.state.joints, name="pose"))
        # one pose: no legend (it was cut to "pose: thu"); margins keep the axis titles inside
        self.fig.update_layout(height=420, margin=dict(l=10, r=10, t=10, b=10), uirevision="keep", showlegend=False,
                               scene=dict(aspectmode="data", xaxis_title="x", yaxis_title="depth", zaxis_title="up"))
        self.envelope = go.FigureWidget()
        self.envelope.add_scatter(x=[], y=[], mode="lines", name="envelope", line=dict(color="#e6550d"))
        self.envelope.add_scatter(x=[], y=[], mode="markers", name="joint", marker=dict(size=12, color="#3182bd"))
        self.envelope.update_layout(height=300, width=360, margin=dict(l=40, r=10, t=30, b=40),
                                    xaxis_title="flexion (deg)", yaxis_title="abduction (deg)")
        self.finger = W.Dropdown(options=list(sk.FINGER_NAMES), value="index", description="finger")
        self.joint = W.Dropdown(options=[("proximal", 0), ("middle", 1), ("distal", 2)], value=1, description="joint")
        self.flexion = W.FloatSlider(min=-90, max=180, step=1, description="flexion°", continuous_update=True)
        self.abduction = W.FloatSlider(min=-90, max=90, step=1, description="abduction°", continuous_update=True)
        self.bone = W.Dropdown(options=[(f"{sk.JOINT_NAMES[p]}->{sk.JOINT_NAMES[c]}", b)
                                        for b, (p, c) in enumerate(sk.BONES)], value=6, description="bone")
        self.length = W.FloatSlider(min=0.2, max=3.0, step=0.01, value=1.0, description="length x",
                                    continuous_update=True)
        self.readout = W.HTML()
        self.reset_button = W.Button(description="reset pose")
        self._syncing = False
        self.finger.observe(self._select, "value")
        self.joint.observe(self._select, "value")
        self.flexion.observe(self._angle, "value")
        self.abduction.observe(self._angle, "value")
        self.bone.observe(self._select_bone, "value")
        self.length.observe(self._length, "value")
        self.reset_button.on_click(lambda _: self._reset())
        controls = W.VBox([W.HTML("<b>joint angles</b>"), self.finger, self.joint, self.flexion, self.abduction,
                           W.HTML("<b>bone length</b> (x its original)"), self.bone, self.length, self.reset_button,
                           self.readout])
        self.widget = W.HBox([controls, W.VBox([self.fig, self.envelope])])
        self.widget.add_class("bmc-pose-inspector")
        self._bone_lengths0 = self.state.decomposition.bone_lengths.clone()
        self._select()
        self._refresh()

    def _index(self) -> tuple[int, int]:
        return sk.FINGER_NAMES.index(self.finger.value), int(self.joint.value)

    def _select(self, *_):
        f, k = self._index()
        flex, abd = self.state.angles_deg()[f, k]
        self._syncing = True
        self.flexion.value, self.abduction.value = float(np.clip(flex, -90, 180)), float(np.clip(abd, -90, 90))
        self._syncing = False
        self._draw_envelope()

    def _select_bone(self, *_):
        b = int(self.bone.value)
        self._syncing = True
        self.length.value = float(self.state.decomposition.bone_lengths[b] / self._bone_lengths0[b])
        self._syncing = False

    def _angle(self, *_):
        if self._syncing:
            return
        f, k = self._index()
        self.state.set_angle(f, k, self.flexion.value, self.abduction.value)
        self._refresh()

    def _length(self, *_):
        if self._syncing:
            return
        b = int(self.bone.value)
        self.state.set_length(b, float(self._bone_lengths0[b]) * self.length.value)
        self._refresh()

    def _reset(self):
        self.state.reset()
        self._select()
        self._select_bone()
        self._refresh()

    def _draw_envelope(self):
        f, k = self._index()
        i = 3 * f + k
        poly = np.degrees(np.vstack([self.state.limits.angle_polygons[i], self.state.limits.angle_polygons[i][:1]]))
        flex, abd = self.state.angles_deg()[f, k]
        bad = bool(self.state.violating_angles()[i])
        with self.envelope.batch_update():
            self.envelope.data[0].x, self.envelope.data[0].y = poly[:, 0], poly[:, 1]
            self.envelope.data[1].x, self.envelope.data[1].y = [flex], [abd]
            self.envelope.data[1].marker.color = "#de2d26" if bad else "#3182bd"
            self.envelope.layout.title = f"{sk.ANGLE_JOINT_NAMES[i]}: {'outside' if bad else 'inside'} its envelope"

    def _refresh(self):
        bad = self.state.violating_joints()
        colors = ["#de2d26" if b else "#444444" for b in bad]
        with self.fig.batch_update():
            _hand_update(self.fig, self.state.joints.numpy(), colors)
        r = self.state.readout()
        self.readout.value = (
            "<div class='bmc-readout'><b>BMC</b> (unweighted)<br>"
            f"bone length: <span class='bmc-bl'>{r['bone_length']:.5f}</span><br>"
            f"root bones: <span class='bmc-rb'>{r['root_bone']:.5f}</span><br>"
            f"angles: <span class='bmc-a'>{r['angle']:.5f}</span><br>"
            f"violating joints: {int(bad.sum())}</div>")
        self._draw_envelope()

    def picture(self):
        """The widget with a static picture of its current state (shown where widgets cannot run)."""
        from .static import WithPicture, pose_views

        r = self.state.readout()
        n_bad = int(self.state.violating_joints().sum())
        title = (f"pose inspector: BMC bone length {r['bone_length']:.4f}, root bones {r['root_bone']:.4f}, "
                 f"angles {r['angle']:.4f} (unweighted); {n_bad} joint{'' if n_bad == 1 else 's'} out of limits")
        return WithPicture(self.widget, pose_views({"pose": self.state.joints}, title=title),
                           note="PoseInspector: interactive in JupyterLab (a picture of its first state elsewhere)")


def write_inspector_page(joints, path: str | Path, limits: BMCLimits | None = None, title: str = "",
                         include_plotlyjs: str | bool = "directory", back: tuple[str, str] | None = None) -> Path:
    """The pose inspector's view of one pose as a standalone HTML page (no kernel, no server): the
    rotatable 3D hand with the joints outside their limits in red, the BMC readout, and each joint's
    (flexion, abduction) against its envelope; a menu picks the joint, and the page opens on the
    one furthest outside. ``include_plotlyjs="directory"`` writes ``plotly.min.js`` once beside the
    page, so a folder of pages works offline. ``back``: ``(href, text)`` of a link above the figure
    (the audit report links each sample page back to itself). Needs the ``notebooks`` extra (plotly)."""
    from plotly.subplots import make_subplots

    from ..results import atomic_path
    from .plotly3d import hand_traces

    state = PoseState(joints, limits)
    bad = state.violating_joints()
    fig = make_subplots(rows=1, cols=2, column_widths=[0.58, 0.42], horizontal_spacing=0.08,
                        specs=[[{"type": "scene"}, {"type": "xy"}]])
    for tr in hand_traces(state.joints, name="pose", joint_colors=["#de2d26" if b else "#444444" for b in bad]):
        tr.showlegend = False
        fig.add_trace(tr, row=1, col=1)
    n_hand = len(fig.data)
    excess = np.degrees(state._terms().per_angle.numpy().reshape(15))  # exact distance outside (rad -> deg)
    angles = state.angles_deg().reshape(15, 2)
    first = int(np.argmax(excess))
    for i in range(15):
        poly = np.degrees(np.vstack([state.limits.angle_polygons[i], state.limits.angle_polygons[i][:1]]))
        outside = excess[i] > 0
        fig.add_scatter(x=poly[:, 0], y=poly[:, 1], mode="lines", line=dict(color="#e6550d"), visible=i == first,
                        name="envelope", showlegend=False, row=1, col=2)
        fig.add_scatter(x=angles[i, :1], y=angles[i, 1:], mode="markers", visible=i == first, showlegend=False,
                        marker=dict(size=12, color="#de2d26" if outside else "#3182bd"), name=sk.ANGLE_JOINT_NAMES[i],
                        hovertemplate="flexion %{x:.1f} deg<br>abduction %{y:.1f} deg<extra></extra>", row=1, col=2)

    def label(i: int) -> str:
        return f"{sk.ANGLE_JOINT_NAMES[i]}: " + (f"{excess[i]:.1f} deg outside" if excess[i] > 0 else "inside")

    buttons = [dict(label=label(i), method="update",
                    args=[{"visible": [True] * n_hand + [k // 2 == i for k in range(30)]},
                          {"xaxis.title.text": f"{sk.ANGLE_JOINT_NAMES[i]} flexion (deg)"}])
               for i in np.argsort(-excess)]
    r = state.readout()
    readout = (f"BMC (unweighted): bone length {r['bone_length']:.4f}, root bones {r['root_bone']:.4f}, "
               f"angles {r['angle']:.4f}; {int(bad.sum())} joint{'' if bad.sum() == 1 else 's'} out of limits (red)")
    fig.update_layout(
        title=dict(text=f"{title}<br><sup>{readout}</sup>" if title else readout), height=560,
        margin=dict(l=10, r=10, t=90, b=40),
        scene=dict(aspectmode="data", xaxis_title="x", yaxis_title="depth", zaxis_title="up"),
        xaxis=dict(title=f"{sk.ANGLE_JOINT_NAMES[first]} flexion (deg)"), yaxis=dict(title="abduction (deg)"),
        updatemenus=[dict(buttons=buttons, active=0, x=1.0, xanchor="right", y=1.12, yanchor="top")])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        # plotly names the script after the page's folder, not the temporary file
        fig.write_html(tmp, include_plotlyjs=include_plotlyjs, full_html=True, default_width="100%",
                       default_height="600px")
        if back is not None:
            import html

            text = Path(tmp).read_text()
            link = (f'<p style="font-family:sans-serif;margin:.5em 1em"><a href="{html.escape(back[0])}">&larr; '
                    f'{html.escape(back[1])}</a></p>')
            Path(tmp).write_text(text.replace("<body>", "<body>" + link, 1))
    return path


class PredictionBrowser:
    """Pick a sample (or the worst ones of a run): image with 2D overlay, predicted vs ground-truth
    3D for two runs side by side, per-joint error bars of both runs, BMC violations."""

    def __init__(self, data: PredictionSet, run_a: str | None = None, run_b: str | None = None):
        import ipywidgets as W
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        from .plotly3d import hand_traces

        self.data = data
        runs = data.runs
        self.run_a = run_a or runs[0]
        self.run_b = run_b or runs[-1]
        self.order = W.Dropdown(options=[("index", "index"), (f"worst of {self.run_a}", "worst_a"),
                                         (f"worst of {self.run_b}", "worst_b")], value="index", description="order")
        self.slider = W.IntSlider(min=0, max=len(data) - 1, value=0, description="sample")
        fig = make_subplots(rows=1, cols=2, specs=[[{"type": "scene"}, {"type": "scene"}]],
                            subplot_titles=(self.run_a, self.run_b))
        zero = np.zeros((21, 3))
        for col, name in ((1, self.run_a), (2, self.run_b)):
            for tr in hand_traces(zero, name="ground truth", color="black", width=3, opacity=0.7):
                tr.showlegend = col == 1
                fig.add_trace(tr, row=1, col=col)
            for tr in hand_traces(zero, name=name):
                fig.add_trace(tr, row=1, col=col)
        fig.update_layout(height=400, margin=dict(l=0, r=0, t=30, b=0), uirevision="keep")
        fig.update_scenes(aspectmode="data")
        self.fig = go.FigureWidget(fig)
        self.errors = go.FigureWidget()
        for name, color in ((self.run_a, "#3182bd"), (self.run_b, "#e6550d")):
            self.errors.add_bar(x=list(sk.JOINT_NAMES), y=[0.0] * 21, name=name, marker_color=color)
        self.errors.update_layout(height=220, margin=dict(l=40, r=10, t=10, b=80), yaxis_title="3D error (mm)",
                                  barmode="group", xaxis_tickangle=-60, xaxis_tickfont_size=8)
        self.image = W.Image(format="png", width=220)
        self.info = W.HTML()
        self.order.observe(lambda _: self.show(self.slider.value), "value")
        self.slider.observe(lambda ch: self.show(ch["new"]), "value")
        self.widget = W.VBox([W.HBox([self.order, self.slider]), W.HBox([self.image, self.info]), self.fig,
                              self.errors])
        self.widget.add_class("bmc-prediction-browser")
        self.show(0)

    def sample_index(self, position: int) -> int:
        if self.order.value == "index":
            return int(position)
        run = self.run_a if self.order.value == "worst_a" else self.run_b
        return int(self.data.worst(run, len(self.data))[position])

    def show(self, position: int) -> None:
        import io

        import matplotlib.pyplot as plt

        from .static import draw_hand_2d

        i = self.sample_index(position)
        d = self.data
        if d.images is not None:
            fig, ax = plt.subplots(figsize=(2.4, 2.4))
            ax.imshow(np.asarray(d.images[i]))
            if d.gt_uv is not None:
                draw_hand_2d(ax, d.gt_uv[i], color="white", lw=1)
            for run, color in ((self.run_a, "#3182bd"), (self.run_b, "#e6550d")):  # both runs' 2D
                if d.preds[run]["uv"] is not None:
                    draw_hand_2d(ax, d.preds[run]["uv"][i], color=color, label=run)
            ax.legend(fontsize=6, loc="lower left", framealpha=0.6)
            ax.set_axis_off()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
            plt.close(fig)
            self.image.value = buf.getvalue()
        g = d.gt_xyz[i] - d.gt_xyz[i, :1]
        rows = []
        with self.fig.batch_update():
            for k, run in enumerate((self.run_a, self.run_b)):
                p = d.preds[run]["xyz"][i]
                bad = d.violations(run, i)
                _hand_update(self.fig, g, start=10 * k)
                _hand_update(self.fig, p - p[:1], ["#de2d26" if b else "#444444" for b in bad], start=10 * k + 5)
                e = d.errors(run)[i]
                self.errors.data[k].y = e.tolist()
                rows.append(f"<tr><td>{run}</td><td>{e[1:].mean():.1f}</td><td>{e.max():.1f} "
                            f"({sk.JOINT_NAMES[int(e.argmax())]})</td><td>{int(bad.sum())}</td></tr>")
        self.info.value = (f"<b>sample {i}</b><table><tr><th>run</th><th>mean 3D error (mm)</th>"
                           f"<th>worst joint (mm)</th><th>joints out of limits</th></tr>{''.join(rows)}</table>")
        self.current = i

    def picture(self):
        """The widget with a static picture of the sample it shows (where widgets cannot run)."""
        from .static import WithPicture, compare_runs_figure

        d, i = self.data, self.current
        images = d.images[[i]] if d.images is not None else np.zeros((1, 8, 8, 3), np.uint8)
        fig = compare_runs_figure(images, d.gt_xyz[[i]], {r: d.preds[r]["xyz"][[i]] for r in (self.run_a, self.run_b)})
        return WithPicture(self.widget, fig,
                           note="PredictionBrowser: interactive in JupyterLab (a picture of its first sample elsewhere)")
