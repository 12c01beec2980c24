"""The page and what it reads first: its static files, the server's info (model, gallery, limits), stats."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import Response

from stylemapgan.serving.errors import ApiError
from stylemapgan.serving.state import CurrentSession, ServerState, State

router = APIRouter()


def static_response(state: ServerState, name: str) -> Response:
    entry = state.static.get(name)
    if entry is None:
        raise ApiError(404, f"{name}: no such file")
    return Response(entry[0], media_type=entry[1], headers={"Cache-Control": "no-cache"})


@router.get("/", include_in_schema=False)
async def page(state: State) -> Response:
    return static_response(state, "index.html")


@router.get("/static/{name}", include_in_schema=False)
async def static(state: State, name: Annotated[str, PathParam(max_length=64)]) -> Response:
    return static_response(state, name)


@router.get("/api/info")
async def info(state: State, session: CurrentSession) -> dict[str, Any]:
    """Model, gallery, directions, limits and this session's uploads: all the page needs to start."""
    editor, cfg = state.editor, state.editor.config
    return {
        "model": {"name": state.model_name, "id": editor.model_id, "size": cfg.size,
                  "stylemap_shape": list(cfg.stylemap_shape), "device": str(editor.device)},
        "modes": ["w", "w_plus"],
        "parts": [p for p in state.gallery.part_names if p != "background"],
        "directions": [{"name": name, "range": state.direction_range} for name in state.directions],
        "gallery": {"source": state.gallery.source, "images": [r.describe() for r in state.gallery.records]},
        "uploads": [r.describe() for r in state.sessions.uploads.values(session.id)],
        "limits": state.limits.public(),
    }


@router.get("/api/stats")
async def stats(state: State) -> dict[str, Any]:
    """Queue and cache counters (no session: a monitoring script does not use one up)."""
    return {**state.engine.stats(), **state.sessions.counts(), "uptime_s": round(time.time() - state.started, 1)}
