"""BMC as a prior, isolated from images: lift noisy 2D keypoints to 3D.

A small MLP reads a hand's 2D keypoints (in normalised camera coordinates, centred on the
wrist and divided by their spread) and predicts the root-relative depths ``z_rel`` in units
of the reference bone; the 3D pose follows from the 2D keypoints, ``z_rel`` and the
closed-form root depth (:func:`bmclib.camera.root_depth`), so it always projects onto the
observed 2D. Trained on the source domain's 3D labels, a target sample with 2D only adds
*nothing* to the loss (its 2D is the input) — unless BMC judges its lifted pose. That is the
cleanest form of the paper's argument, and it runs in a minute on a CPU. The regime map
(:mod:`bmclib.bench.regime`, notebook 03) and the lifting runs (:mod:`bmclib.bench.lifting_runs`)
are built from these pieces.

The closed-form root depth exists only while the reference bone's relative depth
``|z_9 - z_10|`` stays below its length (1); beyond it the discriminant is clamped and the
"pose" is no reconstruction at all (its reference bone is not of length 1), and a lifter
trained with BMC on every pose learns to go there (``results/README.md`` has the measurement).
The guard (:func:`bmclib.losses.guarded_bmc`): BMC only on poses with
``|z_9 - z_10| < 1 - root_margin``, plus a hinge pushing the others back, at the same weight.

Example:
    >>> cfg = LiftingConfig.from_preset("tiny")
    >>> cfg.steps, cfg.n_train
    (40, 512)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from . import skeleton as sk
from .camera import normalised_coords, from_2p5d, root_depth, to_2p5d
from .limits import BMCLimits
from .losses import BMCLoss, guarded_bmc, root_extent

__all__ = ["LiftingConfig", "Lifter", "KeypointSet", "PoseBMC", "bone_ratios", "keypoint_set", "make_sets", "predict_depths",
           "train_lifter", "lift",
           "evaluate_lifter", "RUNS"]

#: the kinds of lifter training :func:`train_lifter` knows (:mod:`bmclib.bench.lifting_runs` describes them)
RUNS = ("source3d", "source3d_refine", "target2d_bmc", "target2d_bmc_unguarded", "target2d_bmc_literature",
        "target3d_oracle")


@dataclass
class LiftingConfig:
    """Everything one lifting run depends on."""

    preset: str = "cpu"
    n_train: int = 20000  # per domain
    n_test: int = 2000
    image_size: int = 128  # pixel units of the noise
    noise_px: float = 1.5
    hidden: int = 512
    steps: int = 3000
    batch_size: int = 256  # per domain
    lr: float = 1e-3
    lambda_bmc: float = 1.0
    root_margin: float = 0.05  # the guard: BMC only where |z_9 - z_10| < 1 - root_margin (else a hinge)
    refine_steps: int = 200
    refine_lr: float = 0.02
    refine_prior: float = 0.1  # weight of |z - z_pred|^2 during refinement
    seed: int = 0

    _PRESETS = {"tiny": dict(n_train=512, n_test=128, hidden=64, steps=40, batch_size=64, refine_steps=20),
                "cpu": {}, "gpu": dict(n_train=100000, n_test=5000, steps=10000)}

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "LiftingConfig":
        if name not in cls._PRESETS:
            raise ValueError(f"preset must be one of {sorted(cls._PRESETS)}, got {name!r}")
        return cls(preset=name, **{**cls._PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class KeypointSet:
    """``uv`` (noisy input pixels), ``K``, ground truth ``xyz`` (metres), ``z_rel`` (bone units)
    and ``bone_ratio (N, 20)``, each hand's true bone lengths over its reference bone (used
    only by the exact-length upper bound, :class:`PoseBMC`)."""

    uv: Tensor
    K: Tensor
    xyz: Tensor
    z_rel: Tensor
    bone_ratio: Tensor | None = None

    def __len__(self) -> int:
        return len(self.uv)

    def with_noise(self, noise_px: float, generator: torch.Generator) -> "KeypointSet":
        """The same hands with ``noise_px`` more Gaussian pixel noise on their 2D."""
        uv = self.uv + noise_px * torch.randn(self.uv.shape, generator=generator, dtype=self.uv.dtype)
        return KeypointSet(uv, self.K, self.xyz, self.z_rel, self.bone_ratio)


def bone_ratios(joints: Tensor, bone: tuple[int, int] = sk.REFERENCE_BONE) -> Tensor:
    """``(..., 20)`` bone lengths of joints ``(..., 21, 3)`` over the reference bone's."""
    parents = [p for p, _ in sk.BONES]
    children = [c for _, c in sk.BONES]
    lengths = (joints[..., children, :] - joints[..., parents, :]).norm(dim=-1)
    return lengths / lengths[..., sk.bone_index(*bone), None].clamp_min(1e-9)


def keypoint_set(domain, n: int, image_size: int, noise_px: float, seed: int) -> KeypointSet:
    """``n`` hands of a synthetic ``domain`` (a name or a :class:`~bmclib.data.synth.Domain`)
    with ``noise_px`` pixel noise on their 2D keypoints."""
    from .data.synth import sample_keypoints

    g = torch.Generator().manual_seed(seed)
    kp = sample_keypoints(domain, n, image_size, g)
    uv = kp.uv + noise_px * torch.randn(kp.uv.shape, generator=g, dtype=kp.uv.dtype)
    _, z_rel, _, _ = to_2p5d(kp.xyz, kp.K)
    f32 = torch.float32
    return KeypointSet(uv.to(f32), kp.K.to(f32), kp.xyz.to(f32), z_rel.to(f32), bone_ratios(kp.xyz).to(f32))


def _keypoint_set(domain: str, n: int, cfg: LiftingConfig, seed: int) -> KeypointSet:
    return keypoint_set(domain, n, cfg.image_size, cfg.noise_px, seed)


class PoseBMC:
    """BMC per pose ``(B,)`` of lifted poses, for training and refinement.

    ``exact_lengths=True`` is an upper bound that no real user has: the bone-length term
    compares each hand with its *own* true bone-length ratios (``ratios (B, 20)``, mean
    absolute difference) instead of the population's intervals; the palm and angle terms
    keep ``limits``."""

    def __init__(self, limits: BMCLimits, exact_lengths: bool = False):
        self.exact_lengths = exact_lengths
        self.loss = BMCLoss(limits, lambda_bl=0.0 if exact_lengths else 1.0, reduction="none", check=False)

    def __call__(self, joints: Tensor, ratios: Tensor | None = None) -> Tensor:
        total = self.loss(joints).total
        if self.exact_lengths:
            if ratios is None:
                raise ValueError("exact_lengths needs each pose's true bone ratios")
            total = total + (bone_ratios(joints) - ratios).abs().mean(-1)
        return total


def make_sets(cfg: LiftingConfig) -> dict[str, KeypointSet]:
    """Source train (3D), target train (its 3D used by the oracle only) and target test."""
    s = cfg.seed * 1000
    return {"source": _keypoint_set("source", cfg.n_train, cfg, s + 1),
            "target": _keypoint_set("target", cfg.n_train, cfg, s + 2),
            "test": _keypoint_set("target", cfg.n_test, cfg, s + 3)}


def _features(uv: Tensor, K: Tensor) -> Tensor:
    """``(B, 42)``: normalised camera coordinates, wrist-centred, divided by their mean spread."""
    p = normalised_coords(uv, K)
    p = p - p[:, :1]
    spread = p.norm(dim=-1).mean(1, keepdim=True).clamp_min(1e-6)
    return (p / spread[..., None]).flatten(1)


class Lifter(nn.Module):
    """MLP: 2D keypoints -> root-relative depths ``(B, 21)`` (bone units; the wrist's is 0)."""

    def __init__(self, hidden: int = 512):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(42, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 20))

    def forward(self, uv: Tensor, K: Tensor) -> Tensor:
        z = self.net(_features(uv, K))
        return torch.cat([torch.zeros_like(z[:, :1]), z], 1)


def lift(z_rel: Tensor, uv: Tensor, K: Tensor) -> Tensor:
    """3D joints in reference-bone units ``(B, 21, 3)`` from 2D and root-relative depths."""
    Z = root_depth(uv, z_rel, K)
    return from_2p5d(uv, z_rel, Z, K)


def train_lifter(cfg: LiftingConfig, sets: dict[str, KeypointSet], run: str, limits: BMCLimits | None = None,
                 progress: bool = True, exact_lengths: bool = False,
                 init: Lifter | None = None) -> tuple[Lifter, list[dict[str, float]]]:
    """Train one run's lifter; returns it and its log (one row per 50 steps). ``exact_lengths``
    (BMC runs): each hand's own bone ratios instead of the length intervals (:class:`PoseBMC`,
    an upper bound). ``init``: start from this lifter's weights (a fine-tune)."""
    from .progress import tqdm

    if run not in RUNS:
        raise ValueError(f"run must be one of {RUNS}, got {run!r}")
    torch.manual_seed(cfg.seed)
    model = Lifter(cfg.hidden)
    if init is not None:
        model.load_state_dict(init.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
    if run == "target2d_bmc_literature":
        limits = BMCLimits.default()
    elif run in ("target2d_bmc", "target2d_bmc_unguarded") and limits is None:
        raise ValueError(f"run {run!r} needs limits (fit them on the source domain's 3D)")
    bmc = PoseBMC(limits, exact_lengths) if run.startswith("target2d_bmc") else None
    g = torch.Generator().manual_seed(cfg.seed + 17)
    src, tgt = sets["source"], sets["target"]
    log = []
    for step in tqdm(range(cfg.steps), desc=f"lifting {run}", disable=not progress):
        i = torch.randint(0, len(src), (cfg.batch_size,), generator=g)
        j = torch.randint(0, len(tgt), (cfg.batch_size,), generator=g)
        z_s = model(src.uv[i], src.K[i])
        terms = {"z_source": (z_s - src.z_rel[i]).abs().mean()}
        if run == "target3d_oracle":
            terms["z_target"] = (model(tgt.uv[j], tgt.K[j]) - tgt.z_rel[j]).abs().mean()
        if bmc is not None:
            z = torch.cat([z_s, model(tgt.uv[j], tgt.K[j])])
            ratios = torch.cat([src.bone_ratio[i], tgt.bone_ratio[j]]) if exact_lengths else None
            per_pose = bmc(lift(z, torch.cat([src.uv[i], tgt.uv[j]]), torch.cat([src.K[i], tgt.K[j]])), ratios)
            if run == "target2d_bmc_unguarded":
                terms["bmc"] = cfg.lambda_bmc * per_pose.mean()
            else:
                terms["bmc"] = cfg.lambda_bmc * guarded_bmc(per_pose, z, cfg.root_margin)
        loss = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == cfg.steps - 1:
            log.append({"step": step + 1, "loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}})
    return model.eval(), log


@torch.no_grad()
def predict_depths(model: Lifter, s: KeypointSet) -> Tensor:
    """The lifter's root-relative depths ``(N, 21)`` (reference-bone units) for a keypoint set."""
    return model(s.uv, s.K)


def evaluate_lifter(z_rel: Tensor, s: KeypointSet, limits: BMCLimits | None = None) -> dict[str, float]:
    """Metrics of predicted depths on a set (metric 3D: bone units x the true reference-bone
    length, as the FreiHAND protocol scales predictions)."""
    from .evaluate import evaluate_arrays

    with torch.no_grad():
        xyz = lift(z_rel, s.uv, s.K) * sk.reference_length(s.xyz)[:, None, None]
    m = evaluate_arrays(xyz.double().numpy(), s.xyz.double().numpy(), limits=limits)
    m["depth_rel_bone"] = float((z_rel - s.z_rel).abs()[:, 1:].mean())
    m["no_root_share"] = float((root_extent(z_rel) > 1.0).float().mean())  # poses without a closed-form root
    return m
