"""Training configuration: :class:`TrainConfig`, the presets, reading, checking and comparing configs.

What a run depends on, apart from the loop that uses it (:mod:`bmclib.train`). Every field is
saved with each checkpoint and metrics file; :func:`same_config` decides whether a checkpoint
belongs to a config (resume / skip), :func:`validate_config` rejects what the loop cannot use.

Presets (``bmc train --preset NAME``; :func:`preset` with overrides):
    ``tiny``      CI: seconds.
    ``cpu``       a 2-core CPU: the skip-decoder network chosen on source validation
                  (``bmc model-study``), 96 px crops; ``make reproduce`` trains three runs.
    ``cpu-long``  the full CPU study over hours (``bmc experiment --jobs 2``).
    ``gpu``       the paper's ResNet-50 at 128 px, bf16 autocast, channels_last, compiled BMC.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .data.loader import AugmentConfig
from .model import ModelConfig

__all__ = ["TrainConfig", "PRESETS", "preset", "load_config", "config_from_dict", "same_config", "saved_config",
           "validate_config", "LEGACY_DEFAULTS"]


@dataclass
class TrainConfig:
    """Everything a run depends on (saved with every checkpoint and result)."""

    name: str = "run"
    preset: str = "cpu"
    model: ModelConfig = field(default_factory=ModelConfig)
    image_size: int = 128
    batch_size: int = 32
    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    optimizer: str = "adamw"  # "adamw", "adam" or "sgd"
    ratio_3d: float = 0.5  # share of each batch from the 3D-labelled set (1.0: 3D only), when batch_weak is None
    # None: batch_size samples split by ratio_3d; an int: batch_size 3D-labelled samples plus this
    # many from the weak set (every run then sees the same 3D supervision as a 3D-only run)
    batch_weak: int | None = None
    source: str = ""  # prepared cache with 3D labels
    weak: str = ""  # prepared cache used with 2D labels only ("" = none)
    w_2d: float = 1.0
    # the 2D loss: "px" (L1 in pixels of the crop), "image" (L1 in image widths, benchmark v1) or
    # "px_sq" (half the squared error in pixels: its pull on a keypoint grows with the error, equal
    # to L1's at 1 px)
    loss_2d: str = "px"
    w_z: float = 1.0
    w_root: float = 0.1
    # auxiliary Gaussian-heatmap loss on the latent heatmaps (0: off, the paper's configuration):
    # cross-entropy of the spatial softmax against a Gaussian of heatmap_sigma cells at the 2D label
    w_heatmap: float = 0.0
    heatmap_sigma: float = 1.0
    use_bmc: bool = False
    lambda_bl: float = 1.0
    lambda_rb: float = 1.0
    lambda_a: float = 1.0
    bmc_terms: str = "all"  # "bl", "bl+rb" or "all" (ablations)
    # what BMC's gradient may train: "all" (uv, z_rel and root; the paper), "depth" (uv detached:
    # z_rel, which still reaches the heatmaps through z_rel = sum(prob * D)) or "maps" (uv and the
    # heatmap probabilities detached: BMC trains the latent depth maps D alone, never the 2D)
    bmc_grad: str = "all"
    # the root of the pose BMC judges: "closed_form" (differentiable closed-form root from uv and
    # z_rel, guarded: the reference bone is held at length 1); "detached" (the same closed form
    # without a gradient); "all_bones" (in the graph, the mean of every bone's closed form with the
    # limits' mid bone lengths, weighted by the bone's squared length in the image, so no one short
    # bone is a lever); or "model" (the network's root: detached closed form + the MLP residual)
    bmc_root: str = "closed_form"
    root_margin: float = 0.05  # the guard: BMC only where |z_9 - z_10| < 1 - root_margin (else a hinge)
    bmc_start: int = 0  # step at which BMC switches on (a warm-up for the keypoints) ...
    bmc_ramp: int = 0  # ... then its weight rises linearly from 0 to 1 over this many steps
    limits: str = "source"  # "source" (fit on the 3D set), "default" (literature) or a JSON path
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    compile_bmc: bool = False  # BMCLoss(compile=True): fuses its ~700 small ops (one compile per batch shape)
    channels_last: bool = True  # on CUDA
    # the CPU's compute path: "fast" (the network in channels_last memory under bf16 autocast, the
    # geometry, losses and BMC in float32; the augmentation's sampling grid by affine_grid) or
    # "reference" (float32 throughout: the path every run up to benchmark v3 trained on, kept bit for
    # bit). Results differ between the two within the seed-to-seed spread (results/benchmarks/parity.md)
    cpu_path: str = "fast"
    checkpoint_every: int = 200
    log_every: int = 10
    out: str = "data/runs"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    # CI: seconds (the skip decoder, so the tests run the presets' network)
    "tiny": dict(model=ModelConfig(backbone="resnet18", width=0.125, deconv=2, head_channels=64, refine_hidden=32,
                                   decoder="skip"),
                 image_size=64, batch_size=8, steps=6, warmup=2, checkpoint_every=3, log_every=1),
    # a 2-core CPU: the skip decoder (latent heatmaps at 1/4 of the crop see layer1-3), no heatmap
    # loss, 96 px crops -- the choice of results/tables/model_study.md, on source validation.
    # Two runs at once, one thread each (bmc experiment --jobs 2).
    "cpu": dict(model=ModelConfig(backbone="resnet18", width=0.25, deconv=3, head_channels=128, refine_hidden=64,
                                  decoder="skip"),
                image_size=96, batch_size=32, steps=3000, warmup=300, lr=2e-3, checkpoint_every=500,
                log_every=50),
    # the full CPU study: the same network four times as long, twice the data (hours with --jobs 2)
    "cpu-long": dict(model=ModelConfig(backbone="resnet18", width=0.25, deconv=3, head_channels=128, refine_hidden=64,
                                       decoder="skip"),
                     image_size=96, batch_size=32, steps=12000, warmup=500, lr=2e-3, checkpoint_every=1000,
                     log_every=100),
    # the paper's backbone: ResNet-50 at 128 px, latent heatmaps at 1/4 (32 x 32) through the skip
    # decoder; bf16 autocast, channels_last and the compiled BMC loss on CUDA
    "gpu": dict(model=ModelConfig(backbone="resnet50", width=1.0, deconv=3, decoder="skip"), image_size=128,
                batch_size=64, steps=30000, warmup=1000, lr=5e-4, checkpoint_every=2000, log_every=50,
                compile_bmc=True),
}


def preset(preset_name: str, /, **overrides: Any) -> TrainConfig:
    """The config of a preset (``tiny`` / ``cpu`` / ``gpu``) with some fields overridden."""
    if preset_name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset_name!r}")
    kw = dict(PRESETS[preset_name])
    kw.update(overrides)
    return TrainConfig(preset=preset_name, **kw)


def config_from_dict(cls, data: dict[str, Any], where: str):
    """``cls(**data)`` for a config dataclass (nested ``model`` / ``augment`` mappings too);
    unknown keys are a ``ValueError`` naming ``where``. Types are checked by :func:`validate_config`."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise ValueError(f"{where}: unknown config keys {sorted(unknown)}")
    kw = {}
    for k, v in data.items():
        if k in ("model", "augment"):
            if not isinstance(v, dict):
                raise ValueError(f"{where}: {k} must be a mapping of {k} config keys, got {v!r}")
            v = config_from_dict(ModelConfig if k == "model" else AugmentConfig, v, f"{where}: {k}")
        kw[k] = v
    return cls(**kw)


#: Fields whose default changed after checkpoints were first written: a saved config without
#: them was trained with these values (benchmark v1), not with today's defaults.
LEGACY_DEFAULTS: dict[str, Any] = {"loss_2d": "image", "bmc_root": "model", "cpu_path": "reference"}


def saved_config(saved: dict[str, Any], where: str) -> TrainConfig:
    """The :class:`TrainConfig` of a config saved with a checkpoint or a metrics file."""
    return config_from_dict(TrainConfig, {**LEGACY_DEFAULTS, **dict(saved)}, where)


def same_config(saved: dict[str, Any], cfg: TrainConfig) -> bool:
    """Whether a config saved with a checkpoint equals ``cfg``. Fields added to
    :class:`TrainConfig` after the checkpoint was written take their defaults (which keep
    the old behaviour), so older checkpoints still resume and still count as finished; paths
    are compared after making them absolute (relative ones against the working directory)."""
    try:
        a = saved_config(saved, "checkpoint").to_dict()
    except (TypeError, ValueError):
        return False
    b = cfg.to_dict()
    for key in _PATH_FIELDS:  # "data/x" from the repository root and "/abs/repo/data/x" are one file
        a[key], b[key] = _norm_path(a[key]), _norm_path(b[key])
    return a == b


_PATH_FIELDS = ("source", "weak", "limits", "out")


def _norm_path(value: str) -> str:
    if not value or value in ("source", "default"):  # no file, or a keyword of ``limits``
        return value
    return os.path.normpath(os.path.abspath(value))


def load_config(path: str | os.PathLike, **overrides: Any) -> TrainConfig:
    """A config from YAML or JSON: ``preset:`` picks the defaults, other keys override them."""
    from .results import read_text

    path = Path(path)
    text = read_text(path, f"config file not found: {path}")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config keys, got a {type(data).__name__}")
    name = data.pop("preset", "cpu")
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"{path}: preset must be one of {sorted(PRESETS)}, got {name!r}")
    base = preset(name).to_dict()
    base.update({k: v for k, v in data.items()})
    base.update(overrides)
    cfg = config_from_dict(TrainConfig, base, str(path))
    validate_config(cfg, f"{path}: config")
    return cfg


#: (lowest, highest, whether the lowest is allowed) of each numeric config field; None = unbounded
_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "image_size": (32, None, True), "batch_size": (1, None, True), "steps": (1, None, True),
    "lr": (0, None, False), "weight_decay": (0, None, True), "warmup": (0, None, True),
    "ratio_3d": (0, 1, False), "w_2d": (0, None, True), "w_z": (0, None, True), "w_root": (0, None, True),
    "w_heatmap": (0, None, True), "heatmap_sigma": (0, None, False),
    "lambda_bl": (0, None, True), "lambda_rb": (0, None, True), "lambda_a": (0, None, True),
    "bmc_start": (0, None, True), "bmc_ramp": (0, None, True), "seed": (0, None, True),
    "checkpoint_every": (1, None, True), "log_every": (1, None, True),
    "model.width": (0, None, False), "model.head_channels": (1, None, True), "model.deconv": (0, 5, True),
    "model.refine_hidden": (1, None, True),
    "augment.rotation_deg": (0, 180, True), "augment.scale": (0, 1, True), "augment.translate": (0, 1, True),
    "augment.brightness": (0, 1, True), "augment.contrast": (0, 1, True), "augment.saturation": (0, 1, True),
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "bmc_terms": ("bl", "bl+rb", "all"), "bmc_grad": ("all", "depth", "maps"), "loss_2d": ("px", "image", "px_sq"),
    "bmc_root": ("closed_form", "detached", "all_bones", "model"), "optimizer": ("adamw", "adam", "sgd"),
    "model.backbone": ("resnet18", "resnet34", "resnet50"), "model.norm": ("batch", "group"),
    "model.decoder": ("deconv", "skip"), "cpu_path": ("reference", "fast"),
}


def validate_config(cfg: TrainConfig, where: str = "config") -> None:
    """Raise ``ValueError`` naming the field for a config value the loop cannot use: a wrong
    type (``steps: ten``, ``batch_size: 8.5``, ``use_bmc: 'no'``: nothing is coerced), a value
    out of range (``steps: 0``, a negative warm-up, ``w_2d: .nan``) or an unknown choice."""
    from .validate import check_fields

    check_fields(cfg, where)

    def get(name: str):
        obj = cfg
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj

    for name, allowed in _CHOICES.items():
        if get(name) not in allowed:
            raise ValueError(f"{where}.{name} must be one of {allowed}, got {get(name)!r}")
    for name, (lo, hi, lo_ok) in _RANGES.items():
        v = get(name)
        if lo is not None and (v < lo or (v == lo and not lo_ok)):
            raise ValueError(f"{where}.{name} must be {'>=' if lo_ok else '>'} {lo}, got {v!r}")
        if hi is not None and v > hi:
            raise ValueError(f"{where}.{name} must be <= {hi}, got {v!r}")
    if cfg.batch_weak is not None and cfg.batch_weak < 0:
        raise ValueError(f"{where}.batch_weak must be None or an int >= 0, got {cfg.batch_weak!r}")
    if not 0.0 <= cfg.root_margin < 1.0:
        raise ValueError(f"{where}.root_margin must be in [0, 1), got {cfg.root_margin!r}")
    if not cfg.name or cfg.name in (".", "..") or "/" in cfg.name or os.sep in cfg.name:
        raise ValueError(f"{where}.name must be a folder name (not empty, no '/'), got {cfg.name!r}")
