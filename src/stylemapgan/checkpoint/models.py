"""What the editing tools load: the EMA generator and encoder of a checkpoint file, built and checked.

Building networks from a Checkpoint lives in `checkpoint.build`; its names are re-exported here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from stylemapgan.checkpoint.build import NETWORK_CLASSES, build_network, check_state_dicts, fresh_checkpoint
from stylemapgan.checkpoint.format import Checkpoint
from stylemapgan.checkpoint.io import load_checkpoint
from stylemapgan.config import ModelConfig
from stylemapgan.networks import Encoder, Generator

__all__ = [
    "NETWORK_CLASSES",
    "EditingModel",
    "build_network",
    "check_state_dicts",
    "fresh_checkpoint",
    "load_editing_model",
]


@dataclass
class EditingModel:
    """What the editing tools need: the EMA generator and encoder, built from a checkpoint."""

    config: ModelConfig
    generator: Generator
    encoder: Encoder
    checkpoint: Checkpoint


def load_editing_model(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> EditingModel:
    ckpt = load_checkpoint(path)
    g_name = "g_ema" if "g_ema" in ckpt.networks else "generator"
    e_name = "e_ema" if "e_ema" in ckpt.networks else "encoder"
    generator = build_network(ckpt, g_name, device)
    encoder = build_network(ckpt, e_name, device)
    assert isinstance(generator, Generator) and isinstance(encoder, Encoder)
    return EditingModel(ckpt.config, generator, encoder, ckpt)
