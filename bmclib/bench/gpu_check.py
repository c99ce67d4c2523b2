"""A GPU smoke run of the whole pipeline, inside 10 minutes on one GPU.

On a fresh machine with only the repository (``data_scripts/gpu_check.sh`` installs first):
render benchmark v3's two synthetic domains at its test level (the glove) **on the device**, train runs 1-4 of the ``gpu``
preset briefly (ResNet-50 at 128 px, bf16 autocast, channels_last, compiled BMC loss),
evaluate them on target-test, and print images/s, the BMC loss's share of a step and the
peak memory. Everything it measures goes to ``<results>/gpu_check.json`` and ``.md`` with
provenance; the runs' metrics to ``<results>/runs/``.

The numbers of such a short run are a smoke test of the GPU path and its speed, not a
benchmark result: a few hundred steps do not train the network (the full study is
``bmc experiment --preset gpu --benchmark results/benchmark_v3.yaml --level glove``).

    bmc gpu-check                                   # on a GPU: the defaults below
    bmc gpu-check --device cpu --preset tiny --num 64 --num-eval 32 --steps 4   # the CPU test
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

__all__ = ["RUNS", "run_check"]

#: the runs of the check (runs 1-4: the pre-registered test's, and the source-only run)
RUNS = ("1_source3d", "2_target2d", "3_bmc_all", "4_target3d_oracle")


def run_check(device: str | None = None, preset: str = "gpu", num_train: int = 8000, num_eval: int = 1000,
              steps: int = 400, data_root: str = "data/gpu_check", runs_root: str = "data/gpu_check/runs",
              results_root: str = "results/gpu_check", benchmark: str = "results/benchmark_v3.yaml",
              progress: bool = False, level: str | None = None) -> dict:
    """Render, benchmark, train and evaluate; returns the summary written to ``results_root``."""
    from .runs import run_name
    from .timing import format_train_table, run_train
    from .benchmark import load_benchmark
    from .experiment import prepare_data, run_experiment
    from ..train import preset as make_preset
    from ..results import provenance, write_json_atomic, write_text_atomic

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = dev.type == "cuda"
    name = torch.cuda.get_device_name(dev) if cuda else "cpu"
    print(f"torch {torch.__version__} on {name}; preset {preset}; {num_train} + {num_eval} images per domain; "
          f"{steps} steps per run", flush=True)
    phases: dict[str, float] = {}
    t_all = time.perf_counter()

    t0 = time.perf_counter()
    rows = run_train((preset,), steps=5, device=str(dev))
    phases["throughput_s"] = time.perf_counter() - t0
    print(format_train_table(rows), flush=True)

    t0 = time.perf_counter()
    bench = load_benchmark(benchmark)
    look = (level or bench.test.get("level") or bench.levels[0]) if "levels" in bench.data else None
    prepare_data(data_root, preset, make_preset(preset).image_size, progress=progress, benchmark=bench,
                 sizes=(num_train, num_eval), device=str(dev), appearance=look)
    phases["render_s"] = time.perf_counter() - t0
    render_ips = 2 * (num_train + num_eval) / phases["render_s"]
    print(f"rendered {2 * (num_train + num_eval)} images on {dev.type} in {phases['render_s']:.1f} s "
          f"({render_ips:,.0f} images/s, oracle cache included)", flush=True)

    t0 = time.perf_counter()
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    table = run_experiment(preset, seeds=(0,), runs=list(RUNS), data_root=data_root, runs_root=runs_root,
                           results_root=results_root, device=str(dev), progress=progress,
                           overrides={"steps": steps, "warmup": max(1, steps // 10),
                                      "checkpoint_every": steps, "log_every": max(1, steps // 20)},
                           benchmark=benchmark, data_sizes=(num_train, num_eval), level=look)
    phases["train_evaluate_s"] = time.perf_counter() - t0
    peak_train = torch.cuda.max_memory_allocated(dev) / 2 ** 30 if cuda else None

    runs = {}
    for run in RUNS:
        d = Path(results_root, "runs", run_name(preset, run, 0, bench.run_bench_name(look)))
        m = json.loads((d / "metrics.json").read_text())["metrics"]
        log = Path(runs_root) / d.name / "train_log.jsonl"
        speeds = [json.loads(x)["images_per_s"] for x in log.read_text().splitlines()[1:] if x.strip()] \
            if log.is_file() else []
        runs[run] = {"epe_2d_px": m["epe_2d_px"], "depth_mm": m["depth_mm"], "depth_norm_mm": m.get("depth_norm_mm"),
                     "epe_3d_mm": m["epe_3d_mm"],
                     "abs_3d_depth_part_mm": m.get("abs_3d_depth_part_mm"),
                     "train_images_per_s_median": sorted(speeds)[len(speeds) // 2] if speeds else None}
    phases["total_s"] = time.perf_counter() - t_all
    summary = {"device": name, "preset": preset, "num_train": num_train, "num_eval": num_eval, "steps": steps,
               "throughput": rows, "runs": runs, "phases": phases, "render_images_per_s": render_ips,
               "peak_memory_gb_training": peak_train, "table": str(table)}
    out = Path(results_root)
    write_json_atomic(out / "gpu_check.json", {"summary": summary, "provenance": provenance(
        made_by="bmc gpu-check", preset=preset, device_name=name, seed=0)})
    lines = [f"# GPU check: {name}, preset {preset}", "",
             f"{num_train} + {num_eval} synthetic images per domain rendered on {dev.type} "
             f"({render_ips:,.0f} images/s{f', {look} level' if look else ''}); runs 1-4 of benchmark {bench.name}, "
             f"{steps} steps each (a smoke test of the GPU path, not a trained network).", "",
             format_train_table(rows), "",
             "| run | 2D EPE (px) | normalised depth (mm) | depth (mm) | 3D EPE (mm) | abs. depth part (mm) | "
             "training images/s (median) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for run, r in runs.items():
        ips = "" if r["train_images_per_s_median"] is None else f"{r['train_images_per_s_median']:,.0f}"
        dp = "" if r["abs_3d_depth_part_mm"] is None else f"{r['abs_3d_depth_part_mm']:.2f}"
        dn = "" if r["depth_norm_mm"] is None else f"{r['depth_norm_mm']:.2f}"
        lines.append(f"| {run} | {r['epe_2d_px']:.2f} | {dn} | {r['depth_mm']:.2f} | {r['epe_3d_mm']:.2f} | {dp} | {ips} |")
    lines += ["", "Wall time: " + ", ".join(f"{k[:-2].replace('_', ' ')} {v:.0f} s" for k, v in phases.items())
              + (f"; peak memory while training {peak_train:.2f} GB" if peak_train is not None else "") + "."]
    write_text_atomic(out / "gpu_check.md", "\n".join(lines) + "\n")
    print("\n".join(lines[4:]), flush=True)
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return summary


def add_cli_arguments(p) -> None:
    from ..train import PRESETS

    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--preset", default="gpu", choices=sorted(PRESETS), help="training preset")
    p.add_argument("--num", type=int, default=8000, help="training images per domain")
    p.add_argument("--num-eval", type=int, default=1000, help="evaluation images per domain")
    p.add_argument("--steps", type=int, default=400, help="training steps per run")
    p.add_argument("--data", default="data/gpu_check", help="where the synthetic data and runs go")
    p.add_argument("--results", default="results/gpu_check", help="summary, metrics and table")
    p.add_argument("--benchmark", default="results/benchmark_v3.yaml", help="the benchmark's data and loss settings")
    p.add_argument("--level", help="its data level (default: the level of its test)")
    p.add_argument("--progress", action="store_true", help="progress bars")


def cli_main(a) -> int:
    run_check(a.device, a.preset, a.num, a.num_eval, a.steps, a.data, str(Path(a.data) / "runs"), a.results,
              a.benchmark, a.progress, a.level)
    return 0
