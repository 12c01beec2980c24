"""Shared test data: a prepared dataset of drawn 'faces' with label-map part masks, for the serving tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from stylemapgan.data import DatasetWriter

PARTS = ["background", "face", "hair", "eyes", "mouth"]


def write_face_dataset(out: Path, size: int = 32, count: int = 6, train_count: int = 1, seed: int = 0) -> Path:
    """`count` faces (background, face, hair of random height, two eyes, mouth); the first `train_count` are the
    train split, the rest the test split (what the gallery shows)."""
    rng = np.random.default_rng(seed)
    s = size
    with DatasetWriter(out) as writer:
        for _ in range(count):
            colors = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in PARTS]
            image = Image.new("RGB", (s, s), colors[0])
            labels = Image.new("L", (s, s), 0)
            hair_h = int(rng.integers(s // 5, s // 3))
            for target, fill in ((image, lambda i, c=colors: c[i]), (labels, lambda i: i)):
                draw = ImageDraw.Draw(target)
                draw.ellipse((s // 6, s // 6, 5 * s // 6, 5 * s // 6), fill=fill(1))
                draw.rectangle((s // 6, s // 8, 5 * s // 6, s // 8 + hair_h), fill=fill(2))
                draw.rectangle((s // 3, s // 2 - 2, s // 3 + 3, s // 2 + 1), fill=fill(3))
                draw.rectangle((2 * s // 3 - 3, s // 2 - 2, 2 * s // 3, s // 2 + 1), fill=fill(3))
                draw.rectangle((s // 3, 2 * s // 3, 2 * s // 3, 2 * s // 3 + 2), fill=fill(4))
            png, mask_png = io.BytesIO(), io.BytesIO()
            image.save(png, "PNG")
            labels.save(mask_png, "PNG")
            writer.add({s: png.getvalue()}, masks={s: mask_png.getvalue()})
        writer.finish({"name": "test-faces", "masks": {"format": "label-map-png", "parts": PARTS}},
                      {"train": list(range(train_count)), "test": list(range(train_count, count))})
    return out
