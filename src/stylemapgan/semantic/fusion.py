"""Fusion of the local generators' outputs by soft masks (spec section 5, official `SemanticGenerator.composite`).

masks = softmax over classes of the pseudo-depths (the background's depth is a constant 0). A composition mask
[N, K] multiplies them and renormalises (to drop or add classes). Transparent classes (eyeglasses, earrings in
the official CelebA run) are composited on top: the opaque classes are renormalised among themselves, so they
sum to S_o / (S_o + 1e-8) (S_o = their total mask, within 1e-4 of 1 in practice), and each transparent class is
added with its own mask value.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

NORM_EPS = 1e-8


def composite_masks(depths: torch.Tensor, composition_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Pseudo-depths [N, K, ...] -> masks [N, K, ...]: softmax over K, then the optional [N, K] composition mask
    (multiplied in and renormalised with eps 1e-8, as official; the result is what the render net and the mask
    loss see)."""
    masks = torch.softmax(depths, dim=1)
    if composition_mask is None:
        return masks
    n, k = depths.shape[:2]
    if composition_mask.shape != (n, k):
        raise ValueError(f"composition_mask: expected [{n}, {k}], got {list(composition_mask.shape)}")
    masks = masks * composition_mask.to(masks.dtype).view(n, k, *([1] * (depths.ndim - 2)))
    return masks / (masks.sum(dim=1, keepdim=True) + NORM_EPS)


def fusion_weights(masks: torch.Tensor, transparent_dims: Sequence[int]) -> torch.Tensor:
    """Masks [N, K, ...] -> the weights each class's features are summed with.

    Without transparent classes the weights are the masks. With them: opaque masks renormalised over the opaque
    classes (eps 1e-8), transparent masks kept as they are.
    """
    if not transparent_dims:
        return masks
    transparent = torch.zeros(masks.shape[1], dtype=torch.bool, device=masks.device)
    transparent[list(transparent_dims)] = True
    transparent = transparent.view(1, -1, *([1] * (masks.ndim - 2)))
    opaque = masks.masked_fill(transparent, 0.0)
    opaque = opaque / (opaque.sum(dim=1, keepdim=True) + NORM_EPS)
    return torch.where(transparent, masks, opaque)
