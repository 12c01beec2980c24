"""Low-level ops, each a plain PyTorch reference path (no custom kernels, no compile step)."""

from stylemapgan.ops.bias_act import bias_leaky_relu, scaled_leaky_relu
from stylemapgan.ops.blur import blur2d, make_blur_kernel

__all__ = ["bias_leaky_relu", "blur2d", "make_blur_kernel", "scaled_leaky_relu"]
