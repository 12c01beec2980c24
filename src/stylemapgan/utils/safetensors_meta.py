"""Reading the `__metadata__` of a safetensors file without trusting it.

A safetensors file is an 8-byte little-endian header length, a JSON header, then raw tensor data; the header's
`__metadata__` is a map of strings, which our checkpoints, directions files and FID statistics use for their
format name and JSON-encoded fields. The `safetensors` library loads tensors but does not return that map, so
every reader here goes through `read_metadata`, with one set of rules: the header length must be positive,
inside the file, and at most `MAX_HEADER_BYTES` (safetensors' own limit); the header must be a JSON object;
`__metadata__`, when present, must map strings to strings.
"""

from __future__ import annotations

import json

MAX_HEADER_BYTES = 100_000_000  # what the safetensors library itself accepts


class SafetensorsHeaderError(ValueError):
    """Bytes that are not a well-formed safetensors header; the message says what is wrong (no file name)."""


def read_metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` map of a safetensors file's bytes ({} when the file has none)."""
    if len(data) < 8:
        raise SafetensorsHeaderError(f"file is empty or truncated ({len(data)} bytes)")
    header_len = int.from_bytes(data[:8], "little")
    if header_len <= 0 or header_len > len(data) - 8 or header_len > MAX_HEADER_BYTES:
        raise SafetensorsHeaderError(f"truncated or not a safetensors file (header says {header_len} bytes)")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SafetensorsHeaderError(f"corrupt safetensors header ({exc})") from None
    except RecursionError:  # e.g. [[[[...]]]] ten thousand deep
        raise SafetensorsHeaderError("corrupt safetensors header (JSON nested too deeply)") from None
    if not isinstance(header, dict):
        raise SafetensorsHeaderError(f"corrupt safetensors header (a JSON {type(header).__name__}, not an object)")
    metadata = header.get("__metadata__") or {}
    strings = isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    if not strings:
        raise SafetensorsHeaderError("corrupt safetensors header (__metadata__ is not a map of strings)")
    return metadata


def looks_like_safetensors(data: bytes) -> bool:
    """An 8-byte little-endian header length, then a JSON object ('{'); a truncated file still counts, so
    that it is reported as truncated rather than as a foreign format."""
    return len(data) >= 9 and int.from_bytes(data[:8], "little") > 0 and data[8:9] == b"{"
