"""``fashion-mnist``: Zalando's Fashion-MNIST (60k train / 10k test, 10 classes), padded to 32 px, RGB.

Read from the Debian package dataset-fashion-mnist (installed with apt-get when missing and we are root) or
from ``source``: a folder holding the four idx files, gzipped or not. The official split is kept; ``count``
and ``test_count`` take the first images of each, so the output is the same for any seed (a ``count`` without
``test_count`` takes a tenth as many test images, as every builder does).
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from stylemapgan.data.builders.common import (
    check_resize_filter,
    check_seed,
    check_sizes,
    default_test_count,
    progress_bar,
)
from stylemapgan.data.images import RESIZE_FILTERS, encode_png
from stylemapgan.data.lmdb_format import DatasetError, DatasetWriter

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
NATIVE_SIZE = 28
PADDED_SIZE = 32


def _find(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise DatasetError(f"{folder}: missing {stem}.gz (or {stem})")


def read_idx(path: Path, expect_magic: int) -> np.ndarray:
    """An idx file (optionally gzipped) as uint8 array; images [N, 28, 28], labels [N]."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc
    if len(raw) < 8:
        raise DatasetError(f"{path}: too short for an idx header")
    magic, n = int.from_bytes(raw[0:4], "big"), int.from_bytes(raw[4:8], "big")
    if magic != expect_magic:
        raise DatasetError(f"{path}: idx magic {magic}, expected {expect_magic}")
    if magic == IMAGE_MAGIC:
        rows, cols = int.from_bytes(raw[8:12], "big"), int.from_bytes(raw[12:16], "big")
        if (rows, cols) != (NATIVE_SIZE, NATIVE_SIZE) or len(raw) != 16 + n * rows * cols:
            raise DatasetError(f"{path}: {len(raw)} bytes do not hold {n} images of {rows}x{cols}")
        return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, rows, cols)
    if len(raw) != 8 + n:
        raise DatasetError(f"{path}: {len(raw)} bytes do not hold {n} labels")
    labels = np.frombuffer(raw, dtype=np.uint8, offset=8)
    if labels.size and int(labels.max()) >= len(CLASSES):
        raise DatasetError(f"{path}: label {int(labels.max())} outside 0..{len(CLASSES) - 1}")
    return labels


def install_debian_package(log: Callable[[str], None]) -> None:
    """apt-get install the Debian package (only as root; refreshing the package lists once if needed)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DatasetError(
            f"{DEBIAN_DIR} not found: install the Debian package {DEBIAN_PACKAGE} "
            "(apt-get install dataset-fashion-mnist) or pass --source DIR"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", DEBIAN_PACKAGE]
    log(f"installing Debian package {DEBIAN_PACKAGE}")
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise DatasetError(f"apt-get install {DEBIAN_PACKAGE} failed: {proc.stderr.strip()[-400:]}")


def to_rgb_square(image28: np.ndarray, size: int, resize_filter: str) -> Image.Image:
    """28x28 gray -> zero-padded 32x32 -> 3 channels -> ``size`` (resized only if not 32)."""
    padded = np.pad(image28, (PADDED_SIZE - NATIVE_SIZE) // 2)
    image = Image.fromarray(padded, mode="L").convert("RGB")
    if size != PADDED_SIZE:
        image = image.resize((size, size), RESIZE_FILTERS[resize_filter])
    return image


def build_fashion_mnist(
    out: str | Path,
    *,
    sizes: tuple[int, ...] = (PADDED_SIZE,),
    count: int | None = None,
    test_count: int | None = None,
    seed: int = 0,
    source: str | Path | None = None,
    resize_filter: str = "lanczos",
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write Fashion-MNIST as a prepared dataset; see the module docstring."""
    from stylemapgan import __version__

    log = log or (lambda msg: print(msg, file=sys.stderr))
    check_seed(seed)
    sizes = check_sizes("fashion-mnist", sizes, 8, 256, "32 is native after padding")
    check_resize_filter(resize_filter)
    if source is None:
        folder = DEBIAN_DIR
        if not folder.is_dir():
            install_debian_package(log)
        source_info = {"type": "debian", "package": DEBIAN_PACKAGE, "path": str(folder)}
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise DatasetError(f"{folder}: --source must be a folder holding the four idx files")
        source_info = {"type": "idx-files", "path": str(folder.resolve())}
    data = {}
    for split, (img_stem, lab_stem) in FILES.items():
        images = read_idx(_find(folder, img_stem), IMAGE_MAGIC)
        labels = read_idx(_find(folder, lab_stem), LABEL_MAGIC)
        if len(images) != len(labels):
            raise DatasetError(f"{folder}: {split} has {len(images)} images but {len(labels)} labels")
        data[split] = (images, labels)
    if test_count is None and count is not None:  # a small build keeps a small test split
        test_count = default_test_count(count, len(data["test"][0]))
    want = {"train": count, "test": test_count}
    for split, n in want.items():
        avail = len(data[split][0])
        if n is not None and not 0 <= n <= avail:
            raise DatasetError(f"{split} count must be 0..{avail}, got {n}")
        want[split] = avail if n is None else int(n)
    if want["train"] < 1:
        raise DatasetError("need at least one train image")
    splits: dict[str, list[int]] = {"train": [], "test": []}
    with (
        DatasetWriter(out, overwrite=overwrite, log=log) as writer,
        progress_bar(want["train"] + want["test"], "fashion-mnist", progress) as bar,
    ):
        for split in ("train", "test"):
            images, labels = data[split]
            for i in range(want[split]):
                pngs = {s: encode_png(to_rgb_square(images[i], s, resize_filter)) for s in sizes}
                label = int(labels[i])
                record = {"split": split, "index": i, "class": CLASSES[label]}
                splits[split].append(writer.add(pngs, record=record, labels=[float(label)]))
                bar.update(1)
        meta = {
            "name": "fashion-mnist",
            "description": "Fashion-MNIST product images (Zalando Research), zero-padded from 28 to 32 px, "
            "gray replicated to 3 channels; official train/test split",
            "source": source_info,
            "licence": "MIT (Fashion-MNIST, Zalando SE)",
            "attribution": "Fashion-MNIST by Han Xiao, Kashif Rasul and Roland Vollgraf, Zalando Research "
            "(arXiv:1708.07747), MIT licence.",
            "resize_filter": resize_filter if sizes != (PADDED_SIZE,) else "none (padded 28 -> 32)",
            "square": "pad",
            "background": [0, 0, 0],
            "split_seed": seed,
            "labels": {"names": ["class"], "kinds": {"class": "categorical"}, "vocab": {"class": list(CLASSES)}},
            "masks": None,
            "records": True,
            "skipped": {"total": 0, "by_reason": {}, "items": []},
            "conversions": {"grayscale": writer.count},
            "created_by": f"stylemapgan {__version__}",
            "build": {
                "builder": "fashion-mnist",
                "seed": seed,
                "count": want["train"],
                "test_count": want["test"],
                "padding": (PADDED_SIZE - NATIVE_SIZE) // 2,
            },
        }
        writer.finish(meta, {k: v for k, v in splits.items() if v or k == "train"})
    return Path(out)
