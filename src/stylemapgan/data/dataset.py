"""Torch datasets over prepared data and over the official StyleMapGAN / rosinality LMDB.

Both are plain map-style datasets (use DistributedSampler for DDP). The LMDB environment is opened lazily
in whichever process first reads, and reopened after a fork, so a dataset can be built in the main process
and handed to DataLoader workers (it pickles without the environment).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from stylemapgan.data.lmdb_format import (
    LABELS_KEY,
    DatasetError,
    array_from_bytes,
    detect_layout,
    image_key,
    mask_key,
    official_key,
    official_length,
    official_sizes,
    read_meta,
    record_key,
    shared_env,
    split_key,
)


def png_to_tensor(data: bytes) -> torch.Tensor:
    """Encoded image bytes -> float32 [3, H, W] in [-1, 1]."""
    with Image.open(io.BytesIO(data)) as image:
        arr = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def tensor_to_uint8(image: torch.Tensor) -> np.ndarray:
    """Inverse of ``png_to_tensor``: [3, H, W] in [-1, 1] -> uint8 [H, W, 3]."""
    arr = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return arr.permute(1, 2, 0).numpy()


def masks_to_onehot(label_map: torch.Tensor, num_parts: int) -> torch.Tensor:
    """int64 [..., H, W] part-index map -> uint8 [..., K, H, W] binary masks (one channel per part)."""
    onehot = torch.nn.functional.one_hot(label_map.long(), num_parts).to(torch.uint8)
    return onehot.movedim(-1, -3)


class _LazyLMDB:
    """Per-process LMDB handle: never pickled, reopened in a forked child."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._env = None
        self._pid = -1

    def env(self):
        if self._env is None or self._pid != os.getpid():
            self._env = shared_env(self.path)
            self._pid = os.getpid()
        return self._env

    def get(self, key: bytes) -> bytes:
        with self.env().begin(buffers=False) as txn:
            value = txn.get(key)
        if value is None:
            raise DatasetError(f"{self.path}: missing key {key.decode(errors='replace')!r}")
        return value

    def close(self) -> None:
        """Forget the handle (the shared environment stays open for other datasets of this process)."""
        self._env = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])


class PreparedDataset(Dataset):
    """Images of one split at one resolution from a prepared dataset (``stylemapgan prepare`` / builders).

    ``dataset[i]`` is a float32 tensor [3, H, W] in [-1, 1] when neither labels nor masks are asked for;
    otherwise a dict with ``image``, ``index`` (the image id in the file) and, as asked, ``labels``
    (float32 [L], names in ``label_names``) and ``mask`` (int64 [H, W] part-index map, names in
    ``part_names``; or uint8 [K, H, W] binary masks with ``mask_format="onehot"``). ``hflip`` flips image and
    mask together with probability 1/2 (uses torch's RNG, so DataLoader seeds its workers).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        size: int | None = None,
        split: str = "train",
        *,
        hflip: bool = False,
        labels: bool = False,
        masks: bool = False,
        mask_format: str = "label",
        records: bool = False,
    ) -> None:
        self.path = str(Path(path))
        self.meta = read_meta(self.path)
        sizes = list(self.meta["sizes"])
        if size is None:
            size = max(sizes)
        if int(size) not in sizes:
            raise DatasetError(f"{self.path}: no {size}px images (has {sizes})")
        self.size = int(size)
        self.split = split
        self.hflip = hflip
        self.want_labels = labels
        self.want_masks = masks
        self.want_records = records
        if mask_format not in ("label", "onehot"):
            raise ValueError(f"mask_format must be 'label' or 'onehot', got {mask_format!r}")
        self.mask_format = mask_format
        if labels and not self.meta.get("labels"):
            raise DatasetError(f"{self.path}: this dataset has no labels")
        if masks and not self.meta.get("masks"):
            raise DatasetError(f"{self.path}: this dataset has no masks (per-pixel label maps: build cartoon-faces, "
                               "or prepare your images with --labels DIR)")
        if records and not self.meta.get("records"):
            raise DatasetError(f"{self.path}: this dataset has no per-image records")
        self._db = _LazyLMDB(self.path)
        if split == "all":
            self.ids = np.arange(int(self.meta["count"]), dtype=np.int64)
        elif split in self.meta.get("splits", {}):
            self.ids = array_from_bytes(self._db.get(split_key(split))).astype(np.int64)
        else:
            raise DatasetError(f"{self.path}: no split {split!r} (has {sorted(self.meta.get('splits', {}))}, all)")
        self._labels = array_from_bytes(self._db.get(LABELS_KEY)) if labels else None
        self._db.close()  # keep no handle in the object: a forked or unpickled copy opens its own

    @property
    def label_names(self) -> list[str]:
        return list((self.meta.get("labels") or {}).get("names", []))

    @property
    def part_names(self) -> list[str]:
        return list((self.meta.get("masks") or {}).get("parts", []))

    def __len__(self) -> int:
        return int(self.ids.size)

    def image_id(self, index: int) -> int:
        return int(self.ids[index])

    def record(self, index: int) -> dict[str, Any]:
        """The per-image JSON record (source name, raw attributes) of item ``index`` of this split."""
        return json.loads(self._db.get(record_key(self.image_id(index))))

    def __getitem__(self, index: int) -> torch.Tensor | dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        image_id = self.image_id(index)
        image = png_to_tensor(self._db.get(image_key(self.size, image_id)))
        flip = self.hflip and bool(torch.rand(()) < 0.5)
        if flip:
            image = image.flip(-1)
        if not (self.want_labels or self.want_masks or self.want_records):
            return image
        item: dict[str, Any] = {"image": image, "index": image_id}
        if self.want_labels:
            item["labels"] = torch.from_numpy(self._labels[image_id].astype(np.float32))
        if self.want_masks:
            with Image.open(io.BytesIO(self._db.get(mask_key(self.size, image_id)))) as m:
                label_map = torch.from_numpy(np.asarray(m, dtype=np.uint8).astype(np.int64))
            if flip:
                label_map = label_map.flip(-1)
            item["mask"] = (
                masks_to_onehot(label_map, len(self.part_names)) if self.mask_format == "onehot" else label_map
            )
        if self.want_records:
            item["record"] = bytes(self._db.get(record_key(image_id))).decode("utf-8")  # JSON text: collates
        return item


class OfficialLMDBDataset(Dataset):
    """The official StyleMapGAN / rosinality LMDB read directly: keys '{size}-{index:05d}', 'length'.

    ``dataset[i]`` is a float32 tensor [3, size, size] in [-1, 1]; ``hflip`` as in PreparedDataset.
    """

    def __init__(self, path: str | os.PathLike[str], size: int | None = None, *, hflip: bool = False) -> None:
        self.path = str(Path(path))
        env = shared_env(self.path)
        self.length = official_length(env, self.path)
        sizes = official_sizes(env) if size is None else [int(size)]
        if not sizes:
            raise DatasetError(f"{self.path}: no '{{size}}-{{index}}' keys")
        self.size = max(sizes)
        with env.begin() as txn:
            if self.length and txn.get(official_key(self.size, 0)) is None:
                raise DatasetError(f"{self.path}: no {self.size}px images (key {official_key(self.size, 0)!r})")
        self.hflip = hflip
        self._db = _LazyLMDB(self.path)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} images")
        image = png_to_tensor(self._db.get(official_key(self.size, index)))
        if image.shape[-1] != self.size or image.shape[-2] != self.size:
            raise DatasetError(f"{self.path}: image {index} is {tuple(image.shape[1:])}, expected {self.size}px")
        if self.hflip and bool(torch.rand(()) < 0.5):
            image = image.flip(-1)
        return image


def open_dataset(
    path: str | os.PathLike[str], size: int | None = None, split: str = "train", **kwargs: Any
) -> PreparedDataset | OfficialLMDBDataset:
    """Either layout by inspection. The official one has no splits: ``split`` must be 'train' or 'all'."""
    if detect_layout(path) == "official":
        if split not in ("train", "all"):
            raise DatasetError(f"{path}: the official LMDB layout has no {split!r} split")
        unknown = set(kwargs) - {"hflip"}
        if unknown:
            raise DatasetError(f"{path}: the official LMDB layout has no {', '.join(sorted(unknown))}")
        return OfficialLMDBDataset(path, size, **kwargs)
    return PreparedDataset(path, size, split, **kwargs)


class DataMismatchError(ValueError):
    """The training data cannot feed this model (empty, or images of an unusable size)."""


def collate_images(items: list[Any]) -> torch.Tensor:
    """Stack dataset items (tensors, or dicts/tuples whose first/'image' entry is the image)."""
    images = []
    for item in items:
        if isinstance(item, dict):
            item = item["image"]
        elif isinstance(item, tuple | list):
            item = item[0]
        images.append(item)
    return torch.stack(images)


def collate_images_and_labels(items: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack dataset items that carry a per-pixel label map (dicts with ``image`` and ``mask`` as int [H, W]) into
    (float [N, 3, H, W], int64 [N, H, W]). Raises DataMismatchError for an item without one."""
    images, labels = [], []
    for item in items:
        if not isinstance(item, dict) or "mask" not in item:
            raise DataMismatchError("the dataset items carry no per-pixel label maps (open it with masks=True)")
        if item["mask"].ndim != 2:
            raise DataMismatchError(f"label maps must be [H, W] class indices, got {list(item['mask'].shape)}")
        images.append(item["image"])
        labels.append(item["mask"].long())
    return torch.stack(images), torch.stack(labels)


def fit_labels_to_model(labels: torch.Tensor, size: int) -> torch.Tensor:
    """Label maps [N, H, W] stored at an integer multiple of the model's size -> [N, size, size], taking one pixel
    per block (nearest neighbour: class indices are not averaged, as the official data uses NEAREST)."""
    stored = labels.shape[-1]
    check_fits(stored, size)
    factor = stored // size
    return labels if factor == 1 else labels[..., factor // 2 :: factor, factor // 2 :: factor]


def check_fits(stored: int, size: int) -> None:
    """Stored images must be the model's size or an integer multiple of it (checked before a run starts)."""
    if stored < size or stored % size:
        raise DataMismatchError(
            f"dataset images are {stored}px; the model needs {size}px (or an integer multiple of it)")


def fit_to_model(images: torch.Tensor, size: int) -> torch.Tensor:
    """Box-downsample stored images to the model's resolution by an integer factor (e.g. 64 px data, 32 px model)."""
    stored = images.shape[-1]
    check_fits(stored, size)
    return images if stored == size else torch.nn.functional.avg_pool2d(images, stored // size)
