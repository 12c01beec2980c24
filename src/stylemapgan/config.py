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


# Inclusive bounds of the integer fields. Official models use at most size 1024, 64 latent channels, 8 mapping
# layers, channel_base 16384 and multiplier 2; the bounds leave room for wider experiments, not for absurd
# allocations (a crafted checkpoint asking for mapping_layers 10**6 or channel_base 2**40 is refused here,
# before any network is built).
LIMITS: dict[str, tuple[int, int]] = {
    "size": (8, 1024),
    "latent_spatial_size": (2, 32),
    "latent_channels": (1, 512),
    "mapping_layers": (1, 16),
    "channel_multiplier": (1, 4),
    "channel_base": (32, 32768),
    "channel_max": (1, 4096),
}
# The estimated peak of one image's render (`ModelConfig.render_bytes(1)`) a config may ask for: the official
# 1024 px model needs about 3.5 GiB by this estimate, the largest config inside LIMITS about 20 GiB.
MAX_RENDER_BYTES = 8 << 30


def _is_power_of_two(value: int) -> bool:
    return value > 0 and (value & (value - 1)) == 0


def _check_int(name: str, value: Any, low: int, high: int, *, power_of_two: bool = False,
               or_none: bool = False) -> None:
    """An integer (not a bool, not 64.5) in [low, high]; ConfigError naming the field otherwise."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        kind = "a power of two" if power_of_two else "an integer"
        raise ConfigError(f"{name}: must be {kind} in [{low}, {high}]{' or None' if or_none else ''}, got {value!r}")
    if power_of_two and not _is_power_of_two(value):
        raise ConfigError(f"{name}: must be a power of two in [{low}, {high}], got {value!r}")


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
        """Every field typed and bounded: a config read from a file (a checkpoint's JSON) is untrusted, and each
        bound keeps the networks it describes buildable in memory (see `LIMITS`; official configs sit far inside)."""
        _check_int("size", self.size, *LIMITS["size"], power_of_two=True)
        _check_int("latent_spatial_size", self.latent_spatial_size, *LIMITS["latent_spatial_size"], power_of_two=True)
        if self.latent_spatial_size > self.size:
            raise ConfigError(f"latent_spatial_size: {self.latent_spatial_size} is larger than size {self.size}")
        _check_int("latent_channels", self.latent_channels, *LIMITS["latent_channels"])
        _check_int("mapping_layers", self.mapping_layers, *LIMITS["mapping_layers"])
        lr_mul = self.lr_mul
        if isinstance(lr_mul, bool) or not isinstance(lr_mul, int | float) or not (0 < lr_mul <= 1):
            raise ConfigError(f"lr_mul: must be a number in (0, 1], got {lr_mul!r}")
        _check_int("channel_multiplier", self.channel_multiplier, *LIMITS["channel_multiplier"])
        if self.normalize_mode not in NORMALIZE_MODES:
            raise ConfigError(f"normalize_mode: must be one of {NORMALIZE_MODES}, got {self.normalize_mode!r}")
        if not isinstance(self.small_generator, bool):
            raise ConfigError(f"small_generator: must be true or false, got {self.small_generator!r}")
        _check_int("channel_base", self.channel_base, *LIMITS["channel_base"])
        if self.encoder_channel_base is not None:
            _check_int("encoder_channel_base", self.encoder_channel_base, *LIMITS["channel_base"], or_none=True)
        if self.channel_max is not None:
            _check_int("channel_max", self.channel_max, *LIMITS["channel_max"], or_none=True)
        if self.render_bytes(1) > MAX_RENDER_BYTES:
            raise ConfigError(
                f"size/channel_base/channel_multiplier: rendering one image would need about "
                f"{self.render_bytes(1) / 2**30:.1f} GiB (limit {MAX_RENDER_BYTES / 2**30:.0f} GiB)"
            )

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

    def render_bytes(self, batch: int = 1) -> int:
        """Estimated peak bytes of the float32 tensors alive while the generator renders `batch` images: every
        style tensor (kept for w+ edits), and the features and modulations at each resolution. Within about 30 %
        of the profiler's measurement on the presets (paper-256: 0.76 GB per image); it sizes memory budgets
        (`stylemapgan bench`, checkpoint checks) before anything is allocated."""
        styles = sum(self.style_channels(r) * r * r for r in self.style_resolutions)
        features = sum(self.channels(r) * r * r for r in dict.fromkeys(self.style_resolutions))
        return int(4 * batch * (3.5 * styles + 6 * features))

    def to_dict(self) -> dict[str, Any]:
        """All fields; extensions left at their default (None) are omitted, so older readers load the file."""
        data = dataclasses.asdict(self)
        if data["encoder_channel_base"] is None:
            del data["encoder_channel_base"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"model config must be a JSON object, got a {type(data).__name__}")
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
