"""The 2.5D hand pose network: ResNet backbone, latent heatmap / depth-map head, root depth.

The backbone uses torchvision's parameter names (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ...), so ImageNet weights saved by torchvision load with
:func:`load_backbone_weights` (width 1.0 only); here everything starts from random init.

Convention:
    Input images ``(B, 3, S, S)`` float, normalised with ImageNet mean / std. Pixel
    coordinates with pixel centres at integers 0..S-1. Depths in units of the reference
    bone (middle MCP -> PIP): ``z_rel`` root-relative, ``root`` the root's depth.

Example:
    >>> net = HandPoseNet(ModelConfig(backbone="resnet18", width=0.25))
    >>> out = net(torch.zeros(2, 3, 64, 64), torch.eye(3).expand(2, 3, 3) * torch.tensor([100., 100., 1.]))
    >>> out.uv.shape, out.z_rel.shape, out.joints.shape
    (torch.Size([2, 21, 2]), torch.Size([2, 21]), torch.Size([2, 21, 3]))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from . import skeleton as sk
from .camera import normalised_coords, from_2p5d, root_depth

__all__ = ["ModelConfig", "ResNet", "HandPoseNet", "PoseOutput", "soft_argmax", "load_backbone_weights",
           "IMAGENET_MEAN", "IMAGENET_STD", "ComputePath", "compute_path", "cpu_has_native_bf16"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":  # batch-size independent (and identical under DDP and one process)
        return nn.GroupNorm(min(32, channels // 4) or 1, channels)
    raise ValueError(f"norm must be 'batch' or 'group', got {kind!r}")


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = _norm_layer(norm, width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = _norm_layer(norm, width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != width:
            self.downsample = nn.Sequential(nn.Conv2d(cin, width, 1, stride, bias=False), _norm_layer(norm, width))

    def forward(self, x: Tensor) -> Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, norm: str):
        super().__init__()
        out_c = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = _norm_layer(norm, width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = _norm_layer(norm, width)
        self.conv3 = nn.Conv2d(width, out_c, 1, bias=False)
        self.bn3 = _norm_layer(norm, out_c)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != out_c:
            self.downsample = nn.Sequential(nn.Conv2d(cin, out_c, 1, stride, bias=False), _norm_layer(norm, out_c))

    def forward(self, x: Tensor) -> Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


_ARCH = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet34": (BasicBlock, (3, 4, 6, 3)),
         "resnet50": (Bottleneck, (3, 4, 6, 3))}


class ResNet(nn.Module):
    """ResNet-18/34/50 feature extractor (no pooling / fc) with torchvision's parameter names.
    ``width`` scales every channel count (1.0 = the standard network)."""

    def __init__(self, name: str = "resnet50", width: float = 1.0, norm: str = "batch"):
        super().__init__()
        if name not in _ARCH:
            raise ValueError(f"backbone must be one of {sorted(_ARCH)}, got {name!r}")
        block, layers = _ARCH[name]
        c = lambda n: max(4, int(round(n * width)))  # noqa: E731
        self.conv1 = nn.Conv2d(3, c(64), 7, 2, 3, bias=False)
        self.bn1 = _norm_layer(norm, c(64))
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = c(64)
        self.stage_channels: list[int] = []  # channels of layer1 .. layer4's outputs
        for i, (n, w) in enumerate(zip(layers, (64, 128, 256, 512))):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, c(w), (1 if i == 0 else 2) if j == 0 else 1, norm))
                cin = c(w) * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.stage_channels.append(cin)
        self.out_channels = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)[-1]  # stride 32

    def features(self, x: Tensor) -> list[Tensor]:
        """The outputs of ``layer1`` .. ``layer4`` (strides 4, 8, 16, 32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            out.append(x)
        return out


def load_backbone_weights(backbone: ResNet, state_dict: dict[str, Tensor]) -> list[str]:
    """Load a torchvision ResNet state dict (or a ``.pth`` of one) into ``backbone``; the
    classifier (``fc.*``) is skipped. Returns the keys that were not used."""
    ours = backbone.state_dict()
    unused = [k for k in state_dict if k not in ours]
    shape_bad = [k for k in state_dict if k in ours and state_dict[k].shape != ours[k].shape]
    if shape_bad:
        raise ValueError(f"shape mismatch for {shape_bad[:3]}...: is the backbone width 1.0 and the same depth?")
    missing = [k for k in ours if k not in state_dict and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"state dict lacks {len(missing)} backbone keys, e.g. {missing[:3]}")
    backbone.load_state_dict({k: v for k, v in state_dict.items() if k in ours}, strict=False)
    return unused


def soft_argmax(logits: Tensor, beta: Tensor, stride: float) -> tuple[Tensor, Tensor]:
    """Spatial softmax and expected pixel position.

    Args:
        logits: ``(B, J, h, w)`` latent heatmaps; beta: ``(J,)`` inverse temperatures.
        stride: image pixels per heatmap cell.

    Returns:
        ``(uv (B, J, 2) image pixels, probabilities (B, J, h, w))``. Heatmap cell ``(i, j)``
        covers image pixels ``[j*stride, (j+1)*stride)``; its centre is at
        ``j*stride + (stride - 1) / 2`` in pixel-centre coordinates.
    """
    B, J, h, w = logits.shape
    prob = torch.softmax((logits * beta.view(1, J, 1, 1)).flatten(2), -1).view(B, J, h, w)
    xs = torch.arange(w, device=logits.device, dtype=prob.dtype) * stride + (stride - 1) / 2
    ys = torch.arange(h, device=logits.device, dtype=prob.dtype) * stride + (stride - 1) / 2
    u = (prob.sum(2) * xs).sum(-1)
    v = (prob.sum(3) * ys).sum(-1)
    return torch.stack([u, v], -1), prob


@dataclass
class ModelConfig:
    """``decoder``: ``"deconv"`` (the paper's: transposed convolutions on the stride-32
    features alone) or ``"skip"`` (top-down, each upsampling step adds a 1x1 projection of the
    backbone stage at that stride, as in a feature pyramid, so the latent heatmaps see the
    spatial detail of the early stages). Either way ``deconv`` upsampling steps give latent
    heatmaps at stride ``32 / 2**deconv`` (3: 1/4 of the crop)."""

    backbone: str = "resnet50"
    width: float = 1.0
    norm: str = "batch"
    head_channels: int = 256
    deconv: int = 3  # upsampling layers after the stride-32 features: stride 32 / 2^deconv
    refine_hidden: int = 128
    decoder: str = "deconv"  # "deconv" or "skip"

    @property
    def stride(self) -> int:
        return 32 // (2 ** self.deconv)


@dataclass
class PoseOutput:
    """``uv (B, 21, 2)`` px; ``z_rel (B, 21)`` and ``root (B,)`` in reference-bone units;
    ``root_closed_form (B,)`` before refinement; ``joints_norm (B, 21, 3)`` camera-frame joints
    in reference-bone units; ``joints (B, 21, 3)`` metric when a scale was given, else
    equal to ``joints_norm``; ``heatmaps (B, 21, h, w)`` the latent heatmaps' probabilities;
    ``depth_maps (B, 21, h, w)`` the latent depth maps (``z_rel`` is their heatmap-weighted sum,
    minus the root's)."""

    uv: Tensor
    z_rel: Tensor
    root: Tensor
    root_closed_form: Tensor
    joints_norm: Tensor
    joints: Tensor
    heatmaps: Tensor
    depth_maps: Tensor | None = None


class SkipDecoder(nn.Module):
    """Top-down decoder with lateral skips: ``up`` times, upsample x2 (nearest), add a 1x1
    projection of the backbone stage at the new stride, then a 3x3 conv + norm + ReLU."""

    def __init__(self, stage_channels: list[int], channels: int, up: int, norm: str):
        super().__init__()
        if not 0 <= up <= 3:
            raise ValueError(f"the skip decoder upsamples 0-3 times (stride 32 to 4), got deconv={up}")
        self.top = nn.Sequential(nn.Conv2d(stage_channels[3], channels, 1, bias=False), _norm_layer(norm, channels),
                                 nn.ReLU(inplace=True))
        self.lateral = nn.ModuleList(nn.Conv2d(stage_channels[2 - i], channels, 1, bias=False) for i in range(up))
        self.smooth = nn.ModuleList(nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
                                                  _norm_layer(norm, channels), nn.ReLU(inplace=True))
                                    for _ in range(up))

    def forward(self, feats: list[Tensor]) -> Tensor:
        x = self.top(feats[3])
        for i, (lat, smooth) in enumerate(zip(self.lateral, self.smooth)):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest") + lat(feats[2 - i])
            x = smooth(x)
        return x


class HandPoseNet(nn.Module):
    """ResNet + 2.5D head + closed-form root depth with an MLP residual."""

    def __init__(self, config: ModelConfig | None = None, **kw: Any):
        super().__init__()
        self.config = cfg = config or ModelConfig(**kw)
        self.backbone = ResNet(cfg.backbone, cfg.width, cfg.norm)
        layers, c = [], self.backbone.out_channels
        hc = max(8, int(round(cfg.head_channels * cfg.width)))
        if cfg.decoder == "skip":
            self.upsample = SkipDecoder(self.backbone.stage_channels, hc, cfg.deconv, cfg.norm)
            c = hc
        elif cfg.decoder == "deconv":
            for _ in range(cfg.deconv):
                layers += [nn.ConvTranspose2d(c, hc, 4, 2, 1, bias=False), _norm_layer(cfg.norm, hc),
                           nn.ReLU(inplace=True)]
                c = hc
            self.upsample = nn.Sequential(*layers)
        else:
            raise ValueError(f"decoder must be 'deconv' or 'skip', got {cfg.decoder!r}")
        self.head = nn.Conv2d(c, 2 * sk.NUM_JOINTS, 1)  # 21 latent heatmaps + 21 latent depth maps
        self.beta = nn.Parameter(torch.ones(sk.NUM_JOINTS))  # learnable inverse temperature
        self.refine = nn.Sequential(nn.Linear(21 + 42 + 1, cfg.refine_hidden), nn.ReLU(inplace=True),
                                    nn.Linear(cfg.refine_hidden, cfg.refine_hidden), nn.ReLU(inplace=True),
                                    nn.Linear(cfg.refine_hidden, 1))
        nn.init.zeros_(self.refine[-1].weight)
        nn.init.zeros_(self.refine[-1].bias)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor, K: Tensor, scale: Tensor | None = None) -> PoseOutput:
        """images ``(B, 3, S, S)`` in [0, 1]; K ``(B, 3, 3)``; scale ``(B,)`` metres (optional)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected (B, 3, S, S), got {tuple(images.shape)}")
        x = (images - self.mean) / self.std
        if self.config.decoder == "skip":
            feats = self.upsample(self.backbone.features(x))
        else:
            feats = self.upsample(self.backbone(x))
        maps = self.head(feats).float()  # the geometry runs in float32 even under autocast
        stride = images.shape[-1] / maps.shape[-1]
        uv, prob = soft_argmax(maps[:, :21], self.beta.float(), stride)
        z_rel = (prob * maps[:, 21:]).sum((2, 3))  # (B, 21)
        z_rel = z_rel - z_rel[:, :1]  # root-relative by construction
        K = K.float()
        z_closed = root_depth(uv, z_rel, K).clamp(1.0, 100.0).detach()  # stabiliser: no gradient; 1..100 bones away
        xy = normalised_coords(uv, K)  # (B, 21, 2)
        # the MLP sees detached 2.5D: the root loss trains the residual, not the keypoints
        feats_root = torch.cat([z_rel.detach(), xy.detach().flatten(1), z_closed[:, None] / 20.0], 1)
        root = z_closed + self.refine(feats_root)[:, 0]
        joints_norm = from_2p5d(uv, z_rel, root, K)
        joints = joints_norm * scale.float()[:, None, None] if scale is not None else joints_norm
        return PoseOutput(uv, z_rel, root, z_closed, joints_norm, joints, prob, maps[:, 21:])


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 / AMX, as oneDNN reports): only there is
    bf16 autocast on the CPU faster than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class ComputePath:
    """How the network runs on a device: its memory format and autocast. The geometry after the
    head (soft-argmax, 2.5D read-out, closed-form root), the losses and BMC stay in float32 whatever
    the autocast (:meth:`HandPoseNet.forward` casts the maps)."""

    device_type: str
    channels_last: bool
    bf16: bool

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model in this path's memory format (in place, returned)."""
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def forward(self, model: nn.Module, images: Tensor, K: Tensor, scale: Tensor | None = None) -> PoseOutput:
        """``model(images, K, scale)`` on this path."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.bf16):
            return model(images, K, scale)

    def describe(self) -> str:
        return (f"{self.device_type}: {'channels_last' if self.channels_last else 'contiguous'}, "
                f"{'bf16 autocast' if self.bf16 else 'float32'}")


def compute_path(device: torch.device | str, cpu_path: str = "fast", channels_last: bool = True,
                 amp: bool = True) -> ComputePath:
    """The :class:`ComputePath` of a run on ``device``: on CUDA the config's ``channels_last`` and
    ``amp`` (bf16); on the CPU ``cpu_path`` decides: ``"fast"`` is channels_last with bf16 autocast
    where the CPU has native bf16 (:func:`cpu_has_native_bf16`), ``"reference"`` float32 as every run
    up to benchmark v3 trained."""
    device = torch.device(device)
    if cpu_path not in ("reference", "fast"):
        raise ValueError(f"cpu_path must be 'reference' or 'fast', got {cpu_path!r}")
    if device.type == "cuda":
        return ComputePath("cuda", bool(channels_last), bool(amp))
    fast = cpu_path == "fast"
    return ComputePath("cpu", fast, fast and cpu_has_native_bf16())
