"""A training process for the distributed and signal tests: a seeded in-memory dataset, the real TrainingRun.

Usage: python train_script.py RUN_DIR ITERS BATCH [--resume] [--dump FILE] [--poison-rank R]
Under torchrun each rank dumps its final networks to FILE.rank<R> (safetensors) so tests can compare them.
--poison-rank R: rank R's images are NaN, and nothing but D's own step reads D (no in-domain term for E, no R1),
so only rank R sees a non-finite loss in the first iteration.
"""

from __future__ import annotations

import os
import sys

import torch
from safetensors.torch import save_file

from stylemapgan.config import get_preset
from stylemapgan.training.config import TrainConfig
from stylemapgan.training.run import TrainingRun
from stylemapgan.training.trainer import TrainingDiverged


class SeededImages(torch.utils.data.Dataset):
    def __init__(self, count: int, size: int, seed: int) -> None:
        self.images = torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def main() -> None:
    run_dir, iters, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    dump = sys.argv[sys.argv.index("--dump") + 1] if "--dump" in sys.argv else None
    model = get_preset("tiny").model
    cfg = TrainConfig(batch=batch, iters=iters, perceptual="none", num_workers=0, d_reg_every=2,
                      checkpoint_every=2, sample_every=1000, val_every=1000, log_every=1)
    data = SeededImages(64, model.size, 0)
    if "--poison-rank" in sys.argv:
        cfg = cfg.replace(lambda_indomain_e=0.0, r1_gamma=0.0)
        if os.environ.get("RANK") == sys.argv[sys.argv.index("--poison-rank") + 1]:
            data.images.fill_(float("nan"))
    run = TrainingRun(model, cfg, data, run_dir, val_data=SeededImages(8, model.size, 1),
                      device="cpu", resume=run_dir if "--resume" in sys.argv else None, progress=False)
    try:  # as `stylemapgan train`: report how the run ended, then leave the process group (`run.close`)
        result = run.run()
        if dump:
            flat = {f"{n}/{k}": v.contiguous() for n, s in run.trainer.networks_state().items() for k, v in s.items()}
            save_file(flat, f"{dump}.rank{run.dist.rank}")
        print(f"done iteration={result.iteration} stopped={result.stopped_by_signal}", flush=True)
    except TrainingDiverged as exc:
        print(f"rank {run.dist.rank}: {exc}", file=sys.stderr, flush=True)
        sys.exit(3)
    finally:
        run.close()


if __name__ == "__main__":
    main()
