"""Where a model's reconstruction error comes from: train vs test MSE of the encoder, and how far direct
optimisation of the stylemaps gets from the encoder's output (the generator's reach).

Reproduces the README's "the encoder, not the generator, is the limit" figures:
python benchmarks/bench_encoder_gap.py --ckpt CKPT --data data/cartoon-faces-64   (~2 min on 2 CPU cores)
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from stylemapgan.checkpoint.models import load_editing_model
from stylemapgan.data import PreparedDataset
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
            mse = F.mse_loss(model.generator.decode(model.encoder(images)), images).item()
        print(f"encoder MSE, first {len(images)} {split} images: {mse:.4f}")
    data = PreparedDataset(args.data, split="test")
    images = torch.stack([data[i] for i in range(min(args.optimise_num, len(data)))])
    with torch.no_grad():
        start = model.encoder(images)
        encoder_mse = F.mse_loss(model.generator.decode(start), images).item()
    options = ProjectionOptions(steps=args.steps, lr=args.lr, mse_weight=1.0, perceptual_weight=0.0)
    _, loss, _ = optimise_stylemaps(model.generator, images, start, options, None)
    print(f"first {len(images)} test images: encoder {encoder_mse:.4f}, "
          f"stylemaps optimised from it ({args.steps} Adam steps, lr {args.lr}, MSE only) {loss.mean().item():.4f}")


if __name__ == "__main__":
    main()
