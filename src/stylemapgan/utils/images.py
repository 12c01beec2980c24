"""Image helpers shared by every package: tensor <-> uint8 conversions and grids (without torchvision), PNG
writing, the one converter from any Pillow mode to RGB, and the one colour parser. Tensors are float images in
[-1, 1]."""

from __future__ import annotations

import io
import math
import os

import numpy as np
import torch
from PIL import Image

from stylemapgan.utils.files import atomic_write_bytes

Color = tuple[int, int, int]
HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
NAMED_COLORS: dict[str, Color] = {
    "white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128), "grey": (128, 128, 128),
}


class ImageModeError(ValueError):
    """Pillow cannot convert this image's mode to RGB."""


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3] (rounded, clamped)."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def from_uint8(array: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] or [N, H, W, 3] -> float [N, 3, H, W] in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(array))
    if t.ndim == 3:
        t = t[None]
    return t.permute(0, 3, 1, 2).float() / 127.5 - 1


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> np.ndarray:
    """Tile [N, 3, H, W] images into one uint8 [H', W', 3] array, row-major, white padding."""
    arr = to_uint8(images)
    n, h, w, _ = arr.shape
    ncol = min(nrow, n)
    nrows = math.ceil(n / ncol)
    grid = np.full((nrows * (h + padding) + padding, ncol * (w + padding) + padding, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + c * (w + padding)
        grid[y : y + h, x : x + w] = arr[i]
    return grid


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def save_png(path: str | os.PathLike[str], array_or_tensor: np.ndarray | torch.Tensor) -> None:
    """Atomically write a uint8 HWC array, or a single [3, H, W] / [1, 3, H, W] tensor in [-1, 1], as PNG."""
    if isinstance(array_or_tensor, torch.Tensor):
        t = array_or_tensor if array_or_tensor.ndim == 4 else array_or_tensor[None]
        array_or_tensor = to_uint8(t)[0]
    atomic_write_bytes(path, png_bytes(array_or_tensor))


def high_depth_to_l(image: Image.Image) -> Image.Image:
    """16-bit / 32-bit / float greyscale -> 8-bit L, scaled by the range the values are stored in (Pillow's own
    conversion would clip them): I;16 by 65535; F by 1 when its values are in [0, 1], else by 255; I (32-bit
    integers, range not fixed by the mode) by 255 when its values fit 8 bits, by 65535 when they fit 16 bits
    (16-bit files some readers open as I), else by its peak. Rounded half up, clipped to 0..255."""
    arr = np.asarray(image).astype(np.float64)
    peak = float(arr.max()) if arr.size else 0.0
    if image.mode.startswith("I;16"):
        top = 65535.0
    elif image.mode == "F":
        top = 1.0 if peak <= 1.0 else 255.0
    else:
        top = 255.0 if peak <= 255.0 else 65535.0 if peak <= 65535.0 else peak
    return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image, background: Color = (0, 0, 0), notes: list[str] | None = None) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB: high bit depths scaled (`high_depth_to_l`), transparency (alpha or a
    palette's transparent index) composited over `background`, everything else by Pillow's conversion. An RGB
    image is returned as is. When `notes` is given, one word per conversion is appended to it (e.g. "palette",
    "alpha-composited"), as dataset cards record. Raises ImageModeError if Pillow cannot convert the mode."""
    notes = notes if notes is not None else []
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in HIGH_DEPTH_MODES:
        notes.append("high-bit-depth")
        return high_depth_to_l(image).convert("RGB")
    if mode == "P":
        notes.append("palette")
        if "transparency" not in image.info:
            return image.convert("RGB")
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ALPHA_MODES:
        notes.append("alpha-composited")
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    notes.append({"L": "grayscale", "1": "grayscale", "CMYK": "cmyk"}.get(mode, f"mode-{mode}"))
    try:
        return image.convert("RGB")
    except Exception as exc:  # Pillow raises ValueError or OSError for modes it cannot convert
        raise ImageModeError(f"cannot convert mode {mode} to RGB ({exc})") from None


def parse_color(text: str) -> Color:
    """A colour as '#rrggbb' or 'rrggbb' (hex, any case; the '#' is optional so a shell needs no quoting),
    'r,g,b' (decimal, each 0..255) or a name: white, black, gray/grey. ValueError names the bad text."""
    t = text.strip().lower()
    if t in NAMED_COLORS:
        return NAMED_COLORS[t]
    if "," in t:
        parts = [p.strip() for p in t.split(",")]
        if len(parts) == 3 and all(p.isascii() and p.isdigit() and int(p) <= 255 for p in parts):
            return (int(parts[0]), int(parts[1]), int(parts[2]))
    else:
        digits = t.removeprefix("#")
        if len(digits) == 6 and all(c in "0123456789abcdef" for c in digits):
            return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))
    raise ValueError(f"not a colour: {text!r} (use #rrggbb, rrggbb, r,g,b, white, black or gray)")
