"""The session's images: upload one, fetch or download one (PNG, its code, its segmentation), a gallery image's
part mask, keep a result as an upload, forget an upload. Every id is looked up only among the gallery and this
session's images."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import numpy as np
import torch
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from PIL import Image

from stylemapgan.editing import BaseEditor, EditingError, Editor, PartMask, mask_from_parts
from stylemapgan.semantic.io import class_color
from stylemapgan.serving.bodies import ImageId, read_limited
from stylemapgan.serving.domain import assess_reconstruction
from stylemapgan.serving.engine import ensure_handle, segmentation_labels
from stylemapgan.serving.errors import ApiError
from stylemapgan.serving.photos import PhotoSource, open_photo, paste_back
from stylemapgan.serving.state import CurrentSession, ServerState, State
from stylemapgan.serving.store import ImageRecord, Session, new_id
from stylemapgan.serving.uploads import check_declared_type, decode_upload, safe_name
from stylemapgan.utils.images import png_bytes

router = APIRouter(prefix="/api")

STYLEMAP_NOTE = ("exact: the sample's own stylemap; encoder: E(image) of the shown image; "
                 "refined: E(image) optimised towards the image")


def stylemap_origin(record: ImageRecord) -> str:
    """Where a record's code comes from: exact (a sample's own), refined (optimised), encoder (E(image))."""
    if record.code is None:
        return "encoder"
    return str(record.meta.get("stylemap", "exact"))


def code_file_bytes(editor: BaseEditor, code: torch.Tensor, meta: dict[str, Any]) -> bytes:
    """A code in the family's own file format (`save_code`: .npz stylemap with its meta, .npy W+ latents), the
    same bytes the CLI writes."""
    suffix = editor.capabilities.code_suffix
    with tempfile.TemporaryDirectory(prefix="stylemapgan-code-") as folder:
        path = Path(folder) / f"code{suffix}"
        editor.save_code(path, code, meta)
        return path.read_bytes()


def palette_png(labels: np.ndarray) -> bytes:
    """uint8 [H, W] part indices -> a palette PNG in the library's part colours (`semantic.io.class_color`: the
    colours `edit --segmentation` writes), so the page's overlay matches the CLI's maps."""
    image = Image.fromarray(labels, mode="L")
    image.putpalette([c for k in range(256) for c in class_color(k)])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def cache_policy(record: ImageRecord) -> str:
    """Uploads and results have random ids, never reused: the browser may keep them. Gallery ids (g_0, g_1, ...)
    mean other images after a restart with another gallery, so those are checked again each time."""
    return "no-cache" if record.kind == "gallery" else "private, max-age=3600"


def attachment(record: ImageRecord, suffix: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="stylemapgan-{record.id}.{suffix}"',
            "Cache-Control": "no-store"}


@router.post("/upload")
async def upload(
    request: Request, state: State, session: CurrentSession,
    fit: Literal["crop", "pad"] = "crop", name: Annotated[str, Query(max_length=255)] = "", align: bool = False,
) -> dict[str, Any]:
    """A raw image body, fitted to the model's size and encoded at once (later edits only decode). The answer
    says how well the model reconstructs it (`reconstruction_mse`) and, when far worse than the model's own
    test images, why edits will disappoint (`domain_warning`, plain words; null otherwise; see domain.py).
    `align`: a photo with a face: its largest face is aligned the FFHQ way instead of fitted, and the photo is
    kept with the upload, so results of it download as the whole photo (`/api/images/{id}/photo`)."""
    limits = state.limits
    check_declared_type(request.headers.get("content-type"))
    async with state.upload_slots:  # bounds the memory held by bodies and decoded pixels at once
        try:
            with anyio.fail_after(limits.upload_read_seconds):
                data = await read_limited(request, limits.max_upload_bytes, "upload")
        except TimeoutError:
            raise ApiError(408, f"upload: the body took longer than {limits.upload_read_seconds:g} s") from None
        pixels, (width, height) = await state.in_thread(
            decode_upload, data, state.size, fit, (0, 0, 0), limits.max_upload_pixels
        )  # checks the bytes (format, size, decodability) whether or not the face is aligned
        photo, meta = None, {"width": width, "height": height, "fit": fit}
        if align:
            pixels, transform, faces = await state.in_thread(
                lambda: state.aligner.align(open_photo(data), state.size, safe_name(name)))
            photo, meta = PhotoSource(data, transform), {**meta, "fit": "align", "faces": faces}
    record = ImageRecord(new_id("u"), safe_name(name), "upload", pixels, meta=meta, photo=photo)
    assessment, _ = await state.run_model(
        lambda ed: assess_reconstruction(ed, ensure_handle(ed, record), record.pixels, state.domain)
    )
    record.meta.update(reconstruction_mse=round(assessment.reconstruction_mse, 6),
                       domain_warning=assessment.warning)
    state.sessions.uploads.put(session.id, record.id, record)
    return record.describe()


@router.get("/images/{image_id}")
async def image(state: State, session: CurrentSession, image_id: ImageId) -> Response:
    record = state.find(session, image_id)
    png = await state.in_thread(png_bytes, record.pixels)
    return Response(png, media_type="image/png", headers={"Cache-Control": cache_policy(record)})


@router.get("/images/{image_id}/download")
async def download(state: State, session: CurrentSession, image_id: ImageId) -> Response:
    record = state.find(session, image_id)
    png = await state.in_thread(png_bytes, record.pixels)
    return Response(png, media_type="image/png", headers=attachment(record, "png"))


@router.get("/images/{image_id}/photo")
async def whole_photo(state: State, session: CurrentSession, image_id: ImageId) -> Response:
    """An image made from an aligned upload, pasted back into the whole uploaded photo (its resolution), as PNG."""
    record = state.find(session, image_id)
    if record.photo is None:
        raise ApiError(404, f"image {image_id}: not made from an aligned photo (upload with “align face”)")
    png = await state.in_thread(paste_back, record.photo, record.pixels)
    return Response(png, media_type="image/png", headers=attachment(record, "png") | {
        "Content-Disposition": f'attachment; filename="stylemapgan-{record.id}-photo.png"'})


async def code_reply(state: ServerState, session: Session, image_id: str) -> Response:
    """The image's code as the family's file (exact for samples, else the encoder's or the refined one)."""
    record = state.find(session, image_id)

    def work(ed: BaseEditor) -> torch.Tensor:
        return ed.code(ensure_handle(ed, record)).detach().cpu().clone()

    code, _ = await state.run_model(work)
    meta = {"model_id": state.editor.model_id, "image_id": record.id, "kind": record.kind,
            "stylemap": stylemap_origin(record), "note": STYLEMAP_NOTE}
    data = await state.in_thread(code_file_bytes, state.editor, code, meta)
    suffix = state.capabilities.code_suffix.lstrip(".")
    return Response(data, media_type="application/octet-stream", headers=attachment(record, suffix))


@router.get("/images/{image_id}/code")
async def code(state: State, session: CurrentSession, image_id: ImageId) -> Response:
    """The image's code in the family's file format (`capabilities.code_suffix`)."""
    return await code_reply(state, session, image_id)


@router.get("/images/{image_id}/stylemap.npz")
async def stylemap(state: State, session: CurrentSession, image_id: ImageId) -> Response:
    """The image's stylemap as .npz (exact for samples, else the encoder's or the refined one)."""
    if state.capabilities.code_suffix != ".npz":
        raise ApiError(404, f"this model's codes are {state.capabilities.code_suffix} files: GET "
                            f"/api/images/{image_id}/code")
    return await code_reply(state, session, image_id)


@router.get("/images/{image_id}/segmentation")
async def segmentation(state: State, session: CurrentSession, image_id: ImageId) -> Response:
    """The model's part per pixel of the image's rendering, as a palette PNG (`/api/info` lists the colours);
    kept with the image once computed."""
    if not state.capabilities.segmentation:
        raise ApiError(404, "this model does not segment its images")
    record = state.find(session, image_id)
    if record.segmentation is None:

        def work(ed: BaseEditor) -> np.ndarray:
            return segmentation_labels(ed.segment(ensure_handle(ed, record)))[0]  # type: ignore[attr-defined]

        record.segmentation, _ = await state.run_model(work)
    png = await state.in_thread(palette_png, record.segmentation)
    return Response(png, media_type="image/png", headers={"Cache-Control": cache_policy(record)})


@router.get("/images/{image_id}/parts")
async def parts(
    state: State, session: CurrentSession, image_id: ImageId,
    names: Annotated[str, Query(min_length=1, max_length=256)],
) -> Response:
    """A part mask (names such as hair or hair+eyes) of a gallery image from a dataset with part masks."""
    record = state.find(session, image_id)
    label_map = record.label_map
    if label_map is None:
        raise ApiError(404, f"image {image_id}: has no part masks (only gallery images of a dataset with masks)")
    wanted = tuple(n.strip() for n in names.replace(",", "+").replace(" ", "+").split("+") if n.strip())
    if not wanted:
        raise ApiError(400, "names: give part names such as hair or hair+eyes")

    def render() -> bytes:
        mask = mask_from_parts([label_map], state.gallery.part_names, PartMask(wanted), state.size)
        return png_bytes((mask[0, 0].numpy() * 255).astype(np.uint8))

    try:
        png = await state.in_thread(render)
    except EditingError as exc:
        raise ApiError(400, str(exc)) from None
    return Response(png, media_type="image/png", headers={"Cache-Control": cache_policy(record)})


@router.get("/images/{image_id}/clusters")
async def clusters(
    state: State, session: CurrentSession, image_id: ImageId,
    ids: Annotated[str, Query(min_length=1, max_length=256)],
) -> Response:
    """A mask of the model's part clusters (ids or names, such as 3 or 3+hair) of any image, computed from the
    image's own generator features (`Editor.cluster_mask`)."""
    record = state.find(session, image_id)
    if state.editor.clusters is None:
        raise ApiError(404, "this model has no part clusters (stylemapgan clusters fit adds them)")
    wanted = [n.strip() for n in ids.replace(",", "+").replace(" ", "+").split("+") if n.strip()]
    if not wanted:
        raise ApiError(400, "ids: give cluster ids or names such as 3 or 3+hair")

    def work(ed: Editor) -> torch.Tensor:  # an editor with part clusters (checked above)
        return ed.cluster_mask([ensure_handle(ed, record)], wanted, "ids").cpu()

    mask, _ = await state.run_model(work)
    png = await state.in_thread(png_bytes, (mask[0, 0].numpy() * 255).astype(np.uint8))
    return Response(png, media_type="image/png", headers={"Cache-Control": cache_policy(record)})


@router.post("/images/{image_id}/keep")
async def keep(state: State, session: CurrentSession, image_id: ImageId) -> dict[str, Any]:
    """Copy an image (a result, typically) into the session's uploads, to edit it further."""
    record = state.find(session, image_id)
    copy = ImageRecord(new_id("u"), record.name, "upload", record.pixels, code=record.code,
                       label_map=record.label_map, handle=record.handle, segmentation=record.segmentation,
                       meta={"from": record.kind, "stylemap": stylemap_origin(record)}, photo=record.photo)
    state.sessions.uploads.put(session.id, copy.id, copy)
    return copy.describe()


@router.delete("/images/{image_id}")
async def forget(state: State, session: CurrentSession, image_id: ImageId) -> Response:
    if not image_id.startswith("u_") or not state.sessions.uploads.remove(session.id, image_id):
        raise ApiError(404, f"image {image_id}: not one of this session's uploads")
    return Response(status_code=204)
