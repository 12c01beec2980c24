"""Low-level ops, each a plain PyTorch reference path (no custom kernels, no compile step) plus the fast
variants the layers use by default (same math: folded gains, padding inside the conv, in-place activation)."""

from stylemapgan.ops.bias_act import (
    add_,
    bias_leaky_relu,
    inplace_ok,
    leaky_relu_,
    needs_grad,
    scaled_leaky_relu,
    tracing,
)
from stylemapgan.ops.blur import blur2d, blur2d_fast, make_blur_kernel, upsample_blur2d
from stylemapgan.ops.norm import layer_norm_chw

__all__ = [
    "add_",
    "bias_leaky_relu",
    "blur2d",
    "blur2d_fast",
    "inplace_ok",
    "layer_norm_chw",
    "leaky_relu_",
    "make_blur_kernel",
    "needs_grad",
    "scaled_leaky_relu",
    "tracing",
    "upsample_blur2d",
]
