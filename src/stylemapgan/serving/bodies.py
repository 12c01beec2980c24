"""The JSON request bodies, and reading one: size-bounded while it streams in, validated into a one-line error.

The bounds written here are the shape of a well-formed request; the operator's limits (`ServerLimits`) are
checked by the routes on top."""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stylemapgan.editing.parts import DEFAULT_MASK_THRESHOLD
from stylemapgan.serving.errors import ApiError
from stylemapgan.serving.limits import ServerLimits
from stylemapgan.serving.store import ID_PATTERN
from stylemapgan.serving.uploads import max_mask_chars

ImageId = Annotated[str, Field(pattern=ID_PATTERN, max_length=48)]
M = TypeVar("M", bound=BaseModel)


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


PartName = Annotated[str, Field(min_length=1, max_length=64)]
PartSubspace = Literal["shape", "texture", "both"]


class PartReferenceIn(BaseModel):
    """One reference of a part swap: which of its parts to take, each its shape, its texture or both."""

    model_config = ConfigDict(extra="forbid")
    id: ImageId
    parts: dict[PartName, PartSubspace] = Field(min_length=1, max_length=256)


class PartSwapIn(Sequenced):
    source: ImageId
    references: list[PartReferenceIn] = Field(default_factory=list)
    remove: list[PartName] = Field(default_factory=list, max_length=256)  # composition: parts taken away
    alpha: float = Field(1.0, ge=0.0, le=1.0)


class PartInterpolateIn(Sequenced):
    a: ImageId
    b: ImageId
    parts: list[PartName] | None = Field(None, min_length=1, max_length=256)  # None: the whole code moves
    what: PartSubspace = "both"
    frames: int = Field(9, ge=2, le=256)


class PartsUnderMaskIn(Sequenced):
    id: ImageId
    mask: str = Field(min_length=1)  # PNG as for an edit's reference: alpha (or luminance) = painted
    # a part is covered when at least this fraction of its pixels is painted
    threshold: float = Field(DEFAULT_MASK_THRESHOLD, gt=0.0, le=1.0)


def validation_message(exc: ValidationError | RequestValidationError) -> str:
    """The first problem as `where: what`, and how many more there are."""
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


def body_limit(model: type[BaseModel], limits: ServerLimits, size: int) -> int:
    """Bytes a body of this type may have: the JSON limit, plus room for the painted masks it carries."""
    masks = {EditIn: limits.max_references, PartsUnderMaskIn: 1}.get(model, 0) * max_mask_chars(size)
    return limits.max_json_bytes + masks


def parse_json(model: type[M], body: bytes) -> M:
    """`body` validated as `model`: 400 when it is not JSON, 422 naming the first wrong field."""
    if not body:
        raise ApiError(400, "request body: expected JSON, got nothing")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            raise ApiError(400, "request body: malformed JSON") from None
        raise ApiError(422, validation_message(exc)) from None
