"""Building blocks of the SemanticStyleGAN generator that StyleMapGAN does not have.

Local generators (spec section 4): every class has its own per-pixel MLP of StyleGAN2 modulated, demodulated
1x1 convs. Here the K classes are one grouped computation: each parameter carries a leading part axis [K, ...],
and activations are laid out [N, K, C, P] (P = pixels of the coarse grid, flattened) so that each layer is one
batched matmul over (sample, part), with the per-sample, per-part modulation and demodulation folded into the
small weight (never an extra pass over the activations).

Render net (section 6): StyleGAN2 convs whose modulation is a learned constant instead of a per-sample style
(official `FixedStyledConv`, demodulation kept), and the skip-architecture RGB / segmentation outputs.

Equalised learning rate throughout: weights are stored N(0, 1) and scaled by 1 / sqrt(fan_in) at run time.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stylemapgan.ops import blur2d, make_blur_kernel, upsample_blur2d
from stylemapgan.ops.bias_act import needs_grad, tracing

BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)
DEMOD_EPS = 1e-8
NEGATIVE_SLOPE = 0.2
ACT_GAIN = math.sqrt(2.0)


class _LeakyReLUInPlace(torch.autograd.Function):
    """In-place leaky ReLU whose backward treats the saved output as a constant.

    Its derivative is `leaky_relu_backward(grad, output)`, as autograd's own in-place leaky ReLU; but autograd's
    formula also differentiates that backward with respect to the output, which is a full-size zero tensor that
    a double backward (the path-length regulariser) fills and adds into the gradient of every layer's output.
    The second derivative is zero almost everywhere, so leaving the output out is the same math without those
    two passes.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, negative_slope: float) -> torch.Tensor:
        F.leaky_relu_(x, negative_slope)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        ctx.negative_slope = negative_slope
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (output,) = ctx.saved_tensors
        return torch.ops.aten.leaky_relu_backward(grad, output.detach(), ctx.negative_slope, True), None


def leaky_relu_inplace(x: torch.Tensor, negative_slope: float = NEGATIVE_SLOPE) -> torch.Tensor:
    """`F.leaky_relu_(x)` on a fresh intermediate, with a backward that a double backward runs cheaply (above).
    Plain autograd when nothing is recorded, or under compilation / tracing (no Python autograd functions there)."""
    if not needs_grad(x) or tracing():
        return F.leaky_relu_(x, negative_slope)
    return _LeakyReLUInPlace.apply(x, negative_slope)


class FourierFeatures(nn.Module):
    """Coordinates -> [coords, sin(2^f c), cos(2^f c) for f < n_freqs] -> learned unbiased linear projection.

    The official `PositionEmbedding(2, local_channel, N_freqs=log2(size))`: feature order per frequency is
    sin of every coordinate, then cos of every coordinate; one embedding is shared by all classes.
    """

    def __init__(self, in_channels: int, out_channels: int, n_freqs: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.n_freqs = n_freqs
        features = in_channels * (2 * n_freqs + 1)
        self.weight = nn.Parameter(torch.randn(out_channels, features))
        self.scale = 1.0 / math.sqrt(features)
        self.register_buffer("freqs", 2.0 ** torch.arange(n_freqs, dtype=torch.float32), persistent=False)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """coords [..., in_channels] -> [..., out_channels]."""
        angles = coords.unsqueeze(-2) * self.freqs.to(coords.dtype).unsqueeze(-1)  # [..., F, in]
        waves = torch.stack([torch.sin(angles), torch.cos(angles)], dim=-2)  # [..., F, 2, in]
        features = torch.cat([coords, waves.flatten(-3)], dim=-1)
        return F.linear(features, self.weight * self.scale)

    def extra_repr(self) -> str:
        return f"in={self.in_channels}, out={self.weight.shape[0]}, n_freqs={self.n_freqs}"


class PartModulatedLinear(nn.Module):
    """One modulated, demodulated 1x1 conv per part, then bias + scaled leaky ReLU (official `StyledConv` with a
    1x1 kernel and no noise), for all parts at once.

    Per part k: style s = A_k w + b_k (an equalised linear, bias initialised to 1), weight
    W'[o, i] = W_k[o, i] * s[i] / sqrt(in), demodulated by 1 / sqrt(sum_i W'[o, i]^2 + 1e-8). The activation's
    sqrt(2) gain is folded into weight and bias (leaky ReLU is positively homogeneous), so the layer is one batched
    matmul with the bias added inside it, and one in-place leaky ReLU (out of place it costs ~4x as much on CPU).
    """

    def __init__(self, parts: int, in_channels: int, out_channels: int, style_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(parts, out_channels, in_channels))
        self.modulation_weight = nn.Parameter(torch.randn(parts, in_channels, style_dim))
        self.modulation_bias = nn.Parameter(torch.ones(parts, in_channels))
        self.bias = nn.Parameter(torch.zeros(parts, out_channels))
        self.scale = 1.0 / math.sqrt(in_channels)
        self.modulation_scale = 1.0 / math.sqrt(style_dim)

    def modulation(self, styles: torch.Tensor) -> torch.Tensor:
        """styles [N, K, style_dim] -> per-sample, per-part input scales [N, K, in]."""
        s = torch.matmul(styles.transpose(0, 1), self.modulation_weight.transpose(1, 2))  # [K, N, in]
        return s.transpose(0, 1) * self.modulation_scale + self.modulation_bias

    def modulated_weight(self, styles: torch.Tensor) -> torch.Tensor:
        """[N, K, out, in]: modulated and demodulated per sample and part (without the activation gain)."""
        weight = self.weight * (self.modulation(styles).unsqueeze(2) * self.scale)
        return weight * torch.rsqrt(weight.pow(2).sum(dim=3, keepdim=True) + DEMOD_EPS)

    def forward(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        """x [N, K, in, P] (or [in, P], shared by every sample and part), styles [N, K, style_dim] -> [N, K, out, P]."""
        weight = self.modulated_weight(styles) * ACT_GAIN
        n, k, o, i = weight.shape
        bias = (self.bias * ACT_GAIN).expand(n, k, o)
        if x.ndim == 2:
            y = torch.addmm(bias.reshape(n * k * o, 1), weight.reshape(n * k * o, i), x)
        else:
            y = torch.baddbmm(bias.reshape(n * k, o, 1), weight.reshape(n * k, o, i), x.reshape(n * k, i, -1))
        # in place on the fresh matmul output (not on a view of it, which autograd would copy): autograd-safe
        return leaky_relu_inplace(y).view(n, k, o, -1)

    def extra_repr(self) -> str:
        k, out_ch, in_ch = self.weight.shape
        return f"parts={k}, in={in_ch}, out={out_ch}, style_dim={self.modulation_weight.shape[2]}"


class PartLinear(nn.Module):
    """One unmodulated 1x1 output conv plus bias per part (the official re-defined `ToRGB` as used by `to_feat`
    and `to_depth`): weight times a learned constant input scale (init 1) / sqrt(in), no demodulation."""

    def __init__(self, parts: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(parts, out_channels, in_channels))
        self.modulation = nn.Parameter(torch.ones(parts, in_channels))
        self.bias = nn.Parameter(torch.zeros(parts, out_channels))
        self.scale = 1.0 / math.sqrt(in_channels)

    def effective_weight(self) -> torch.Tensor:
        """[K, out, in]: the weight as applied."""
        return self.weight * (self.modulation.unsqueeze(1) * self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, K, in, P] -> per-part outputs [N, K, out, P]."""
        return torch.matmul(self.effective_weight(), x) + self.bias.unsqueeze(-1)

    def forward_with_background(self, x: torch.Tensor) -> torch.Tensor:
        """For a head of parts 1..K-1 (the depth head): x [N, K, in, P] -> [N, K, out, P] with part 0's output
        exactly 0, computed as one matmul with a zero weight and bias for part 0 (slicing x would cost a zeroed
        gradient buffer and a copy in backward)."""
        weight = self.effective_weight()
        weight = torch.cat([weight.new_zeros(1, *weight.shape[1:]), weight])
        bias = torch.cat([self.bias.new_zeros(1, self.bias.shape[1]), self.bias])
        return torch.matmul(weight, x) + bias.unsqueeze(-1)

    def weighted_sum(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """sum_k weights[:, k] * forward(x)[:, k] -> [N, out, P] without materialising the K outputs.

        x [N, K, in, P], weights [N, K, P]. Linear in x, so the weights scale the inputs and the parts become
        one matmul over the concatenated K * in channels (the K full-width feature maps of the official code
        are never built).

        Both products are batched matmuls with the weight expanded over samples: `matmul` of a 2-D weight and a
        3-D input would fold the input into [N * P, K * in] with a transposed copy (and transpose its gradient
        back), which measured twice the cost of this form in a training step (forward + backward).
        """
        n, k, c, p = x.shape
        scaled = (x * weights.unsqueeze(2)).reshape(n, k * c, p)
        weight = self.effective_weight().transpose(0, 1).reshape(-1, k * c)  # [out, K * in]
        return torch.bmm(weight.expand(n, -1, -1), scaled) + torch.bmm(self.bias.t().expand(n, -1, -1), weights)

    def extra_repr(self) -> str:
        k, out_ch, in_ch = self.weight.shape
        return f"parts={k}, in={in_ch}, out={out_ch}"


def _upsample_conv_pad(kernel_size: int, taps: int = len(BLUR_TAPS), factor: int = 2) -> tuple[int, int]:
    """Blur padding after a stride-2 transposed conv so the output is exactly twice the input."""
    p = (taps - factor) - (kernel_size - 1)
    return ((p + 1) // 2 + factor - 1, p // 2 + 1)


class FixedModulatedConv(nn.Module):
    """Official `FixedStyledConv`: StyleGAN2 modulated conv whose modulation is a learned constant vector
    (init 1), with demodulation; optionally a x2 upsample (stride-2 transposed conv, then the x4 [1,3,3,1] blur);
    then noise injection (learned strength, init 0) and bias + scaled leaky ReLU.

    `noise_const` is the fixed noise map used when the caller asks for deterministic noise."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, resolution: int, *,
                 upsample: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = nn.Parameter(torch.ones(in_channels))
        self.noise_weight = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.upsample = upsample
        self.padding = kernel_size // 2
        if upsample:
            self.register_buffer("kernel", make_blur_kernel(BLUR_TAPS, gain=4.0), persistent=False)
            self.blur_pad = _upsample_conv_pad(kernel_size)

    def demodulated_weight(self) -> torch.Tensor:
        weight = self.weight * (self.modulation.view(1, -1, 1, 1) * self.scale)
        return weight * torch.rsqrt(weight.pow(2).sum(dim=(1, 2, 3), keepdim=True) + DEMOD_EPS)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """noise: [N or 1, 1, H_out, W_out], or None for fresh N(0, 1) noise."""
        # the activation gain goes into weight, bias and noise strength; the bias into the conv where it can
        weight, bias = self.demodulated_weight() * ACT_GAIN, self.bias * ACT_GAIN
        if self.upsample:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
            x = blur2d(x, self.kernel, self.blur_pad) + bias.view(1, -1, 1, 1)
        else:
            x = F.conv2d(x, weight, bias, padding=self.padding)
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, x.shape[2], x.shape[3]).normal_()
        return F.leaky_relu_(x + (self.noise_weight * ACT_GAIN) * noise, NEGATIVE_SLOPE)

    def extra_repr(self) -> str:
        out_ch, in_ch, k, _ = self.weight.shape
        return f"in={in_ch}, out={out_ch}, kernel={k}, upsample={self.upsample}, noise={self.noise_const.shape[-1]}px"


class SkipOutput(nn.Module):
    """Official re-defined `ToRGB` in the render net: unmodulated 1x1 conv (constant input scale, no
    demodulation) + bias, plus the x2-upsampled ([1,3,3,1], upfirdn-style) output of the previous stage."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels))
        self.modulation = nn.Parameter(torch.ones(in_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = 1.0 / math.sqrt(in_channels)
        self.register_buffer("kernel", make_blur_kernel(BLUR_TAPS, gain=4.0), persistent=False)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        weight = (self.weight * (self.modulation * self.scale)).unsqueeze(-1).unsqueeze(-1)
        out = F.conv2d(x, weight, self.bias)
        if skip is not None:
            # upfirdn2d(up=2, pad=(2, 1)) equals a blur of the 2n-1 zero-inserted map padded (2, 2)
            out = out + upsample_blur2d(skip, self.kernel, (2, 2))
        return out

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}"
