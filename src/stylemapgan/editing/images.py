"""Loading any image (size, mode, EXIF orientation, transparency) into a model-sized tensor, and writing
images, stylemaps and animations.

Images inside the engine are float tensors [N, 3, size, size] in [-1, 1]. Inputs of another shape are made
square first, by a centre crop ("crop", the default: keeps the pixel aspect, loses the borders) or by padding
with a background colour ("pad": keeps everything, adds borders), then resized with Lanczos.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from stylemapgan.editing.errors import EditingError
from stylemapgan.utils.files import atomic_write_bytes, atomic_write_json
from stylemapgan.utils.images import Color, from_uint8, png_bytes, to_rgb, to_uint8
from stylemapgan.utils.images import parse_color as utils_parse_color

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".ico"}
)
STYLEMAP_SUFFIX = ".npz"


def _check_file(path: Path, what: str = "input") -> None:
    if not path.exists():
        raise EditingError(f"{path}: no such file ({what})")
    if path.is_dir():
        raise EditingError(f"{path}: is a directory, expected a file ({what})")


def open_image(path: str | os.PathLike[str], what: str = "image") -> Image.Image:
    """Open and fully decode an image file (EXIF rotation applied); one-line errors for missing/non-images and
    for images over Pillow's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`, 89 Mpx), checked from the header
    before any pixel is decoded."""
    path = Path(path)
    _check_file(path, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # over the limit: refused, not warned
            im = Image.open(path)
    except UnidentifiedImageError:
        raise EditingError(f"{path}: not an image (Pillow cannot identify the format) ({what})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        size = str(exc).split(", could be")[0]  # "Image size (400000000 pixels) exceeds limit of 89478485 pixels"
        raise EditingError(f"{path}: not decoded: {size} (Pillow's decompression-bomb guard) ({what})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise EditingError(f"{path}: unreadable image ({exc}) ({what})") from None
    try:
        with im:
            im.load()
            image = ImageOps.exif_transpose(im) or im
            if image is im:
                image = im.copy()
    except (OSError, ValueError, SyntaxError) as exc:
        raise EditingError(f"{path}: unreadable image ({exc}) ({what})") from None
    return image


def _crop_square(image: Image.Image, background: Color) -> Image.Image:
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return image.crop((left, top, left + side, top + side))


def _pad_square(image: Image.Image, background: Color) -> Image.Image:
    w, h = image.size
    side = max(w, h)
    fill: Any = background if image.mode == "RGB" else 0
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    return canvas


SQUARE_FITS: dict[str, Callable[[Image.Image, Color], Image.Image]] = {"crop": _crop_square, "pad": _pad_square}


def square_fit(name: str) -> Callable[[Image.Image, Color], Image.Image]:
    try:
        return SQUARE_FITS[name]
    except KeyError:
        raise EditingError(f"fit: must be one of {', '.join(SQUARE_FITS)}, got {name!r}") from None


def fit_to_size(
    image: Image.Image, size: int, fit: str = "crop", background: Color = (0, 0, 0),
    resample: Image.Resampling = Image.Resampling.LANCZOS,
) -> Image.Image:
    """Make square (crop or pad) and resize to size x size."""
    square = square_fit(fit)(image, background)
    if square.size != (size, size):
        square = square.resize((size, size), resample)
    return square


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> [1, 3, H, W] in [-1, 1]."""
    return from_uint8(np.array(image.convert("RGB"), dtype=np.uint8))


def load_image(
    path: str | os.PathLike[str], size: int, fit: str = "crop", background: Color = (0, 0, 0), what: str = "image"
) -> torch.Tensor:
    """An image file of any size and mode -> [1, 3, size, size] in [-1, 1]."""
    image = to_rgb(open_image(path, what), background)
    return pil_to_tensor(fit_to_size(image, size, fit, background))


def prepare_pil(image: Image.Image, size: int, fit: str = "crop", background: Color = (0, 0, 0)) -> torch.Tensor:
    """In-memory PIL image (e.g. an upload to a web editor) -> [1, 3, size, size] in [-1, 1]."""
    return pil_to_tensor(fit_to_size(to_rgb(image, background), size, fit, background))


def parse_color(text: str) -> Color:
    """The one colour rule (`utils.images.parse_color`: '#rrggbb', 'rrggbb', 'r,g,b', white/black/gray), with
    the error as an EditingError naming the flag."""
    try:
        return utils_parse_color(text)
    except ValueError as exc:
        raise EditingError(f"background: {exc}") from None


def collect_inputs(paths: Sequence[str | os.PathLike[str]], suffixes: frozenset[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Files as given, and the image files inside given folders (sorted, not recursive)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in suffixes)
            if not inside:
                raise EditingError(f"{p}: folder holds no image files ({', '.join(sorted(suffixes))})")
            found += inside
        else:
            _check_file(p)
            found.append(p)
    return found


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """Output names from input names, made unique (a.png and a.jpg -> a, a-1)."""
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        stem = p.stem or "image"
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        stems.append(stem if count == 0 else f"{stem}-{count}")
    return stems


def save_image(path: str | os.PathLike[str], image: torch.Tensor) -> None:
    """[3, H, W] or [1, 3, H, W] in [-1, 1] -> PNG (atomic)."""
    t = image if image.ndim == 4 else image[None]
    atomic_write_bytes(path, png_bytes(to_uint8(t)[0]))


def stylemap_npz_bytes(stylemap: torch.Tensor, meta: dict[str, Any]) -> bytes:
    """Stylemap [C, s, s] (or [1, C, s, s]) -> .npz bytes with arrays `stylemap` (float32) and `meta` (JSON
    text): the one stylemap file format, written by the CLI and downloaded from the web editor."""
    sm = stylemap.detach().float().cpu()
    if sm.ndim == 4:
        sm = sm[0]
    buf = io.BytesIO()
    np.savez(buf, stylemap=sm.numpy(), meta=np.array(json.dumps(meta, sort_keys=True)))
    return buf.getvalue()


def save_stylemap(path: str | os.PathLike[str], stylemap: torch.Tensor, meta: dict[str, Any]) -> None:
    """`stylemap_npz_bytes` written atomically to `path` (read back by `load_stylemap`)."""
    atomic_write_bytes(path, stylemap_npz_bytes(stylemap, meta))


def load_stylemap(path: str | os.PathLike[str], shape: tuple[int, int, int]) -> torch.Tensor:
    """A .npz written by `save_stylemap` -> [1, C, s, s], checked against the model's stylemap shape."""
    path = Path(path)
    _check_file(path, "stylemap")
    try:
        with np.load(path, allow_pickle=False) as data:
            arr = np.asarray(data["stylemap"], dtype=np.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise EditingError(f"{path}: not a stylemap .npz ({exc})") from None
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if tuple(arr.shape) != tuple(shape):
        raise EditingError(f"{path}: stylemap has shape {tuple(arr.shape)}, this model needs {tuple(shape)}")
    return torch.from_numpy(arr.copy())[None]


def animation_bytes(frames: torch.Tensor, suffix: str, fps: float = 8.0) -> bytes:
    """[F, 3, H, W] in [-1, 1] -> GIF (Pillow) or MP4 (only with the optional imageio-ffmpeg) file bytes."""
    arrays = to_uint8(frames)
    if suffix == ".gif":
        pil = [Image.fromarray(a) for a in arrays]
        buf = io.BytesIO()
        pil[0].save(buf, format="GIF", save_all=True, append_images=pil[1:], duration=round(1000 / fps), loop=0)
        return buf.getvalue()
    if suffix == ".mp4":
        return _mp4_bytes(arrays, fps)
    raise EditingError(f"video: unsupported format {suffix!r}; use .gif (or .mp4 with imageio-ffmpeg)")


def _mp4_bytes(arrays: np.ndarray, fps: float) -> bytes:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise EditingError(
            "video: .mp4 needs the optional package imageio-ffmpeg (pip install imageio-ffmpeg); use a .gif path"
        ) from None
    import tempfile

    _, h, w, _ = arrays.shape
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "video.mp4"
        # yuv420p needs even sides: pad by repeating the last row/column.
        ph, pw = h + h % 2, w + w % 2
        writer = imageio_ffmpeg.write_frames(str(out), (pw, ph), fps=fps, macro_block_size=1)
        writer.send(None)
        for a in arrays:
            writer.send(np.ascontiguousarray(np.pad(a, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")))
        writer.close()
        return out.read_bytes()


def save_animation(path: str | os.PathLike[str], frames: torch.Tensor, fps: float = 8.0) -> None:
    atomic_write_bytes(path, animation_bytes(frames, Path(path).suffix.lower(), fps))


def write_json(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    atomic_write_json(path, record)


def check_animation_path(path: str | os.PathLike[str]) -> None:
    """Fail before any work if an animation cannot be written to `path`."""
    suffix = Path(path).suffix.lower()
    if suffix == ".gif":
        return
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise EditingError(
                f"video {path}: .mp4 needs the optional package imageio-ffmpeg (pip install imageio-ffmpeg); "
                "use a .gif path"
            ) from None
        return
    raise EditingError(f"video {path}: unsupported format {suffix or '(none)'!r}; use .gif (or .mp4)")
