"""Equalised-learning-rate building blocks shared by every network.

Weights are stored N(0, 1) / lr_mul and scaled at run time by lr_mul / sqrt(fan_in), so Adam sees the same
effective step size for every layer (Karras et al.). Every conv weight, transposed ones included, is laid out
[out, in, k, k]; a transposed conv runs with its transpose.

Each layer has one `forward`, which hands its tensors to its implementation object `layer.ops` (see
`stylemapgan.ops.layer_ops`): `FastOps` (default) or `ReferenceOps`, the literal formulation. Pick it at
construction (`impl="fast"` or `"ref"`) or for a whole network with `set_impl(network, impl)` / `use_ops`.
A layer's output `gain` is fixed at construction (a residual block gives its branches 1/sqrt(2)), so no parent
needs to know how its children compute.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from stylemapgan.ops import LayerOps, blur2d, make_blur_kernel, make_ops, ops_factory

BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)
INV_SQRT2 = 1 / math.sqrt(2)


def use_ops(module: nn.Module, factory: Callable[[], LayerOps]) -> nn.Module:
    """Give every layer of a network a fresh implementation object from `factory` (e.g. `ReferenceOps`)."""
    for m in module.modules():
        if isinstance(getattr(m, "ops", None), LayerOps):
            m.ops = factory()
    return module


def set_impl(module: nn.Module, impl: str) -> nn.Module:
    """Switch every layer of a network to the "fast" or "ref" implementation (same parameters, same math)."""
    return use_ops(module, ops_factory(impl))


def layer_repr(*parts: str, gain: float, ops: LayerOps) -> str:
    """The common tail of the layers' `extra_repr`: the output gain (when not 1) and the implementation."""
    tail = [] if gain == 1.0 else [f"gain={gain:.4g}"]
    return ", ".join([*parts, *tail, f"impl={ops.name}"])


def up_blur_pad(kernel_size: int, taps: int = len(BLUR_TAPS), factor: int = 2) -> tuple[int, int]:
    """Blur padding after a stride-2 transposed conv so the output is exactly 2x the input."""
    p = (taps - factor) - (kernel_size - 1)
    return ((p + 1) // 2 + factor - 1, p // 2 + 1)


def down_blur_pad(kernel_size: int, taps: int = len(BLUR_TAPS), factor: int = 2) -> tuple[int, int]:
    """Blur padding before a stride-2 conv so the output is exactly half the input."""
    p = (taps - factor) + (kernel_size - 1)
    return ((p + 1) // 2, p // 2)


class Blur(nn.Module):
    """Fixed [1,3,3,1] low-pass filter (a buffer, not learned)."""

    def __init__(self, pad: tuple[int, int], gain: float = 1.0) -> None:
        super().__init__()
        self.pad = pad
        self.gain = gain
        self.register_buffer("kernel", make_blur_kernel(BLUR_TAPS, gain), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return blur2d(x, self.kernel, self.pad)

    def extra_repr(self) -> str:
        return f"taps={BLUR_TAPS}, pad={self.pad}, gain={self.gain:g}"


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Equalised linear layer, optionally followed by bias + scaled leaky ReLU."""

    def __init__(
        self, in_features: int, out_features: int, *, lr_mul: float = 1.0, activate: bool = False,
        gain: float = 1.0, impl: str = "fast",
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activate = activate
        self.gain = gain
        self.ops = make_ops(impl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops.linear(x, self.weight, self.bias, weight_gain=self.scale, bias_gain=self.lr_mul,
                               activate=self.activate, gain=self.gain)

    def extra_repr(self) -> str:
        return layer_repr(f"{self.in_features}, {self.out_features}", f"lr_mul={self.lr_mul:g}",
                          f"activate={self.activate}", gain=self.gain, ops=self.ops)


class EqualConv2d(nn.Module):
    """Equalised 'same'-padded stride-1 conv with a plain bias (used for gamma/beta prediction)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, bias_init: torch.Tensor, impl: str = "fast"
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(bias_init.clone().float())
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        self.ops = make_ops(impl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops.conv2d(x, self.weight, self.bias, weight_gain=self.scale, padding=self.padding)

    def forward_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """This conv at P pixels from their gathered k x k input neighbourhoods [P, k*k, C] in (ky, kx, c) order
        (zeros outside the image, as the conv's padding): [P, out]. Equals `forward` at those pixels."""
        expected = self.kernel_size**2 * self.in_channels
        if patches.ndim < 2 or patches[0].numel() != expected:
            raise ValueError(f"patches: expected [P, {self.kernel_size ** 2}, {self.in_channels}], "
                             f"got {tuple(patches.shape)}")
        return self.ops.conv2d_patches(patches, self.weight, self.bias, weight_gain=self.scale)

    def extra_repr(self) -> str:
        return layer_repr(f"{self.in_channels}, {self.out_channels}", f"kernel_size={self.kernel_size}",
                          gain=1.0, ops=self.ops)


class ConvBase(nn.Module):
    """Weight [out, in, k, k] with equalised scale, and the bias-act (or plain bias, or none) after it.

    Without a bias there is no activation either (the skip branches' use)."""

    resample = ""  # "down=2" / "up=2" in the resampling subclasses, for the repr

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool, activate: bool,
        gain: float = 1.0, impl: str = "fast",
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.activate = activate and bias
        self.gain = gain
        self.ops = make_ops(impl)

    def extra_repr(self) -> str:
        parts = [f"{self.in_channels}, {self.out_channels}", f"kernel_size={self.kernel_size}"]
        parts += [self.resample] if self.resample else []
        parts += [f"bias={self.bias is not None}", f"activate={self.activate}"]
        return layer_repr(*parts, gain=self.gain, ops=self.ops)


class ConvLayer(ConvBase):
    """Stride-1 'same' conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
                 activate: bool = True, gain: float = 1.0, impl: str = "fast") -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias=bias, activate=activate, gain=gain, impl=impl)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops.conv2d(x, self.weight, self.bias, weight_gain=self.scale, padding=self.padding,
                               activate=self.activate, gain=self.gain)


class DownConvLayer(ConvBase):
    """Blur then stride-2 conv: halves the resolution without aliasing."""

    resample = "down=2"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
                 activate: bool = True, gain: float = 1.0, impl: str = "fast") -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias=bias, activate=activate, gain=gain, impl=impl)
        self.blur = Blur(down_blur_pad(kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops.down_conv2d(x, self.weight, self.bias, self.blur.kernel, self.blur.pad,
                                    weight_gain=self.scale, activate=self.activate, gain=self.gain)


class UpConvLayer(ConvBase):
    """Stride-2 transposed conv then blur: doubles the resolution."""

    resample = "up=2"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
                 activate: bool = True, gain: float = 1.0, impl: str = "fast") -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias=bias, activate=activate, gain=gain, impl=impl)
        self.blur = Blur(up_blur_pad(kernel_size), gain=4.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops.up_conv2d(x, self.weight, self.bias, self.blur.kernel, self.blur.pad,
                                  weight_gain=self.scale, activate=self.activate, gain=self.gain)


class ResDownBlock(nn.Module):
    """StyleGAN2 residual block of encoder and discriminator: (conv path + blurred 1x1 skip) / sqrt(2).

    The 1/sqrt(2) (times the block's own `gain`) is both branches' output gain; the ops add them."""

    def __init__(self, in_channels: int, out_channels: int, impl: str = "fast", *, gain: float = 1.0) -> None:
        super().__init__()
        self.gain = gain
        branch_gain = gain * INV_SQRT2
        self.conv1 = ConvLayer(in_channels, in_channels, 3, impl=impl)
        self.conv2 = DownConvLayer(in_channels, out_channels, 3, gain=branch_gain, impl=impl)
        self.skip = DownConvLayer(in_channels, out_channels, 1, bias=False, activate=False, gain=branch_gain,
                                  impl=impl)
        self.ops = make_ops(impl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops.residual_sum(self.conv2(self.conv1(x)), self.skip(x))

    def extra_repr(self) -> str:
        return layer_repr(f"{self.conv1.in_channels}, {self.conv2.out_channels}", "down=2", gain=self.gain,
                          ops=self.ops)
