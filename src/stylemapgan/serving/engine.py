"""Model inference off the event loop: one model worker for every short job, and refine workers beside it.

Torch on a couple of CPU cores is fastest running one forward pass at a time with all its threads, so every
short model call (edits, reconstructions, samples, uploads' encodings) goes through a single-thread executor
(and a lock, for callers outside it). A job carries a `still_wanted` check that runs when the job reaches the
front of the queue: an edit superseded by a newer one from the same page while it waited is dropped without
touching the model. The queue length is bounded.

A refine (hundreds of optimisation steps, up to `max_refine_seconds`) runs on a refine worker of its own
(`run_refine`), so it never holds the model worker: other pages' edits go on while it runs. The refine threads
run at a lower CPU priority (`ServerLimits.refine_niceness`, Linux; the threads torch starts for them inherit
it), so on a busy CPU the edits get the cores first and the refine takes what is left. Both workers share the
`Editor`, whose caches are locked and whose networks are only read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from stylemapgan.editing import BaseEditor
from stylemapgan.editing.errors import EditingError
from stylemapgan.serving.errors import Busy, Superseded
from stylemapgan.serving.limits import ServerLimits
from stylemapgan.serving.store import ImageRecord
from stylemapgan.utils.images import from_uint8

T = TypeVar("T")

log = logging.getLogger("stylemapgan.serving")


def lower_thread_priority(niceness: int) -> None:
    """Raise the calling thread's nice value by `niceness` (Linux: nice is per thread, and threads it starts
    inherit it). Best effort: elsewhere, or if refused, the thread keeps its priority."""
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness))
    except OSError as exc:
        log.info("refine worker keeps its CPU priority (%s)", exc)


class _JobWaiter(asyncio.Future):
    """What a request awaits for a job on a worker thread. Cancelling it (the request went away) cancels the job at
    once, in the same call: a job still queued then never runs. `asyncio.wrap_future` passes a cancellation on
    only at the event loop's next turn, and meanwhile the worker could start the job (the race this closes)."""

    def __init__(self, job: concurrent.futures.Future[Any], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._job = job

    def cancel(self, msg: Any = None) -> bool:
        self._job.cancel()  # a no-op once the job runs: its result is then dropped
        return super().cancel(msg=msg)


def _await_job(job: concurrent.futures.Future[T]) -> asyncio.Future[T]:
    """An awaitable for `job` whose cancellation reaches the worker's queue at once (see `_JobWaiter`)."""
    loop = asyncio.get_running_loop()
    waiter = _JobWaiter(job, loop)

    def copy_outcome(done: concurrent.futures.Future[T]) -> None:  # on the event loop
        if waiter.done():
            return
        if done.cancelled():
            asyncio.Future.cancel(waiter)
        elif done.exception() is not None:
            waiter.set_exception(done.exception())
        else:
            waiter.set_result(done.result())

    def on_done(done: concurrent.futures.Future[T]) -> None:  # on the worker thread (or here, if cancelled)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody awaits the outcome
            loop.call_soon_threadsafe(copy_outcome, done)

    job.add_done_callback(on_done)
    return waiter


@dataclass(frozen=True)
class Timing:
    queue_ms: float  # waiting for the worker
    run_ms: float  # on the worker (model + conversion to uint8)


class InferenceEngine:
    """Wraps an editor (any family's `BaseEditor`); `await engine.run(fn)` runs `fn(editor)` on the model worker, `await
    engine.run_refine(fn)` on a refine worker."""

    def __init__(self, editor: BaseEditor, max_pending: int = 32, refine_workers: int = 1,
                 refine_niceness: int = 10) -> None:
        self.editor = editor
        self.max_pending = max_pending
        self.lock = threading.Lock()  # held around every call on the model worker
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stylemapgan-inference")
        self._refine_executor = ThreadPoolExecutor(
            max_workers=max(1, refine_workers), thread_name_prefix="stylemapgan-refine",
            initializer=lower_thread_priority, initargs=(refine_niceness,),
        )
        self._count_lock = threading.Lock()
        self._pending = 0  # model worker: queued or running (what max_pending bounds)
        self._refining = 0  # refine workers: queued or running
        self.completed = 0
        self.refines_completed = 0
        self.superseded = 0
        self.rejected = 0

    @property
    def pending(self) -> int:
        """Jobs queued or running, on every worker."""
        with self._count_lock:
            return self._pending + self._refining

    @property
    def refining(self) -> int:
        """Refine jobs queued or running."""
        with self._count_lock:
            return self._refining

    async def run(
        self, fn: Callable[[BaseEditor], T], still_wanted: Callable[[], bool] | None = None
    ) -> tuple[T, Timing]:
        """Queue `fn` on the model worker; raises Busy when its queue is full and Superseded when the job went
        stale while queued."""
        with self._count_lock:
            if self._pending >= self.max_pending:
                self.rejected += 1
                raise Busy()
            self._pending += 1
        queued = time.perf_counter()

        def job() -> tuple[T, Timing]:
            started = time.perf_counter()
            if still_wanted is not None and not still_wanted():
                with self._count_lock:
                    self.superseded += 1
                raise Superseded()
            with self.lock, torch.no_grad():
                result = fn(self.editor)
            done = time.perf_counter()
            with self._count_lock:
                self.completed += 1
            return result, Timing((started - queued) * 1000, (done - started) * 1000)

        def release(_: object) -> None:
            with self._count_lock:
                self._pending -= 1

        # Counted down when the job ends in any way, including being cancelled before it started (the awaiting
        # request went away): a count kept inside `job` would leak then, until every request got Busy.
        future = self._executor.submit(job)
        future.add_done_callback(release)
        return await _await_job(future)

    async def run_refine(self, fn: Callable[[BaseEditor], T]) -> tuple[T, Timing]:
        """`fn(editor)` on a refine worker, beside the model worker (never holding it). The caller bounds how
        many run at once (`ServerLimits.concurrent_refines`); one more waits for a free refine worker."""
        with self._count_lock:
            self._refining += 1
        queued = time.perf_counter()

        def job() -> tuple[T, Timing]:
            started = time.perf_counter()
            with torch.no_grad():  # the optimisation enables gradients for its own steps
                result = fn(self.editor)
            done = time.perf_counter()
            with self._count_lock:
                self.refines_completed += 1
            return result, Timing((started - queued) * 1000, (done - started) * 1000)

        def release(_: object) -> None:
            with self._count_lock:
                self._refining -= 1

        future = self._refine_executor.submit(job)
        future.add_done_callback(release)
        return await _await_job(future)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._refine_executor.shutdown(wait=True, cancel_futures=True)

    def stats(self) -> dict[str, Any]:
        info = self.editor.cache_info()
        with self._count_lock:
            return {"pending": self._pending, "refining": self._refining, "completed": self.completed,
                    "refines_completed": self.refines_completed, "superseded": self.superseded,
                    "rejected_busy": self.rejected, "encodings_cached": info.size,
                    "encoding_capacity": info.capacity, "encoder_images": info.encoder_images}


def encoding_bytes(editor: BaseEditor) -> int:
    """Worst-case memory of one cached encoding: the code plus, for an editor that caches per-layer style
    tensors beside it (a StyleMapGAN w+ edit), those too; measured once through the editor (then its cache is
    emptied)."""
    with torch.no_grad():
        handle = editor.add_code(torch.zeros(1, *editor.code_shape))
        tensors = [editor.code(handle)]
        styles = getattr(editor, "styles", None)
        if callable(styles):
            tensors += list(styles(handle))
    editor.clear_cache()
    return sum(t.numel() * t.element_size() for t in tensors)


def bound_editor_caches(editor: BaseEditor, limits: ServerLimits, gallery_images: int) -> None:
    """Size the editor's caches to the server's memory budget, whatever editor the app was given: the
    encoding cache's entry count needs one entry measured through this model, so it cannot be chosen before
    the editor exists (see `ServerLimits.encoding_capacity`). An editor with a modulation cache (fast edits)
    gets its byte budget too."""
    editor.cache_size = limits.encoding_capacity(encoding_bytes(editor), gallery_images)
    if hasattr(editor, "modulation_cache_bytes"):
        editor.modulation_cache_bytes = limits.modulation_cache_bytes


def ensure_handle(editor: BaseEditor, record: ImageRecord) -> str:
    """The record's encoding handle, encoding it again (or re-adding its code) if the editor evicted it.
    Runs on the worker thread. A record without a known code goes through the family's encoder (`encode`),
    whose one-line `EditingError` (a model without an encoder) reaches the page as a 400."""
    if record.handle is not None:
        try:
            editor.code(record.handle)  # a cache hit also marks it recently used
            return record.handle
        except EditingError:
            pass
    if record.code is not None:
        record.handle = editor.add_code(record.code)
    else:
        record.handle = editor.encode(from_uint8(record.pixels))
    return record.handle


def rendered(output: Any) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """An editor call's images [N, 3, H, W], and when it hands them back, the segmentation logits [N, K, H, W]
    and the codes it rendered (a family whose edits return a result with `images`, `segmentation`, `latents`);
    a composed render (parts removed) has no code that alone reproduces it, so none is given for it."""
    images = getattr(output, "images", output)
    segmentation = getattr(output, "segmentation", None)
    codes = getattr(output, "latents", None)
    if getattr(output, "composition_mask", None) is not None:
        codes = None
    return images, segmentation, codes


def segmentation_labels(segmentation: torch.Tensor) -> np.ndarray:
    """Logits [N, K, H, W] -> uint8 [N, H, W] part per pixel (argmax)."""
    return segmentation.argmax(dim=1).to(torch.uint8).cpu().numpy()


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3]."""
    from stylemapgan.utils.images import to_uint8

    return to_uint8(images)
