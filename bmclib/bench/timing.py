"""Throughput benchmark of the BMC loss and the decomposition (prints a table; not a test).

Run ``bmc bench``. Each figure is the median over
``--repeats`` timed rounds of poses/s, after warm-up, measured side by side in one
process (the loss variants in interleaved rounds; "x autograd" is the ratio of medians
against ``BMCLoss(fused=False)`` at the same batch); ``--json`` writes the table with its
provenance. The loss rows use the default settings (input validation on); "first call"
includes any compilation.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import skeleton as sk
from ..biomech import decompose
from ..handmodel import random_poses
from ..losses import BMCLoss
from ..results import provenance, write_json_atomic, write_text_atomic

__all__ = ["time_it", "run"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn: Callable[[], object], device: torch.device, min_time: float = 0.2, repeats: int = 7,
            warmup: int = 3) -> list[float]:
    """Seconds per call of ``fn``, one figure per round (each round >= ``min_time`` s)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    one = max(time.perf_counter() - t0, 1e-6)
    n = max(1, int(min_time / one))
    out = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        _sync(device)
        out.append((time.perf_counter() - t0) / n)
    return out


def run(batches=(32, 256, 4096), devices=("cpu",), repeats: int = 7, min_time: float = 0.2,
        compile: bool = True) -> list[dict]:
    """Forward + backward of each form of the loss, timed in interleaved rounds (round r of every
    variant before round r + 1 of any), so that a shared machine's drift reaches all of them alike."""
    rows = []
    for dev_name in devices:
        device = torch.device(dev_name)
        variants = {"halfplane, autograd": BMCLoss(fused=False), "exact": BMCLoss(angle_distance="exact")}
        if device.type == "cpu":  # the hand-written backward is for CPU tensors
            variants = {"halfplane, fused": BMCLoss(), **variants}
        if compile:
            variants["halfplane, torch.compile"] = BMCLoss(compile=True)
        for b in batches:
            joints = random_poses(b).to(device).requires_grad_(True)
            steps, first, secs = {}, {}, {}
            for name, loss in variants.items():
                loss.to(device)

                def step(loss=loss):
                    joints.grad = None
                    loss(joints).total.backward()

                t0 = time.perf_counter()
                step()  # the first call compiles
                _sync(device)
                steps[name], first[name], secs[name] = step, time.perf_counter() - t0, []
            for _ in range(repeats):
                for name, step in steps.items():
                    secs[name] += time_it(step, device, min_time, repeats=1, warmup=1)
            base = statistics.median(secs["halfplane, autograd"])
            for name in steps:
                med = statistics.median(secs[name])
                rows.append({"what": f"BMCLoss fwd+bwd ({name})", "device": dev_name, "batch": b,
                             "first_call_s": first[name], "poses_per_s": b / med, "median_ms": 1e3 * med,
                             "vs_autograd": base / med})
        for b in batches:
            joints = random_poses(b).to(device)
            with torch.no_grad():
                secs = time_it(lambda: decompose(joints, check=False), device, min_time, repeats)
            rows.append({"what": "decompose (no grad)", "device": dev_name, "batch": b, "first_call_s": None,
                         "poses_per_s": b / statistics.median(secs), "median_ms": 1e3 * statistics.median(secs),
                         "vs_autograd": None})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["| what | device | batch | poses/s (median) | ms / call | x autograd | first call (s) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        first = "" if r["first_call_s"] is None else f"{r['first_call_s']:.2f}"
        ratio = "" if r.get("vs_autograd") is None else f"{r['vs_autograd']:.2f}"
        lines.append(f"| {r['what']} | {r['device']} | {r['batch']} | {r['poses_per_s']:,.0f} | "
                     f"{r['median_ms']:.3f} | {ratio} | {first} |")
    return "\n".join(lines)



def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``bmc bench``."""
    p.add_argument("what", nargs="?", choices=["loss", "synth", "train", "jobs", "freihand"], default="loss",
                   help="loss: BMC loss and decomposition (default); synth: synthetic data generation; "
                        "train: training throughput per preset; jobs: CPU throughput of concurrent training "
                        "processes (bmc experiment --jobs); freihand: FreiHAND scoring speed")
    p.add_argument("--preset", default="cpu", help="jobs: the training preset")
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="jobs: process counts to compare")
    p.add_argument("--steps", type=int, default=60, help="jobs: timed steps per process and round")
    p.add_argument("--num", type=int, default=1024, help="synth: images per domain")
    p.add_argument("--size", type=int, default=128, help="synth: image side")
    p.add_argument("--batch", type=int, nargs="+", default=[32, 256, 4096], help="loss: batch sizes")
    p.add_argument("--device", nargs="+", default=None, help="default: cpu, and cuda when available")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default: loss 7, jobs 3)")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds per timed round")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows (they compile ~1 min)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows and provenance here (and a .md)")


def cli_main(a: argparse.Namespace) -> int:
    """``bmc bench`` with parsed options."""
    if a.threads:
        torch.set_num_threads(a.threads)
    devices = a.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if a.what == "freihand":
        rows = run_freihand()
        table, config = format_freihand_table(rows), {"n": 3960}
    elif a.what == "synth":
        rows = [r for d in devices for r in run_synth(a.num, a.size, None if d == "cpu" else d)]
        table, config = format_synth_table(rows), {"num": a.num, "size": a.size, "devices": devices}
    elif a.what == "jobs":
        rows = run_jobs(a.preset, a.jobs, a.steps, repeats=a.repeats or 3)
        table, config = format_jobs_table(rows), {"preset": a.preset, "jobs": a.jobs, "steps": a.steps}
    elif a.what == "train":
        from ..train import PRESETS

        # the gpu preset (ResNet-50 at 128 px) takes minutes a step on a small CPU: CUDA only
        rows = [r for d in devices for r in run_train([p for p in PRESETS if d != "cpu" or p != "gpu"], device=d)]
        table, config = format_train_table(rows), {"devices": devices}
    else:
        rows = run(a.batch, devices, a.repeats or 7, a.min_time, compile=not a.no_compile)
        table = format_table(rows)
        config = {"batches": a.batch, "devices": devices, "repeats": a.repeats or 7, "min_time": a.min_time,
                  "compile": not a.no_compile}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {platform.processor() or platform.machine()}")
    print(table)
    if a.json:
        prov = provenance(config=config)
        write_json_atomic(a.json, {"rows": rows, "provenance": prov})
        md = a.json.with_suffix(".md")
        write_text_atomic(md, f"{table}\n\nMade by `bmc bench {a.what}` on {prov['device']} "
                              f"({prov['cpu_threads']} CPU threads), torch {prov['torch']}, "
                              f"commit {prov['git_commit']}, {prov['time']}.\n")
        print(f"wrote {a.json} and {md}")
    return 0



def run_synth(num: int = 1024, size: int = 128, device: str | None = None) -> list[dict]:
    """Synthetic data throughput: rendering alone, and the whole pipeline to disk
    (render, JPEG-encode the FreiHAND layout, convert to a prepared cache), per domain."""
    import tempfile

    from ..data.synth import generate_batch, generate_dataset

    rows = []
    for domain in ("source", "target"):
        g = torch.Generator().manual_seed(0)
        generate_batch(domain, 64, size, g, device)  # warm-up
        t0 = time.perf_counter()
        for _ in range(max(1, num // 64)):
            generate_batch(domain, 64, size, g, device)
        secs = time.perf_counter() - t0
        rows.append({"what": f"{domain}: sample + render (batch 64)", "device": device or "cpu", "size": size,
                     "images": 64 * max(1, num // 64), "images_per_s": 64 * max(1, num // 64) / secs})
        with tempfile.TemporaryDirectory() as tmp:
            s = generate_dataset(f"{tmp}/d", domain, num, 0, seed=0, size=size, device=device, progress=False)
        rows.append({"what": f"{domain}: whole pipeline to disk", "device": device or "cpu", "size": size,
                     "images": num, "images_per_s": s["images_per_s"]})
    return rows


def format_synth_table(rows: list[dict]) -> str:
    lines = ["| what | device | image | images | images/s |", "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['what']} | {r['device']} | {r['size']}x{r['size']} | {r['images']} | "
                     f"{r['images_per_s']:,.0f} |")
    return "\n".join(lines)



def _train_step(name: str, dev: torch.device, overrides: dict | None = None):
    """``step(use_bmc)``: one forward, backward and optimiser step of preset ``name`` on a fixed
    batch of random images of the preset's size, laid out as a weakly supervised run's step
    (``batch_size`` + ``batch_weak`` samples, benchmark v2's ``equal``: twice the batch size),
    with the preset's AMP, channels_last and (compiled) BMC loss on CUDA."""
    from ..camera import project
    from ..data.loader import Batch
    from ..limits import BMCLimits
    from ..model import HandPoseNet
    from ..train import make_bmc_loss, compute_losses, preset

    cfg = preset(name, **(overrides or {}))
    model = HandPoseNet(cfg.model).to(dev)
    cuda = dev.type == "cuda"
    if cuda and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    B, S = 2 * cfg.batch_size, cfg.image_size
    g = torch.Generator().manual_seed(0)
    K = torch.tensor([[S * 4.0, 0, S / 2], [0, S * 4.0, S / 2], [0, 0, 1]]).expand(B, 3, 3)
    joints = random_poses(B) + torch.tensor([0.0, 0.0, 0.6])
    has_3d = torch.arange(B) < cfg.batch_size
    batch = Batch(torch.rand(B, 3, S, S, generator=g), project(joints, K), joints, K, has_3d,
                  sk.reference_length(joints)).to(dev)
    images = batch.images.contiguous(memory_format=torch.channels_last) if cuda and cfg.channels_last else batch.images
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and cfg.amp)
    bmc = make_bmc_loss(cfg, BMCLimits.default()).to(dev)

    def step(use_bmc: bool = True):
        with amp:
            out = model(images, batch.K)
        loss = compute_losses(out, batch, cfg, bmc if use_bmc else None)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, cfg


def run_train(presets=("tiny", "cpu", "cpu-long"), steps: int = 5, device: str | None = None,
              overrides: dict | None = None) -> list[dict]:
    """Training throughput per preset (forward, backward and optimiser step of a weakly supervised
    step on random images, after 3 warm-up steps: a compiled BMC loss compiles there), with and
    without the BMC loss, the BMC loss's share of the step time, and the peak memory on CUDA."""
    dev = torch.device(device or "cpu")
    rows = []
    for name in presets:
        step, cfg = _train_step(name, dev, overrides)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        result = {use_bmc: statistics.median(time_it(lambda: step(use_bmc), dev, min_time=0.0, repeats=steps,
                                                     warmup=3)) for use_bmc in (False, True)}
        B = 2 * cfg.batch_size
        rows.append({"preset": name, "device": str(dev), "backbone": f"{cfg.model.backbone} x{cfg.model.width}",
                     "decoder": cfg.model.decoder, "image": cfg.image_size, "batch": B, "images_per_s": B / result[True],
                     "bmc_share": max(0.0, 1 - result[False] / result[True]), "compiled_bmc": cfg.compile_bmc,
                     "peak_mem_gb": torch.cuda.max_memory_allocated(dev) / 2 ** 30 if dev.type == "cuda" else None})
    return rows


def _jobs_worker(name: str, threads: int, steps: int, start, out) -> None:
    torch.set_num_threads(threads)
    step, cfg = _train_step(name, torch.device("cpu"))
    for _ in range(3):  # warm-up
        step()
    start.wait()  # every worker times the same stretch of wall time
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    out.put((time.perf_counter() - t0, steps * cfg.batch_size))


def run_jobs(name: str = "cpu", jobs=(1, 2), steps: int = 60, repeats: int = 3) -> list[dict]:
    """Aggregate CPU training throughput of ``n`` concurrent processes with ``cores / n``
    threads each (what ``bmc experiment --jobs n`` does), for each ``n`` in ``jobs``: images
    of all processes over the slowest one's time; median of ``repeats`` rounds, the values of
    ``n`` interleaved round by round so that a noisy stretch hits them alike."""
    import multiprocessing as mp
    import os

    ctx = mp.get_context("spawn")
    cores = os.cpu_count() or 1
    times: dict[int, list[float]] = {n: [] for n in jobs}
    for _ in range(repeats):
        for n in jobs:
            start, out = ctx.Barrier(n), ctx.Queue()
            procs = [ctx.Process(target=_jobs_worker, args=(name, max(1, cores // n), steps, start, out))
                     for _ in range(n)]
            for pr in procs:
                pr.start()
            res = [out.get() for _ in procs]
            for pr in procs:
                pr.join()
            times[n].append(sum(imgs for _, imgs in res) / max(t for t, _ in res))
    base = statistics.median(times[jobs[0]])
    return [{"preset": name, "jobs": n, "threads_each": max(1, cores // n), "images_per_s": statistics.median(times[n]),
             "all_rounds": times[n], "vs_first": statistics.median(times[n]) / base} for n in jobs]


def format_jobs_table(rows: list[dict]) -> str:
    lines = ["| preset | processes | threads each | images/s (all processes, median) | rounds | vs first row |",
             "|---|---:|---:|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['jobs']} | {r['threads_each']} | {r['images_per_s']:,.1f} | "
                     + ", ".join(f"{x:,.0f}" for x in r["all_rounds"]) + f" | {r['vs_first']:.2f}x |")
    return "\n".join(lines)


def format_train_table(rows: list[dict]) -> str:
    lines = ["| preset | device | backbone | decoder | image | batch (3D + weak) | images/s (with BMC) | "
             "BMC share of step | BMC compiled | peak memory (GB) |", "|---|---|---|---|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        mem = "" if r.get("peak_mem_gb") is None else f"{r['peak_mem_gb']:.2f}"
        lines.append(f"| {r['preset']} | {r['device']} | {r['backbone']} | {r.get('decoder', 'deconv')} | {r['image']} | "
                     f"{r['batch']} | {r['images_per_s']:,.1f} | {100 * r['bmc_share']:.1f}% | "
                     f"{'yes' if r.get('compiled_bmc') else 'no'} | {mem} |")
    return "\n".join(lines)


def run_freihand(n: int = 3960, repeats: int = 5) -> list[dict]:
    """FreiHAND keypoint scoring on ``n`` samples: the vectorised scorer against the
    per-sample loop of the official algorithm, side by side; also their largest difference."""
    import numpy as np

    from ..scoring import freihand_keypoint_scores

    rng = np.random.default_rng(0)
    gt = rng.normal(size=(n, 21, 3)) * 0.05 + [0.0, 0.0, 0.6]
    pred = gt + rng.normal(size=gt.shape) * 0.01
    fast = time_it(lambda: freihand_keypoint_scores(gt, pred), torch.device("cpu"), 0.0, repeats, 1)
    slow = time_it(lambda: freihand_keypoint_scores_loop(gt, pred), torch.device("cpu"), 0.0, max(3, repeats // 2), 0)
    a, b = freihand_keypoint_scores(gt, pred), freihand_keypoint_scores_loop(gt, pred)
    diff = max(abs(a[k] - b[k]) for k in b)
    return [{"what": "per-sample loop (official algorithm)", "n": n, "median_s": statistics.median(slow)},
            {"what": "vectorised (bmclib.scoring)", "n": n, "median_s": statistics.median(fast),
             "speedup": statistics.median(slow) / statistics.median(fast), "max_abs_diff": diff}]


def format_freihand_table(rows: list[dict]) -> str:
    lines = ["| scorer | samples | median s | speed-up | max abs difference |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['what']} | {r['n']} | {r['median_s']:.4f} | {r.get('speedup', 1.0):.1f}x | "
                     f"{r.get('max_abs_diff', 0.0):.1e} |")
    return "\n".join(lines)


def freihand_keypoint_scores_loop(gt_xyz: np.ndarray, pred_xyz: np.ndarray) -> dict:
    """The same scores computed sample by sample, the way the official evaluation script
    does (per-sample alignment with scipy's ``orthogonal_procrustes``, per-keypoint lists).
    Kept as the reference the vectorised version is tested and benchmarked against."""
    from scipy.linalg import orthogonal_procrustes

    from ..scoring import FREIHAND_THRESHOLDS

    per_kp, per_kp_al = [[] for _ in range(gt_xyz.shape[1])], [[] for _ in range(gt_xyz.shape[1])]
    for gt, pred in zip(np.asarray(gt_xyz, dtype=np.float64), np.asarray(pred_xyz, dtype=np.float64)):
        t1, t2 = gt.mean(0), pred.mean(0)
        a, b = gt - t1, pred - t2
        s1, s2 = np.linalg.norm(a) + 1e-8, np.linalg.norm(b) + 1e-8
        R, s = orthogonal_procrustes(a / s1, b / s2)
        aligned = np.dot(b / s2, R.T) * s * s1 + t1
        for j in range(gt.shape[0]):
            per_kp[j].append(np.linalg.norm(gt[j] - pred[j]))
            per_kp_al[j].append(np.linalg.norm(gt[j] - aligned[j]))
    out = {}
    trapezoid = getattr(np, "trapezoid", None) or np.trapz
    for prefix, lists in (("xyz", per_kp), ("xyz_al", per_kp_al)):
        means, aucs = [], []
        for errs in lists:
            errs = np.array(errs)
            means.append(errs.mean())
            pck = [np.mean(errs <= t) for t in FREIHAND_THRESHOLDS]
            aucs.append(trapezoid(pck, FREIHAND_THRESHOLDS) / (FREIHAND_THRESHOLDS[-1] - FREIHAND_THRESHOLDS[0]))
        out[f"{prefix}_mean3d"] = float(np.mean(means)) * 100
        out[f"{prefix}_auc3d"] = float(np.mean(aucs))
    return out
