"""Seconds per training iteration of the bundled model's architecture, batch 16, under two objectives.

"recipe": the bundled model's late settings (stlpips-alex, lambda_x_rec 20, lambda_indomain_e 0);
"official": the paper's objective (stlpips-vgg, every weight 1). In-memory random images, no data workers;
two warm-up iterations, then the median of --iters. Run it on a quiet machine: shared cores skew it badly.
Compare two versions with PYTHONPATH=OTHER_CHECKOUT/src python benchmarks/bench_training_objectives.py.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from stylemapgan.checkpoint.io import load_checkpoint
from stylemapgan.losses import build_perceptual
from stylemapgan.models import resolve_checkpoint
from stylemapgan.perf.bench import RandomImages
from stylemapgan.training.config import TrainConfig
from stylemapgan.training.trainer import Trainer

OBJECTIVES = {
    "recipe": {"perceptual": "stlpips-alex", "lambda_indomain_e": 0.0, "lambda_x_rec": 20.0},
    "official": {"perceptual": "stlpips-vgg"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=None, help="model whose config is trained (default: the bundled model)")
    parser.add_argument("--iters", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_checkpoint(resolve_checkpoint(args.ckpt)).config
    for name, settings in OBJECTIVES.items():
        cfg = TrainConfig(batch=16, num_workers=0, **settings)
        trainer = Trainer(config, cfg, RandomImages(64, config.size), perceptual=build_perceptual(cfg.perceptual))
        for _ in range(2):
            trainer.train_step()
        times = []
        for _ in range(args.iters):
            start = time.perf_counter()
            trainer.train_step()
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        print(f"{name:<9} {median:.3f} s/it ({1 / median:.2f} it/s), {args.threads} threads, median of {args.iters}")


if __name__ == "__main__":
    main()
