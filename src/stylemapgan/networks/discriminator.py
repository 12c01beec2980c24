"""StyleGAN2 residual discriminator with minibatch standard deviation."""

from __future__ import annotations

import torch
from torch import nn

from stylemapgan.config import ModelConfig
from stylemapgan.networks.layers import ConvLayer, EqualLinear, ResDownBlock, set_impl


def minibatch_stddev(x: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    """Append one channel: per group, sqrt(biased variance over the group + 1e-8), averaged over C, H, W.

    Samples n and n + k * (N / G) share a group, as in the official code. The official code fails when N is
    not a multiple of min(4, N); we use the largest group size <= 4 that divides N instead.
    """
    n, c, h, w = x.shape
    group = min(group_size, n)
    while n % group:
        group -= 1
    y = x.view(group, n // group, c, h, w)
    y = torch.sqrt(y.var(dim=0, unbiased=False) + 1e-8).mean(dim=(1, 2, 3))  # [N / G]
    y = y.view(1, n // group, 1, 1, 1).expand(group, -1, 1, h, w).reshape(n, 1, h, w)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """impl: "fast" (default) or "ref", see `stylemapgan.networks.layers`."""

    def __init__(self, config: ModelConfig, *, impl: str = "fast") -> None:
        super().__init__()
        self.config = config
        ch = config.channels
        self.from_rgb = ConvLayer(3, ch(config.size), 1)
        blocks = []
        r = config.size
        while r > 4:
            blocks.append(ResDownBlock(ch(r), ch(r // 2)))
            r //= 2
        self.blocks = nn.ModuleList(blocks)
        self.final_conv = ConvLayer(ch(4) + 1, ch(4), 3)
        self.final_linear = EqualLinear(ch(4) * 16, ch(4), activate=True)
        self.out = EqualLinear(ch(4), 1)
        set_impl(self, impl)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.from_rgb(image)
        for block in self.blocks:
            x = block(x)
        x = self.final_conv(minibatch_stddev(x))
        return self.out(self.final_linear(x.flatten(1)))


