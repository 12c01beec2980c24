"""The page and what it reads first: its static files, the server's info (model, gallery, limits), stats."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import Response

from stylemapgan.editing import BaseEditor, Direction
from stylemapgan.semantic.io import class_color
from stylemapgan.serving.errors import ApiError
from stylemapgan.serving.part_directions import part_of
from stylemapgan.serving.state import CurrentSession, ServerState, State
from stylemapgan.serving.store import ANONYMOUS

router = APIRouter()

UNSUPERVISED_KINDS = {"pca": "PCA", "sefa": "SeFa"}  # directions found without labels: no attribute name


def slider(direction: Direction, strength_range: float) -> dict[str, Any]:
    """A direction as the page's slider: labelled ones by their attribute's name ("has glasses"), the others
    said to be unsupervised ("PCA 1 (unsupervised)": a component, numbered from 1, with no known meaning)."""
    meta = direction.meta or {}
    kind = str(meta.get("kind") or "")
    numbered = re.fullmatch(r"(pca|sefa)_(\d+)", direction.name)
    if not kind and numbered:  # a file without metadata: its names say what the directions are
        kind = numbered[1]
    if kind in UNSUPERVISED_KINDS:
        component = int(meta.get("component", numbered[2] if numbered else 0))
        return {"name": direction.name, "label": f"{UNSUPERVISED_KINDS[kind]} {component + 1} (unsupervised)",
                "kind": kind, "supervised": False, "component": component, "range": strength_range}
    label = str(meta.get("attribute") or direction.name).replace("_", " ")
    return {"name": direction.name, "label": label, "kind": kind or "attribute", "supervised": True,
            "range": strength_range}


def sliders(directions: dict[str, Direction], strength_range: float) -> list[dict[str, Any]]:
    """Every direction as a slider, labelled ones first (by name), then the unsupervised ones in order."""
    entries = [slider(d, strength_range) for d in directions.values()]
    return sorted(entries, key=lambda e: (not e["supervised"], e["label"].casefold() if e["supervised"] else "",
                                          e["kind"], e.get("component", 0)))


def cluster_buttons(editor: BaseEditor) -> list[dict[str, Any]]:
    """The model's part clusters as one-click parts (any image): named ones first (by name), then by id."""
    clusters = editor.clusters
    if clusters is None:
        return []
    entries = [{"id": c, "name": clusters.names.get(c), "label": clusters.label(c)} for c in range(clusters.k)]
    return sorted(entries, key=lambda e: (e["name"] is None, (e["name"] or "").casefold(), e["id"]))


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


def part_colors(state: ServerState) -> list[str]:
    """The overlay colour of each of the model's parts (index = part), as the segmentation PNGs draw them."""
    if not state.capabilities.segmentation:
        return []
    return ["#{:02x}{:02x}{:02x}".format(*class_color(k)) for k in range(len(state.capabilities.parts))]


def features(state: ServerState) -> dict[str, bool]:
    """What the page may offer beyond the editor's capabilities: refine, one-click part clusters, per-part
    attribute sliders (computed on demand for a model with parts)."""
    return {"refine": state.can_refine, "clusters": state.editor.clusters is not None,
            "part_directions": bool(state.capabilities.parts)}


@router.get("/api/info")
async def info(state: State, session: CurrentSession) -> dict[str, Any]:
    """Model, what it can do, gallery, directions, limits and this session's uploads: all the page needs to
    start. The page shows controls by `capabilities` and `features`, never by the family's name."""
    editor, caps = state.editor, state.capabilities
    # the anonymous session's uploads belong to every cookie-less client together: never listed (store.py)
    uploads = [] if session.id == ANONYMOUS else [r.describe() for r in state.sessions.uploads.values(session.id)]
    whole_code = {name: d for name, d in state.directions.items() if part_of(d) is None}
    return {
        "model": {"name": state.model_name, "id": editor.model_id, "size": editor.size, "family": caps.family,
                  "code_shape": list(editor.code_shape), "device": str(editor.device)},
        "capabilities": caps.to_dict(),
        "features": features(state),
        "part_colors": part_colors(state),
        "modes": list(caps.latent_modes),
        "parts": [p for p in state.gallery.part_names if p != "background"],
        "clusters": cluster_buttons(editor),
        "directions": sliders(whole_code, state.direction_range),
        "gallery": {"source": state.gallery.label, "images": [r.describe() for r in state.gallery.records]},
        "uploads": uploads,
        "domain": None if state.domain is None else {
            "typical_mse": state.domain.typical_mse, "warn_above": state.domain.threshold,
            "source": state.domain.source},
        "limits": state.limits.public(),
        "align": {"available": state.aligner.available, "default": state.aligner.available and state.face_model},
    }


@router.get("/api/stats")
async def stats(state: State) -> dict[str, Any]:
    """Queue and cache counters (no session: a monitoring script does not use one up)."""
    return {**state.engine.stats(), **state.sessions.counts(), "uptime_s": round(time.time() - state.started, 1)}
