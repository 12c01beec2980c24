"""Our checkpoint format in bytes: one safetensors file holding the model config, the weights of every network,
optional training state, and provenance.

Loading never executes code: safetensors stores only tensors and a JSON header. Nested training state
(optimizer states, RNG states, counters) is split into tensors and a JSON skeleton that points at them.
This module knows bytes only; files (either format) are `checkpoint.io`'s.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from stylemapgan.checkpoint.families import FAMILIES, AnyConfig, UnknownFamilyError, config_from_dict
from stylemapgan.config import ConfigError
from stylemapgan.utils.safetensors_meta import SafetensorsHeaderError, read_metadata

FORMAT_NAME = "stylemapgan"
FORMAT_VERSION = 1
NETWORK_NAMES = tuple(dict.fromkeys(name for family in FAMILIES.values() for name in family.networks))
_TENSOR_REF = "__tensor__"


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and what is wrong."""


@dataclass
class Checkpoint:
    """Config + weights (+ training state). `networks` maps a network name to its state dict; which names a
    checkpoint may hold depends on the config's family (`checkpoint.families`)."""

    config: AnyConfig
    networks: dict[str, dict[str, torch.Tensor]]
    training: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. mean stylemap, attribute directions


def _pack(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested structure with a reference; collect tensors by path."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()
        return {_TENSOR_REF: prefix}
    if isinstance(obj, dict):
        packed = {}
        for k, v in obj.items():
            if not isinstance(k, str | int):
                raise TypeError(f"{prefix}: dict keys must be str or int, got {type(k).__name__}")
            packed[f"{type(k).__name__}:{k}"] = _pack(v, f"{prefix}.{k}", tensors)
        return {"__dict__": packed}
    if isinstance(obj, list | tuple):
        return {"__list__": [_pack(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)],
                "tuple": isinstance(obj, tuple)}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"{prefix}: cannot store a {type(obj).__name__} in a checkpoint")


def _unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if _TENSOR_REF in obj:
            return tensors[obj[_TENSOR_REF]]
        if "__dict__" in obj:
            out: dict[Any, Any] = {}
            for key, v in obj["__dict__"].items():
                kind, _, name = key.partition(":")
                out[int(name) if kind == "int" else name] = _unpack(v, tensors)
            return out
        if "__list__" in obj:
            items = [_unpack(v, tensors) for v in obj["__list__"]]
            return tuple(items) if obj.get("tuple") else items
    return obj


def default_provenance(source: str) -> dict[str, Any]:
    from stylemapgan import __version__

    return {
        "source": source,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "stylemapgan_version": __version__,
        "torch_version": torch.__version__,
    }


def checkpoint_to_bytes(ckpt: Checkpoint) -> bytes:
    tensors: dict[str, torch.Tensor] = {}
    for net, state in ckpt.networks.items():
        for key, value in state.items():
            tensors[f"{net}/{key}"] = value.detach().cpu().contiguous().clone()
    training = _pack(ckpt.training, "training", tensors) if ckpt.training is not None else None
    extra = _pack(ckpt.extra, "extra", tensors)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(ckpt.config.to_dict()),
        "networks": json.dumps(sorted(ckpt.networks)),
        "provenance": json.dumps(ckpt.provenance),
        "training": json.dumps(training),
        "extra": json.dumps(extra),
    }
    return st_save(tensors, metadata=metadata)


def _read_safetensors(path: Path, data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        metadata = read_metadata(data)
    except SafetensorsHeaderError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    try:
        tensors = st_load(data)
    except (SafetensorError, Exception) as exc:  # safetensors raises several types on bad data
        raise CheckpointError(f"{path}: corrupt or truncated tensor data ({exc})") from None
    return tensors, metadata


def checkpoint_from_bytes(data: bytes, path: Path) -> Checkpoint:
    """Our format's bytes -> Checkpoint; `path` names the file in errors."""
    tensors, metadata = _read_safetensors(path, data)
    if metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not a stylemapgan checkpoint (safetensors file without our metadata)")
    try:
        version = int(metadata.get("format_version", "0"))
    except ValueError:
        raise CheckpointError(f"{path}: format_version {metadata['format_version']!r} is not a number") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer stylemapgan (format {metadata['format_version']}); upgrade to read it"
        )
    try:
        config = config_from_dict(json.loads(metadata["config"]))
        names = json.loads(metadata["networks"])
        provenance = json.loads(metadata.get("provenance", "{}"))
        training_skeleton = json.loads(metadata.get("training", "null"))
        extra_skeleton = json.loads(metadata.get("extra", "null"))
    except UnknownFamilyError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except (KeyError, json.JSONDecodeError, ConfigError, TypeError) as exc:
        raise CheckpointError(f"{path}: corrupt metadata ({exc})") from None
    networks: dict[str, dict[str, torch.Tensor]] = {name: {} for name in names}
    for key, value in tensors.items():
        net, sep, param = key.partition("/")
        if sep and net in networks:
            networks[net][param] = value
    try:
        training = _unpack(training_skeleton, tensors) if training_skeleton is not None else None
        extra = _unpack(extra_skeleton, tensors) if extra_skeleton is not None else {}
    except KeyError as exc:
        raise CheckpointError(f"{path}: metadata refers to a missing tensor {exc}") from None
    return Checkpoint(config, networks, training, provenance, extra or {})
