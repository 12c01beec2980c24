"""Local-editing metrics MSE_src and MSE_ref (paper section 4, official `preprocessor/pair_masks.py` and
`metrics/local_editing.py` protocol), on any dataset with part masks.

Protocol, per part (a part is one of the dataset's part names, or a `+`-union of several):

1. Pool: the first P = 2 * pairs_per_part test images (paper: the first 500 CelebA-HQ test images, 250 pairs).
2. Pairing by mask IoU: the IoU of the part's masks is computed for every unordered pair (i < j) of the pool
   (0 when both masks are empty); pairs are sorted by IoU, highest first (ties keep (i, j) lexicographic
   order), and taken greedily when neither image is used yet. So every pool image is in at most one pair and
   P / 2 pairs result, the best-matched first. The lower index is the source, the higher the reference.
3. Edit: mask = union of the source's and the reference's part masks (image space, model resolution). Source
   and reference are encoded with the encoder (the paper's protocol; `--projection hybrid` optimises the
   stylemaps from there first, as the web editor's Refine does) and the reference's region is pasted with the
   Editor's blend (mode "w_plus" by default, as the official CelebA-HQ protocol; "w" was used for AFHQ) at strength 1,
   pooling the mask per layer as that mode does in the Editor (w_plus: average + threshold 0.5; w: max).
   A model with named parts and no mask paste (SemanticStyleGAN) encodes into W+ latents through its editor's
   inversion and takes the reference's shape and texture codes of the part named like the mask's part
   (`SemanticEditor.swap_parts`, strength 1) instead: the same pairs, masks and scores (`scored_model.py`).
4. Scores, per pair, against the real (not reconstructed) images, result rounded to 8 bits:
   MSE_src = mean over pixels outside the mask (all channels) of (result - source)^2;
   MSE_ref = mean over pixels inside the mask of (result - reference)^2.
   A pair whose union mask is empty is skipped (nothing to edit), as the official script skips it; a full mask
   leaves MSE_src undefined for that pair (excluded from the MSE_src mean only).
5. Part score = mean over its pairs; reported score = mean over parts with at least one scored pair.
   (The official script averages per batch of 4 pairs with pixel-weighted means inside a batch; we weight
   pairs equally, which does not depend on the batch size.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from stylemapgan.editing.blend import Paste
from stylemapgan.editing.editor import Editor, edit_mode
from stylemapgan.metrics.errors import MetricsError
from stylemapgan.metrics.inception import quantize


def part_indices(spec: str, part_names: Sequence[str]) -> list[int]:
    """'hair' or 'eyes+eyebrows' -> label indices; MetricsError naming the known parts otherwise."""
    index = {name: i for i, name in enumerate(part_names)}
    out = []
    for name in spec.split("+"):
        if name not in index:
            raise MetricsError(f"part {name!r}: unknown; the masks have {', '.join(part_names)}")
        out.append(index[name])
    return out


def part_masks(label_maps: torch.Tensor, indices: Sequence[int]) -> torch.Tensor:
    """Integer label maps [N, H, W] -> bool [N, H, W]: pixels whose label is one of `indices`."""
    hit = torch.zeros(label_maps.shape, dtype=torch.bool)
    for i in indices:
        hit |= label_maps == i
    return hit


def iou_matrix(masks: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """Pairwise IoU [N, N] (float64) of bool masks [N, H, W]; 0 where both masks are empty. Intersections are
    summed over pixel chunks (float32 counts are exact up to 2^24), so memory stays N x chunk at any size."""
    flat = masks.flatten(1)
    inter = torch.zeros(flat.shape[0], flat.shape[0], dtype=torch.float64)
    for start in range(0, flat.shape[1], chunk):
        part = flat[:, start : start + chunk].to(torch.float32)
        inter += (part @ part.T).to(torch.float64)
    area = flat.sum(1).to(torch.float64)
    union = area[:, None] + area[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


def match_pairs(iou: torch.Tensor, max_pairs: int) -> list[tuple[int, int, float]]:
    """Greedy disjoint pairing by descending IoU over all (i < j) (see module docstring), at most `max_pairs`."""
    n = iou.shape[0]
    rows, cols = np.triu_indices(n, k=1)  # row-major: the (i, j) lexicographic order
    values = iou.cpu().numpy()[rows, cols]
    order = np.argsort(-values, kind="stable")
    used = np.zeros(n, dtype=bool)
    pairs: list[tuple[int, int, float]] = []
    for k in order:
        i, j = int(rows[k]), int(cols[k])
        if not used[i] and not used[j]:
            used[i] = used[j] = True
            pairs.append((i, j, float(values[k])))
            if len(pairs) >= max_pairs or used.all():
                break
    return pairs


def masked_mse(result: torch.Tensor, source: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair (MSE_src outside the mask, MSE_ref inside it) for images [B, 3, H, W] and bool masks [B, H, W].
    NaN where the region is empty."""
    m = mask[:, None].to(result.dtype).expand_as(result)
    err_src = (result - source).square()
    err_ref = (result - reference).square()
    inside, outside = m.flatten(1).sum(1), (1 - m).flatten(1).sum(1)
    mse_ref = (err_ref * m).flatten(1).sum(1) / inside
    mse_src = (err_src * (1 - m)).flatten(1).sum(1) / outside
    nan = torch.full_like(mse_ref, math.nan)
    return torch.where(outside > 0, mse_src, nan), torch.where(inside > 0, mse_ref, nan)


def mode_layers(editor: Editor, mode: str, stylemaps: torch.Tensor) -> list[torch.Tensor]:
    """The layers a mode blends, for a batch of stylemaps: [stylemap] (w) or every style tensor (w_plus)."""
    if mode == "w":
        return [stylemaps]
    if mode == "w_plus":
        return list(editor.generator.resizer(stylemaps))
    edit_mode(mode)  # raises the Editor's error for an unknown mode
    raise MetricsError(f"edit mode {mode!r}: no batched layers for it")


@torch.no_grad()
def batched_local_edit(
    editor: Editor, source_stylemaps: torch.Tensor, reference_stylemaps: torch.Tensor, masks: torch.Tensor,
    mode: str = "w_plus",
) -> torch.Tensor:
    """Editor.local_edit at strength 1 for B pairs at once (one reference each, no shift, no feather):
    masks float [B, size, size] in [0, 1] -> images [B, 3, size, size]."""
    spec = edit_mode(mode)
    per_pair = [editor.blend_weights(m, mode) for m in masks]
    weights = [torch.cat([w[layer] for w in per_pair]) for layer in range(len(per_pair[0]))]
    base = mode_layers(editor, mode, source_stylemaps.to(editor.device))
    refs = mode_layers(editor, mode, reference_stylemaps.to(editor.device))
    return spec.render(editor.generator, base, [Paste(refs, weights)])


@dataclass
class PartScore:
    part: str
    pairs: int = 0  # scored pairs
    skipped: int = 0  # pairs with an empty union mask
    mean_iou: float = math.nan
    mse_src: float = math.nan
    mse_ref: float = math.nan
    per_pair: list[tuple[int, int, float, float, float]] = field(default_factory=list)  # (src, ref, iou, src, ref)


def _nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


@torch.no_grad()
def score_part(
    editor: Editor,
    part: str,
    indices: Sequence[int],
    images: torch.Tensor,
    stylemaps: torch.Tensor,
    label_maps: torch.Tensor,
    pairs_per_part: int,
    mode: str = "w_plus",
    batch: int = 8,
    bar: tqdm | None = None,
) -> PartScore:
    """One part of a StyleMapGAN model: pair the pool by IoU, paste, score. images uint8 [P, 3, S, S], stylemaps
    [P, C, s, s], label_maps [P, S, S] (integer part labels at the model's resolution)."""

    def paste(src: torch.Tensor, ref: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
        return batched_local_edit(editor, src, ref, union.float(), mode)

    return score_pairs(part, part_masks(label_maps, indices), images, stylemaps, paste, pairs_per_part, batch, bar)


@torch.no_grad()
def score_pairs(
    part: str,
    masks: torch.Tensor,
    images: torch.Tensor,
    codes: torch.Tensor,
    edit: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    pairs_per_part: int,
    batch: int = 8,
    bar: tqdm | None = None,
) -> PartScore:
    """One part of any model: pair the pool by the IoU of the part's masks (bool [P, S, S]), edit each pair with
    `edit(source codes, reference codes, union masks) -> images` (the model's local edit), score against the real
    images (uint8 [P, 3, S, S]). codes: the pool's codes [P, ...], row i = image i."""
    pairs = match_pairs(iou_matrix(masks), pairs_per_part)
    score = PartScore(part)
    todo = []
    for i, j, iou in pairs:
        if bool((masks[i] | masks[j]).any()):
            todo.append((i, j, iou))
        else:
            score.skipped += 1
            if bar is not None:
                bar.update(1)
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        src = torch.tensor([c[0] for c in chunk])
        ref = torch.tensor([c[1] for c in chunk])
        union = masks[src] | masks[ref]
        result = edit(codes[src], codes[ref], union)
        result = quantize(result.clamp(-1, 1)).cpu()
        to_float = lambda u8: u8.float() / 127.5 - 1  # noqa: E731
        mse_src, mse_ref = masked_mse(result, to_float(images[src]), to_float(images[ref]), union)
        for (i, j, iou), a, b in zip(chunk, mse_src.tolist(), mse_ref.tolist(), strict=True):
            score.per_pair.append((i, j, iou, a, b))
        if bar is not None:
            bar.update(len(chunk))
    score.pairs = len(score.per_pair)
    if score.per_pair:
        score.mean_iou = _nanmean([p[2] for p in score.per_pair])
        score.mse_src = _nanmean([p[3] for p in score.per_pair])
        score.mse_ref = _nanmean([p[4] for p in score.per_pair])
    return score


def load_mask_folder(folder: str | Path, count: int, size: int) -> tuple[torch.Tensor, list[str]]:
    """Masks given as files (`--masks FOLDER`) for the first `count` test images.

    FOLDER holds one label-map image per test image, named by its position in the test split (`0.png` or
    `00000.png`; any PIL-readable format), pixel value = part index (0 = background), resized to the model
    size with nearest-neighbour. Part names come from `parts.txt` (one per line, index 0 first); without it a
    binary mask (values 0/255 or 0/1) is one part named `mask`, other values are named `part<k>`.
    """
    root = Path(folder)
    if not root.is_dir():
        raise MetricsError(f"{root}: no such folder (--masks)")
    maps = []
    for i in range(count):
        candidates = [p for p in root.glob(f"{i}.*")] + [p for p in root.glob(f"{i:05d}.*")]
        if not candidates:
            raise MetricsError(f"{root}: no mask file for test image {i} (expected {i}.png or {i:05d}.png)")
        with Image.open(sorted(candidates)[0]) as im:
            arr = np.asarray(im.convert("L") if im.mode not in ("L", "P", "I") else im).astype(np.int64)
        t = torch.from_numpy(arr)
        if tuple(t.shape) != (size, size):
            t = F.interpolate(t[None, None].float(), size=(size, size), mode="nearest")[0, 0].long()
        maps.append(t)
    label_maps = torch.stack(maps)
    names_file = root / "parts.txt"
    if names_file.is_file():
        names = [line.strip() for line in names_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        values = sorted(set(torch.unique(label_maps).tolist()))
        if set(values) <= {0, 255} or set(values) <= {0, 1}:
            label_maps = (label_maps > 0).long()
            names = ["background", "mask"]
        else:
            names = ["background"] + [f"part{k}" for k in range(1, max(values) + 1)]
    if int(label_maps.max()) >= len(names):
        raise MetricsError(f"{root}: label value {int(label_maps.max())} but only {len(names)} part names")
    return label_maps, names
