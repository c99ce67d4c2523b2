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
from typing import Any, Callable

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
    p.add_argument("what", nargs="?", choices=["loss", "synth", "train", "jobs", "freihand", "profile", "parity"],
                   default="loss",
                   help="loss: BMC loss and decomposition (default); synth: synthetic data generation; "
                        "train: training throughput per preset (each on its default compute path), then the CPU "
                        "paths (reference, fast) side by side as whole runs; jobs: CPU throughput of concurrent "
                        "training processes (bmc experiment --jobs); freihand: FreiHAND scoring speed; profile: where "
                        "a training step's time goes, on each CPU path (torch.profiler); parity: the fast path's "
                        "runs (--fast-results) against the committed reference runs, beside the seed spread")
    p.add_argument("--preset", default="cpu", help="jobs: the training preset")
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="jobs: process counts to compare")
    p.add_argument("--steps", type=int, default=60, help="jobs, train (the paths' rows), profile: timed steps per "
                                                          "process and round")
    p.add_argument("--num", type=int, default=1024, help="synth: images per domain")
    p.add_argument("--size", type=int, default=128, help="synth: image side")
    p.add_argument("--batch", type=int, nargs="+", default=[32, 256, 4096], help="loss: batch sizes")
    p.add_argument("--device", nargs="+", default=None, help="default: cpu, and cuda when available")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default: loss 7, jobs 3)")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds per timed round")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows (they compile ~1 min)")
    p.add_argument("--fast-results", default="results/parity",
                   help="parity: where the fast path's runs are (bmc experiment --cpu-path fast --results ...)")
    p.add_argument("--no-paths", action="store_true", help="train: skip the CPU paths' side-by-side whole-run rows")
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
        if "cpu" in devices and not a.no_paths:  # the two CPU compute paths side by side, whole runs
            paths = run_train_paths(jobs=a.jobs[-1], steps=a.steps, repeats=a.repeats or 3)
            table += ("\n\nThe CPU compute paths side by side (benchmark v3's run 3, the real step with data "
                      f"and augmentation, {a.jobs[-1]} processes at once, interleaved rounds of {a.steps} steps):\n\n"
                      + format_train_paths_table(paths))
            rows, config = {"presets": rows, "paths": paths}, {**config, "jobs": a.jobs[-1], "steps": a.steps}
    elif a.what == "parity":
        rows = run_parity(a.fast_results)
        table, config = format_parity_table(rows), {"fast_results": str(a.fast_results)}
    elif a.what == "profile":
        rows = [r for p in ("reference", "fast") for r in run_profile(steps=a.steps, path=p)]
        table, config = format_profile_table(rows), {"steps": a.steps, "threads": torch.get_num_threads()}
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

    from ..train import run_compute_path

    cfg = preset(name, **(overrides or {}))
    path = run_compute_path(cfg, dev)
    model = path.prepare(HandPoseNet(cfg.model).to(dev))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    B, S = 2 * cfg.batch_size, cfg.image_size
    g = torch.Generator().manual_seed(0)
    K = torch.tensor([[S * 4.0, 0, S / 2], [0, S * 4.0, S / 2], [0, 0, 1]]).expand(B, 3, 3)
    joints = random_poses(B) + torch.tensor([0.0, 0.0, 0.6])
    has_3d = torch.arange(B) < cfg.batch_size
    batch = Batch(torch.rand(B, 3, S, S, generator=g), project(joints, K), joints, K, has_3d,
                  sk.reference_length(joints)).to(dev)
    bmc = make_bmc_loss(cfg, BMCLimits.default()).to(dev)

    def step(use_bmc: bool = True):
        out = path.forward(model, batch.images, batch.K)
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


def v3_training_setup(data_root: str = "data/synth", preset_name: str = "cpu", path: str | None = None,
                      benchmark: str | None = None):
    """The caches, config and sampler of benchmark v3's glove-level run 3 (BMC on), as ``bmc experiment``
    builds them (the data is made when missing), for timing the real training step. ``path``: the
    CPU compute path (``reference`` / ``fast``; default: the config's)."""
    from ..data.cache import PreparedCache
    from ..data.loader import MixedSampler
    from ..limits import BMCLimits
    from ..train import batch_layout, preset
    from .benchmark import load_benchmark
    from .checkout import checkout
    from .experiment import prepare_data, source_limits

    bench = load_benchmark(benchmark or checkout("bmc bench") / "results" / "benchmark_v3.yaml")
    base = preset(preset_name)
    data = prepare_data(data_root, preset_name, base.image_size, seed=bench.data_seed, progress=False,
                        benchmark=bench, appearance=bench.test.get("level", bench.levels[0]))
    limits = source_limits(data, bench, base)
    over = {**bench.train_overrides(base.batch_size, base.steps), **({"cpu_path": path} if path else {})}
    cfg = preset(preset_name, **over, use_bmc=True, source=str(data["source"]), weak=str(data["target_2d"]),
                 limits=str(limits))
    src, weak = PreparedCache(cfg.source), PreparedCache(cfg.weak)
    per_step, ratio = batch_layout(cfg, True)
    sampler = MixedSampler((len(src), len(weak)), per_step, ratio, cfg.seed, 0, 1)
    return cfg, (src, weak), sampler, BMCLimits.load(limits), data


def run_profile(steps: int = 20, warmup: int = 3, data_root: str = "data/synth", path: str = "reference",
                eval_images: int = 256) -> list[dict]:
    """Where a training step's time goes (cpu preset, benchmark v3's wiring, BMC on at full weight,
    the real data path), measured by ``torch.profiler`` over ``steps`` steps after ``warmup``: data
    loading, augmentation, the forward pass split by module (backbone, skip decoder, head, the
    2.5D read-out and closed-form root with its MLP), the 2D / depth / root losses, the BMC loss,
    the backward pass, the optimiser; and the evaluation pass (``predict_cache``) over
    ``eval_images`` target-test images. One row per part: milliseconds per step (per image for
    the evaluation) and share."""
    from torch.profiler import ProfilerActivity, profile, record_function

    from ..data.cache import PreparedCache
    from ..data.loader import augment
    from ..evaluate import predict_cache
    from ..model import HandPoseNet
    from ..train import bmc_inputs, bmc_pose, compute_losses, make_bmc_loss, run_compute_path

    cfg, caches, sampler, limits, data = v3_training_setup(data_root, path=path)
    torch.manual_seed(0)
    model = HandPoseNet(cfg.model)
    fast = run_compute_path(cfg, "cpu")
    model = fast.prepare(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    bmc = make_bmc_loss(cfg, limits)
    # the forward, split by module: (first module, last module) of each part
    parts = {"backbone": (model.backbone.conv1, model.backbone.layer4), "skip decoder": (model.upsample,) * 2,
             "head": (model.head,) * 2, "root MLP": (model.refine,) * 2}
    scopes: dict[str, Any] = {}
    for label, (first, last) in parts.items():
        first.register_forward_pre_hook(lambda m, a, label=label: scopes.__setitem__(
            label, record_function(f"forward: {label}").__enter__()))
        last.register_forward_hook(lambda m, a, o, label=label: scopes.pop(label).__exit__(None, None, None))

    def step(i: int) -> None:
        with record_function("data: load"):
            b = sampler.load(1500 + i, caches)
        with record_function("data: augment"):
            b = augment(b, cfg.augment, torch.Generator().manual_seed(i), 0, len(b.images),
                        affine_grid=cfg.cpu_path == "fast")
        with record_function("forward (all)"):
            out = fast.forward(model, b.images, b.K)
        with record_function("BMC loss"):
            bmc(bmc_pose(out, b.K, cfg, bmc.limits, bmc_inputs(out, cfg)))
        with record_function("losses (all, BMC included)"):
            terms = compute_losses(out, b, cfg, bmc, 1.0)
        opt.zero_grad(set_to_none=True)
        with record_function("backward"):
            terms["total"].backward()
        with record_function("optimizer"):
            opt.step()

    for i in range(warmup):
        step(i)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for i in range(steps):
            with record_function("step"):
                step(warmup + i)
        wall = (time.perf_counter() - t0) / steps
    ev = PreparedCache(data["eval"])
    sub = ev if eval_images >= len(ev) else _CacheHead(ev, eval_images)
    t0 = time.perf_counter()
    predict_cache(model, sub, path=fast)
    per_image = (time.perf_counter() - t0) / len(sub)
    totals = {e.key: e.cpu_time_total / 1000 / steps for e in prof.key_averages()}  # ms per step
    step_ms = totals.get("step", 1000 * wall)
    bmc_ms = totals.get("BMC loss", 0.0)  # computed twice above (once alone): the losses' line less it
    forward = totals.get("forward (all)", 0.0)
    named = sum(totals.get(f"forward: {k}", 0.0) for k in parts)
    rows = [("data: load", totals.get("data: load", 0.0)), ("data: augment", totals.get("data: augment", 0.0)),
            *((f"forward: {k}", totals.get(f"forward: {k}", 0.0)) for k in parts),
            ("forward: 2.5D read-out, closed-form root, rest", forward - named),
            ("losses: 2D, depth, root", totals.get("losses (all, BMC included)", 0.0) - bmc_ms),
            ("losses: BMC", bmc_ms), ("backward (all parts)", totals.get("backward", 0.0)),
            ("optimizer", totals.get("optimizer", 0.0))]
    step_ms -= bmc_ms  # the extra BMC call is not part of a training step
    rows.append(("other (zero_grad, Python)", step_ms - sum(v for _, v in rows)))
    out = [{"part": k, "ms_per_step": v, "share": v / step_ms, "path": cfg.cpu_path} for k, v in rows]
    out.append({"part": "training step (all)", "ms_per_step": step_ms, "share": 1.0, "path": cfg.cpu_path,
                "images_per_s": 1000 * len(sampler.load(0, caches).images) / step_ms})
    out.append({"part": f"evaluation pass, per image ({len(sub)} images, batch 64)", "ms_per_step": 1000 * per_image,
                "share": float("nan"), "path": cfg.cpu_path})
    return out


class _CacheHead:
    """The first ``n`` samples of a prepared cache (what :func:`bmclib.evaluate.predict_cache` reads)."""

    def __init__(self, cache, n: int):
        self.cache, self.n = cache, n
        self.images, self.annotations, self.size = cache.images, cache.annotations, cache.size

    def __len__(self) -> int:
        return self.n


def format_profile_table(rows: list[dict]) -> str:
    lines = ["| part | path | ms per step | share of the step |", "|---|---|---:|---:|"]
    for r in rows:
        share = "" if r["share"] != r["share"] else f"{100 * r['share']:.1f}%"
        lines.append(f"| {r['part']} | {r['path']} | {r['ms_per_step']:.2f} | {share} |")
    return "\n".join(lines)


def _round(ctx, n: int, target, args: tuple) -> list[tuple[float, int]]:
    """One timed round: ``n`` processes of ``target(*args, start, out)`` started together (a barrier),
    each putting ``(seconds, images)`` on the queue."""
    start, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, start, out)) for _ in range(n)]
    for pr in procs:
        pr.start()
    res = [out.get() for _ in procs]
    for pr in procs:
        pr.join()
    return res


def _path_worker(path: str, data_root: str, threads: int, steps: int, warmup: int, start, out) -> None:
    """One training process of :func:`run_train_paths`: the real step (data, augmentation, forward,
    losses with BMC, backward, optimiser) of benchmark v3's run 3 on compute path ``path``."""
    torch.set_num_threads(threads)
    from ..data.loader import augment
    from ..model import HandPoseNet
    from ..train import compute_losses, make_bmc_loss, run_compute_path

    cfg, caches, sampler, limits, _ = v3_training_setup(data_root, path=path)
    torch.manual_seed(0)
    cp = run_compute_path(cfg, "cpu")
    model = cp.prepare(HandPoseNet(cfg.model))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    bmc = make_bmc_loss(cfg, limits)

    def step(i: int) -> int:
        b = augment(sampler.load(1500 + i, caches), cfg.augment, torch.Generator().manual_seed(i), 0, None,
                    affine_grid=cfg.cpu_path == "fast")
        terms = compute_losses(cp.forward(model, b.images, b.K), b, cfg, bmc, 1.0)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        opt.step()
        return len(b.images)

    for i in range(warmup):
        step(i)
    start.wait()  # the processes of one round time the same stretch of wall time
    t0 = time.perf_counter()
    images = sum(step(warmup + i) for i in range(steps))
    out.put((time.perf_counter() - t0, images))


def _eval_seconds(path: str, data_root: str, threads: int) -> float:
    """Seconds of the evaluation pass (``predict_cache``) over the whole target-test set on ``path``."""
    from ..data.cache import PreparedCache
    from ..evaluate import predict_cache
    from ..model import HandPoseNet
    from ..train import run_compute_path

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cfg, _, _, _, data = v3_training_setup(data_root, path=path)
        model = HandPoseNet(cfg.model)
        t0 = time.perf_counter()
        predict_cache(model, PreparedCache(data["eval"]), path=run_compute_path(cfg, "cpu"))
        return time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)


def run_train_paths(paths=("reference", "fast"), jobs: int = 2, steps: int = 30, warmup: int = 3, repeats: int = 3,
                    data_root: str = "data/synth") -> list[dict]:
    """The whole-run throughput of each CPU compute path side by side, as ``bmc experiment --jobs``
    trains: ``jobs`` processes at once with ``cores / jobs`` threads each, every one doing the real
    training step of benchmark v3's run 3 (data loading, augmentation, forward, losses and BMC,
    backward, optimiser); the paths interleaved round by round (medians of ``repeats``), then the
    evaluation pass of each path. Per path: images/s of one process and of all, the minutes of one
    cpu-preset run (its 3,000 steps at that rate plus its evaluation) and runs per hour."""
    import multiprocessing as mp
    import os

    from ..train import preset

    cfg = preset("cpu")
    cores = os.cpu_count() or 1
    threads = max(1, cores // jobs)
    v3_training_setup(data_root)  # the data and limits, made once before the workers start
    ctx = mp.get_context("spawn")
    rates: dict[str, list[float]] = {p: [] for p in paths}
    for _ in range(repeats):
        for p in paths:
            res = _round(ctx, jobs, _path_worker, (p, data_root, threads, steps, warmup))
            rates[p].append(statistics.mean(imgs / t for t, imgs in res))  # one process's images/s
    rows = []
    for p in paths:
        per_proc = statistics.median(rates[p])
        ev = _eval_seconds(p, data_root, threads)
        images_per_step = 2 * cfg.batch_size  # the weak runs' step: batch_size 3D + batch_size 2D (v3)
        minutes = (cfg.steps * images_per_step / per_proc + ev) / 60
        rows.append({"path": p, "jobs": jobs, "threads_each": threads, "images_per_s": per_proc,
                     "images_per_s_all": per_proc * jobs, "rounds": rates[p], "eval_s": ev, "run_minutes": minutes,
                     "runs_per_hour": 60 * jobs / minutes})
    for r in rows:
        r["vs_reference"] = r["runs_per_hour"] / rows[0]["runs_per_hour"]
    return rows


def format_train_paths_table(rows: list[dict]) -> str:
    lines = ["| CPU path | processes x threads | images/s per process (median) | rounds | evaluation (s) | "
             "minutes per run (3,000 steps + evaluation) | runs per hour | vs reference |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['path']} | {r['jobs']} x {r['threads_each']} | {r['images_per_s']:.1f} | "
                     + ", ".join(f"{x:.0f}" for x in r["rounds"]) + f" | {r['eval_s']:.1f} | {r['run_minutes']:.1f} | "
                     f"{r['runs_per_hour']:.1f} | {r['vs_reference']:.2f}x |")
    return "\n".join(lines)


PARITY_METRICS = (("depth_norm_mm", "normalised depth (mm)"), ("depth_mm", "root-relative depth (mm)"),
                  ("root_depth_mm", "hand distance (mm)"), ("pa_mpjpe_mm", "PA-MPJPE (mm)"),
                  ("epe_3d_mm", "3D EPE (mm)"), ("epe_2d_px", "2D (px)"))


def run_parity(fast_root: str | Path = "results/parity", ref_root: str | Path = "results", preset: str = "cpu",
               bench: str = "v3-glove") -> list[dict]:
    """Accuracy parity of the fast CPU path: each run trained on it (``fast_root/runs``) against the
    committed run of the same name and seed (``ref_root/runs``, the reference path), metric by metric,
    beside the reference runs' seed-to-seed spread (the standard deviation over every committed seed
    of that run). A difference inside the spread is parity."""
    import json

    from .runs import parse_run_name

    rows = []
    for f in sorted(Path(fast_root, "runs").glob(f"{preset}_{bench}_*_seed*/metrics.json")):
        name = parse_run_name(f.parent.name)
        ref_file = Path(ref_root) / "runs" / f.parent.name / "metrics.json"
        if not ref_file.is_file():
            raise FileNotFoundError(f"{ref_file}: no reference run for {f}")
        fast, ref = json.loads(f.read_text()), json.loads(ref_file.read_text())
        if fast["provenance"]["config"].get("cpu_path") != "fast":
            raise ValueError(f"{f}: not trained on the fast path (config.cpu_path "
                             f"{fast['provenance']['config'].get('cpu_path')!r})")
        seeds = sorted(Path(ref_root, "runs").glob(f"{preset}_{bench}_{name['run']}_seed*/metrics.json"))
        values = {k: [json.loads(p.read_text())["metrics"][k] for p in seeds] for k, _ in PARITY_METRICS}
        for k, label in PARITY_METRICS:
            a, b = fast["metrics"][k], ref["metrics"][k]
            sd = float(np.std(values[k], ddof=1))
            rows.append({"run": name["run"], "seed": name["seed"], "metric": k, "label": label, "fast": a,
                         "reference": b, "difference": a - b, "seed_sd": sd, "seeds_in_sd": len(seeds),
                         "within_sd": abs(a - b) <= sd, "ref_min": float(min(values[k])),
                         "ref_max": float(max(values[k])),
                         "in_range": min(values[k]) <= a <= max(values[k])})
    if not rows:
        raise FileNotFoundError(f"no fast-path runs of {bench} under {Path(fast_root) / 'runs'}")
    return rows


def format_parity_table(rows: list[dict]) -> str:
    lines = ["| run | seed | metric | fast path | reference path (committed) | difference | reference seed sd | "
             "within one sd | reference seeds' range | fast inside it |", "|---|---:|---|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['seed']} | {r['label']} | {r['fast']:.2f} | {r['reference']:.2f} | "
                     f"{r['difference']:+.2f} | {r['seed_sd']:.2f} ({r['seeds_in_sd']} seeds) | "
                     f"{'yes' if r['within_sd'] else '**no**'} | {r['ref_min']:.2f} to {r['ref_max']:.2f} | "
                     f"{'yes' if r.get('in_range') else '**no**'} |")
    n = sum(r["within_sd"] for r in rows)
    k = sum(bool(r.get("in_range")) for r in rows)
    lines += ["", f"{n} of {len(rows)} differences lie within one seed-to-seed standard deviation of the reference "
                  f"runs; {k} of {len(rows)} fast-path values lie inside the range of the reference run's seeds. Two "
                  "paths diverge within the first steps, so a run on the other path is a new draw of the same seed: "
                  "the difference of two independent draws has sd sqrt(2) x the seed sd and lies within one seed "
                  "sd about 52% of the time, as a second reference seed would."]
    return "\n".join(lines)


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
            res = _round(ctx, n, _jobs_worker, (name, max(1, cores // n), steps))
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
