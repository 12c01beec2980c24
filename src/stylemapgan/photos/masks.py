"""Part masks of an aligned face from its landmarks: eyes, brows, nose, mouth and the face oval.

Each part is the union of the convex hulls of its landmark groups (both eyes, both brows), drawn at the aligned
image's size and grown by a small margin so an edit covers the lids and lip edges too. They need no labelled
data: any model of aligned faces can use them (`--mask landmarks:eyes+mouth`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from stylemapgan.photos.errors import PhotoError
from stylemapgan.photos.landmarks import FaceLandmarks

LANDMARK_PARTS = ("eyes", "brows", "nose", "mouth", "oval")
_ALIASES = {"eye": "eyes", "brow": "brows", "eyebrows": "brows", "lips": "mouth", "face_oval": "oval",
            "face-oval": "oval"}


def part_name(name: str) -> str:
    """A part name or alias -> one of LANDMARK_PARTS; an unknown name lists the known ones."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in LANDMARK_PARTS:
        raise PhotoError(f"landmark part {name!r}: unknown; the parts are {', '.join(LANDMARK_PARTS)}")
    return key


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Monotone-chain convex hull of [N, 2] points, counter-clockwise, without repeating the first point."""
    pts = sorted(set(map(tuple, np.asarray(points, dtype=np.float64).tolist())))
    if len(pts) <= 2:
        return np.asarray(pts)

    def half(seq: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for p in seq:
            while len(out) >= 2 and (
                (out[-1][0] - out[-2][0]) * (p[1] - out[-2][1]) - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])
            ) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.asarray(lower[:-1] + upper[:-1])


def landmark_mask(
    landmarks: FaceLandmarks, names: Sequence[str], size: int, grow: int | None = None
) -> np.ndarray:
    """Union of the named parts -> float32 [size, size] of 0 and 1. `landmarks` in the image's coordinates
    (continuous pixels); `grow` pixels of margin (default 1.5% of the side, at least 1)."""
    grow = max(1, round(size * 0.015)) if grow is None else grow
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for name in names:
        for group in landmarks.scheme.parts[part_name(name)]:
            hull = convex_hull(landmarks.points[list(group)]) - 0.5  # pixel centres -> Pillow's pixel indices
            if len(hull) >= 3:
                draw.polygon([tuple(p) for p in hull.tolist()], fill=255)
    if grow > 0:
        canvas = canvas.filter(ImageFilter.MaxFilter(2 * grow + 1))
    return (np.asarray(canvas, dtype=np.float32) >= 128).astype(np.float32)
