"""FIR blur with padding: the reference path of StyleGAN2's upfirdn2d with up = down = 1.

Resampling layers are built from a strided (transposed) conv plus this blur, so no upfirdn kernel is needed.
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
