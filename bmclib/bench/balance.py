"""How hard BMC pulls on the 2D keypoints, against the 2D loss: measured on a source validation split.

In training, the 2D L1 and the BMC both have gradients on the predicted keypoints ``uv``.
Where BMC's pull is the larger, it moves the 2D rather than the depth (benchmark v1: run 3's
2D error rose 9.2 -> 11.9 px). This study measures the two pulls at a known operating point
without a trained network: source-validation hands (3D labels; never target-test) with their
true root-relative depths and Gaussian 2D errors of ``sigma`` pixels, the pose BMC judges
built exactly as in training (:func:`bmclib.train.bmc_pose`, closed-form root, guarded).

For each ``sigma`` and 2D-loss unit (``px`` or ``image`` widths, ``w_2d = 1``) it reports
the mean pull ratio (BMC / 2D) and the 90th percentile of the per-sample ratio. The
pre-registered rule (``results/benchmark_v2.yaml``): the 2D loss in pixels, and ``w_2d`` the
smallest power of two at which the p90 ratio is at most 1 at the 2D accuracy the regime map
asks for, so that BMC cannot out-pull the 2D labels of nine samples in ten.

``bmc balance --size 64 --sigmas 0.5 1 2 4`` prints the table (and ``--json`` writes it).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch

__all__ = ["pull_ratios", "recommend_w_2d"]


def pull_ratios(size: int = 64, sigmas: Sequence[float] = (0.5, 1.0, 2.0, 4.0), n: int = 2048, seed: int = 99,
                lambdas: tuple[float, float, float] = (1.0, 1.0, 1.0), limits=None,
                interval_coverage: float = 0.99, hull_coverage: float = 0.99) -> list[dict[str, Any]]:
    """Rows ``{sigma_px, units, ratio_mean, ratio_p90, ...}`` for a ``size`` px crop. ``limits``
    default: fitted by the quantile rule on a separate source draw (as a run fits them on its
    source training set)."""
    import warnings
    from types import SimpleNamespace

    from ..camera import to_2p5d
    from ..data.synth import sample_keypoints
    from ..losses import guarded_bmc
    from ..limits import BMCLimits
    from ..losses import BMCLoss
    from ..train import TrainConfig, bmc_pose

    if limits is None:
        fit = sample_keypoints("source", 10000, size, torch.Generator().manual_seed(seed + 1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            limits = BMCLimits.fit(fit.xyz, hull_coverage, interval_coverage=interval_coverage,
                                   source="balance: source draw")
    val = sample_keypoints("source", n, size, torch.Generator().manual_seed(seed))
    uv_gt, z_rel, _, _ = to_2p5d(val.xyz.float(), val.K.float())
    K = val.K.float()
    bmc = BMCLoss(limits, *lambdas, reduction="none", check=False)
    cfg = TrainConfig(bmc_root="closed_form", bmc_grad="all")
    g = torch.Generator().manual_seed(seed + 2)
    rows = []
    for sigma in sigmas:
        uv = (uv_gt + sigma * torch.randn(uv_gt.shape, generator=g)).requires_grad_(True)
        out = SimpleNamespace(uv=uv, z_rel=z_rel, root=None, joints_norm=None)
        per_pose = bmc(bmc_pose(out, K, cfg)).total
        total = guarded_bmc(per_pose, z_rel, cfg.root_margin)
        g_bmc, = torch.autograd.grad(total, uv)
        pull_bmc = g_bmc.abs().mean((1, 2))  # (n,)
        l1 = (uv - uv_gt).abs().mean((1, 2)).sum() / n
        g_2d, = torch.autograd.grad(l1, uv)
        pull_px = g_2d.abs().mean((1, 2))  # 1 / (42 n) per coordinate, w_2d = 1, pixels
        for units, pull_2d in (("px", pull_px), ("image", pull_px / size)):
            ratio = pull_bmc / pull_2d
            rows.append({"size": size, "sigma_px": float(sigma), "sigma_pct_crop": 100 * float(sigma) / size,
                         "units": units, "bmc_mean": float(per_pose.detach().mean()),
                         "ratio_mean": float(pull_bmc.mean() / pull_2d.mean()),
                         "ratio_median": float(ratio.median()), "ratio_p90": float(torch.quantile(ratio, 0.9))})
    return rows


def recommend_w_2d(rows: list[dict[str, Any]], sigma_px: float, units: str = "px") -> float:
    """The smallest power of two ``w_2d >= 1`` with the p90 pull ratio <= 1 at ``sigma_px``."""
    sel = [r for r in rows if r["units"] == units and math.isclose(r["sigma_px"], sigma_px)]
    if not sel:
        raise ValueError(f"no row for sigma {sigma_px} px and units {units!r}")
    p90 = sel[0]["ratio_p90"]
    return float(2 ** max(0, math.ceil(math.log2(max(p90, 1e-12)))))


def add_cli_arguments(p) -> None:
    """The options of ``bmc balance``."""
    p.add_argument("--size", type=int, nargs="+", default=[64, 128], help="crop sizes in px")
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0, 8.0],
                   help="2D error levels in px of each crop")
    p.add_argument("--n", type=int, default=2048, help="source-validation hands")
    p.add_argument("--json", help="also write the rows (with provenance) to this file, and a .md beside it")


def cli_main(a) -> int:
    """``bmc balance`` with parsed options."""
    from ..results import provenance, write_json_atomic

    rows = []
    for size in a.size:
        rows += pull_ratios(size, a.sigmas, a.n)
    print(f"{'crop':>5} {'sigma px':>9} {'% crop':>7} {'2D units':>9} {'BMC':>8} {'ratio mean':>11} {'median':>8} {'p90':>8}")
    for r in rows:
        print(f"{r['size']:>5} {r['sigma_px']:>9.2f} {r['sigma_pct_crop']:>7.2f} {r['units']:>9} {r['bmc_mean']:>8.4f} "
              f"{r['ratio_mean']:>11.2f} {r['ratio_median']:>8.2f} {r['ratio_p90']:>8.2f}")
    if a.json:
        from ..results import write_text_atomic

        prov = provenance(config={"sizes": a.size, "sigmas": a.sigmas, "n": a.n},
                          data={"split": "source validation draw, seed 99"})
        write_json_atomic(Path(a.json), {"rows": rows, "provenance": prov})
        lines = ["# BMC's pull on the 2D keypoints against the 2D loss's (source validation)", "",
                 "Mean absolute gradient on the predicted uv of the BMC (lambdas 1, closed-form root, guarded) over that "
                 "of the 2D L1 (w_2d = 1), at true depths and Gaussian 2D errors of sigma px; p90: the 90th percentile "
                 "of the per-sample ratio. Above 1, BMC out-pulls the 2D labels.", "",
                 "| crop (px) | sigma (px) | % of crop | 2D loss units | ratio (mean) | ratio (p90) | smallest w_2d with p90 <= 1 |",
                 "|---|---|---|---|---|---|---|"]
        for r in rows:
            w = recommend_w_2d([x for x in rows if x["size"] == r["size"]], r["sigma_px"], r["units"])
            lines.append(f"| {r['size']} | {r['sigma_px']:g} | {r['sigma_pct_crop']:.2f} | {r['units']} | "
                         f"{r['ratio_mean']:.2f} | {r['ratio_p90']:.2f} | {w:g} |")
        lines += ["", f"Made by `bmc balance --json {a.json}` (commit {prov['git_commit']}, {prov['time']})."]
        md = Path(a.json).with_suffix(".md")
        write_text_atomic(md, "\n".join(lines) + "\n")
        print(f"wrote {a.json} and {md}")
    return 0
