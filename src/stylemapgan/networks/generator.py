"""StyleMapGAN generator: z -> stylemap -> style tensors -> image, each stage callable on its own.

Editing works on the middle representations: it blends stylemaps (w mode) or style tensors (w+ mode) and
then runs only the later stages, so the stages are separate methods rather than modes of `forward`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stylemapgan.config import ModelConfig
from stylemapgan.networks.layers import (
    INV_SQRT2,
    Blur,
    ConvLayer,
    EqualConv2d,
    EqualLinear,
    PixelNorm,
    UpConvLayer,
    layer_repr,
    set_impl,
    up_blur_pad,
)
from stylemapgan.ops import layer_norm_chw, make_ops


class LayerNorm2d(nn.Module):
    """LayerNorm over (C, H, W) of each sample, no affine: the official default normalisation.

    A channels-last input stays channels-last (no layout round trip); the result is the same."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layer_norm_chw(x, self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps:g}"


def make_norm(mode: str, channels: int) -> nn.Module:
    if mode == "LayerNorm":
        return LayerNorm2d()
    if mode == "InstanceNorm2d":
        return nn.InstanceNorm2d(channels, affine=False)
    if mode == "BatchNorm2d":
        return nn.BatchNorm2d(channels, affine=False)
    return nn.Identity()


class ModulatedConv(nn.Module):
    """Spatially-variant modulated conv: normalise x, then x * gamma(t) + beta(t) per pixel, then a plain conv.

    gamma and beta come from one fused 3x3 conv of the style tensor t (output channels [gamma | beta]);
    there is no weight demodulation, and a bias-act follows (the RGB layer's too). `gain` scales the output
    (a synthesis block's residual branch has 1/sqrt(2)).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_channels: int,
        normalize_mode: str,
        *,
        upsample: bool = False,
        gain: float = 1.0,
        impl: str = "fast",
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        self.norm = make_norm(normalize_mode, in_channels)
        bias_init = torch.cat([torch.ones(in_channels), torch.zeros(in_channels)])
        self.modulation = EqualConv2d(style_channels, 2 * in_channels, 3, bias_init, impl=impl)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.blur = Blur(up_blur_pad(kernel_size), gain=4.0) if upsample else None
        self.gain = gain
        self.ops = make_ops(impl)

    def modulation_params(self, style: torch.Tensor) -> torch.Tensor:
        """[gamma | beta] for a style tensor: linear in `style`, which the fast edit path exploits."""
        return self.modulation(style)

    def modulation_params_from_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """[gamma | beta] at P pixels from their gathered 3x3 style neighbourhoods [P, 9, style_channels] in
        (ky, kx, c) order, zeros outside the image: [P, 2 in_channels], equal to `modulation_params` there.
        For recomputing a few pixels (an edit's mask edge) without convolving the whole style tensor."""
        return self.modulation.forward_patches(patches)

    def forward_modulated(self, x: torch.Tensor, gamma_beta: torch.Tensor) -> torch.Tensor:
        """The layer given precomputed [gamma | beta]."""
        x = self.ops.modulate(x, self.norm, gamma_beta)
        if self.blur is not None:
            return self.ops.up_conv2d(x, self.weight, self.bias, self.blur.kernel, self.blur.pad,
                                      weight_gain=self.scale, activate=True, gain=self.gain)
        return self.ops.conv2d(x, self.weight, self.bias, weight_gain=self.scale, padding=self.padding,
                               activate=True, gain=self.gain)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        if style.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"style tensor is {tuple(style.shape[-2:])} but features are {tuple(x.shape[-2:])}")
        return self.forward_modulated(x, self.modulation_params(style))

    def extra_repr(self) -> str:
        parts = [f"{self.in_channels}, {self.out_channels}", f"kernel_size={self.kernel_size}"]
        parts += ["up=2"] if self.blur is not None else []
        return layer_repr(*parts, gain=self.gain, ops=self.ops)


class MappingNetwork(nn.Module):
    """z [N, C] -> stylemap [N, C, s, s]: PixelNorm then an MLP with lr_mul-scaled layers."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c, s = config.latent_channels, config.latent_spatial_size
        self.stylemap_shape = config.stylemap_shape
        self.norm = PixelNorm()
        widths = [c] * config.mapping_layers + [c * s * s]
        self.layers = nn.ModuleList(
            EqualLinear(widths[i], widths[i + 1], lr_mul=config.lr_mul, activate=True)
            for i in range(config.mapping_layers)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.norm(z)
        for layer in self.layers:
            x = layer(x)
        return x.view(z.shape[0], *self.stylemap_shape)


class StylemapResizer(nn.Module):
    """Stylemap -> one style tensor per modulated layer (two per resolution from s to size)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        s = config.latent_spatial_size
        sc = config.style_channels
        layers: list[nn.Module] = [ConvLayer(config.latent_channels, sc(s), 3), ConvLayer(sc(s), sc(s), 3)]
        r = 2 * s
        while r <= config.size:
            layers += [UpConvLayer(sc(r // 2), sc(r), 3), ConvLayer(sc(r), sc(r), 3)]
            r *= 2
        self.layers = nn.ModuleList(layers)

    def forward(self, stylemap: torch.Tensor) -> list[torch.Tensor]:
        styles = []
        x = stylemap
        for layer in self.layers:
            x = layer(x)
            styles.append(x)
        return styles


class SynthesisBlock(nn.Module):
    """One resolution doubling: modulated up-conv, modulated conv, blurred 1x1 transposed skip; / sqrt(2).

    The 1/sqrt(2) is the output gain of both branches (the second modulated conv and the skip)."""

    def __init__(
        self, in_channels: int, out_channels: int, style_in: int, style_out: int, normalize_mode: str, *,
        impl: str = "fast",
    ) -> None:
        super().__init__()
        self.conv_up = ModulatedConv(in_channels, out_channels, 3, style_in, normalize_mode, upsample=True,
                                     impl=impl)
        self.conv = ModulatedConv(out_channels, out_channels, 3, style_out, normalize_mode, gain=INV_SQRT2,
                                  impl=impl)
        self.skip = UpConvLayer(in_channels, out_channels, 1, bias=False, activate=False, gain=INV_SQRT2,
                                impl=impl)
        self.ops = make_ops(impl)

    def forward(self, x: torch.Tensor, style_in: torch.Tensor, style_out: torch.Tensor) -> torch.Tensor:
        return self.forward_modulated(
            x, self.conv_up.modulation_params(style_in), self.conv.modulation_params(style_out)
        )

    def forward_modulated(self, x: torch.Tensor, gb_in: torch.Tensor, gb_out: torch.Tensor) -> torch.Tensor:
        h = self.conv.forward_modulated(self.conv_up.forward_modulated(x, gb_in), gb_out)
        return self.ops.residual_sum(h, self.skip(x))

    def extra_repr(self) -> str:
        return layer_repr(f"{self.conv_up.in_channels}, {self.conv.out_channels}", "up=2", gain=1.0, ops=self.ops)


class SynthesisNetwork(nn.Module):
    """Style tensors -> image. Consumes the style tensors in order: one per modulated conv."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        s = config.latent_spatial_size
        ch, sc, norm = config.channels, config.style_channels, config.normalize_mode
        self.const = nn.Parameter(torch.randn(1, ch(s), s, s))
        self.conv = ModulatedConv(ch(s), ch(s), 3, sc(s), norm)
        blocks = []
        r = 2 * s
        while r <= config.size:
            blocks.append(SynthesisBlock(ch(r // 2), ch(r), sc(r // 2), sc(r), norm))
            r *= 2
        self.blocks = nn.ModuleList(blocks)
        self.to_rgb = ModulatedConv(ch(config.size), 3, 1, sc(config.size), norm)

    def modulated_layers(self) -> list[ModulatedConv]:
        """Every modulated conv in the order it consumes style tensors."""
        layers = [self.conv]
        for block in self.blocks:
            layers += [block.conv_up, block.conv]
        return [*layers, self.to_rgb]

    def forward(self, styles: list[torch.Tensor]) -> torch.Tensor:
        layers = self.modulated_layers()
        return self.forward_modulated([m.modulation_params(t) for m, t in zip(layers, styles, strict=True)])

    def forward_modulated(self, gamma_betas: list[torch.Tensor]) -> torch.Tensor:
        """Synthesis from precomputed [gamma | beta] per modulated layer (see ModulatedConv)."""
        expected = 2 + 2 * len(self.blocks)
        if len(gamma_betas) != expected:
            raise ValueError(f"expected {expected} style tensors, got {len(gamma_betas)}")
        n = gamma_betas[0].shape[0]
        x = self.conv.forward_modulated(self.const.expand(n, -1, -1, -1), gamma_betas[0])
        for i, block in enumerate(self.blocks):
            x = block.forward_modulated(x, gamma_betas[1 + 2 * i], gamma_betas[2 + 2 * i])
        return self.to_rgb.forward_modulated(x, gamma_betas[-1]).contiguous()


class Generator(nn.Module):
    """mapping (z -> stylemap), resizer (stylemap -> style tensors), synthesis (style tensors -> image).

    impl: "fast" (default) or "ref", see `stylemapgan.networks.layers`; switch later with `set_impl`.
    """

    def __init__(self, config: ModelConfig, *, impl: str = "fast") -> None:
        super().__init__()
        self.config = config
        self.mapping = MappingNetwork(config)
        self.resizer = StylemapResizer(config)
        self.synthesis = SynthesisNetwork(config)
        set_impl(self, impl)

    def decode(self, stylemap: torch.Tensor) -> torch.Tensor:
        """Stylemap [N, C, s, s] -> image [N, 3, size, size] (roughly in [-1, 1])."""
        return self.synthesis(self.resizer(stylemap))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Random generation: z [N, latent_channels] -> image."""
        return self.decode(self.mapping(z))

    @torch.no_grad()
    def mean_stylemap(self, count: int = 5000, seed: int = 0, batch: int = 1000) -> torch.Tensor:
        """Average stylemap over `count` random z (the truncation centre), deterministic by seed."""
        device = self.const_device
        gen = torch.Generator(device="cpu").manual_seed(seed)
        total = torch.zeros(1, *self.config.stylemap_shape, device=device)
        done = 0
        while done < count:
            n = min(batch, count - done)
            z = torch.randn(n, self.config.latent_channels, generator=gen).to(device)
            total += self.mapping(z).sum(0, keepdim=True)
            done += n
        return total / count

    @property
    def const_device(self) -> torch.device:
        return self.synthesis.const.device
