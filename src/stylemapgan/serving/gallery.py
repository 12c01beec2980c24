"""The read-only image gallery every session sees: a prepared dataset's test images (with part masks when the
dataset has them), a folder of images, or the bundled model's sample faces.

Everything is loaded once at start-up into model-sized arrays, so no request ever reads a file.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stylemapgan.editing.errors import EditingError
from stylemapgan.editing.images import collect_inputs, fit_to_size, open_image, to_rgb
from stylemapgan.serving.store import ImageRecord
from stylemapgan.utils.images import to_uint8


@dataclass
class Gallery:
    records: list[ImageRecord] = field(default_factory=list)
    part_names: list[str] = field(default_factory=list)
    source: str = "none"  # where it comes from, in full (the server's log)
    label: str = ""  # what the page shows: a short name, never a path on the server (default: `source`)

    def __post_init__(self) -> None:
        self._by_id = {r.id: r for r in self.records}
        self.label = self.label or self.source

    def get(self, image_id: str) -> ImageRecord | None:
        return self._by_id.get(image_id)

    def __len__(self) -> int:
        return len(self.records)


def samples_folder(checkpoint: Path) -> Path:
    """Where a bundled model's sample images live: `assets/models/<name>-samples/` beside `<name>.safetensors`."""
    return checkpoint.with_name(f"{checkpoint.stem}-samples")


def _fitted(image: Image.Image, size: int, fit: str) -> np.ndarray:
    return np.asarray(fit_to_size(to_rgb(image), size, fit).convert("RGB"), dtype=np.uint8).copy()


def gallery_from_folder(folder: Path, size: int, count: int, fit: str = "crop") -> Gallery:
    """The first `count` image files of a folder (sorted); unreadable files are skipped with a note."""
    records = []
    for path in collect_inputs([folder])[: max(0, count)]:
        try:
            pixels = _fitted(open_image(path, "gallery"), size, fit)
        except EditingError as exc:
            print(f"gallery: skipping {exc}", file=sys.stderr)
            continue
        records.append(ImageRecord(f"g_{len(records)}", path.stem[:80], "gallery", pixels))
    return Gallery(records, [], f"folder {folder}", folder.resolve().name)


def gallery_from_dataset(path: Path, size: int, count: int, fit: str = "crop") -> Gallery:
    """The first `count` test images of a prepared dataset (all images when it has no test split), with their
    part-index maps when the dataset has part masks; the official LMDB layout works too (no masks)."""
    from stylemapgan.data import DatasetError, detect_layout, open_dataset, read_meta

    try:
        if detect_layout(path) == "official":
            dataset, split, parts = open_dataset(path, split="all"), "all", []
        else:
            meta = read_meta(path)
            split = "test" if "test" in meta.get("splits", {}) else "all"
            parts = list((meta.get("masks") or {}).get("parts", []))
            sizes = list(meta.get("sizes", []))
            dataset = open_dataset(path, size if size in sizes else None, split=split, masks=bool(parts))
        records = []
        for index in range(min(max(0, count), len(dataset))):
            item = dataset[index]
            image = item["image"] if isinstance(item, dict) else item
            label_map = item.get("mask") if isinstance(item, dict) else None
            pixels = to_uint8(image[None])[0]
            if pixels.shape[:2] != (size, size):
                pixels = _fitted(Image.fromarray(pixels), size, fit)
            records.append(ImageRecord(f"g_{index}", f"{split} {index}", "gallery", pixels,
                                       label_map=label_map.to(torch.int64) if label_map is not None else None))
    except DatasetError as exc:
        raise EditingError(f"--gallery {path}: {exc}") from None
    return Gallery(records, parts, f"dataset {path} ({split} split)",
                   f"{path.resolve().name} ({split} split)")


def load_gallery(spec: str | None, size: int, checkpoint: Path | None, count: int = 32, fit: str = "crop") -> Gallery:
    """`--gallery DATASET_OR_FOLDER`, or by default the model's sample folder when present (else empty)."""
    if spec is None:
        folder = samples_folder(checkpoint) if checkpoint is not None else None
        if folder is None or not folder.is_dir():
            return Gallery(source="none (pass --gallery DATASET_OR_FOLDER; uploads work without one)")
        path = folder
    else:
        path = Path(spec)
        if not path.exists():
            raise EditingError(f"--gallery {spec}: no such dataset or folder")
        if not path.is_dir():
            raise EditingError(f"--gallery {spec}: expected a prepared dataset or a folder of images")
    if (path / "data.mdb").is_file():
        return gallery_from_dataset(path, size, count, fit)
    return gallery_from_folder(path, size, count, fit)
