"""Checkpoint files: our self-describing format and the official formats of both model families.

Inside the package, modules import only the ones before them: `families` (config class, networks and presets
of each model family) -> `format` (bytes <-> Checkpoint) -> `build` (networks from a Checkpoint, fresh
checkpoints) -> `official_semantic` -> `official` (the official .pt converters) -> `io` (load either format from
a file, save ours) -> `models` (the tools' inference and editing models).
"""

from stylemapgan.checkpoint.build import build_network, check_state_dicts, fresh_checkpoint
from stylemapgan.checkpoint.families import (
    FAMILIES,
    AnyConfig,
    ModelFamily,
    all_presets,
    config_from_dict,
    family_of,
    find_preset,
    parameter_counts,
)
from stylemapgan.checkpoint.io import (
    Checkpoint,
    CheckpointError,
    atomic_write_bytes,
    load_checkpoint,
    save_checkpoint,
)
from stylemapgan.checkpoint.models import InferenceModel, load_editing_model, load_inference_model

__all__ = [
    "FAMILIES",
    "AnyConfig",
    "Checkpoint",
    "CheckpointError",
    "InferenceModel",
    "ModelFamily",
    "all_presets",
    "atomic_write_bytes",
    "build_network",
    "check_state_dicts",
    "config_from_dict",
    "family_of",
    "find_preset",
    "fresh_checkpoint",
    "load_checkpoint",
    "load_editing_model",
    "load_inference_model",
    "parameter_counts",
    "save_checkpoint",
]
