"""part_control: does each part's code control its own region? A generator-only metric (no encoder, no dataset).

Why: a part swap can fail in the generator itself (the eyes' codes of b arrive, the eyes stay a's), which no
encoder-based metric separates from a weak encoder. This one samples the codes, so only the generator is judged.

Definition, for a model whose codes have named per-part rows and whose renders come with a segmentation
(`ScoredModel.part_control_refusal` says why another cannot):

- N pairs (a, b) of random codes at truncation 1: a_i from the seeds of the generated images (`generation_seeds`:
  (seed << 32) + i), b_i from a disjoint stream (`reference_seeds`: (seed << 32) + 2^31 + i); codes, images and
  segmentations from the editor's `sample`.
- For each part k of the model's part names: out = render(a's codes with part k's shape and texture codes taken
  from b). R = the pixels whose segmentation argmax is k in both a and b (per pair).
- Over all pairs' R pixels (pooled, all channels): mse_ref = mean (out - b)^2, mse_src = mean (out - a)^2,
  mse_ab = mean (a - b)^2 (the baseline: how different the two were there), and
  control_k = mse_src / (mse_src + mse_ref) in [0, 1]: 1, the region became b's; 0, it stayed a's.
- A part whose R is empty in every pair is not scored (control None, pixels 0, with its reason), nor is one where
  out equals a and b on R (0/0: the swap cannot be told from no swap, e.g. when b's codes equal a's).
- The reported mean is over the scored parts. Every image is clamped and rounded to 8 bits first, as every
  image the metrics score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from stylemapgan.metrics.errors import MetricsError
from stylemapgan.metrics.inception import quantize
from stylemapgan.metrics.scored_model import ScoredModel

REFERENCE_STREAM = 1 << 31  # b's seeds start here within a --seed's block of 2^32, a's at 0


def reference_seeds(seed: int, count: int) -> list[int]:
    """The b seeds of part_control: disjoint from the generated images' seeds (`generation_seeds`) of any --seed
    below 2^31 pairs, and pair i's b does not depend on the count."""
    return [(int(seed) << 32) + REFERENCE_STREAM + i for i in range(count)]


@dataclass
class PartControl:
    """One part's pooled sums over the R pixels of every pair (float64, so the pooling does not depend on order)."""

    part: str
    pixels: int = 0  # R pixels over all pairs (each counted once, not per channel)
    sum_ref: float = 0.0  # sum over R pixels and channels of (out - b)^2
    sum_src: float = 0.0  # ... of (out - a)^2
    sum_ab: float = 0.0  # ... of (a - b)^2

    def _mean(self, total: float, channels: int) -> float | None:
        return total / (self.pixels * channels) if self.pixels else None

    def report(self, channels: int = 3) -> dict[str, float | int | str | None]:
        mse_ref, mse_src = self._mean(self.sum_ref, channels), self._mean(self.sum_src, channels)
        entry: dict[str, float | int | str | None] = {
            "control": None, "mse_ref": mse_ref, "mse_src": mse_src,
            "mse_ab": self._mean(self.sum_ab, channels), "pixels": self.pixels,
        }
        if mse_ref is None or mse_src is None:
            entry["reason"] = "no pixel is this part in both images of any pair"
        elif mse_src + mse_ref == 0:
            entry["reason"] = "the swapped render equals both a and b on the part's pixels (0/0)"
        else:
            entry["control"] = mse_src / (mse_src + mse_ref)
        return entry


@torch.no_grad()
def score_part_control(
    model: ScoredModel, source_seeds: Sequence[int], reference_seeds: Sequence[int], batch: int = 8,
    bar: tqdm | None = None,
) -> list[PartControl]:
    """The pooled sums of every part of the model (see the module docstring), `batch` pairs at a time; bar counts
    pairs. A MetricsError with the reason when the model cannot be scored."""
    reason = model.part_control_refusal()
    if reason is not None:
        raise MetricsError(f"--metrics part_control: {reason}")
    if len(source_seeds) != len(reference_seeds) or not source_seeds:
        raise MetricsError(f"part_control: need as many a seeds as b seeds (>= 1), got {len(source_seeds)} and "
                           f"{len(reference_seeds)}")
    names = list(model.editor.capabilities.parts)
    scores = [PartControl(name) for name in names]
    for start in range(0, len(source_seeds), batch):
        a = model.editor.sample(list(source_seeds[start : start + batch]), trunc=1.0)
        b = model.editor.sample(list(reference_seeds[start : start + batch]), trunc=1.0)
        assert a.segmentation is not None and b.segmentation is not None, "checked by part_control_refusal"
        image_a, image_b = quantize(a.images.clamp(-1, 1)).double(), quantize(b.images.clamp(-1, 1)).double()
        label_a, label_b = a.segmentation.argmax(1), b.segmentation.argmax(1)
        for k, score in enumerate(scores):
            region = ((label_a == k) & (label_b == k))[:, None]  # [B, 1, S, S], broadcast over channels
            count = int(region.sum())
            if not count:
                continue
            out = quantize(model.swapped_part(a.codes, b.codes, names[k]).clamp(-1, 1)).double()
            score.pixels += count
            score.sum_ref += float(((out - image_b).square() * region).sum())
            score.sum_src += float(((out - image_a).square() * region).sum())
            score.sum_ab += float(((image_a - image_b).square() * region).sum())
        if bar is not None:
            bar.update(len(a.images))
    return scores
