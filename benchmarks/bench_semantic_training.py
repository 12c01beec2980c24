"""Seconds per training iteration, SemanticStyleGAN vs StyleMapGAN, batch 16, in one process on one machine.

Each preset trains on in-memory random data (random label maps for SemanticStyleGAN) with its family's default
objective, no data workers. After --warmup iterations, the mean over --iters consecutive iterations is reported
(16 covers one lazy R1 step and, for SemanticStyleGAN, four path-length steps: the amortised cost), as wall time
and as this process's CPU time (the machine may be shared; CPU time / threads is then the fairer figure).
"""

from __future__ import annotations

import argparse
import time

import torch

from stylemapgan.checkpoint.families import find_preset
from stylemapgan.perf.bench import RandomImages
from stylemapgan.training.distributed import DistInfo
from stylemapgan.training.families import training_family


class RandomLabelled(torch.utils.data.Dataset):
    """Random images and random blocky label maps (8x8 blocks)."""

    def __init__(self, count: int, size: int, classes: int) -> None:
        gen = torch.Generator().manual_seed(0)
        self.images = torch.rand(count, 3, size, size, generator=gen) * 2 - 1
        blocks = torch.randint(0, classes, (count, size // 8, size // 8), generator=gen)
        self.labels = blocks.repeat_interleave(8, 1).repeat_interleave(8, 2)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "mask": self.labels[index]}


def bench(preset_name: str, batch: int, warmup: int, iters: int, perceptual: str) -> dict[str, float]:
    _, preset = find_preset(preset_name)
    config = preset.model
    family = training_family(config)
    options = {"perceptual": perceptual} if "perceptual" in family.train_config.__dataclass_fields__ else {}
    train_config = family.train_config(batch=batch, num_workers=0, **options)
    data = (RandomLabelled(4 * batch, config.size, config.seg_dim) if family.dataset_options
            else RandomImages(4 * batch, config.size))
    trainer = family.trainer.for_run(config, train_config, data, device="cpu", dist_info=DistInfo())
    for _ in range(warmup):
        trainer.train_step()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(iters):
        trainer.train_step()
    return {"wall": (time.perf_counter() - wall) / iters, "cpu": (time.process_time() - cpu) / iters}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="semantic-cpu-64,cpu-64-small")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--perceptual", default="stlpips-vgg", help="StyleMapGAN's perceptual loss (official: vgg)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.presets.split(","):
        r = bench(name, args.batch, args.warmup, args.iters, args.perceptual)
        print(f"{name:<16} batch {args.batch}: {r['wall']:.3f} s/it wall, {r['cpu']:.3f} s/it CPU "
              f"({args.threads} threads, mean of {args.iters} after {args.warmup} warm-up)", flush=True)


if __name__ == "__main__":
    main()
