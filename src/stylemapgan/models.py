"""Bundled models: every command takes `--ckpt NAME_OR_PATH`, and omitting it selects the default model.

A bundled model is `assets/models/<name>.safetensors` (EMA generator + encoder only, with its card in the
file's provenance and `<name>.md` beside it). Names resolve before paths, so `--ckpt cartoon-faces` works
anywhere; anything else is a file path or a training run directory (its newest checkpoint, whose EMA networks
the editing tools use).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from stylemapgan.checkpoint.io import CheckpointError

DEFAULT_MODEL = "cartoon-faces"
CHECKPOINT_GLOB = "ckpt-*.safetensors"  # a training run's checkpoints: RUN/checkpoints/ckpt-NNNNNNN.safetensors
ENV_DEFAULT = "STYLEMAPGAN_DEFAULT_CKPT"  # lets users (and tests) point the default at their own checkpoint


def bundled_models_dir() -> Path:
    return Path(str(resources.files("stylemapgan.assets"))) / "models"


def bundled_models() -> dict[str, Path]:
    """Name -> path of every bundled model present in this installation."""
    folder = bundled_models_dir()
    if not folder.is_dir():
        return {}
    # a model is a checkpoint with its card beside it (directions files sit there too, without a card)
    return {p.stem: p for p in sorted(folder.glob("*.safetensors")) if p.with_suffix(".md").is_file()}


def bundled_samples(ckpt: str | os.PathLike[str]) -> Path | None:
    """The sample dataset shipped beside a bundled model (`<name>-samples/`: test faces with part masks)."""
    path = Path(ckpt)
    samples = path.with_name(f"{path.stem}-samples")
    return samples if path.parent == bundled_models_dir() and (samples / "data.mdb").exists() else None


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
    if str(ckpt) == DEFAULT_MODEL:
        raise CheckpointError(
            f"{ckpt}: the default bundled model is not in this installation; pass --ckpt PATH "
            f"(bundled: {', '.join(models) or 'none'})"
        )
    raise CheckpointError(f"{ckpt}: no such checkpoint file or bundled model (bundled: {', '.join(models) or 'none'})")
