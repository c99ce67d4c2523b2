"""Degenerate hand poses for robustness checks of the BMC loss and the decomposition.

Every family starts from anatomical hands (:func:`bmclib.handmodel.random_poses`) and bends them into
one kind of degeneracy that a network's output can reach during training. ``bmc fuzz`` (and
``tests/test_robustness.py``) evaluate the loss and its gradient on each family, per dtype and
loss path, and report the largest ``|grad| x size``: the loss is scale-free (``L(c x) = L(x)``), so
its gradient grows as ``1 / size``; the product is what :data:`GRAD_BOUND` bounds.

Families:
    scale          whole hands at 1e-6 ... 1e3 of their size
    collapsed      a third of the bones set to zero length (the child joint on its parent)
    shrunk         a third of the bones shrunk to 1e-9 ... 1e-1 of their length (near a collapse)
    scale_ref      all five root bones and the reference bone of zero length
    shrunk_palm    the five root bones shrunk to 1e-9 ... 1e-1 of their length, the fingers intact
    fold_pi        finger bones folded exactly back onto their parent (flexion +-pi)
    coplanar_palm  the five root bones in one plane, up to 1e-9 of their length
    quantised      joints rounded to a grid of 1/2 ... 1/8 of a bone, at 1e-6 ... 1 m
"""
from __future__ import annotations

import torch
from torch import Tensor

from .. import skeleton as sk

from ..losses import GRAD_BOUND  # the loss's documented bound, checked here

__all__ = ["FAMILIES", "GRAD_BOUND", "pose_size", "fuzz_poses", "gradient_report"]

FAMILIES = ("scale", "collapsed", "shrunk", "scale_ref", "shrunk_palm", "fold_pi", "coplanar_palm", "quantised")



def pose_size(joints: Tensor) -> Tensor:
    """``(...,)`` the rms distance of the 21 joints from their centroid (the unit ``|grad|`` is
    measured in: a scale-free loss has ``|grad| ~ 1 / size``)."""
    c = joints - joints.mean(-2, keepdim=True)
    return c.pow(2).sum(-1).mean(-1).sqrt()


def _rebuild(root: Tensor, bones: Tensor) -> Tensor:
    """Joints ``(n, 21, 3)`` from the wrist ``(n, 3)`` and the 20 bones (row 0 unused), parent first."""
    out = torch.empty_like(bones)
    out[:, 0] = root
    for k in range(1, sk.NUM_JOINTS):
        out[:, k] = out[:, sk.PARENTS[k]] + bones[:, k]
    return out


def _bones(j: Tensor) -> Tensor:
    b = j - j[:, list((0,) + sk.PARENTS[1:])]
    b[:, 0] = 0
    return b


def fuzz_poses(family: str, n: int, seed: int = 0) -> Tensor:
    """``(n, 21, 3)`` float64 poses of one family (see the module docstring)."""
    from ..handmodel import random_poses

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    g = torch.Generator().manual_seed(seed)
    j = random_poses(n, seed, spread=1.0).double()
    j = j + torch.tensor([0.0, 0.0, 0.5], dtype=j.dtype)  # in front of a camera
    if family == "scale":
        s = 10.0 ** torch.empty(n, 1, 1, dtype=j.dtype).uniform_(-6, 3, generator=g)
        return j * s
    bones = _bones(j)
    if family == "collapsed":  # each collapsed joint on its parent; its descendants keep their own bones
        bones = bones * (torch.rand(n, 21, 1, generator=g) > 1 / 3)
        return _rebuild(j[:, 0], bones)
    if family == "shrunk":
        pick = torch.rand(n, 21, 1, generator=g) < 1 / 3
        s = 10.0 ** torch.empty(n, 21, 1, dtype=j.dtype).uniform_(-9, -1, generator=g)
        return _rebuild(j[:, 0], torch.where(pick, bones * s, bones))
    if family == "shrunk_palm":
        s = 10.0 ** torch.empty(n, 1, 1, dtype=j.dtype).uniform_(-9, -1, generator=g)
        bones[:, list(sk.ROOT_BONE_JOINTS)] *= s
        return _rebuild(j[:, 0], bones)
    if family == "scale_ref":
        bones[:, list(sk.ROOT_BONE_JOINTS) + [sk.REFERENCE_BONE[1]]] = 0
        return _rebuild(j[:, 0], bones)
    if family == "fold_pi":  # a bone turned exactly back along its parent bone, its length kept
        fold = torch.rand(n, 21, 1, generator=g) < 0.5
        for k in range(1, sk.NUM_JOINTS):
            p = sk.PARENTS[k]
            if p == 0:
                continue
            par = bones[:, p]
            back = -par / par.norm(dim=-1, keepdim=True) * bones[:, k].norm(dim=-1, keepdim=True)
            bones[:, k] = torch.where(fold[:, k], back, bones[:, k])
        return _rebuild(j[:, 0], bones)
    if family == "coplanar_palm":
        roots = list(sk.ROOT_BONE_JOINTS)
        r = bones[:, roots]  # (n, 5, 3)
        normal = torch.linalg.cross(r[:, 4], r[:, 1])
        normal = normal / normal.norm(dim=-1, keepdim=True)
        flat = r - (r * normal[:, None]).sum(-1, keepdim=True) * normal[:, None]
        bones[:, roots] = flat + 1e-9 * r.norm(dim=-1, keepdim=True) * torch.randn(n, 5, 3, generator=g, dtype=j.dtype)
        return _rebuild(j[:, 0], bones)
    # quantised
    s = 10.0 ** torch.empty(n, 1, 1, dtype=j.dtype).uniform_(-6, 0, generator=g)
    step = 0.02 / torch.randint(2, 9, (n, 1, 1), generator=g).to(j.dtype)  # bones are 2-5 cm
    return torch.round(j / step) * step * s


def gradient_report(family: str, n: int = 256, seed: int = 0, dtypes=(torch.float64, torch.float32, torch.float16),
                    paths=("fused", "autograd")) -> list[dict]:
    """One row per dtype and loss path: the largest finite ``|grad| x size``, the number of poses with a
    non-finite loss or gradient, and the largest loss."""
    from ..losses import BMCLoss

    poses = fuzz_poses(family, n, seed)
    rows = []
    for path in paths:
        loss = BMCLoss(reduction="none", fused=path == "fused")
        for dt in dtypes:
            x = poses.to(dt, copy=True).requires_grad_(True)
            total = loss(x).total
            g, = torch.autograd.grad(total.sum(), x)
            g64, t64 = g.double(), total.detach().double()
            size = pose_size(x.detach().double())
            bad = ~(torch.isfinite(g64).all(-1).all(-1) & torch.isfinite(t64))
            gs = (g64.norm(dim=-1).amax(-1) * size)[~bad]
            rows.append({"family": family, "path": path, "dtype": str(dt).removeprefix("torch."), "poses": n,
                         "non_finite": int(bad.sum()), "max_grad_x_size": float(gs.max()) if len(gs) else float("nan"),
                         "max_loss": float(t64[~bad].max()) if (~bad).any() else float("nan")})
    return rows


def format_report(rows: list[dict]) -> str:
    """A markdown table of :func:`gradient_report` rows."""
    head = "| family | path | dtype | poses | non-finite | max \\|grad\\| x size | max loss |\n|---|---|---|---:|---:|---:|---:|"
    lines = [f"| {r['family']} | {r['path']} | {r['dtype']} | {r['poses']} | {r['non_finite']} | "
             f"{r['max_grad_x_size']:.3g} | {r['max_loss']:.3g} |" for r in rows]
    return "\n".join([head, *lines])


def add_cli_arguments(p) -> None:
    p.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES), help="pose families to try")
    p.add_argument("--poses", type=int, default=512, help="poses per family")
    p.add_argument("--seed", type=int, default=0, help="seed of the poses")
    p.add_argument("--out", help="also write the table (markdown) and its rows (.json beside it) to this path")


def cli_main(a) -> int:
    import json
    from pathlib import Path

    from ..results import provenance, write_text_atomic

    if a.poses < 1:
        raise ValueError(f"--poses must be >= 1, got {a.poses}")
    rows = [r for fam in a.families for r in gradient_report(fam, a.poses, a.seed)]
    table = format_report(rows)
    print(table)
    bad = [r for r in rows if r["non_finite"] or (r["dtype"] != "float16" and not r["max_grad_x_size"] < GRAD_BOUND)]
    print(f"\n{len(bad)} of {len(rows)} rows break the bound (finite, |grad| x size < {GRAD_BOUND:g}; float16: finite)")
    if a.out:
        out = Path(a.out)
        prov = provenance(made_by="bmc fuzz", poses=a.poses, seed=a.seed)
        write_text_atomic(out, f"# BMC loss gradients on degenerate poses\n\n`bmc fuzz --poses {a.poses} --seed "
                               f"{a.seed}`; the bound: {GRAD_BOUND:g} (float16 gradients saturate at 65504 by "
                               f"design).\n\n{table}\n\nMade at commit {prov['git_commit']}, {prov['time']}.\n")
        write_text_atomic(out.with_suffix(".json"), json.dumps({"provenance": prov, "rows": rows}, indent=1))
    return 1 if bad else 0
