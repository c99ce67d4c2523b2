#!/usr/bin/env python
"""Which way does BMC's gradient reach a trained network's latent heatmaps?

The 2.5D head reads the 2D keypoints from the heatmaps (soft-argmax) *and* the root-relative
depths from them (z_k = sum_p H_k(p) D_k(p)). The training log's ``bmc_pull_ratio`` measures
BMC's pull on the 2D keypoints only; this script splits BMC's gradient on the heatmap logits
of one weakly supervised batch into the part through the 2D (soft-argmax) and the part through
the depth read-out, next to the 2D loss's gradient on the same logits (mean absolute values).

    python data_scripts/bmc_heatmap_pull.py data/runs/cpu_v2_3_bmc_all_seed0 --weak CACHE [--batch 64]
"""
import argparse
import json

import numpy as np
import torch

from bmclib.camera import from_2p5d, root_depth
from bmclib.data.cache import PreparedCache
from bmclib.data.loader import load_batch
from bmclib.limits import BMCLimits
from bmclib.losses import guarded_bmc
from bmclib.model import soft_argmax
from bmclib.train import load_trained, make_bmc_loss


def split(run: str, weak: str, batch: int = 64, seed: int = 0) -> dict:
    model, cfg = load_trained(run, "cpu")
    cache = PreparedCache(weak)
    idx = np.random.default_rng(seed).choice(len(cache), batch, replace=False)
    b = load_batch(cache, np.sort(idx))
    with torch.no_grad():
        x = (b.images - model.mean) / model.std
        feats = model.upsample(model.backbone.features(x) if cfg.model.decoder == "skip" else model.backbone(x))
        maps = model.head(feats).float()
    logits = maps[:, :21].clone().requires_grad_(True)
    depth_maps = maps[:, 21:]
    stride = b.images.shape[-1] / maps.shape[-1]
    bmc = make_bmc_loss(cfg, BMCLimits.load(cfg.limits))

    def bmc_total(uv_live: bool, z_live: bool) -> torch.Tensor:
        uv, prob = soft_argmax(logits, model.beta.detach().float(), stride)
        uv = uv if uv_live else uv.detach()
        p = prob if z_live else prob.detach()
        z = (p * depth_maps).sum((2, 3))
        z = z - z[:, :1]
        pose = from_2p5d(uv, z, root_depth(uv, z, b.K), b.K)
        return guarded_bmc(bmc(pose).total, z, cfg.root_margin)

    def mean_abs_grad(loss: torch.Tensor) -> float:
        g, = torch.autograd.grad(loss, logits, allow_unused=True)
        return 0.0 if g is None else float(g.abs().mean())

    uv, _ = soft_argmax(logits, model.beta.detach().float(), stride)
    loss_2d = cfg.w_2d * (uv - b.uv).abs().mean((1, 2)).mean()
    out = {"run": run, "batch": batch, "logits: 2d_loss": mean_abs_grad(loss_2d),
           "logits: bmc_all_paths": mean_abs_grad(bmc_total(True, True)),
           "logits: bmc_through_2d": mean_abs_grad(bmc_total(True, False)),
           "logits: bmc_through_depth_readout": mean_abs_grad(bmc_total(False, True))}
    # the shared trunk (backbone + decoder): the two losses' parameter gradients, full forward
    trunk = [p for n, p in model.named_parameters() if n.startswith(("backbone.", "upsample."))]
    o = model(b.images, b.K)
    l2d = cfg.w_2d * (o.uv - b.uv).abs().mean((1, 2)).mean()
    pose = from_2p5d(o.uv.float(), o.z_rel.float(), root_depth(o.uv.float(), o.z_rel.float(), b.K), b.K)
    lbmc = guarded_bmc(bmc(pose).total, o.z_rel.float(), cfg.root_margin)
    g2 = torch.cat([g.flatten() for g in torch.autograd.grad(l2d, trunk, retain_graph=True)])
    gb = torch.cat([g.flatten() for g in torch.autograd.grad(lbmc, trunk)])
    out.update({"trunk: |grad 2d|": float(g2.norm()), "trunk: |grad bmc|": float(gb.norm()),
                "trunk: cosine(2d, bmc)": float(torch.nn.functional.cosine_similarity(g2, gb, 0))})
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders (checkpoint.pt)")
    p.add_argument("--weak", required=True, help="the 2D-only cache the run trained on")
    p.add_argument("--batch", type=int, default=64)
    a = p.parse_args()
    for r in a.runs:
        print(json.dumps(split(r, a.weak, a.batch)))
