"""The one typed object that describes a StyleMapGAN model, and the named presets.

Every tool rebuilds a model from a checkpoint alone, so this config is saved (as JSON) inside every checkpoint.
The defaults are the official configuration (256 px, 8x8 stylemap, channel multiplier 2, LayerNorm).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

NORMALIZE_MODES = ("LayerNorm", "InstanceNorm2d", "BatchNorm2d", "none")


class ConfigError(ValueError):
    """A config field has a value the networks cannot be built with; the message names the field."""


def _is_power_of_two(value: int) -> bool:
    return value > 0 and (value & (value - 1)) == 0


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of generator, encoder and discriminator (spec section 1)."""

    size: int = 256
    latent_spatial_size: int = 8
    latent_channels: int = 64
    mapping_layers: int = 8
    lr_mul: float = 0.01
    channel_multiplier: int = 2
    normalize_mode: str = "LayerNorm"
    small_generator: bool = False
    # Our extension for CPU-sized models. Official widths: ch[r] = channel_base // 32 for r <= 32 and
    # channel_base * channel_multiplier // r above, uncapped; channel_max (if set) caps every width.
    channel_base: int = 16384
    channel_max: int | None = None
    # Our extension: the encoder's own channel_base (None: the generator's, as official). A wider encoder costs
    # little at edit time (it runs once per image) and is where a small model's reconstructions are limited.
    encoder_channel_base: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or not _is_power_of_two(self.size) or not 8 <= self.size <= 1024:
            raise ConfigError(f"size: must be a power of two in [8, 1024], got {self.size!r}")
        s = self.latent_spatial_size
        if not isinstance(s, int) or not _is_power_of_two(s) or not 2 <= s <= 32:
            raise ConfigError(f"latent_spatial_size: must be a power of two in [2, 32], got {s!r}")
        if s > self.size:
            raise ConfigError(f"latent_spatial_size: {s} is larger than size {self.size}")
        if self.latent_channels < 1:
            raise ConfigError(f"latent_channels: must be >= 1, got {self.latent_channels!r}")
        if self.mapping_layers < 1:
            raise ConfigError(f"mapping_layers: must be >= 1, got {self.mapping_layers!r}")
        if not self.lr_mul > 0:
            raise ConfigError(f"lr_mul: must be > 0, got {self.lr_mul!r}")
        if self.channel_multiplier < 1:
            raise ConfigError(f"channel_multiplier: must be >= 1, got {self.channel_multiplier!r}")
        if self.normalize_mode not in NORMALIZE_MODES:
            raise ConfigError(f"normalize_mode: must be one of {NORMALIZE_MODES}, got {self.normalize_mode!r}")
        if self.channel_base < 32:
            raise ConfigError(f"channel_base: must be >= 32, got {self.channel_base!r}")
        if self.encoder_channel_base is not None and self.encoder_channel_base < 32:
            raise ConfigError(f"encoder_channel_base: must be >= 32 or None, got {self.encoder_channel_base!r}")
        if self.channel_max is not None and self.channel_max < 1:
            raise ConfigError(f"channel_max: must be >= 1 or None, got {self.channel_max!r}")

    def channels(self, resolution: int, *, base: int | None = None) -> int:
        """Feature width at a resolution (the official channel table by default; `base` replaces channel_base)."""
        base = self.channel_base if base is None else base
        if resolution <= 32:
            width = base // 32
        else:
            width = base * self.channel_multiplier // resolution
        if self.channel_max is not None:
            width = min(width, self.channel_max)
        return max(1, width)

    def encoder_channels(self, resolution: int) -> int:
        """The encoder's feature width at a resolution: the generator's unless encoder_channel_base is set."""
        return self.channels(resolution, base=self.encoder_channel_base)

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def stylemap_shape(self) -> tuple[int, int, int]:
        return (self.latent_channels, self.latent_spatial_size, self.latent_spatial_size)

    @property
    def style_resolutions(self) -> list[int]:
        """Resolution of each style tensor the resizer produces: s, s, 2s, 2s, ..., size, size."""
        out: list[int] = []
        r = self.latent_spatial_size
        while r <= self.size:
            out += [r, r]
            r *= 2
        return out

    def style_channels(self, resolution: int) -> int:
        return self.latent_channels if self.small_generator else self.channels(resolution)

    def to_dict(self) -> dict[str, Any]:
        """All fields; extensions left at their default (None) are omitted, so older readers load the file."""
        data = dataclasses.asdict(self)
        if data["encoder_channel_base"] is None:
            del data["encoder_channel_base"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config field(s): {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Preset:
    """A named model configuration plus the training batch it is meant for."""

    name: str
    model: ModelConfig
    description: str
    batch: int = 16
    extra: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("paper-256", ModelConfig(), "official 256 px, 8x8 stylemap (CelebA-HQ, AFHQ, LSUN models)"),
        Preset(
            "paper-256-16",
            ModelConfig(latent_spatial_size=16),
            "official 256 px, 16x16 stylemap (paper ablation)",
        ),
        Preset(
            "paper-1024-small",
            ModelConfig(size=1024, latent_spatial_size=16, small_generator=True),
            "official 1024 px, 16x16 stylemap, small generator (FFHQ)",
        ),
        Preset(
            "paper-1024-32-small",
            ModelConfig(size=1024, latent_spatial_size=32, small_generator=True),
            "official 1024 px, 32x32 stylemap, small generator (FFHQ)",
        ),
        Preset(
            "cpu-32",
            ModelConfig(size=32, latent_spatial_size=8, channel_base=2048, channel_multiplier=1),
            "32 px, 8x8 stylemap, 64 channels: trains visibly on 2 CPU cores in minutes",
            batch=16,
        ),
        Preset(
            "cpu-64",
            ModelConfig(size=64, latent_spatial_size=8, channel_base=4096, channel_multiplier=1),
            "64 px, 8x8 stylemap, 128/64 channels",
            batch=16,
        ),
        Preset(
            "cpu-64-small",
            ModelConfig(size=64, latent_spatial_size=8, channel_base=2048, channel_multiplier=1),
            "64 px, 8x8 stylemap, 64/32 channels: the bundled cartoon-faces model (edits in ~10 ms on 2 cores)",
            batch=16,
        ),
        Preset(
            "tiny",
            ModelConfig(
                size=16, latent_spatial_size=4, latent_channels=8, mapping_layers=2, channel_base=256,
                channel_multiplier=1,
            ),
            "16 px toy model for tests",
            batch=4,
        ),
    ]
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None
