"""Model families: what a checkpoint's config says it is, and what networks that kind of model has.

Every checkpoint stores its model config; the config's "family" key names the family (absent: StyleMapGAN, so
every checkpoint written before there were families loads unchanged). This registry maps a family to its config
class, its networks by the names our files use, which of them training updates (and their EMA copies), which an
inference model needs, its presets and its parameter counts. Callers ask the registry (`family_of(config)`,
`config_from_dict`, `find_preset`) instead of testing a family's name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from stylemapgan.config import PRESETS, ConfigError, ModelConfig
from stylemapgan.networks import Discriminator, Encoder, Generator
from stylemapgan.networks import parameter_counts as stylemapgan_parameter_counts
from stylemapgan.semantic import FAMILY as SEMANTIC_NAME
from stylemapgan.semantic import (
    SEMANTIC_PRESETS,
    DualBranchDiscriminator,
    SemanticConfig,
    SemanticGenerator,
)
from stylemapgan.semantic import parameter_counts as semantic_parameter_counts
from stylemapgan.semantic.encoder import SemanticEncoder
from stylemapgan.semantic.latents import broadcast_w

STYLEMAPGAN_NAME = "stylemapgan"
FAMILY_KEY = "family"  # the config dict's key; absent means StyleMapGAN

AnyConfig = ModelConfig | SemanticConfig


class SampleBatch(NamedTuple):
    """What a family's plain sampler returns for a batch of z."""

    images: torch.Tensor  # [N, 3, H, W] in about [-1, 1]
    segmentation: torch.Tensor | None  # [N, K, H, W] class logits, for families that segment
    latents: torch.Tensor  # what the images were rendered from (SemanticStyleGAN: W+ [N, n_latent, D])


# (generator, z [M, D], truncation psi, batch size) -> one SampleBatch per `batch` rows of z, in order
Sampler = Callable[[nn.Module, torch.Tensor, float, int], Iterator[SampleBatch]]


class UnknownFamilyError(ConfigError):
    """A config names a model family this version does not know (e.g. written by a newer stylemapgan)."""


@dataclass(frozen=True)
class ModelFamily:
    """One kind of model our checkpoints can hold.

    networks: every network name a checkpoint of this family may hold -> its class (built from the config).
    trained: the networks training updates, in the order a fresh checkpoint initialises them (the seeded
        draws depend on it) -> the name of their EMA copy, or None.
    roles: what an inference model needs: role ("generator", "encoder") -> network names, preferred first.
    optional_roles: roles an inference model takes when the file has them (SemanticStyleGAN's encoder).
    no_editing: why the stylemap-mask editing tools (Editor, clusters) cannot open this family (None: they can).
    latent_dim: the config field holding the width of z (the seeds' random vectors).
    sample: a plain eager sampler (`Sampler`) for families the editing tools cannot open (None: sample through
        the Editor, with its runners and mean stylemap); truncation_center says what its truncation pulls towards.
    released_roles: the roles a released (shipped) model holds, each as the first (EMA) name of its role.
    release_extra: what a released model carries beside its networks, computed once from its EMA generator (the
        truncation centre, so no tool recomputes it), by extra key.
    """

    name: str
    title: str
    config_class: type
    networks: Mapping[str, type[nn.Module]]
    trained: Mapping[str, str | None]
    roles: Mapping[str, tuple[str, ...]]
    presets: Mapping[str, Any]
    parameter_counts: Callable[[Any], dict[str, int]]
    latent_dim: str
    optional_roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    no_editing: str | None = None
    sample: Sampler | None = None
    truncation_center: str = ""
    released_roles: tuple[str, ...] = ("generator", "encoder")
    release_extra: Callable[[nn.Module], dict[str, torch.Tensor]] | None = None

    @property
    def editable(self) -> bool:
        return self.no_editing is None

    def z_dim(self, config: Any) -> int:
        return int(getattr(config, self.latent_dim))


@torch.no_grad()
def _sample_semantic(generator: nn.Module, z: torch.Tensor, truncation: float, batch: int) -> Iterator[SampleBatch]:
    """SemanticStyleGAN, plain eager PyTorch: w from z, truncated towards the mean of 10,000 w (seed 0, computed
    once; the official scripts' centre), broadcast to W+ and rendered with the stored noise maps (deterministic)."""
    assert isinstance(generator, SemanticGenerator)
    mean = generator.mean_latent() if truncation != 1.0 else None
    for start in range(0, z.shape[0], batch):
        w = generator.mapping(z[start : start + batch])
        if mean is not None:
            w = mean + truncation * (w - mean)
        latents = broadcast_w(generator.config, w)
        out = generator.synthesize(latents, randomize_noise=False)
        yield SampleBatch(out.image, out.segmentation, latents)


MEAN_STYLEMAP_KEY = "mean_stylemap"  # StyleMapGAN's truncation centre in a released model's extra
MEAN_STYLEMAP_COUNT = 5000
MEAN_W_KEY = "mean_w"  # SemanticStyleGAN's, [1, style_dim]
MEAN_W_COUNT = 10_000  # the official scripts' truncation centre: the mean w of 10,000 z (seed 0)


def _release_stylemapgan(generator: nn.Module) -> dict[str, torch.Tensor]:
    assert isinstance(generator, Generator)
    return {MEAN_STYLEMAP_KEY: generator.mean_stylemap(MEAN_STYLEMAP_COUNT, seed=0).cpu()}


def _release_semantic(generator: nn.Module) -> dict[str, torch.Tensor]:
    assert isinstance(generator, SemanticGenerator)
    return {MEAN_W_KEY: generator.mean_latent(MEAN_W_COUNT, seed=0).cpu()}


STYLEMAPGAN = ModelFamily(
    name=STYLEMAPGAN_NAME,
    title="StyleMapGAN",
    config_class=ModelConfig,
    networks={
        "g_ema": Generator,
        "generator": Generator,
        "e_ema": Encoder,
        "encoder": Encoder,
        "discriminator": Discriminator,
    },
    trained={"generator": "g_ema", "encoder": "e_ema", "discriminator": None},
    roles={"generator": ("g_ema", "generator"), "encoder": ("e_ema", "encoder")},
    presets=PRESETS,
    parameter_counts=stylemapgan_parameter_counts,
    latent_dim="latent_channels",
    truncation_center=f"mean stylemap of {MEAN_STYLEMAP_COUNT:,} z (seed 0)",
    release_extra=_release_stylemapgan,
)

SEMANTICSTYLEGAN = ModelFamily(
    name=SEMANTIC_NAME,
    title="SemanticStyleGAN",
    config_class=SemanticConfig,
    networks={"g_ema": SemanticGenerator, "generator": SemanticGenerator, "discriminator": DualBranchDiscriminator,
              "e_ema": SemanticEncoder, "encoder": SemanticEncoder},
    trained={"generator": "g_ema", "discriminator": None},
    roles={"generator": ("g_ema", "generator")},
    optional_roles={"encoder": ("e_ema", "encoder")},  # fitted later by `stylemapgan train-encoder`
    presets=SEMANTIC_PRESETS,
    parameter_counts=semantic_parameter_counts,
    latent_dim="style_dim",
    no_editing=(
        "a SemanticStyleGAN model edits by swapping part codes (edit --part, stylemapgan.editing.SemanticEditor), "
        "not with StyleMapGAN's stylemap masks and feature clusters"
    ),
    sample=_sample_semantic,
    truncation_center=f"mean w of {MEAN_W_COUNT:,} z (seed 0)",
    release_extra=_release_semantic,
)

FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (STYLEMAPGAN, SEMANTICSTYLEGAN)}


def family_of(config: Any) -> ModelFamily:
    """The family of a config object."""
    for family in FAMILIES.values():
        if isinstance(config, family.config_class):
            return family
    raise TypeError(f"not a model config: {type(config).__name__}")


def family_named(name: str) -> ModelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownFamilyError(
            f"unknown model family {name!r} (known: {', '.join(FAMILIES)}); a newer stylemapgan may read it"
        ) from None


def config_from_dict(data: Mapping[str, Any]) -> AnyConfig:
    """A stored config dict -> the config of its family ("family" key; absent: StyleMapGAN)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"model config: expected a JSON object, got {type(data).__name__}")
    name = data.get(FAMILY_KEY, STYLEMAPGAN_NAME)
    if not isinstance(name, str):
        raise ConfigError(f"family: expected a string, got {name!r}")
    family = family_named(name)
    fields = dict(data)
    if family is STYLEMAPGAN:
        fields.pop(FAMILY_KEY, None)  # ModelConfig.to_dict does not write it; tolerate it when present
    return family.config_class.from_dict(fields)


def all_presets() -> dict[str, Any]:
    """Every family's presets by name (names are unique across families)."""
    out: dict[str, Any] = {}
    for family in FAMILIES.values():
        out.update(family.presets)
    return out


def find_preset(name: str) -> tuple[ModelFamily, Any]:
    """(family, preset) for a preset name of any family."""
    for family in FAMILIES.values():
        if name in family.presets:
            return family, family.presets[name]
    raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(all_presets())}")


def parameter_counts(config: Any) -> dict[str, int]:
    """Parameters per network of the config's family (generator, [encoder,] discriminator)."""
    return family_of(config).parameter_counts(config)


def class_names(config: Any, extra: Mapping[str, Any] | None = None) -> list[str] | None:
    """Names of a segmenting model's classes: the config's `class_names` field or the checkpoint's
    extra["class_names"] when either is a list of one string per class; None otherwise."""
    count = getattr(config, "seg_dim", None)
    if count is None:
        return None
    for names in (getattr(config, "class_names", None), (extra or {}).get("class_names")):
        if isinstance(names, list | tuple) and len(names) == count and all(isinstance(n, str) for n in names):
            return list(names)
    return None
