"""Masks for local editing: parsing what the user gives (image file, rectangle, part names), and the
per-resolution operations (pooling, shifting, feathering) that turn one image-space mask into a blend weight
for a stylemap or for each style tensor.

A mask is a float tensor [1, 1, size, size] in [0, 1] at the model's resolution; 1 marks the region of the
reference that is pasted. Poolings (picked by name at the API boundary), each from where it comes:

- "max": a cell is fully pasted if any pixel of it is in the mask. The official `generate.py` local editing
  (both its "w" and its "w_plus" mix max-pool the mask); our "w" default, so a small mask still reaches the
  coarse stylemap.
- "avg-threshold": the mask's coverage of the cell (its average), pasted only where strictly above 0.5, so a
  cell exactly half covered keeps the source. The official interactive demo (`demo.py`), per style tensor;
  our "w_plus" default.
- "avg": the coverage kept as a soft weight. Ours; the official code has no such pooling.

A shift (dx, dy) in pixels moves the pasted region; at a layer of resolution r it moves by
`int(shift / (size // r))` cells, truncated toward zero as in the official demo (a 7-pixel shift moves a 2-pixel
cell by 3, not 4), and what would wrap around the border is dropped.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from stylemapgan.editing.errors import EditingError
from stylemapgan.editing.images import IMAGE_SUFFIXES, open_image, square_fit

_INT = r"\s*(-?\d+)\s*"
_RECT_RE = re.compile(rf"^(?:rect:)?{_INT},{_INT},{_INT},{_INT}$")
_NUMERIC_RE = re.compile(r"^(?:rect:)?[\d\s,.+-]*$")
_PART_RE = re.compile(r"^(?:part:)?[A-Za-z_][\w-]*(\+[A-Za-z_][\w-]*)*$")
_LANDMARK_RE = re.compile(r"^landmarks:[A-Za-z_][\w-]*(\+[A-Za-z_][\w-]*)*$")
_CLUSTER_RE = re.compile(r"^cluster:\s*([\w-]+(?:\s*\+\s*[\w-]+)*)\s*$")


@dataclass(frozen=True)
class RectangleMask:
    """Pixel rectangle at model resolution: x0 <= x < x1, y0 <= y < y1."""

    x0: int
    y0: int
    x1: int
    y1: int


@dataclass(frozen=True)
class FileMask:
    """A mask image of any size and mode: luminance (transparency over black) binarised at 0.5."""

    path: Path


@dataclass(frozen=True)
class PartMask:
    """Union of named parts from a dataset's part masks (e.g. hair, or hair+eyes)."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class LandmarkMask:
    """Union of face parts drawn from a face's landmarks (eyes, brows, nose, mouth, oval): `landmarks:eyes+mouth`.
    Needs no labelled data; the image should be an aligned face (`stylemapgan align`, or `--align`)."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class ClusterMask:
    """Union of the model's unsupervised part clusters (`editing.clusters`), by id or by the name users gave them:
    cluster:3, cluster:3+5, cluster:hair. A bare name (hair) is a PartMask, which resolves to a named cluster
    where no dataset part masks are at hand."""

    keys: tuple[str, ...]


MaskSpec = RectangleMask | FileMask | PartMask | ClusterMask | LandmarkMask


def parse_rectangle(text: str, field: str = "rectangle") -> RectangleMask:
    m = _RECT_RE.match(text)
    if not m:
        raise EditingError(f"{field} {text!r}: a rectangle is four integers x0,y0,x1,y1 (pixels at model size)")
    x0, y0, x1, y1 = (int(g) for g in m.groups())
    if not (x0 < x1 and y0 < y1):
        raise EditingError(f"{field} {text!r}: rectangle needs x0 < x1 and y0 < y1")
    return RectangleMask(x0, y0, x1, y1)


def parse_mask(text: str) -> MaskSpec:
    """'x0,y0,x1,y1' (or 'rect:...') -> rectangle; an existing file -> mask image; 'hair' / 'part:hair+eyes'
    -> part names; 'cluster:3+5' -> part clusters; 'landmarks:eyes+mouth' -> face parts from landmarks.
    Anything else is an error naming the text."""
    cluster = _CLUSTER_RE.match(text)
    if cluster and not Path(text).is_file():
        return ClusterMask(tuple(key.strip() for key in cluster.group(1).split("+")))
    if text.startswith("cluster:") and not Path(text).is_file():
        raise EditingError(f"mask {text!r}: expected cluster ids or names such as cluster:3 or cluster:3+hair")
    if _NUMERIC_RE.match(text) and not Path(text).is_file():
        return parse_rectangle(text, "mask")
    path = Path(text)
    if path.is_file():
        return FileMask(path)
    if _LANDMARK_RE.match(text):
        from stylemapgan.photos import PhotoError
        from stylemapgan.photos.masks import part_name

        try:
            return LandmarkMask(tuple(part_name(n) for n in text.removeprefix("landmarks:").split("+")))
        except PhotoError as exc:
            raise EditingError(f"mask {text!r}: {exc}") from None
    if _PART_RE.match(text) and not path.suffix:
        names = text.removeprefix("part:").split("+")
        return PartMask(tuple(names))
    if path.is_dir():
        raise EditingError(f"mask {text!r}: is a directory, expected a mask image, a rectangle or part names")
    if path.suffix.lower() in IMAGE_SUFFIXES or os.sep in text or "/" in text:
        raise EditingError(f"{text}: no such file (mask)")
    raise EditingError(
        f"mask {text!r}: not a file, a rectangle x0,y0,x1,y1, part names like hair or hair+eyes, or "
        "landmarks:eyes (eyes, brows, nose, mouth, oval)"
    )


def parse_shift(text: str, field: str = "shift") -> tuple[int, int]:
    """'DX,DY' in pixels at model resolution (x right, y down)."""
    m = re.match(rf"^{_INT},{_INT}$", text)
    if not m:
        raise EditingError(f"{field} {text!r}: expected two integers DX,DY (pixels)")
    return int(m.group(1)), int(m.group(2))


def rectangle_mask(rect: RectangleMask, size: int) -> torch.Tensor:
    if not (0 <= rect.x0 < rect.x1 <= size and 0 <= rect.y0 < rect.y1 <= size):
        raise EditingError(
            f"mask rectangle {rect.x0},{rect.y0},{rect.x1},{rect.y1}: must lie inside the {size}x{size} image"
        )
    mask = torch.zeros(1, 1, size, size)
    mask[..., rect.y0 : rect.y1, rect.x0 : rect.x1] = 1.0
    return mask


def mask_from_file(path: str | os.PathLike[str], size: int, fit: str = "crop") -> torch.Tensor:
    """Mask image of any size/mode -> binary [1, 1, size, size]; made square the same way as the images."""
    image = open_image(path, "mask")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        from stylemapgan.utils.images import high_depth_to_l

        image = high_depth_to_l(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    grey = square_fit(fit)(image.convert("L"), (0, 0, 0))
    if grey.size != (size, size):
        grey = grey.resize((size, size), Image.Resampling.BILINEAR)
    arr = np.asarray(grey, dtype=np.float32) / 255.0
    return torch.from_numpy((arr >= 0.5).astype(np.float32))[None, None]


def mask_from_parts(
    label_maps: Sequence[torch.Tensor], part_names: Sequence[str], spec: PartMask, size: int
) -> torch.Tensor:
    """Union over the given label maps (e.g. source and reference) of the named parts -> [1, 1, size, size]."""
    known = list(part_names)
    index = {name: i for i, name in enumerate(known)}
    aliases = {"skin": "face", "facial hair": "facial_hair", "facial-hair": "facial_hair", "beard": "facial_hair"}
    wanted = []
    for name in spec.names:
        key = name if name in index else aliases.get(name.lower(), name.lower())
        if key not in index:
            raise EditingError(f"mask part {name!r}: unknown part name; this dataset has {', '.join(known)}")
        wanted.append(index[key])
    if not label_maps:
        raise EditingError("mask parts: need a dataset image (SPLIT:INDEX with --data) to read part masks from")
    mask = torch.zeros(1, 1, size, size)
    for label_map in label_maps:
        lm = label_map.long()
        if tuple(lm.shape[-2:]) != (size, size):
            lm = F.interpolate(lm[None, None].float(), size=(size, size), mode="nearest")[0, 0].long()
        hit = torch.zeros_like(lm, dtype=torch.bool)
        for i in wanted:
            hit |= lm == i
        mask = torch.maximum(mask, hit.float().view(1, 1, size, size))
    return mask


def as_mask(mask: torch.Tensor, size: int, field: str = "mask") -> torch.Tensor:
    """Validate an API-given mask ([H, W], [1, H, W] or [1, 1, H, W], values in [0, 1]) -> [1, 1, size, size]."""
    if not isinstance(mask, torch.Tensor):
        raise EditingError(f"{field}: expected a tensor, got {type(mask).__name__}")
    m = mask.detach().float()
    while m.ndim < 4:
        m = m[None]
    if m.ndim != 4 or m.shape[:2] != (1, 1) or tuple(m.shape[-2:]) != (size, size):
        raise EditingError(f"{field}: expected a {size}x{size} mask, got shape {tuple(mask.shape)}")
    if m.numel() and (float(m.min()) < 0 or float(m.max()) > 1 or not bool(torch.isfinite(m).all())):
        raise EditingError(f"{field}: values must lie in [0, 1]")
    return m


# ---- per-resolution operations -------------------------------------------------------------------------


def pool_max(mask: torch.Tensor, resolution: int) -> torch.Tensor:
    """Any pixel of a cell in the mask pastes the cell (official `generate.py`, "w" and "w_plus")."""
    k = mask.shape[-1] // resolution
    return F.max_pool2d(mask, k) if k > 1 else mask


def pool_avg(mask: torch.Tensor, resolution: int) -> torch.Tensor:
    """Coverage of each cell, kept soft (ours)."""
    k = mask.shape[-1] // resolution
    return F.avg_pool2d(mask, k) if k > 1 else mask


def pool_avg_threshold(mask: torch.Tensor, resolution: int) -> torch.Tensor:
    """Cells covered strictly more than half are pasted (official `demo.py`: `> 0.5`, half covered keeps the
    source; a mask edge on an odd pixel makes such cells)."""
    return (pool_avg(mask, resolution) > 0.5).to(mask.dtype)


POOLINGS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "max": pool_max,
    "avg-threshold": pool_avg_threshold,
    "avg": pool_avg,
}

# What each pooling is and where it comes from, for help texts (one place, beside the functions).
POOLING_ORIGINS: dict[str, str] = {
    "max": "any pixel of a cell pastes it (official generate.py)",
    "avg-threshold": "cells covered strictly more than half (official demo.py)",
    "avg": "soft coverage (ours)",
}


def pooling(name: str) -> Callable[[torch.Tensor, int], torch.Tensor]:
    try:
        return POOLINGS[name]
    except KeyError:
        raise EditingError(f"pooling: must be one of {', '.join(POOLINGS)}, got {name!r}") from None


def scaled_shift(shift: tuple[int, int], resolution: int, size: int) -> tuple[int, int]:
    """A pixel shift at model size -> whole cells at `resolution`, truncated toward zero (the official demo's
    `int(shift / ratio)`: -7 px at 2-pixel cells is -3 cells)."""

    def scale(v: int) -> int:
        cells = abs(v) * resolution // size  # exact integer arithmetic, no float rounding at large sizes
        return cells if v >= 0 else -cells

    return scale(shift[0]), scale(shift[1])


def shift_and_zero(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Roll the last two dims by (dy, dx) and zero what wrapped around (nothing re-enters from the far side)."""
    if dx == 0 and dy == 0:
        return x
    out = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    if dy > 0:
        out[..., : min(dy, out.shape[-2]), :] = 0
    elif dy < 0:
        out[..., max(dy, -out.shape[-2]) :, :] = 0
    if dx > 0:
        out[..., :, : min(dx, out.shape[-1])] = 0
    elif dx < 0:
        out[..., :, max(dx, -out.shape[-1]) :] = 0
    return out


def feather(mask: torch.Tensor, width_cells: float) -> torch.Tensor:
    """Soften the mask edge: Gaussian blur whose 10-90% ramp is about `width_cells` wide (replicate padding,
    so an empty mask stays empty and a full mask stays full)."""
    sigma = width_cells / 2.56
    if sigma < 0.3:
        return mask
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=mask.dtype, device=mask.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    n, c, h, w = mask.shape
    x = mask.reshape(n * c, 1, h, w)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return x.reshape(n, c, h, w).clamp_(0, 1)
