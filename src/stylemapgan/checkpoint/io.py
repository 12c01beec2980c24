"""Checkpoint files: load either format (ours, or an official .pt of either family, converted on the fly),
save ours. Writes are atomic (temp file in the same folder, fsync, rename), so a crash never leaves a half file.

The format itself is `checkpoint.format`; its names are re-exported here, where most callers look for them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from stylemapgan.checkpoint.families import ModelFamily, UnknownFamilyError, config_from_dict, family_of
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
from stylemapgan.utils.safetensors_meta import (
    MAX_HEADER_BYTES,
    SafetensorsHeaderError,
    looks_like_safetensors,
    read_metadata,
)

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
    "read_family",
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


def read_family(path: str | os.PathLike[str]) -> ModelFamily:
    """The model family of a checkpoint file, from our file's header alone (an official .pt is loaded whole).

    Lets a tool pick its path before it builds anything; a bad file gets the error `load_checkpoint` gives."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(9)
            if looks_like_safetensors(data) and int.from_bytes(data[:8], "little") <= MAX_HEADER_BYTES:
                data += f.read(int.from_bytes(data[:8], "little") - 1)
        config = config_from_dict(json.loads(read_metadata(data)["config"]))
    except UnknownFamilyError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except (OSError, SafetensorsHeaderError, KeyError, ValueError, TypeError):
        config = load_checkpoint(path).config  # an official .pt, or a bad file: the full reader names the problem
    return family_of(config)
