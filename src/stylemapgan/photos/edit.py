"""Editing the faces of a whole photo: align every face, edit each aligned face, put them all back.

    faces, frames = edit_photo(photo, lambda face: [my_edit(face.image)], size=editor.size)
    frames[0].save("edited.jpg")  # the photo's own resolution, every face edited

The edit function gets each `AlignedFace` (crop, transform, landmarks in the crop) and returns one or more edited
crops (frames of an animation: frame k of every face goes into result k). It is where an editor comes in; this
package stays below the editing engine, so any function of an aligned image works.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image

from stylemapgan.photos.align import AlignedFace, align_photo
from stylemapgan.photos.errors import PhotoError
from stylemapgan.photos.landmarks import LandmarkDetector
from stylemapgan.photos.paste import DEFAULT_FEATHER, paste_faces

FaceEdit = Callable[[AlignedFace], "Image.Image | Sequence[Image.Image]"]


@dataclass
class PhotoEdit:
    """The result of `edit_photo`: the aligned faces, each face's edited crops, and the whole photo per frame."""

    faces: list[AlignedFace]
    edited: list[list[Image.Image]]
    frames: list[Image.Image]


def paste_frames(
    photo: Image.Image, faces: Sequence[AlignedFace], edited: Sequence[Sequence[Image.Image]],
    feather: float = DEFAULT_FEATHER,
) -> list[Image.Image]:
    """Frame k of the result = the photo with frame k of every face's edit pasted back."""
    counts = {len(e) for e in edited}
    if len(counts) != 1 or 0 in counts:
        raise PhotoError(f"edit: every face needs the same number of edited frames, got {sorted(counts)}")
    return [paste_faces(photo, [(e[k], f.transform) for f, e in zip(faces, edited, strict=True)], feather)
            for k in range(counts.pop())]


def edit_photo(
    photo: Image.Image, edit: FaceEdit, size: int, detector: LandmarkDetector | None = None,
    largest: bool = False, feather: float = DEFAULT_FEATHER, name: str = "photo",
) -> PhotoEdit:
    """Align every face of `photo` (or the largest) to size x size, apply `edit` to each, paste all back."""
    photo = photo.convert("RGB")
    faces = align_photo(photo, size, detector, largest, name)
    edited = []
    for face in faces:
        out = edit(face)
        edited.append([out] if isinstance(out, Image.Image) else list(out))
    return PhotoEdit(faces, edited, paste_frames(photo, faces, edited, feather))
