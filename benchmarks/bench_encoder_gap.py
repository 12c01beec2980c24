"""Where a model's reconstruction error comes from: train vs test MSE of the encoder, and how far direct
optimisation of the stylemaps gets from the encoder's output (the generator's reach).

With part masks in the dataset it also splits the test MSE into background and the rest (face, hair, body):
the local-edit metric for the background part compares exactly these two regions. Every MSE is of the clamped
render, as in `stylemapgan eval`.

Reproduces the README's "the encoder, not the generator, is the limit" figures:
python benchmarks/bench_encoder_gap.py --ckpt CKPT --data data/cartoon-faces-64   (~2 min on 2 CPU cores)
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from stylemapgan.checkpoint.models import load_editing_model
from stylemapgan.data import PreparedDataset
from stylemapgan.data.lmdb_format import read_meta
from stylemapgan.editing.projection import ProjectionOptions, optimise_stylemaps
from stylemapgan.models import resolve_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--data", default="data/cartoon-faces-64")
    parser.add_argument("--num", type=int, default=256, help="images per split for the train/test MSE")
    parser.add_argument("--optimise-num", type=int, default=32, help="test images whose stylemaps are optimised")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_editing_model(resolve_checkpoint(args.ckpt))
    model.generator.requires_grad_(False)
    for split in ("train", "test"):
        data = PreparedDataset(args.data, split=split)
        images = torch.stack([data[i] for i in range(min(args.num, len(data)))])
        with torch.no_grad():
            mse = F.mse_loss(model.generator.decode(model.encoder(images)).clamp(-1, 1), images).item()
        print(f"encoder MSE, first {len(images)} {split} images: {mse:.4f}")
    data = PreparedDataset(args.data, split="test", masks="background" in _part_names(args.data))
    items = [data[i] for i in range(min(args.optimise_num, len(data)))]
    images = torch.stack([item["image"] if isinstance(item, dict) else item for item in items])
    with torch.no_grad():
        start = model.encoder(images)
        encoder_recon = model.generator.decode(start)
    options = ProjectionOptions(steps=args.steps, lr=args.lr, mse_weight=1.0, perceptual_weight=0.0)
    best, _, _ = optimise_stylemaps(model.generator, images, start, options, None)
    with torch.no_grad():
        optimised_recon = model.generator.decode(best)
    encoder_recon, optimised_recon = encoder_recon.clamp(-1, 1), optimised_recon.clamp(-1, 1)
    print(f"first {len(images)} test images: encoder {F.mse_loss(encoder_recon, images).item():.4f}, "
          f"stylemaps optimised from it ({args.steps} Adam steps, lr {args.lr}, MSE only) "
          f"{F.mse_loss(optimised_recon, images).item():.4f}")
    if data.want_masks:
        background = torch.stack([item["mask"] == data.part_names.index("background") for item in items])
        for name, recon in (("encoder", encoder_recon), ("optimised", optimised_recon)):
            error = (recon - images).square().mean(1)  # [N, H, W]
            print(f"  {name}: MSE on the background {error[background].mean().item():.4f}, "
                  f"on the rest {error[~background].mean().item():.4f} "
                  f"(background is {background.float().mean().item():.0%} of the pixels)")


def _part_names(path: str) -> list[str]:
    masks = read_meta(path).get("masks") or {}
    return list(masks.get("parts", []))


if __name__ == "__main__":
    main()
