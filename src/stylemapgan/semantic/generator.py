"""SemanticStyleGAN generator: z -> w -> 28 W+ codes -> 130 expanded codes -> K local generators on a coarse
grid -> pseudo-depths and features -> soft-mask fusion -> render net -> image and segmentation.

Each stage is a public method, because editing works on the middle representations: part swaps exchange W+
vectors (`latents.shape_index` / `texture_index`), composition masks drop or add classes, and inversion optimises
W+ or expanded latents and then calls `synthesize`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from stylemapgan.networks.layers import EqualLinear, PixelNorm
from stylemapgan.semantic.config import SemanticConfig
from stylemapgan.semantic.fusion import composite_masks, fusion_weights
from stylemapgan.semantic.latents import (
    LatentLayoutError,
    broadcast_w,
    check_latents,
    expand_latents,
    truncate,
)
from stylemapgan.semantic.layers import (
    FixedModulatedConv,
    FourierFeatures,
    PartLinear,
    PartModulatedLinear,
    SkipOutput,
)


class SemanticOutput(NamedTuple):
    """What the generator returns. The per-part fields are None unless `return_parts=True`.

    image: [N, 3, size, size], roughly in [-1, 1].
    segmentation: [N, K, size, size], the render net's raw segmentation (no softmax; argmax over K gives labels;
        the discriminator sees it as is).
    coarse_segmentation: [N, K, coarse, coarse], 2 * masks - 1 (the official `seg_coarse`: the mask loss target,
        and the residual added to `segmentation` when residual_refine).
    masks: [N, K, coarse, coarse], softmax of the depths (after the composition mask), summing to 1 over K.
    depths: [N, K, coarse, coarse], pseudo-depths; the background's (class 0) is 0.
    weights: [N, K, coarse, coarse], the weights the class features were summed with (transparent on top).
    """

    image: torch.Tensor
    segmentation: torch.Tensor
    coarse_segmentation: torch.Tensor
    masks: torch.Tensor | None = None
    depths: torch.Tensor | None = None
    weights: torch.Tensor | None = None


class MappingNetwork(nn.Module):
    """z -> w: PixelNorm, then n_mlp equalised linear layers (lr_mul lr_mlp) with bias + scaled leaky ReLU."""

    def __init__(self, config: SemanticConfig) -> None:
        super().__init__()
        self.norm = PixelNorm()
        self.layers = nn.ModuleList(
            EqualLinear(config.style_dim, config.style_dim, lr_mul=config.lr_mlp, activate=True)
            for _ in range(config.n_mlp)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z [..., style_dim] -> w [..., style_dim]; each vector is mapped on its own."""
        x = self.norm(z.reshape(-1, z.shape[-1]))
        for layer in self.layers:
            x = layer(x)
        return x.view(z.shape)


class LocalGenerators(nn.Module):
    """The K local generators as one grouped computation, plus the fusion of their outputs.

    Every class evaluates a `local_layers`-deep modulated per-pixel MLP on the Fourier features of a shared
    coarse_size x coarse_size grid. Classes 1.. read a pseudo-depth after `depth_layers` layers (so it depends on
    the base and shape codes only); the background has none (depth 0). After the last layer each class maps to
    `coarse_channel` features; those are summed with the fusion weights.
    """

    def __init__(self, config: SemanticConfig) -> None:
        super().__init__()
        self.config = config
        k, lc = config.seg_dim, config.local_channel
        self.pos_embed = FourierFeatures(2, lc, config.n_freqs)
        self.layers = nn.ModuleList(
            PartModulatedLinear(k, lc, lc, config.style_dim) for _ in range(config.local_layers)
        )
        self.to_depth = PartLinear(k - 1, lc, 1)  # classes 1..K-1
        self.to_feat = PartLinear(k, lc, config.coarse_channel)

    def grid(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """[P, 2] (x, y) coordinates in [-1, 1] of the coarse grid, row-major (the official `make_coords`)."""
        axis = torch.linspace(-1, 1, self.config.coarse_size, device=device, dtype=dtype)
        y, x = torch.meshgrid(axis, axis, indexing="ij")
        return torch.stack([x, y], dim=-1).reshape(-1, 2)

    def forward(
        self, latents: torch.Tensor, composition_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Expanded latents [N, K * local_layers, D] -> (fused features [N, coarse_channel, c, c], masks, depths,
        weights, each [N, K, c, c])."""
        cfg = self.config
        n, k, c = latents.shape[0], cfg.seg_dim, cfg.coarse_size
        styles = latents.reshape(n, k, cfg.local_layers, -1)
        x = self.pos_embed(self.grid(latents.device, latents.dtype)).t()  # [lc, P], shared by samples and classes
        depths = None
        for i, layer in enumerate(self.layers):
            x = layer(x, styles[:, :, i])  # [N, K, lc, P]
            if i == cfg.depth_layers - 1:
                depths = self.to_depth.forward_with_background(x).squeeze(2)  # [N, K, P], class 0 exactly 0
                if cfg.detach_texture and i < cfg.local_layers - 1:  # official: classes with a depth only
                    x = torch.cat([x[:, :1], x[:, 1:].detach()], dim=1)
        assert depths is not None  # the config guarantees 1 <= depth_layers <= local_layers
        masks = composite_masks(depths, composition_mask)
        weights = fusion_weights(masks, cfg.transparent_dims)
        features = self.to_feat.weighted_sum(x, weights).view(n, -1, c, c)
        return features, masks.view(n, k, c, c), depths.view(n, k, c, c), weights.view(n, k, c, c)

    def part_parameter_counts(self) -> list[int]:
        """Parameters owned by each class's local generator (the shared position embedding excluded)."""
        counts = [0] * self.config.seg_dim
        for module, first in [(m, 0) for m in (*self.layers, self.to_feat)] + [(self.to_depth, 1)]:
            for p in module.parameters(recurse=False):
                per_part = p.numel() // p.shape[0]
                for part in range(first, first + p.shape[0]):
                    counts[part] += per_part
        return counts


class RenderNet(nn.Module):
    """Fused features -> (RGB, segmentation) at full size (official `RenderNet`).

    The features are average-pooled to min_feat_size; each stage doubles the resolution with two constant-
    modulation convs (the first upsamples); the full coarse map is concatenated back at the stage whose input is
    coarse_size. RGB and segmentation are StyleGAN2 skip outputs; with residual_refine the coarse mask (in
    [-1, 1]) is added to the segmentation when it reaches coarse_size.
    """

    def __init__(self, config: SemanticConfig) -> None:
        super().__init__()
        self.config = config
        ch = config.channels
        convs, to_rgbs, to_segs = [], [], []
        in_ch = config.coarse_channel
        for res in config.render_resolutions:
            if res // 2 == config.coarse_size:
                in_ch += config.coarse_channel
            out_ch = ch(res)
            convs += [
                FixedModulatedConv(in_ch, out_ch, 3, res, upsample=True),
                FixedModulatedConv(out_ch, out_ch, 3, res),
            ]
            to_rgbs.append(SkipOutput(out_ch, 3))
            to_segs.append(SkipOutput(out_ch, config.seg_dim))
            in_ch = out_ch
        self.convs = nn.ModuleList(convs)
        self.to_rgbs = nn.ModuleList(to_rgbs)
        self.to_segs = nn.ModuleList(to_segs)

    def forward(
        self,
        features: torch.Tensor,
        coarse_segmentation: torch.Tensor | None,
        noise: list[torch.Tensor | None],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features [N, coarse_channel, c, c]; coarse_segmentation [N, K, c, c] to add (None: no refinement);
        one noise map (or None for fresh noise) per conv."""
        cfg = self.config
        x = F.adaptive_avg_pool2d(features, cfg.min_feat_size)
        rgb = seg = None
        for i in range(len(self.to_rgbs)):
            if x.shape[-1] == cfg.coarse_size:
                x = torch.cat([x, features], dim=1)
            x = self.convs[2 * i](x, noise[2 * i])
            x = self.convs[2 * i + 1](x, noise[2 * i + 1])
            rgb = self.to_rgbs[i](x, rgb)
            seg = self.to_segs[i](x, seg)
            if coarse_segmentation is not None and seg.shape[-1] == cfg.coarse_size:
                seg = seg + coarse_segmentation
        assert rgb is not None and seg is not None
        return rgb, seg

    def fixed_noise(self) -> list[torch.Tensor]:
        """The stored noise maps, one per conv (deterministic rendering)."""
        return [conv.noise_const for conv in self.convs]


class SemanticGenerator(nn.Module):
    """mapping (z -> w), expansion (W+ -> per-layer codes), local generators + fusion, render net."""

    def __init__(self, config: SemanticConfig) -> None:
        super().__init__()
        self.config = config
        self.mapping_network = MappingNetwork(config)
        self.local = LocalGenerators(config)
        self.render = RenderNet(config)

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z [N, style_dim] (or [N, n, style_dim], each vector mapped on its own) -> w of the same shape."""
        if z.shape[-1] != self.config.style_dim or z.ndim not in (2, 3):
            raise LatentLayoutError(f"z: expected [N, {self.config.style_dim}] or [N, n, {self.config.style_dim}], "
                                    f"got {list(z.shape)}")
        return self.mapping_network(z)

    def expand_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """W+ [N, n_latent, D] -> [N, n_latent_expanded, D]; an expanded input passes through."""
        return expand_latents(self.config, latents)

    def synthesize(
        self,
        latents: torch.Tensor,
        *,
        composition_mask: torch.Tensor | None = None,
        noise: list[torch.Tensor] | None = None,
        randomize_noise: bool = True,
        return_parts: bool = False,
    ) -> SemanticOutput:
        """W+ [N, n_latent, D] or expanded [N, n_latent_expanded, D] latents -> image and segmentation.

        composition_mask: [N, K] multiplies the class masks (0 drops a class) before renormalisation.
        noise: one map per render conv ([N or 1, 1, r, r]); else fresh noise when randomize_noise (the official
        default) or the stored maps (deterministic).
        """
        check_latents(self.config, latents)
        expanded = self.expand_latents(latents)
        features, masks, depths, weights = self.local(expanded, composition_mask)
        coarse = 2 * masks - 1
        if noise is None:
            noise_maps: list[torch.Tensor | None] = (
                [None] * len(self.render.convs) if randomize_noise else list(self.render.fixed_noise())
            )
        elif len(noise) != len(self.render.convs):
            raise ValueError(f"noise: expected {len(self.render.convs)} maps, got {len(noise)}")
        else:
            noise_maps = list(noise)
        image, segmentation = self.render(
            features, coarse if self.config.residual_refine else None, noise_maps
        )
        if not return_parts:
            return SemanticOutput(image, segmentation, coarse)
        return SemanticOutput(image, segmentation, coarse, masks, depths, weights)

    def forward(
        self,
        z: torch.Tensor,
        *,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        composition_mask: torch.Tensor | None = None,
        noise: list[torch.Tensor] | None = None,
        randomize_noise: bool = True,
        return_parts: bool = False,
    ) -> SemanticOutput:
        """Sampling: z [N, D] (one code for every W+ slot) or [N, n_latent, D] (one z per slot) -> output.

        Truncation (psi = `truncation` towards `truncation_latent`, e.g. `mean_latent()`) acts on W+ before
        expansion, as official.
        """
        w = self.mapping(z)
        latents = broadcast_w(self.config, w) if w.ndim == 2 else w
        if latents.shape[1] != self.config.n_latent:
            raise LatentLayoutError(f"z: expected [N, {self.config.n_latent}, D] per-slot codes, got {list(z.shape)}")
        latents = truncate(latents, truncation, truncation_latent)
        return self.synthesize(
            latents, composition_mask=composition_mask, noise=noise, randomize_noise=randomize_noise,
            return_parts=return_parts,
        )

    @torch.no_grad()
    def mean_latent(self, count: int = 10000, seed: int = 0, batch: int = 1000) -> torch.Tensor:
        """Average w [1, D] over `count` random z (the truncation centre; the official scripts use 10,000),
        deterministic by seed."""
        like = self.local.pos_embed.weight
        gen = torch.Generator(device="cpu").manual_seed(seed)
        total = torch.zeros(1, self.config.style_dim, device=like.device, dtype=like.dtype)
        done = 0
        while done < count:
            n = min(batch, count - done)
            z = torch.randn(n, self.config.style_dim, generator=gen).to(like)
            total += self.mapping(z).sum(0, keepdim=True)
            done += n
        return total / count
