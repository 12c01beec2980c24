"""Tensor <-> image conversions and grids, without torchvision. Images are float tensors in [-1, 1]."""

from __future__ import annotations

import io
import math
import os

import numpy as np
import torch
from PIL import Image

from stylemapgan.checkpoint.io import atomic_write_bytes


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
