"""An independent, deliberately literal reference of the official StyleMapGAN local edits.

Written from the facts of the official code (naver-ai/StyleMapGAN, commit 3a70e07; facts learned, no code
copied) and the spec (shared/spec/stylemapgan.md, section 3). Like `official_reference.py`, on which it builds,
it imports nothing from `stylemapgan` and works on state dicts in the official key layout, so agreement with
our `Editor` is a real cross-check:

- `generate_w_ref` / `generate_w_plus_ref`: the official `generate.py` local editing. Its mask comes in the
  script's own encoding (-2 / -1 outside, 0 / 1 / 2 inside, e.g. the sum of two +-1 part masks); a cell is
  pasted where the max-pooled mask is > -1, i.e. where any pixel of it is inside. "w" pools to the stylemap
  and decodes the blend; "w_plus" pools to every style tensor and blends each. One reference, no shift, the
  reference pasted outright.
- `demo_ref`: the official interactive demo (`demo.py`, the decoder's "demo" mix space). Per style tensor:
  average-pool the reference masks (ratio = size // H), shift by `int(shift / ratio)` cells (Python `int`:
  toward zero), roll and zero what wrapped, paste where the coverage is strictly above 0.5, with frame
  weights `i / (steps - 1)`; references in order, each on top of the previous, selected by boolean indexing.
- `cellwise_ref`: our extensions, which the official code does not have (a shift in "w" mode, "max" pooling
  with a shift or partial strengths, the soft "avg" pooling), written cell by cell in plain Python loops on
  the demo's rules (the same `int()` shift, the same order of references), so they too meet an independent
  computation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from official_reference import State, decoder_ref, resizer_ref, synthesis_ref


def generate_w_ref(
    state: State, size: int, source: Tensor, reference: Tensor, mask: Tensor, normalize_mode: str = "LayerNorm"
) -> Tensor:
    """generate.py, "w": stylemaps [1, C, s, s], mask [size, size] in the script's encoding -> image."""
    ratio = size // source.shape[-1]
    pooled = F.max_pool2d(mask[None], kernel_size=ratio, stride=ratio)  # the script pools a [1, H, W] mask
    mixed = torch.where(pooled > -1, reference, source)
    return decoder_ref(state, mixed, normalize_mode)


def generate_w_plus_ref(
    state: State, size: int, source: Tensor, reference: Tensor, mask: Tensor, normalize_mode: str = "LayerNorm"
) -> Tensor:
    """generate.py, "w_plus": every style tensor blended with the mask max-pooled to its resolution."""
    src_styles, ref_styles = resizer_ref(state, source), resizer_ref(state, reference)
    mixed = []
    for src, ref in zip(src_styles, ref_styles, strict=True):
        _, channels, height, _ = ref.shape
        ratio = size // height
        pooled = F.max_pool2d(mask[None], kernel_size=ratio, stride=ratio)
        pooled = pooled.unsqueeze(1).repeat(1, channels, 1, 1)
        mixed.append(torch.where(pooled > -1, ref, src))
    return synthesis_ref(state, mixed, normalize_mode)


def demo_int(value: float) -> int:
    """Python's int() on a float: truncation toward zero (what the demo applies to shift / ratio)."""
    return int(value)


def demo_layer_masks(
    image_masks: Tensor, shift_values: tuple[Sequence[int], Sequence[int]], ratio: int
) -> tuple[Tensor, Tensor]:
    """The demo's per-layer masks [R, 1, H, W]: (where each reference is read, where it is written), both
    still the average-pooled coverage (thresholded at > 0.5 by the caller)."""
    masks = F.avg_pool2d(image_masks, kernel_size=ratio, stride=ratio) if ratio > 1 else image_masks.clone()
    p_xs, p_ys = shift_values
    moved = masks.clone()
    for i in range(image_masks.shape[0]):
        p_y, p_x = demo_int(p_ys[i] / ratio), demo_int(p_xs[i] / ratio)
        moved[i, 0] = torch.roll(moved[i, 0], shifts=(p_y, p_x), dims=(0, 1))
        if p_y >= 0:
            moved[i, 0, :p_y] = 0
        else:
            moved[i, 0, p_y:] = 0
        if p_x >= 0:
            moved[i, 0, :, :p_x] = 0
        else:
            moved[i, 0, :, p_x:] = 0
        masks[i, 0] = torch.roll(moved[i, 0], shifts=(-p_y, -p_x), dims=(0, 1))
    return masks, moved


def demo_ref(
    state: State,
    size: int,
    source: Tensor,
    references: Tensor,
    image_masks: Tensor,
    shift_values: tuple[Sequence[int], Sequence[int]],
    steps: int,
    normalize_mode: str = "LayerNorm",
) -> Tensor:
    """demo.py: source stylemap [1, C, s, s], references [R, C, s, s], masks [R, 1, size, size] (1 = paste,
    in each reference's frame), shift_values = ([dx per reference], [dy per reference]) in pixels.
    Returns `steps` frames, weight i / (steps - 1)."""
    styles = []
    for original, refs in zip(resizer_ref(state, source), resizer_ref(state, references), strict=True):
        _, channels, height, _ = original.shape
        masks, moved = demo_layer_masks(image_masks, shift_values, size // height)
        masks, moved = masks.repeat(1, channels, 1, 1), moved.repeat(1, channels, 1, 1)
        frames = original.repeat(steps, 1, 1, 1)
        for step in range(steps):
            weight = step / (steps - 1)
            for i in range(refs.shape[0]):
                read, write = masks[i] > 0.5, moved[i] > 0.5
                frame = frames[step]
                frame[write] += weight * (refs[i][read] - frame[write])
        styles.append(frames)
    return synthesis_ref(state, styles, normalize_mode)


# ---- our extensions, cell by cell ------------------------------------------------------------------------

CellRule = Callable[[Tensor], float]  # the pixels of one cell -> its paste weight in [0, 1]


def any_pixel(cell: Tensor) -> float:
    """generate.py's rule: any pixel of the cell inside."""
    return 1.0 if bool((cell > 0).any()) else 0.0


def more_than_half(cell: Tensor) -> float:
    """demo.py's rule: coverage strictly above one half."""
    return 1.0 if float(cell.double().mean()) > 0.5 else 0.0


def coverage(cell: Tensor) -> float:
    """Ours ("avg"): the coverage itself."""
    return float(cell.double().mean())


def cellwise_weights(mask: Tensor, resolution: int, rule: CellRule, shift: tuple[int, int]) -> Tensor:
    """Paste weight of every destination cell [r, r] for a [size, size] mask in the reference's frame: the
    rule on the reference cell it comes from (shifted by int(shift / ratio) cells), 0 where none does."""
    size = mask.shape[-1]
    ratio = size // resolution
    dy, dx = demo_int(shift[1] / ratio), demo_int(shift[0] / ratio)
    out = torch.zeros(resolution, resolution, dtype=torch.float64)
    for y in range(resolution):
        for x in range(resolution):
            sy, sx = y - dy, x - dx
            if 0 <= sy < resolution and 0 <= sx < resolution:
                out[y, x] = rule(mask[sy * ratio : (sy + 1) * ratio, sx * ratio : (sx + 1) * ratio])
    return out


def cellwise_blend(
    source: Sequence[Tensor],
    references: Sequence[Sequence[Tensor]],
    masks: Sequence[Tensor],
    shifts: Sequence[tuple[int, int]],
    strengths: Sequence[float],
    rule: CellRule,
) -> list[Tensor]:
    """Blend layers [1, C, r, r] cell by cell: for each frame's strength a, each reference in order, each
    destination cell: out += a * w * (reference cell it comes from - out). Returns layers [F, C, r, r]."""
    out = [layer.repeat(len(strengths), 1, 1, 1) for layer in source]
    for refs, mask, shift in zip(references, masks, shifts, strict=True):
        for k, layer in enumerate(out):
            r = layer.shape[-1]
            ratio = mask.shape[-1] // r
            dy, dx = demo_int(shift[1] / ratio), demo_int(shift[0] / ratio)
            weights = cellwise_weights(mask, r, rule, shift)
            for f, a in enumerate(strengths):
                for y in range(r):
                    for x in range(r):
                        w = a * float(weights[y, x])
                        if w:
                            cell = refs[k][0, :, y - dy, x - dx]
                            layer[f, :, y, x] = layer[f, :, y, x] + w * (cell - layer[f, :, y, x])
    return out


def cellwise_ref(
    state: State,
    mode: str,
    source: Tensor,
    references: Sequence[Tensor],
    masks: Sequence[Tensor],
    shifts: Sequence[tuple[int, int]],
    strengths: Sequence[float],
    rule: CellRule,
    normalize_mode: str = "LayerNorm",
) -> Tensor:
    """mode "w": blend the stylemaps, then decode; "w_plus": blend every style tensor, then synthesise."""
    if mode == "w":
        (blended,) = cellwise_blend([source], [[ref] for ref in references], masks, shifts, strengths, rule)
        return decoder_ref(state, blended, normalize_mode)
    layers = cellwise_blend(resizer_ref(state, source), [resizer_ref(state, ref) for ref in references], masks,
                            shifts, strengths, rule)
    return synthesis_ref(state, layers, normalize_mode)
