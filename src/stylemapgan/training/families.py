"""Which trainer, training config and presets go with a model config: one entry per model family.

`TrainingRun` and `stylemapgan train` look the family up from the model config's class, so the run loop, the
checkpoints, resume, signals, samples and validation are shared, and a family differs only in what its entry
names. A trainer offers what the run uses (see `FamilyTrainer`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset

from stylemapgan.config import PRESETS, ModelConfig
from stylemapgan.semantic.config import SEMANTIC_PRESETS, SemanticConfig
from stylemapgan.training.config import RunConfig, TrainConfig
from stylemapgan.training.distributed import DistInfo
from stylemapgan.training.semantic import SemanticTrainConfig, SemanticTrainer
from stylemapgan.training.trainer import Trainer


class FamilyTrainer(Protocol):
    """The interface TrainingRun uses: one iteration, its state, and the run's periodic outputs."""

    model_config: Any
    device: torch.device
    iteration: int

    def train_step(self) -> dict[str, float]: ...
    def networks_state(self) -> dict[str, dict[str, torch.Tensor]]: ...
    def training_state(self) -> dict[str, Any]: ...
    def load_state(self, networks: dict[str, dict[str, torch.Tensor]], training: dict[str, Any], *,
                   widen_encoder: bool = False) -> None: ...
    def load_weights(self, networks: dict[str, dict[str, torch.Tensor]]) -> list[str]: ...
    def set_lr(self, lr: float) -> None: ...
    def fixed_noise(self, count: int, generator: torch.Generator) -> torch.Tensor: ...
    def sample_grids(self, fixed_z: torch.Tensor, fixed_real: torch.Tensor | None) -> dict[str, Any]: ...
    def validation_metrics(self, val_data: Dataset | None, count: int) -> dict[str, float] | None: ...
    def progress_fields(self, losses: dict[str, float]) -> dict[str, str]: ...


@dataclass(frozen=True)
class TrainingFamily:
    """A model family as training sees it."""

    title: str  # for messages
    model_config: type
    train_config: type[RunConfig]
    trainer: Any  # a class: for_run(...) -> FamilyTrainer, check_data(model_config, dataset)
    presets: Mapping[str, Any]  # name -> preset with .model and .batch
    # what the family's data needs from `open_dataset` (e.g. per-pixel label maps)
    dataset_options: dict[str, Any] = field(default_factory=dict)


FAMILIES: tuple[TrainingFamily, ...] = (
    TrainingFamily("StyleMapGAN", ModelConfig, TrainConfig, Trainer, PRESETS),
    TrainingFamily("SemanticStyleGAN", SemanticConfig, SemanticTrainConfig, SemanticTrainer, SEMANTIC_PRESETS,
                   {"masks": True}),
)


def family_of(model_config: object) -> TrainingFamily:
    """The family whose model config class `model_config` is an instance of."""
    for family in FAMILIES:
        if isinstance(model_config, family.model_config):
            return family
    raise TypeError(f"no trainer for a {type(model_config).__name__}")


def family_of_preset(name: str) -> tuple[TrainingFamily, Any]:
    """(family, preset) of a preset name of any family; KeyError listing every name otherwise."""
    for family in FAMILIES:
        if name in family.presets:
            return family, family.presets[name]
    raise KeyError(f"unknown preset {name!r}; known presets: {', '.join(all_preset_names())}")


def all_preset_names() -> list[str]:
    return [name for family in FAMILIES for name in family.presets]


def build_trainer(model_config: object, train_config: RunConfig, dataset: Dataset, *,
                  device: torch.device | str, dist_info: DistInfo) -> FamilyTrainer:
    """The family's trainer; the training config must be the family's kind."""
    family = family_of(model_config)
    if not isinstance(train_config, family.train_config):
        raise ValueError(f"a {family.title} model trains with a {family.train_config.__name__}, "
                         f"got a {type(train_config).__name__}")
    return family.trainer.for_run(model_config, train_config, dataset, device=device, dist_info=dist_info)
