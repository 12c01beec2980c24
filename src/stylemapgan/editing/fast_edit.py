"""Fast w_plus local edits from cached modulations (issue 9).

A w_plus edit blends style tensors layer by layer, `t = t * (1 - w) + s * w` per paste, then runs the synthesis,
whose most expensive part (about two thirds of its FLOPs at 256 px) is the 3x3 "gamma | beta" convolution of
every style tensor. That convolution is affine in its input, so wherever every blend weight map w is constant
over the 3x3 window of a pixel, the modulation of the blended style tensor equals the same blend of the cached
modulations of source and references (the bias passes through because the blend coefficients sum to one):

    conv(t)(p) = sum_k c_k(p) * conv(s_k)(p)      whenever all c_k are constant on the window of p.

So an edit costs one blend of cached modulations (`torch.lerp`, memory bound) plus an exact recomputation of the
modulation only on the "band" of pixels where some weight changes inside the window (the mask's edge), plus the
synthesis convolutions. The band is recomputed by gathering the 3x3 neighbourhoods of its pixels from the
blended style tensor (an im2col restricted to the band) and one matmul with the conv weight; when the band is a
large part of a layer, the layer falls back to blending its style tensors and running the full convolution.

Shifted references (the demo's "move the pasted region"): the modulation of a translated-and-zero-filled style
tensor equals the translated modulation except within one pixel of the image border and of the zero-filled
part; the weight is zero on the zero-filled part, and the image-border ring is added to the band, so the
translated cached modulation is blended there too (by slicing, without copies).

`blend_modulations_reference` is the plain path (blend style tensors, convolve), for tests.

w mode has no such path: it blends stylemaps and the resizer's receptive field covers the whole 8 x 8 stylemap
after its first layers (measured: one changed cell changes every pixel of every style tensor from 16 x 16 on),
so nothing downstream of the resizer can be reused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylemapgan.editing.masks import shift_and_zero
from stylemapgan.networks.generator import Generator

# A layer whose band covers more than this fraction of its pixels is recomputed with the full convolution:
# measured on 2 CPU cores, a band pixel costs ~3x a pixel of the full conv (gather + a thinner matmul).
MAX_BAND_FRACTION = 0.3
# Below 32 x 32 the fixed cost of the gather (a few dozen small ops) exceeds a full small conv.
MIN_BAND_LAYER_PIXELS = 32 * 32


@dataclass(frozen=True)
class ModPaste:
    """One reference of a w_plus edit, in the form the fast path needs.

    styles / mods: the reference's unshifted style tensors [1, C, r, r] and modulations [1, 2 Cin, r, r] (cached);
    weights: per-layer blend weights [F or 1, 1, r, r], already shifted (wrapped part zeroed) and multiplied
    by the strength; shifts: per-layer (dx, dy) in that layer's pixels.
    """

    styles: Sequence[torch.Tensor]
    mods: Sequence[torch.Tensor]
    weights: Sequence[torch.Tensor]
    shifts: Sequence[tuple[int, int]]


def modulations(generator: Generator, styles: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """[gamma | beta] of every modulated layer for a list of style tensors (what the fast path caches)."""
    layers = generator.synthesis.modulated_layers()
    return [m.modulation_params(t) for m, t in zip(layers, styles, strict=True)]


def _overlap(r: int, d: int) -> tuple[slice, slice]:
    """Destination and source slices of a translation by d pixels (content at q comes from q - d)."""
    return slice(max(0, d), min(r, r + d)), slice(max(0, -d), min(r, r - d))


def _lerp_shifted(
    out: torch.Tensor | None, base: torch.Tensor, mod: torch.Tensor, weight: torch.Tensor, shift: tuple[int, int]
) -> torch.Tensor:
    """out * (1 - w) + translate(mod) * w (out = base on the first paste), the weight being zero where the
    translated modulation is undefined. torch.lerp is exact at w = 0 and w = 1."""
    dx, dy = shift
    weight = weight.to(mod.dtype)
    if dx == 0 and dy == 0 and out is None:
        return torch.lerp(base, mod, weight)
    frames = max(base.shape[0], weight.shape[0])
    if out is None or out.shape[0] < frames:
        src = base if out is None else out
        out = src.expand(frames, *src.shape[1:]).clone(memory_format=torch.preserve_format)
    if dx == 0 and dy == 0:
        return out.lerp_(mod, weight)
    r_h, r_w = out.shape[-2:]
    (ys, ys_src), (xs, xs_src) = _overlap(r_h, dy), _overlap(r_w, dx)
    region = out[..., ys, xs]
    region.lerp_(mod[..., ys_src, xs_src], weight[..., ys, xs])
    return out


def _varying(weight: torch.Tensor) -> torch.Tensor:
    """[F, r, r] bool: the weight is not constant on the pixel's 3x3 window (inside the image)."""
    hi = F.max_pool2d(weight, 3, 1, 1)
    lo = -F.max_pool2d(-weight, 3, 1, 1)
    return (hi != lo)[:, 0]


def band_mask(pastes: Sequence[ModPaste], layer: int, frames: int) -> torch.Tensor:
    """[F, r, r] bool: pixels of one layer where blending modulations is not exact and they are recomputed."""
    band: torch.Tensor | None = None
    for paste in pastes:
        w = paste.weights[layer]
        b = _varying(w)
        if paste.shifts[layer] != (0, 0):  # the image-border ring, where translated content leaves the frame
            ring = torch.ones_like(b)
            ring[:, 1:-1, 1:-1] = False
            b = b | (ring & (F.max_pool2d(w, 3, 1, 1)[:, 0] > 0))
        band = b if band is None else band | b
    assert band is not None
    return band.expand(frames, *band.shape[1:])


def _neighbourhoods(
    t: torch.Tensor, f: torch.Tensor, y: torch.Tensor, x: torch.Tensor, dy: int = 0, dx: int = 0
) -> torch.Tensor:
    """[P, 9, C]: the 3x3 neighbourhoods of pixels (f, y, x) in `t` [F or 1, C, r, r] translated by (dy, dx)
    with zero fill (the value at q is t[q - d]), zero outside the image."""
    n, c, r_h, r_w = t.shape
    offsets = torch.arange(-1, 2, device=y.device)
    ny = (y[:, None, None] + offsets[None, :, None]).expand(-1, 3, 3).reshape(-1, 9) - dy
    nx = (x[:, None, None] + offsets[None, None, :]).expand(-1, 3, 3).reshape(-1, 9) - dx
    inside = (ny >= 0) & (ny < r_h) & (nx >= 0) & (nx < r_w)
    if dy or dx:  # the translated tensor is also zero where q itself is outside the image
        inside &= (ny + dy >= 0) & (ny + dy < r_h) & (nx + dx >= 0) & (nx + dx < r_w)
    flat = ny.clamp(0, r_h - 1) * r_w + nx.clamp(0, r_w - 1)
    if n > 1:
        flat = flat + (f * (r_h * r_w))[:, None]
    rows = t.permute(0, 2, 3, 1).reshape(n * r_h * r_w, c)  # a view for channels-last tensors
    return rows[flat] * inside[..., None].to(t.dtype)


def _gather_blended(
    base: torch.Tensor, pastes: Sequence[ModPaste], layer: int, f: torch.Tensor, y: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """The blended style tensor on the 3x3 neighbourhoods of pixels (f, y, x): [P, 9, C], zero outside the image.

    Computed from the cached (unshifted) style tensors with the same formula as `blend_layers`."""
    r_h, r_w = base.shape[-2:]
    offsets = torch.arange(-1, 2, device=y.device)
    ny = (y[:, None, None] + offsets[None, :, None]).expand(-1, 3, 3).reshape(-1, 9).clamp(0, r_h - 1)
    nx = (x[:, None, None] + offsets[None, None, :]).expand(-1, 3, 3).reshape(-1, 9).clamp(0, r_w - 1)
    pixel = ny * r_w + nx
    blended = _neighbourhoods(base, f, y, x)
    for paste in pastes:
        w = paste.weights[layer]
        wf = f if w.shape[0] > 1 else torch.zeros_like(f)
        weight = w.reshape(w.shape[0], r_h * r_w)[wf[:, None], pixel][..., None]
        dx, dy = paste.shifts[layer]
        blended = blended * (1 - weight) + _neighbourhoods(paste.styles[layer], f, y, x, dy, dx) * weight
    return blended


def _blend_styles(base: torch.Tensor, pastes: Sequence[ModPaste], layer: int) -> torch.Tensor:
    out = base
    for paste in pastes:
        dx, dy = paste.shifts[layer]
        w = paste.weights[layer]
        out = out * (1 - w) + shift_and_zero(paste.styles[layer], dx, dy) * w
    return out


def blend_modulations(
    generator: Generator,
    base_styles: Sequence[torch.Tensor],
    base_mods: Sequence[torch.Tensor],
    pastes: Sequence[ModPaste],
    *,
    max_band_fraction: float | None = None,
) -> list[torch.Tensor]:
    """The modulations of the blended style tensors, from cached ones (see the module docstring).

    max_band_fraction: above this band share a layer is recomputed in full (default MAX_BAND_FRACTION)."""
    if max_band_fraction is None:
        max_band_fraction = MAX_BAND_FRACTION
    if not pastes:
        return list(base_mods)
    layers = generator.synthesis.modulated_layers()
    frames = max([1] + [w.shape[0] for p in pastes for w in p.weights])
    out: list[torch.Tensor] = []
    for i, module in enumerate(layers):
        band = band_mask(pastes, i, frames)
        count = int(band.sum())
        pixels = band.shape[-1] * band.shape[-2]
        if count and (pixels < MIN_BAND_LAYER_PIXELS or count > max_band_fraction * band.numel()):
            out.append(module.modulation_params(_blend_styles(base_styles[i], pastes, i)))
            continue
        mod: torch.Tensor | None = None
        for paste in pastes:
            mod = _lerp_shifted(mod, base_mods[i], paste.mods[i], paste.weights[i], paste.shifts[i])
        assert mod is not None
        if mod.shape[0] < frames:  # all pastes' weights have one frame: a view is enough unless we write into it
            mod = mod.expand(frames, *mod.shape[1:])
            if count:
                mod = mod.clone(memory_format=torch.preserve_format)
        if count:
            f, y, x = band.nonzero(as_tuple=True)
            blended = _gather_blended(base_styles[i], pastes, i, f, y, x)
            values = module.modulation_params_from_patches(blended)  # one matmul with the layer's own weights
            mod.permute(0, 2, 3, 1)[f, y, x] = values.to(mod.dtype)
        out.append(mod)
    return out


def blend_modulations_reference(
    generator: Generator, base_styles: Sequence[torch.Tensor], pastes: Sequence[ModPaste]
) -> list[torch.Tensor]:
    """Plain path: blend the style tensors (as `blend_layers` does, with shifted references), then convolve."""
    layers = generator.synthesis.modulated_layers()
    return [m.modulation_params(_blend_styles(base_styles[i], pastes, i)) for i, m in enumerate(layers)]


def render_w_plus_fast(
    generator: Generator,
    base_styles: Sequence[torch.Tensor],
    base_mods: Sequence[torch.Tensor],
    pastes: Sequence[ModPaste],
    synthesize: Callable[[list[torch.Tensor]], torch.Tensor] | None = None,
) -> torch.Tensor:
    """A w_plus edit from cached style tensors and modulations: [F, 3, size, size]. `synthesize` runs the
    synthesis from modulations (default: the generator's; an editor passes its runner's, e.g. ONNX)."""
    mods = blend_modulations(generator, base_styles, base_mods, pastes)
    return (synthesize or generator.synthesis.forward_modulated)(mods)
