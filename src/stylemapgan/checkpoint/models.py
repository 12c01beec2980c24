"""What the tools load from a checkpoint file: its networks by role (generator, encoder), built and checked.

`load_inference_model` works for every family (the roles come from `checkpoint.families`); `load_editing_model`
is the StyleMapGAN editing tools' view (EMA generator + encoder) and refuses, with the family's reason, a model
they cannot edit yet. Building networks from a Checkpoint lives in `checkpoint.build`; its names are re-exported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from stylemapgan.checkpoint.build import build_network, check_state_dicts, fresh_checkpoint
from stylemapgan.checkpoint.families import AnyConfig, ModelFamily, family_of
from stylemapgan.checkpoint.format import Checkpoint, CheckpointError
from stylemapgan.checkpoint.io import load_checkpoint
from stylemapgan.config import ModelConfig
from stylemapgan.networks import Encoder, Generator

__all__ = [
    "EditingModel",
    "InferenceModel",
    "build_network",
    "check_state_dicts",
    "fresh_checkpoint",
    "load_editing_model",
    "load_inference_model",
]


@dataclass
class InferenceModel:
    """The networks an inference model of its family needs, by role, built from a checkpoint."""

    family: ModelFamily
    config: AnyConfig
    networks: dict[str, nn.Module]
    checkpoint: Checkpoint

    @property
    def generator(self) -> nn.Module:
        return self.networks["generator"]


@dataclass
class EditingModel:
    """What the editing tools need: the EMA generator and encoder, built from a checkpoint."""

    config: ModelConfig
    generator: Generator
    encoder: Encoder
    checkpoint: Checkpoint


def inference_model(ckpt: Checkpoint, device: torch.device | str = "cpu", where: str = "checkpoint") -> InferenceModel:
    """Build every role of the checkpoint's family from the first of its network names the file holds, and each
    optional role the file has a network for."""
    family = family_of(ckpt.config)
    networks = {}
    for role, names in family.roles.items():
        name = next((n for n in names if n in ckpt.networks), None)
        if name is None:
            raise CheckpointError(
                f"{where}: a {family.title} model needs its {role} network ({' or '.join(names)}); the file has "
                f"{', '.join(sorted(ckpt.networks)) or 'no networks'}"
            )
        networks[role] = build_network(ckpt, name, device)
    for role, names in family.optional_roles.items():
        name = next((n for n in names if n in ckpt.networks), None)
        if name is not None:
            networks[role] = build_network(ckpt, name, device)
    return InferenceModel(family, ckpt.config, networks, ckpt)


def load_inference_model(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> InferenceModel:
    return inference_model(load_checkpoint(path), device, str(path))


def load_editing_model(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> EditingModel:
    ckpt = load_checkpoint(path)
    family = family_of(ckpt.config)
    if family.no_editing is not None:
        raise CheckpointError(f"{path}: {family.no_editing}")
    model = inference_model(ckpt, device, str(path))
    generator, encoder = model.networks["generator"], model.networks["encoder"]
    assert isinstance(generator, Generator) and isinstance(encoder, Encoder)
    return EditingModel(ckpt.config, generator, encoder, ckpt)
