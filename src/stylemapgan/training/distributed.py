"""torch.distributed glue: set-up from torchrun's environment, gradient averaging, rank-aware helpers.

Gradients are averaged explicitly per network before each optimizer step rather than through DDP wrappers:
G is updated through two different paths (z -> image and stylemap -> image), and explicit averaging syncs
the parameters that received a gradient in this step, with no unused-parameter bookkeeping. Every rank runs the
same graph, so that set is the same on all ranks; a parameter without one keeps `grad` None, as in a single
process (a zero gradient instead would still be an Adam step: its moments and step count would drift).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group torchrun describes (WORLD_SIZE/RANK/LOCAL_RANK); single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def average_gradients(module: nn.Module, info: DistInfo) -> None:
    """All-reduce (mean) every gradient of `module` in one flat buffer (parameters with no gradient skipped)."""
    if not info.enabled:
        return
    params = [p for p in module.parameters() if p.requires_grad and p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= info.world_size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p))
        offset += n


def all_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean over ranks. `value` must be on the training device (NCCL reduces CUDA tensors only)."""
    if info.enabled:
        value = value.clone()
        dist.all_reduce(value)
        value /= info.world_size
    return value


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


# How long a rank leaving the group waits for the others (`shutdown(wait_for_others=True)`).
SHUTDOWN_WAIT = timedelta(seconds=120)


def shutdown(info: DistInfo, wait_for_others: bool = False) -> None:
    """Leave the process group. `wait_for_others`: first wait (at most SHUTDOWN_WAIT) until every rank leaves.
    torchrun stops all workers as soon as one exits with an error, so a rank that reported a failure and exited
    at once would cut the others off before they report theirs (rank 0's names the last good checkpoint). Only
    where the ranks stopped together (the end of the run, a non-finite loss all of them saw), so every rank
    arrives; after any other failure a rank may be stuck in a collective, and no rank waits for it."""
    if not (info.enabled and dist.is_initialized()):
        return
    if wait_for_others:
        with contextlib.suppress(RuntimeError):  # a rank that went away: there is nobody left to wait for
            dist.barrier(async_op=True).wait(timeout=SHUTDOWN_WAIT)
    dist.destroy_process_group()
