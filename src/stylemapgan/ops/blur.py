"""FIR blur with padding: the reference path of StyleGAN2's upfirdn2d with up = down = 1.

Resampling layers are built from a strided (transposed) conv plus this blur, so no upfirdn kernel is needed.

`blur2d` is the plain reference (explicit pad, then a depthwise conv). The fast variants give the padding to
the conv itself (no padded copy), can compute only every second output (`stride=2`, for a blur followed by a
1x1 stride-2 conv), can add a bias in the same call, and `upsample_blur2d` does "insert zeros, then blur" as one
depthwise transposed conv that never touches the zeros. `upsample_conv2d` / `upsample_conv2d_fast` are the
stride-2 transposed conv + blur of the up-sampling layers, built from these.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def make_blur_kernel(taps: Sequence[float], gain: float = 1.0) -> torch.Tensor:
    """Outer product of a 1-D kernel, normalised to sum to `gain`."""
    k = torch.tensor(list(taps), dtype=torch.float32)
    k2 = torch.outer(k, k)
    return k2 / k2.sum() * gain


def blur2d(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """Pad (before, after) on both spatial axes, then a depthwise convolution with the flipped kernel.

    Flipping makes it a true convolution as in upfirdn2d; the [1,3,3,1] kernel is symmetric anyway.
    """
    channels = x.shape[1]
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = torch.flip(kernel, [0, 1]).to(dtype=x.dtype, device=x.device)
    weight = weight.expand(channels, 1, *kernel.shape)
    return F.conv2d(x, weight, groups=channels)


def _depthwise(kernel: torch.Tensor, channels: int, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    weight = kernel.to(dtype=x.dtype, device=x.device)
    if scale != 1.0:
        weight = weight * scale
    return weight.expand(channels, 1, *kernel.shape).contiguous()


def blur2d_fast(
    x: torch.Tensor,
    kernel: torch.Tensor,
    pad: tuple[int, int],
    *,
    stride: int = 1,
    bias: torch.Tensor | None = None,
    scale: float = 1.0,
) -> torch.Tensor:
    """`blur2d(x) * scale + bias`, evaluated at every `stride`-th output; symmetric padding only."""
    if pad[0] != pad[1]:
        return blur2d(x, kernel * scale, pad)[..., ::stride, ::stride] + (0 if bias is None else bias.view(1, -1, 1, 1))
    channels = x.shape[1]
    weight = _depthwise(torch.flip(kernel, [0, 1]), channels, x, scale)
    return F.conv2d(x, weight, bias, stride=stride, padding=pad[0], groups=channels)


def upsample_blur2d(
    x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int], *, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Equal to `blur2d(zero_insert(x), kernel, pad)`, where zero_insert(x)[2i] = x[i] (size 2n - 1), the
    output of a 1x1 stride-2 transposed conv. One depthwise stride-2 transposed conv with padding k - 1 - pad."""
    k = kernel.shape[-1]
    if pad[0] != pad[1] or k - 1 - pad[0] < 0:
        up = torch.zeros(*x.shape[:2], 2 * x.shape[2] - 1, 2 * x.shape[3] - 1, dtype=x.dtype, device=x.device)
        up[..., ::2, ::2] = x
        out = blur2d(up, kernel, pad)
        return out if bias is None else out + bias.view(1, -1, 1, 1)
    channels = x.shape[1]
    return F.conv_transpose2d(
        x, _depthwise(kernel, channels, x), bias, stride=2, padding=k - 1 - pad[0], groups=channels
    )


def upsample_conv2d(x: torch.Tensor, weight: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """Stride-2 transposed conv (weight given as [out, in, k, k]) followed by the blur: the literal form."""
    return blur2d(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2), kernel, pad)


def upsample_conv2d_fast(
    x: torch.Tensor, weight: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int], bias: torch.Tensor | None = None
) -> torch.Tensor:
    """`upsample_conv2d(x, weight, kernel, pad) + bias`. A 1x1 kernel is a 1x1 conv at the input resolution
    followed by zero insertion, so it runs as a 1x1 conv + depthwise transposed blur; larger kernels keep the
    transposed conv (folding the blur into it would make a 6x6 kernel: 4x the FLOPs, measured 1.4x slower) and
    blur with the padding and bias inside the depthwise conv."""
    if weight.shape[-1] == 1:
        return upsample_blur2d(F.conv2d(x, weight), kernel, pad, bias=bias)
    return blur2d_fast(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2), kernel, pad, bias=bias)
