"""FreiHAND's benchmark, reimplemented: its keypoint scores, its report, and a trained run's submission.

:func:`freihand_keypoint_scores` scores ``(N, 21, 3)`` predictions like the official evaluation
(mean 3D error and PCK AUC over 0-50 mm, unaligned and after a similarity alignment), vectorised;
:func:`write_freihand_report` writes ``scores.txt`` and the PCK curves; :func:`predict_freihand`
runs a trained run on a FreiHAND-layout split for the server (``bmc predict-freihand``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .evaluate import align_w_scale, pck_auc

__all__ = ["FREIHAND_THRESHOLDS", "curve_scores", "freihand_keypoint_scores",
           "write_freihand_report", "predict_freihand"]

FREIHAND_THRESHOLDS = np.linspace(0.0, 0.05, 100)  # metres


def curve_scores(err: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Mean error and normalised AUC (per keypoint, then averaged: the trapezoid rule is
    linear, so averaging the curves first is the same); ``err (N, J)`` metres."""
    _, pck, auc = pck_auc(err, float(FREIHAND_THRESHOLDS[-1]), len(FREIHAND_THRESHOLDS))
    return float(err.mean(0).mean()), auc, pck


def freihand_keypoint_scores(gt_xyz: np.ndarray, pred_xyz: np.ndarray, return_curves: bool = False) -> dict:
    """The FreiHAND benchmark's keypoint scores, vectorised.

    Args:
        gt_xyz, pred_xyz: ``(N, 21, 3)`` metres (absolute camera coordinates).

    Returns:
        ``xyz_mean3d`` and ``xyz_al_mean3d`` in cm (unaligned / aligned mean keypoint error),
        ``xyz_auc3d`` and ``xyz_al_auc3d`` (PCK over 0-5 cm at 100 thresholds, ``<=``,
        trapezoid rule normalised, per keypoint then averaged). With ``return_curves``
        also ``thresholds_cm``, ``pck`` and ``pck_aligned``.
    """
    gt = np.asarray(gt_xyz, dtype=np.float64)
    pred = np.asarray(pred_xyz, dtype=np.float64)
    if gt.shape != pred.shape or gt.ndim != 3 or gt.shape[-1] != 3:
        raise ValueError(f"expected gt and pred of the same shape (N, J, 3), got {gt.shape} and {pred.shape}")
    if not (np.isfinite(gt).all() and np.isfinite(pred).all()):
        raise ValueError("gt or pred contains NaN or inf")
    mean, auc, pck = curve_scores(np.linalg.norm(gt - pred, axis=-1))
    al_mean, al_auc, al_pck = curve_scores(np.linalg.norm(gt - align_w_scale(gt, pred), axis=-1))
    out = {"xyz_mean3d": mean * 100, "xyz_auc3d": auc, "xyz_al_mean3d": al_mean * 100, "xyz_al_auc3d": al_auc}
    if return_curves:
        out.update(thresholds_cm=FREIHAND_THRESHOLDS * 100, pck=pck, pck_aligned=al_pck)
    return out


def write_freihand_report(scores: dict, out_dir: str | os.PathLike, label: str = "prediction",
                          zero_scores: dict | None = None) -> Path:
    """``scores.txt`` in the official layout (``key: value`` lines) and ``pck.png`` with the
    unaligned and aligned PCK curves (and the zero predictor's, when given)."""
    from .results import write_text_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keys = ("xyz_mean3d", "xyz_auc3d", "xyz_al_mean3d", "xyz_al_auc3d")
    write_text_atomic(out / "scores.txt", "".join(f"{k}: {scores[k]:f}\n" for k in keys))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for sc, name, style in ((scores, label, "-"), (zero_scores, "zero predictor", ":")):
        if sc is None or "pck" not in sc:
            continue
        ax.plot(sc["thresholds_cm"], sc["pck"], style, color="#3182bd", label=f"{name} (AUC {sc['xyz_auc3d']:.3f})")
        ax.plot(sc["thresholds_cm"], sc["pck_aligned"], style, color="#e6550d",
                label=f"{name}, aligned (AUC {sc['xyz_al_auc3d']:.3f})")
    ax.set_xlabel("threshold (cm)")
    ax.set_ylabel("PCK")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("FreiHAND keypoint PCK", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "pck.png", dpi=120)
    plt.close(fig)
    return out / "scores.txt"


def predict_freihand(run_dir: str | os.PathLike, root: str | os.PathLike, split: str = "evaluation",
                     device: str = "cpu", batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """A trained run's absolute 3D joints ``(N, 21, 3)`` (metres, camera frame) on one split of a
    FreiHAND-layout folder, as the FreiHAND server takes them: each (hand-centred) image resized
    to the run's crop with ``K`` following, and the metric scale from ``{split}_scale.json``
    (FreiHAND's evaluation split ships K and scale, no labels). The first image version only."""
    from PIL import Image
    from .progress import tqdm

    from .data.crop import crop_resize
    from .data.freihand import resize_affine, read_split
    from .train import load_trained

    model, cfg = load_trained(run_dir, device)
    data = read_split(root, split)
    n, S = data["n"], cfg.image_size
    out = []
    bar = tqdm(total=n, desc=f"predict {split}", unit="img", disable=not progress)
    for start in range(0, n, batch_size):
        idx = range(start, min(start + batch_size, n))
        imgs, Ks = [], []
        for i in idx:
            path = data["images"][i]
            try:
                with Image.open(path) as im:
                    arr = np.asarray(im.convert("RGB"))
            except OSError as e:
                raise ValueError(f"{path}: cannot be decoded ({e})") from None
            if arr.shape[0] != arr.shape[1]:
                raise ValueError(f"{path}: expected a square image, got {arr.shape[1]}x{arr.shape[0]}")
            native = arr.shape[0]
            imgs.append(arr if native == S else crop_resize(arr, (0.0, 0.0, float(native)), S)[0])
            Ks.append(resize_affine(native, S) @ data["K"][i])
        images = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div_(255).to(device)
        K = torch.from_numpy(np.stack(Ks)).float().to(device)
        scale = torch.from_numpy(data["scale"][list(idx)]).float().to(device)
        with torch.no_grad():
            out.append(model(images, K, scale).joints.cpu().numpy().astype(np.float64))
        bar.update(len(idx))
    bar.close()
    return np.concatenate(out)
