"""LPIPS perceptual distance (Zhang et al. 2018) with the shift-tolerant networks of ST-LPIPS.

StyleMapGAN's reconstruction loss and metrics use LPIPS. The weights usable without torchvision come from
the PyPI package `stlpips-pytorch==0.0.2` (Ghildyal & Liu, ECCV 2022, BSD-2): VGG16 / AlexNet trunks whose
stride-2 steps are replaced by anti-aliased blur-pools, so a 1-2 pixel shift barely moves the distance. That
package's code imports torchvision (and IPython, torchsummary), so we never import it: we only read its
`.pth` files into the plain re-definition below, which reproduces its forward pass and input gradients
(checked against the package's own code: max abs difference < 1e-7).

Inputs are RGB images in [-1, 1], shape [N, 3, H, W] with H, W >= 32. Images are not resized: features are
compared at every location and averaged over space, so only compare pairs at the same resolution; values
at different resolutions are not comparable.
"""

from __future__ import annotations

import re
from importlib.util import find_spec
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("stlpips-vgg", "stlpips-alex", "lpips-vgg")
MIN_SIZE = 32
STLPIPS_INSTALL = "pip install --no-deps stlpips-pytorch==0.0.2"
_STLPIPS_FILES = {
    "stlpips-vgg": "weights/vST0.0/vgg_shift_tolerant.pth",
    "stlpips-alex": "weights/vST0.0/alex_shift_tolerant.pth",
}


class BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling: reflect-pad 2 on every side, [1,2,1]^2 binomial blur, stride 2.

    ST-LPIPS pads by 2 (its "pad_more" option) rather than the usual 1, so an n-pixel input gives
    (n + 1) // 2 + 1 outputs.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        k = torch.outer(k, k)
        self.register_buffer("filt", (k / k.sum()).expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


def conv_relu(c_in: int, c_out: int, kernel: int, padding: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, padding=padding), nn.ReLU(inplace=True)]


def vgg16_layers() -> tuple[list[nn.Module], tuple[int, ...]]:
    """VGG16 features; every max-pool is MaxPool(2, stride 1) + BlurPool. Taps: relu1_2 ... relu5_3."""
    layers: list[nn.Module] = []
    ch = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
        if v == "M":
            layers += [nn.MaxPool2d(2, stride=1), BlurPool(ch)]
        else:
            layers += conv_relu(ch, int(v), 3, 1)
            ch = int(v)
    return layers, (4, 10, 18, 26, 34)


def alexnet_layers() -> tuple[list[nn.Module], tuple[int, ...]]:
    """AlexNet features; stride-4 conv1 becomes stride 1 + BlurPool, pools become MaxPool(3, 1) + BlurPool.

    Note the first BlurPool sits before the ReLU. Taps: relu1 ... relu5 (the final pool is unused).
    """
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 11, padding=2), BlurPool(64), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=1), BlurPool(64), *conv_relu(64, 192, 5, 2),
        nn.MaxPool2d(3, stride=1), BlurPool(192), *conv_relu(192, 384, 3, 1),
        *conv_relu(384, 256, 3, 1),
        *conv_relu(256, 256, 3, 1),
    ]  # fmt: skip
    return layers, (3, 7, 11, 13, 15)


class Trunk(nn.Module):
    """Feature extractor split into slices at the LPIPS tap points.

    Layers keep their index in the flat layer list, so parameter names follow the upstream
    `net.slice{k}.{i}` layout up to a prefix.
    """

    def __init__(self, layers: list[nn.Module], ends: tuple[int, ...]) -> None:
        super().__init__()
        self.slices = nn.ModuleList()
        self.channels: list[int] = []  # width of each tapped feature map
        start = 0
        for end in ends:
            block = nn.Sequential()
            for i in range(start, end):
                block.add_module(str(i), layers[i])
            self.slices.append(block)
            self.channels.append([m for m in block if isinstance(m, nn.Conv2d)][-1].out_channels)
            start = end

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in self.slices:
            x = block(x)
            feats.append(x)
        return feats


def stlpips_weights_path(kind: str) -> Path:
    """Locate the weights inside the installed `stlpips_pytorch` package without importing it."""
    spec = find_spec("stlpips_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"LPIPS kind {kind!r} needs the weights of the PyPI package 'stlpips-pytorch', which is not "
            f"installed: `{STLPIPS_INSTALL}` (only its weight files are read; its code is never imported)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _STLPIPS_FILES[kind]
    if not path.is_file():
        raise FileNotFoundError(
            f"LPIPS weights file {path} is missing from the installed 'stlpips-pytorch'; "
            f"reinstall it: `{STLPIPS_INSTALL}`"
        )
    return path


def _rename_upstream_key(key: str) -> str:
    """Map upstream state-dict names to ours (net.slice2.5.filt -> trunk.slices.1.5.filt, etc.)."""
    if m := re.fullmatch(r"net\.slice(\d+)\.(.+)", key):
        return f"trunk.slices.{int(m[1]) - 1}.{m[2]}"
    if m := re.fullmatch(r"lin(\d+)\.model\.1\.weight", key):
        return f"heads.{m[1]}.weight"
    return {"scaling_layer.shift": "shift", "scaling_layer.scale": "scale"}.get(key, key)


def _load_lpips_package(weights_path: str | None) -> nn.Module:
    """The original LPIPS (VGG) from the `lpips` package; needs torchvision and its cached VGG16 weights."""
    try:
        import lpips  # type: ignore[import-not-found]
    except ImportError as e:
        raise ImportError(
            "LPIPS kind 'lpips-vgg' needs the PyPI package 'lpips' and torchvision "
            "(`pip install lpips torchvision`); without torchvision use kind 'stlpips-vgg' or 'stlpips-alex'"
        ) from e
    return lpips.LPIPS(net="vgg", model_path=weights_path, verbose=False)


class PerceptualLoss(nn.Module):
    """Per-sample LPIPS distance d(x, y) -> [N] for images in [-1, 1], with frozen weights.

    kinds: "stlpips-vgg" (default; reconstruction loss), "stlpips-alex" (cheaper; metrics), "lpips-vgg"
    (original LPIPS via the optional `lpips` package). `weights_path` overrides the weights file (for
    "lpips-vgg": the linear-head file). Gradients flow to both inputs. The computation always runs in the
    weights' dtype (fp32) with autocast disabled: the unit-normalisation and small feature differences
    are not accurate in bf16/fp16.
    """

    def __init__(self, kind: str = "stlpips-vgg", weights_path: str | None = None) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown LPIPS kind {kind!r}; expected one of {KINDS} (or 'none')")
        self.kind = kind
        self.external: nn.Module | None = None
        if kind == "lpips-vgg":
            self.external = _load_lpips_package(weights_path)
        else:
            layers, ends = vgg16_layers() if kind == "stlpips-vgg" else alexnet_layers()
            self.trunk = Trunk(layers, ends)
            # LPIPS heads: a learned non-negative weight per channel of the squared feature difference.
            self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.trunk.channels)
            # [-1, 1] input -> ImageNet-normalised input; overwritten by the (identical) values in the file.
            self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
            self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
            path = Path(weights_path) if weights_path is not None else stlpips_weights_path(kind)
            if not path.is_file():
                raise FileNotFoundError(f"LPIPS weights file not found: {path}")
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.load_state_dict({_rename_upstream_key(k): v for k, v in state.items()})
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Stay in eval mode even when a parent model is put in training mode (the metric is fixed)."""
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            shapes = f"{tuple(x.shape)} and {tuple(y.shape)}"
            raise ValueError(f"expected two [N, 3, H, W] images of equal shape, got {shapes}")
        if min(x.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"LPIPS needs H, W >= {MIN_SIZE}, got {tuple(x.shape[-2:])}")
        dtype = next(self.parameters()).dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            x, y = x.to(dtype), y.to(dtype)
            if self.external is not None:
                return self.external(x, y).reshape(x.shape[0])
            # One trunk pass per input, not one over torch.cat([x, y]): when only one side needs a gradient
            # (a reconstruction loss against a real image), autograd then records and back-propagates the
            # trunk for that side alone.
            dist = x.new_zeros(x.shape[0])
            for fx, fy, head in zip(self._unit_features(x), self._unit_features(y), self.heads, strict=True):
                dist = dist + head((fx - fy).square()).mean((1, 2, 3))
            return dist

    def _unit_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Trunk features at the tap points, unit-normalised over channels.

        vector_norm keeps the gradient finite at an all-zero feature vector, where the upstream
        sqrt(sum(f^2)) gives NaN; the values are identical."""
        h = (x - self.shift) / self.scale
        if h.device.type == "cpu":  # oneDNN's convolutions run this trunk ~25% faster channels-last (measured)
            h = h.contiguous(memory_format=torch.channels_last)
        feats = self.trunk(h)
        return [f / (torch.linalg.vector_norm(f, dim=1, keepdim=True) + 1e-10) for f in feats]


def build_perceptual(kind: str) -> PerceptualLoss | None:
    """PerceptualLoss for a config string; None for "none" (LPIPS term disabled)."""
    if kind == "none":
        return None
    return PerceptualLoss(kind)


def perceptual_distance(perceptual: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample LPIPS; images under 32 px are upsampled (bilinear) to 32 first (the trunks need 32)."""
    if min(x.shape[-2:]) < MIN_SIZE:
        x = F.interpolate(x, size=(MIN_SIZE, MIN_SIZE), mode="bilinear", align_corners=False)
        y = F.interpolate(y, size=(MIN_SIZE, MIN_SIZE), mode="bilinear", align_corners=False)
    return perceptual(x, y).reshape(x.shape[0])


@torch.no_grad()
def reconstruction_metrics(
    images: torch.Tensor, targets: torch.Tensor, perceptual: nn.Module | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-sample MSE and LPIPS of clamped reconstructions against targets (both in [-1, 1])."""
    clamped = images.clamp(-1, 1)
    mse = (clamped - targets).square().flatten(1).mean(1)
    lpips = perceptual_distance(perceptual, clamped, targets) if perceptual is not None else None
    return mse, lpips
