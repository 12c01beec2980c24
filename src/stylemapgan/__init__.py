"""StyleMapGAN in pure PyTorch: faithful networks, training and real-time editing."""

from stylemapgan.config import PRESETS, ModelConfig, get_preset
from stylemapgan.networks import Discriminator, Encoder, Generator

__version__ = "0.1.0"
__all__ = ["PRESETS", "Discriminator", "Encoder", "Generator", "ModelConfig", "__version__", "get_preset"]
