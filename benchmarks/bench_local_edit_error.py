"""Where a part's local-edit MSE_src comes from: the source's reconstruction error, or the edit itself.

MSE_src compares the edited image with the real source outside the mask. Outside the mask the edit keeps the
source's stylemap, so the error there is the reconstruction's (render of the source's own stylemap vs the
source) and what pasting the reference changes there (edit vs that render: the generator's convolutions carry
the reference's cells across the mask boundary); the two do not simply add. Inside the mask the same split
holds for MSE_ref. Means over pairs as in `stylemapgan eval`; renders clamped, not rounded to 8 bits. This prints both
splits for one part, with the stylemaps from the encoder and from the web editor's Refine (hybrid projection,
MSE only), on the pairs `stylemapgan eval` scores (first 2N test images, paired by mask IoU).

Reproduces the README's background-part figures:
python benchmarks/bench_local_edit_error.py --data data/cartoon-faces-64 --part background   (~3 min on 2 cores)
"""

from __future__ import annotations

import argparse

import torch

from stylemapgan.checkpoint.models import load_editing_model
from stylemapgan.data import PreparedDataset
from stylemapgan.editing import Editor
from stylemapgan.editing.projection import ProjectionOptions
from stylemapgan.metrics.evaluate import encode_pool
from stylemapgan.metrics.local_editing import (
    batched_local_edit,
    iou_matrix,
    masked_mse,
    match_pairs,
    part_indices,
    part_masks,
)
from stylemapgan.models import resolve_checkpoint


def mean(values: torch.Tensor) -> float:
    """Mean over pairs (a pair whose side is empty is left out), as `stylemapgan eval` averages."""
    return float(values.nanmean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--data", default="data/cartoon-faces-64")
    parser.add_argument("--part", default="background", help="a part name, or a +-union of several")
    parser.add_argument("--pairs", type=int, default=24, help="pairs scored (pool: the first 2N test images)")
    parser.add_argument("--steps", type=int, default=100, help="Refine steps (hybrid projection, MSE only)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_editing_model(resolve_checkpoint(args.ckpt))
    editor = Editor(model.generator, model.encoder, device="cpu")
    masked = PreparedDataset(args.data, split="test", masks=True)
    pool = min(2 * args.pairs, len(masked))
    masks = part_masks(torch.stack([masked[i]["mask"].to(torch.uint8) for i in range(pool)]),
                       part_indices(args.part, masked.part_names))
    pairs = [(i, j) for i, j, _ in match_pairs(iou_matrix(masks), args.pairs) if bool((masks[i] | masks[j]).any())]
    src, ref = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    union = masks[src] | masks[ref]
    test = PreparedDataset(args.data, split="test")
    print(f"part {args.part}: {len(pairs)} pairs; the mask covers {union.float().mean().item():.0%} of the pixels")
    refine = ProjectionOptions(steps=args.steps, perceptual_weight=0.0)
    for method in ("encoder", "hybrid"):
        stylemaps, images = encode_pool(editor, test, list(range(pool)), 8, keep_images=True, method=method,
                                        projection=refine)
        assert images is not None
        real = images.float() / 127.5 - 1
        with torch.no_grad():
            edited = batched_local_edit(editor, stylemaps[src], stylemaps[ref], union.float()).clamp(-1, 1)
            own = editor.generator.decode(stylemaps).clamp(-1, 1)
        source, reference = real[src], real[ref]
        scored = masked_mse(edited, source, reference, union)  # MSE_src, MSE_ref
        recon = masked_mse(own[src], source, reference, union)[0], masked_mse(own[ref], source, reference, union)[1]
        change = masked_mse(edited, own[src], own[ref], union)  # what the edit moved, each side
        label = "encoder" if method == "encoder" else f"refined ({args.steps} steps)"
        print(f"{label}:\n"
              f"  outside: MSE_src {mean(scored[0]):.4f}; its sources: reconstruction {mean(recon[0]):.4f}, "
              f"edit vs that reconstruction {mean(change[0]):.4f}\n"
              f"  inside:  MSE_ref {mean(scored[1]):.4f}; its sources: reconstruction {mean(recon[1]):.4f}, "
              f"edit vs that reconstruction {mean(change[1]):.4f}")


if __name__ == "__main__":
    main()
