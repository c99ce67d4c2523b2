"""The keypoint lifter's fixed runs for one seed (benchmark v1's lifting study, notebook 03).

Runs (all evaluated on target-test with full 3D, inputs with ``noise_px`` pixel noise):
    source3d          L1 on z_rel of source samples
    source3d_refine   source3d, then test-time refinement: each pose's depths moved into the
                      BMC limits while its 2D projection stays fixed (:func:`bmclib.refine.refine`)
    target2d_bmc      + target 2D-only samples, BMC on the lifted 3D of every sample whose
                      closed-form root exists (see below)
    target2d_bmc_unguarded    the same with BMC on every lifted pose, valid or not
    target2d_bmc_literature   target2d_bmc with the literature limits (``BMCLimits.default()``)
    target3d_oracle   + target samples with their 3D labels (an upper bound)

``target2d_bmc_unguarded`` keeps BMC on every lifted pose, without :func:`bmclib.losses.guarded_bmc`, for comparison.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .runs import run_name
from ..lifting import RUNS, KeypointSet, LiftingConfig, evaluate_lifter, make_sets, predict_depths, train_lifter
from ..refine import refine
from ..limits import DEFAULT_COVERAGE, BMCLimits

__all__ = ["run_lifting"]



def run_lifting(cfg: LiftingConfig, runs: tuple[str, ...] = RUNS, results_root: str | Path = "results",
                progress: bool = True, sets: dict[str, KeypointSet] | None = None) -> dict[str, dict[str, Any]]:
    """Every lifting run for one seed: writes ``results/runs/lifting_<preset>_<run>_seed<k>/metrics.json``
    (and the training log next to it); returns ``{run: {"metrics": ..., "log": ..., "z": ...}}``.
    ``sets`` (from :func:`make_sets` with the same config) saves generating them again."""
    from ..evaluate import write_metrics
    from ..results import write_json_atomic

    sets = make_sets(cfg) if sets is None else sets
    limits = BMCLimits.fit(sets["source"].xyz.double(), coverage=DEFAULT_COVERAGE, source="fit: lifting source domain 3D")
    out: dict[str, dict[str, Any]] = {}
    base_model = None
    for run in runs:
        if run == "source3d_refine":
            if base_model is None:
                base_model, _ = train_lifter(cfg, sets, "source3d", progress=progress)
            z = refine(predict_depths(base_model, sets["test"]), sets["test"].uv, sets["test"].K, limits,
                       cfg.refine_steps, cfg.refine_lr, cfg.refine_prior)
            log: list[dict[str, float]] = []
        else:
            model, log = train_lifter(cfg, sets, run, limits, progress=progress)
            if run == "source3d":
                base_model = model
            z = predict_depths(model, sets["test"])
        metrics = evaluate_lifter(z, sets["test"], limits)
        name = run_name(cfg.preset, run, cfg.seed, lifting=True)
        write_metrics(name, metrics, Path(results_root) / "runs", config={**cfg.to_dict(), "run": run},
                      preset=cfg.preset, seed=cfg.seed, steps=cfg.steps,
                      data={"generator": "bmclib.data.synth.sample_keypoints", "source": "source", "target": "target",
                            "noise_px": cfg.noise_px})
        if log:
            write_json_atomic(Path(results_root) / "runs" / name / "train_log.json", log)
        out[run] = {"metrics": metrics, "log": log, "z": z}
    return out
