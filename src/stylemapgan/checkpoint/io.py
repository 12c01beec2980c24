"""Self-describing checkpoints: one safetensors file holding the model config, the weights of every network,
optional training state, and provenance.

Loading never executes code: safetensors stores only tensors and a JSON header. Nested training state
(optimizer states, RNG states, counters) is split into tensors and a JSON skeleton that points at them.
Writes are atomic (temp file in the same folder, fsync, rename), so a crash never leaves a half file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from stylemapgan.config import ConfigError, ModelConfig

FORMAT_NAME = "stylemapgan"
FORMAT_VERSION = 1
NETWORK_NAMES = ("g_ema", "e_ema", "generator", "encoder", "discriminator")
_TENSOR_REF = "__tensor__"


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and what is wrong."""


@dataclass
class Checkpoint:
    """Config + weights (+ training state). `networks` maps a network name to its state dict."""

    config: ModelConfig
    networks: dict[str, dict[str, torch.Tensor]]
    training: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. mean stylemap, attribute directions


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def save_checkpoint(path: str | os.PathLike[str], ckpt: Checkpoint) -> None:
    """Atomically write a checkpoint."""
    atomic_write_bytes(path, checkpoint_to_bytes(ckpt))


def _read_safetensors(path: Path, data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if len(data) < 8:
        raise CheckpointError(f"{path}: file is empty or truncated ({len(data)} bytes)")
    header_len = int.from_bytes(data[:8], "little")
    if header_len <= 0 or header_len > len(data) - 8:
        raise CheckpointError(f"{path}: truncated or not a safetensors file (header says {header_len} bytes)")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors header ({exc})") from None
    metadata = header.get("__metadata__") or {}
    try:
        tensors = st_load(data)
    except (SafetensorError, Exception) as exc:  # safetensors raises several types on bad data
        raise CheckpointError(f"{path}: corrupt or truncated tensor data ({exc})") from None
    return tensors, metadata


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _looks_like_safetensors(data: bytes) -> bool:
    """An 8-byte little-endian header length, then a JSON object ('{'); a truncated file still counts, so
    that it is reported as truncated rather than as a foreign format."""
    return len(data) >= 9 and int.from_bytes(data[:8], "little") > 0 and data[8:9] == b"{"


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Load our checkpoint, or an official naver-ai/StyleMapGAN .pt file (converted on the fly)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file")
    data = path.read_bytes()
    if not _looks_like_safetensors(data) and (data[:2] == b"PK" or data[:1] == b"\x80"):
        from stylemapgan.checkpoint.official import load_official

        return load_official(path)
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
        config = ModelConfig.from_dict(json.loads(metadata["config"]))
        names = json.loads(metadata["networks"])
        provenance = json.loads(metadata.get("provenance", "{}"))
        training_skeleton = json.loads(metadata.get("training", "null"))
        extra_skeleton = json.loads(metadata.get("extra", "null"))
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
