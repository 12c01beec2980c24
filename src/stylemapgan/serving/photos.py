"""Uploaded photos with faces: the "align face" upload aligns the largest face of the photo (FFHQ recipe) and keeps
the photo's bytes and the face's transform with the upload, so any result made from it can be downloaded as the
whole photo with the edited face pasted back, at the photo's resolution (`GET /api/images/{id}/photo`)."""

from __future__ import annotations

import importlib.util
import io
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from stylemapgan.photos import FaceTransform, PhotoError, align_photo, make_detector, paste_faces
from stylemapgan.serving.errors import ApiError


@dataclass(frozen=True)
class PhotoSource:
    """Where an aligned upload came from: the photo as uploaded (its bytes) and the face's transform in it."""

    data: bytes
    transform: FaceTransform


def is_face_model(name: str, description: str = "") -> bool:
    """A model of faces (the align box starts ticked): its name or card mentions faces or a face dataset."""
    text = f"{name} {description}".lower()
    return any(word in text for word in ("face", "celeba", "ffhq", "portrait"))


@dataclass
class PhotoAligner:
    """One landmark detector for the server, made on first use and used by one thread at a time."""

    landmarks: str = "mediapipe"
    _detector: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def available(self) -> bool:
        return importlib.util.find_spec("mediapipe" if self.landmarks == "mediapipe" else "dlib") is not None

    def align(self, photo: Image.Image, size: int, name: str) -> tuple[np.ndarray, FaceTransform, int]:
        """The photo's largest face aligned to size x size -> (uint8 pixels, its transform, faces found)."""
        with self._lock:
            try:
                if self._detector is None:
                    self._detector = make_detector(self.landmarks)
                faces = self._detector.detect(photo)
                if not faces:
                    raise ApiError(422, f"upload: no face found in {name}; untick \u201calign face\u201d to use the "
                                        "whole image")
                face = align_photo(photo, size, _OneFace(max(faces, key=lambda f: f.extent)), largest=True)[0]
            except PhotoError as exc:
                raise ApiError(400 if "not installed" not in str(exc) else 501, f"upload: {exc}") from None
        return np.asarray(face.image, dtype=np.uint8).copy(), face.transform, len(faces)


@dataclass
class _OneFace:
    """A detector that answers with landmarks already found (the aligner detects once, under its lock)."""

    face: Any
    name: str = "known"

    def detect(self, photo: Image.Image) -> list[Any]:
        return [self.face]


def open_photo(data: bytes) -> Image.Image:
    """The upload's bytes (already checked by `decode_upload`'s rules) -> RGB photo, EXIF orientation applied."""
    from stylemapgan.utils.images import to_rgb

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return to_rgb(ImageOps.exif_transpose(im) or im, (255, 255, 255))


def paste_back(source: PhotoSource, pixels: np.ndarray) -> bytes:
    """A result (model size) put back into the photo it came from -> PNG bytes at the photo's resolution."""
    photo = open_photo(source.data)
    out = paste_faces(photo, [(Image.fromarray(pixels), source.transform)])
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()
