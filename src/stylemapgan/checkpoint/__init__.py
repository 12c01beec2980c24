"""Checkpoint files: our self-describing format and the official StyleMapGAN format.

Inside the package, modules import only the ones before them: `format` (bytes <-> Checkpoint) -> `build`
(networks from a Checkpoint, fresh checkpoints) -> `official` (the official .pt converter) -> `io` (load
either format from a file, save ours) -> `models` (the editing tools' generator + encoder).
"""

from stylemapgan.checkpoint.build import build_network, fresh_checkpoint
from stylemapgan.checkpoint.io import (
    Checkpoint,
    CheckpointError,
    atomic_write_bytes,
    load_checkpoint,
    save_checkpoint,
)
from stylemapgan.checkpoint.models import load_editing_model

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
