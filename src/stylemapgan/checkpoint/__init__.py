"""Checkpoint files: our self-describing format and the official StyleMapGAN format."""

from stylemapgan.checkpoint.io import (
    Checkpoint,
    CheckpointError,
    atomic_write_bytes,
    load_checkpoint,
    save_checkpoint,
)
from stylemapgan.checkpoint.models import build_network, fresh_checkpoint, load_editing_model

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "atomic_write_bytes",
    "build_network",
    "fresh_checkpoint",
    "load_checkpoint",
    "load_editing_model",
    "save_checkpoint",
]
