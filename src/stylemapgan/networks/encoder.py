"""Encoder: image -> stylemap in one pass (residual down blocks from size to the stylemap size)."""

from __future__ import annotations

import torch
from torch import nn

from stylemapgan.config import ModelConfig
from stylemapgan.networks.layers import ConvLayer, ResDownBlock, set_impl


class Encoder(nn.Module):
    """impl: "fast" (default) or "ref", see `stylemapgan.networks.layers`."""

    def __init__(self, config: ModelConfig, *, impl: str = "fast") -> None:
        super().__init__()
        self.config = config
        ch = config.encoder_channels
        self.from_rgb = ConvLayer(3, ch(config.size), 1)
        blocks = []
        r = config.size
        while r > config.latent_spatial_size:
            blocks.append(ResDownBlock(ch(r), ch(r // 2)))
            r //= 2
        self.blocks = nn.ModuleList(blocks)
        self.to_stylemap = ConvLayer(ch(config.latent_spatial_size), config.latent_channels, 3)
        set_impl(self, impl)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.from_rgb(image)
        for block in self.blocks:
            x = block(x)
        return self.to_stylemap(x).contiguous()
