"""FFHQ-style face alignment: eye and mouth landmarks -> an oriented square (the "quad") -> the aligned crop.

The recipe of the FFHQ dataset (Karras et al. 2019), which the official StyleMapGAN and SemanticStyleGAN
checkpoints expect. With e = the eye centres' midpoint, v_e = right eye - left eye, m = the mouth corners'
midpoint and v_m = m - e:

- the square's x axis is v_e - rot90(v_m) (the eye line averaged with the perpendicular of the eye-mouth line),
  its half side max(2 |v_e|, 1.8 |v_m|), its centre e + 0.1 v_m;
- a very large face is first shrunk (box filter) so the resampling never skips pixels; the photo is cropped
  to the square plus a border; where the square leaves the photo, the photo is extended by reflection, blurred
  and faded towards its median colour the further it reaches, so no hard edge or black corner enters the crop;
- the square is resampled (bilinear) at `SUPERSAMPLE` times the output size, then reduced with Lanczos.

The `FaceTransform` (the square's corners in the photo) maps aligned pixels to photo pixels and back; it is saved
beside each aligned face as JSON and is all `paste` needs to put an edited face back.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from stylemapgan.photos.errors import NoFaceError, PhotoError
from stylemapgan.photos.landmarks import FaceLandmarks, LandmarkDetector, make_detector

SUPERSAMPLE = 4  # the quad is resampled at 4x the output size, then reduced (the recipe: 4096 px for 1024 px)
TRANSFORM_FORMAT = "stylemapgan-face-transform"


@dataclass(frozen=True)
class FaceTransform:
    """Where an aligned face sits in its photo. `quad` [4, 2]: the photo coordinates (continuous pixels, EXIF
    orientation applied) of the aligned image's top-left, bottom-left, bottom-right and top-right corners."""

    quad: np.ndarray
    size: int
    photo_size: tuple[int, int]  # (width, height)

    @property
    def matrix(self) -> np.ndarray:
        """3x3 affine map from aligned coordinates (0..size) to photo coordinates."""
        q = np.asarray(self.quad, dtype=np.float64)
        ex, ey = (q[3] - q[0]) / self.size, (q[1] - q[0]) / self.size
        return np.array([[ex[0], ey[0], q[0, 0]], [ex[1], ey[1], q[0, 1]], [0.0, 0.0, 1.0]])

    def to_photo(self, points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64)
        return p @ self.matrix[:2, :2].T + self.matrix[:2, 2]

    def to_aligned(self, points: np.ndarray) -> np.ndarray:
        inv = np.linalg.inv(self.matrix)
        p = np.asarray(points, dtype=np.float64)
        return p @ inv[:2, :2].T + inv[:2, 2]

    @property
    def scale(self) -> float:
        """Photo pixels per aligned pixel."""
        return float(np.hypot(*(self.quad[3] - self.quad[0])) / self.size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TRANSFORM_FORMAT, "version": 1, "size": self.size, "photo_size": list(self.photo_size),
            "quad": np.round(self.quad, 4).tolist(),
            "matrix": np.round(self.matrix[:2], 8).tolist(),
            "note": "quad: photo pixel coordinates of the aligned image's top-left, bottom-left, bottom-right and "
                    "top-right corners; matrix: aligned (x, y) -> photo (x, y), continuous pixel coordinates",
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any], what: str = "transform") -> FaceTransform:
        try:
            if record.get("format") != TRANSFORM_FORMAT:
                raise ValueError(f"format is not {TRANSFORM_FORMAT!r}")
            quad = np.asarray(record["quad"], dtype=np.float64)
            size = int(record["size"])
            w, h = (int(v) for v in record["photo_size"])
            if quad.shape != (4, 2) or size < 1 or w < 1 or h < 1 or not np.isfinite(quad).all():
                raise ValueError("quad, size or photo_size out of range")
        except (KeyError, TypeError, ValueError) as exc:
            raise PhotoError(f"{what}: not a face transform ({exc})") from None
        return cls(quad, size, (w, h))


@dataclass
class AlignedFace:
    """One aligned face: the crop, where it came from, and its landmarks in the crop's coordinates."""

    image: Image.Image  # RGB, size x size
    transform: FaceTransform
    landmarks: FaceLandmarks  # in aligned coordinates

    def record(self, **extra: Any) -> dict[str, Any]:
        """What is saved beside the aligned face: the transform, the landmarks in the photo, anything else."""
        return {**self.transform.to_dict(), "landmarks": self.landmarks.mapped(self.transform.to_photo).to_dict(),
                **extra}


def save_face_record(path: str | os.PathLike[str], face: AlignedFace, **extra: Any) -> None:
    from stylemapgan.utils.files import atomic_write_json

    atomic_write_json(path, face.record(**extra))


def load_transform(path: str | os.PathLike[str]) -> FaceTransform:
    """A transform JSON written by `stylemapgan align` (or `save_face_record`)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise PhotoError(f"{path}: no such file (transform)") from None
    except (OSError, ValueError) as exc:
        raise PhotoError(f"{path}: unreadable transform ({exc})") from None
    if not isinstance(record, dict):
        raise PhotoError(f"{path}: not a face transform (expected a JSON object)")
    return FaceTransform.from_dict(record, str(path))


def ffhq_quad(landmarks: FaceLandmarks) -> np.ndarray:
    """The recipe's oriented square from the eye centres and mouth corners -> [4, 2] (TL, BL, BR, TR)."""
    eye_left, eye_right = landmarks.eye_left, landmarks.eye_right
    eye_mid = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (landmarks.mouth_left + landmarks.mouth_right) / 2 - eye_mid

    def rot90(v: np.ndarray) -> np.ndarray:  # +90 degrees with y pointing down
        return np.array([-v[1], v[0]])

    x = eye_to_eye - rot90(eye_to_mouth)
    norm = float(np.hypot(*x))
    if not math.isfinite(norm) or norm < 1e-6:
        raise PhotoError("landmarks: eyes and mouth coincide; cannot orient the face")
    x = x / norm * max(float(np.hypot(*eye_to_eye)) * 2.0, float(np.hypot(*eye_to_mouth)) * 1.8)
    y = rot90(x)
    c = eye_mid + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _extend(image: Image.Image, pads: tuple[int, int, int, int], qsize: float) -> Image.Image:
    """Pad (left, top, right, bottom) by reflection; the further a padded pixel lies from the photo, the more it is
    blurred and faded towards the median colour (so the crop shows no mirrored sharp detail at its corners)."""
    pl, pt, pr, pb = pads
    arr = np.asarray(image, dtype=np.float32)
    h0, w0 = arr.shape[:2]
    mode = "reflect" if min(h0, w0) > 1 else "edge"
    arr = np.pad(arr, ((pt, pb), (pl, pr), (0, 0)), mode=mode)
    h, w = arr.shape[:2]
    xs, ys = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)
    dx = np.maximum(np.maximum((pl - xs) / max(pl, 1), (xs - (pl + w0 - 1)) / max(pr, 1)), 0)
    dy = np.maximum(np.maximum((pt - ys) / max(pt, 1), (ys - (pt + h0 - 1)) / max(pb, 1)), 0)
    ramp = np.clip(np.maximum(dx[None, :], dy[:, None]), 0, 1)[..., None]
    padded = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))
    blurred = np.asarray(padded.filter(ImageFilter.GaussianBlur(max(qsize * 0.02, 0.5))), dtype=np.float32)
    arr = arr + (blurred - arr) * np.clip(ramp * 3, 0, 1)
    arr = arr + (np.median(arr.reshape(-1, 3), axis=0) - arr) * ramp
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))


def align_face(photo: Image.Image, landmarks: FaceLandmarks, size: int) -> AlignedFace:
    """Crop, rotate and resize one face of `photo` (RGB, orientation applied) to size x size, the FFHQ way."""
    if size < 8:
        raise PhotoError(f"--size: must be at least 8 pixels, got {size}")
    photo = photo.convert("RGB")
    quad = ffhq_quad(landmarks)
    transform = FaceTransform(quad, size, photo.size)
    work, q = photo, quad.copy()
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    target = size * SUPERSAMPLE
    shrink = math.floor(qsize / target * 0.5)
    if shrink > 1:  # a large face: box-filter it down first, so the bilinear resampling below skips no pixels
        new = (max(1, round(photo.width / shrink)), max(1, round(photo.height / shrink)))
        scale = np.array([new[0] / photo.width, new[1] / photo.height])
        work, q, qsize = photo.resize(new, Image.Resampling.BOX), q * scale, qsize * float(scale.mean())
    border = max(round(qsize * 0.1), 3)
    x0, y0 = np.floor(q.min(axis=0)).astype(int) - border
    x1, y1 = np.ceil(q.max(axis=0)).astype(int) + border
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, work.width), min(y1, work.height)
    if cx1 <= cx0 or cy1 <= cy0:
        raise PhotoError("landmarks: the face lies outside the photo")
    work, q = work.crop((cx0, cy0, cx1, cy1)), q - np.array([cx0, cy0])
    pads = (cx0 - x0, cy0 - y0, x1 - cx1, y1 - cy1)
    if max(pads) > border - 4:  # the square leaves the photo: extend it
        least = round(qsize * 0.3)
        pads = tuple(max(p, least) for p in pads)  # type: ignore[assignment]
        work, q = _extend(work, pads, qsize), q + np.array([pads[0], pads[1]])
    aligned = work.transform((target, target), Image.Transform.QUAD, tuple(q.flatten()), Image.Resampling.BILINEAR)
    if target != size:
        aligned = aligned.resize((size, size), Image.Resampling.LANCZOS)
    return AlignedFace(aligned, transform, landmarks.mapped(transform.to_aligned))


def detect_faces(
    photo: Image.Image, detector: LandmarkDetector | None = None, largest: bool = False, name: str = "photo"
) -> list[FaceLandmarks]:
    """Every face's landmarks, left to right (or only the largest); `NoFaceError` naming the photo if none."""
    detector = detector if detector is not None else make_detector()
    faces = detector.detect(photo)
    if not faces:
        raise NoFaceError(f"{name}: no face found ({detector.name} landmarks)")
    if largest:
        return [max(faces, key=lambda f: f.extent)]
    return sorted(faces, key=lambda f: float(f.points[:, 0].mean()))


def align_photo(
    photo: Image.Image, size: int, detector: LandmarkDetector | None = None, largest: bool = False,
    name: str = "photo",
) -> list[AlignedFace]:
    """Every face of a photo aligned (left to right), or only the largest with `largest`."""
    rgb = photo.convert("RGB")
    return [align_face(rgb, lm, size) for lm in detect_faces(rgb, detector, largest, name)]


def load_photo(path: str | os.PathLike[str]) -> Image.Image:
    """A photo file -> RGB with its EXIF orientation applied (phone pictures are often stored sideways);
    transparency over white. One-line PhotoError for a missing or unreadable file."""
    from PIL import ImageOps, UnidentifiedImageError

    from stylemapgan.utils.images import to_rgb

    path = Path(path)
    if not path.is_file():
        raise PhotoError(f"{path}: no such file (photo)" if not path.exists() else f"{path}: not a file (photo)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # over Pillow's limit: refused
            with Image.open(path) as im:
                im.load()
                image = ImageOps.exif_transpose(im)
        return to_rgb(image, (255, 255, 255))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PhotoError(f"{path}: too many pixels (Pillow's decompression-bomb guard) (photo)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise PhotoError(f"{path}: not a readable image ({type(exc).__name__}) (photo)") from None


def face_grid(faces: Sequence[AlignedFace]) -> Image.Image:
    """The aligned crops side by side (for a quick look)."""
    size = faces[0].image.width
    grid = Image.new("RGB", (size * len(faces), size), (255, 255, 255))
    for i, face in enumerate(faces):
        grid.paste(face.image, (i * size, 0))
    return grid
