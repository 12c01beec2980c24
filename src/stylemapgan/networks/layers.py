"""Equalised-learning-rate building blocks shared by every network.

Weights are stored N(0, 1) / lr_mul and scaled at run time by lr_mul / sqrt(fan_in), so Adam sees the same
effective step size for every layer (Karras et al.). Every conv weight, transposed ones included, is laid out
[out, in, k, k]; a transposed conv runs with its transpose.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stylemapgan.ops import bias_leaky_relu, blur2d, make_blur_kernel

BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)


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


class EqualLinear(nn.Module):
    """Equalised linear layer, optionally followed by bias + scaled leaky ReLU."""

    def __init__(
        self, in_features: int, out_features: int, *, lr_mul: float = 1.0, activate: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul
        if self.activate:
            return bias_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)


class EqualConv2d(nn.Module):
    """Equalised 'same'-padded stride-1 conv with a plain bias (used for gamma/beta prediction)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias_init: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(bias_init.clone().float())
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class _ConvBase(nn.Module):
    """Weight [out, in, k, k] with equalised scale, and the bias-act (or plain bias, or none) after it."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool, activate: bool
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.activate = activate

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return x
        if self.activate:
            return bias_leaky_relu(x, self.bias)
        return x + self.bias.view(1, -1, 1, 1)


class ConvLayer(_ConvBase):
    """Stride-1 'same' conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
                 activate: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias=bias, activate=activate)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._finish(F.conv2d(x, self.weight * self.scale, padding=self.padding))


class DownConvLayer(_ConvBase):
    """Blur then stride-2 conv: halves the resolution without aliasing."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
                 activate: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias=bias, activate=activate)
        self.blur = Blur(_down_pad(kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._finish(F.conv2d(self.blur(x), self.weight * self.scale, stride=2))


def upsample_conv(x: torch.Tensor, weight: torch.Tensor, blur: Blur) -> torch.Tensor:
    """Stride-2 transposed conv (weight given as [out, in, k, k]) followed by the x4 blur."""
    return blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2, padding=0))


class UpConvLayer(_ConvBase):
    """Stride-2 transposed conv then blur: doubles the resolution."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
                 activate: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias=bias, activate=activate)
        self.blur = Blur(_up_pad(kernel_size), gain=4.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._finish(upsample_conv(x, self.weight * self.scale, self.blur))


class ResDownBlock(nn.Module):
    """StyleGAN2 residual block of encoder and discriminator: (conv path + blurred 1x1 skip) / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = DownConvLayer(in_channels, out_channels, 3)
        self.skip = DownConvLayer(in_channels, out_channels, 1, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) * (1 / math.sqrt(2))
