"""A SemanticStyleGAN training process for the distributed test: a seeded in-memory labelled dataset, the real
TrainingRun.

Usage: python semantic_train_script.py RUN_DIR ITERS BATCH [--dump FILE] [--changes JSON]
Under torchrun each rank dumps to FILE.rank<R> (safetensors) its final networks and path-length mean, and the
gradients each update of the first iteration stepped with (after averaging over ranks), keyed
"grad<k>/<network>/<parameter>" for the k-th update (D, R1, G, path length). --changes: training config fields.
"""

from __future__ import annotations

import json
import sys

import torch
from safetensors.torch import save_file

from stylemapgan.semantic import SEMANTIC_PRESETS
from stylemapgan.training.run import TrainingRun
from stylemapgan.training.semantic import SemanticTrainConfig

TINY = SEMANTIC_PRESETS["semantic-tiny"].model


class SeededLabelled(torch.utils.data.Dataset):
    """Random images with blocky label maps (8x8 blocks of one class each), `part_names` like a prepared dataset."""

    def __init__(self, count: int, size: int, classes: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.images = torch.rand(count, 3, size, size, generator=gen) * 2 - 1
        blocks = torch.randint(0, classes, (count, size // 8, size // 8), generator=gen)
        self.labels = blocks.repeat_interleave(8, 1).repeat_interleave(8, 2)
        self.part_names = [f"class{i}" for i in range(classes)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "mask": self.labels[index]}


def tiny_config(**changes: object) -> SemanticTrainConfig:
    """Every term on and exercised within a few iterations: lazy R1 and path length every 2, mixing half the time."""
    cfg = SemanticTrainConfig(batch=4, num_workers=0, d_reg_every=2, path_every=2, mixing_prob=0.5,
                              checkpoint_every=2, sample_every=1000, val_every=1000, val_count=4, log_every=1)
    return cfg.replace(**changes)


def main() -> None:
    run_dir, iters, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    dump = sys.argv[sys.argv.index("--dump") + 1] if "--dump" in sys.argv else None
    changes = json.loads(sys.argv[sys.argv.index("--changes") + 1]) if "--changes" in sys.argv else {}
    cfg = tiny_config(batch=batch, iters=iters, **changes)
    run = TrainingRun(TINY, cfg, SeededLabelled(32, TINY.size, TINY.seg_dim, 0), run_dir, device="cpu",
                      progress=False)
    trainer, grads = run.trainer, {}
    step = trainer._step

    def recording_step(optim: torch.optim.Optimizer, module: torch.nn.Module, loss: torch.Tensor) -> None:
        step(optim, module, loss)
        if trainer.iteration == 0:
            k = len({key.split("/")[0] for key in grads})
            name = "generator" if module is trainer.generator else "discriminator"
            grads.update({f"grad{k}/{name}/{n}": p.grad.clone() for n, p in module.named_parameters()
                          if p.grad is not None})

    trainer._step = recording_step
    result = run.run()
    if dump:
        flat = {f"{n}/{k}": v.contiguous() for n, s in trainer.networks_state().items() for k, v in s.items()}
        flat["mean_path_length"] = trainer.mean_path_length.reshape(1)
        save_file({**flat, **grads}, f"{dump}.rank{run.dist.rank}")
    print(f"done iteration={result.iteration}", flush=True)
    run.close()


if __name__ == "__main__":
    main()
