"""The SemanticStyleGAN latent layout (spec section 2): 28 W+ vectors and their expansion to 130.

W+ (`n_latent` = base_layers + 2K vectors, 28 for K = 13): indices 0 .. base_layers-1 are the base codes shared
by every non-background class; then, for class k, index base_layers + 2k is its shape code and base_layers + 2k + 1
its texture code (class 0 is the background). Inversion, saved `.npy` latents and part swaps use this layout.

Expanded (`n_latent_expanded` = K * local_layers, 130): one vector per modulated layer of each local generator,
class-major. For class k >= 1, layer l takes base code l if l < base_layers, the shape code while l < depth_layers,
the texture code after; the background takes no base code (its shape code up to depth_layers).
"""

from __future__ import annotations

import torch

from stylemapgan.semantic.config import SemanticConfig


class LatentLayoutError(ValueError):
    """A latent tensor does not have one of the accepted layouts; the message gives the shapes."""


def shape_index(config: SemanticConfig, part: int) -> int:
    """W+ index of the shape code of class `part` (2 + 2k in the official model)."""
    _check_part(config, part)
    return config.base_layers + 2 * part


def texture_index(config: SemanticConfig, part: int) -> int:
    """W+ index of the texture code of class `part` (3 + 2k in the official model)."""
    _check_part(config, part)
    return config.base_layers + 2 * part + 1


def _check_part(config: SemanticConfig, part: int) -> None:
    if not 0 <= part < config.seg_dim:
        raise LatentLayoutError(f"part: must be in [0, {config.seg_dim - 1}], got {part}")


def expand_index(config: SemanticConfig) -> torch.Tensor:
    """[K * local_layers] long tensor: the W+ index feeding each expanded slot (class-major, layer-minor)."""
    index = []
    for part in range(config.seg_dim):
        for layer in range(config.local_layers):
            if part > 0 and layer < config.base_layers:
                index.append(layer)
            elif layer < config.depth_layers:
                index.append(shape_index(config, part))
            else:
                index.append(texture_index(config, part))
    return torch.tensor(index, dtype=torch.long)


def check_latents(config: SemanticConfig, latents: torch.Tensor) -> None:
    """Accept [N, n_latent, style_dim] or [N, n_latent_expanded, style_dim]; raise LatentLayoutError otherwise."""
    n_w, n_e, dim = config.n_latent, config.n_latent_expanded, config.style_dim
    if latents.ndim != 3 or latents.shape[1] not in (n_w, n_e) or latents.shape[2] != dim:
        raise LatentLayoutError(
            f"latents: expected [N, {n_w}, {dim}] (W+) or [N, {n_e}, {dim}] (expanded), got {list(latents.shape)}"
        )


def expand_latents(config: SemanticConfig, latents: torch.Tensor) -> torch.Tensor:
    """W+ [N, n_latent, D] -> expanded [N, n_latent_expanded, D] (an expanded input passes through unchanged).

    A gather, so gradients flow back to the W+ vectors (path-length regularisation differentiates the expanded
    latents, inversion the W+ ones)."""
    check_latents(config, latents)
    if latents.shape[1] == config.n_latent_expanded:
        return latents
    return latents.index_select(1, expand_index(config).to(latents.device))


def collapse_latents(config: SemanticConfig, latents: torch.Tensor) -> torch.Tensor:
    """Expanded [N, n_latent_expanded, D] -> W+ [N, n_latent, D]: each W+ vector the mean of the slots it feeds
    (the least-squares inverse of `expand_latents`, exact on an expansion); a W+ input passes through. For what
    is defined on W+ rows (supervised attribute directions); a W+ vector that feeds no slot comes back zero."""
    check_latents(config, latents)
    if latents.shape[1] == config.n_latent:
        return latents
    index = expand_index(config).to(latents.device)
    sums = latents.new_zeros(latents.shape[0], config.n_latent, latents.shape[2]).index_add_(1, index, latents)
    counts = torch.bincount(index, minlength=config.n_latent).clamp(min=1).to(latents.dtype)
    return sums / counts.view(1, -1, 1)


def broadcast_w(config: SemanticConfig, w: torch.Tensor) -> torch.Tensor:
    """One w per sample [N, D] -> W+ [N, n_latent, D] with every vector equal (the plain sampling case)."""
    if w.ndim != 2 or w.shape[1] != config.style_dim:
        raise LatentLayoutError(f"w: expected [N, {config.style_dim}], got {list(w.shape)}")
    return w.unsqueeze(1).expand(-1, config.n_latent, -1)


def part_mix(
    config: SemanticConfig, w1: torch.Tensor, w2: torch.Tensor, choice: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Part-wise style mixing of two w [N, D] into W+ [N, n_latent, D] (the official training mixing).

    The base codes come from w1. For each sample and class, `choice` (drawn uniformly from {0, 1, 2} when None)
    picks (shape, texture) = (w1, w1), (w1, w2) or (w2, w2).
    """
    n, k = w1.shape[0], config.seg_dim
    if w1.shape != w2.shape or w1.ndim != 2 or w1.shape[1] != config.style_dim:
        raise LatentLayoutError(f"w1, w2: expected two [N, {config.style_dim}], got {list(w1.shape)}, {list(w2.shape)}")
    if choice is None:
        choice = torch.randint(0, 3, (n, k), generator=generator).to(w1.device)
    elif choice.shape != (n, k):
        raise LatentLayoutError(f"choice: expected [{n}, {k}], got {list(choice.shape)}")
    shape_from_w2 = (choice == 2).unsqueeze(-1)  # [N, K, 1]
    texture_from_w2 = (choice >= 1).unsqueeze(-1)
    a, b = w1.unsqueeze(1), w2.unsqueeze(1)  # [N, 1, D]
    shapes = torch.where(shape_from_w2, b, a)  # [N, K, D]
    textures = torch.where(texture_from_w2, b, a)
    pairs = torch.stack([shapes, textures], dim=2).reshape(n, 2 * k, -1)
    base = a.expand(-1, config.base_layers, -1)
    return torch.cat([base, pairs], dim=1)


def swap_part_codes(config: SemanticConfig, source: torch.Tensor, reference: torch.Tensor,
                    parts: torch.Tensor) -> torch.Tensor:
    """W+ [N, n_latent, D]: the source with, per sample i, class parts[i]'s shape and texture codes taken from
    reference[i] (the part swap of the part-swap consistency loss; the base codes stay the source's)."""
    n = source.shape[0]
    if source.shape != reference.shape or source.ndim != 3 or source.shape[1] != config.n_latent:
        raise LatentLayoutError(f"source, reference: expected two [N, {config.n_latent}, D], got "
                                f"{list(source.shape)}, {list(reference.shape)}")
    if parts.shape != (n,) or bool(((parts < 0) | (parts >= config.seg_dim)).any()):
        raise LatentLayoutError(f"parts: expected [{n}] classes in [0, {config.seg_dim - 1}], got {parts.tolist()}")
    part_rows = torch.tensor([[shape_index(config, k), texture_index(config, k)] for k in range(config.seg_dim)],
                             device=source.device)[parts.to(source.device)]  # [N, 2]: each sample's part's rows
    take = torch.zeros(n, config.n_latent, dtype=torch.bool, device=source.device).scatter_(1, part_rows, True)
    return torch.where(take.unsqueeze(-1), reference, source)


def truncate(latents: torch.Tensor, truncation: float, truncation_latent: torch.Tensor | None) -> torch.Tensor:
    """mean + psi * (w - mean), applied before expansion as official; psi >= 1 leaves w as is."""
    if truncation >= 1:
        return latents
    if truncation_latent is None:
        raise ValueError(f"truncation {truncation} < 1 needs a truncation_latent (see mean_latent)")
    return truncation_latent + truncation * (latents - truncation_latent)
