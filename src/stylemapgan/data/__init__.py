"""Data pipeline: preparing image folders into LMDB datasets, built-in datasets, and torch Datasets.

Library entry points (the CLI in ``stylemapgan.cli.data`` is a thin layer over these):

- ``prepare_dataset(src, out, ImageOptions(sizes=(256,)), test=0.05)``: folder / zip / official LMDB.
- ``build_dataset("cartoon-faces", out, sizes=(64,), count=..., test_count=..., seed=0)``.
- ``PreparedDataset(path, size, split, hflip=..., labels=..., masks=...)``, ``OfficialLMDBDataset(path, size)``,
  ``open_dataset(path, size, split)`` (either layout).
- ``read_meta(path)``: the metadata record (dataset card); fields documented in ``stylemapgan.data.card``.

Heavy imports (torch for the datasets) happen only when those names are used.
"""

from __future__ import annotations

from typing import Any

from stylemapgan.data.images import ImageOptions, SkipImage, sanitize
from stylemapgan.data.lmdb_format import DatasetError, DatasetWriter, detect_layout, read_meta
from stylemapgan.data.prepare import PrepareReport, open_source, parse_test_split, prepare_dataset
from stylemapgan.utils.images import parse_color

_LAZY = {
    "PreparedDataset": "stylemapgan.data.dataset",
    "OfficialLMDBDataset": "stylemapgan.data.dataset",
    "open_dataset": "stylemapgan.data.dataset",
    "masks_to_onehot": "stylemapgan.data.dataset",
    "png_to_tensor": "stylemapgan.data.dataset",
    "tensor_to_uint8": "stylemapgan.data.dataset",
    "build_dataset": "stylemapgan.data.builders",
    "get_builder": "stylemapgan.data.builders",
    "BUILDER_NAMES": "stylemapgan.data.builders",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stylemapgan.data' has no attribute {name!r}")


__all__ = [
    "BUILDER_NAMES",
    "DatasetError",
    "DatasetWriter",
    "ImageOptions",
    "OfficialLMDBDataset",
    "PrepareReport",
    "PreparedDataset",
    "SkipImage",
    "build_dataset",
    "detect_layout",
    "get_builder",
    "masks_to_onehot",
    "open_dataset",
    "open_source",
    "parse_color",
    "parse_test_split",
    "png_to_tensor",
    "prepare_dataset",
    "read_meta",
    "sanitize",
    "tensor_to_uint8",
]
