"""Reconstruction metrics (paper protocol: first 500 test images, MSE on images in [-1, 1], LPIPS).

Each image is projected (encoder by default; optimisation or hybrid by option), decoded, clamped to [-1, 1]
and rounded to 8 bits (the official scripts score saved PNGs), then compared with the real image: per-image
MSE over all pixels and channels, and per-image LPIPS (images under 32 px are upsampled for LPIPS only).
The reported numbers are the means over images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from stylemapgan.editing.editor import Editor
from stylemapgan.editing.projection import ProjectionOptions, perceptual_distance, projection_method
from stylemapgan.metrics.inception import quantize


@dataclass(frozen=True)
class ReconstructionScores:
    mse: torch.Tensor  # [N]
    lpips: torch.Tensor | None  # [N]


def mse_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each image pair over pixels and channels -> [N]."""
    return (a.float() - b.float()).square().flatten(1).mean(1)


@torch.no_grad()
def score_reconstructions(
    reconstructions: torch.Tensor, targets: torch.Tensor, perceptual: nn.Module | None
) -> ReconstructionScores:
    """Per-image MSE and LPIPS of 8-bit-rounded reconstructions against the targets (both in [-1, 1])."""
    recon = quantize(reconstructions.clamp(-1, 1))
    targets = targets.to(recon.device, torch.float32)
    lpips = perceptual_distance(perceptual, recon, targets).float().cpu() if perceptual is not None else None
    return ReconstructionScores(mse_per_image(recon, targets).cpu(), lpips)


def reconstruct_batch(
    editor: Editor,
    images: torch.Tensor,
    method: str = "encoder",
    options: ProjectionOptions | None = None,
    perceptual: nn.Module | None = None,
) -> ReconstructionScores:
    """Project one batch with `method` and score it. The LPIPS module is also the projection's loss term when
    the method optimises (as in `stylemapgan project`)."""
    plan = projection_method(method)
    images = images.to(editor.device, torch.float32)
    result, _ = editor.project(images, method, options, perceptual if plan.optimises else None)
    return score_reconstructions(result.images, images, perceptual)
