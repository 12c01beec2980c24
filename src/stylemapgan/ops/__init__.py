"""Low-level ops, each a plain PyTorch reference path (no custom kernels, no compile step) plus the fast
variants the layers use by default (same math: folded gains, padding inside the conv, in-place activation).

`layer_ops` bundles them into the two implementation objects a layer runs on (`ReferenceOps`, `FastOps`).
"""

from stylemapgan.ops.bias_act import (
    add_,
    bias_leaky_relu,
    inplace_ok,
    leaky_relu_,
    needs_grad,
    scaled_leaky_relu,
    tracing,
)
from stylemapgan.ops.blur import (
    blur2d,
    blur2d_fast,
    make_blur_kernel,
    upsample_blur2d,
    upsample_conv2d,
    upsample_conv2d_fast,
)
from stylemapgan.ops.layer_ops import (
    GRAD_LAYOUT_ENV,
    GRAD_POLICIES,
    IMPLS,
    LAYOUTS,
    FastOps,
    LayerOps,
    LayoutPolicy,
    ReferenceOps,
    make_ops,
    ops_factory,
)
from stylemapgan.ops.norm import layer_norm_chw

__all__ = [
    "GRAD_LAYOUT_ENV",
    "GRAD_POLICIES",
    "IMPLS",
    "LAYOUTS",
    "FastOps",
    "LayerOps",
    "LayoutPolicy",
    "ReferenceOps",
    "add_",
    "bias_leaky_relu",
    "blur2d",
    "blur2d_fast",
    "inplace_ok",
    "layer_norm_chw",
    "leaky_relu_",
    "make_blur_kernel",
    "make_ops",
    "needs_grad",
    "ops_factory",
    "scaled_leaky_relu",
    "tracing",
    "upsample_blur2d",
    "upsample_conv2d",
    "upsample_conv2d_fast",
]
