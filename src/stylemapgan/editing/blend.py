"""The blend at the heart of local editing, in one place.

A local edit pastes regions of one or more references into a source. Both edit modes reduce to the same
operation on a list of layers (one stylemap in "w" mode; one style tensor per modulated conv in "w_plus"
mode): for each paste in order, `out = out * (1 - weight) + reference * weight` with a per-layer weight
map. With weight exactly 0 this returns the base bit for bit, and with weight exactly 1 the reference.

Renderers turn the base and pastes into an image; these are the reference paths. The fast w_plus path
(issue 9, `editing.fast_edit`, used by `Editor.local_edit` by default) applies the same blend to cached
modulations instead: a modulation's [gamma | beta] is a 3x3 conv of the style tensor, i.e. affine in it, so
blending style tensors equals blending modulations except within one pixel of a mask edge, recomputed exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from stylemapgan.networks.generator import Generator


@dataclass(frozen=True)
class Paste:
    """One reference: its layers (already shifted) and per-layer weights [F or 1, 1, r, r] in [0, 1]
    (pooled, feathered, shifted and multiplied by the blend strength)."""

    layers: Sequence[torch.Tensor]
    weights: Sequence[torch.Tensor]


def blend_layers(base: Sequence[torch.Tensor], pastes: Sequence[Paste]) -> list[torch.Tensor]:
    """Paste every reference over the base, layer by layer, later pastes on top of earlier ones."""
    out = list(base)
    for paste in pastes:
        if len(paste.layers) != len(out) or len(paste.weights) != len(out):
            raise ValueError(f"paste has {len(paste.layers)} layers / {len(paste.weights)} weights, base {len(out)}")
        out = [o * (1 - w) + r * w for o, r, w in zip(out, paste.layers, paste.weights, strict=True)]
    return out


def render_w(generator: Generator, base: Sequence[torch.Tensor], pastes: Sequence[Paste]) -> torch.Tensor:
    """'w' mode: base = [stylemap]; blend stylemaps, then resize and synthesise."""
    (stylemap,) = blend_layers(base, pastes)
    return generator.decode(stylemap)


def render_w_plus(generator: Generator, base: Sequence[torch.Tensor], pastes: Sequence[Paste]) -> torch.Tensor:
    """'w_plus' mode: base = the style tensors; blend each, then synthesise."""
    return generator.synthesis(blend_layers(base, pastes))
