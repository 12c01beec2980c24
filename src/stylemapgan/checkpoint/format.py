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
_MAX_DEPTH = 64  # training state nests a few levels (optimizer -> state -> param -> moment); a file may not nest more


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


class _BadSkeleton(ValueError):
    """A training/extra skeleton that `_pack` cannot have written (a crafted or corrupt header)."""


def _unpack(obj: Any, tensors: dict[str, torch.Tensor], depth: int = 0) -> Any:
    """Inverse of `_pack`. The skeleton comes from the file: every node is checked (a list where a reference
    belongs, a missing tensor, nesting deeper than `_pack` writes) and refused with `_BadSkeleton`."""
    if depth > _MAX_DEPTH:
        raise _BadSkeleton(f"nested deeper than {_MAX_DEPTH} levels")
    if isinstance(obj, dict):
        if _TENSOR_REF in obj:
            ref = obj[_TENSOR_REF]
            if not isinstance(ref, str) or ref not in tensors:
                raise _BadSkeleton(f"refers to a missing tensor {ref!r}")
            return tensors[ref]
        if "__dict__" in obj:
            items = obj["__dict__"]
            if not isinstance(items, dict):
                raise _BadSkeleton(f"a __dict__ entry holds a {type(items).__name__}")
            out: dict[Any, Any] = {}
            for key, v in items.items():
                kind, _, name = key.partition(":")
                if kind == "int" and not name.lstrip("-").isdigit():
                    raise _BadSkeleton(f"dict key {key!r} is not an int")
                out[int(name) if kind == "int" else name] = _unpack(v, tensors, depth + 1)
            return out
        if "__list__" in obj:
            values = obj["__list__"]
            if not isinstance(values, list):
                raise _BadSkeleton(f"a __list__ entry holds a {type(values).__name__}")
            items_out = [_unpack(v, tensors, depth + 1) for v in values]
            return tuple(items_out) if obj.get("tuple") else items_out
        raise _BadSkeleton(f"an object with keys {sorted(obj)[:3]} is not a packed value")
    if isinstance(obj, list):
        raise _BadSkeleton("a bare JSON list where a packed value belongs")
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
    except KeyError as exc:
        raise CheckpointError(f"{path}: corrupt metadata (no {exc} entry)") from None
    except ConfigError as exc:
        raise CheckpointError(f"{path}: model config refused ({exc})") from None
    except (json.JSONDecodeError, TypeError) as exc:
        raise CheckpointError(f"{path}: corrupt metadata ({exc})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: corrupt metadata (JSON nested too deeply)") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{path}: corrupt metadata (networks is not a list of names)")
    for what, value in (("provenance", provenance), ("training", training_skeleton), ("extra", extra_skeleton)):
        if value is not None and not isinstance(value, dict):
            raise CheckpointError(f"{path}: corrupt metadata ({what} is a JSON {type(value).__name__}, not an object)")
    networks: dict[str, dict[str, torch.Tensor]] = {name: {} for name in names}
    for key, value in tensors.items():
        net, sep, param = key.partition("/")
        if sep and net in networks:
            networks[net][param] = value
    try:
        training = _unpack(training_skeleton, tensors) if training_skeleton is not None else None
        extra = _unpack(extra_skeleton, tensors) if extra_skeleton is not None else {}
    except _BadSkeleton as exc:
        raise CheckpointError(f"{path}: corrupt metadata (training or extra state {exc})") from None
    if not isinstance(extra, dict) or (training is not None and not isinstance(training, dict)):
        raise CheckpointError(f"{path}: corrupt metadata (training or extra state is not a map)")
    return Checkpoint(config, networks, training, provenance or {}, extra or {})
