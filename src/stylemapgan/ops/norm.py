"""LayerNorm over (C, H, W) that keeps a channels-last tensor channels-last.

`F.layer_norm(x, x.shape[1:])` needs the normalised dims contiguous in (C, H, W) order, so on a channels-last
tensor it silently copies to NCHW (and the next conv copies back). Normalising over all of (C, H, W) does not
depend on the element order, so a channels-last tensor is normalised as its (contiguous) NHWC permutation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def layer_norm_chw(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-sample LayerNorm over (C, H, W), no affine, in the memory format of `x`."""
    if x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        nhwc = x.permute(0, 2, 3, 1)
        return F.layer_norm(nhwc, nhwc.shape[1:], eps=eps).permute(0, 3, 1, 2)
    return F.layer_norm(x, x.shape[1:], eps=eps)
