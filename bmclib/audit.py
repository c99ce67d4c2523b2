"""Plausibility audit of 3D hand predictions, and figures of fitted limits.

``bmc audit pred.json [--limits L]`` reads FreiHAND-format predictions (``[xyz, verts]``),
this project's ``predictions.npz`` or a ``.npy``, and reports, against BMC limits, how far
each of the 43 terms of each pose lies outside them **in real units**: degrees for the joint
angles and the palm's angular distances, % of the bone's length for bone lengths, % of the
interval's width for palm curvatures. The headline counts what is outside by more than a
tolerance (:data:`DEFAULT_TOLERANCE`: 5 degrees, 10%), where a model's error is something a
person would see; the strict rates (any excess at all) follow. Written: ``audit.md``
(summary, per-term rates, worst samples), ``audit.csv`` (one row per sample, excesses in real
units) and ``audit.html`` (the worst samples drawn, each linked to its page in
``audit_samples/``: the pose inspector's view of it, interactive, offline).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .limits import BMCLimits
from .losses import TERM_NAMES, VIOLATION_TOL

__all__ = ["TERM_NAMES", "TERM_UNITS", "DEFAULT_TOLERANCE", "term_excess", "degenerate_intervals", "audit_sides",
           "audit", "write_audit", "plot_limits"]

#: the unit of each term's excess (:func:`term_excess`), in :data:`TERM_NAMES` order
TERM_UNITS: tuple[str, ...] = ("% length",) * 20 + ("% range",) * 4 + ("deg",) * 19

#: how far outside a term must be to count in the audit's headline, per unit
DEFAULT_TOLERANCE: dict[str, float] = {"deg": 5.0, "% length": 10.0, "% range": 10.0}


def term_excess(per_term: np.ndarray, limits: BMCLimits) -> np.ndarray:
    """The exact BMC terms ``(N, 43)`` (distances outside the limits in the loss's units) in real
    units: bone lengths in % of the interval's midpoint (the bone's typical length), palm
    curvatures in % of the interval's width, angular distances and joint angles in degrees."""
    per = np.asarray(per_term, dtype=np.float64)
    mid = limits.bone_length.mean(1)
    width = np.maximum(limits.root_curvature[:, 1] - limits.root_curvature[:, 0], 1e-9)
    return np.concatenate([100 * per[:, :20] / mid, 100 * per[:, 20:24] / width, np.degrees(per[:, 24:])], 1)


def degenerate_intervals(limits: BMCLimits, rel: float = 1e-6) -> list[str]:
    """Terms whose interval has (next to) zero width: every pose that is not exactly on it reads
    implausible there (a palm curvature fitted on planar palms has the interval [0, 0])."""
    out = []
    for name, iv, scale in (("length", limits.bone_length, 1.0), ("root angle", limits.root_angle, 1.0),
                            ("curvature", limits.root_curvature, 1.0)):
        w = iv[:, 1] - iv[:, 0]
        ref = np.maximum(np.abs(iv).max(1), scale)
        for i in np.flatnonzero(w <= rel * ref):
            if name == "length" and np.allclose(iv[i], 1.0):  # the reference bone: 1 by definition
                continue
            base = 0 if name == "length" else (20 if name == "curvature" else 24)
            out.append(TERM_NAMES[base + int(i)])
    return out


def audit(xyz: np.ndarray, limits: BMCLimits | None = None, side: str = "right",
          tolerance: dict[str, float] | None = None) -> dict:
    """Violations of ``xyz (N, 21, 3)`` against ``limits`` (default: literature limits).

    Returns, per term (43), the share of poses outside at all (``term_rate``) and by more than
    the tolerance (``term_rate_tol``; ``tolerance`` per unit of :data:`TERM_UNITS`, default
    :data:`DEFAULT_TOLERANCE`); per pose, whether any term is outside by more than the
    tolerance (``implausible_poses_tol``) or at all (``implausible_poses``); the same for the 15
    joint-angle terms (``implausible_joints_tol`` / ``implausible_joints``); per sample the
    exact terms (``per_sample``), their excess in real units (``excess``) and the weighted total
    for ranking; the worst excess of each term; and the limits' degenerate intervals
    (``degenerate``). Poses with a NaN / inf coordinate are counted in ``non_finite`` and left
    out of every rate (their per-sample values are NaN).

    ``side``: ``"right"`` (BMC's limits are a right hand's) or ``"left"`` (mirrored into right
    hands first, :func:`bmclib.skeleton.mirror_joints`). The result's ``mirrored_implausible_poses``
    is the share the poses would have mirrored; far below ``implausible_poses``, the input is
    probably of the other side, and ``side_hint`` says so."""
    from . import skeleton as sk

    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    limits = limits or BMCLimits.default()
    tol = {**DEFAULT_TOLERANCE, **(tolerance or {})}
    unknown = set(tol) - set(DEFAULT_TOLERANCE)
    if unknown or any(not np.isfinite(v) or v < 0 for v in tol.values()):
        raise ValueError(f"tolerance: expected non-negative values for {sorted(DEFAULT_TOLERANCE)}, got {tol}")
    j = torch.from_numpy(np.asarray(xyz, dtype=np.float64))
    if side == "left":
        j = sk.mirror_joints(j)
    result = _audit_right(j, limits, tol)
    other = _audit_right(sk.mirror_joints(j), limits, tol, share_only=True)
    result["degenerate"] = degenerate_intervals(limits)
    result["xyz"] = j.numpy()  # the audited (right-hand) poses, for drawing the worst
    result["limits_obj"] = limits  # for the report's inspector pages
    result["side"] = side
    result["mirrored_implausible_poses"] = other["implausible_poses"]
    result["mirrored_implausible_joints"] = other["implausible_joints"]
    result["side_hint"] = ""
    flip = "left" if side == "right" else "right"
    # the share of implausible poses saturates (every pose has some term outside) where the share of
    # joint-angle terms outside still separates the sides
    if other["implausible_poses"] < 0.5 * result["implausible_poses"] - 0.05:
        result["side_hint"] = (f"{100 * result['implausible_poses']:.1f}% of the poses are implausible as {side} "
                               f"hands but {100 * other['implausible_poses']:.1f}% mirrored: are they {flip} hands? "
                               f"(bmc audit --side {flip})")
    elif other["implausible_joints"] < 0.75 * result["implausible_joints"] - 0.05:
        result["side_hint"] = (f"{100 * result['implausible_joints']:.1f}% of the joint-angle terms are outside as "
                               f"{side} hands but {100 * other['implausible_joints']:.1f}% mirrored: are they {flip} "
                               f"hands? (bmc audit --side {flip})")
    return result


def audit_sides(xyz: np.ndarray, sides, limits: BMCLimits | None = None, tolerance: dict[str, float] | None = None) -> dict:
    """:func:`audit` of poses of mixed sides: ``sides`` ``(N,)`` of ``"left"`` / ``"right"`` (from a
    reader's handedness field); left hands are mirrored into right ones, then all are audited."""
    from . import skeleton as sk

    sides = list(sides)
    if len(sides) != len(xyz):
        raise ValueError(f"audit: {len(sides)} sides for {len(xyz)} poses")
    bad = sorted({s for s in sides if s not in ("left", "right")})
    if bad:
        raise ValueError(f"audit: sides must be 'left' or 'right', got {bad}")
    left = np.array([s == "left" for s in sides])
    j = np.asarray(xyz, dtype=np.float64).copy()
    j[left] = sk.mirror_joints(j[left])
    result = audit(j, limits, "right", tolerance)
    result["side"] = f"{int((~left).sum())} right, {int(left.sum())} left (from the handedness field)"
    return result


#: poses scored at once by the audit: bounds the loss's temporaries (~20x the input) whatever N is
AUDIT_CHUNK = 16384


def _audit_right(j: torch.Tensor, limits: BMCLimits, tol: dict[str, float], share_only: bool = False) -> dict:
    """:func:`audit` of right-hand joints ``(N, 21, 3)`` float64, :data:`AUDIT_CHUNK` poses at a time.
    ``share_only``: just ``implausible_poses`` (the side check), keeping no per-sample arrays."""
    from .losses import BMCLoss

    finite = torch.isfinite(j).all(-1).all(-1)
    if not bool(finite.any()):
        raise ValueError(f"audit: none of the {len(j)} poses is finite")
    loss = BMCLoss(limits, reduction="none", angle_distance="exact", check=False)
    ok = finite.numpy()
    if share_only:
        any_bad = joints_bad = 0
        for a in range(0, len(j), AUDIT_CHUNK):
            c = j[a:a + AUDIT_CHUNK][finite[a:a + AUDIT_CHUNK]]
            if len(c):
                bad = loss(c).per_term.numpy() > VIOLATION_TOL
                any_bad += int(bad.any(1).sum())
                joints_bad += int(bad[:, 28:].sum())
        n = int(ok.sum())
        return {"implausible_poses": any_bad / n, "implausible_joints": joints_bad / (15 * n)}
    per = np.full((len(j), len(TERM_NAMES)), np.nan)  # (N, 43); non-finite poses are reported, never scored
    total = np.full(len(j), np.nan)
    for a in range(0, len(j), AUDIT_CHUNK):
        f = ok[a:a + AUDIT_CHUNK]
        if f.any():
            out = loss(j[a:a + AUDIT_CHUNK][torch.from_numpy(f)])
            idx = np.flatnonzero(f) + a
            per[idx], total[idx] = out.per_term.numpy(), out.total.numpy()
    bad = per[ok] > VIOLATION_TOL
    excess = term_excess(per, limits)
    far = bad & (excess[ok] > np.array([tol[u] for u in TERM_UNITS]))  # a violation at all, and by more than tol
    return {"n": int(len(j)), "non_finite": int((~finite).sum()), "term_rate": bad.mean(0),
            "implausible_poses": float(bad.any(1).mean()), "implausible_joints": float(bad[:, 28:].mean()),
            "term_rate_tol": far.mean(0), "implausible_poses_tol": float(far.any(1).mean()),
            "implausible_joints_tol": float(far[:, 28:].mean()), "tolerance": dict(tol),
            "worst_excess": excess[ok].max(0), "per_sample": per, "excess": excess, "total": total,
            "limits": limits.meta.get("source", "?")}


def _tol_text(tol: dict[str, float]) -> str:
    return f"{tol['deg']:g} degrees for angles, {tol['% length']:g}% for bone lengths, {tol['% range']:g}% of the range for palm curvatures"


def write_audit(result: dict, out_dir: str | os.PathLike, name: str = "predictions", worst: int = 10,
                pred_path: str | os.PathLike | None = None) -> Path:
    """``audit.md`` (headline, per-term rates, worst samples), ``audit.csv`` (one row per sample:
    the BMC total, the worst term and every term's excess in real units) and ``audit.html``
    (the worst samples drawn, each linked to ``audit_samples/sample_<i>.html``, the pose inspector's
    view of it as a standalone page, and with the code that opens it in the live inspector)."""
    import csv

    from .results import atomic_path, write_text_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scored = np.flatnonzero(np.isfinite(result["total"]))  # a non-finite pose is counted, never ranked
    order = scored[np.argsort(-result["total"][scored], kind="stable")][:worst]
    tol = result.get("tolerance", DEFAULT_TOLERANCE)
    ex = result["excess"]
    lines = [f"# Plausibility audit: {name}", "",
             f"{result['n']} poses ({result.get('side', 'right')} hands) against limits: {result['limits']}.", "",
             *([f"**{result['side_hint']}**", ""] if result.get("side_hint") else []),
             *([f"**{result['order_hint']}**", ""] if result.get("order_hint") else []),
             *([f"**Warning: the limits have degenerate (zero-width) intervals: {', '.join(result['degenerate'])}. "
                "Every pose not exactly on them reads implausible there; refit with quantile intervals "
                "(`bmc fit-limits --interval-coverage 0.99`).**", ""] if result.get("degenerate") else []),
             f"Tolerance: {_tol_text(tol)} (`--tol-deg`, `--tol-pct`).", "",
             f"- poses with a term outside its limits by more than the tolerance: "
             f"**{100 * result['implausible_poses_tol']:.1f}%**",
             f"- joint-angle terms outside their polygons by more than {tol['deg']:g} degrees: "
             f"**{100 * result['implausible_joints_tol']:.1f}%**",
             f"- strictly (any excess at all): {100 * result['implausible_poses']:.1f}% of poses, "
             f"{100 * result['implausible_joints']:.1f}% of joint-angle terms",
             f"- non-finite poses (left out of every rate): {result['non_finite']}", "",
             "| term | outside by > tolerance | outside at all | worst excess |", "|---|---:|---:|---:|"]
    lines += [f"| {t} | {100 * rt:.1f}% | {100 * r:.1f}% | {w:.1f} {u} |" for t, rt, r, w, u in
              zip(TERM_NAMES, result["term_rate_tol"], result["term_rate"], result["worst_excess"], TERM_UNITS)]
    lines += ["", f"Worst {len(order)} samples (weighted BMC total; `audit.html` draws them):", "",
              "| sample | BMC total | worst term | its excess |", "|---:|---:|---|---:|"]
    for i in order:
        k = int(np.nanargmax(ex[i] / np.array([tol[u] or 1.0 for u in TERM_UNITS])))
        lines.append(f"| {i} | {result['total'][i]:.4f} | {TERM_NAMES[k]} | {ex[i, k]:.1f} {TERM_UNITS[k]} |")
    write_text_atomic(out / "audit.md", "\n".join(lines) + "\n")
    with atomic_path(out / "audit.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sample", "bmc_total", "worst_term", "worst_excess", "worst_unit",
                    *(f"{t} ({u})" for t, u in zip(TERM_NAMES, TERM_UNITS))])
        for i, row in enumerate(ex):
            if np.isfinite(row).all():
                k = int(np.argmax(row / np.array([tol[u] or 1.0 for u in TERM_UNITS])))
                worst_cells = [TERM_NAMES[k], f"{row[k]:.4g}", TERM_UNITS[k]]
            else:
                worst_cells = ["non-finite pose", "", ""]
            w.writerow([i, f"{result['total'][i]:.6g}", *worst_cells] + [f"{v:.4g}" for v in row])
    _write_html(result, out / "audit.html", name, order, pred_path)
    return out / "audit.md"


def _length_note(j: np.ndarray, term: int) -> str:
    """A bone-length term of pose ``j (21, 3)`` in absolute and relative units: its length in mm and
    in units of the pose's reference bone (middle MCP -> PIP)."""
    from . import skeleton as sk

    p, c = sk.BONES[term]
    n, m = sk.REFERENCE_BONE
    length = float(np.linalg.norm(j[c] - j[p]))
    ref = float(np.linalg.norm(j[m] - j[n]))
    rel = f"{length / ref:.2f} x the reference bone" if ref > 1e-12 else "the reference bone has length 0"
    return f" (this bone: {1000 * length:.1f} mm if the pose is in metres; {rel})"


def _write_html(result: dict, path: Path, name: str, order: np.ndarray, pred_path) -> None:
    """``audit.html``, a page that stands alone: the headline, the per-term table, a legend (finger
    colours, red joints, units), then the worst samples drawn (two views, joints outside their
    limits in red), each linked to its inspector page (``audit_samples/``, written here when
    plotly is installed, with a link back) and with the lines that open it in notebook 06's live
    pose inspector."""
    import base64
    import html
    import importlib.util
    import io

    from . import skeleton as sk
    from .results import write_text_atomic
    from .viz import FINGER_COLORS

    xyz = result.get("xyz")
    ex = result["excess"]
    tol = result.get("tolerance", DEFAULT_TOLERANCE)
    limits = result.get("limits_obj")
    pages = importlib.util.find_spec("plotly") is not None
    rows = []
    for i in order:
        img = link = ""
        ok = xyz is not None and np.isfinite(xyz[i]).all()
        if ok and pages:
            from .viz.inspector import write_inspector_page

            mirrored = " (mirrored into a right hand, as audited)" if result.get("side") == "left" else ""
            page = write_inspector_page(xyz[i] - xyz[i][0], path.parent / "audit_samples" / f"sample_{int(i)}.html",
                                        limits, title=f"{name}: sample {int(i)}{mirrored}",
                                        back=(f"../{path.name}#sample-{int(i)}", f"back to the audit of {name}"))
            link = (f'<p><a href="audit_samples/{page.name}"><b>open sample {int(i)} in the inspector\'s view</b></a> '
                    "(rotatable 3D hand, each joint against its envelope; works offline)</p>")
        if ok:
            from .viz.inspector import joint_violations
            from .viz.static import pose_views, pyplot

            red = np.flatnonzero(joint_violations(limits or BMCLimits.default(), xyz[i]))
            fig = pose_views({f"sample {i}": xyz[i]}, azims=(-60.0, 30.0), highlight=red)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=110)
            pyplot().close(fig)
            img = (f'<img class="views" alt="sample {i}: two views, {len(red)} joints outside the limits in red" '
                   f'src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">')
        far = []
        for k in np.argsort(-ex[i]):
            if ex[i, k] > tol[TERM_UNITS[k]] and len(far) < 6:
                what = f"{ex[i, k]:.1f} {TERM_UNITS[k]} outside"
                if TERM_UNITS[k] == "% length" and ok:
                    what += _length_note(xyz[i], int(k))
                far.append(f"{html.escape(TERM_NAMES[k])}: {html.escape(what)}")
        src = html.escape(str(pred_path)) if pred_path else "PRED"
        code = html.escape("from bmclib.predictions import load_predictions\nfrom bmclib.viz.inspector import PoseInspector\n"
                           f"pose = load_predictions(\"{src}\")[{int(i)}]\n"
                           + ("pose = pose * [-1, 1, 1]  # a left hand, mirrored as the audit did\n"
                              if result.get("side") == "left" else "")
                           + "PoseInspector(pose - pose[0]).widget  # in JupyterLab")
        rows.append(f'<section id="sample-{int(i)}"><h2><a href="#sample-{int(i)}">sample {int(i)}</a>: BMC '
                    f'{result["total"][i]:.4f}</h2>{link}{img}<p>Terms outside by more than the tolerance (the worst '
                    f'six):</p><ul>' + "".join(f"<li>{t}</li>" for t in far)
                    + f'</ul><p>To edit it live in JupyterLab:</p><pre>{code}</pre><p><a href="#top">back to the '
                    f'top</a></p></section>')
    index = " ".join(f'<a href="#sample-{int(i)}">{int(i)}</a>' for i in order)
    terms = "".join(
        f"<tr><td>{html.escape(t)}</td><td>{100 * rt:.1f}%</td><td>{100 * r:.1f}%</td><td>{w:.1f} {u}</td></tr>"
        for t, rt, r, w, u in zip(TERM_NAMES, result["term_rate_tol"], result["term_rate"], result["worst_excess"],
                                  TERM_UNITS))
    legend = " ".join(f'<span class="chip" style="background:{c}"></span>{f}' for f, c in zip(sk.FINGER_NAMES,
                                                                                            FINGER_COLORS))
    hints = "".join(f"<p><b>{html.escape(result[k])}</b></p>" for k in ("side_hint", "order_hint") if result.get(k))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>audit: {html.escape(name)}</title>"
            "<style>body{font-family:sans-serif;max-width:64em;margin:auto;padding:0 1em;line-height:1.4}"
            "pre{background:#f4f4f4;padding:.5em;overflow-x:auto}section{border-top:1px solid #ccc}"
            "table{border-collapse:collapse;font-size:.9em}td,th{border-bottom:1px solid #eee;padding:.15em .6em}"
            "td:not(:first-child),th:not(:first-child){text-align:right}img.views{width:100%;max-width:56em}"
            ".chip{display:inline-block;width:1.6em;height:.8em;margin:0 .3em 0 .9em;vertical-align:middle}"
            ".red{color:#de2d26;font-weight:bold}</style></head><body id='top'>"
            f"<h1>Plausibility audit: {html.escape(name)}</h1><p>{result['n']} poses ({html.escape(str(result.get('side', 'right')))} "
            f"hands) against limits {html.escape(str(result.get('limits', '?')))}; "
            f"<b>{100 * result['implausible_poses_tol']:.1f}%</b> with a term outside by more than the tolerance "
            f"({html.escape(_tol_text(tol))}), {100 * result['implausible_poses']:.1f}% outside at all; "
            f"{result['non_finite']} non-finite poses left out of every rate.</p>{hints}"
            f"<p>Legend: {legend}; <span class='red'>red</span> joints: an angle or the bone ending there is outside "
            "its limits. Units: <i>% length</i> is how far a bone's length, in units of the pose's reference bone "
            "(middle MCP&rarr;PIP, so the hand's scale does not matter), lies outside its interval, as % of the "
            "bone's typical length; each sample also gives the bone's absolute length. <i>% range</i>: a palm "
            "curvature outside its interval, as % of the interval's width. <i>deg</i>: angles.</p>"
            f"<p>Worst samples: {index} (also in <code>audit.md</code> and, one row per pose, <code>audit.csv</code>)</p>"
            "<details><summary>Every term: share of poses outside by more than the tolerance, outside at all, and "
            "the worst excess</summary><table><tr><th>term</th><th>&gt; tolerance</th><th>at all</th><th>worst</th>"
            f"</tr>{terms}</table></details>" + "".join(rows) + "</body></html>")
    write_text_atomic(path, page)


def plot_limits(limits: BMCLimits, joints: np.ndarray | None, path: str | os.PathLike,
                max_points: int = 4000) -> Path:
    """One panel per joint: the (flexion, abduction) points of ``joints (N, 21, 3)`` (if given;
    a seeded sample of ``max_points``) and the limit polygon, in degrees."""
    from .viz.static import envelope_figure, save

    return save(envelope_figure(limits, joints, max_points), path)
