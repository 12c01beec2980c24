"""Turning arbitrary image bytes into clean square RGB images, or a reason to skip them.

Real folders hold corrupt files, odd modes and EXIF-rotated photos; each is either converted to plain 8-bit
RGB or rejected with a ``SkipImage`` whose ``reason`` is one short category (for the summary) and whose
``detail`` says what exactly was wrong. Nothing here raises anything else for bad input. The mode conversion
and the colour parser are the ones every package uses (``stylemapgan.utils.images``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from PIL import Image, ImageOps, UnidentifiedImageError

from stylemapgan.utils.images import ImageModeError, to_rgb

RESIZE_FILTERS = {"lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX}
SQUARE_MODES = ("crop", "pad")
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb threshold


class SkipImage(Exception):
    """An input that cannot become a dataset image; ``reason`` is a summary category."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageOptions:
    """How inputs are sanitised; recorded in the dataset metadata since FID depends on some of them."""

    sizes: tuple[int, ...]
    square: str = "crop"
    resize_filter: str = "lanczos"
    background: tuple[int, int, int] = (255, 255, 255)
    upscale_small: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if not self.sizes or any(int(s) < 1 for s in self.sizes):
            raise ValueError(f"sizes must be positive integers, got {self.sizes!r}")
        if self.square not in SQUARE_MODES:
            raise ValueError(f"square must be one of {SQUARE_MODES}, got {self.square!r}")
        if self.resize_filter not in RESIZE_FILTERS:
            raise ValueError(f"resize_filter must be one of {sorted(RESIZE_FILTERS)}, got {self.resize_filter!r}")
        if len(self.background) != 3 or any(not 0 <= int(c) <= 255 for c in self.background):
            raise ValueError(f"background must be three 0..255 values, got {self.background!r}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be positive, got {self.max_pixels}")


@dataclass
class CleanImage:
    """One sanitised input: PNG bytes per size, plus notes on what conversions were applied."""

    pngs: dict[int, bytes]
    original_size: tuple[int, int]
    conversions: list[str] = field(default_factory=list)


def encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def open_checked(data: bytes, max_pixels: int) -> Image.Image:
    """Decode fully, refusing empty, unknown, oversized (before decoding pixels) and corrupt inputs."""
    if not data:
        raise SkipImage("corrupt", "empty file")
    old_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own limit, checked from the header before any pixel is decoded
    try:
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise SkipImage("not-an-image", "unrecognised format") from None
        except Exception as exc:  # Pillow raises many types for broken headers
            raise SkipImage("corrupt", f"cannot read header ({type(exc).__name__}: {exc})") from None
        width, height = image.size
        if width * height > max_pixels:
            raise SkipImage("too-large", f"{width}x{height} = {width * height} pixels > limit {max_pixels}")
        if width < 1 or height < 1:
            raise SkipImage("corrupt", f"empty image {width}x{height}")
        try:
            image.load()
        except Exception as exc:  # truncated or corrupt pixel data
            raise SkipImage("corrupt", f"cannot decode ({type(exc).__name__}: {exc})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
    return image


def apply_exif_orientation(image: Image.Image, notes: list[str]) -> Image.Image:
    """Rotate/flip as the EXIF orientation tag says (cameras store pixels unrotated); a broken EXIF block keeps
    the pixels as stored."""
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # broken EXIF block: keep the pixels as stored
        orientation = 1
        notes.append("exif-unreadable")
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        try:
            image = ImageOps.exif_transpose(image)
            notes.append("exif-rotated")
        except Exception:
            notes.append("exif-unreadable")
    return image


def make_square(image: Image.Image, mode: str, background: tuple[int, int, int]) -> Image.Image:
    width, height = image.size
    if width == height:
        return image
    if mode == "crop":
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return image.crop((left, top, left + side, top + side))
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), background)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def resize_square(image: Image.Image, size: int, resize_filter: str) -> Image.Image:
    if image.size == (size, size):
        return image
    return image.resize((size, size), RESIZE_FILTERS[resize_filter])


def sanitize(data: bytes, options: ImageOptions) -> CleanImage:
    """Bytes of any image file -> PNG bytes at each requested size, or SkipImage."""
    image = open_checked(data, options.max_pixels)
    original = image.size
    notes: list[str] = []
    if getattr(image, "n_frames", 1) > 1:
        notes.append("first-frame")
    try:
        rgb = to_rgb(apply_exif_orientation(image, notes), options.background, notes)
    except ImageModeError as exc:
        raise SkipImage("unsupported-mode", str(exc)) from None
    except Exception as exc:
        raise SkipImage("corrupt", f"cannot convert ({type(exc).__name__}: {exc})") from None
    width, height = rgb.size
    side = min(width, height) if options.square == "crop" else max(width, height)
    target = max(options.sizes)
    if side < target:
        if not options.upscale_small:
            raise SkipImage("too-small", f"{width}x{height} gives a {side}px square, below target {target}px")
        notes.append("upscaled")
    square = make_square(rgb, options.square, options.background)
    pngs = {int(s): encode_png(resize_square(square, int(s), options.resize_filter)) for s in options.sizes}
    return CleanImage(pngs=pngs, original_size=original, conversions=notes)
