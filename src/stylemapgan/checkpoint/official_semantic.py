"""Checkpoints of the official SemanticStyleGAN code (seasonSH/SemanticStyleGAN) -> our Checkpoint.

An official file is a `torch.save` dict: 'g_ema' (always), 'g' and 'd' (training checkpoints), the optimiser
states 'g_optim' / 'd_optim', and 'args', the training script's argparse.Namespace, from which the model is
rebuilt (spec section 12). The file itself is read safely by `checkpoint.official`; here every state-dict key is
mapped by name through `semantic.official` (its layout is the official one, key by key), and any key left over,
missing or mis-shaped, or any unknown top-level entry, is a one-line error naming it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

import torch

from stylemapgan.checkpoint.build import check_state_dicts
from stylemapgan.checkpoint.format import Checkpoint, CheckpointError
from stylemapgan.config import ConfigError
from stylemapgan.semantic import (
    ConversionError,
    SemanticConfig,
    config_from_official_args,
    convert_official_discriminator,
    convert_official_generator,
)

ARGS_KEY = "args"
Converter = Callable[[Mapping[str, torch.Tensor], SemanticConfig], dict[str, torch.Tensor]]
# official top-level key -> (our network name, converter)
OFFICIAL_NETWORKS: dict[str, tuple[str, Converter]] = {
    "g_ema": ("g_ema", convert_official_generator),
    "g": ("generator", convert_official_generator),
    "d": ("discriminator", convert_official_discriminator),
}
SKIPPED = ("g_optim", "d_optim")  # optimiser states: we do not resume the official training


def args_fields(args: Any) -> dict[str, Any] | None:
    """The fields of the official `args` (a Namespace, or a dict of the same), None for anything else."""
    if isinstance(args, argparse.Namespace):
        return vars(args)
    if isinstance(args, Mapping):
        return dict(args)
    return None


def is_official_semantic(raw: Any) -> bool:
    """A SemanticStyleGAN file: its `args` describe the segmentation classes (seg_dim)."""
    fields = args_fields(raw.get(ARGS_KEY)) if isinstance(raw, Mapping) else None
    return fields is not None and "seg_dim" in fields


def config_from_args(args: Any, where: str) -> SemanticConfig:
    fields = args_fields(args)
    if fields is None:
        raise CheckpointError(f"{where}: 'args' is a {type(args).__name__}, expected the training arguments")
    try:
        return config_from_official_args(fields)
    except KeyError as exc:
        raise CheckpointError(f"{where}: args lacks {exc}; cannot rebuild the model") from None
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: args describe an unsupported model: {exc}") from None


def provenance_args(args: Any) -> dict[str, Any]:
    """The official arguments that JSON can hold (scalars and lists of scalars), for the provenance."""
    scalar = (str, int, float, bool, type(None))
    out = {}
    for key, value in (args_fields(args) or {}).items():
        if isinstance(value, scalar) or (isinstance(value, list | tuple) and all(isinstance(v, scalar) for v in value)):
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def convert_official_semantic(raw: Mapping[str, Any], where: str) -> Checkpoint:
    """An official SemanticStyleGAN checkpoint dict (already safely loaded) -> our Checkpoint."""
    if ARGS_KEY not in raw:
        raise CheckpointError(f"{where}: not an official SemanticStyleGAN checkpoint (no 'args')")
    config = config_from_args(raw[ARGS_KEY], where)
    unknown = sorted(str(k) for k in raw if k not in OFFICIAL_NETWORKS and k not in SKIPPED and k != ARGS_KEY)
    if unknown:
        raise CheckpointError(f"{where}: unexpected top-level key(s) {', '.join(unknown)} in an official "
                              f"SemanticStyleGAN checkpoint (known: {', '.join([*OFFICIAL_NETWORKS, *SKIPPED])}, args)")
    networks = {}
    for key, (ours, convert) in OFFICIAL_NETWORKS.items():
        if key not in raw:
            continue
        state = raw[key]
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{where} [{key}]: a {type(state).__name__}, expected a state dict")
        for name, value in state.items():
            if not isinstance(value, torch.Tensor):
                raise CheckpointError(f"{where} [{key}]: key {name!r} is a {type(value).__name__}, expected a tensor")
        try:
            networks[ours] = convert(state, config)
        except ConversionError as exc:
            raise CheckpointError(f"{where} [{key}]: {exc}") from None
    if "g_ema" not in networks:
        raise CheckpointError(f"{where}: official SemanticStyleGAN checkpoint has no 'g_ema'")
    check_state_dicts(config, networks, where)
    return Checkpoint(config, networks)
