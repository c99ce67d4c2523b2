"""Evaluation: the metrics of the paper and the FreiHAND protocol, written with provenance.

Metrics (``evaluate_arrays``; all on root-relative poses unless said):
    ``epe_2d_px`` 2D end-point error; ``epe_3d_mm`` root-relative 3D error;
    ``depth_mm`` root-relative depth error (the depth part of the 3D error);
    ``pa_mpjpe_mm`` error after similarity Procrustes alignment; ``auc_3d``/``pck_3d``
    over 0-50 mm at 100 thresholds (per keypoint, then averaged; trapezoid rule);
    ``depth_corr`` the correlation of predicted and true root-relative depths (all non-root
    joints) and ``depth_spread`` the mean per-pose spread (std over joints) of predicted depths
    over that of the true ones: both near 0 when the depth has collapsed to a flat hand;
    ``depth_flat_mm`` the depth error a flat hand (every joint at the root's depth) would get
    on the same set — a trivial baseline that a network must beat to have learned depth — and
    ``depth_vs_flat_pct`` the run's depth error relative to it (negative: better than flat);
    the pinhole split of the absolute 3D error (:func:`pinhole_split`): ``abs_3d_mm`` =
    ``abs_3d_2d_part_mm`` (the ray) + ``abs_3d_depth_part_mm`` (the depth along it) per joint,
    and ``depth_abs_mm``, the absolute depth error (root and scale included);
    ``implausible_poses`` / ``implausible_joints``: share of poses with any BMC term outside
    the limits, and share of joint-angle terms outside their polygons; ``bmc_pred`` the mean
    BMC of the predictions; ``bmc_true_depth`` the mean BMC of the *true* depths on the
    predicted 2D keypoints (what the BMC makes of the right depth given this 2D) and ``bmc_true``
    that of the true poses; benchmark v3's: ``depth_norm_mm`` (root-relative depth with the
    reference bone scaled to its true length) and ``root_depth_mm`` (the hand's distance), see
    :func:`per_image_metrics`; the collapse diagnostics (:mod:`bmclib.diagnostics`):
    ``extent_ratio`` (median predicted 2D size over the truth's) and ``bone_ray_cos`` /
    ``bone_ray_cos_true`` (median ``|cos|`` of bones and viewing rays, predicted / true).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import skeleton as sk
from .camera import from_2p5d
from .limits import BMCLimits
from .losses import BMCLoss

__all__ = ["align_w_scale", "procrustes_align", "pck_auc", "evaluate_arrays", "predict_cache", "evaluate_run", "write_metrics", "pinhole_split", "true_depth_poses", "mean_bmc", "true_depth_bmc_curve"]


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Similarity-align ``pred (N, J, 3)`` to ``gt`` exactly as the FreiHAND protocol does
    (see :func:`align_w_scale`); used for PA-MPJPE."""
    return align_w_scale(np.asarray(gt, dtype=np.float64), np.asarray(pred, dtype=np.float64))


def align_w_scale(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Vectorised FreiHAND alignment of ``pred (N, J, 3)`` onto ``gt``: centre both, divide by the
    Frobenius norm + 1e-8, orthogonal Procrustes (reflections allowed, as scipy's
    ``orthogonal_procrustes``), scale by the singular values' sum, restore gt's norm and centre."""
    t1, t2 = gt.mean(1, keepdims=True), pred.mean(1, keepdims=True)
    a, b = gt - t1, pred - t2
    s1 = np.sqrt((a * a).sum((1, 2), keepdims=True)) + 1e-8
    s2 = np.sqrt((b * b).sum((1, 2), keepdims=True)) + 1e-8
    a, b = a / s1, b / s2
    u, w, vt = np.linalg.svd(b.transpose(0, 2, 1) @ a)  # B^T A: R = U V^T minimises |B R - A|
    return (b @ (u @ vt)) * w.sum(1)[:, None, None] * s1 + t1


def pck_auc(errors: np.ndarray, max_err: float, n: int = 100) -> tuple[np.ndarray, np.ndarray, float]:
    """PCK over thresholds ``linspace(0, max_err, n)`` (``<=``), per keypoint then averaged, and its
    trapezoid AUC normalised by ``max_err``. ``errors (N, J)``; returns ``(thresholds, pck (n,), auc)``."""
    th = np.linspace(0.0, max_err, n)
    srt = np.sort(errors, axis=0)  # PCK(t) = #(err <= t) / N, by binary search per keypoint
    pck = np.stack([np.searchsorted(srt[:, j], th, side="right") for j in range(errors.shape[1])], 1)
    pck = (pck / errors.shape[0]).mean(1)  # (n,)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz
    return th, pck, float(trapezoid(pck, th) / max_err)


def true_depth_poses(uv: np.ndarray, gt_xyz: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Joints ``(N, 21, 3)`` on the camera rays through ``uv`` at their true depths ``gt_xyz[..., 2]``:
    the pose a network would output with these 2D keypoints and perfect depth."""
    xyz = from_2p5d(torch.as_tensor(uv, dtype=torch.float64), torch.as_tensor(gt_xyz[..., 2], dtype=torch.float64),
                    torch.zeros(len(gt_xyz), dtype=torch.float64), torch.as_tensor(K, dtype=torch.float64))
    return xyz.numpy()


def mean_bmc(xyz: np.ndarray, limits: BMCLimits) -> dict[str, float]:
    """Mean BMC terms (lambdas 1) of poses ``(N, 21, 3)`` (any scale: the loss normalises)."""
    r = BMCLoss(limits, check=False)(torch.as_tensor(xyz, dtype=torch.float64))
    return {"total": float(r.total), "bl": float(r.bone_length), "rb": float(r.root_bone), "a": float(r.angle)}


def true_depth_bmc_curve(gt_uv: np.ndarray, gt_xyz: np.ndarray, K: np.ndarray, limits: BMCLimits,
                         sigmas=(0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0), seed: int = 0) -> list[dict[str, float]]:
    """BMC of the true depths seen through 2D keypoints with Gaussian pixel noise of each
    ``sigma``: how implausible the *correct* answer looks to the BMC when the 2D is off. Where
    this is far above what a trained network reaches, the BMC can only be met by moving
    the depth (and the 2D) away from the truth."""
    g = np.random.default_rng(seed)
    rows = []
    for sigma in sigmas:
        uv = gt_uv + sigma * g.standard_normal(gt_uv.shape)
        rows.append({"sigma_px": float(sigma), "epe_2d_px": float(np.linalg.norm(uv - gt_uv, axis=-1).mean()),
                     **{f"bmc_{k}": v for k, v in mean_bmc(true_depth_poses(uv, gt_xyz, K), limits).items()}})
    return rows


def pinhole_split(pred_xyz: np.ndarray, gt_xyz: np.ndarray) -> dict[str, float]:
    """The absolute (camera-frame) 3D error and its split into a 2D part and a depth part.

    Each predicted joint ``P`` lies on a camera ray; ``Q = P * z_gt / z_pred`` is the point of
    that ray at the true depth. ``|Q - G|`` is the error the 2D (the ray) alone causes,
    ``|P - Q|`` the error of the depth along the ray; they are the two legs of the pinhole
    model's split of the 3D error (root and scale included, which the root-relative
    ``depth_mm`` hides). All in mm, over all 21 joints: ``abs_3d_mm``, ``abs_3d_2d_part_mm``,
    ``abs_3d_depth_part_mm``, and ``depth_abs_mm`` = mean ``|z_pred - z_gt|``."""
    z_p = pred_xyz[..., 2:3]
    q = pred_xyz * (gt_xyz[..., 2:3] / np.where(np.abs(z_p) > 1e-9, z_p, 1e-9))
    return {"abs_3d_mm": float(np.linalg.norm(pred_xyz - gt_xyz, axis=-1).mean() * 1000),
            "abs_3d_2d_part_mm": float(np.linalg.norm(q - gt_xyz, axis=-1).mean() * 1000),
            "abs_3d_depth_part_mm": float(np.linalg.norm(pred_xyz - q, axis=-1).mean() * 1000),
            "depth_abs_mm": float(np.abs(pred_xyz[..., 2] - gt_xyz[..., 2]).mean() * 1000)}


def evaluate_arrays(pred_xyz: np.ndarray, gt_xyz: np.ndarray, pred_uv: np.ndarray | None = None,
                    gt_uv: np.ndarray | None = None, limits: BMCLimits | None = None,
                    K: np.ndarray | None = None) -> dict[str, float]:
    """Metrics of metric predictions ``(N, 21, 3)`` against ground truth (metres; mm out).

    With ``limits``: the share of implausible poses / joints and ``bmc_pred``, the mean BMC
    of the predictions; with ``K`` and ``pred_uv`` too: ``bmc_true_depth``, the mean BMC of
    the true depths on the predicted 2D (see :func:`true_depth_bmc_curve`)."""
    if pred_xyz.shape != gt_xyz.shape or pred_xyz.shape[1:] != (21, 3):
        raise ValueError(f"expected pred and gt of shape (N, 21, 3), got {pred_xyz.shape} and {gt_xyz.shape}")
    p = pred_xyz - pred_xyz[:, :1]
    g = gt_xyz - gt_xyz[:, :1]
    err = np.linalg.norm(p - g, axis=-1) * 1000  # (N, 21) mm
    al = np.linalg.norm(procrustes_align(pred_xyz, gt_xyz) - gt_xyz, axis=-1) * 1000
    _, pck, auc = pck_auc(err, 50.0)
    out = {"n": int(len(p)), "epe_3d_mm": float(err[:, 1:].mean()), "depth_mm": float(np.abs(p[..., 2] - g[..., 2])[:, 1:].mean() * 1000),
           "pa_mpjpe_mm": float(al.mean()), "auc_3d": auc, "pck_3d_20mm": float(pck[np.searchsorted(np.linspace(0, 50, 100), 20.0)])}
    # does the depth carry information, or did it collapse (a flat hand is always plausible)?
    pz, gz = p[:, 1:, 2], g[:, 1:, 2]
    out["depth_corr"] = float(np.corrcoef(pz.ravel(), gz.ravel())[0, 1]) if pz.std() > 0 and gz.std() > 0 else 0.0
    out["depth_spread"] = float(pz.std(1).mean() / max(gz.std(1).mean(), 1e-12))
    out["depth_flat_mm"] = float(np.abs(gz).mean() * 1000)  # the depth error of a flat hand: the baseline to beat
    out["depth_vs_flat_pct"] = float(100 * (out["depth_mm"] / max(out["depth_flat_mm"], 1e-12) - 1))
    out.update(pinhole_split(pred_xyz, gt_xyz))
    per = per_image_metrics(pred_xyz, gt_xyz, pred_uv, gt_uv)
    out["depth_norm_mm"] = float(per["depth_norm_mm"].mean())
    out["root_depth_mm"] = float(per["root_depth_mm"].mean())
    from .diagnostics import bone_ray_cos

    out["bone_ray_cos"] = float(bone_ray_cos(torch.as_tensor(pred_xyz)).median())
    out["bone_ray_cos_true"] = float(bone_ray_cos(torch.as_tensor(gt_xyz)).median())
    if pred_uv is not None and gt_uv is not None:
        out["epe_2d_px"] = float(np.linalg.norm(pred_uv - gt_uv, axis=-1).mean())
        out["extent_ratio"] = float(np.median(per["extent_ratio"]))
    if limits is not None:
        from .losses import violations

        v = violations(torch.from_numpy(pred_xyz.astype(np.float64)), limits).numpy()  # (N, 43)
        out["implausible_poses"] = float(v.any(1).mean())
        out["implausible_joints"] = float(v[:, 28:].mean())
        out["bmc_pred"] = mean_bmc(pred_xyz, limits)["total"]
        out["bmc_true"] = mean_bmc(gt_xyz, limits)["total"]
        if K is not None and pred_uv is not None:
            out["bmc_true_depth"] = mean_bmc(true_depth_poses(pred_uv, gt_xyz, K), limits)["total"]
    return out


def per_image_metrics(pred_xyz: np.ndarray, gt_xyz: np.ndarray, pred_uv: np.ndarray | None = None,
                      gt_uv: np.ndarray | None = None,
                      reference_bone: tuple[int, int] = sk.REFERENCE_BONE) -> dict[str, np.ndarray]:
    """``(N,)`` per image, the metrics a paired comparison (bootstrap over images) needs, in mm / px:

    ``depth_mm`` root-relative depth error (20 joints); ``depth_norm_mm`` the same after the
    predicted pose is scaled so that its reference bone has the true length (the paper's
    normalised protocol: FreiHAND's ``scale`` fixes the size, so the error is the shape's; it
    equals ``depth_mm`` when the predicted root is the closed form, and also rescales away a
    refined root's error; one bone sets the ratio, so a short predicted bone gives a heavy tail);
    ``root_depth_mm`` the hand's distance error ``|z_root - z_root_true|``; ``pa_mpjpe_mm``;
    ``epe_3d_mm`` root-relative; ``abs_3d_depth_part_mm`` benchmark v2's metric (pinhole split);
    with 2D: ``epe_2d_px`` and ``extent_ratio`` (predicted 2D size over the truth's)."""
    from .diagnostics import extent_ratio

    p, g = pred_xyz - pred_xyz[:, :1], gt_xyz - gt_xyz[:, :1]
    n, m = reference_bone
    ratio = np.linalg.norm(g[:, m] - g[:, n], axis=-1) / np.maximum(np.linalg.norm(p[:, m] - p[:, n], axis=-1), 1e-9)
    z_p = pred_xyz[..., 2:3]
    q = pred_xyz * (gt_xyz[..., 2:3] / np.where(np.abs(z_p) > 1e-9, z_p, 1e-9))
    out = {"depth_mm": np.abs(p[:, 1:, 2] - g[:, 1:, 2]).mean(1) * 1000,
           "depth_norm_mm": np.abs(p[:, 1:, 2] * ratio[:, None] - g[:, 1:, 2]).mean(1) * 1000,
           "root_depth_mm": np.abs(pred_xyz[:, 0, 2] - gt_xyz[:, 0, 2]) * 1000,
           "pa_mpjpe_mm": np.linalg.norm(procrustes_align(pred_xyz, gt_xyz) - gt_xyz, axis=-1).mean(1) * 1000,
           "epe_3d_mm": np.linalg.norm(p - g, axis=-1)[:, 1:].mean(1) * 1000,
           "abs_3d_depth_part_mm": np.linalg.norm(pred_xyz - q, axis=-1).mean(1) * 1000}
    if pred_uv is not None and gt_uv is not None:
        out["epe_2d_px"] = np.linalg.norm(pred_uv - gt_uv, axis=-1).mean(1)
        out["extent_ratio"] = extent_ratio(torch.as_tensor(pred_uv), torch.as_tensor(gt_uv)).numpy().astype(np.float64)
    return out


@torch.no_grad()
def predict_cache(model, cache, batch_size: int = 64, device: str = "cpu", path=None) -> dict[str, np.ndarray]:
    """Run ``model`` over a prepared cache: ``uv``, metric ``xyz`` (scaled by the ground-truth
    reference-bone length, as the FreiHAND protocol does) and ``z_rel``. ``path``: the
    :class:`~bmclib.model.ComputePath` to run it on (default: float32, the model's memory format)."""
    from .data.loader import load_batch

    model.eval()
    if path is not None:
        path.prepare(model)
    uv, xyz, z = [], [], []
    for start in range(0, len(cache), batch_size):
        idx = np.arange(start, min(start + batch_size, len(cache)))
        b = load_batch(cache, idx).to(device)
        out = model(b.images, b.K, b.scale) if path is None else path.forward(model, b.images, b.K, b.scale)
        uv.append(out.uv.cpu().numpy())
        xyz.append(out.joints.cpu().numpy())
        z.append(out.z_rel.cpu().numpy())
    return {"uv": np.concatenate(uv), "xyz": np.concatenate(xyz), "z_rel": np.concatenate(z)}


def write_metrics(run_name: str, metrics: dict[str, Any], root: str | os.PathLike = "results/runs", **prov: Any) -> Path:
    """``root/<run_name>/metrics.json`` with provenance (time, commit, config hash, device, ...)."""
    from .results import provenance, write_json_atomic

    path = Path(root) / run_name / "metrics.json"
    write_json_atomic(path, {"metrics": metrics, "provenance": provenance(**prov)})
    return path


def evaluate_run(run_dir: str | os.PathLike, cache_path: str | os.PathLike, results_root: str | os.PathLike = "results/runs",
                 limits: BMCLimits | None = None, device: str = "cpu", save_predictions: bool = True) -> dict[str, Any]:
    """Evaluate a trained run on a 3D-labelled cache and write its metrics file."""
    from .data.cache import PreparedCache
    from .results import config_hash
    from .train import load_trained

    model, cfg = load_trained(run_dir, device)
    cache = PreparedCache(cache_path)
    if not cache.annotations["has_3d"].all():
        raise ValueError(f"{cache_path}: evaluation needs 3D labels on every sample")
    from .train import run_compute_path

    path = run_compute_path(cfg, device)  # evaluated on the path it trained on
    pred = predict_cache(model, cache, device=device, path=path)
    ann = cache.annotations
    limits = limits or BMCLimits.default()
    metrics = evaluate_arrays(pred["xyz"].astype(np.float64), ann["xyz"].astype(np.float64), pred["uv"], ann["uv"], limits,
                              ann["K"])
    metrics["limits"] = limits.meta.get("source", "?")
    if save_predictions:
        from .predictions import write_predictions

        write_predictions(Path(results_root) / cfg.name / "predictions.npz", pred["xyz"], pred["uv"])
    write_metrics(cfg.name, metrics, results_root, config=cfg.to_dict(), preset=cfg.preset, seed=cfg.seed,
                  steps=cfg.steps, compute=path.describe(), data={"eval_cache": str(cache_path), "eval_sha256": cache.meta["annotations_sha256"],
                                         "source": cfg.source, "weak": cfg.weak},
                  config_hash_short=config_hash(cfg.to_dict()))
    return metrics


# ----------------------------------------------------------------------------- FreiHAND protocol
