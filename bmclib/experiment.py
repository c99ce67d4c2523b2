"""The synthetic benchmark: does 2D-only data help depth, and how much more with BMC?

Runs (source = 3D labels, target = 2D labels; evaluated on target-test with full 3D):
    1_source3d          source 3D only
    2_target2d          + target 2D
    3a_bmc_bl           + target 2D + BMC (bone lengths only)
    3b_bmc_bl_rb        + target 2D + BMC (bone lengths and root bones)
    3_bmc_all           + target 2D + BMC (all three terms)
    4_target3d_oracle   + target with its 3D labels (an upper bound)

``bmc experiment --preset cpu --seeds 0 1 2`` makes the data if missing, trains and
evaluates every run (skipping finished ones unless ``--force``), and writes
``results/tables/synthetic_benchmark.{csv,md}`` and ``results/figures/synthetic_benchmark_depth.png``.
BMC limits are fitted on the source training set's 3D labels (never on the target).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RUNS", "prepare_data", "run_experiment", "build_table"]

RUNS: dict[str, dict[str, Any]] = {
    "1_source3d": dict(weak=None, use_bmc=False),
    "2_target2d": dict(weak="2d", use_bmc=False),
    "3a_bmc_bl": dict(weak="2d", use_bmc=True, bmc_terms="bl"),
    "3b_bmc_bl_rb": dict(weak="2d", use_bmc=True, bmc_terms="bl+rb"),
    "3_bmc_all": dict(weak="2d", use_bmc=True, bmc_terms="all"),
    "4_target3d_oracle": dict(weak="3d", use_bmc=False),
}
#: synthetic data per training preset: (training, evaluation) images per domain
DATA_SIZES = {"tiny": (128, 32), "cpu": (12000, 1000), "gpu": (100000, 5000)}


def prepare_data(root: str | Path, preset: str, image_size: int, seed: int = 0, progress: bool = True) -> dict[str, Path]:
    """Both domains for a preset (made once), and the target's 3D cache for the oracle run."""
    from .data.freihand import freihand_to_cache
    from .data.synth import generate_dataset

    root = Path(root) / f"{preset}_{image_size}px_seed{seed}"
    n_train, n_eval = DATA_SIZES[preset]
    for i, domain in enumerate(("source", "target")):
        if not (root / domain / "cache" / "evaluation" / "meta.json").is_file():
            generate_dataset(str(root / domain), domain, n_train, n_eval, seed=seed * 10 + i, size=image_size,
                             progress=progress, overwrite=True)
    oracle = root / "target" / "cache" / "training_3d"
    if not (oracle / "meta.json").is_file():
        freihand_to_cache(root / "target", oracle, "training", labels="3d", overwrite=True, progress=progress)
    return {"source": root / "source" / "cache" / "training", "target_2d": root / "target" / "cache" / "training",
            "target_3d": oracle, "eval": root / "target" / "cache" / "evaluation", "root": root}


def run_experiment(preset: str = "cpu", seeds=(0, 1, 2), runs: list[str] | None = None, data_root: str = "data/synth",
                   runs_root: str = "data/runs", results_root: str = "results", force: bool = False,
                   progress: bool = True, device: str | None = None, overrides: dict[str, Any] | None = None) -> Path:
    from .data.cache import PreparedCache
    from .evaluate import evaluate_run
    from .limits import BMCLimits
    from .train import preset as make_preset, resolve_limits, train

    runs = runs or list(RUNS)
    unknown = set(runs) - set(RUNS)
    if unknown:
        raise ValueError(f"unknown runs {sorted(unknown)}; choose from {list(RUNS)}")
    base = make_preset(preset, **(overrides or {}))
    data = prepare_data(data_root, preset, base.image_size, progress=progress)
    # one set of limits for training (BMC runs) and for the plausibility metric of every run
    limits_path = data["root"] / "limits_source.json"
    if not limits_path.is_file():
        resolve_limits(base, PreparedCache(data["source"])).save(limits_path)
    limits = BMCLimits.load(limits_path)
    for seed in seeds:
        for run in runs:
            spec = dict(RUNS[run])
            name = f"{preset}_{run}_seed{seed}"
            metrics_file = Path(results_root) / "runs" / name / "metrics.json"
            if metrics_file.is_file() and not force:
                print(f"[skip] {name}: {metrics_file} exists")
                continue
            weak = {None: "", "2d": str(data["target_2d"]), "3d": str(data["target_3d"])}[spec.pop("weak")]
            cfg = make_preset(preset, **{**(overrides or {}), **spec}, name=name, seed=seed, source=str(data["source"]),
                              weak=weak, limits=str(limits_path), out=runs_root)
            if force:
                (Path(runs_root) / name / "checkpoint.pt").unlink(missing_ok=True)
            train(cfg, device=device, progress=progress)
            m = evaluate_run(Path(runs_root) / name, data["eval"], Path(results_root) / "runs", limits, device or "cpu")
            print(f"[done] {name}: depth {m['depth_mm']:.2f} mm, 3D {m['epe_3d_mm']:.2f} mm, 2D {m['epe_2d_px']:.2f} px")
    return build_table(preset, results_root)


METRICS = [("depth_mm", "depth error (mm)"), ("epe_3d_mm", "3D EPE (mm)"), ("epe_2d_px", "2D EPE (px)"),
           ("pa_mpjpe_mm", "PA-MPJPE (mm)"), ("auc_3d", "AUC 0-50 mm"), ("implausible_poses", "implausible poses")]


def build_table(preset: str, results_root: str = "results") -> Path:
    """Mean +- std over seeds of every run's metrics -> CSV, Markdown, and a figure of depth error."""
    import csv

    from .results import git_commit, write_text_atomic

    root = Path(results_root)
    rows, per_seed = [], {}
    for run in RUNS:
        files = sorted((root / "runs").glob(f"{preset}_{run}_seed*/metrics.json"))
        if not files:
            continue
        ms = [json.loads(f.read_text())["metrics"] for f in files]
        per_seed[run] = [m["depth_mm"] for m in ms]
        row = {"run": run, "seeds": len(ms)}
        for key, _ in METRICS:
            vals = np.array([m[key] for m in ms], dtype=float)
            row[key] = float(vals.mean())
            row[key + "_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        rows.append(row)
    if not rows:
        raise ValueError(f"no metrics for preset {preset!r} under {root / 'runs'}")
    base = next((r for r in rows if r["run"] == "1_source3d"), None)
    for r in rows:
        r["depth_reduction_vs_1_pct"] = (100 * (1 - r["depth_mm"] / base["depth_mm"])) if base else float("nan")
    tables = root / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    csv_path = tables / "synthetic_benchmark.csv"
    keys = list(rows[0])
    tmp = csv_path.with_name(csv_path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(csv_path)
    head = "| run | seeds | " + " | ".join(label for _, label in METRICS) + " | depth reduction vs (1) |"
    lines = [head, "|" + "---|" * (len(METRICS) + 3)]
    for r in rows:
        cells = [f"{r[k]:.3f} ± {r[k + '_std']:.3f}" if k in ("auc_3d", "implausible_poses")
                 else f"{r[k]:.2f} ± {r[k + '_std']:.2f}" for k, _ in METRICS]
        lines.append(f"| {r['run']} | {r['seeds']} | " + " | ".join(cells) + f" | {r['depth_reduction_vs_1_pct']:.1f}% |")
    lines.append(f"\nPreset `{preset}`; mean ± std over seeds; evaluated on target-test (full 3D). "
                 f"Made by `bmc experiment` from `results/runs/{preset}_*/metrics.json` at commit {git_commit()}.")
    write_text_atomic(tables / "synthetic_benchmark.md", "\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.5))
        for i, (run, vals) in enumerate(per_seed.items()):
            ax.bar(i, np.mean(vals), color="#9ecae1")
            ax.scatter(np.full(len(vals), i), vals, color="#08519c", zorder=3, s=14)
        ax.set_xticks(range(len(per_seed)), list(per_seed), rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("root-relative depth error (mm)")
        ax.set_title(f"Synthetic benchmark, preset {preset}: depth error per run (dots: seeds)", fontsize=9)
        fig.tight_layout()
        (root / "figures").mkdir(parents=True, exist_ok=True)
        fig.savefig(root / "figures" / "synthetic_benchmark_depth.png", dpi=120)
        plt.close(fig)
    except ImportError:
        pass
    return tables / "synthetic_benchmark.md"
