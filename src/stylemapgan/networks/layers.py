"""Equalised-learning-rate building blocks shared by every network.

Weights are stored N(0, 1) / lr_mul and scaled at run time by lr_mul / sqrt(fan_in), so Adam sees the same
effective step size for every layer (Karras et al.). Every conv weight, transposed ones included, is laid out
[out, in, k, k]; a transposed conv runs with its transpose.

Every layer has two implementations of the same math, chosen at construction (`impl="fast"`, the default, or
`impl="ref"`) or later with `set_impl(network, impl)`:
- `forward_ref`: the literal formulation (conv, then blur with an explicit pad, then bias, leaky ReLU, gain).
- `forward_fast(x, gain)`: returns `gain * forward_ref(x)` with fewer memory passes: the bias goes into the conv
  call, the activation gain (and any output `gain`, e.g. a residual's 1/sqrt(2)) into the weight, the leaky ReLU
  runs in place, blur padding is done by the conv, a blur before a 1x1 stride-2 conv is evaluated only where
  needed, and a 1x1 stride-2 transposed conv + blur becomes a 1x1 conv + depthwise transposed conv.
The fast path is autograd-safe (in-place ops only touch fresh intermediates) and keeps parameter names.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stylemapgan.ops import (
    add_,
    bias_leaky_relu,
    blur2d,
    blur2d_fast,
    leaky_relu_,
    make_blur_kernel,
    needs_grad,
    tracing,
    upsample_blur2d,
)
from stylemapgan.ops.bias_act import GAIN

BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)
IMPLS = ("fast", "ref")
INV_SQRT2 = 1 / math.sqrt(2)


def check_impl(impl: str) -> bool:
    """Validate an implementation name; True for the fast path."""
    if impl not in IMPLS:
        raise ValueError(f"impl: must be one of {IMPLS}, got {impl!r}")
    return impl == "fast"


class DualImpl(nn.Module):
    """Mixin for layers with a reference and a fast forward; `fast` is fixed at construction or by set_impl."""

    fast: bool = True

    def set_impl(self, impl: str) -> None:
        self.fast = check_impl(impl)


def set_impl(module: nn.Module, impl: str) -> nn.Module:
    """Switch every layer of a network to the "fast" or "ref" implementation (same parameters, same math)."""
    check_impl(impl)
    for m in module.modules():
        if isinstance(m, DualImpl):
            m.set_impl(impl)
    return module


def scaled_weight(layer: nn.Module, factor: float, like: torch.Tensor | None = None) -> torch.Tensor:
    """`layer.weight * factor`, kept between inference calls (in the layout of `like`, e.g. channels-last).

    Rescaling (and re-laying-out) the big weights costs ~10% of a paper-size forward at batch 1. The cached copy
    is reused only while the weight is unchanged: its version counter (bumped by every in-place update such as
    load_state_dict, an optimizer or EMA step), storage, dtype and the factor must match. Never used when autograd
    needs the weight's gradient or under tracing/compilation.
    """
    weight = layer.weight
    if needs_grad(weight) or tracing():
        return weight * factor
    cl = like is not None and like.ndim == 4 and weight.ndim == 4 and weight.device.type == "cpu" and (
        like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous()
    )
    state = (weight._version, weight.data_ptr(), weight.dtype)
    cache = layer.__dict__.get("_weight_cache")
    if cache is None or cache[0] != state:
        cache = (state, {})
        layer.__dict__["_weight_cache"] = cache
    key = (factor, cl)
    out = cache[1].get(key)
    if out is None:
        out = weight * factor
        if cl:
            out = out.contiguous(memory_format=torch.channels_last)
        cache[1][key] = out
    return out


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """NHWC memory layout on CPU, where oneDNN convolutions run 1.3-1.5x faster with it (measured on 2 cores)."""
    if x.ndim == 4 and x.device.type == "cpu":
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _up_pad(kernel_size: int, taps: int = len(BLUR_TAPS), factor: int = 2) -> tuple[int, int]:
    """Blur padding after a stride-2 transposed conv so the output is exactly 2x the input."""
    p = (taps - factor) - (kernel_size - 1)
    return ((p + 1) // 2 + factor - 1, p // 2 + 1)


def _down_pad(kernel_size: int, taps: int = len(BLUR_TAPS), factor: int = 2) -> tuple[int, int]:
    """Blur padding before a stride-2 conv so the output is exactly half the input."""
    p = (taps - factor) + (kernel_size - 1)
    return ((p + 1) // 2, p // 2)


class Blur(nn.Module):
    """Fixed [1,3,3,1] low-pass filter (a buffer, not learned)."""

    def __init__(self, pad: tuple[int, int], gain: float = 1.0) -> None:
        super().__init__()
        self.pad = pad
        self.register_buffer("kernel", make_blur_kernel(BLUR_TAPS, gain), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return blur2d(x, self.kernel, self.pad)


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(DualImpl):
    """Equalised linear layer, optionally followed by bias + scaled leaky ReLU."""

    def __init__(
        self, in_features: int, out_features: int, *, lr_mul: float = 1.0, activate: bool = False,
        impl: str = "fast",
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activate = activate
        self.set_impl(impl)

    def forward_ref(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul
        if self.activate:
            return bias_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)

    def forward_fast(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        m = gain * (GAIN if self.activate else 1.0)
        y = F.linear(x, self.weight * (self.scale * m), self.bias * (self.lr_mul * m))
        return leaky_relu_(y) if self.activate else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_fast(x) if self.fast else self.forward_ref(x)


class EqualConv2d(DualImpl):
    """Equalised 'same'-padded stride-1 conv with a plain bias (used for gamma/beta prediction)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, bias_init: torch.Tensor, impl: str = "fast"
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(bias_init.clone().float())
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        self.set_impl(impl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = scaled_weight(self, self.scale, x) if self.fast else self.weight * self.scale
        return F.conv2d(x, weight, self.bias, padding=self.padding)


class _ConvBase(DualImpl):
    """Weight [out, in, k, k] with equalised scale, and the bias-act (or plain bias, or none) after it."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool, activate: bool,
        impl: str = "fast",
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.activate = activate
        self.set_impl(impl)

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return x
        if self.activate:
            return bias_leaky_relu(x, self.bias)
        return x + self.bias.view(1, -1, 1, 1)

    def _folded(self, gain: float, like: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias with the activation gain times `gain` folded in."""
        m = gain * (GAIN if self.activate and self.bias is not None else 1.0)
        bias = self.bias * m if self.bias is not None else None
        return scaled_weight(self, self.scale * m, like), bias

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return leaky_relu_(x) if self.activate and self.bias is not None else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_fast(x) if self.fast else self.forward_ref(x)


class ConvLayer(_ConvBase):
    """Stride-1 'same' conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
                 activate: bool = True, impl: str = "fast") -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias=bias, activate=activate, impl=impl)
        self.padding = kernel_size // 2

    def forward_ref(self, x: torch.Tensor) -> torch.Tensor:
        return self._finish(F.conv2d(x, self.weight * self.scale, padding=self.padding))

    def forward_fast(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        weight, bias = self._folded(gain, x)
        return self._act(F.conv2d(x, weight, bias, padding=self.padding))


class DownConvLayer(_ConvBase):
    """Blur then stride-2 conv: halves the resolution without aliasing."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
                 activate: bool = True, impl: str = "fast") -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias=bias, activate=activate, impl=impl)
        self.blur = Blur(_down_pad(kernel_size))

    def forward_ref(self, x: torch.Tensor) -> torch.Tensor:
        return self._finish(F.conv2d(self.blur(x), self.weight * self.scale, stride=2))

    def forward_fast(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        weight, bias = self._folded(gain, x)
        if weight.shape[-1] == 1:  # a 1x1 stride-2 conv reads every second blurred pixel: blur only those
            return self._act(F.conv2d(blur2d_fast(x, self.blur.kernel, self.blur.pad, stride=2), weight, bias))
        return self._act(F.conv2d(blur2d_fast(x, self.blur.kernel, self.blur.pad), weight, bias, stride=2))


def upsample_conv(x: torch.Tensor, weight: torch.Tensor, blur: Blur) -> torch.Tensor:
    """Stride-2 transposed conv (weight given as [out, in, k, k]) followed by the x4 blur."""
    return blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2, padding=0))


def upsample_conv_fast(
    x: torch.Tensor, weight: torch.Tensor, blur: Blur, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """`upsample_conv(x, weight, blur) + bias`. A 1x1 kernel is a 1x1 conv at the input resolution followed by
    zero insertion, so it runs as a 1x1 conv + depthwise transposed blur; larger kernels keep the transposed
    conv (folding the blur into it would make a 6x6 kernel: 4x the FLOPs, measured 1.4x slower) and blur with
    the padding and bias inside the depthwise conv."""
    if weight.shape[-1] == 1:
        return upsample_blur2d(F.conv2d(x, weight), blur.kernel, blur.pad, bias=bias)
    return blur2d_fast(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2), blur.kernel, blur.pad, bias=bias)


class UpConvLayer(_ConvBase):
    """Stride-2 transposed conv then blur: doubles the resolution."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
                 activate: bool = True, impl: str = "fast") -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias=bias, activate=activate, impl=impl)
        self.blur = Blur(_up_pad(kernel_size), gain=4.0)

    def forward_ref(self, x: torch.Tensor) -> torch.Tensor:
        return self._finish(upsample_conv(x, self.weight * self.scale, self.blur))

    def forward_fast(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        weight, bias = self._folded(gain, x if self.weight.shape[-1] == 1 else None)
        return self._act(upsample_conv_fast(x, weight, self.blur, bias))


class ResDownBlock(DualImpl):
    """StyleGAN2 residual block of encoder and discriminator: (conv path + blurred 1x1 skip) / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, impl: str = "fast") -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, impl=impl)
        self.conv2 = DownConvLayer(in_channels, out_channels, 3, impl=impl)
        self.skip = DownConvLayer(in_channels, out_channels, 1, bias=False, activate=False, impl=impl)
        self.set_impl(impl)

    def forward_ref(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2.forward_ref(self.conv1.forward_ref(x)) + self.skip.forward_ref(x)) * INV_SQRT2

    def forward_fast(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """The 1/sqrt(2) goes into both branches' weights; the sum is taken in place."""
        h = self.conv2.forward_fast(self.conv1.forward_fast(x), gain * INV_SQRT2)
        return add_(h, self.skip.forward_fast(x, gain * INV_SQRT2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_fast(x) if self.fast else self.forward_ref(x)
