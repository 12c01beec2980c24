"""The web editor's HTTP layer: a FastAPI app over one editor of any family (`BaseEditor`: StyleMapGAN's `Editor`,
`SemanticEditor`), with per-browser sessions. The page asks `/api/info` what the model can do (the editor's
`capabilities`, plus `features` such as refine) and shows those controls; routes a model cannot serve answer
404 with one line saying what it does instead.

Routes (JSON errors are `{"error": "one line"}`, 4xx for the request, 503 when busy, 500 for a bug; 409 means
"superseded by a newer request"):

    GET  /                                   the page (static/index.html); /static/NAME its script and style
    GET  /api/info                           model, capabilities, gallery, directions, limits, own uploads
    POST /api/upload?fit=crop|pad&name=N     raw image body (PNG/JPEG/WebP) -> {"id", "reconstruction_mse",
                                             "domain_warning": str|null, ...}; encoded at once (domain.py) by
                                             the family's encoder; a model without one: 400, the library's line
    GET  /api/images/ID                      model-sized PNG (gallery, own uploads, own results)
    GET  /api/images/ID/download             the same as an attachment
    GET  /api/images/ID/code                 its code in the family's file format (.npz stylemap, .npy W+)
    GET  /api/images/ID/stylemap.npz         its stylemap (exact for samples, else the encoder's; .npz models)
    GET  /api/images/ID/segmentation         the model's part per pixel as a palette PNG (models that segment)
    GET  /api/images/ID/parts?names=hair     a part mask (gallery images of a dataset with part masks)
    GET  /api/images/ID/clusters?ids=3+hair  a part-cluster mask of any image, from its own features (models
                                             whose checkpoint has part clusters: `stylemapgan clusters fit`)
    POST /api/images/ID/keep                 copy a result into the session's uploads (to edit it further)
    DELETE /api/images/ID                    forget an upload
    POST /api/edit | reconstruct | attributes | interpolate   JSON -> PNG (timings in headers)
    POST /api/refine                         JSON {id, steps} -> a new upload whose stylemap is optimised
                                             towards the image (hybrid projection), with MSE before/after,
                                             on a refine worker (edits go on meanwhile; engine.py);
                                             {"id": null, "improved": false, ...} if no step beat the start
    POST /api/samples                        JSON -> {"images": [...]}
    POST /api/parts/swap                     JSON {source, references: [{id, parts: {NAME: shape|texture|both}}],
                                             remove: [NAME], alpha} -> PNG (models with parts; routes/parts.py)
    POST /api/parts/interpolate              JSON {a, b, parts: [NAME]|null, what, frames} -> PNG strip
    POST /api/parts/under-mask               JSON {id, mask, threshold} -> {"parts": [NAME]} (a painted mask
                                             -> the parts it covers, by the model's own segmentation)
    GET  /api/parts/directions?part=N&what=W the part's attribute sliders (the directions file's, else PCA in
                                             the part's subspace computed on first use and kept)
    GET  /api/stats                          queue and cache counters

They live in `routes/` (pages.py, images.py, edits.py, parts.py), at module level, and reach the server's state and the
browser's session through dependencies (`state.py`); the model routes share one prologue (`jobs.Job.open`).

Requests that another web page made the browser send (Sec-Fetch-Site cross-site or same-site, or an Origin
other than this server on a POST or DELETE) are refused with 403 before they get a session: any page the user
visits could otherwise queue edits on the one worker or use up the sessions. Opening the page from a link is
allowed. Scripts and curl send neither header and are unaffected (`middleware.py`).

Sessions: a cookie-less request (a script, curl) is served in one shared anonymous session and offered a
cookie; a session is made when the cookie comes back, so scripts can never evict a browser's uploads
(store.py says how sessions and uploads are kept).

No model maths here: every image operation is one editor call on the inference thread (see engine.py).
Requests that carry `seq` (and `client`, one id per page) are "latest wins" per page and request kind: an
older one arriving late is refused at once, and one overtaken while queued is dropped before it runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from stylemapgan.editing import BaseEditor, Direction, EditingError
from stylemapgan.serving.domain import DomainReference
from stylemapgan.serving.engine import InferenceEngine, bound_editor_caches, ensure_handle
from stylemapgan.serving.errors import Busy
from stylemapgan.serving.gallery import Gallery
from stylemapgan.serving.limits import ServerLimits
from stylemapgan.serving.middleware import ERROR_HANDLERS, LOOPBACK_HOSTS, guard_and_session
from stylemapgan.serving.photos import is_face_model
from stylemapgan.serving.routes import ROUTERS
from stylemapgan.serving.state import ServerState, load_static
from stylemapgan.serving.store import ImageRecord, SessionStore

log = logging.getLogger("stylemapgan.serving")


def create_app(
    editor: BaseEditor,
    *,
    gallery: Gallery | None = None,
    directions: dict[str, Direction] | None = None,
    limits: ServerLimits | None = None,
    allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
    model_name: str = "model",
    direction_range: float = 10.0,
    warm_gallery: bool = True,
    domain: DomainReference | None = None,
) -> FastAPI:
    """The editor app. `allowed_hosts`: the Host names it answers to (a DNS-rebinding page cannot reach a local
    server); ["*"] answers to any, for a server bound to every interface. The editor's caches are sized to
    `limits` (its memory budget), whatever they were. `domain`: the model's typical reconstruction error
    (`domain.card_reference(checkpoint)`), against which uploads get a domain warning; None: no warning."""
    limits = limits or ServerLimits()
    gallery = gallery or Gallery()
    bound_editor_caches(editor, limits, len(gallery))
    state = ServerState(
        engine=InferenceEngine(editor, limits.max_pending_jobs, limits.concurrent_refines, limits.refine_niceness),
        sessions=SessionStore(limits),
        gallery=gallery,
        directions=dict(directions or {}),
        limits=limits,
        model_name=model_name,
        direction_range=float(direction_range),
        allowed_hosts=tuple(h.lower() for h in allowed_hosts),
        warm_gallery=warm_gallery,
        static=load_static(),
        upload_slots=anyio.Semaphore(max(1, limits.concurrent_uploads)),
        image_threads=anyio.CapacityLimiter(max(1, limits.image_threads)),
        domain=domain,
        face_model=is_face_model(model_name),
    )
    app = FastAPI(title="stylemapgan editor", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan,
                  exception_handlers=ERROR_HANDLERS)
    app.state.serving = state
    app.middleware("http")(guard_and_session)
    for router in ROUTERS:
        app.include_router(router)
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the gallery warm-up (if asked); at shutdown, stop it and the inference worker."""
    state: ServerState = app.state.serving
    warmup = asyncio.create_task(_warm_gallery(state)) if state.warm_gallery and state.gallery.records else None
    yield
    if warmup is not None:
        warmup.cancel()
    await anyio.to_thread.run_sync(state.engine.shutdown)


async def _warm_gallery(state: ServerState) -> None:
    """Encode the gallery in small jobs at start-up, so the first edits only decode (users' jobs interleave)."""
    records = state.gallery.records[: state.editor.cache_size // 2]  # more would only evict each other
    batch = max(1, state.limits.warmup_batch)
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]

        def work(ed: BaseEditor, chunk: list[ImageRecord] = chunk) -> None:
            for record in chunk:
                ensure_handle(ed, record)

        try:
            await state.engine.run(work)
        except Busy:
            return
        except EditingError as exc:  # a model without an encoder: its gallery images cannot be encoded
            log.info("gallery warm-up stopped: %s", exc)
            return
        except Exception:  # a warm-up is an optimisation: the first edit of that image encodes it instead
            log.exception("gallery warm-up stopped")
            return
