"""Real photos: find faces and their landmarks offline, align them the FFHQ way, paste edited faces back into
the whole photo, and draw part masks (eyes, brows, nose, mouth, face oval) from the landmarks.

    photo = load_photo("group.jpg")                       # EXIF orientation applied
    faces = align_photo(photo, 256)                       # every face, left to right
    back = paste_faces(photo, [(f.image, f.transform) for f in faces])  # the photo's own resolution

This package sits below the editing engine: `edit_photo` takes any function of an aligned face.
"""

from stylemapgan.photos.align import (
    AlignedFace,
    FaceTransform,
    align_face,
    align_photo,
    detect_faces,
    ffhq_quad,
    load_photo,
    load_transform,
    save_face_record,
)
from stylemapgan.photos.edit import PhotoEdit, edit_photo, paste_frames
from stylemapgan.photos.errors import NoFaceError, PhotoError
from stylemapgan.photos.landmarks import (
    DETECTORS,
    DlibDetector,
    FaceLandmarks,
    LandmarkDetector,
    MediaPipeDetector,
    make_detector,
)
from stylemapgan.photos.masks import LANDMARK_PARTS, landmark_mask
from stylemapgan.photos.paste import DEFAULT_FEATHER, paste_faces, paste_weight

__all__ = [
    "DEFAULT_FEATHER",
    "DETECTORS",
    "LANDMARK_PARTS",
    "AlignedFace",
    "DlibDetector",
    "FaceLandmarks",
    "FaceTransform",
    "LandmarkDetector",
    "MediaPipeDetector",
    "NoFaceError",
    "PhotoEdit",
    "PhotoError",
    "align_face",
    "align_photo",
    "detect_faces",
    "edit_photo",
    "ffhq_quad",
    "landmark_mask",
    "load_photo",
    "load_transform",
    "make_detector",
    "paste_faces",
    "paste_frames",
    "paste_weight",
    "save_face_record",
]
