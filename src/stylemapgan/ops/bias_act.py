"""Bias + scaled leaky ReLU: the activation of every StyleGAN2-family layer.

lrelu(x) = leaky_relu(x, 0.2) * sqrt(2); the sqrt(2) gain keeps activations at unit variance.

Two paths: `bias_leaky_relu` is the plain reference (three elementwise passes). The fast layers instead fold
the bias into the conv call and the gain into the conv weight (valid because leaky ReLU is positively
homogeneous: g * lrelu(a) = lrelu(g * a) for g > 0), leaving one in-place `leaky_relu_` pass.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

NEGATIVE_SLOPE = 0.2
GAIN = math.sqrt(2.0)


def scaled_leaky_relu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, NEGATIVE_SLOPE) * GAIN


def bias_leaky_relu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Add a per-channel bias (channel dim 1) and apply the scaled leaky ReLU."""
    shape = [1, -1] + [1] * (x.ndim - 2)
    return scaled_leaky_relu(x + bias.view(shape))


def leaky_relu_(x: torch.Tensor) -> torch.Tensor:
    """Unscaled leaky ReLU in place: for fresh (non-leaf) outputs whose gain was folded into the weights.

    Autograd supports it (the backward uses the result, valid for a positive slope).
    """
    return F.leaky_relu_(x, NEGATIVE_SLOPE)


def tracing() -> bool:
    """Under torch.compile, torch.export or the TorchScript tracer (ONNX export): no caches, no out= tricks."""
    return (
        torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()
        or torch.jit.is_scripting()
    )


def needs_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd records ops on these tensors; in-place shortcuts are taken only when it does not."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def inplace_ok(*tensors: torch.Tensor) -> bool:
    """In-place / out= shortcuts on fresh intermediates: only eagerly and when no gradient is recorded."""
    return not needs_grad(*tensors) and not tracing()


def add_(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b, written into `a` when no gradient is recorded (a must be a fresh intermediate)."""
    return a.add_(b) if inplace_ok(a, b) else a + b
