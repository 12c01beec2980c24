"""The terms of SemanticStyleGAN's training objective that StyleGAN2 does not have (spec sections 7 and 8), as
plain functions of tensors; the training loop that weights and schedules them is `training.semantic`.

- Real segmentations reach the discriminator as one-hot maps scaled to {-1, 1} (official `MaskDataset`); fake ones
  are the generator's raw segmentation output.
- R1 is taken on both inputs of the dual-branch discriminator from one forward pass, so the image and the
  segmentation branch each get their own penalty (gamma 10 and 1000 officially).
- The mask-consistency term keeps the final, refined segmentation close to the coarse one.
- Path-length regularisation differentiates the image with respect to the expanded latents (one vector per local
  layer), not the 28 W+ vectors.
- Part-swap consistency (`part_swap_loss`) is ours, off unless its weight is given: the official model is left to
  learn from the architecture alone that a part's codes paint only that part.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from stylemapgan.semantic.config import SemanticConfig
from stylemapgan.semantic.latents import broadcast_w, part_mix


def real_segmentation(label_map: torch.Tensor, seg_dim: int) -> torch.Tensor:
    """int [N, H, W] class indices -> float [N, seg_dim, H, W] one-hot * 2 - 1 (what D's segmentation branch
    sees for real data). Raises ValueError for an index outside [0, seg_dim)."""
    low, high = int(label_map.min()), int(label_map.max())
    if low < 0 or high >= seg_dim:
        raise ValueError(f"label maps hold class {high if high >= seg_dim else low}; the model has {seg_dim} classes "
                         f"(0..{seg_dim - 1})")
    onehot = F.one_hot(label_map.long(), seg_dim).permute(0, 3, 1, 2)
    return onehot.float() * 2 - 1


def r1_penalties(
    logits: torch.Tensor, image: torch.Tensor, segmentation: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(R1 of the image, R1 of the segmentation): each the batch mean of the squared norm of the gradient of
    D's summed output with respect to that real input, from one backward pass (graph kept for the penalty's own
    gradient)."""
    grad_image, grad_seg = torch.autograd.grad(logits.sum(), [image, segmentation], create_graph=True)
    return grad_image.pow(2).flatten(1).sum(1).mean(), grad_seg.pow(2).flatten(1).sum(1).mean()


def mask_consistency_loss(segmentation: torch.Tensor, coarse_segmentation: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the coarse segmentation [N, K, c, c] (2 * masks - 1) and the final
    segmentation [N, K, s, s] average-pooled to c x c, both in D's [-1, 1] convention (official `mask_loss`)."""
    pooled = F.adaptive_avg_pool2d(segmentation, coarse_segmentation.shape[-2:])
    return (coarse_segmentation - pooled).square().mean()


def path_lengths(image: torch.Tensor, latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Per-sample path lengths [N] of StyleGAN2's regulariser: the gradient g of sum(image * noise) with respect to
    `latents` [N, L, D] (the expanded latents for SemanticStyleGAN), then sqrt(mean over L of |g_l|^2). `noise`
    is N(0, 1) / sqrt(H * W), shaped like the image. The graph is kept: the penalty is differentiated again."""
    (grad,) = torch.autograd.grad((image * noise).sum(), latents, create_graph=True)
    return grad.pow(2).sum(2).mean(1).sqrt()


def path_noise_scale(image_size: int) -> float:
    """The official scale of the path-length probe noise: 1 / sqrt(H * W)."""
    return 1.0 / math.sqrt(image_size * image_size)


def training_latents(
    config: SemanticConfig, w1: torch.Tensor, w2: torch.Tensor | None = None, choice: torch.Tensor | None = None
) -> torch.Tensor:
    """W+ [N, n_latent, D] for one training forward: every slot from w1, or (mixing) the part-wise mix of w1 and w2
    where `choice` [N, K] picks (shape, texture) from (w1, w1), (w1, w2) or (w2, w2) per sample and class."""
    if w2 is None:
        return broadcast_w(config, w1)
    return part_mix(config, w1, w2, choice)


def part_swap_loss(
    swapped: torch.Tensor, swapped_labels: torch.Tensor, source: torch.Tensor, source_labels: torch.Tensor,
    reference: torch.Tensor, reference_labels: torch.Tensor, parts: torch.Tensor,
) -> torch.Tensor:
    """Part-swap consistency (our extra, not in the paper): images [N, 3, S, S] and label maps [N, S, S] of the
    source, the reference and the source with part parts[i]'s codes from the reference. Inside the part (where
    both the swap and the reference show it) the swap should look like the reference; where none of the three
    shows it, like the source. Each term is the mean over samples (those whose region is not empty) of the squared
    error over the sample's region, so a small part (eyes) weighs as much as a large one; the border between the
    regions is left free (the swapped shape moves it)."""
    part = parts.view(-1, 1, 1)
    inside = ((swapped_labels == part) & (reference_labels == part)).unsqueeze(1)
    outside = ((swapped_labels != part) & (source_labels != part) & (reference_labels != part)).unsqueeze(1)
    total = swapped.new_zeros(())
    for region, target in ((inside, reference), (outside, source)):
        counts = region.flatten(1).sum(1) * swapped.shape[1]  # [N]
        shown = counts > 0
        if bool(shown.any()):
            per_sample = ((swapped - target).square() * region).flatten(1).sum(1)[shown] / counts[shown]
            total = total + per_sample.mean()
    return total
