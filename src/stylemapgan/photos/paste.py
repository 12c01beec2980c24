"""Putting edited faces back into their photo: the inverse of the alignment, with a feathered edge.

For every photo pixel near a face, its centre is mapped into the aligned face's coordinates (the inverse of the
`FaceTransform`), the edited face is sampled there (bilinear), and the two are mixed by a weight that is 1 inside
the aligned square and falls smoothly to 0 over its outer `feather` fraction. Pixels whose centres lie outside
the square keep their exact values: the photo is only touched where a face was cut out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from stylemapgan.photos.align import FaceTransform
from stylemapgan.photos.errors import PhotoError

DEFAULT_FEATHER = 0.1  # of the aligned side: a 256-px face fades in over its outer 25.6 px


def _region(transform: FaceTransform) -> tuple[int, int, int, int]:
    """The photo pixels the aligned square can reach: its bounding box, clipped to the photo."""
    w, h = transform.photo_size
    lo, hi = transform.quad.min(axis=0), transform.quad.max(axis=0)
    x0, y0 = max(int(np.floor(lo[0])) - 1, 0), max(int(np.floor(lo[1])) - 1, 0)
    x1, y1 = min(int(np.ceil(hi[0])) + 1, w), min(int(np.ceil(hi[1])) + 1, h)
    return x0, y0, max(x1, x0), max(y1, y0)


def _aligned_coords(transform: FaceTransform, box: tuple[int, int, int, int]) -> np.ndarray:
    """Aligned coordinates [h, w, 2] of the centres of the photo pixels in `box`."""
    x0, y0, x1, y1 = box
    xs, ys = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
    return transform.to_aligned(np.stack([xs, ys], axis=-1))


def paste_weight(transform: FaceTransform, feather: float = DEFAULT_FEATHER) -> tuple[np.ndarray, tuple[int, ...]]:
    """The mixing weight over the face's photo region -> (float32 [h, w] in [0, 1], (x0, y0, x1, y1)). Exactly 0
    wherever a pixel centre lies outside the aligned square."""
    if not 0 <= feather <= 0.5:
        raise PhotoError(f"feather: must be in [0, 0.5] (a fraction of the face's side), got {feather}")
    box = _region(transform)
    uv = _aligned_coords(transform, box)
    s = transform.size
    inset = np.minimum(np.minimum(uv[..., 0], s - uv[..., 0]), np.minimum(uv[..., 1], s - uv[..., 1]))
    if feather == 0:
        weight = (inset > 0).astype(np.float32)
    else:
        t = np.clip(inset / (feather * s), 0.0, 1.0)
        weight = (t * t * (3 - 2 * t)).astype(np.float32)  # smoothstep: no visible kink where the fade starts
    return weight, box


def _sample(face: Image.Image, transform: FaceTransform, uv: np.ndarray) -> np.ndarray:
    """The face (any resolution: it covers the aligned square) sampled bilinearly at aligned coordinates."""
    rgb = np.asarray(face.convert("RGB"), dtype=np.float32)
    src = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    grid = torch.from_numpy((uv / transform.size * 2 - 1).astype(np.float32))[None]
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0].permute(1, 2, 0).numpy()


def paste_faces(
    photo: Image.Image, faces: Sequence[tuple[Image.Image, FaceTransform]], feather: float = DEFAULT_FEATHER
) -> Image.Image:
    """`photo` with each (edited face, its transform) put back, in order; the result has the photo's size."""
    canvas = np.array(photo.convert("RGB"), dtype=np.uint8)
    for face, transform in faces:
        if tuple(transform.photo_size) != photo.size:
            raise PhotoError(f"paste: the transform is for a {transform.photo_size[0]}x{transform.photo_size[1]} "
                             f"photo, this photo is {photo.size[0]}x{photo.size[1]}")
        weight, (x0, y0, x1, y1) = paste_weight(transform, feather)
        if weight.size == 0 or not weight.any():
            continue
        uv = _aligned_coords(transform, (x0, y0, x1, y1))
        region = canvas[y0:y1, x0:x1]
        mixed = region + (_sample(face, transform, uv) - region) * weight[..., None]
        touched = weight > 0
        region[touched] = np.clip(np.rint(mixed[touched]), 0, 255).astype(np.uint8)
    return Image.fromarray(canvas)
