"""An encoder of our own for SemanticStyleGAN: image -> W+ latents [N, n_latent, style_dim] in one pass.

The official repository has pSp/ReStyle encoder classes but never released training code or weights (spec section
10). Ours is built from the StyleMapGAN encoder's blocks (`networks.layers`): a 1x1 conv from RGB, residual down
blocks to an 8x8 map (the render net's channel table, or that table on `config.encoder_channel_base`), then two
equalised linear layers from the flattened map to every W+ vector at once, so each part's shape and texture code can
read any region of the image. The output is an offset from the generator's mean w (`w_avg`, a buffer set when
training starts and saved with the weights), and the last layer starts at zero, so an untrained encoder answers the
mean latent: the optimisation's official start. Trained by `training.semantic_encoder` against a frozen generator.

W+ caps what any encoder can reconstruct: on the cartoon-faces generator the official optimisation (400 steps,
MSE) reached 0.026 in W+ and 0.014 in the expanded space (4 test faces). With `config.encoder_expanded_rank` R > 0
the encoder answers expanded latents [N, n_latent_expanded, D] instead: its W+ expanded, plus for every local
layer's slot s a correction c_s @ B_s (coefficients c_s [R] read from the same hidden vector, a learned basis
B_s [R, D]). The coefficients start at zero, so it starts as the W+ encoder. Every slot still belongs to one part,
so part edits work on its codes as on W+ ones (`editing.parts`).
"""

from __future__ import annotations

import torch
from torch import nn

from stylemapgan.networks.layers import ConvLayer, EqualLinear, ResDownBlock, set_impl
from stylemapgan.semantic.config import SemanticConfig
from stylemapgan.semantic.latents import expand_latents

HEAD_SIZE = 8  # the residual trunk stops at this resolution (or at the image size when smaller)


class SlotCorrection(nn.Module):
    """hidden [N, H] -> a rank-R correction [N, slots, D] per expanded slot: (coefficients [N, slots, R]) @ B_s."""

    def __init__(self, hidden: int, slots: int, rank: int, style_dim: int) -> None:
        super().__init__()
        self.slots, self.rank = slots, rank
        self.coefficients = EqualLinear(hidden, slots * rank)
        with torch.no_grad():  # start as the W+ encoder
            self.coefficients.weight.zero_()
        self.basis = nn.Parameter(torch.randn(slots, rank, style_dim))
        self.basis_gain = rank ** -0.5  # equalised learning rate, as the linear layers

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        c = self.coefficients(hidden).view(-1, self.slots, self.rank)
        return torch.einsum("nsr,srd->nsd", c, self.basis * self.basis_gain)

    def extra_repr(self) -> str:
        return f"slots={self.slots}, rank={self.rank}, style_dim={self.basis.shape[-1]}"


class SemanticEncoder(nn.Module):
    """image [N, 3, size, size] in [-1, 1] -> W+ latents [N, n_latent, style_dim], or expanded latents
    [N, n_latent_expanded, style_dim] when `config.encoder_expanded_rank` > 0 (`latent_space`). impl: "fast" or
    "ref"."""

    def __init__(self, config: SemanticConfig, *, impl: str = "fast") -> None:
        super().__init__()
        self.config = config
        ch = config.encoder_channels
        head = min(HEAD_SIZE, config.size)
        self.from_rgb = ConvLayer(3, ch(config.size), 1)
        blocks, r = [], config.size
        while r > head:
            blocks.append(ResDownBlock(ch(r), ch(r // 2)))
            r //= 2
        self.blocks = nn.ModuleList(blocks)
        self.final_conv = ConvLayer(ch(head), ch(head), 3)
        self.hidden = EqualLinear(ch(head) * head * head, config.style_dim * 2, activate=True)
        self.to_latents = EqualLinear(config.style_dim * 2, config.n_latent * config.style_dim)
        with torch.no_grad():  # start at the mean latent
            self.to_latents.weight.zero_()
        self.register_buffer("w_avg", torch.zeros(config.style_dim))
        rank = config.encoder_expanded_rank
        self.slot_correction = (SlotCorrection(config.style_dim * 2, config.n_latent_expanded, rank,
                                               config.style_dim) if rank else None)
        set_impl(self, impl)

    @property
    def latent_space(self) -> str:
        """The layout it answers: "w+" or "expanded" (`semantic.inversion.SPACES`)."""
        return "w+" if self.slot_correction is None else "expanded"

    @torch.no_grad()
    def set_mean_latent(self, w_avg: torch.Tensor) -> None:
        """The generator's mean w ([D] or [1, D]) the encoder's offsets start from."""
        self.w_avg.copy_(w_avg.reshape(-1).to(self.w_avg))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.from_rgb(image)
        for block in self.blocks:
            x = block(x)
        x = self.hidden(self.final_conv(x).flatten(1))
        offsets = self.to_latents(x).view(-1, self.config.n_latent, self.config.style_dim)
        latents = self.w_avg + offsets
        if self.slot_correction is None:
            return latents
        return expand_latents(self.config, latents) + self.slot_correction(x)
