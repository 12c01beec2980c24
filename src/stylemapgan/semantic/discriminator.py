"""SemanticStyleGAN dual-branch discriminator (spec section 7, official `DualBranchDiscriminator`).

Two StyleGAN2 residual trunks, one on the RGB image and one on the K-channel segmentation, whose 4x4 outputs are
summed; then minibatch standard deviation, a 3x3 conv and two linear layers. A separate segmentation branch lets
the masks get their own (strong) R1 penalty; without a segmentation only the image branch runs (the official
domain-adaptation mode).
"""

from __future__ import annotations

import torch
from torch import nn

from stylemapgan.networks.discriminator import minibatch_stddev
from stylemapgan.networks.layers import ConvLayer, EqualLinear, ResDownBlock
from stylemapgan.semantic.config import SemanticConfig


class ResidualTrunk(nn.Module):
    """1x1 conv from the input channels, then residual blocks halving the resolution down to 4x4."""

    def __init__(self, config: SemanticConfig, in_channels: int) -> None:
        super().__init__()
        ch = config.channels
        self.from_input = ConvLayer(in_channels, ch(config.size), 1)
        blocks = []
        r = config.size
        while r > 4:
            blocks.append(ResDownBlock(ch(r), ch(r // 2)))
            r //= 2
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.from_input(x)
        for block in self.blocks:
            x = block(x)
        return x


class DualBranchDiscriminator(nn.Module):
    """(image [N, 3, size, size], segmentation [N, K, size, size] or None) -> realness logit [N, 1].

    Real segmentations are one-hot * 2 - 1; generated ones are the generator's raw segmentation output. The
    batch should be a multiple of min(N, 4) as official (otherwise the largest group size <= 4 dividing N is
    used for the minibatch standard deviation, where the official code fails).
    """

    def __init__(self, config: SemanticConfig) -> None:
        super().__init__()
        self.config = config
        ch4 = config.channels(4)
        self.image = ResidualTrunk(config, 3)
        self.segmentation = ResidualTrunk(config, config.seg_dim)
        self.final_conv = ConvLayer(ch4 + 1, ch4, 3)
        self.final_linear = EqualLinear(ch4 * 16, ch4, activate=True)
        self.out = EqualLinear(ch4, 1)

    def forward(self, image: torch.Tensor, segmentation: torch.Tensor | None = None) -> torch.Tensor:
        x = self.image(image)
        if segmentation is not None:
            x = x + self.segmentation(segmentation)
        x = self.final_conv(minibatch_stddev(x))
        return self.out(self.final_linear(x.flatten(1)))
