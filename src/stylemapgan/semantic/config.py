"""The typed description of a SemanticStyleGAN model (Shi et al., CVPR 2022), and its named presets.

Field names and defaults follow the official `SemanticGenerator` / `DualBranchDiscriminator` (spec
shared/spec/semanticstylegan.md, section 1), with the training script's values where they differ from the class
defaults (13 classes, min_feat_size 16, residual refinement as the README runs it). `channel_base` and
`channel_max` are our extension for CPU-sized models; their defaults give the official channel table.

The official code accepts some configs it then builds wrongly without an error (the coarse features are never
concatenated, the mask never refined, the latent expansion misaligned); `__post_init__` refuses those, and
bounds every size so a crafted config (e.g. read from a checkpoint) cannot ask for an absurd allocation.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from stylemapgan.config import ConfigError

FAMILY = "semanticstylegan"


def _is_power_of_two(value: int) -> bool:
    return value > 0 and (value & (value - 1)) == 0


def _check_int(name: str, value: Any, low: int, high: int, *, power_of_two: bool = False) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{name}: must be an integer in [{low}, {high}], got {value!r}")
    if power_of_two and not _is_power_of_two(value):
        raise ConfigError(f"{name}: must be a power of two, got {value!r}")


@dataclass(frozen=True)
class SemanticConfig:
    """Architecture of the SemanticStyleGAN generator and dual-branch discriminator.

    Latent layout (section 2): `n_latent` = base_layers + 2 * seg_dim vectors (28 for the official model):
    the shared base codes first, then (shape, texture) per class, class 0 being the background. Each local
    generator has `local_layers` modulated layers, so the expanded layout has seg_dim * local_layers vectors (130).
    """

    family: ClassVar[str] = FAMILY

    size: int = 256
    seg_dim: int = 13  # classes including the background (index 0); one local generator each
    style_dim: int = 512
    n_mlp: int = 8
    local_layers: int = 10
    local_channel: int = 64
    coarse_channel: int = 512
    coarse_size: int = 64  # the local generators' grid and the coarse mask
    min_feat_size: int = 16  # the render net starts here (the fused map average-pooled)
    base_layers: int = 2  # leading local layers driven by the shared base codes
    depth_layers: int = 6  # pseudo-depth is read after this many local layers
    residual_refine: bool = True
    detach_texture: bool = False
    transparent_dims: tuple[int, ...] = ()
    channel_multiplier: int = 2
    lr_mlp: float = 0.01
    # Our extension: render net and discriminator widths. ch[r] = channel_base // 32 for r <= 32 and
    # channel_base * channel_multiplier // r above (16384: the official table); channel_max caps every width.
    channel_base: int = 16384
    channel_max: int | None = None
    # Our extension, read by our encoder only (`semantic.encoder`): 0 gives W+ latents; R > 0 gives expanded
    # latents, the expansion of its W+ plus a rank-R correction per local layer (closer reconstructions).
    encoder_expanded_rank: int = 0
    # Our extension, read by our encoder only: its trunk's width table (channels() of this base instead of
    # channel_base; None: the render net's table, narrow on CPU-sized models)
    encoder_channel_base: int | None = None

    def __post_init__(self) -> None:
        _check_int("size", self.size, 8, 1024, power_of_two=True)
        _check_int("seg_dim", self.seg_dim, 2, 64)
        _check_int("style_dim", self.style_dim, 1, 1024)
        _check_int("n_mlp", self.n_mlp, 1, 16)
        _check_int("local_layers", self.local_layers, 1, 32)
        _check_int("local_channel", self.local_channel, 1, 256)
        _check_int("coarse_channel", self.coarse_channel, 1, 1024)
        _check_int("coarse_size", self.coarse_size, 4, 128, power_of_two=True)
        _check_int("min_feat_size", self.min_feat_size, 2, 64, power_of_two=True)
        _check_int("base_layers", self.base_layers, 0, 32)
        _check_int("depth_layers", self.depth_layers, 1, 32)
        _check_int("channel_multiplier", self.channel_multiplier, 1, 4)
        _check_int("channel_base", self.channel_base, 32, 32768)
        if self.channel_max is not None:
            _check_int("channel_max", self.channel_max, 1, 2048)
        _check_int("encoder_expanded_rank", self.encoder_expanded_rank, 0, 256)
        if self.encoder_channel_base is not None:
            _check_int("encoder_channel_base", self.encoder_channel_base, 32, 32768)
        # Official asserts: coarse_size < size, min_feat_size < coarse_size, coarse_size % min_feat_size == 0.
        # Powers of two make the last one "reached by doubling": otherwise (e.g. coarse 24, min 8) the official
        # render net never meets coarse_size, so the fused 64x64 features are never concatenated and the mask is
        # never refined, silently.
        if self.coarse_size >= self.size:
            raise ConfigError(f"coarse_size: must be smaller than size {self.size}, got {self.coarse_size}")
        if self.min_feat_size >= self.coarse_size:
            raise ConfigError(
                f"min_feat_size: must be smaller than coarse_size {self.coarse_size}, got {self.min_feat_size}"
            )
        if self.depth_layers > self.local_layers:
            raise ConfigError(
                f"depth_layers: must be <= local_layers {self.local_layers}, got {self.depth_layers}"
            )
        # base_layers > depth_layers would give the non-background parts base_layers + local_layers -
        # depth_layers expanded vectors instead of local_layers: the official expansion misaligns every part.
        if self.base_layers > self.depth_layers:
            raise ConfigError(f"base_layers: must be <= depth_layers {self.depth_layers}, got {self.base_layers}")
        if not isinstance(self.residual_refine, bool):
            raise ConfigError(f"residual_refine: must be a bool, got {self.residual_refine!r}")
        if not isinstance(self.detach_texture, bool):
            raise ConfigError(f"detach_texture: must be a bool, got {self.detach_texture!r}")
        dims = self.transparent_dims
        if not isinstance(dims, tuple) or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
            raise ConfigError(f"transparent_dims: must be a tuple of class indices, got {dims!r}")
        if list(dims) != sorted(set(dims)) or any(not 1 <= d < self.seg_dim for d in dims):
            raise ConfigError(
                f"transparent_dims: must be increasing, distinct classes in [1, {self.seg_dim - 1}] "
                f"(the background, 0, is opaque), got {dims!r}"
            )
        if isinstance(self.lr_mlp, bool) or not isinstance(self.lr_mlp, (int, float)) or not (
            0 < self.lr_mlp <= 1 and math.isfinite(self.lr_mlp)
        ):
            raise ConfigError(f"lr_mlp: must be a number in (0, 1], got {self.lr_mlp!r}")

    # -- derived sizes --------------------------------------------------------------------------------------

    def channels(self, resolution: int) -> int:
        """Render-net and discriminator width at a resolution (the official table by default)."""
        if resolution <= 32:
            width = self.channel_base // 32
        else:
            width = self.channel_base * self.channel_multiplier // resolution
        if self.channel_max is not None:
            width = min(width, self.channel_max)
        return max(1, width)

    def encoder_channels(self, resolution: int) -> int:
        """Our encoder's trunk width at a resolution: the table of `channels` on encoder_channel_base if set."""
        if self.encoder_channel_base is None:
            return self.channels(resolution)
        return dataclasses.replace(self, channel_base=self.encoder_channel_base).channels(resolution)

    @property
    def n_latent(self) -> int:
        """W+ vectors: base codes, then (shape, texture) per class (28 for 13 classes)."""
        return self.base_layers + 2 * self.seg_dim

    @property
    def n_latent_expanded(self) -> int:
        """One vector per modulated local layer of every class (130 for 13 classes x 10 layers)."""
        return self.seg_dim * self.local_layers

    @property
    def n_freqs(self) -> int:
        """Fourier frequencies of the position embedding: log2(size), as official."""
        return int(math.log2(self.size))

    @property
    def render_resolutions(self) -> list[int]:
        """Output resolution of each render-net stage: 2 * min_feat_size, ..., size."""
        out, r = [], self.min_feat_size * 2
        while r <= self.size:
            out.append(r)
            r *= 2
        return out

    # -- serialisation --------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: every field (transparent_dims as a list) plus "family", so a StyleMapGAN reader refuses it."""
        data = dataclasses.asdict(self)
        data["transparent_dims"] = list(self.transparent_dims)
        for name, unset in (("encoder_expanded_rank", 0), ("encoder_channel_base", None)):
            if data[name] == unset:  # generators and default encoders: written as before these fields existed
                del data[name]
        return {"family": FAMILY, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SemanticConfig:
        data = dict(data)
        family = data.pop("family", FAMILY)
        if family != FAMILY:
            raise ConfigError(f"family: expected {FAMILY!r}, got {family!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown semantic model config field(s): {', '.join(unknown)}")
        if isinstance(data.get("transparent_dims"), list):
            data["transparent_dims"] = tuple(data["transparent_dims"])
        return cls(**data)

    def replace(self, **changes: Any) -> SemanticConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class SemanticPreset:
    """A named SemanticStyleGAN configuration plus the training batch it is meant for."""

    name: str
    model: SemanticConfig
    description: str
    batch: int = 16


# The official training run (README): --seg_dim 13 --transparent_dims 10 12 --residual_refine, min_feat_size 16.
_OFFICIAL = SemanticConfig(transparent_dims=(10, 12))

SEMANTIC_PRESETS: dict[str, SemanticPreset] = {
    p.name: p
    for p in [
        SemanticPreset(
            "semantic-512", _OFFICIAL.replace(size=512), "official 512 px CelebAMask-HQ model (13 classes)", batch=16
        ),
        SemanticPreset("semantic-256", _OFFICIAL, "official 256 px configuration (13 classes)", batch=16),
        SemanticPreset(
            "semantic-cpu-64",
            SemanticConfig(
                size=64, seg_dim=13, style_dim=256, local_channel=32, coarse_channel=128, coarse_size=32,
                min_feat_size=8, channel_base=2048, channel_multiplier=1, transparent_dims=(8,),
            ),
            "64 px, 13 cartoon-face classes (glasses transparent), 32-channel local generators on a 32x32 grid, "
            "64/32-channel render net and discriminator: trains on 2 CPU cores",
            batch=16,
        ),
        SemanticPreset(
            "semantic-tiny",
            SemanticConfig(
                size=32, seg_dim=5, style_dim=32, n_mlp=2, local_layers=4, local_channel=8, coarse_channel=16,
                coarse_size=16, min_feat_size=4, base_layers=1, depth_layers=2, transparent_dims=(3,),
                channel_base=256, channel_multiplier=1,
            ),
            "32 px, 5 classes, toy widths: for tests",
            batch=4,
        ),
    ]
}


def get_semantic_preset(name: str) -> SemanticPreset:
    try:
        return SEMANTIC_PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; known semantic presets: {', '.join(SEMANTIC_PRESETS)}") from None
