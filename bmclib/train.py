"""Weakly supervised training of the 2.5D network with biomechanical constraints.

A run mixes a 3D-labelled prepared cache with a 2D-only one at a set ratio. Losses:
L1 on 2D (every sample), L1 on root-relative depth and on the root depth (3D-labelled
samples), and the BMC losses on every sample's predicted 3D pose; each switchable.
Runs are deterministic on the CPU for a seed, checkpoint atomically every N steps and
resume exactly; under ``torchrun`` they use DistributedDataParallel. The configuration
(:class:`TrainConfig`, the presets, reading and checking configs) lives in :mod:`bmclib.config`;
its names are re-exported here.

Usage::

    bmc train --preset cpu --source DATA/source/cache/training --weak DATA/target/cache/training \\
              --name my_run [--bmc] [--config run.yaml]
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import skeleton as sk
from .camera import from_2p5d, root_depth
from .config import (LEGACY_DEFAULTS, PRESETS, TrainConfig, config_from_dict, load_config, preset, same_config,
                     saved_config, validate_config)
from .data.cache import PreparedCache
from .data.loader import MixedSampler, augment
from .diagnostics import bone_ray_cos, extent_ratio
from .limits import DEFAULT_COVERAGE, BMCLimits
from .losses import BMCLoss, guarded_bmc
from .model import HandPoseNet
from .results import remove_stale_temps
from .validate import load_checkpoint

__all__ = ["TrainConfig", "PRESETS", "preset", "train", "load_config", "config_from_dict", "make_bmc_loss",
           "compute_losses", "same_config", "heatmap_loss", "gaussian_heatmaps",
           "saved_config", "bmc_weight", "bmc_pose", "bmc_inputs", "all_bones_root", "batch_layout", "validate_config", "LEGACY_DEFAULTS", "run_compute_path"]


# ----------------------------------------------------------------------------- losses
def make_bmc_loss(cfg: TrainConfig, limits: BMCLimits) -> BMCLoss:
    """The per-sample BMC loss a run trains with (its lambdas and ``bmc_terms`` ablation)."""
    lam_rb = cfg.lambda_rb if cfg.bmc_terms in ("bl+rb", "all") else 0.0
    lam_a = cfg.lambda_a if cfg.bmc_terms == "all" else 0.0
    validate_config(cfg)
    # fused=False: the autograd path the committed runs were trained with, so that they reproduce to the
    # last digit; the fused default differs by float32 rounding only (bmclib/README.md, "Two paths, one loss")
    return BMCLoss(limits, cfg.lambda_bl, lam_rb, lam_a, reduction="none", check=False, compile=cfg.compile_bmc,
                   fused=False)


def batch_layout(cfg: TrainConfig, has_weak: bool) -> tuple[int, float]:
    """``(samples per step, share from the 3D-labelled set)``. With ``batch_weak`` set, every
    step holds ``batch_size`` 3D-labelled samples plus ``batch_weak`` weak ones, so a run with
    weak data sees exactly the 3D supervision of the 3D-only run; without it (``None``), one
    batch of ``batch_size`` is split by ``ratio_3d``."""
    if not has_weak:
        return cfg.batch_size, 1.0
    if cfg.batch_weak is None:
        return cfg.batch_size, cfg.ratio_3d
    batch = cfg.batch_size + cfg.batch_weak
    return batch, cfg.batch_size / batch


def bmc_weight(cfg: TrainConfig, step: int) -> float:
    """The BMC weight at ``step`` (0-based): 0 before ``bmc_start``, then a linear ramp to 1."""
    if step < cfg.bmc_start:
        return 0.0
    if cfg.bmc_ramp <= 0:
        return 1.0
    return min(1.0, (step - cfg.bmc_start + 1) / cfg.bmc_ramp)


def bmc_inputs(out, cfg: TrainConfig) -> tuple[Tensor, Tensor]:
    """``(uv (B, 21, 2), z_rel (B, 21))`` as BMC sees them, float32, detached as ``bmc_grad`` says:
    ``"maps"`` rebuilds ``z_rel`` from the latent depth maps with the heatmap probabilities
    detached, so BMC's gradient reaches the depth maps and not the 2D read-out directly (it still
    reaches the 2D through the trunk the depth maps share with the heatmaps)."""
    uv = out.uv.detach() if cfg.bmc_grad in ("depth", "maps") else out.uv
    if cfg.bmc_grad == "maps":
        if out.depth_maps is None:
            raise ValueError("bmc_grad='maps' needs the model's latent depth maps (PoseOutput.depth_maps)")
        z = (out.heatmaps.detach().float() * out.depth_maps.float()).sum((2, 3))
        z = z - z[:, :1]
    else:
        z = out.z_rel
    return uv.float(), z.float()


def all_bones_root(uv: Tensor, z_rel: Tensor, K: Tensor, lengths: Tensor) -> Tensor:
    """The root depth ``(B,)`` fitted over all 20 bones: each bone's closed-form root
    (:func:`bmclib.camera.root_depth` with its normalised length ``lengths (20,)``; of its two
    roots the one nearer the reference bone's), averaged with weights equal to the bone's squared
    length in normalised image coordinates (a bone seen end-on says little about the distance).
    A true pose with its true bone lengths gets its true root."""
    from .camera import normalised_coords

    xy = normalised_coords(uv, K)
    ref = root_depth(uv, z_rel, K).detach()
    roots, weights = [], []
    for b, (p, c) in enumerate(sk.BONES):
        hi, lo = root_depth(uv, z_rel, K, bone=(p, c), length=float(lengths[b]), both=True)
        roots.append(torch.where((hi - ref).abs() <= (lo - ref).abs(), hi, lo))
        # a bone whose quadratic has no real root (discriminant clamped: hi == lo) says nothing
        weights.append((xy[:, c] - xy[:, p]).pow(2).sum(-1) * (hi != lo))
    w = torch.stack(weights, 1)
    fit = (torch.stack(roots, 1) * w).sum(1) / w.sum(1).clamp_min(1e-12)
    return torch.where(w.sum(1) > 0, fit, ref).clamp(1.0, 100.0)  # the model's own range of roots


def bmc_pose(out, K: Tensor, cfg: TrainConfig, limits: BMCLimits | None = None,
             inputs: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """The normalised pose ``(B, 21, 3)`` the BMC judges, from :func:`bmc_inputs` and the root
    ``bmc_root`` names: ``"closed_form"`` in the graph (the reference bone has length 1, so BMC
    cannot scale the depths away), ``"detached"`` (the same, without a gradient), ``"all_bones"``
    (:func:`all_bones_root` with ``limits``' mid bone lengths) or ``"model"`` (the network's own
    detached closed form + residual). ``inputs``: :func:`bmc_inputs` computed already."""
    uv, z = inputs if inputs is not None else bmc_inputs(out, cfg)
    K = K.float()
    if cfg.bmc_root in ("closed_form", "detached"):
        root = root_depth(uv, z, K)
        return from_2p5d(uv, z, root.detach() if cfg.bmc_root == "detached" else root, K)
    if cfg.bmc_root == "all_bones":
        if limits is None:
            raise ValueError("bmc_root='all_bones' needs the limits (their bone lengths)")
        mid = torch.as_tensor(np.asarray(limits.bone_length, dtype=np.float64).mean(1), dtype=uv.dtype,
                              device=uv.device)
        return from_2p5d(uv, z, all_bones_root(uv, z, K, mid), K)
    if cfg.bmc_grad in ("depth", "maps"):
        return from_2p5d(uv, z, out.root.detach().float(), K)
    return out.joints_norm.float()


def gaussian_heatmaps(uv: Tensor, size: int, h: int, w: int, sigma: float) -> Tensor:
    """Normalised Gaussians ``(B, J, h, w)`` of ``sigma`` heatmap cells at ``uv (B, J, 2)`` (crop
    pixels, pixel centres at integers; cells as in :func:`bmclib.model.soft_argmax`)."""
    stride_x, stride_y = size / w, size / h
    cx = (uv[..., 0] - (stride_x - 1) / 2) / stride_x  # label in cell units
    cy = (uv[..., 1] - (stride_y - 1) / 2) / stride_y
    xs = torch.arange(w, device=uv.device, dtype=uv.dtype)
    ys = torch.arange(h, device=uv.device, dtype=uv.dtype)
    gx = torch.exp(-0.5 * ((xs - cx[..., None]) / sigma) ** 2)  # (B, J, w)
    gy = torch.exp(-0.5 * ((ys - cy[..., None]) / sigma) ** 2)  # (B, J, h)
    g = gy[..., :, None] * gx[..., None, :]
    return g / g.sum((-2, -1), keepdim=True).clamp_min(1e-30)


def heatmap_loss(prob: Tensor, uv: Tensor, size: int, sigma: float) -> Tensor:
    """Per-sample cross-entropy ``(B,)`` (mean over joints) of the latent heatmaps' spatial
    softmax ``prob (B, J, h, w)`` against Gaussians at the 2D labels ``uv``; its minimum is the
    Gaussians' entropy, not 0."""
    target = gaussian_heatmaps(uv.float(), size, prob.shape[-2], prob.shape[-1], sigma)
    return -(target * torch.log(prob.float().clamp_min(1e-12))).sum((-2, -1)).mean(-1)


def compute_losses(out, batch, cfg: TrainConfig, bmc: BMCLoss | None, bmc_scale: float = 1.0,
                   pulls: bool = False) -> dict[str, Tensor]:
    """Loss terms of one batch; each is a sum over the samples it applies to divided by the
    batch size, so that distributed ranks average to the single-process loss. ``bmc_scale``
    multiplies the BMC total (the warm-up, :func:`bmc_weight`); the logged terms are unscaled.

    The 2D term is the mean absolute error per coordinate in pixels (``loss_2d="px"``) or in
    image widths (``"image"``: there BMC's pull on uv is ~100x the 2D loss's, ``bmc balance``).
    With ``bmc_root="closed_form"`` the BMC applies to poses whose closed-form root exists
    (``|z_9 - z_10| < 1 - root_margin``), plus a hinge pushing the others back
    (:func:`bmclib.losses.guarded_bmc`).

    ``pulls``: also return ``pull_2d`` / ``pull_bmc``, the mean absolute gradient of the
    weighted 2D and BMC terms on the predicted uv, and ``bmc_pull_ratio`` (their ratio) and
    ``bmc_pull_ratio_p90`` (the 90th percentile of the per-sample ratio), for the log."""
    B, S = batch.uv.shape[0], batch.images.shape[-1]
    if B == 0:
        raise ValueError("compute_losses: an empty batch (0 samples) has no loss")
    terms: dict[str, Tensor] = {}
    err = out.uv - batch.uv
    per_2d = (0.5 * err * err if cfg.loss_2d == "px_sq" else err.abs()).mean((1, 2))  # (B,) px (px^2)
    terms["2d"] = per_2d.sum() / B / (S if cfg.loss_2d == "image" else 1)
    has3d = batch.has_3d
    if has3d.any():
        xyz, s = batch.xyz[has3d], batch.scale[has3d]
        z_rel = (xyz[..., 2] - xyz[:, :1, 2]) / s[:, None]
        root = xyz[:, 0, 2] / s
        terms["z"] = (out.z_rel[has3d] - z_rel).abs().mean(1).sum() / B
        terms["root"] = (out.root[has3d] - root).abs().sum() / B
    else:
        zero = out.uv.sum() * 0
        terms["z"], terms["root"] = zero, zero
    total = cfg.w_2d * terms["2d"] + cfg.w_z * terms["z"] + cfg.w_root * terms["root"]
    if cfg.w_heatmap > 0:
        terms["heatmap"] = heatmap_loss(out.heatmaps, batch.uv, S, cfg.heatmap_sigma).sum() / B
        total = total + cfg.w_heatmap * terms["heatmap"]
    bmc_total = None
    if bmc is not None:
        inputs = bmc_inputs(out, cfg)
        r = bmc(bmc_pose(out, batch.K, cfg, bmc.limits, inputs))
        if cfg.bmc_root != "model":  # a root in closed form exists only while |z_9 - z_10| < 1
            bmc_total = guarded_bmc(r.total, inputs[1], cfg.root_margin)
        else:
            bmc_total = r.total.mean()
        terms["bmc"] = bmc_total
        terms["bmc_bl"], terms["bmc_rb"], terms["bmc_a"] = r.bone_length.mean(), r.root_bone.mean(), r.angle.mean()
        if bmc_scale > 0:
            total = total + bmc_scale * bmc_total
    if pulls and bmc_total is not None and out.uv.requires_grad:
        g2d, = torch.autograd.grad(cfg.w_2d * terms["2d"], out.uv, retain_graph=True)
        gb, = torch.autograd.grad(max(bmc_scale, 1e-12) * bmc_total, out.uv, retain_graph=True, allow_unused=True)
        gb = torch.zeros_like(g2d) if gb is None else gb
        a2, ab = g2d.abs().mean((1, 2)), gb.abs().mean((1, 2))  # (B,)
        terms["pull_2d"], terms["pull_bmc"] = a2.mean().detach(), ab.mean().detach()
        terms["bmc_pull_ratio"] = (ab.mean() / a2.mean().clamp_min(1e-30)).detach()
        terms["bmc_pull_ratio_p90"] = torch.quantile(ab / a2.clamp_min(1e-30), 0.9).detach()
    if pulls:  # collapse diagnostics (bmclib.diagnostics): the 2D's size over the labels', bones along rays
        with torch.no_grad():
            terms["extent_ratio"] = extent_ratio(out.uv, batch.uv).median()
            terms["bone_ray_cos"] = bone_ray_cos(out.joints_norm).median()
            if has3d.any():
                terms["bone_ray_cos_true"] = bone_ray_cos(batch.xyz[has3d]).median()
    terms["total"] = total
    return terms


# ----------------------------------------------------------------------------- run
def _distributed() -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _schedule(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def _atomic_save(obj: Any, path: Path) -> None:
    from .results import atomic_path

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def resolve_limits(cfg: TrainConfig, source: PreparedCache | None) -> BMCLimits:
    if cfg.limits == "default":
        return BMCLimits.default()
    if cfg.limits == "source":
        if source is None:
            raise ValueError("limits='source' needs a 3D-labelled source cache")
        xyz = source.annotations["xyz"][source.annotations["has_3d"]]
        if len(xyz) < 3:
            raise ValueError(f"{source.path}: too few 3D-labelled samples to fit limits")
        return BMCLimits.fit(xyz.astype(np.float64), coverage=DEFAULT_COVERAGE, source=f"fit: {source.path}")
    return BMCLimits.load(cfg.limits)


def train(cfg: TrainConfig, device: str | None = None, progress: bool = True, stop_after: int | None = None,
          on_log=None) -> Path:
    """Train (or resume) a run in ``cfg.out/cfg.name``; returns the run folder.

    ``stop_after`` ends the process's work after that many steps of this call (a
    stand-in for a kill, used by the resume test). ``on_log(row)`` is called with every logged
    row and the run's name under ``"run"`` (e.g. to draw live loss curves in a notebook)."""

    validate_config(cfg)
    rank, world = _distributed()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    torch.manual_seed(cfg.seed)
    run_dir = Path(cfg.out) / cfg.name
    if not cfg.source:
        raise ValueError("config.source: a 3D-labelled prepared cache is required")
    source = PreparedCache(cfg.source)
    weak = PreparedCache(cfg.weak) if cfg.weak else None
    for c in (source, weak):
        if c is not None and c.size != cfg.image_size:
            raise ValueError(f"{c.path}: images are {c.size} px, config.image_size is {cfg.image_size}")
    per_step, ratio = batch_layout(cfg, weak is not None)
    sampler = MixedSampler((len(source), len(weak) if weak is not None else None), per_step, ratio, cfg.seed,
                           rank, world)
    path = run_compute_path(cfg, dev)
    model = path.prepare(HandPoseNet(cfg.model).to(dev))
    limits = resolve_limits(cfg, source) if cfg.use_bmc else None
    bmc = make_bmc_loss(cfg, limits).to(dev) if cfg.use_bmc else None
    lock = None
    if rank == 0:  # only now: a run refused for its inputs leaves no folder behind
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock_run(run_dir)  # before anything in the folder is touched: one training per run at a time
        for p in remove_stale_temps(run_dir):  # what a write killed mid-way left
            print(f"[clean] {cfg.name}: removed {p.name}, left by an interrupted write", flush=True)
    try:
        return _train_locked(cfg, dev, rank, world, run_dir, source, weak, per_step, sampler, model, limits, bmc,
                             progress, stop_after, on_log, path)
    finally:
        if lock is not None:
            lock.close()  # releases the lock (the OS releases it too if the process dies)


def run_compute_path(cfg: TrainConfig, device: torch.device | str):
    """The :class:`~bmclib.model.ComputePath` a run of ``cfg`` trains and is evaluated on, on ``device``."""
    from .model import compute_path

    return compute_path(device, cfg.cpu_path, cfg.channels_last, cfg.amp)


def _lock_run(run_dir: Path):
    """An exclusive lock on ``run_dir/.lock`` held by this process until the returned file is
    closed: a second training of the same run (another process) is refused by name, instead of
    both writing one log and one checkpoint. The lock dies with its process: no stale locks."""
    import fcntl

    f = open(run_dir / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip()
        f.close()
        raise RunLockedError(f"{run_dir}: another process is training this run now"
                             + (f" ({holder})" if holder else "") + "; wait for it, or use another --name") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}")
    f.flush()
    return f


class RunLockedError(OSError):
    """A run folder is being trained by another process."""


def _train_locked(cfg, dev, rank, world, run_dir, source, weak, per_step, sampler, model, limits, bmc, progress,
                  stop_after, on_log, path) -> Path:
    """:func:`train`'s loop, with the run folder locked."""
    from .progress import tqdm

    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr)
    else:  # "sgd": validate_config admits only these three
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg))
    start = 0
    ckpt_path = run_dir / "checkpoint.pt"
    if ckpt_path.is_file():
        ck = load_checkpoint(ckpt_path, dev, need=("model", "optimizer", "scheduler", "step", "config"))
        if not same_config(ck["config"], cfg):
            raise ValueError(f"{ckpt_path}: saved with a different config; use another name or delete the folder")
        try:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{ckpt_path}: weights or optimizer state do not fit this run's model "
                             f"({str(e).splitlines()[0][:200]})") from None
        start = ck["step"]
        if start > cfg.steps:
            raise ValueError(f"{ckpt_path}: field 'step' is {start}, beyond the run's {cfg.steps} steps")
        if rank == 0 and start < cfg.steps:
            print(f"[resume] {cfg.name}: from step {start} of {cfg.steps} ({ckpt_path})", flush=True)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    log_path = run_dir / "train_log.jsonl"
    writer = None
    if rank == 0:
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional

            writer = SummaryWriter(str(run_dir / "tb"))
        except Exception:
            writer = None
    if rank == 0 and log_path.exists():
        _truncate_log(log_path, start)  # a resume redoes the steps after the checkpoint: drop their rows
    bar = tqdm(total=cfg.steps, initial=start, desc=cfg.name, unit="step", disable=not progress or rank != 0)
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    t_last = time.perf_counter()
    finite = torch.ones((), dtype=torch.bool, device=dev)
    last_good = last_saved = start
    model.train()
    for step in range(start, end):
        batch = sampler.load(step, (source, weak))
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        batch = augment(batch, cfg.augment, g, rank * per_step, world * per_step,
                        affine_grid=cfg.cpu_path == "fast").to(dev)
        out = path.forward(net, batch.images, batch.K)
        log_now = rank == 0 and ((step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps)
        terms = compute_losses(out, batch, cfg, bmc, bmc_weight(cfg, step) if bmc is not None else 0.0, pulls=log_now)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        # no host sync per step: the flag is read at log and checkpoint steps, before anything is written
        finite = finite & torch.isfinite(terms["total"].detach())
        opt.step()
        sched.step()
        done = step + 1
        if (done % cfg.log_every == 0 or done % cfg.checkpoint_every == 0 or done == cfg.steps) \
                and not bool(finite):
            bar.close()
            raise FloatingPointError(
                f"{run_dir}: non-finite loss between steps {last_good + 1} and {done} "
                f"({', '.join(f'{k}={float(v.detach()):.4g}' for k, v in terms.items())}); nothing of those steps was "
                f"saved, the checkpoint of step {last_saved} is kept. Check the data (bmc verify-cache) and "
                f"the learning rate and loss weights")
        last_good = done
        if rank == 0 and (done % cfg.log_every == 0 or done == cfg.steps):
            now = time.perf_counter()
            row = {"step": done, "lr": sched.get_last_lr()[0], **{k: float(v.detach()) for k, v in terms.items()},
                   "images_per_s": cfg.log_every * per_step * world / max(now - t_last, 1e-9)}
            t_last = now
            with open(log_path, "a") as f:
                f.write(json.dumps(row) + "\n")
            if writer is not None:
                for k, v in row.items():
                    writer.add_scalar(k, v, done)
            bar.set_postfix(loss=f"{row['total']:.4f}")
            if on_log is not None:
                on_log({"run": cfg.name, **row})
        if rank == 0 and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            _atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                          "step": done, "config": cfg.to_dict()}, ckpt_path)
            last_saved = done
        bar.update(1)
    bar.close()
    if rank == 0:
        _write_csv(log_path, run_dir / "train_log.csv")
        if limits is not None:
            limits.save(run_dir / "limits.json")
    if writer is not None:
        writer.close()
    return run_dir


def _truncate_log(path: Path, step: int) -> None:
    """Keep the rows of ``path`` (JSON lines) logged at or before ``step`` (atomically)."""
    from .results import write_text_atomic

    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            keep.append(line)
    if keep:
        write_text_atomic(path, "\n".join(keep) + "\n")
    else:
        path.unlink()


def _write_csv(jsonl: Path, out: Path) -> None:
    if not jsonl.is_file():
        return
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    if not rows:
        return
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "step", k))
    from .results import atomic_path

    with atomic_path(out) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def load_trained(run_dir: str | os.PathLike, device: str = "cpu") -> tuple[HandPoseNet, TrainConfig]:
    """The model and config of a finished (or checkpointed) run."""
    path = Path(run_dir) / "checkpoint.pt"
    ck = load_checkpoint(path, device)
    try:
        cfg = saved_config(ck["config"], f"{path}: field 'config'")
        validate_config(cfg, f"{path}: field 'config'")
    except TypeError as e:
        raise ValueError(f"{path}: field 'config' cannot be read ({e})") from None
    model = HandPoseNet(cfg.model)
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as e:
        raise ValueError(f"{path}: field 'model' does not fit the saved config's network "
                         f"({str(e).splitlines()[0][:200]})") from None
    return model.to(device).eval(), cfg
