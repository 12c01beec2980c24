"""Per-pixel label maps beside a user's images (``stylemapgan prepare SRC OUT --labels DIR``), for models that
train on segmentations (SemanticStyleGAN).

Each image ``SRC/<path>/<stem>.<ext>`` has its label map at ``DIR/<path>/<stem>.png``: a single-channel index
PNG (mode L or P; the official convention) whose pixel values are class indices, 0 the background, of the same
size as the image as displayed (after its EXIF rotation). The class names come from ``DIR/classes.txt`` (one per
line, class 0 first; blank lines and ``#`` comments ignored) or from ``--label-names a,b,c``. A label map that is
missing, unreadable, not an index image, of another size, or holding an unnamed class makes its image skipped
with a reason, like a bad image. Label maps get the image's square crop or padding (padding is class 0) and are
resized with NEAREST, so no new classes appear at edges.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from stylemapgan.data.images import ImageOptions, SkipImage, encode_png, open_checked
from stylemapgan.data.lmdb_format import DatasetError

CLASSES_FILE = "classes.txt"
MAX_CLASSES = 256  # label maps are stored as 8-bit PNGs
INDEX_MODES = ("L", "P", "1", "I;16", "I;16L", "I;16B", "I")
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that exchange width and height


@dataclass(frozen=True)
class LabelOptions:
    """Where the label maps are and what their classes are called (index = class value)."""

    root: Path
    names: tuple[str, ...]

    def path_for(self, source_name: str) -> Path:
        """The label map expected for an input of the source (its relative path, extension replaced by .png)."""
        return self.root / Path(source_name).with_suffix(".png")

    def describe(self) -> dict[str, object]:
        return {
            "format": "label-map-png",
            "parts": list(self.names),
            "source": str(self.root.resolve()),
            "description": "index PNG label maps given with --labels: each pixel holds the index of its class in "
            "parts (0 the background); cropped or padded (class 0) as the images, resized with NEAREST",
        }


def parse_label_names(text: str) -> tuple[str, ...]:
    """'background, face ,hair' -> ('background', 'face', 'hair')."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def label_options(root: str | Path, names: str | Sequence[str] | None = None) -> LabelOptions:
    """Check the labels folder and settle the class names (classes.txt, --label-names, or both agreeing)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"--labels {root}: not a folder")
    from_file = None
    classes = root / CLASSES_FILE
    if classes.is_file():
        lines = [line.strip() for line in classes.read_text(encoding="utf-8").splitlines()]
        from_file = tuple(line for line in lines if line and not line.startswith("#"))
    given = parse_label_names(names) if isinstance(names, str) else tuple(names) if names is not None else None
    if given is not None and from_file is not None and given != from_file:
        raise DatasetError(f"--label-names {','.join(given)}: differs from {classes} ({','.join(from_file)})")
    chosen = given if given is not None else from_file
    if chosen is None:
        raise DatasetError(f"--labels {root}: name the classes in {classes} (one per line, class 0 first) or "
                           "with --label-names a,b,c")
    where = "--label-names" if given is not None else str(classes)
    if not 2 <= len(chosen) <= MAX_CLASSES:
        raise DatasetError(f"{where}: {len(chosen)} class names; label maps need 2 to {MAX_CLASSES}")
    duplicates = sorted({n for n in chosen if chosen.count(n) > 1})
    if duplicates:
        raise DatasetError(f"{where}: class names repeat ({', '.join(duplicates)})")
    return LabelOptions(root, chosen)


def displayed_size(image_data: bytes) -> tuple[int, int]:
    """(width, height) of an image as shown, i.e. after its EXIF orientation (what `sanitize` stores)."""
    with Image.open(io.BytesIO(image_data)) as image:
        width, height = image.size
        try:
            orientation = image.getexif().get(0x0112, 1)
        except Exception:  # an unreadable EXIF block: sanitize keeps the pixels as stored
            orientation = 1
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


def _square(labels: np.ndarray, mode: str) -> np.ndarray:
    """The images' `make_square` for a label map: the same centre crop, or padding with class 0."""
    height, width = labels.shape
    if width == height:
        return labels
    if mode == "crop":
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return labels[top : top + side, left : left + side]
    side = max(width, height)
    canvas = np.zeros((side, side), dtype=labels.dtype)
    left, top = (side - width) // 2, (side - height) // 2
    canvas[top : top + height, left : left + width] = labels
    return canvas


def sanitize_label_map(data: bytes, image_size: tuple[int, int], options: ImageOptions, num_classes: int
                       ) -> dict[int, bytes]:
    """Label map bytes -> mode-L PNG bytes at each size, or SkipImage with a 'label-...' reason."""
    try:
        image = open_checked(data, options.max_pixels)
    except SkipImage as exc:
        raise SkipImage(f"label-{exc.reason}", exc.detail) from None
    if image.mode not in INDEX_MODES:
        raise SkipImage("label-not-index", f"mode {image.mode}: label maps must be single-channel index PNGs "
                                           "(mode L or P) whose values are class indices")
    if image.size != image_size:
        raise SkipImage("label-size-mismatch", f"label map {image.size[0]}x{image.size[1]}, image "
                                               f"{image_size[0]}x{image_size[1]}")
    labels = np.asarray(image).astype(np.int64)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise SkipImage("label-out-of-range", f"class {high if high >= num_classes else low} in the label map, "
                                              f"{num_classes} classes named")
    square = Image.fromarray(_square(labels.astype(np.uint8), options.square))
    return {int(s): encode_png(square if square.size == (s, s) else square.resize((s, s), Image.Resampling.NEAREST))
            for s in options.sizes}
