"""The real-data stream every trainer draws from, and the data loader workers' signal handling.

`RealBatches` yields this rank's real batches at the model's size: the resumable sampler's order (batch k is a
pure function of (seed, k)), a horizontal flip drawn per image from the trainer's own generator (drawn whether or
not flips are on, so the generator's stream is the same either way), moved to the device. Its state is one
number, the index of the next batch: `seek(k)` (a resume) restarts the loader there, so a resumed run reads what
an uninterrupted one reads.

Loader workers (`num_workers > 0`) are processes with the main process's command line, so `pkill -f` or a
SIGTERM / Ctrl-C to the process group reaches them too. PyTorch's worker loop installs a SIGTERM handler that
kills the worker, and the main process then dies on the lost worker in the middle of an iteration, saving
nothing. Here the workers ignore SIGINT and SIGTERM while their stream is open; the main process's handler
(`training.run.StopRequest`) ends the run cleanly, and `close()` shuts the workers down. A worker still exits when
the main process dies (PyTorch's watchdog), and the signals take effect again once its stream is closed or the
main process is exiting, so `multiprocessing`'s terminate at exit still works.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from stylemapgan.data.dataset import collate_images, collate_images_and_labels, fit_labels_to_model, fit_to_model
from stylemapgan.training.config import RunConfig
from stylemapgan.training.distributed import DistInfo
from stylemapgan.training.sampler import ResumableBatchSampler

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _worker_stop_signal(released: Any, signum: int, frame: Any) -> None:
    """In a loader worker: a stop signal is the main process's to handle, unless the stream has let go."""
    if released.value:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _init_worker(released: Any, worker_id: int) -> None:
    """`worker_init_fn`: runs after PyTorch's own handlers are set, and unblocks what `_stop_signals_held` held."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, functools.partial(_worker_stop_signal, released))
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextlib.contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the workers start: they inherit the mask, so a signal sent between their start and
    `_init_worker` waits for the handler instead of killing them; the main process gets its own one afterwards."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


_HELD: list[Any] = []  # the release flags of the open streams


def _release_workers_at_exit() -> None:
    """At exit: the workers of streams nobody closed may be stopped by signals again, before PyTorch's and
    `multiprocessing`'s exit hooks stop them (with SIGTERM where a worker does not finish in time)."""
    for released in _HELD:
        released.value = 1


class RealBatches:
    """This rank's real batches: images [n, 3, s, s] on the device, or with `with_labels` (images, labels), the
    label maps [n, s, s] flipped with their images and passed through `labels_to_model` (on the CPU, e.g. to one-hot
    segmentations) before they move to the device."""

    def __init__(
        self,
        dataset: Dataset,
        batch: int,
        *,
        size: int,
        seed: int,
        rng: torch.Generator,
        hflip: bool,
        num_workers: int,
        device: torch.device,
        dist: DistInfo,
        with_labels: bool = False,
        labels_to_model: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if batch % dist.world_size:
            raise ValueError(f"--batch {batch} must be divisible by the number of processes {dist.world_size}")
        self.dataset = dataset
        self.batch = batch  # global, across ranks
        self.size = size
        self.seed = seed
        self.rng = rng  # the trainer's generator: flips come in its stream, between the trainer's own draws
        self.hflip = hflip
        self.num_workers = num_workers
        self.device = device
        self.dist = dist
        self.with_labels = with_labels
        self.labels_to_model = labels_to_model
        self.position = 0  # the index of the next batch: all the state a resume needs
        self._batches: Iterator[Any] | None = None
        self._released: Any = None  # shared with the workers: set when they may be stopped by signals again

    @classmethod
    def for_run(cls, dataset: Dataset, cfg: RunConfig, size: int, rng: torch.Generator, device: torch.device,
                dist: DistInfo, **labels: Any) -> RealBatches:
        """A trainer's stream: batch, seed, flips and workers from its training config."""
        return cls(dataset, cfg.batch, size=size, seed=cfg.seed, rng=rng, hflip=cfg.hflip, num_workers=cfg.num_workers,
                   device=device, dist=dist, **labels)

    def seek(self, position: int) -> None:
        """Continue at batch `position` (a resume): the loader restarts there when the next batch is drawn."""
        self.close()
        self.position = position

    def _open(self) -> Iterator[Any]:
        sampler = ResumableBatchSampler(
            len(self.dataset), self.batch, rank=self.dist.rank, world_size=self.dist.world_size, seed=self.seed,
            start_batch=self.position,
        )
        workers = self.num_workers > 0
        init = None
        if workers:
            self._released = multiprocessing.RawValue("b", 0)
            _HELD.append(self._released)
            init = functools.partial(_init_worker, self._released)
        loader = DataLoader(
            self.dataset, batch_sampler=sampler, num_workers=self.num_workers,
            collate_fn=collate_images_and_labels if self.with_labels else collate_images,
            pin_memory=self.device.type == "cuda", persistent_workers=workers, worker_init_fn=init,
        )
        with _stop_signals_held() if workers else contextlib.nullcontext():
            batches = iter(loader)
        if workers:  # registered (again) after the loader's own exit hooks, so that it runs before them
            atexit.unregister(_release_workers_at_exit)
            atexit.register(_release_workers_at_exit)
        return batches

    def next(self) -> Any:
        if self._batches is None:
            self._batches = self._open()
        loaded = next(self._batches)
        self.position += 1
        images, labels = loaded if self.with_labels else (loaded, None)
        images = fit_to_model(images, self.size)
        flips = (torch.rand(self.batch, generator=self.rng) < 0.5)[self.dist.rank :: self.dist.world_size]
        if self.hflip:
            images = torch.where(flips.view(-1, 1, 1, 1), images.flip(3), images)
        images = images.to(self.device, non_blocking=True)
        if labels is None:
            return images
        labels = fit_labels_to_model(labels, self.size)
        if self.hflip:  # with their images
            labels = torch.where(flips.view(-1, 1, 1), labels.flip(2), labels)
        if self.labels_to_model is not None:
            labels = self.labels_to_model(labels)
        return images, labels.to(self.device, non_blocking=True)

    def close(self) -> None:
        """Stop the loader's workers (they exit at PyTorch's shutdown message); the next batch starts a new loader
        at `position`."""
        batches, self._batches = self._batches, None
        if self._released is not None:
            self._released.value = 1
            _HELD.remove(self._released)
            self._released = None
        shutdown = getattr(batches, "_shutdown_workers", None)
        if shutdown is not None:  # what dropping the last reference does, without relying on when that happens
            shutdown()
