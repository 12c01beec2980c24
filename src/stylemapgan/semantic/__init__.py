"""SemanticStyleGAN (Shi et al., CVPR 2022), the second model family: per-class local generators fused by
soft masks, so every semantic part has its own shape and texture code and every image comes with its
segmentation. Networks equal the official math; see `config`, `latents` (the 28 / 130 vector layout),
`generator`, `discriminator` and `official` (the official key layout and converter)."""

import torch

from stylemapgan.semantic.config import (
    FAMILY,
    SEMANTIC_PRESETS,
    SemanticConfig,
    SemanticPreset,
    get_semantic_preset,
)
from stylemapgan.semantic.discriminator import DualBranchDiscriminator
from stylemapgan.semantic.generator import SemanticGenerator, SemanticOutput
from stylemapgan.semantic.latents import LatentLayoutError, expand_latents, part_mix, shape_index, texture_index
from stylemapgan.semantic.official import (
    ConversionError,
    KeyTarget,
    config_from_official_args,
    convert_official_discriminator,
    convert_official_generator,
    official_key_map,
    official_layout,
)


def parameter_counts(config: SemanticConfig) -> dict[str, int]:
    """Parameters of generator and discriminator, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        nets = {"generator": SemanticGenerator(config), "discriminator": DualBranchDiscriminator(config)}
    return {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}


__all__ = [
    "FAMILY",
    "SEMANTIC_PRESETS",
    "ConversionError",
    "DualBranchDiscriminator",
    "KeyTarget",
    "LatentLayoutError",
    "SemanticConfig",
    "SemanticGenerator",
    "SemanticOutput",
    "SemanticPreset",
    "config_from_official_args",
    "convert_official_discriminator",
    "convert_official_generator",
    "expand_latents",
    "get_semantic_preset",
    "official_key_map",
    "official_layout",
    "parameter_counts",
    "part_mix",
    "shape_index",
    "texture_index",
]
