"""The part edits of a model with parts (`capabilities.parts`; a SemanticStyleGAN model): swap parts from
references (shape, texture or both, per reference and part) and remove parts, interpolate chosen parts between
two images, map a painted mask to the parts it covers, and the per-part attribute sliders. Each is one editor call
on the inference worker, behind the same prologue, sessions and limits as every model route (`jobs.Job.open`).

Part names are checked against the model's before a request claims its place (422 naming the field and listing
the model's parts); a model without parts answers 404 on every route here.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import torch
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from stylemapgan.editing import BaseEditor, Direction, PartSwap
from stylemapgan.serving.bodies import PartInterpolateIn, PartSubspace, PartsUnderMaskIn, PartSwapIn
from stylemapgan.serving.engine import ensure_handle, rendered, segmentation_labels, to_pixels
from stylemapgan.serving.errors import ApiError
from stylemapgan.serving.jobs import Job
from stylemapgan.serving.routes.pages import sliders
from stylemapgan.serving.state import ServerState, State
from stylemapgan.serving.uploads import decode_mask

router = APIRouter(prefix="/api/parts")

SUBSPACES: tuple[PartSubspace, ...] = ("shape", "texture", "both")


def check_subspace(what: str, state: ServerState, field: str) -> None:
    if what != "both" and not state.capabilities.shape_texture:
        raise ApiError(422, f"{field}: this model swaps whole parts only (both), not {what!r}")


# ---- limit checks (run before a request claims its place as the page's latest) ----


def check_swap(body: PartSwapIn, state: ServerState) -> None:
    caps = state.capabilities
    state.check_parts([], "parts")  # 404 for a model without parts
    if len(body.references) > state.limits.max_references:
        raise ApiError(422, f"references: at most {state.limits.max_references}")
    if not body.references and not body.remove:
        raise ApiError(422, "references: name at least one part to take from a reference (or one to remove)")
    for i, ref in enumerate(body.references):
        state.check_parts(list(ref.parts), f"references.{i}.parts")
        for what in ref.parts.values():
            check_subspace(what, state, f"references.{i}.parts")
    if body.remove:
        if not caps.composition:
            raise ApiError(422, "remove: this model cannot remove parts")
        state.check_parts(body.remove, "remove")
        added = sorted({p for ref in body.references for p in ref.parts} & set(body.remove))
        if added:
            raise ApiError(422, f"remove: part {added[0]!r} is also taken from a reference")
        if len(set(body.remove)) >= len(caps.parts):
            raise ApiError(422, "remove: cannot remove every part (nothing would be left to render)")


def check_interpolate(body: PartInterpolateIn, state: ServerState) -> None:
    state.check_parts(body.parts or [], "parts")
    check_subspace(body.what, state, "what")
    if body.frames > state.limits.max_interpolation_frames:
        raise ApiError(422, f"frames: at most {state.limits.max_interpolation_frames}")


def check_under_mask(body: PartsUnderMaskIn, state: ServerState) -> None:
    state.check_parts([], "parts")
    if not state.capabilities.segmentation:
        raise ApiError(404, "this model does not segment its images, so a mask cannot name parts")


def swaps_of(body: PartSwapIn, handles: list[str]) -> list[PartSwap]:
    """One `PartSwap` per (reference, subspace): the reference's parts grouped by what they take."""
    swaps = []
    for ref, handle in zip(body.references, handles, strict=True):
        for what in SUBSPACES:
            parts = tuple(name for name, taken in ref.parts.items() if taken == what)
            if parts:
                swaps.append(PartSwap(handle, parts, what))
    return swaps


# ---- routes ----


@router.post("/swap")
async def swap(request: Request) -> Response:
    """The source with the references' chosen parts (shape, texture or both; later references on top) and
    without the removed parts, blended by alpha; the segmentation of the result is kept with it
    (`/api/images/ID/segmentation`)."""
    job = await Job.open(request, PartSwapIn, kind="parts-swap", check=check_swap)
    body = job.body
    source = job.find(body.source)
    refs = [job.find(r.id) for r in body.references]

    def work(ed: BaseEditor) -> tuple[np.ndarray, torch.Tensor | None, np.ndarray]:
        handles = [ensure_handle(ed, r) for r in refs]
        out = ed.compose(  # type: ignore[attr-defined]  # capabilities.parts: the editor composes parts
            ensure_handle(ed, source), remove=list(body.remove), add=swaps_of(body, handles), alphas=body.alpha
        )
        images, segmentation, codes = rendered(out)
        code = None if codes is None else codes[:1].detach().cpu().clone()
        return to_pixels(images)[0], code, segmentation_labels(segmentation)[0]

    (pixels, code, labels), timing = await job.run(work)
    return await job.result_reply(pixels, "part swap", timing, code=code, segmentation=labels, photo=source.photo)


@router.post("/interpolate")
async def interpolate(request: Request) -> Response:
    """Frames from a to b in which only the chosen parts' shape / texture rows move (every row when `parts` is
    null), as one strip (frames side by side); the count in X-Frames."""
    job = await Job.open(request, PartInterpolateIn, kind="parts-interpolate", check=check_interpolate)
    body = job.body
    a, b = job.find(body.a), job.find(body.b)

    def work(ed: BaseEditor) -> np.ndarray:
        out = ed.interpolate_parts(  # type: ignore[attr-defined]
            ensure_handle(ed, a), ensure_handle(ed, b), body.parts, body.what, body.frames
        )
        return np.concatenate(list(to_pixels(rendered(out)[0])), axis=1)

    strip, timing = await job.run(work)
    return await job.png_reply(strip, timing, {"X-Frames": str(body.frames)})


@router.post("/under-mask")
async def under_mask(request: Request) -> JSONResponse:
    """The parts a painted mask covers on this image (at least `threshold` of a part's pixels painted), by the
    model's own segmentation of it: the page selects them."""
    job = await Job.open(request, PartsUnderMaskIn, kind="parts-under-mask", check=check_under_mask)
    body, size = job.body, job.state.size
    record = job.find(body.id)
    mask = torch.from_numpy(await job.state.in_thread(decode_mask, body.mask, size, "mask"))

    def work(ed: BaseEditor) -> list[str]:
        return ed.parts_under_mask(ensure_handle(ed, record), mask, body.threshold)  # type: ignore[attr-defined]

    parts, timing = await job.run(work)
    return JSONResponse({"id": record.id, "parts": parts}, headers=job.headers(timing))


@router.get("/directions")
async def directions(
    state: State, part: Annotated[str, Query(min_length=1, max_length=64)], what: PartSubspace = "both",
) -> dict[str, Any]:
    """A part's attribute sliders: the directions file's for this part when it has any, else PCA directions in
    the part's `what` rows, computed on first use (on the model worker) and kept for every session."""
    state.check_parts([part], "part")
    check_subspace(what, state, "what")
    assert state.part_sliders is not None
    found = state.part_sliders.from_file(part)
    source = "file"
    if not found:
        source = "pca"
        found = state.part_sliders.computed(part, what) or []
        if not found:
            limits = state.limits

            def work(ed: BaseEditor) -> list[Direction]:
                return ed.pca_directions(  # type: ignore[attr-defined]
                    limits.part_direction_components, limits.part_direction_samples, 0, part, what
                )

            computed, _ = await state.run_model(work)
            found = state.part_sliders.keep(part, what, computed)
    entries = sliders({d.name: d for d in found}, state.direction_range)
    return {"part": part, "what": what, "source": source, "directions": entries}
