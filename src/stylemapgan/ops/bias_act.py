"""Bias + scaled leaky ReLU: the activation of every StyleGAN2-family layer.

lrelu(x) = leaky_relu(x, 0.2) * sqrt(2); the sqrt(2) gain keeps activations at unit variance.
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
