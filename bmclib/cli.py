"""The library's commands: one subcommand per job (``bmc COMMAND -h`` for its options).

The ``bmc`` program is these commands plus the benchmark's (:mod:`bmclib.bench.cli`). Every
command exits 0 on success and 2 with a one-line message naming the file, field or value at
fault (``bmc COMMAND: ...``) on bad input; argparse's own usage errors also exit 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

#: what ``bmc -h`` says first (plain text: argparse prints it as it is)
DESCRIPTION = ("bmc: weakly supervised 3D hand pose estimation with biomechanical constraints.\n"
               "Each command exits 0 on success and 2 with a one-line message on bad input; "
               "bmc COMMAND -h lists its options.")

# ----------------------------------------------------------------------------- commands
# Each command is an ``_args(p)`` that declares its options and a ``_run(a)`` that does the
# work; errors are handled once, in :func:`main`.


def _limits_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", help="a limits JSON written by BMCLimits.save (default: literature limits)")
    p.add_argument("--save", metavar="PATH", help="also write the shown limits to PATH (versioned JSON)")


def _limits(a: argparse.Namespace) -> int:
    from .limits import BMCLimits

    limits = BMCLimits.load(a.file) if a.file else BMCLimits.default()
    print(limits.summary())
    if a.save:
        print(f"wrote {limits.save(a.save)}")
    return 0


def _synth_args(p: argparse.ArgumentParser) -> None:
    from .data.synth import DOMAINS, PRESETS

    p.add_argument("--domain", required=True, choices=sorted(DOMAINS), help="which synthetic domain to render")
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                   help="data size (training + evaluation images): "
                        + ", ".join(f"{k} = {v[0]} + {v[1]}" for k, v in PRESETS.items()))
    p.add_argument("--num", type=int, help="training samples (overrides the preset)")
    p.add_argument("--num-eval", type=int, help="evaluation samples (overrides the preset)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (a multiple of 8)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default=None, help="render on this torch device (e.g. cuda; default: cpu)")
    p.add_argument("--appearance", default="skin", choices=["skin", "glove", "markers"],
                   help="skin (one tone per hand), glove (one hue per finger, benchmark v3's test level) or markers "
                        "(the glove with a sphere on each joint)")
    p.add_argument("--n-hands", type=int, help="draw the poses' hand shapes from this many hands (default: a new "
                                               "hand per sample)")
    p.add_argument("--population-seed", type=int, default=0, help="seed of the hand population (with --n-hands)")
    p.add_argument("--no-cache", action="store_true", help="write the FreiHAND layout only")
    p.add_argument("--force", action="store_true", help="replace an existing data set in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _synth(a: argparse.Namespace) -> int:
    from .data.synth import PRESETS, generate_dataset

    n_train = a.num if a.num is not None else PRESETS[a.preset][0]
    n_eval = a.num_eval if a.num_eval is not None else PRESETS[a.preset][1]
    print(f"{a.domain}: {n_train} training + {n_eval} evaluation images of {a.size} px"
          f"{f' (preset {a.preset})' if a.num is None or a.num_eval is None else ''} -> {a.out}", flush=True)
    summary = generate_dataset(a.out, a.domain, n_train, n_eval, a.seed, a.size, a.device,
                               make_cache=not a.no_cache, progress=not a.quiet, overwrite=a.force,
                               n_hands=a.n_hands, population_seed=a.population_seed, appearance=a.appearance)
    print(f"{a.domain}: {summary['splits']} in {summary['total_s']:.1f} s "
          f"({summary['images_per_s']:.0f} images/s, rendering and writing included) -> {a.out}")
    return 0


def _prepare_freihand_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", help="folder with training_xyz.json, training/rgb/, ...")
    p.add_argument("--out", required=True, help="cache folder to write")
    p.add_argument("--split", default="training", choices=["training", "evaluation"], help="which split")
    p.add_argument("--labels", default="3d", choices=["3d", "2d"], help="2d: keep 2D labels only (weak supervision)")
    p.add_argument("--versions", type=int, nargs="+", help="image versions to include (default: all)")
    p.add_argument("--size", type=int, help="resize the images to this side in px, K and labels following "
                                            "(default: FreiHAND's own 224)")
    p.add_argument("--force", action="store_true", help="replace an existing cache in --out")


def _prepare_freihand(a: argparse.Namespace) -> int:
    from .data.freihand import freihand_to_cache

    print(f"wrote {freihand_to_cache(a.root, a.out, a.split, a.labels, a.versions, overwrite=a.force, size=a.size)}")
    return 0


def _predict_freihand_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder (with checkpoint.pt)")
    p.add_argument("root", help="FreiHAND-layout folder (images, {split}_K.json, {split}_scale.json)")
    p.add_argument("--split", default="evaluation", choices=["training", "evaluation"], help="which split")
    p.add_argument("--out", required=True, help="pred.json to write (FreiHAND's submission format)")
    p.add_argument("--device", default="cpu", help="torch device")


def _predict_freihand(a: argparse.Namespace) -> int:
    from .scoring import predict_freihand
    from .predictions import write_pred_json

    xyz = predict_freihand(a.run, a.root, a.split, a.device)
    print(f"wrote {write_pred_json(a.out, xyz)} ({len(xyz)} samples; vertices are zeros: joints only)")
    return 0


def _train_args(p: argparse.ArgumentParser) -> None:
    from .train import PRESETS

    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="network size and schedule")
    p.add_argument("--config", help="YAML / JSON config file (its keys override the preset; its preset: wins)")
    p.add_argument("--source", help="3D-labelled prepared cache")
    p.add_argument("--weak", help="2D-only prepared cache (weak supervision)")
    p.add_argument("--name", help="run name (folder under --out; default: run)")
    p.add_argument("--bmc", action="store_true", help="add the biomechanical losses")
    p.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    p.add_argument("--seed", type=int, help="random seed (default: 0)")
    p.add_argument("--limits", help="BMC limits: 'source' (fit on --source), 'default' (literature) or a JSON "
                                    "written by bmc fit-limits (default: source)")
    p.add_argument("--out", help="runs folder (default: data/runs)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")


def _train(a: argparse.Namespace) -> int:
    from .train import load_config, preset, train

    over = {k: v for k, v in (("source", a.source), ("weak", a.weak), ("name", a.name), ("steps", a.steps),
                              ("seed", a.seed), ("out", a.out), ("limits", a.limits)) if v is not None}
    if a.bmc:
        over["use_bmc"] = True
    cfg = load_config(a.config, **over) if a.config else preset(a.preset, **over)
    print(f"trained {train(cfg, device=a.device)}")
    return 0


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder (with checkpoint.pt)")
    p.add_argument("--cache", required=True, help="evaluation cache with 3D labels")
    p.add_argument("--limits", help="limits JSON for the plausibility metric (default: literature)")
    p.add_argument("--results", default="results/runs", help="where metrics.json goes")
    p.add_argument("--device", default="cpu", help="torch device")


def _evaluate(a: argparse.Namespace) -> int:
    from .evaluate import evaluate_run
    from .limits import BMCLimits

    m = evaluate_run(a.run, a.cache, a.results, BMCLimits.load(a.limits) if a.limits else None, a.device)
    print(json.dumps(m, indent=1))
    return 0


def _prepare_rhd_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", help="unpacked RHD folder (with training/ and evaluation/)")
    p.add_argument("--out", required=True, help="cache folder to write")
    p.add_argument("--split", default="training", choices=["training", "evaluation"], help="which split")
    p.add_argument("--size", type=int, default=128, help="crop side in pixels")
    p.add_argument("--labels", default="3d", choices=["3d", "2d"], help="2d: keep 2D labels only (weak supervision)")
    p.add_argument("--force", action="store_true", help="replace an existing cache in --out")


def _prepare_rhd(a: argparse.Namespace) -> int:
    from .data.rhd import rhd_to_cache

    print(f"wrote {rhd_to_cache(a.root, a.out, a.split, a.size, a.labels, a.force)}")
    return 0


def _prepare_ho3d_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", help="HO-3D folder (with train.txt, evaluation.txt, train/, evaluation/)")
    p.add_argument("--out", required=True, help="cache folder to write")
    p.add_argument("--split", default="train", choices=["train", "evaluation"],
                   help="which split (evaluation: root-only labels)")
    p.add_argument("--size", type=int, default=128, help="crop side in pixels")
    p.add_argument("--force", action="store_true", help="replace an existing cache in --out")


def _prepare_ho3d(a: argparse.Namespace) -> int:
    from .data.ho3d import ho3d_to_cache

    print(f"wrote {ho3d_to_cache(a.root, a.out, a.split, a.size, a.force)}")
    return 0


def _eval_freihand_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", help="FreiHAND-layout folder with {split}_xyz.json")
    p.add_argument("pred", help="pred.json ([xyz_list, verts_list]); 'zero' scores the zero predictor")
    p.add_argument("--split", default="evaluation", choices=["training", "evaluation"], help="ground-truth split")
    p.add_argument("--out", default=".", help="folder for scores.txt and pck.png")


def _eval_freihand(a: argparse.Namespace) -> int:
    import numpy as np

    from .data.freihand import read_split
    from .scoring import freihand_keypoint_scores, write_freihand_report
    from .predictions import read_pred_json

    gt = read_split(a.root, a.split)["xyz"]
    if gt is None:
        raise ValueError(f"{a.root}: no {a.split}_xyz.json (FreiHAND's 2022 evaluation archive has it)")
    pred = np.zeros_like(gt) if a.pred == "zero" else read_pred_json(a.pred)[0]
    if pred.shape != gt.shape:
        raise ValueError(f"{a.pred}: field 'xyz_list': {len(pred)} predictions for {len(gt)} ground-truth "
                         f"samples of {a.root} ({a.split})")
    scores = freihand_keypoint_scores(gt, pred, return_curves=True)
    zero = freihand_keypoint_scores(gt, np.zeros_like(gt), return_curves=True)
    path = write_freihand_report(scores, a.out, "prediction" if a.pred != "zero" else "zero", zero)
    for k in ("xyz_mean3d", "xyz_auc3d", "xyz_al_mean3d", "xyz_al_auc3d"):
        print(f"{k}: {scores[k]:.4f}   (zero predictor: {zero[k]:.4f})")
    print(f"wrote {path} and {Path(a.out) / 'pck.png'}")
    return 0


def _fit_limits_args(p: argparse.ArgumentParser) -> None:
    from .limits import DEFAULT_COVERAGE

    p.add_argument("data", help="a prepared cache folder (its 3D-labelled samples) or a .npy of (N, 21, 3) joints")
    p.add_argument("--out", required=True, help="limits JSON to write")
    p.add_argument("--coverage", type=float, default=DEFAULT_COVERAGE, help="share of each joint's points inside its polygon")
    p.add_argument("--margin", type=float, default=0.0, help="dilate polygons by this many radians")
    p.add_argument("--interval-coverage", type=float, default=1.0,
                   help="share of the lengths / root angles / curvatures inside their intervals (1.0: min..max; "
                        "benchmark v2 uses 0.99 with --coverage 0.99)")
    p.add_argument("--figure", help="hull figure path (default: next to --out, .png)")


def _fit_limits(a: argparse.Namespace) -> int:
    import numpy as np

    from .audit import plot_limits
    from .limits import BMCLimits

    path = Path(a.data)
    if path.is_dir():
        from .data.cache import PreparedCache

        c = PreparedCache(path)
        joints = c.annotations["xyz"][c.annotations["has_3d"]].astype(np.float64)
        if len(joints) == 0:
            raise ValueError(f"{path}: no 3D-labelled samples")
    else:
        if not path.is_file():
            raise FileNotFoundError(f"no such file or folder: {path}")
        joints = np.load(path, allow_pickle=False)
    try:
        limits = BMCLimits.fit(joints, coverage=a.coverage, margin=a.margin, interval_coverage=a.interval_coverage,
                               source=str(path))
    except ValueError as e:
        raise ValueError(f"{a.data}: {e}") from None
    out = limits.save(a.out)
    fig = plot_limits(limits, joints, a.figure or Path(a.out).with_suffix(".png"))
    print(limits.summary())
    print(f"wrote {out} and {fig}")
    return 0


def _audit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pred", help="FreiHAND pred.json (or a plain list of poses), an .npz (array xyz, or --key) or "
                                ".npy of (N, 21, 3) joints, or MediaPipe Hands output saved as JSON (--format mediapipe); "
                                "poses with a NaN / inf are counted and left out of every rate")
    p.add_argument("--key", help="the joints' array in an .npz (default: xyz, or the file's only array)")
    p.add_argument("--format", default="auto", choices=["auto", "freihand", "mediapipe"],
                   help="how to read a .json (auto: MediaPipe when it has MediaPipe's fields)")
    p.add_argument("--order", default="f", choices=["f", "mano"],
                   help="joint order of an array: f (FreiHAND / MediaPipe) or mano (MANO's 16 joints + 5 tips)")
    p.add_argument("--limits", help="limits JSON (default: literature limits)")
    p.add_argument("--out", default="audit", help="folder for audit.md, audit.csv and audit.html")
    p.add_argument("--worst", type=int, default=10, help="how many of the worst samples to list")
    p.add_argument("--side", choices=["right", "left", "auto"], default="auto",
                   help="handedness of the poses (left hands are mirrored into right ones first); auto: from the "
                        "file's handedness field (MediaPipe), else right")
    p.add_argument("--tol-deg", type=float, default=5.0, help="tolerance for joint angles and palm angles (degrees)")
    p.add_argument("--tol-pct", type=float, default=10.0,
                   help="tolerance for bone lengths (%% of the bone) and palm curvatures (%% of their range)")


def _audit(a: argparse.Namespace) -> int:
    import numpy as np

    from . import skeleton as sk
    from .audit import audit, audit_sides, write_audit
    from .predictions import load_predictions, read_mediapipe
    from .limits import BMCLimits

    if a.worst < 0:
        raise ValueError(f"--worst: expected an integer >= 0, got {a.worst}")
    limits = BMCLimits.load(a.limits) if a.limits else None
    tol = {"deg": a.tol_deg, "% length": a.tol_pct, "% range": a.tol_pct}
    path = Path(a.pred)
    mediapipe = a.format == "mediapipe" or (a.format == "auto" and path.suffix == ".json" and path.is_file()
                                            and "handedness" in path.read_text(errors="replace")[:100_000])
    if mediapipe:
        xyz, sides = read_mediapipe(path)
        if a.side != "auto":
            sides = [a.side] * len(xyz)
        result = audit_sides(xyz, sides, limits, tol)
    else:
        xyz = load_predictions(path, key=a.key, non_finite="keep")
        if a.order == "mano":
            xyz = sk.from_mano(xyz)
        if not np.isfinite(xyz).all(axis=(1, 2)).any():
            raise ValueError(f"{path}: field 'xyz': none of the {len(xyz)} poses is finite (every one has a NaN / inf)")
        result = audit(xyz, limits, side="right" if a.side == "auto" else a.side, tolerance=tol)
        result["order_hint"] = _order_hint(xyz, a.order, result, limits, tol)
    report = write_audit(result, a.out, path.name, a.worst, pred_path=a.pred)
    print(f"{result['n']} poses ({result['side']} hands): {100 * result['implausible_poses_tol']:.1f}% with a term outside "
          f"by more than {a.tol_deg:g} deg / {a.tol_pct:g}% ({100 * result['implausible_poses']:.1f}% outside at all), "
          f"{100 * result['implausible_joints_tol']:.1f}% of joint-angle terms outside by more than {a.tol_deg:g} deg"
          + (f"; {result['non_finite']} poses not finite, left out of every rate" if result["non_finite"] else "")
          + f"; wrote {report}, audit.csv, audit.html and audit_samples/ (each worst sample in the inspector's view)")
    if result["degenerate"]:
        print(f"bmc audit: warning: degenerate (zero-width) limit intervals: {', '.join(result['degenerate'])}",
              file=sys.stderr)
    if result["side_hint"]:
        print(f"bmc audit: {result['side_hint']}", file=sys.stderr)
    if result.get("order_hint"):
        print(f"bmc audit: {result['order_hint']}", file=sys.stderr)
    return 0


def _order_hint(xyz, order: str, result: dict, limits, tol) -> str:
    """A warning when the poses look like the other joint order: the share of joint-angle terms
    outside the limits after re-reading them in that order (at most 2,000 poses) against now."""
    import numpy as np

    from . import skeleton as sk
    from .audit import audit

    sample = xyz[np.isfinite(xyz).all(axis=(1, 2))][:2000]
    if not len(sample):
        return ""
    # read as F, the alternative is the raw joints read as MANO; read as MANO (xyz = from_mano(raw)),
    # it is the raw joints read as F
    other = sk.from_mano(sample) if order == "f" else sk.to_mano(sample)
    alt = audit(other, limits, side=result["side"], tolerance=tol)["implausible_joints"]
    now = result["implausible_joints"]
    if alt < 0.75 * now - 0.05:
        flip = "mano" if order == "f" else "f"
        return (f"{100 * now:.1f}% of the joint-angle terms are outside in the order read (--order {order}) but "
                f"{100 * alt:.1f}% in the other one: are the joints in {flip} order? (bmc audit --order {flip})")
    return ""


def _refine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pred", help="predictions: FreiHAND pred.json (or a plain list of poses), an .npz (array xyz, or "
                                "--key) or .npy of (N, 21, 3) absolute camera-frame joints in metres")
    p.add_argument("--K", required=True, help="intrinsics of each prediction, in the pixels of the image the model saw "
                                              "(the crop's, for a cropping model): a JSON list of 3x3 (FreiHAND's "
                                              "*_K.json), a .npy of (N, 3, 3), or a prepared cache folder")
    p.add_argument("--out", required=True, help="refined predictions to write (.json: pred.json format; .npz: xyz "
                                                "and the kept 2D projections uv; .npy: xyz)")
    p.add_argument("--key", help="the joints' array in an .npz (default: xyz, or the file's only array)")
    p.add_argument("--order", default="f", choices=["f", "mano"],
                   help="joint order of the input: f (FreiHAND / MediaPipe) or mano (MANO's 16 joints + 5 tips); "
                        "the output keeps it")
    p.add_argument("--limits", help="limits JSON (default: literature limits)")
    p.add_argument("--steps", type=int, default=200, help="Adam steps of the refinement (>= 0)")
    p.add_argument("--prior", type=float, default=0.1, help="weight keeping the depths near the prediction (>= 0)")
    p.add_argument("--side", default="right", choices=["right", "left"], help="left: mirrored before and after")
    p.add_argument("--root", default="prediction", choices=["prediction", "closed_form"],
                   help="where the refined hand sits: the model's own root depth, or the refined pose's closed-form "
                        "root (moves the hand's distance too: helps with accurate 2D, hurts without)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _refine(a: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from . import skeleton as sk
    from .camera import project
    from .losses import BMCLoss
    from .refine import refine_predictions
    from .limits import BMCLimits
    from .predictions import load_intrinsics, load_predictions, write_pred_json, write_predictions

    dest = Path(a.out)  # every option checked before any work
    if dest.suffix not in (".json", ".npz", ".npy"):
        raise ValueError(f"--out {dest}: expected .json, .npz or .npy")
    if a.steps < 0:
        raise ValueError(f"--steps: expected an integer >= 0, got {a.steps}")
    if not np.isfinite(a.prior) or a.prior < 0:
        raise ValueError(f"--prior: expected a finite number >= 0, got {a.prior}")
    limits = BMCLimits.load(a.limits) if a.limits else BMCLimits.default()
    xyz = load_predictions(a.pred, key=a.key, non_finite="keep")
    K = load_intrinsics(a.K)
    if len(K) != len(xyz):
        raise ValueError(f"{a.K}: field 'K': {len(K)} intrinsics for {len(xyz)} predictions in {a.pred}")
    if a.order == "mano":
        xyz = sk.from_mano(xyz)
    if a.side == "left":  # mirror into right hands; K diag(-1, 1, 1) projects them to the same pixels
        xyz, K = sk.mirror_joints(xyz), K * np.array([-1.0, 1.0, 1.0])
    # what cannot be refined stays as given, and is counted: a NaN / inf pose, a joint behind the
    # camera (no ray to move along), a collapsed reference bone (no scale)
    finite = np.isfinite(xyz).all(axis=(1, 2))
    front = finite & (np.where(finite[:, None], xyz[..., 2], 1.0) > 0).all(axis=1)
    bone = np.linalg.norm(np.diff(xyz[:, list(sk.REFERENCE_BONE)], axis=1)[:, 0], axis=-1)
    ok = front & (np.where(finite, bone, 0.0) > 1e-9)
    out = xyz.copy()
    bar = None
    if ok.any():
        on_step = None
        if not a.quiet:
            try:
                from .progress import tqdm

                bar = tqdm(total=a.steps * ((int(ok.sum()) + 4095) // 4096), desc="refine", unit="step")
                on_step = lambda done, total: bar.update(1)  # noqa: E731
            except ImportError:  # tqdm comes with the data extra; refine works without it
                pass
        out[ok] = refine_predictions(xyz[ok], K[ok], limits, steps=a.steps, prior=a.prior, root=a.root,
                                     on_step=on_step).numpy()
        if bar is not None:
            bar.close()
    collapsed = ok & ~np.isfinite(out).all(axis=(1, 2))  # diverged: keep the prediction
    out[collapsed] = xyz[collapsed]
    ok &= ~collapsed
    loss = BMCLoss(limits, check=False, reduction="none")

    def plausible(p: np.ndarray) -> tuple[float, float]:
        """(share of poses with every term inside the limits, mean BMC) of the refined ones."""
        if not ok.any():
            return float("nan"), float("nan")
        total = loss(torch.as_tensor(p[ok], dtype=torch.float64)).total
        return float((total <= 1e-9).double().mean()), float(total.mean())

    (before, bmc_before), (after, bmc_after) = plausible(xyz), plausible(out)
    shift = np.linalg.norm(out[ok] - xyz[ok], axis=-1) * 1000 if ok.any() else np.zeros((0, 21))
    uv = None
    if dest.suffix == ".npz":
        uv = np.full(out.shape[:2] + (2,), np.nan)
        uv[front] = project(torch.as_tensor(out[front]), torch.as_tensor(K[front])).numpy()
    if a.side == "left":
        out = sk.mirror_joints(out)
    if a.order == "mano":
        out = sk.to_mano(out)
    if dest.suffix == ".json":
        if not finite.all():
            raise ValueError(f"--out {dest}: {int((~finite).sum())} input poses are not finite, and pred.json (strict "
                             f"JSON) cannot hold NaN; write .npz or .npy")
        write_pred_json(dest, out)
    else:
        write_predictions(dest, out, uv if uv is not None and np.isfinite(uv).all() else None)
    unrefined = int((~ok).sum())
    print(f"{len(out)} poses, {int(ok.sum())} refined ({a.steps} steps, prior {a.prior:g}, root {a.root}): "
          f"mean BMC {bmc_before:.4f} -> {bmc_after:.4f}, plausible (every BMC term inside the limits) "
          f"{100 * before:.1f}% -> {100 * after:.1f}%; joints moved "
          f"{float(shift.mean()) if shift.size else 0.0:.1f} mm on average "
          f"(max {float(shift.max()) if shift.size else 0.0:.1f}); 2D projections kept"
          + (f"; {unrefined} left as given ({int((~finite).sum())} not finite, {int((finite & ~front).sum())} with a "
             f"joint behind the camera, {int((front & ~ok & ~collapsed).sum())} with a collapsed reference bone, "
             f"{int(collapsed.sum())} diverged)" if unrefined else "") + f"; wrote {dest}")
    return 0


def _verify_cache_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("caches", nargs="+", help="prepared cache folders")


def _verify_cache(a: argparse.Namespace) -> int:
    from .data.cache import PreparedCache

    status = 0
    for path in a.caches:
        try:
            c = PreparedCache(path, verify=True)
            images = c.verify_images()
        except (OSError, ValueError) as e:  # report every cache, not only the first bad one
            print(f"bmc verify-cache: {e}", file=sys.stderr)
            status = 2
            continue
        note = "image bytes match their checksum" if images else \
            "no image checksum (written by an older bmclib; convert again to add one)"
        print(f"ok {path}: {len(c)} samples of {c.size} px, {int(c.annotations['has_3d'].sum())} with 3D labels; "
              f"annotations and labels valid; {note}")
    return status


#: name -> (one-line summary, add_arguments, run); the order of ``bmc -h``
COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "synth": ("render a synthetic domain (FreiHAND layout + prepared caches)", _synth_args, _synth),
    "train": ("train the 2.5D network (presets tiny / cpu / gpu; torchrun for DDP)", _train_args, _train),
    "evaluate": ("evaluate a trained run on a 3D-labelled cache (writes metrics.json)", _evaluate_args, _evaluate),
    "limits": ("show the default limits, or a saved limits file", _limits_args, _limits),
    "fit-limits": ("fit BMC limits to 3D data (a prepared cache or a .npy), with a figure", _fit_limits_args,
                   _fit_limits),
    "audit": ("plausibility audit of predictions against BMC limits", _audit_args, _audit),
    "refine": ("test-time BMC refinement of any model's 3D predictions, keeping their 2D", _refine_args, _refine),
    "prepare-freihand": ("convert a FreiHAND-layout folder into a prepared cache", _prepare_freihand_args,
                         _prepare_freihand),
    "prepare-rhd": ("convert RHD into a prepared cache (right-hand crops)", _prepare_rhd_args, _prepare_rhd),
    "prepare-ho3d": ("convert HO-3D v2 / v3 into a prepared cache", _prepare_ho3d_args, _prepare_ho3d),
    "verify-cache": ("check prepared caches: sizes, checksums of annotations and image bytes, labels",
                     _verify_cache_args, _verify_cache),
    "predict-freihand": ("a trained run's pred.json on a FreiHAND-layout split (for the server or eval-freihand)",
                         _predict_freihand_args, _predict_freihand),
    "eval-freihand": ("score FreiHAND-format predictions like the official benchmark", _eval_freihand_args,
                      _eval_freihand),
}

#: what a command may raise for bad input: reported in one line, exit code 2 (anything else is
#: a bug and keeps its traceback)
USER_ERRORS = (OSError, ValueError, FloatingPointError)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (where it has one) and keeps the descriptions' line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text and action.option_strings:
            d = " ".join(map(str, action.default)) if isinstance(action.default, list) else action.default
            text += f" (default: {d})"
        return text


def _version() -> str:
    from . import __version__

    return f"bmc (bmclib) {__version__}"


def build_parser(only: str | None = None, commands: dict | None = None,
                 description: str = DESCRIPTION) -> argparse.ArgumentParser:
    """The ``bmc`` parser over ``commands`` (default: the library's, :data:`COMMANDS`). ``only``:
    declare the options of that command alone (declaring a command's options imports its
    module: torch, papermill, ...; ``bmc -h`` needs none)."""
    commands = COMMANDS if commands is None else commands
    parser = argparse.ArgumentParser(prog="bmc", description=description, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (summary, add_arguments, _run) in commands.items():
        p = sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                           formatter_class=_Formatter)
        if only is None or name == only:
            add_arguments(p)
    return parser


#: optional packages -> the pyproject extra that installs them (`pip install "bmc-hand[data]"`)
EXTRA_OF = {"scipy": "fit", "matplotlib": "fit", "PIL": "data", "tqdm": "data", "yaml": "data", "pandas": "data",
            "plotly": "notebooks", "ipywidgets": "notebooks", "anywidget": "notebooks", "papermill": "notebooks",
            "nbformat": "notebooks", "playwright": "browser"}


def _missing_extra(name: str, e: ModuleNotFoundError) -> int:
    """Exit 2 naming the extra that installs a missing optional package (re-raise for others)."""
    top = (e.name or "").split(".")[0]
    if top not in EXTRA_OF:
        raise e
    print(f"bmc {name}: needs the optional package {top!r}: pip install \"bmc-hand[{EXTRA_OF[top]}]\" "
          f"(or pip install -e \".[{EXTRA_OF[top]}]\" in a checkout)", file=sys.stderr)
    return 2


def dispatch(name: str, run: Callable, a: argparse.Namespace, extra_errors: tuple = ()) -> int:
    """Run one command: its exit code, or 2 with a one-line message for bad input
    (:data:`USER_ERRORS` and the command's ``extra_errors``) or a missing optional package."""
    try:
        return int(run(a) or 0)
    except ModuleNotFoundError as e:
        return _missing_extra(name, e)
    except USER_ERRORS + tuple(extra_errors) as e:
        print(f"bmc {name}: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None, commands: dict | None = None, extra_errors: dict | None = None,
         description: str = DESCRIPTION) -> int:
    """``bmc``: parse ``argv`` against ``commands`` (default :data:`COMMANDS`) and run the one named.
    ``extra_errors``: command -> further exception types that count as bad input."""
    commands = COMMANDS if commands is None else commands
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((x for x in argv if not x.startswith("-")), None)
    try:  # declaring a command's options imports its module
        parser = build_parser(command if command in commands else "", commands, description)
    except ModuleNotFoundError as e:
        return _missing_extra(command or "", e)
    a = parser.parse_args(argv)
    if a.command is None:  # a bare ``bmc``: the list of commands
        parser.print_help()
        return 0
    return dispatch(a.command, commands[a.command][2], a, (extra_errors or {}).get(a.command, ()))


if __name__ == "__main__":
    raise SystemExit(main())
