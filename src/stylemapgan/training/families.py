"""Which trainer and training config go with a model: training's side of the family registry
(`checkpoint.families`, which knows each family's config class, networks and presets).

`TrainingRun` and `stylemapgan train` look the family up from the model config, so the run loop, checkpoints,
resume, signals, samples and validation are shared, and a family differs only in what its entry names. A trainer
offers what the run uses (see `FamilyTrainer`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset

from stylemapgan.checkpoint.families import SEMANTICSTYLEGAN, STYLEMAPGAN, ModelFamily
from stylemapgan.checkpoint.families import family_of as model_family_of
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
    def checkpoint_extra(self) -> dict[str, Any]: ...
    def close(self) -> None: ...  # stop the data loader's workers (at the end of a run)


@dataclass(frozen=True)
class TrainingFamily:
    """A model family as training sees it."""

    model: ModelFamily  # config class, networks, presets, title
    train_config: type[RunConfig]
    trainer: Any  # a class: for_run(...) -> FamilyTrainer, check_data(model_config, dataset)
    # what the family's data needs from `open_dataset` (e.g. per-pixel label maps)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    # the command that runs it; its checkpoints' training state names it (absent: "train"), so --resume of
    # another command's run is refused
    command: str = "train"
    # networks a new run may take from a second checkpoint instead of its --init-from one (`TrainingRun(adopt_from=)`:
    # e.g. an encoder fitted to an earlier snapshot of the same generator, to go on against the newer one)
    adoptable: tuple[str, ...] = ()
    # model config fields a new run may set on its --init-from checkpoint's config (the adoptable networks then
    # start new): e.g. the layout of an encoder fitted to a fixed generator
    init_model_fields: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return self.model.title


TRAINING_FAMILIES: dict[str, TrainingFamily] = {
    STYLEMAPGAN.name: TrainingFamily(STYLEMAPGAN, TrainConfig, Trainer),
    SEMANTICSTYLEGAN.name: TrainingFamily(SEMANTICSTYLEGAN, SemanticTrainConfig, SemanticTrainer, {"masks": True}),
}


def training_family(model_config: object) -> TrainingFamily:
    """The training entry of the family `model_config` belongs to."""
    return TRAINING_FAMILIES[model_family_of(model_config).name]


def build_trainer(model_config: object, train_config: RunConfig, dataset: Dataset, *,
                  device: torch.device | str, dist_info: DistInfo, family: TrainingFamily | None = None
                  ) -> FamilyTrainer:
    """The trainer of `family` (default: the model family's GAN training); the training config must be its kind."""
    family = family or training_family(model_config)
    if not isinstance(train_config, family.train_config):
        raise ValueError(f"a {family.title} model trains with a {family.train_config.__name__}, "
                         f"got a {type(train_config).__name__}")
    return family.trainer.for_run(model_config, train_config, dataset, device=device, dist_info=dist_info)
