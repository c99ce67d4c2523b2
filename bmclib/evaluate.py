"""Evaluation: the metrics of the paper and the FreiHAND protocol, written with provenance.

Metrics (``evaluate_arrays``; all on root-relative poses unless said):
    ``epe_2d_px`` 2D end-point error; ``epe_3d_mm`` root-relative 3D error;
    ``depth_mm`` root-relative depth error (the depth part of the 3D error);
    ``pa_mpjpe_mm`` error after similarity Procrustes alignment; ``auc_3d``/``pck_3d``
    over 0-50 mm at 100 thresholds (per keypoint, then averaged; trapezoid rule);
    ``implausible_poses`` / ``implausible_joints``: share of poses with any BMC term outside
    the limits, and share of joint-angle terms outside their polygons.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .limits import BMCLimits

__all__ = ["procrustes_align", "pck_auc", "evaluate_arrays", "predict_cache", "evaluate_run", "write_metrics"]


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Similarity-align ``pred (N, J, 3)`` to ``gt`` (centre, scale by Frobenius norm, rotate, rescale)."""
    p = pred - pred.mean(1, keepdims=True)
    g = gt - gt.mean(1, keepdims=True)
    sp = np.linalg.norm(p, axis=(1, 2), keepdims=True) + 1e-8
    sg = np.linalg.norm(g, axis=(1, 2), keepdims=True) + 1e-8
    p, g = p / sp, g / sg
    u, s, vt = np.linalg.svd(np.einsum("nji,njk->nik", p, g))  # (N, 3, 3)
    d = np.sign(np.linalg.det(np.einsum("nij,njk->nik", u, vt)))
    u[:, :, -1] *= d[:, None]
    s[:, -1] *= d
    rot = np.einsum("nij,njk->nik", u, vt)
    scale = s.sum(1)[:, None, None]
    return (np.einsum("nji,nik->njk", p, rot) * scale) * sg + gt.mean(1, keepdims=True)


def pck_auc(errors: np.ndarray, max_err: float, n: int = 100) -> tuple[np.ndarray, np.ndarray, float]:
    """PCK curve over thresholds ``linspace(0, max_err, n)`` per keypoint then averaged, and its
    normalised trapezoid AUC. ``errors (N, J)``."""
    th = np.linspace(0, max_err, n)
    pck = (errors[None] <= th[:, None, None]).mean(1).mean(1)  # (n,)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz
    return th, pck, float(trapezoid(pck, th) / max_err)


def evaluate_arrays(pred_xyz: np.ndarray, gt_xyz: np.ndarray, pred_uv: np.ndarray | None = None,
                    gt_uv: np.ndarray | None = None, limits: BMCLimits | None = None) -> dict[str, float]:
    """Metrics of metric predictions ``(N, 21, 3)`` against ground truth (metres; mm out)."""
    if pred_xyz.shape != gt_xyz.shape or pred_xyz.shape[1:] != (21, 3):
        raise ValueError(f"expected pred and gt of shape (N, 21, 3), got {pred_xyz.shape} and {gt_xyz.shape}")
    p = pred_xyz - pred_xyz[:, :1]
    g = gt_xyz - gt_xyz[:, :1]
    err = np.linalg.norm(p - g, axis=-1) * 1000  # (N, 21) mm
    al = np.linalg.norm(procrustes_align(pred_xyz, gt_xyz) - gt_xyz, axis=-1) * 1000
    _, pck, auc = pck_auc(err, 50.0)
    out = {"n": int(len(p)), "epe_3d_mm": float(err[:, 1:].mean()), "depth_mm": float(np.abs(p[..., 2] - g[..., 2])[:, 1:].mean() * 1000),
           "pa_mpjpe_mm": float(al.mean()), "auc_3d": auc, "pck_3d_20mm": float(pck[np.searchsorted(np.linspace(0, 50, 100), 20.0)])}
    if pred_uv is not None and gt_uv is not None:
        out["epe_2d_px"] = float(np.linalg.norm(pred_uv - gt_uv, axis=-1).mean())
    if limits is not None:
        v = limits.violations(torch.from_numpy(pred_xyz.astype(np.float64))).numpy()  # (N, 43)
        out["implausible_poses"] = float(v.any(1).mean())
        out["implausible_joints"] = float(v[:, 28:].mean())
    return out


@torch.no_grad()
def predict_cache(model, cache, batch_size: int = 64, device: str = "cpu") -> dict[str, np.ndarray]:
    """Run ``model`` over a prepared cache: ``uv``, metric ``xyz`` (scaled by the ground-truth
    reference-bone length, as the FreiHAND protocol does) and ``z_rel``."""
    from .data.loader import load_batch

    model.eval()
    uv, xyz, z = [], [], []
    for start in range(0, len(cache), batch_size):
        idx = np.arange(start, min(start + batch_size, len(cache)))
        b = load_batch(cache, idx).to(device)
        out = model(b.images, b.K, b.scale)
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
    pred = predict_cache(model, cache, device=device)
    ann = cache.annotations
    limits = limits or BMCLimits.default()
    metrics = evaluate_arrays(pred["xyz"].astype(np.float64), ann["xyz"].astype(np.float64), pred["uv"], ann["uv"], limits)
    metrics["limits"] = limits.meta.get("source", "?")
    if save_predictions:
        out = Path(results_root) / cfg.name
        out.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out / "predictions.npz", uv=pred["uv"].astype(np.float32), xyz=pred["xyz"].astype(np.float32))
    write_metrics(cfg.name, metrics, results_root, config=cfg.to_dict(), preset=cfg.preset, seed=cfg.seed,
                  steps=cfg.steps, data={"eval_cache": str(cache_path), "eval_sha256": cache.meta["annotations_sha256"],
                                         "source": cfg.source, "weak": cfg.weak},
                  config_hash_short=config_hash(cfg.to_dict()))
    return metrics
