"""A deterministic, resumable batch sampler shared by every rank.

Batch k of the run is a pure function of (seed, k): epoch e = k // batches_per_epoch draws a permutation seeded
by (seed, e), and the global batch is split across ranks by position (rank r takes positions r, r + W, ...).
Resuming at iteration k therefore reproduces exactly the batches an uninterrupted run would have drawn, and a
K-rank run sees the same images as a single-process run with the same global batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableBatchSampler(Sampler[list[int]]):
    def __init__(
        self, dataset_size: int, global_batch: int, *, rank: int = 0, world_size: int = 1, seed: int = 0,
        start_batch: int = 0,
    ) -> None:
        if global_batch % world_size:
            raise ValueError(f"batch {global_batch} is not divisible by the number of processes {world_size}")
        if dataset_size < global_batch:
            raise ValueError(f"the dataset has {dataset_size} images, fewer than one batch of {global_batch}")
        self.dataset_size = dataset_size
        self.global_batch = global_batch
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start_batch = start_batch
        self.batches_per_epoch = dataset_size // global_batch

    def global_indices(self, k: int) -> list[int]:
        epoch, within = divmod(k, self.batches_per_epoch)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.dataset_size, generator=gen)
        return perm[within * self.global_batch : (within + 1) * self.global_batch].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        k = self.start_batch
        while True:
            yield self.global_indices(k)[self.rank :: self.world_size]
            k += 1

    def __len__(self) -> int:  # infinite; DataLoader only needs this for len(loader)
        return 2**62
