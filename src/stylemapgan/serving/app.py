"""The web editor's HTTP layer: a FastAPI app over one `Editor`, with per-browser sessions.

Routes (JSON errors are `{"error": "one line"}`, 4xx for the request, 503 when busy, 500 for a bug; 409 means
"superseded by a newer request"):

    GET  /                                   the page (static/index.html); /static/NAME its script and style
    GET  /api/info                           model, gallery, directions, limits, this session's uploads
    POST /api/upload?fit=crop|pad&name=N     raw image body (PNG/JPEG/WebP) -> {"id": ...}; encoded at once
    GET  /api/images/ID                      model-sized PNG (gallery, own uploads, own results)
    GET  /api/images/ID/download             the same as an attachment
    GET  /api/images/ID/stylemap.npz         its stylemap (exact for samples, else the encoder's)
    GET  /api/images/ID/parts?names=hair     a part mask (gallery images of a dataset with part masks)
    POST /api/images/ID/keep                 copy a result into the session's uploads (to edit it further)
    DELETE /api/images/ID                    forget an upload
    POST /api/edit | reconstruct | attributes | interpolate   JSON -> PNG (timings in headers)
    POST /api/refine                         JSON {id, steps} -> a new upload whose stylemap is optimised
                                             towards the image (hybrid projection), with MSE before/after;
                                             {"id": null, "improved": false, ...} if no step beat the start
    POST /api/samples                        JSON -> {"images": [...]}
    GET  /api/stats                          queue and cache counters

Requests that another web page made the browser send (Sec-Fetch-Site cross-site or same-site, or an Origin
other than this server on a POST or DELETE) are refused with 403 before they get a session: any page the user
visits could otherwise queue edits on the one worker or use up the sessions. Opening the page from a link is
allowed. Scripts and curl send neither header and are unaffected.

No model maths here: every image operation is one `Editor` call on the inference thread (see engine.py).
Requests that carry `seq` (and `client`, one id per page) are "latest wins" per page and request kind: an
older one arriving late is refused at once, and one overtaken while queued is dropped before it runs.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import anyio
import numpy as np
import torch
from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from stylemapgan.editing import (
    Direction,
    EditingError,
    Editor,
    PartMask,
    ProjectionOptions,
    Refinement,
    mask_from_parts,
)
from stylemapgan.editing.images import stylemap_npz_bytes
from stylemapgan.serving.engine import InferenceEngine, Timing, encoding_bytes, ensure_handle, to_pixels
from stylemapgan.serving.errors import ApiError, Busy, Superseded
from stylemapgan.serving.gallery import Gallery
from stylemapgan.serving.limits import ServerLimits
from stylemapgan.serving.store import ID_PATTERN, ImageRecord, Session, SessionStore, new_id
from stylemapgan.serving.uploads import check_declared_type, decode_mask, decode_upload, max_mask_chars, safe_name
from stylemapgan.utils.images import from_uint8, png_bytes

log = logging.getLogger("stylemapgan.serving")

SESSION_COOKIE = "stylemapgan_session"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; "
                               "style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
}

ImageId = Annotated[str, Field(pattern=ID_PATTERN, max_length=48)]
M = TypeVar("M", bound=BaseModel)


# ---- request bodies -------------------------------------------------------------------------------------------


class Sequenced(BaseModel):
    """Latest-wins bookkeeping: `client` identifies one open page, `seq` increases per request kind."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    seq: int | None = Field(None, ge=0, le=2**53)
    client: str = Field("", max_length=64, pattern=r"^[A-Za-z0-9_-]*$")


class ReferenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: ImageId
    mask: str = Field(min_length=1)  # PNG (data: URL or base64), model size; alpha (or luminance) = weight
    shift: tuple[int, int] = (0, 0)  # pixels at model size, x right, y down


class EditIn(Sequenced):
    source: ImageId
    references: list[ReferenceIn] = Field(min_length=1)
    mode: Literal["w", "w_plus"] = "w"
    alpha: float = Field(1.0, ge=0.0, le=1.0)
    feather: float = Field(0.0, ge=0.0, le=256.0)
    pool: Literal["max", "avg-threshold", "avg"] | None = None


class ImageIn(Sequenced):
    id: ImageId


class AttributesIn(Sequenced):
    id: ImageId
    strengths: dict[Annotated[str, Field(max_length=128)], Annotated[float, Field(ge=-1000, le=1000)]] = Field(
        default_factory=dict, max_length=256
    )


class InterpolateIn(Sequenced):
    a: ImageId
    b: ImageId
    frames: int = Field(9, ge=2, le=256)


class RefineIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    id: ImageId
    steps: int | None = Field(None, ge=1)  # at most limits.max_refine_steps; None: DEFAULT_REFINE_STEPS (capped)


class SamplesIn(Sequenced):
    seed: int = Field(0, ge=0, le=2**31 - 1)
    trunc: float = Field(1.0, ge=0.0, le=2.0)
    count: int = Field(4, ge=1, le=64)


# ---- server state ---------------------------------------------------------------------------------------------


@dataclass
class ServerState:
    engine: InferenceEngine
    sessions: SessionStore
    gallery: Gallery
    directions: dict[str, Direction]
    limits: ServerLimits
    model_name: str
    direction_range: float
    static: dict[str, tuple[bytes, str]]
    upload_slots: anyio.Semaphore
    cpu_limiter: anyio.CapacityLimiter
    started: float = field(default_factory=time.time)
    refines_running: int = 0  # changed only on the event loop

    @property
    def editor(self) -> Editor:
        return self.engine.editor

    @property
    def size(self) -> int:
        return self.editor.size

    def find(self, session: Session, image_id: str) -> ImageRecord:
        """An image visible to this session: the gallery, its uploads, its results. Nothing else exists."""
        record = self.gallery.get(image_id)
        if record is None:
            store = {"u": self.sessions.uploads, "r": self.sessions.results}.get(image_id[:1])
            record = store.get(session.id, image_id) if store is not None else None
        if record is None:
            raise ApiError(404, f"image {image_id}: unknown, expired or not in this session; pick or upload it again")
        return record


def load_static() -> dict[str, tuple[bytes, str]]:
    """The page's files, read once from the package folder; requests only ever index this dict."""
    folder = resources.files("stylemapgan.serving") / "static"
    files: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in STATIC_TYPES:
            files[entry.name] = (entry.read_bytes(), STATIC_TYPES[suffix])
    return files


DEFAULT_REFINE_STEPS = 100


def refine_options(steps: int = DEFAULT_REFINE_STEPS, time_limit_s: float | None = None) -> ProjectionOptions:
    """The page's Refine: MSE only (~20 ms a step for the bundled model on 2 cores, where LPIPS would cost more
    than the generator), Adam at the projection default lr; the time limit bounds how long it holds the one
    worker every other request waits for. `benchmarks/bench_refine.py` measures it."""
    return ProjectionOptions(steps=steps, perceptual_weight=0.0, time_limit_s=time_limit_s)


def stylemap_origin(record: ImageRecord) -> str:
    """Where a record's stylemap comes from: exact (a sample's own), refined (optimised), encoder (E(image))."""
    if record.stylemap is None:
        return "encoder"
    return str(record.meta.get("stylemap", "exact"))


def cache_policy(record: ImageRecord) -> str:
    """Uploads and results have random ids, never reused: the browser may keep them. Gallery ids (g_0, g_1, ...)
    mean other images after a restart with another gallery, so those are checked again each time."""
    return "no-cache" if record.kind == "gallery" else "private, max-age=3600"


def from_another_site(request: Request) -> bool:
    """Did another web page make the browser send this? (See the module docstring.)"""
    fetch_site = request.headers.get("sec-fetch-site", "").lower()
    if fetch_site in ("cross-site", "same-site"):  # same-site: another port of localhost is another app
        opens_page = request.url.path == "/" and request.method == "GET" and (
            request.headers.get("sec-fetch-mode", "").lower() == "navigate")
        return not opens_page
    origin = request.headers.get("origin")
    if origin is not None and request.method not in ("GET", "HEAD", "OPTIONS"):
        return urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()
    return False


def host_allowed(host_header: str, allowed: Sequence[str]) -> bool:
    """Host header (without port) in the allowed list: a DNS-rebinding page cannot talk to a local server."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return "*" in allowed or host in allowed


def _validation_message(exc: ValidationError | RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
    message = str(first.get("msg", "invalid value"))
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{where or 'request'}: {message}{more}"


async def read_limited(request: Request, limit: int, what: str) -> bytes:
    """The request body, refusing (413) as soon as it exceeds `limit` bytes, declared or streamed."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise ApiError(400, f"{what}: bad Content-Length header") from None
        if length > limit:
            raise ApiError(413, f"{what}: {length:,} bytes; the limit is {limit:,}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ApiError(413, f"{what}: more than {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(model: type[M], body: bytes) -> M:
    if not body:
        raise ApiError(400, "request body: expected JSON, got nothing")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        return _raise_validation(exc)


def _raise_validation(exc: ValidationError) -> Any:
    if any(e.get("type") == "json_invalid" for e in exc.errors()):
        raise ApiError(400, "request body: malformed JSON") from None
    raise ApiError(422, _validation_message(exc)) from None


# ---- the app --------------------------------------------------------------------------------------------------


def create_app(
    editor: Editor,
    *,
    gallery: Gallery | None = None,
    directions: dict[str, Direction] | None = None,
    limits: ServerLimits | None = None,
    allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
    model_name: str = "model",
    direction_range: float = 10.0,
    warm_gallery: bool = True,
) -> FastAPI:
    """The editor app. `allowed_hosts`: the Host names it answers to (a DNS-rebinding page cannot reach a local
    server); ["*"] answers to any, for a server bound to every interface."""
    limits = limits or ServerLimits()
    gallery = gallery or Gallery()
    editor.cache_size = limits.encoding_capacity(encoding_bytes(editor), len(gallery))  # bounded memory
    editor.modulation_cache_bytes = int(limits.modulation_cache_mb * 1024 * 1024)
    engine = InferenceEngine(editor, limits.max_pending_jobs)
    state = ServerState(
        engine=engine,
        sessions=SessionStore(limits),
        gallery=gallery,
        directions=dict(directions or {}),
        limits=limits,
        model_name=model_name,
        direction_range=float(direction_range),
        static=load_static(),
        upload_slots=anyio.Semaphore(max(1, limits.concurrent_uploads)),
        cpu_limiter=anyio.CapacityLimiter(4),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warmup = asyncio.create_task(_warm_gallery(state)) if warm_gallery and state.gallery.records else None
        yield
        if warmup is not None:
            warmup.cancel()
        await anyio.to_thread.run_sync(engine.shutdown)

    app = FastAPI(title="stylemapgan editor", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.serving = state
    allowed = [h.lower() for h in allowed_hosts]

    # ---- middleware and error shapes ----

    @app.middleware("http")
    async def sessions_and_headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        if not host_allowed(request.headers.get("host", ""), allowed):
            return JSONResponse({"error": "host not allowed"}, status_code=400, headers=SECURITY_HEADERS)
        if from_another_site(request):
            return JSONResponse({"error": "refused: a request from another site"}, status_code=403,
                                headers=SECURITY_HEADERS)
        created = False
        if request.url.path.startswith("/static/") or request.url.path == "/api/stats":
            session = None  # stateless: a script or a crawler asking for these does not use up a session
        else:
            session, created = state.sessions.get_or_create(request.cookies.get(SESSION_COOKIE))
        request.state.session = session
        response: Response = await call_next(request)
        if created and session is not None:
            response.set_cookie(SESSION_COOKIE, session.id, httponly=True, samesite="strict", path="/")
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        body: dict[str, Any] = {"error": exc.message}
        if exc.status == 409:
            body["superseded"] = True
        return JSONResponse(body, status_code=exc.status)

    @app.exception_handler(EditingError)
    async def on_editing_error(request: Request, exc: EditingError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _validation_message(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, status_code=500,
                            headers=SECURITY_HEADERS)  # this response bypasses the middleware

    # ---- helpers bound to this app ----

    def session_of(request: Request) -> Session:
        return request.state.session

    async def body_of(request: Request, model: type[M]) -> M:
        extra = limits.max_references * max_mask_chars(state.size) if model is EditIn else 0
        return parse_json(model, await read_limited(request, 64 * 1024 + extra, "request body"))

    def claim(session: Session, body: Sequenced, kind: str) -> Callable[[], bool] | None:
        """Register the request; refuse it (409) if a newer one of its kind from the same page was seen."""
        if body.seq is None:
            return None
        channel = f"{body.client}:{kind}"
        seq = body.seq
        if not session.claim(channel, seq):
            raise ApiError(409, f"{kind} #{seq}: superseded by a newer request")
        return lambda: session.is_latest(channel, seq)

    async def on_worker(fn: Callable[[Editor], Any], still_wanted: Callable[[], bool] | None = None) -> Any:
        try:
            return await engine.run(fn, still_wanted)
        except Busy:
            raise ApiError(503, "the model is busy (queue full); try again in a moment") from None
        except Superseded:
            raise ApiError(409, "superseded by a newer request") from None
        except EditingError as exc:
            raise ApiError(400, str(exc)) from None

    async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args, limiter=state.cpu_limiter)

    def timing_headers(timing: Timing, started: float, encode_ms: float = 0.0) -> dict[str, str]:
        total = (time.perf_counter() - started) * 1000
        return {
            "Server-Timing": f"queue;dur={timing.queue_ms:.2f}, infer;dur={timing.run_ms:.2f}, "
                             f"encode;dur={encode_ms:.2f}, total;dur={total:.2f}",
            "X-Server-Ms": f"{total:.2f}",
            "X-Infer-Ms": f"{timing.run_ms:.2f}",
            "X-Queue-Ms": f"{timing.queue_ms:.2f}",
            "Cache-Control": "no-store",
        }

    async def image_result(
        session: Session, pixels: np.ndarray, kind: str, name: str, timing: Timing, started: float,
        seq: int | None = None,
    ) -> Response:
        """Keep the result (downloadable, re-usable) and answer its PNG with the timings."""
        record = ImageRecord(new_id("r"), name, kind, pixels)
        state.sessions.results.put(session.id, record.id, record)
        t0 = time.perf_counter()
        png = await in_thread(png_bytes, pixels)
        headers = timing_headers(timing, started, (time.perf_counter() - t0) * 1000)
        headers["X-Image-Id"] = record.id
        if seq is not None:
            headers["X-Seq"] = str(seq)
        return Response(png, media_type="image/png", headers=headers)

    # ---- page ----

    def static_response(name: str) -> Response:
        entry = state.static.get(name)
        if entry is None:
            raise ApiError(404, f"{name}: no such file")
        return Response(entry[0], media_type=entry[1], headers={"Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return static_response("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: Annotated[str, PathParam(max_length=64)]) -> Response:
        return static_response(name)

    # ---- information ----

    @app.get("/api/info")
    async def info(request: Request) -> dict[str, Any]:
        session = session_of(request)
        cfg = editor.config
        return {
            "model": {"name": state.model_name, "id": editor.model_id, "size": cfg.size,
                      "stylemap_shape": list(cfg.stylemap_shape), "device": str(editor.device)},
            "modes": ["w", "w_plus"],
            "parts": [p for p in state.gallery.part_names if p != "background"],
            "directions": [{"name": name, "range": state.direction_range} for name in state.directions],
            "gallery": {"source": state.gallery.source, "images": [r.describe() for r in state.gallery.records]},
            "uploads": [r.describe() for r in state.sessions.uploads.values(session.id)],
            "limits": limits.public(),
        }

    @app.get("/api/stats")
    async def stats() -> dict[str, Any]:
        return {**engine.stats(), **state.sessions.counts(), "uptime_s": round(time.time() - state.started, 1)}

    # ---- images ----

    @app.post("/api/upload")
    async def upload(
        request: Request,
        fit: Literal["crop", "pad"] = "crop",
        name: Annotated[str, Query(max_length=255)] = "",
    ) -> dict[str, Any]:
        session = session_of(request)
        check_declared_type(request.headers.get("content-type"))
        async with state.upload_slots:  # bounds the memory held by bodies and decoded pixels at once
            try:
                with anyio.fail_after(limits.upload_read_seconds):
                    data = await read_limited(request, limits.max_upload_bytes, "upload")
            except TimeoutError:
                raise ApiError(408, f"upload: the body took longer than {limits.upload_read_seconds:g} s") from None
            pixels, (width, height) = await in_thread(
                decode_upload, data, state.size, fit, (0, 0, 0), limits.max_upload_pixels
            )
        record = ImageRecord(new_id("u"), safe_name(name), "upload", pixels,
                             meta={"width": width, "height": height, "fit": fit})
        await on_worker(lambda ed: ensure_handle(ed, record))  # encode now: later edits only decode
        state.sessions.uploads.put(session.id, record.id, record)
        return record.describe()

    @app.get("/api/images/{image_id}")
    async def image(request: Request, image_id: ImageId) -> Response:
        record = state.find(session_of(request), image_id)
        png = await in_thread(png_bytes, record.pixels)
        return Response(png, media_type="image/png", headers={"Cache-Control": cache_policy(record)})

    @app.get("/api/images/{image_id}/download")
    async def download(request: Request, image_id: ImageId) -> Response:
        record = state.find(session_of(request), image_id)
        png = await in_thread(png_bytes, record.pixels)
        return Response(png, media_type="image/png",
                        headers={"Content-Disposition": f'attachment; filename="stylemapgan-{record.id}.png"',
                                 "Cache-Control": "no-store"})

    @app.get("/api/images/{image_id}/stylemap.npz")
    async def stylemap(request: Request, image_id: ImageId) -> Response:
        record = state.find(session_of(request), image_id)

        def work(ed: Editor) -> torch.Tensor:
            return ed.stylemap(ensure_handle(ed, record)).detach().cpu().clone()

        sm, _ = await on_worker(work)
        meta = {"model_id": editor.model_id, "image_id": record.id, "kind": record.kind,
                "stylemap": stylemap_origin(record),
                "note": "exact: the sample's own stylemap; encoder: E(image) of the shown image; "
                        "refined: E(image) optimised towards the image"}
        return Response(await in_thread(stylemap_npz_bytes, sm, meta), media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="stylemapgan-{record.id}.npz"',
                                 "Cache-Control": "no-store"})

    @app.get("/api/images/{image_id}/parts")
    async def parts(
        request: Request, image_id: ImageId, names: Annotated[str, Query(min_length=1, max_length=256)]
    ) -> Response:
        record = state.find(session_of(request), image_id)
        if record.label_map is None:
            raise ApiError(404, f"image {image_id}: has no part masks (only gallery images of a dataset with masks)")
        wanted = tuple(n.strip() for n in names.replace(",", "+").replace(" ", "+").split("+") if n.strip())
        if not wanted:
            raise ApiError(400, "names: give part names such as hair or hair+eyes")

        def render() -> bytes:
            mask = mask_from_parts([record.label_map], state.gallery.part_names, PartMask(wanted), state.size)
            return png_bytes((mask[0, 0].numpy() * 255).astype(np.uint8))

        try:
            png = await in_thread(render)
        except EditingError as exc:
            raise ApiError(400, str(exc)) from None
        return Response(png, media_type="image/png", headers={"Cache-Control": cache_policy(record)})

    @app.post("/api/images/{image_id}/keep")
    async def keep(request: Request, image_id: ImageId) -> dict[str, Any]:
        session = session_of(request)
        record = state.find(session, image_id)
        copy = ImageRecord(new_id("u"), record.name, "upload", record.pixels, record.stylemap, record.label_map,
                           record.handle, {"from": record.kind, "stylemap": stylemap_origin(record)})
        state.sessions.uploads.put(session.id, copy.id, copy)
        return copy.describe()

    @app.delete("/api/images/{image_id}")
    async def forget(request: Request, image_id: ImageId) -> Response:
        if not image_id.startswith("u_") or not state.sessions.uploads.remove(session_of(request).id, image_id):
            raise ApiError(404, f"image {image_id}: not one of this session's uploads")
        return Response(status_code=204)

    # ---- model calls ----

    @app.post("/api/edit")
    async def edit(request: Request) -> Response:
        started = time.perf_counter()
        session = session_of(request)
        body = await body_of(request, EditIn)
        if len(body.references) > limits.max_references:
            raise ApiError(422, f"references: at most {limits.max_references}")
        bound = round(limits.max_shift_fraction * state.size)
        for i, ref in enumerate(body.references):
            if any(abs(v) > bound for v in ref.shift):
                raise ApiError(422, f"references.{i}.shift: each component must lie in [-{bound}, {bound}]")
        still_wanted = claim(session, body, "edit")
        source = state.find(session, body.source)
        refs = [state.find(session, r.id) for r in body.references]

        def decode_all() -> list[torch.Tensor]:
            return [torch.from_numpy(decode_mask(r.mask, state.size, f"references.{i}.mask"))
                    for i, r in enumerate(body.references)]

        masks = await in_thread(decode_all)

        def work(ed: Editor) -> np.ndarray:
            out = ed.local_edit(
                ensure_handle(ed, source), [ensure_handle(ed, r) for r in refs], masks,
                shifts=[tuple(r.shift) for r in body.references], mode=body.mode, alphas=body.alpha,
                pool=body.pool, feather_px=body.feather,
            )
            return to_pixels(out)[0]

        pixels, timing = await on_worker(work, still_wanted)
        return await image_result(session, pixels, "result", "edit", timing, started, body.seq)

    @app.post("/api/reconstruct")
    async def reconstruct(request: Request) -> Response:
        started = time.perf_counter()
        session = session_of(request)
        body = await body_of(request, ImageIn)
        still_wanted = claim(session, body, "reconstruct")
        record = state.find(session, body.id)
        pixels, timing = await on_worker(lambda ed: to_pixels(ed.reconstruct(ensure_handle(ed, record)))[0],
                                         still_wanted)
        return await image_result(session, pixels, "result", "reconstruction", timing, started, body.seq)

    @app.post("/api/refine")
    async def refine(request: Request) -> JSONResponse:
        started = time.perf_counter()
        session = session_of(request)
        body = await body_of(request, RefineIn)
        steps = min(DEFAULT_REFINE_STEPS, limits.max_refine_steps) if body.steps is None else body.steps
        if steps > limits.max_refine_steps:
            raise ApiError(422, f"steps: at most {limits.max_refine_steps}")
        record = state.find(session, body.id)
        options = refine_options(steps, limits.max_refine_seconds)

        def work(ed: Editor) -> tuple[Refinement, torch.Tensor]:
            refined = ed.refine(ensure_handle(ed, record), from_uint8(record.pixels), options)
            return refined, ed.stylemap(refined.handle).detach().cpu().clone()

        # a refine holds the one worker for up to max_refine_seconds: a bounded number at once, so a burst of
        # them cannot stall every page's edits for minutes
        if state.refines_running >= max(1, limits.concurrent_refines):
            raise ApiError(503, "refine: another refine is running; try again when it has finished")
        state.refines_running += 1
        try:
            (refined, stylemap), timing = await on_worker(work)
        finally:
            state.refines_running -= 1
        scores = {"steps": refined.steps, "mse_before": round(refined.mse_before, 6),
                  "mse_after": round(refined.mse_after, 6)}
        if not refined.improved:  # nothing to keep: no copy that only claims to be refined
            return JSONResponse({"id": None, "improved": False, **scores}, headers=timing_headers(timing, started))
        copy = ImageRecord(new_id("u"), f"{record.name} (refined)", "upload", record.pixels, stylemap, record.label_map,
                           refined.handle, {"from": record.kind, "stylemap": "refined", **scores})
        state.sessions.uploads.put(session.id, copy.id, copy)
        return JSONResponse({**copy.describe(), "improved": True}, headers=timing_headers(timing, started))

    @app.post("/api/attributes")
    async def attributes(request: Request) -> Response:
        started = time.perf_counter()
        session = session_of(request)
        body = await body_of(request, AttributesIn)
        if not state.directions:
            raise ApiError(404, "this server has no attribute directions (start it with --directions FILE)")
        unknown = sorted(set(body.strengths) - set(state.directions))
        if unknown:
            raise ApiError(422, f"strengths: unknown direction(s) {', '.join(unknown[:5])}")
        still_wanted = claim(session, body, "attributes")
        record = state.find(session, body.id)
        vectors = [(state.directions[name].vector, value) for name, value in body.strengths.items() if value]

        def work(ed: Editor) -> np.ndarray:
            combined = torch.zeros(ed.config.stylemap_shape)
            for vector, value in vectors:  # the directions' weighted sum: one call applies them all
                combined = combined + value * vector.float().cpu()
            return to_pixels(ed.apply_direction(ensure_handle(ed, record), combined, 1.0))[0]

        pixels, timing = await on_worker(work, still_wanted)
        return await image_result(session, pixels, "result", "attributes", timing, started, body.seq)

    @app.post("/api/interpolate")
    async def interpolate(request: Request) -> Response:
        started = time.perf_counter()
        session = session_of(request)
        body = await body_of(request, InterpolateIn)
        if body.frames > limits.max_interpolation_frames:
            raise ApiError(422, f"frames: at most {limits.max_interpolation_frames}")
        still_wanted = claim(session, body, "interpolate")
        a, b = state.find(session, body.a), state.find(session, body.b)

        def work(ed: Editor) -> np.ndarray:
            frames = to_pixels(ed.interpolate(ensure_handle(ed, a), ensure_handle(ed, b), body.frames))
            return np.concatenate(list(frames), axis=1)  # one strip, frames side by side

        strip, timing = await on_worker(work, still_wanted)
        t0 = time.perf_counter()
        png = await in_thread(png_bytes, strip)
        headers = timing_headers(timing, started, (time.perf_counter() - t0) * 1000)
        headers["X-Frames"] = str(body.frames)
        return Response(png, media_type="image/png", headers=headers)

    @app.post("/api/samples")
    async def samples(request: Request) -> JSONResponse:
        started = time.perf_counter()
        session = session_of(request)
        body = await body_of(request, SamplesIn)
        if body.count > limits.max_samples:
            raise ApiError(422, f"count: at most {limits.max_samples}")
        still_wanted = claim(session, body, "samples")
        seeds = list(range(body.seed, body.seed + body.count))

        def work(ed: Editor) -> tuple[np.ndarray, torch.Tensor]:
            images, stylemaps = ed.generate(seeds, body.trunc)
            return to_pixels(images), stylemaps.detach().cpu()

        (pixels, stylemaps), timing = await on_worker(work, still_wanted)
        out = []
        for seed, px, sm in zip(seeds, pixels, stylemaps, strict=True):
            record = ImageRecord(new_id("r"), f"seed {seed}", "sample", px, stylemap=sm[None].clone(),
                                 meta={"seed": seed, "trunc": body.trunc})
            state.sessions.results.put(session.id, record.id, record)
            out.append(record.describe())
        return JSONResponse({"images": out}, headers=timing_headers(timing, started))

    return app


async def _warm_gallery(state: ServerState, batch: int = 8) -> None:
    """Encode the gallery in small jobs at start-up, so the first edits only decode (users' jobs interleave)."""
    records = state.gallery.records[: state.editor.cache_size // 2]  # more would only evict each other
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]

        def work(ed: Editor, chunk: list[ImageRecord] = chunk) -> None:
            for record in chunk:
                ensure_handle(ed, record)

        try:
            await state.engine.run(work)
        except Busy:
            return
        except Exception:  # a warm-up is an optimisation: the first edit of that image encodes it instead
            log.exception("gallery warm-up stopped")
            return
