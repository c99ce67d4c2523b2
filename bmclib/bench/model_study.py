"""Choosing the keypoint network on source validation: which head gives BMC an accurate 2D?

BMC judges the 3D pose built from the *predicted* 2D keypoints, so the image network's 2D
error decides whether BMC can help at all (the regime map: the weakly supervised lifter
gains from BMC up to about 3% of the crop). Benchmark v1's ``cpu`` network (a stride-32
ResNet at 64 px, three transposed convolutions on a 2x2 grid, no heatmap supervision)
reached 9-13 px at 64 px. This study trains candidate networks on the **source** domain's
3D labels alone (run 1 of the benchmark, the benchmark's frozen loss settings) and measures
them on the **source evaluation split** (source validation): nothing here looks at
target-test, so the presets it informs stay pre-registered.

``bmc model-study --preset cpu --jobs 2`` trains every candidate (resumable: a finished one
is skipped) and writes ``results/tables/model_study.{csv,md}``, one row per candidate and
step budget: 2D error in px and in % of the crop, root-relative 3D error, images/s.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

__all__ = ["CANDIDATES", "run_study", "study_table"]

#: candidate heads: overrides of the preset's model config and loss (``model`` is a mapping of
#: ModelConfig fields, merged into the preset's)
CANDIDATES: dict[str, dict[str, Any]] = {
    # benchmark v1's head (transposed convolutions on the stride-32 features), at the study's crop
    "deconv": dict(model=dict(decoder="deconv")),
    # skip connections from layer1..layer3: latent heatmaps at 1/4 of the crop see early detail
    "skip": dict(model=dict(decoder="skip")),
    # the same + the auxiliary Gaussian-heatmap loss (off in the paper's configuration)
    "skip_heatmap": dict(model=dict(decoder="skip"), w_heatmap=1.0),
    # twice the channels everywhere (about 2x the compute a crop)
    "skip_heatmap_w0.5": dict(model=dict(decoder="skip", width=0.5), w_heatmap=1.0),
}


def _name(preset: str, candidate: str, steps: int, seed: int, appearance: str = "skin") -> str:
    look = "" if appearance == "skin" else f"{appearance}_"
    return f"study_{preset}_{look}{candidate}_{steps}steps_seed{seed}"


def run_study(preset: str = "cpu", candidates: list[str] | None = None, steps: tuple[int, ...] = (3000,),
              image_size: int | None = None, seed: int = 0, jobs: int = 1, data_root: str = "data/synth",
              runs_root: str = "data/runs", results_root: str = "results", benchmark: str = "results/benchmark_v2.yaml",
              progress: bool = True, device: str | None = None, appearance: str = "skin") -> Path:
    """Train each candidate on source 3D for each step budget and evaluate it on source validation;
    returns the table's path. The benchmark file gives the data (populations) and the loss settings;
    ``appearance`` the rendering (``"skin"``, or ``"glove"``: :data:`bmclib.data.synth.GLOVE_HUES`)."""
    from dataclasses import asdict

    from .benchmark import load_benchmark
    from .experiment import prepare_data, run_jobs, source_limits, trained_steps
    from ..train import preset as make_preset

    candidates = candidates or list(CANDIDATES)
    unknown = set(candidates) - set(CANDIDATES)
    if unknown:
        raise ValueError(f"unknown candidates {sorted(unknown)}; choose from {list(CANDIDATES)}")
    bench = load_benchmark(benchmark)
    base = make_preset(preset)
    size = image_size or base.image_size
    data = prepare_data(data_root, preset, size, progress=progress, benchmark=bench, appearance=appearance)
    src_eval = data["source"].parent / "evaluation"
    limits_path = source_limits(data, bench)
    out_runs = Path(results_root) / "model_study"
    todo = []
    for cand in candidates:
        spec = dict(CANDIDATES[cand])
        model = {**asdict(base.model), **spec.pop("model", {})}
        for n in steps:
            name = _name(preset, cand, n, seed, appearance)
            overrides = {**bench.train_overrides(base.batch_size), **spec}
            cfg = make_preset(preset, **overrides, model=type(base.model)(**model), image_size=size, steps=n,
                              warmup=min(base.warmup, n // 10), name=name, seed=seed, source=str(data["source"]),
                              weak="", out=runs_root)
            if trained_steps(Path(runs_root) / name, cfg) == n and (out_runs / name / "metrics.json").is_file():
                print(f"[skip] {name}: trained and evaluated")
                continue
            todo.append((name, (cfg.to_dict(), str(src_eval), str(out_runs), str(limits_path), True, device)))

    def report(name: str, m: dict[str, Any]) -> None:
        print(f"[done] {name}: 2D {m['epe_2d_px']:.2f} px, 3D {m['epe_3d_mm']:.2f} mm (source validation)", flush=True)

    run_jobs(todo, jobs, progress, report)
    return study_table(preset, results_root, runs_root)


def _earlier_speeds(csv_path: Path, preset: str) -> dict[str, float]:
    """``run name -> images_per_s`` of the table written before (empty when there is none)."""
    import csv

    if not csv_path.is_file():
        return {}
    out = {}
    with open(csv_path) as f:
        for r in csv.DictReader(f):
            try:
                name = _name(preset, r["candidate"], int(r["steps"]), int(r["seed"]),
                             r.get("appearance") or "skin")
                out[name] = float(r["images_per_s"])
            except (KeyError, ValueError, TypeError):
                continue
    return out


def study_table(preset: str, results_root: str = "results", runs_root: str = "data/runs") -> Path:
    """``results/tables/model_study.{csv,md}`` from the study's metrics files (and the training
    logs' images/s, where the runs are still on this machine)."""
    import json

    import pandas as pd

    from ..results import provenance
    from .report import frame_markdown, write_table

    rows = []
    earlier = _earlier_speeds(Path(results_root) / "tables" / "model_study.csv", preset)
    for f in sorted((Path(results_root) / "model_study").glob(f"study_{preset}_*/metrics.json")):
        d = json.loads(f.read_text())
        cfg, m = d["provenance"]["config"], d["metrics"]
        cand = f.parent.name[len(f"study_{preset}_"):].rsplit("_", 2)[0]
        appearance = next((a for a in ("glove", "markers") if cand.startswith(f"{a}_")), "skin")
        cand = cand.removeprefix(f"{appearance}_")
        log = Path(runs_root) / f.parent.name / "train_log.jsonl"
        ips = None
        if log.is_file():
            speeds = [json.loads(x)["images_per_s"] for x in log.read_text().splitlines()[1:] if x.strip()]
            ips = statistics.median(speeds) if speeds else None
        else:  # trained on another machine: keep the figure the table had (measured with its log)
            ips = earlier.get(f.parent.name)
        rows.append({"candidate": cand, "appearance": appearance, "decoder": cfg["model"]["decoder"], "width": cfg["model"]["width"],
                     "crop_px": cfg["image_size"], "heatmap_stride": 32 // 2 ** cfg["model"]["deconv"],
                     "w_heatmap": cfg.get("w_heatmap", 0.0), "steps": cfg["steps"], "seed": cfg["seed"],
                     "epe_2d_px": m["epe_2d_px"], "epe_2d_pct_crop": 100 * m["epe_2d_px"] / cfg["image_size"],
                     "epe_3d_mm": m["epe_3d_mm"], "depth_mm": m["depth_mm"],
                     "images_per_s": ips})
    if not rows:
        raise FileNotFoundError(f"no model-study metrics under {results_root}/model_study for preset {preset!r}")
    df = pd.DataFrame(rows).sort_values(["steps", "epe_2d_px"])
    tables = Path(results_root) / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    prov = provenance(made_by="bmc model-study", preset=preset)
    md = ("# Keypoint network study (source validation)\n\n"
          "Each candidate trained on the source domain's 3D labels alone (run 1 of benchmark v2) and evaluated on "
          "the source evaluation split; target-test is not used. `images_per_s`: median of the training "
          "log (with `--jobs 2` on 2 cores: one thread per run, two runs side by side).\n\n"
          + frame_markdown(df) + "\n\n"
          + f"Made by `bmc model-study` at commit {prov['git_commit']}, {prov['time']}.")
    return write_table(df, tables / "model_study", md)


def add_cli_arguments(p) -> None:
    from ..train import PRESETS

    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS), help="data size and training preset")
    p.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), help="candidates to train (default: all)")
    p.add_argument("--steps", type=int, nargs="+", default=[3000], help="step budgets (one run per budget)")
    p.add_argument("--image-size", type=int, help="crop side in px (default: the preset's)")
    p.add_argument("--appearance", default="skin", choices=("skin", "glove", "markers"),
                   help="the hands' rendering: skin (benchmark v2), the coloured glove, or the glove with joint markers")
    p.add_argument("--seed", type=int, default=0, help="seed of every run")
    p.add_argument("--jobs", type=int, default=1, help="runs at once on the CPU, cores/jobs threads each")
    p.add_argument("--benchmark", default="results/benchmark_v2.yaml", help="data and loss settings")
    p.add_argument("--data", default="data/synth", help="where the synthetic domains are made")
    p.add_argument("--runs-dir", default="data/runs", help="checkpoints and logs")
    p.add_argument("--results", default="results", help="metrics and the table")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")


def cli_main(a) -> int:
    table = run_study(a.preset, a.candidates, tuple(a.steps), a.image_size, a.seed, a.jobs, a.data, a.runs_dir,
                      a.results, a.benchmark, device=a.device, appearance=a.appearance)
    print(Path(table).read_text())
    return 0
