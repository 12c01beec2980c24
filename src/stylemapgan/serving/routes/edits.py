"""Every route that runs the model and that any family can serve (local edit and refine where the editor offers
them): local edit, reconstruction, refine, attribute sliders, interpolation and samples. Each opens a `Job` (the
shared prologue, with its own limit checks), finds its images, runs one job on the inference worker and answers
with the timings in headers. A result keeps the code it was rendered from when the editor hands it back (and its
segmentation, for a model that segments), so it can be the next source without an encoder. The part edits of a
model with parts are in parts.py."""

from __future__ import annotations

import numpy as np
import torch
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from stylemapgan.editing import BaseEditor, Editor, ProjectionOptions, Refinement
from stylemapgan.serving.bodies import AttributesIn, EditIn, ImageIn, InterpolateIn, RefineIn, SamplesIn
from stylemapgan.serving.domain import domain_warning
from stylemapgan.serving.engine import ensure_handle, rendered, segmentation_labels, to_pixels
from stylemapgan.serving.errors import ApiError
from stylemapgan.serving.jobs import Job
from stylemapgan.serving.routes.images import stylemap_origin
from stylemapgan.serving.state import ServerState
from stylemapgan.serving.store import ImageRecord, new_id
from stylemapgan.serving.uploads import decode_mask
from stylemapgan.utils.images import from_uint8

router = APIRouter(prefix="/api")

DEFAULT_REFINE_STEPS = 100


def refine_options(steps: int = DEFAULT_REFINE_STEPS, time_limit_s: float | None = None) -> ProjectionOptions:
    """The page's Refine: MSE only (~20 ms a step for the bundled model on 2 cores, where LPIPS would cost more
    than the generator), Adam at the projection default lr; the time limit bounds how long it holds a refine
    worker (and the CPU it shares with the edits). `benchmarks/bench_refine.py` measures it."""
    return ProjectionOptions(steps=steps, perceptual_weight=0.0, time_limit_s=time_limit_s)


# ---- limit checks (run before a request claims its place as the page's latest) ----


def check_edit(body: EditIn, state: ServerState) -> None:
    limits, caps = state.limits, state.capabilities
    if not caps.masks:
        instead = "swap parts instead (POST /api/parts/swap)" if caps.parts else "it has no local edits"
        raise ApiError(404, f"this model ({caps.family}) does not paste painted masks; {instead}")
    if body.mode not in caps.latent_modes:
        raise ApiError(422, f"mode: {body.mode!r} is not one of this model's modes ({', '.join(caps.latent_modes)})")
    if len(body.references) > limits.max_references:
        raise ApiError(422, f"references: at most {limits.max_references}")
    bound = round(limits.max_shift_fraction * state.size)
    for i, ref in enumerate(body.references):
        if any(abs(v) > bound for v in ref.shift):
            raise ApiError(422, f"references.{i}.shift: each component must lie in [-{bound}, {bound}]")


def check_attributes(body: AttributesIn, state: ServerState) -> None:
    parts = bool(state.capabilities.parts)
    if not state.directions and not parts:
        raise ApiError(404, "this server has no attribute directions (start it with --directions FILE)")
    unknown = sorted(name for name in body.strengths if state.direction(name) is None)
    if unknown:
        hint = " (a part's sliders: GET /api/parts/directions?part=NAME first)" if parts else ""
        raise ApiError(422, f"strengths: unknown direction(s) {', '.join(n[:64] for n in unknown[:5])}{hint}")


def check_interpolate(body: InterpolateIn, state: ServerState) -> None:
    if body.frames > state.limits.max_interpolation_frames:
        raise ApiError(422, f"frames: at most {state.limits.max_interpolation_frames}")


def check_samples(body: SamplesIn, state: ServerState) -> None:
    if body.count > state.limits.max_samples:
        raise ApiError(422, f"count: at most {state.limits.max_samples}")


def check_refine(body: RefineIn, state: ServerState) -> None:
    if not state.can_refine:
        raise ApiError(404, f"this model ({state.capabilities.family}) cannot refine a code towards its image")
    if body.steps is not None and body.steps > state.limits.max_refine_steps:
        raise ApiError(422, f"steps: at most {state.limits.max_refine_steps}")


# ---- routes ----


@router.post("/edit")
async def edit(request: Request) -> Response:
    """Paste the references' styles into the source under their painted masks (shifted), w or w+ mode."""
    job = await Job.open(request, EditIn, kind="edit", check=check_edit)
    body, size = job.body, job.state.size
    source = job.find(body.source)
    refs = [job.find(r.id) for r in body.references]

    def decode_all() -> list[torch.Tensor]:
        return [torch.from_numpy(decode_mask(r.mask, size, f"references.{i}.mask"))
                for i, r in enumerate(body.references)]

    masks = await job.state.in_thread(decode_all)

    def work(ed: Editor) -> np.ndarray:
        out = ed.local_edit(
            ensure_handle(ed, source), [ensure_handle(ed, r) for r in refs], masks,
            shifts=[tuple(r.shift) for r in body.references], mode=body.mode, alphas=body.alpha,
            pool=body.pool, feather_px=body.feather,
        )
        return to_pixels(out)[0]

    pixels, timing = await job.run(work)
    return await job.result_reply(pixels, "edit", timing, photo=source.photo)


@router.post("/reconstruct")
async def reconstruct(request: Request) -> Response:
    """G(E(image)): what the model makes of the image."""
    job = await Job.open(request, ImageIn, kind="reconstruct")
    record = job.find(job.body.id)
    segments = job.state.capabilities.segmentation

    def work(ed: BaseEditor) -> tuple[np.ndarray, torch.Tensor, np.ndarray | None]:
        handle = ensure_handle(ed, record)
        labels = segmentation_labels(ed.segment(handle))[0] if segments else None  # type: ignore[attr-defined]
        return to_pixels(ed.reconstruct(handle))[0], ed.code(handle).detach().cpu().clone(), labels

    (pixels, code, labels), timing = await job.run(work)
    return await job.result_reply(pixels, "reconstruction", timing, code=code, segmentation=labels,
                                  meta={"stylemap": stylemap_origin(record)},  # its code is the source's
                                  photo=record.photo)


@router.post("/refine")
async def refine(request: Request) -> JSONResponse:
    """A new upload whose stylemap is optimised towards the image (hybrid projection), with MSE before and
    after; `{"id": null, "improved": false, ...}` when no step beat the start."""
    job = await Job.open(request, RefineIn, check=check_refine)
    limits = job.state.limits
    steps = min(DEFAULT_REFINE_STEPS, limits.max_refine_steps) if job.body.steps is None else job.body.steps
    record = job.find(job.body.id)
    options = refine_options(steps, limits.max_refine_seconds)

    def work(ed: Editor) -> tuple[Refinement, torch.Tensor]:  # an editor with `refine` (check_refine)
        refined = ed.refine(ensure_handle(ed, record), from_uint8(record.pixels), options)
        return refined, ed.code(refined.handle).detach().cpu().clone()

    # on a refine worker of its own (never the model worker): other pages' edits go on meanwhile; a bounded
    # number at once (another one gets 503), each stopped after max_refine_seconds
    (refined, stylemap), timing = await job.run_refine(work)
    scores = {"steps": refined.steps, "mse_before": round(refined.mse_before, 6),
              "mse_after": round(refined.mse_after, 6)}
    if not refined.improved:  # nothing to keep: no copy that only claims to be refined
        return JSONResponse({"id": None, "improved": False, **scores}, headers=job.headers(timing))
    warning = domain_warning(refined.mse_after, job.state.domain, refined=True)
    copy = ImageRecord(new_id("u"), f"{record.name} (refined)", "upload", record.pixels, code=stylemap,
                       label_map=record.label_map, handle=refined.handle,
                       meta={"from": record.kind, "stylemap": "refined", **scores,
                             "reconstruction_mse": scores["mse_after"], "domain_warning": warning},
                       photo=record.photo)
    job.state.sessions.uploads.put(job.session.id, copy.id, copy)
    return JSONResponse({**copy.describe(), "improved": True}, headers=job.headers(timing))


@router.post("/attributes")
async def attributes(request: Request) -> Response:
    """Move the image along the named attribute directions (their weighted sum, one model call)."""
    job = await Job.open(request, AttributesIn, kind="attributes", check=check_attributes)
    record = job.find(job.body.id)
    state = job.state
    vectors = [(state.direction(name).vector, value)  # type: ignore[union-attr]  # known: check_attributes
               for name, value in job.body.strengths.items() if value]

    def work(ed: BaseEditor) -> tuple[np.ndarray, torch.Tensor | None, np.ndarray | None]:
        combined = torch.zeros(ed.code_shape)
        for vector, value in vectors:  # the directions' weighted sum: one call applies them all
            combined = combined + value * vector.float().cpu()
        out = ed.apply_direction(ensure_handle(ed, record), combined, 1.0)  # type: ignore[attr-defined]
        images, segmentation, codes = rendered(out)
        labels = segmentation_labels(segmentation)[0] if segmentation is not None else None
        return to_pixels(images)[0], None if codes is None else codes[:1].detach().cpu().clone(), labels

    (pixels, code, labels), timing = await job.run(work)
    return await job.result_reply(pixels, "attributes", timing, code=code, segmentation=labels, photo=record.photo)


@router.post("/interpolate")
async def interpolate(request: Request) -> Response:
    """Frames from a to b in the family's code space, as one strip (frames side by side); the count in X-Frames."""
    job = await Job.open(request, InterpolateIn, kind="interpolate", check=check_interpolate)
    a, b, frames = job.find(job.body.a), job.find(job.body.b), job.body.frames

    def work(ed: BaseEditor) -> np.ndarray:
        strip = to_pixels(ed.interpolate(ensure_handle(ed, a), ensure_handle(ed, b), frames))
        return np.concatenate(list(strip), axis=1)  # one strip, frames side by side

    strip, timing = await job.run(work)
    return await job.png_reply(strip, timing, {"X-Frames": str(frames)})


@router.post("/samples")
async def samples(request: Request) -> JSONResponse:
    """`count` random images from consecutive seeds, kept as results with their exact codes (and segmentations,
    for a model that segments): the way to get images into a model without an encoder."""
    job = await Job.open(request, SamplesIn, kind="samples", check=check_samples)
    body = job.body
    seeds = list(range(body.seed, body.seed + body.count))

    def work(ed: BaseEditor) -> tuple[np.ndarray, torch.Tensor, np.ndarray | None]:
        samples = ed.sample(seeds, body.trunc)
        labels = None if samples.segmentation is None else segmentation_labels(samples.segmentation)
        return to_pixels(samples.images), samples.codes.detach().cpu(), labels

    (pixels, codes, labels), timing = await job.run(work)
    out = []
    for i, (seed, px, code) in enumerate(zip(seeds, pixels, codes, strict=True)):
        record = ImageRecord(new_id("r"), f"seed {seed}", "sample", px, code=code[None].clone(),
                             segmentation=None if labels is None else labels[i],
                             meta={"seed": seed, "trunc": body.trunc})
        job.state.sessions.results.put(job.session.id, record.id, record)
        out.append(record.describe())
    return JSONResponse({"images": out}, headers=job.headers(timing))
