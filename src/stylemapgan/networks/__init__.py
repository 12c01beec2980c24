"""The three StyleMapGAN networks and their building blocks."""

import torch

from stylemapgan.config import ModelConfig
from stylemapgan.networks.discriminator import Discriminator
from stylemapgan.networks.encoder import Encoder
from stylemapgan.networks.generator import Generator, ModulatedConv
from stylemapgan.networks.layers import set_impl, use_ops
from stylemapgan.ops import IMPLS


def parameter_counts(config: ModelConfig) -> dict[str, int]:
    """Parameters per network, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        nets = {"generator": Generator(config), "encoder": Encoder(config), "discriminator": Discriminator(config)}
    return {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}


__all__ = ["IMPLS", "Discriminator", "Encoder", "Generator", "ModulatedConv", "parameter_counts", "set_impl",
           "use_ops"]
