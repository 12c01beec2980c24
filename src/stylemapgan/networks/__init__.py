"""The three StyleMapGAN networks and their building blocks."""

from stylemapgan.networks.discriminator import Discriminator
from stylemapgan.networks.encoder import Encoder
from stylemapgan.networks.generator import Generator, ModulatedConv
from stylemapgan.networks.layers import IMPLS, set_impl

__all__ = ["IMPLS", "Discriminator", "Encoder", "Generator", "ModulatedConv", "set_impl"]
