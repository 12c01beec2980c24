"""The domain check: does an input look like the images the model was trained on?

A GAN inverts only what it can draw. A photo given to the cartoon-faces model comes back as a smear (encoder MSE
0.23-0.37 against 0.019 on cartoon faces), and edits of a smear are smears. The model's card records the encoder's
reconstruction MSE on its own held-out test images; an input whose reconstruction MSE is more than
`DOMAIN_FACTOR` times that figure is flagged, in plain words, with what helps.

Why 3x: on the bundled model the 16 sample faces reconstruct at 0.6x-1.4x the card's 0.0187, real photographs at
12x-20x and a photo-like 1/f noise image at 9x; 3x keeps a wide margin on both sides. Below it an input may still
reconstruct imperfectly, as the model's own test images do.

MSE everywhere: images in [-1, 1], the reconstruction clamped to that range, averaged over pixels and channels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DOMAIN_FACTOR = 3.0
# model-card metrics holding the encoder's reconstruction MSE on the model's own images, best first
REFERENCE_KEYS = (
    ("recon.mse", "reconstruction MSE of the model's test images (model card)"),
    ("bundled_samples_recon_mse", "reconstruction MSE of the model's sample images (model card)"),
)


def reference_mse(provenance: Mapping[str, Any] | None) -> tuple[float | None, str | None]:
    """(the model's own reconstruction MSE, where it comes from) from a checkpoint's provenance; (None, None) when
    the checkpoint has no card with one (fresh, converted or training checkpoints)."""
    card = (provenance or {}).get("card")
    metrics = card.get("metrics") if isinstance(card, Mapping) else None
    if not isinstance(metrics, Mapping):
        return None, None
    for key, source in REFERENCE_KEYS:
        value = metrics.get(key)
        if isinstance(value, int | float) and value > 0:
            return float(value), source
    return None, None


def domain_warning(
    mse: float, reference_mse: float | None, *, name: str | None = None, refined: bool = False,
    factor: float = DOMAIN_FACTOR,
) -> str | None:
    """A plain-words warning when `mse` exceeds `factor` x the model's own figure, else None (also None when the
    model has no figure: nothing to compare with). `refined`: the MSE is already after optimisation, so the
    advice leaves out refining."""
    if reference_mse is None or reference_mse <= 0 or mse <= factor * reference_mse:
        return None
    subject = f"{name}: this image" if name else "This image"
    advice = ("tune the generator to it (`project --pti-steps 50`)" if refined else
              "refine it (`project --method hybrid`, or Refine in the web editor), tune the generator to it "
              "(`project --pti-steps 50`)")
    ratio = mse / reference_mse
    times = f"{ratio:.1f}x" if ratio < 10 else f"{ratio:.0f}x"
    after = " even after refining" if refined else ""
    return (f"{subject} reconstructs far worse than the model's own images{after} (MSE {mse:.3f} against "
            f"{reference_mse:.3f}, {times}): it is probably unlike what the model was trained "
            f"on, so edits of it will look smeared. What helps: {advice}, or use a model trained on images like it "
            "(`stylemapgan train --init-from MODEL --data YOUR_IMAGES`).")


@dataclass(frozen=True)
class DomainCheck:
    """One input's check: its reconstruction MSE, the model's figure, and the warning (None: fine or not possible)."""

    mse: float
    reference_mse: float | None
    warning: str | None
    factor: float = DOMAIN_FACTOR

    @property
    def possible(self) -> bool:
        return self.reference_mse is not None

    def to_dict(self) -> dict[str, Any]:
        return {"mse": self.mse, "reference_mse": self.reference_mse,
                "ratio": self.mse / self.reference_mse if self.reference_mse else None,
                "out_of_domain": self.warning is not None}
