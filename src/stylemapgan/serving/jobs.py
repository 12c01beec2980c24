"""A model request's shared prologue and its reply, written once for every route that runs the model.

`await Job.open(request, EditIn, kind="edit", check=...)`: start the clock, find the session, read and validate
the JSON body, apply the route's checks against the limits, and (for a body that carries `seq`) claim its
place as the page's latest request of that kind. The route then finds its images, runs one job on the worker
(`job.run`; a refine: `job.run_refine`) and answers with `job.result_reply` or `job.png_reply`, which add the
timing headers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

from stylemapgan.editing import BaseEditor
from stylemapgan.serving.bodies import Sequenced, body_limit, parse_json, read_limited
from stylemapgan.serving.engine import Timing
from stylemapgan.serving.errors import ApiError
from stylemapgan.serving.state import ServerState, current_session, server_state
from stylemapgan.serving.store import ImageRecord, Session, new_id
from stylemapgan.utils.images import png_bytes

B = TypeVar("B", bound=BaseModel)
T = TypeVar("T")


def claim(session: Session, body: BaseModel, kind: str) -> Callable[[], bool] | None:
    """Register the request; refuse it (409) if a newer one of its kind from the same page was seen. Returns
    the check a queued job makes before it runs (None: the body carries no `seq`, nothing to supersede it)."""
    if not isinstance(body, Sequenced) or body.seq is None:
        return None
    channel = f"{body.client}:{kind}"
    seq = body.seq
    if not session.claim(channel, seq):
        raise ApiError(409, f"{kind} #{seq}: superseded by a newer request")
    return lambda: session.is_latest(channel, seq)


def timing_headers(timing: Timing, started: float, encode_ms: float = 0.0) -> dict[str, str]:
    """Where the time went (queue, model, PNG encoding, total), for the page's status line and benchmarks."""
    total = (time.perf_counter() - started) * 1000
    return {
        "Server-Timing": f"queue;dur={timing.queue_ms:.2f}, infer;dur={timing.run_ms:.2f}, "
                         f"encode;dur={encode_ms:.2f}, total;dur={total:.2f}",
        "X-Server-Ms": f"{total:.2f}",
        "X-Infer-Ms": f"{timing.run_ms:.2f}",
        "X-Queue-Ms": f"{timing.queue_ms:.2f}",
        "Cache-Control": "no-store",
    }


@dataclass
class Job(Generic[B]):
    """One model request past its prologue: its state, session, validated body and latest-wins check."""

    state: ServerState
    session: Session
    body: B
    started: float  # perf_counter when the request reached its route
    still_wanted: Callable[[], bool] | None  # None: runs whatever newer requests arrive

    @classmethod
    async def open(
        cls, request: Request, model: type[B], kind: str | None = None,
        check: Callable[[B, ServerState], None] | None = None,
    ) -> Job[B]:
        """The prologue. `kind` names the latest-wins channel of a sequenced body; `check(body, state)` raises
        an `ApiError` for a body the limits refuse, before it claims its place (a refused request supersedes
        nothing)."""
        started = time.perf_counter()
        state, session = server_state(request), current_session(request)
        body = parse_json(model, await read_limited(request, body_limit(model, state.limits, state.size),
                                                    "request body"))
        if check is not None:
            check(body, state)
        still_wanted = claim(session, body, kind) if kind is not None else None
        return cls(state, session, body, started, still_wanted)

    @property
    def seq(self) -> int | None:
        return self.body.seq if isinstance(self.body, Sequenced) else None

    def find(self, image_id: str) -> ImageRecord:
        return self.state.find(self.session, image_id)

    async def run(self, fn: Callable[[BaseEditor], T]) -> tuple[T, Timing]:
        """`fn(editor)` on the worker; dropped (409) if a newer request of its kind arrives while it waits."""
        return await self.state.run_model(fn, self.still_wanted)

    async def run_refine(self, fn: Callable[[BaseEditor], T]) -> tuple[T, Timing]:
        """`fn(editor)` on a refine worker: it never holds the model worker other pages' edits wait for."""
        return await self.state.run_refine(fn)

    def headers(self, timing: Timing, encode_ms: float = 0.0) -> dict[str, str]:
        return timing_headers(timing, self.started, encode_ms)

    async def png_reply(self, pixels: np.ndarray, timing: Timing, extra: dict[str, str] | None = None) -> Response:
        """`pixels` as a PNG with the timing headers (and `extra`)."""
        t0 = time.perf_counter()
        png = await self.state.in_thread(png_bytes, pixels)
        headers = {**self.headers(timing, (time.perf_counter() - t0) * 1000), **(extra or {})}
        return Response(png, media_type="image/png", headers=headers)

    async def result_reply(
        self, pixels: np.ndarray, name: str, timing: Timing, code: torch.Tensor | None = None,
        segmentation: np.ndarray | None = None, meta: dict[str, Any] | None = None, photo: Any = None,
    ) -> Response:
        """Keep the result (downloadable, re-usable) and answer its PNG; its id and the request's seq in headers.
        `code`: the code it was rendered from, when known exactly (using the result as a source then needs no
        encoder); `segmentation`: its part per pixel (uint8 [H, W]), for a model that segments; `photo`: the
        source's whole photo (an aligned upload's), so the result can be downloaded pasted back."""
        record = ImageRecord(new_id("r"), name, "result", pixels, code=code, segmentation=segmentation,
                             meta=dict(meta or {}), photo=photo)
        self.state.sessions.results.put(self.session.id, record.id, record)
        extra = {"X-Image-Id": record.id}
        if self.seq is not None:
            extra["X-Seq"] = str(self.seq)
        return await self.png_reply(pixels, timing, extra)
