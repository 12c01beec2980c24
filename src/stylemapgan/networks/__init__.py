"""The three StyleMapGAN networks and their building blocks."""

from stylemapgan.networks.discriminator import Discriminator
from stylemapgan.networks.encoder import Encoder
from stylemapgan.networks.generator import Generator, ModulatedConv

__all__ = ["Discriminator", "Encoder", "Generator", "ModulatedConv"]
