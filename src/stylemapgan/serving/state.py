"""What every route reaches: the server's state (one per app, on `app.state.serving`) and the request's session,
each through one small FastAPI dependency, plus the two ways a route runs work off the event loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Request

from stylemapgan.editing import BaseEditor, Direction, EditingError, EditorCapabilities
from stylemapgan.serving.domain import DomainReference
from stylemapgan.serving.engine import InferenceEngine, Timing
from stylemapgan.serving.errors import ApiError, Busy, Superseded
from stylemapgan.serving.gallery import Gallery
from stylemapgan.serving.limits import ServerLimits
from stylemapgan.serving.part_directions import PartSliders
from stylemapgan.serving.photos import PhotoAligner
from stylemapgan.serving.store import ImageRecord, Session, SessionStore

T = TypeVar("T")

STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}


@dataclass
class ServerState:
    """Everything a request may touch, built once by `create_app`."""

    engine: InferenceEngine
    sessions: SessionStore
    gallery: Gallery
    directions: dict[str, Direction]
    limits: ServerLimits
    model_name: str
    direction_range: float
    allowed_hosts: tuple[str, ...]  # lower case; "*" answers to any Host
    warm_gallery: bool  # encode the gallery in the background at start-up
    static: dict[str, tuple[bytes, str]]
    upload_slots: anyio.Semaphore
    image_threads: anyio.CapacityLimiter
    domain: DomainReference | None = None  # what uploads' reconstructions are compared with (domain.py)
    aligner: PhotoAligner = field(default_factory=PhotoAligner)  # "align face" uploads (photos.py)
    face_model: bool = False  # the align box starts ticked
    part_sliders: PartSliders | None = None  # per-part attribute sliders (models with parts; part_directions.py)
    started: float = field(default_factory=time.time)
    refines_running: int = 0  # changed only on the event loop

    def __post_init__(self) -> None:
        self.capabilities: EditorCapabilities = self.editor.capabilities  # asked once: what the page offers
        if self.part_sliders is None:
            self.part_sliders = PartSliders(self.directions, self.limits.max_part_direction_sets)

    @property
    def editor(self) -> BaseEditor:
        return self.engine.editor

    @property
    def can_refine(self) -> bool:
        """Does the editor optimise a code towards its image (the page's Refine)?"""
        return callable(getattr(self.editor, "refine", None))

    def direction(self, name: str) -> Direction | None:
        """A direction by name: the directions file's, or a part's computed one."""
        found = self.directions.get(name)
        if found is None and self.part_sliders is not None:
            found = self.part_sliders.find(name)
        return found

    def check_parts(self, names: list[str], field: str) -> None:
        """422 naming `field` for a part name this model does not have (one line, the model's parts listed)."""
        parts = self.capabilities.parts
        if not parts:
            raise ApiError(404, f"{field}: this model has no parts")
        for name in names:
            if name not in parts:
                raise ApiError(422, f"{field}: unknown part {name[:64]!r} (this model's parts: {', '.join(parts)})")

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

    async def run_model(
        self, fn: Callable[[BaseEditor], T], still_wanted: Callable[[], bool] | None = None
    ) -> tuple[T, Timing]:
        """`fn(editor)` on the inference worker, its failures as the page's errors (503 busy, 409 stale, 400)."""
        try:
            return await self.engine.run(fn, still_wanted)
        except Busy:
            raise ApiError(503, "the model is busy (queue full); try again in a moment") from None
        except Superseded:
            raise ApiError(409, "superseded by a newer request") from None
        except EditingError as exc:
            raise ApiError(400, str(exc)) from None

    async def run_refine(self, fn: Callable[[BaseEditor], T]) -> tuple[T, Timing]:
        """`fn(editor)` on a refine worker (never the model worker the edits use), at most
        `limits.concurrent_refines` at once: one more gets 503 at once rather than waiting minutes."""
        if self.refines_running >= max(1, self.limits.concurrent_refines):
            raise ApiError(503, "refine: another refine is running; try again when it has finished")
        self.refines_running += 1
        try:
            return await self.engine.run_refine(fn)
        except EditingError as exc:
            raise ApiError(400, str(exc)) from None
        finally:
            self.refines_running -= 1

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """CPU work that is not the model (PNG encoding, decoding) in a bounded pool of threads."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.image_threads)


def load_static() -> dict[str, tuple[bytes, str]]:
    """The page's files, read once from the package folder; requests only ever index this dict."""
    folder = resources.files("stylemapgan.serving") / "static"
    files: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in STATIC_TYPES:
            files[entry.name] = (entry.read_bytes(), STATIC_TYPES[suffix])
    return files


def server_state(request: Request) -> ServerState:
    """The app's state (a dependency)."""
    return request.app.state.serving


def current_session(request: Request) -> Session:
    """The browser's session, found or made by the middleware (a dependency)."""
    return request.state.session


State = Annotated[ServerState, Depends(server_state)]
CurrentSession = Annotated[Session, Depends(current_session)]
