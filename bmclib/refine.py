"""Test-time BMC refinement of 3D hand predictions (``bmc refine``).

Each joint moves along its camera ray only, so a prediction's 2D projection is kept exactly,
while the root-relative depths move into the BMC limits, near the prediction. :func:`refine`
works on 2.5D (depths in reference-bone units, the closed-form root in the graph);
:func:`refine_predictions` on any model's absolute camera-frame joints.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from . import skeleton as sk
from .camera import from_2p5d
from .lifting import PoseBMC, lift
from .limits import BMCLimits
from .losses import root_extent

__all__ = ["refine", "refine_predictions"]


def _check_options(steps: int, lr: float, prior: float) -> None:
    """Refinement options a caller may get wrong: named with the value received."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"refine: steps must be an integer >= 0, got {steps!r}")
    for name, v in (("lr", lr), ("prior", prior)):
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"refine: {name} must be finite and >= 0, got {v!r}")


def refine(z_rel: Tensor, uv: Tensor, K: Tensor, limits: BMCLimits, steps: int = 200, lr: float = 0.02,
           prior: float = 0.1, ratios: Tensor | None = None, batch_size: int = 4096,
           root_margin: float = 0.05, on_step=None) -> Tensor:
    """Test-time refinement: move depths ``z_rel (B, 21)`` so the lifted poses satisfy the
    BMC limits, staying near the prediction (``prior * |z - z_rel|^2``); the 2D projection
    is unchanged by construction (every joint stays on its camera ray). The closed-form root
    stays in the graph (the reference bone is held at length 1), with the guard of
    :func:`~bmclib.losses.guarded_bmc`, so depths cannot be inflated without bound. Poses are refined
    independently, ``batch_size`` at a time. ``ratios (B, 20)``: each hand's true bone ratios
    (the exact-length upper bound of :class:`PoseBMC`). ``on_step(done, total)``: called after each
    step of each batch (progress); ``steps`` must be >= 0 and ``lr``, ``prior`` finite and >= 0."""
    _check_options(steps, lr, prior)
    if not (z_rel.shape[:-1] == uv.shape[:-2] == K.shape[:-2]):
        raise ValueError(f"refine: z_rel {tuple(z_rel.shape)}, uv {tuple(uv.shape)} and K {tuple(K.shape)} "
                         "must have the same batch size")
    bmc = PoseBMC(limits, exact_lengths=ratios is not None)
    out = []
    total, done = steps * ((len(z_rel) + batch_size - 1) // batch_size), 0
    for start in range(0, len(z_rel), batch_size):
        sl = slice(start, start + batch_size)
        z0 = z_rel[sl].detach()
        z = z0.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        for _ in range(steps):
            zz = torch.cat([torch.zeros_like(z[:, :1]), z[:, 1:]], 1)
            per_pose = bmc(lift(zz, uv[sl], K[sl]), None if ratios is None else ratios[sl])
            extent = root_extent(zz)
            per_pose = torch.where(extent < 1.0 - root_margin, per_pose, torch.zeros_like(per_pose))
            loss = (per_pose + torch.relu(extent - (1.0 - root_margin))).sum() + prior * ((zz - z0) ** 2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if on_step is not None:
                on_step(done, total)
        out.append(torch.cat([torch.zeros_like(z[:, :1]), z[:, 1:]], 1).detach())
    return torch.cat(out)


def refine_predictions(xyz, K, limits: BMCLimits, steps: int = 200, lr: float = 0.02, prior: float = 0.1,
                       batch_size: int = 4096, root: str = "prediction", on_step=None) -> Tensor:
    """Test-time BMC refinement of any model's 3D predictions ``xyz (N, 21, 3)`` (camera frame,
    right hands, absolute: the root's depth included) with intrinsics ``K (N, 3, 3)``: each
    joint moves along its camera ray only, so the 2D projections stay exactly as predicted,
    while :func:`refine` moves the root-relative depths into the limits (the closed-form root
    depth in the graph, so the reference bone keeps length 1; ``prior`` keeps them near the
    prediction). ``root``: where the refined hand sits, ``"prediction"`` (the model's own root
    depth, the default) or ``"closed_form"`` (the closed-form root of the refined pose, as
    the regime map's test-time refinement: it also moves the hand's distance, which helps
    when the 2D is accurate and hurts when it is not: ``results/tables/refine_v2_cpu.md``).
    The metric scale is each prediction's own reference-bone length. Returns ``(N, 21, 3)``
    float64. ``on_step``: as in :func:`refine`."""
    _check_options(steps, lr, prior)
    from .camera import project

    j = torch.as_tensor(np.asarray(xyz), dtype=torch.float64)
    Kt = torch.as_tensor(np.asarray(K), dtype=torch.float64)
    if j.dim() != 3 or j.shape[1:] != (21, 3):
        raise ValueError(f"refine: xyz must be (N, 21, 3), got {tuple(j.shape)}")
    if Kt.shape != (len(j), 3, 3):
        raise ValueError(f"refine: K must be ({len(j)}, 3, 3) (one per prediction), got {tuple(Kt.shape)}")
    if root not in ("prediction", "closed_form"):
        raise ValueError(f"refine: root must be 'prediction' or 'closed_form', got {root!r}")
    behind = ~(j[..., 2] > 0).all(dim=1)
    if bool(behind.any()):
        i = int(behind.nonzero()[0, 0])
        raise ValueError(f"refine: every joint must be in front of the camera (z > 0): {int(behind.sum())} of "
                         f"{len(j)} predictions are not (the first: prediction {i}, smallest z "
                         f"{float(j[i, :, 2].min()):.4g} m); absolute camera-frame predictions are needed, not "
                         "root-relative ones")
    uv = project(j, Kt)
    scale = sk.reference_length(j)
    z_rel = (j[..., 2] - j[:, :1, 2]) / scale[:, None]
    z = refine(z_rel, uv, Kt, limits, steps=steps, lr=lr, prior=prior, batch_size=batch_size, on_step=on_step)
    if root == "closed_form":
        return lift(z, uv, Kt) * scale[:, None, None]
    return from_2p5d(uv, z, j[:, 0, 2] / scale, Kt) * scale[:, None, None]
