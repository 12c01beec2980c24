"""Segmentations as colour images, for sample grids and `generate`: one fixed colour per class (class 0, the
background, black), so the same part has the same colour in every picture of a run."""

from __future__ import annotations

import colorsys

import torch

# Hand-picked, mutually distinct colours for the first classes (13 cover the official and cartoon-face sets);
# further classes get evenly spaced hues.
_BASE_COLORS = (
    (0, 0, 0), (230, 190, 150), (140, 70, 20), (30, 110, 230), (110, 40, 140), (240, 140, 40), (220, 30, 60),
    (250, 220, 60), (40, 200, 220), (90, 160, 60), (120, 120, 120), (60, 60, 170), (240, 100, 200),
)


def class_colors(count: int) -> torch.Tensor:
    """uint8 [count, 3]: the colour of each class index."""
    colors = list(_BASE_COLORS[:count])
    extra = count - len(colors)
    for i in range(extra):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.65, 0.9)
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return torch.tensor(colors, dtype=torch.uint8).view(count, 3)


def colorize_labels(labels: torch.Tensor, count: int) -> torch.Tensor:
    """int [N, H, W] class indices -> float [N, 3, H, W] in [-1, 1] (the image convention of grids)."""
    palette = class_colors(count).to(labels.device)
    return palette[labels.long()].permute(0, 3, 1, 2).float() / 127.5 - 1


def colorize_segmentation(segmentation: torch.Tensor) -> torch.Tensor:
    """Raw segmentation [N, K, H, W] (the generator's, or one-hot) -> its argmax as colours [N, 3, H, W] in [-1, 1]."""
    return colorize_labels(segmentation.argmax(1), segmentation.shape[1])
