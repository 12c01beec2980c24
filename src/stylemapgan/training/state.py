"""The part of a trainer's saved state that every trainer shares: where the run is (iteration, data position) and
its random generators, saved and restored the same way so that a resumed run equals an uninterrupted one."""

from __future__ import annotations

from typing import Any

import torch

from stylemapgan.training.batches import RealBatches
from stylemapgan.training.config import RunConfig
from stylemapgan.training.distributed import DistInfo


def progress_state(cfg: RunConfig, iteration: int, optimizers: dict[str, torch.optim.Optimizer],
                   rng: torch.Generator, dist: DistInfo, device: torch.device) -> dict[str, Any]:
    """Iteration, images seen, the training config, the optimizers' states and the random generators (the
    trainer's own, torch's global CPU one, and the device's when it is a GPU)."""
    generators = {"trainer": rng.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        generators["cuda"] = torch.cuda.get_rng_state(device)
    return {
        "iteration": iteration,
        "images_seen": iteration * cfg.batch,
        "train_config": cfg.to_dict(),
        "optimizers": {name: optim.state_dict() for name, optim in optimizers.items()},
        "rng": generators,
        "world_size": dist.world_size,
    }


def restore_progress(training: dict[str, Any], optimizers: dict[str, torch.optim.Optimizer], rng: torch.Generator,
                     real: RealBatches, device: torch.device) -> int:
    """Restore what `progress_state` saved: the optimizers named in `optimizers`, the generators, and the data
    position (the next batch is the saved iteration's). Returns the saved iteration."""
    for name, optim in optimizers.items():
        optim.load_state_dict(training["optimizers"][name])
    generators = training["rng"]
    rng.set_state(generators["trainer"])
    torch.set_rng_state(generators["torch"])
    if device.type == "cuda" and "cuda" in generators:
        torch.cuda.set_rng_state(generators["cuda"], device)
    iteration = int(training["iteration"])
    real.seek(iteration)
    return iteration
