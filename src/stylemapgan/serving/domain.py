"""The page's domain warning: an upload that the model reconstructs far worse than its own test images is
unlike what it was trained on (a photo given to the cartoon-faces model comes back as a smear), and the page
says so in plain words and suggests what helps.

The figure it compares against is the model's typical reconstruction MSE on its own test images, from its
card (`recon.mse` in the checkpoint's provenance, written by `stylemapgan release`; images in [-1, 1], the
reconstruction clamped and rounded to 8 bits). A checkpoint without a card gets no warning, only the MSE.

The figure and the words are the library's (`stylemapgan.editing.domain`), so the page and the CLI say the same;
this module adds only what the server needs: a reference it can be given (tests, other cards) and the MSE of the
8-bit pixels the page shows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from stylemapgan.editing import BaseEditor
from stylemapgan.editing.domain import DOMAIN_FACTOR
from stylemapgan.editing.domain import domain_warning as library_domain_warning
from stylemapgan.editing.domain import reference_mse as library_reference_mse
from stylemapgan.serving.engine import to_pixels

WARN_FACTOR = DOMAIN_FACTOR  # the library's threshold (editing/domain.py says why 3x)


@dataclass(frozen=True)
class DomainReference:
    """What an upload's reconstruction is compared with."""

    typical_mse: float  # the model's mean reconstruction MSE on its own test images
    source: str  # where the figure comes from, said in /api/info
    factor: float = WARN_FACTOR  # warn above factor * typical_mse

    @property
    def threshold(self) -> float:
        return self.factor * self.typical_mse


@dataclass(frozen=True)
class DomainAssessment:
    reconstruction_mse: float
    warning: str | None  # plain words for the page; None when the image is like the model's own


def card_reference(checkpoint: str | os.PathLike[str]) -> DomainReference | None:
    """The typical reconstruction MSE from a checkpoint's card (safetensors header only; no tensor is read), read
    by the library's rule (`editing.domain.reference_mse`). None for a checkpoint without a card or with no such
    figure (random-init, official .pt files)."""
    try:
        from safetensors import safe_open

        with safe_open(os.fspath(checkpoint), framework="pt") as handle:
            metadata = handle.metadata() or {}
        provenance = json.loads(metadata.get("provenance") or "{}")
    except Exception:  # not safetensors or no readable provenance: no reference, no warning
        return None
    value, source = library_reference_mse(provenance if isinstance(provenance, dict) else None)
    if value is None or not np.isfinite(value):
        return None
    return DomainReference(value, source or "model card")


def reconstruction_mse(pixels: np.ndarray, reconstruction: np.ndarray) -> float:
    """MSE of two uint8 [H, W, 3] images on the [-1, 1] scale model cards use."""
    a = pixels.astype(np.float64) / 127.5 - 1
    b = reconstruction.astype(np.float64) / 127.5 - 1
    return float(np.mean((a - b) ** 2))


def domain_warning(mse: float, reference: DomainReference | None, refined: bool = False) -> str | None:
    """The library's warning (`editing.domain.domain_warning`, the words the CLI prints too) for an image that
    reconstructs more than `reference.factor` times worse than the model's own test images; None otherwise."""
    if reference is None:
        return None
    return library_domain_warning(mse, reference.typical_mse, refined=refined, factor=reference.factor)


def assess_reconstruction(
    editor: BaseEditor, handle: str, pixels: np.ndarray, reference: DomainReference | None
) -> DomainAssessment:
    """How far the model's reconstruction of an encoded image (`handle`) is from its pixels, and the warning for
    the page. Runs on the model worker. The one place to call the library's domain check once it exists."""
    reconstruction = to_pixels(editor.reconstruct(handle))[0]
    mse = reconstruction_mse(pixels, reconstruction)
    return DomainAssessment(mse, domain_warning(mse, reference))
