"""Turning untrusted bytes (uploaded images, painted masks) into model-sized arrays, refusing anything odd.

The format is sniffed from the bytes (the declared type only has to be compatible), the pixel count is read
from the header and checked before any pixel is decoded (decompression bombs), and only the first frame of
an animation is used. Every refusal is an `ApiError` with a 4xx status and a message for the page.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stylemapgan.editing.errors import EditingError
from stylemapgan.editing.images import fit_to_size, to_rgb
from stylemapgan.serving.errors import ApiError

ALLOWED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
NEUTRAL_TYPES = {"", "application/octet-stream"}  # what some browsers send for a file they cannot classify


def sniff_format(data: bytes) -> str | None:
    """PNG / JPEG / WEBP from the magic bytes, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _describe_other(data: bytes) -> str:
    known = {b"GIF8": "a GIF", b"BM": "a BMP", b"%PDF": "a PDF", b"II*\x00": "a TIFF", b"MM\x00*": "a TIFF"}
    for magic, name in known.items():
        if data.startswith(magic):
            return name
    return "not an image"


def check_declared_type(content_type: str | None) -> None:
    """Refuse an upload whose declared type is neither a supported image type nor neutral (before reading)."""
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared not in NEUTRAL_TYPES and declared not in ALLOWED_FORMATS.values() and declared != "image/jpg":
        raise ApiError(415, f"unsupported file type {declared!r}: upload a PNG, JPEG or WebP image")


def _open_checked(data: bytes, max_pixels: int, what: str) -> Image.Image:
    """Open lazily, check dimensions from the header, then decode (Pillow's bomb warning is an error too)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width < 1 or height < 1:
                raise ApiError(400, f"{what}: empty image ({width}x{height})")
            if width * height > max_pixels:
                raise ApiError(
                    413, f"{what}: {width}x{height} is {width * height:,} pixels; the limit is {max_pixels:,}"
                )
            return image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ApiError(413, f"{what}: too many pixels (decompression bomb guard)") from None
    except UnidentifiedImageError:
        raise ApiError(415, f"{what}: not a readable image") from None
    except ApiError:
        raise
    except Exception as exc:  # Pillow raises many types for broken headers
        raise ApiError(400, f"{what}: cannot read the image header ({type(exc).__name__})") from None


def _load(image: Image.Image, what: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ApiError(413, f"{what}: too many pixels (decompression bomb guard)") from None
    except Exception as exc:  # truncated or corrupt pixel data
        raise ApiError(400, f"{what}: cannot decode the image ({type(exc).__name__}: {exc})") from None


def decode_upload(
    data: bytes, size: int, fit: str = "crop", background: tuple[int, int, int] = (0, 0, 0),
    max_pixels: int = 25_000_000,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Uploaded bytes -> (uint8 [size, size, 3] centre-cropped or padded to the model's size, original (w, h))."""
    if not data:
        raise ApiError(400, "upload: the file is empty")
    fmt = sniff_format(data)
    if fmt is None:
        raise ApiError(415, f"upload: {_describe_other(data)}; upload a PNG, JPEG or WebP image")
    image = _open_checked(data, max_pixels, "upload")
    if image.format != fmt and not (fmt == "JPEG" and image.format == "MPO"):  # MPO: multi-picture JPEG
        raise ApiError(415, f"upload: looks like {fmt} but decodes as {image.format}")
    original = image.size
    if fmt == "JPEG":  # decode at a reduced scale when the image is much larger than the model (fast, less memory)
        image.draft("RGB", (size, size))
    _load(image, "upload")
    try:
        image = ImageOps.exif_transpose(image) or image
        fitted = fit_to_size(to_rgb(image, background), size, fit, background)
    except EditingError as exc:
        raise ApiError(400, f"upload: {exc}") from None
    except Exception as exc:
        raise ApiError(400, f"upload: cannot convert the image ({type(exc).__name__})") from None
    return np.asarray(fitted.convert("RGB"), dtype=np.uint8).copy(), original


def max_mask_chars(size: int) -> int:
    """Upper bound on a mask's base64 text: a size x size PNG never needs more than ~4 bytes a pixel."""
    return 4 * size * size * 4 // 3 + 4096


def decode_mask(text: str, size: int, what: str = "mask") -> np.ndarray:
    """A painted mask (PNG, optionally as a data: URL) of exactly size x size -> float32 [size, size] in [0, 1].

    The value is the alpha channel when the PNG has one (the page paints with opaque colour on transparency),
    otherwise the luminance."""
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if header != "data:image/png;base64":
            raise ApiError(400, f"{what}: expected a data:image/png;base64 URL")
    if len(text) > max_mask_chars(size):
        raise ApiError(413, f"{what}: too large for a {size}x{size} mask")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{what}: not valid base64") from None
    if sniff_format(data) != "PNG":
        raise ApiError(400, f"{what}: not a PNG")
    image = _open_checked(data, 4 * size * size, what)  # the exact size is checked next, with a clearer message
    if image.size != (size, size):
        raise ApiError(400, f"{what}: must be {size}x{size} pixels (the model's size), got {image.size[0]}x"
                            f"{image.size[1]}")
    _load(image, what)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        channel = image.convert("RGBA").getchannel("A")
    else:
        channel = image.convert("L")
    return np.asarray(channel, dtype=np.float32) / 255.0


def safe_name(name: str | None, fallback: str = "upload") -> str:
    """A display name (never used as a path): printable, at most 80 characters."""
    cleaned = "".join(ch for ch in (name or "") if ch.isprintable() and ch not in "<>\"'`\\/")
    return cleaned.strip()[:80] or fallback
