"""Checkpoint files: load either format (ours, or an official .pt of either family, converted on the fly),
save ours. Writes are atomic (temp file in the same folder, fsync, rename), so a crash never leaves a half file.

The format itself is `checkpoint.format`; its names are re-exported here, where most callers look for them.
"""

from __future__ import annotations

import os
from pathlib import Path

from stylemapgan.checkpoint.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    NETWORK_NAMES,
    Checkpoint,
    CheckpointError,
    checkpoint_from_bytes,
    checkpoint_to_bytes,
    default_provenance,
)
from stylemapgan.checkpoint.official import load_official
from stylemapgan.utils.files import atomic_write_bytes, file_sha256
from stylemapgan.utils.safetensors_meta import looks_like_safetensors

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "NETWORK_NAMES",
    "Checkpoint",
    "CheckpointError",
    "atomic_write_bytes",
    "checkpoint_to_bytes",
    "default_provenance",
    "file_sha256",
    "load_checkpoint",
    "save_checkpoint",
]


def save_checkpoint(path: str | os.PathLike[str], ckpt: Checkpoint) -> None:
    """Atomically write a checkpoint."""
    atomic_write_bytes(path, checkpoint_to_bytes(ckpt))


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Load our checkpoint, or an official StyleMapGAN / SemanticStyleGAN .pt file (converted on the fly)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file")
    data = path.read_bytes()
    if not looks_like_safetensors(data) and (data[:2] == b"PK" or data[:1] == b"\x80"):
        return load_official(path)
    return checkpoint_from_bytes(data, path)
