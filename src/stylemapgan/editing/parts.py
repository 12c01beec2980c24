"""Part edits on SemanticStyleGAN latents (spec sections 2 and 11), as plain functions on tensors.

In W+ (`n_latent` vectors) part k owns two rows: its shape code (`shape_index`) and its texture code
(`texture_index`); the base codes (the first `base_layers` rows) are shared by every part and carry pose and
layout, so no part edit touches them. In the expanded layout (one vector per local layer, `n_latent_expanded`) a
part owns the slots of its own local generator that read its shape or texture code (`latents.expand_index`).
Every function here accepts either layout and edits only the chosen part's rows; everything else is copied from
the source bit for bit.

Which rows: "shape", "texture" or "both" (`PART_SUBSPACES`), resolved here at the API boundary.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stylemapgan.editing.errors import EditingError
from stylemapgan.semantic.config import SemanticConfig
from stylemapgan.semantic.latents import LatentLayoutError, check_latents, expand_index, shape_index, texture_index

PART_SUBSPACES = ("both", "shape", "texture")
DEFAULT_MASK_THRESHOLD = 0.5


def check_subspace(what: str, field: str = "what") -> str:
    if what not in PART_SUBSPACES:
        raise EditingError(f"{field}: must be one of {', '.join(PART_SUBSPACES)}, got {what!r}")
    return what


def _w_plus_rows(config: SemanticConfig, part: int, what: str) -> list[int]:
    rows = []
    if what in ("both", "shape"):
        rows.append(shape_index(config, part))
    if what in ("both", "texture"):
        rows.append(texture_index(config, part))
    return rows


def part_rows(config: SemanticConfig, part: int, what: str = "both", slots: int | None = None) -> list[int]:
    """Rows of a latent of `slots` vectors (default W+) that belong to `part`'s shape and/or texture code."""
    check_subspace(what)
    if not 0 <= part < config.seg_dim:
        raise EditingError(f"part: must be in [0, {config.seg_dim - 1}], got {part}")
    slots = config.n_latent if slots is None else slots
    wanted = _w_plus_rows(config, part, what)
    if slots == config.n_latent:
        return wanted
    if slots != config.n_latent_expanded:
        raise EditingError(f"latents: {slots} vectors is neither W+ ({config.n_latent}) nor expanded "
                           f"({config.n_latent_expanded})")
    index = expand_index(config).tolist()
    first = part * config.local_layers
    return [j for j in range(first, first + config.local_layers) if index[j] in wanted]


def rows_mask(config: SemanticConfig, parts: Sequence[int], what: str, slots: int) -> torch.Tensor:
    """Bool [slots]: the rows of `parts` (shape / texture / both) in a latent of `slots` vectors."""
    mask = torch.zeros(slots, dtype=torch.bool)
    for part in parts:
        mask[part_rows(config, part, what, slots)] = True
    return mask


def same_layout(config: SemanticConfig, *latents: torch.Tensor) -> list[torch.Tensor]:
    """Latents in one layout: all as they are when they agree, else all expanded (a gather, exact)."""
    for t in latents:
        _check(config, t)
    if len({t.shape[1] for t in latents}) == 1:
        return list(latents)
    return [t.index_select(1, expand_index(config).to(t.device)) if t.shape[1] == config.n_latent else t
            for t in latents]


def _check(config: SemanticConfig, latents: torch.Tensor) -> None:
    try:
        check_latents(config, latents)
    except LatentLayoutError as exc:
        raise EditingError(str(exc)) from None


def swap_parts(
    config: SemanticConfig, source: torch.Tensor, reference: torch.Tensor, parts: Sequence[int], what: str = "both",
    alpha: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """The source with `parts`' shape and/or texture rows taken from the reference -> [N, slots, D].

    source [N, slots, D]; reference [N or 1, slots, D] (either layout: mixed layouts are expanded). alpha blends
    the swapped rows (1: the reference's exactly; a [F] tensor gives F frames from a source of batch 1)."""
    source, reference = same_layout(config, source, reference)
    rows = rows_mask(config, parts, check_subspace(what), source.shape[1]).to(source.device).view(1, -1, 1)
    alpha_t = torch.as_tensor(alpha, dtype=source.dtype, device=source.device).reshape(-1, 1, 1)
    if alpha_t.numel() == 1 and float(alpha_t) == 1.0:
        return torch.where(rows, reference.to(source), source)
    blended = torch.lerp(source, reference.to(source), alpha_t)
    return torch.where(rows, blended, source.expand_as(blended))


def interpolate_parts(
    config: SemanticConfig, a: torch.Tensor, b: torch.Tensor, lambdas: Sequence[float],
    parts: Sequence[int] | None = None, what: str = "both",
) -> torch.Tensor:
    """Frames [F, slots, D] from a [1, slots, D] to b: every row (parts None) or only `parts`' rows move linearly
    (torch.lerp: the first frame equals a and the last b exactly on the moving rows); the rest stay a's."""
    a, b = same_layout(config, a, b)
    weights = torch.tensor([float(x) for x in lambdas], dtype=a.dtype, device=a.device).view(-1, 1, 1)
    frames = torch.lerp(a, b.to(a), weights)
    if parts is None:
        return frames
    rows = rows_mask(config, parts, check_subspace(what), a.shape[1]).to(a.device).view(1, -1, 1)
    return torch.where(rows, frames, a.expand_as(frames))


def composition_mask(config: SemanticConfig, remove: Sequence[int], batch: int = 1) -> torch.Tensor:
    """[batch, K] ones with zeros at the removed parts: the generator multiplies the part masks by it and
    renormalises, so a removed part's region goes to the parts behind it (spec section 5)."""
    mask = torch.ones(batch, config.seg_dim)
    for part in remove:
        if not 0 <= part < config.seg_dim:
            raise EditingError(f"remove: part must be in [0, {config.seg_dim - 1}], got {part}")
        mask[:, part] = 0.0
    if not bool(mask.any(dim=1).all()):
        raise EditingError("remove: cannot remove every part (nothing would be left to render)")
    return mask


def part_coverage(labels: torch.Tensor, mask: torch.Tensor, parts: int) -> torch.Tensor:
    """[parts] fraction of each part's pixels (labels [H, W], argmax of a segmentation) inside the mask (values
    in [0, 1], binarised at 0.5); 0 for a part with no pixel."""
    if labels.ndim != 2:
        raise EditingError(f"labels: expected [H, W], got {list(labels.shape)}")
    m = mask.reshape(mask.shape[-2:]) if mask.ndim > 2 else mask
    if tuple(m.shape) != tuple(labels.shape):
        raise EditingError(f"mask: expected {list(labels.shape)} like the segmentation, got {list(mask.shape)}")
    flat = labels.reshape(-1).long().cpu()
    inside = (m.reshape(-1).cpu() > 0.5).to(torch.float64)
    area = torch.bincount(flat, minlength=parts).to(torch.float64)
    covered = torch.bincount(flat, weights=inside, minlength=parts)
    return torch.where(area > 0, covered / area.clamp_min(1), torch.zeros_like(area))[:parts]


def parts_under_mask(
    segmentation: torch.Tensor, mask: torch.Tensor, threshold: float = DEFAULT_MASK_THRESHOLD
) -> list[int]:
    """The parts a painted mask covers, by the model's own segmentation: those whose pixels (argmax of the
    segmentation logits [K, H, W] or [1, K, H, W]) lie inside the mask for at least `threshold` of their area
    (0 < threshold <= 1). Ordered by part index."""
    if not 0 < threshold <= 1:
        raise EditingError(f"threshold: must be in (0, 1], got {threshold}")
    seg = segmentation[0] if segmentation.ndim == 4 else segmentation
    if seg.ndim != 3:
        raise EditingError(f"segmentation: expected [K, H, W], got {list(segmentation.shape)}")
    coverage = part_coverage(seg.argmax(0), mask, seg.shape[0])
    return [k for k in range(seg.shape[0]) if float(coverage[k]) >= threshold and float(coverage[k]) > 0]
