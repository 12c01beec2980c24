"""The page's domain warning: an upload that the model reconstructs far worse than its own test images is
unlike what it was trained on (a photo given to the cartoon-faces model comes back as a smear), and the page
says so in plain words and suggests what helps.

The figure it compares against is the model's typical reconstruction MSE on its own test images, from its
card (`recon.mse` in the checkpoint's provenance, written by `stylemapgan release`; images in [-1, 1], the
reconstruction clamped and rounded to 8 bits). A checkpoint without a card gets no warning, only the MSE.

Interim: `assess_reconstruction` is the one function the server calls; once the library has its own check (the
card's figure and an `Editor` method, being built in `editing/`), that function calls it instead.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from stylemapgan.editing import Editor
from stylemapgan.serving.engine import to_pixels

WARN_FACTOR = 3.0  # per-image MSE varies around the card's mean; a photo on the cartoon model is ~12x


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
    """The typical reconstruction MSE from a checkpoint's card (safetensors header only; no tensor is read).
    None for a checkpoint without a card or with no such figure (random-init, official .pt files)."""
    try:
        from safetensors import safe_open

        with safe_open(os.fspath(checkpoint), framework="pt") as handle:
            metadata = handle.metadata() or {}
        provenance = json.loads(metadata.get("provenance") or "{}")
        value = float(((provenance.get("card") or {}).get("metrics") or {})["recon.mse"])
    except Exception:  # not safetensors, no card, no figure: no reference, no warning
        return None
    if not np.isfinite(value) or value <= 0:
        return None
    return DomainReference(value, "model card (recon.mse, the model's test images)")


def reconstruction_mse(pixels: np.ndarray, reconstruction: np.ndarray) -> float:
    """MSE of two uint8 [H, W, 3] images on the [-1, 1] scale model cards use."""
    a = pixels.astype(np.float64) / 127.5 - 1
    b = reconstruction.astype(np.float64) / 127.5 - 1
    return float(np.mean((a - b) ** 2))


def domain_warning(mse: float, reference: DomainReference | None, refined: bool = False) -> str | None:
    """The page's words for an image that reconstructs more than `reference.factor` times worse than the
    model's own test images; None otherwise (or without a reference)."""
    if reference is None or mse <= reference.threshold:
        return None
    ratio = mse / reference.typical_mse
    head = (f"This image looks unlike the images this model was trained on: it reconstructs with error "
            f"{mse:.3f}, {ratio:.0f}x the model's typical {reference.typical_mse:.3f} on its own test images")
    if refined:
        return (f"{head}, even after refining. Edits will look smeared; a model trained on images like this one "
                "would help.")
    return (f"{head}. Edits will look smeared. Try Refine source (it fits the encoding to this image), or use a "
            "model trained on images like this one.")


def assess_reconstruction(
    editor: Editor, handle: str, pixels: np.ndarray, reference: DomainReference | None
) -> DomainAssessment:
    """How far the model's reconstruction of an encoded image (`handle`) is from its pixels, and the warning for
    the page. Runs on the model worker. The one place to call the library's domain check once it exists."""
    reconstruction = to_pixels(editor.reconstruct(handle))[0]
    mse = reconstruction_mse(pixels, reconstruction)
    return DomainAssessment(mse, domain_warning(mse, reference))
