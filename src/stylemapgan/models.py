"""Bundled models: every command takes `--ckpt NAME_OR_PATH`, and omitting it selects the default model.

A bundled model is `assets/models/<name>.safetensors` (EMA generator + encoder only, with its card in the
file's provenance and `<name>.md` beside it). Names resolve before paths, so `--ckpt cartoon-faces` works
anywhere; anything else is a file path or a training run directory (its newest checkpoint, whose EMA networks
the editing tools use). `KNOWN_MODELS` lists every name this version can ship, so a name whose file is not in
this installation (not released yet, or left out of a slim install) gets a one-line error saying how to build it.

Sample faces: `<name>-samples/` beside a bundled model, or the folder its card names (`release --samples`),
beside the model file: `cartoon-faces-semantic` reuses `cartoon-faces-samples` (the same first 16 test faces).
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from stylemapgan.checkpoint.io import CheckpointError
from stylemapgan.utils.safetensors_meta import MAX_HEADER_BYTES, SafetensorsHeaderError, read_metadata

DEFAULT_MODEL = "cartoon-faces"
CHECKPOINT_GLOB = "ckpt-*.safetensors"  # a training run's checkpoints: RUN/checkpoints/ckpt-NNNNNNN.safetensors
ENV_DEFAULT = "STYLEMAPGAN_DEFAULT_CKPT"  # lets users (and tests) point the default at their own checkpoint
KNOWN_MODELS: dict[str, str] = {  # every bundled model name -> the command that builds its file from scratch
    "cartoon-faces": "make train-default",
    "cartoon-faces-semantic": "make train-semantic",
}


def bundled_models_dir() -> Path:
    return Path(str(resources.files("stylemapgan.assets"))) / "models"


def bundled_models() -> dict[str, Path]:
    """Name -> path of every bundled model present in this installation."""
    folder = bundled_models_dir()
    if not folder.is_dir():
        return {}
    # a model is a checkpoint with its card beside it (directions files sit there too, without a card)
    return {p.stem: p for p in sorted(folder.glob("*.safetensors")) if p.with_suffix(".md").is_file()}


def model_card(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The card a released model carries in its provenance, read from the file's header alone; None for a file
    without one (training checkpoints, official files) or one that cannot be read."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size <= MAX_HEADER_BYTES:
                return None
            data = size.to_bytes(8, "little") + f.read(size)
        card = json.loads(read_metadata(data).get("provenance", "{}")).get("card")
    except (OSError, SafetensorsHeaderError, ValueError, AttributeError, RecursionError):
        return None
    return card if isinstance(card, dict) else None


def bundled_samples(ckpt: str | os.PathLike[str]) -> Path | None:
    """The sample dataset shipped with a model (test faces with part masks): `<name>-samples/` beside a bundled
    model, else the folder its card names (`release --samples`), beside the model file."""
    path = Path(ckpt)
    samples = path.with_name(f"{path.stem}-samples")
    if path.parent == bundled_models_dir() and (samples / "data.mdb").exists():
        return samples
    name = (model_card(path) or {}).get("samples") if path.is_file() else None
    if isinstance(name, str) and name and Path(name).name == name and name not in (".", ".."):
        samples = path.with_name(name)
        if (samples / "data.mdb").exists():
            return samples
    return None


def bundled_directions(ckpt: str | os.PathLike[str]) -> Path | None:
    """Attribute directions shipped beside a bundled model (`<name>-directions.safetensors`)."""
    path = Path(ckpt)
    directions = path.with_name(f"{path.stem}-directions.safetensors")
    return directions if path.parent == bundled_models_dir() and directions.is_file() else None


def resolve_checkpoint(ckpt: str | os.PathLike[str] | None) -> Path:
    """A bundled model's name, a checkpoint path, a run directory (its newest checkpoint), or None for the default
    (env override, then bundled)."""
    if ckpt is None:
        override = os.environ.get(ENV_DEFAULT)
        if override:
            return resolve_checkpoint(override)
        ckpt = DEFAULT_MODEL
    models = bundled_models()
    if str(ckpt) in models:
        return models[str(ckpt)]
    path = Path(ckpt)
    if path.is_dir():
        found = sorted((path / "checkpoints").glob(CHECKPOINT_GLOB))
        if not found:
            raise CheckpointError(f"{ckpt}: a folder but not a training run (no checkpoints/{CHECKPOINT_GLOB} in it)")
        return found[-1]
    if path.exists():
        return path
    if str(ckpt) in KNOWN_MODELS:
        which = "the default bundled model" if str(ckpt) == DEFAULT_MODEL else "a bundled model name"
        raise CheckpointError(
            f"{ckpt}: {which}, but its file is not in this installation ({bundled_models_dir() / ckpt}.safetensors; "
            f"`{KNOWN_MODELS[str(ckpt)]}` builds it); pass --ckpt PATH (bundled: {', '.join(models) or 'none'})"
        )
    raise CheckpointError(f"{ckpt}: no such checkpoint file or bundled model (bundled: {', '.join(models) or 'none'})")
