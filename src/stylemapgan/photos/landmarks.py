"""Face landmarks from a photo, offline: a small detector interface with two implementations.

- `MediaPipeDetector` (default): MediaPipe FaceMesh, 478 points per face, from the model files inside the
  `mediapipe==0.10.21` wheel (Apache-2.0; later versions no longer ship them). Fast on a CPU and free to use.
- `DlibDetector`: dlib's HOG face detector and the 68-point shape predictor of the FFHQ recipe, where dlib and the
  model file are installed (`dlib-bin` with `face_recognition_models`, or Debian's `libdlib-data`); the model's
  licence is non-commercial, so it is only an option.

Points are in continuous pixel coordinates of the photo as shown (EXIF orientation applied): pixel (i, j) covers
[i, i + 1) x [j, j + 1), so its centre is (i + 0.5, j + 0.5). Each scheme names the points the alignment needs (eye
centres, mouth corners, on the image's left and right) and the outlines of the parts the landmark masks draw.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from stylemapgan.photos.errors import PhotoError


@dataclass(frozen=True)
class LandmarkScheme:
    """Which indices of a detector's points are which: eyes and mouth corners for the alignment, and the point
    sets whose convex hulls are the landmark masks' parts (several hulls per part: both eyes, both brows)."""

    name: str
    count: int
    eye_left: tuple[int, ...]  # the eye on the image's left (the subject's right); its centre is their mean
    eye_right: tuple[int, ...]
    mouth_left: int
    mouth_right: int
    parts: dict[str, tuple[tuple[int, ...], ...]]


_MP_EYE_LEFT = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
_MP_EYE_RIGHT = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)

MEDIAPIPE_SCHEME = LandmarkScheme(
    name="mediapipe-478",
    count=478,
    # the six points that correspond to dlib's 36-41 / 42-47 (corners, two upper and two lower lid points)
    eye_left=(33, 160, 158, 133, 153, 144),
    eye_right=(362, 385, 387, 263, 373, 380),
    mouth_left=61,
    mouth_right=291,
    parts={
        "eyes": (_MP_EYE_LEFT, _MP_EYE_RIGHT),
        "brows": ((46, 52, 53, 55, 63, 65, 66, 70, 105, 107), (276, 282, 283, 285, 293, 295, 296, 300, 334, 336)),
        "nose": ((1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344,
                  440),),
        "mouth": ((0, 17, 37, 39, 40, 61, 84, 91, 146, 181, 185, 267, 269, 270, 291, 314, 321, 375, 405, 409),),
        "oval": ((10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176, 234, 251, 284,
                  288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454),),
    },
)

DLIB_SCHEME = LandmarkScheme(
    name="dlib-68",
    count=68,
    eye_left=tuple(range(36, 42)),
    eye_right=tuple(range(42, 48)),
    mouth_left=48,
    mouth_right=54,
    parts={
        "eyes": (tuple(range(36, 42)), tuple(range(42, 48))),
        "brows": (tuple(range(17, 22)), tuple(range(22, 27))),
        "nose": (tuple(range(27, 36)),),
        "mouth": (tuple(range(48, 60)),),
        "oval": (tuple(range(0, 27)),),  # jaw line and brows: the 68 points have no forehead
    },
)

SCHEMES = {s.name: s for s in (MEDIAPIPE_SCHEME, DLIB_SCHEME)}


@dataclass(frozen=True)
class FaceLandmarks:
    """One face's points [N, 2] (x, y) in continuous pixel coordinates, and the scheme that names them."""

    points: np.ndarray
    scheme: LandmarkScheme

    @property
    def eye_left(self) -> np.ndarray:
        return self.points[list(self.scheme.eye_left)].mean(axis=0)

    @property
    def eye_right(self) -> np.ndarray:
        return self.points[list(self.scheme.eye_right)].mean(axis=0)

    @property
    def mouth_left(self) -> np.ndarray:
        return self.points[self.scheme.mouth_left]

    @property
    def mouth_right(self) -> np.ndarray:
        return self.points[self.scheme.mouth_right]

    @property
    def extent(self) -> float:
        """Area of the points' bounding box: what `--largest` compares."""
        span = self.points.max(axis=0) - self.points.min(axis=0)
        return float(span[0] * span[1])

    def mapped(self, fn: Callable[[np.ndarray], np.ndarray]) -> FaceLandmarks:
        """The same landmarks with every point passed through `fn` ([N, 2] -> [N, 2]), e.g. into an aligned crop."""
        return FaceLandmarks(np.asarray(fn(self.points), dtype=np.float64), self.scheme)

    def to_dict(self) -> dict[str, object]:
        return {"scheme": self.scheme.name, "points": np.round(self.points, 3).tolist()}

    @classmethod
    def from_dict(cls, record: dict[str, object], what: str = "landmarks") -> FaceLandmarks:
        scheme = SCHEMES.get(str(record.get("scheme")))
        points = np.asarray(record.get("points"), dtype=np.float64)
        if scheme is None or points.shape != (scheme.count, 2):
            raise PhotoError(f"{what}: expected a known scheme ({', '.join(SCHEMES)}) and its points")
        return cls(points, scheme)


class LandmarkDetector(Protocol):
    """Finds every face in an RGB photo: landmarks per face, in no particular order."""

    name: str

    def detect(self, photo: Image.Image) -> list[FaceLandmarks]: ...


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence what native libraries print on file descriptor 2 (TensorFlow Lite and absl log lines, a harmless
    protobuf message at import); Python exceptions still propagate."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr: nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(io.StringIO()):
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        _flush_c_streams()  # what the libraries left in C stdio buffers goes to /dev/null too
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """For a detector's whole life in a command: file descriptor 2 goes to /dev/null (MediaPipe's graph threads
    log there at any moment while the graphs run), while Python's `sys.stderr` keeps writing to the real stderr
    (progress, warnings, errors). Restored on exit."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    try:
        with open(os.devnull, "w") as devnull, \
                open(os.dup(saved), "w", buffering=1, encoding=encoding, errors="backslashreplace") as real, \
                contextlib.redirect_stderr(real):
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        _flush_c_streams()
        os.dup2(saved, 2)
        os.close(saved)


def _flush_c_streams() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


def _rgb_array(photo: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(photo.convert("RGB"), dtype=np.uint8))


class MediaPipeDetector:
    """MediaPipe, offline from the model files in its wheel: the full-range face detector finds faces of any size
    (FaceMesh's own short-range detector misses small faces, e.g. in a group photo), then FaceMesh (iris points
    refined) runs on a square crop around each face, where the face fills about half the crop."""

    name = "mediapipe"
    CROP = 2.0  # crop side / detected box side

    def __init__(self, max_faces: int = 16, min_confidence: float = 0.5) -> None:
        if importlib.util.find_spec("mediapipe") is None:
            raise PhotoError(
                "--landmarks mediapipe: the mediapipe package is not installed; install it with "
                "pip install --no-deps mediapipe==0.10.21 (and pip install 'stylemapgan[photos]' for what it uses)"
            )
        self.max_faces = max_faces
        self._graphs: list[object] = []
        # TensorFlow Lite's own log lines (e.g. "Created TensorFlow Lite XNNPACK delegate") reach stderr from its
        # threads at odd times; its minimum log level is read from this variable. Unless the user set it: errors only.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            with _quiet_native_stderr():
                from mediapipe.python.solutions import face_detection, face_mesh

                self._finder = face_detection.FaceDetection(model_selection=1,
                                                            min_detection_confidence=min_confidence)
                self._mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                                min_detection_confidence=min_confidence)
                self._whole = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=max_faces,
                                                 refine_landmarks=True, min_detection_confidence=min_confidence)
                self._graphs = [self._finder, self._mesh, self._whole]
        except (ImportError, AttributeError, RuntimeError) as exc:
            raise PhotoError(f"--landmarks mediapipe: cannot start FaceMesh ({type(exc).__name__}: {exc})") from None

    @staticmethod
    def _points(result: object, w: int, h: int, x0: float = 0.0, y0: float = 0.0) -> list[FaceLandmarks]:
        return [FaceLandmarks(np.array([(x0 + p.x * w, y0 + p.y * h) for p in face.landmark], dtype=np.float64),
                              MEDIAPIPE_SCHEME)
                for face in getattr(result, "multi_face_landmarks", None) or []]

    def detect(self, photo: Image.Image) -> list[FaceLandmarks]:
        rgb = photo.convert("RGB")
        w, h = rgb.size
        faces: list[FaceLandmarks] = []
        with _quiet_native_stderr():
            found = self._finder.process(_rgb_array(rgb)).detections or []
            for det in found[: self.max_faces]:
                box = det.location_data.relative_bounding_box
                side = self.CROP * max(box.width * w, box.height * h)
                cx, cy = (box.xmin + box.width / 2) * w, (box.ymin + box.height / 2) * h
                x0, y0 = round(cx - side / 2), round(cy - side / 2)
                n = max(round(side), 1)
                crop = rgb.crop((x0, y0, x0 + n, y0 + n))  # outside the photo: black
                faces += self._points(self._mesh.process(_rgb_array(crop)), n, n, x0, y0)
            if not faces:  # a face filling the frame can escape the full-range detector: FaceMesh on the whole
                faces = self._points(self._whole.process(_rgb_array(rgb)), w, h)
        return _distinct(faces)

    def close(self) -> None:
        """Stop the graphs now (their threads log as they stop: silenced here, not at interpreter exit)."""
        graphs, self._graphs = self._graphs, []
        with _quiet_native_stderr():
            for graph in graphs:
                graph.close()

    def __enter__(self) -> MediaPipeDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _distinct(faces: list[FaceLandmarks]) -> list[FaceLandmarks]:
    """Drop a face found twice (overlapping detector boxes): same eyes within a fifth of their distance."""
    kept: list[FaceLandmarks] = []
    for face in faces:
        span = float(np.hypot(*(face.eye_right - face.eye_left)))
        if all(np.hypot(*(face.eye_left - k.eye_left)) > span / 5 for k in kept):
            kept.append(face)
    return kept


DLIB_MODEL_NAME = "shape_predictor_68_face_landmarks.dat"


def find_dlib_model() -> Path | None:
    """The 68-point model: $STYLEMAPGAN_DLIB_MODEL, the face_recognition_models package, or Debian's libdlib-data."""
    candidates = []
    if os.environ.get("STYLEMAPGAN_DLIB_MODEL"):
        candidates.append(Path(os.environ["STYLEMAPGAN_DLIB_MODEL"]))
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(next(iter(spec.submodule_search_locations))) / "models" / DLIB_MODEL_NAME)
    candidates.append(Path("/usr/share/dlib") / DLIB_MODEL_NAME)
    return next((p for p in candidates if p.is_file()), None)


class DlibDetector:
    """dlib's frontal face detector (HOG) and 68-point shape predictor: the landmarks of the FFHQ recipe."""

    name = "dlib"

    def __init__(self, upsample: int = 1) -> None:
        if importlib.util.find_spec("dlib") is None:
            raise PhotoError("--landmarks dlib: dlib is not installed (pip install dlib-bin)")
        model = find_dlib_model()
        if model is None:
            raise PhotoError(
                f"--landmarks dlib: {DLIB_MODEL_NAME} not found (pip install face_recognition_models, "
                "apt-get install libdlib-data, or set STYLEMAPGAN_DLIB_MODEL)"
            )
        import dlib

        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model))
        self._upsample = upsample

    def detect(self, photo: Image.Image) -> list[FaceLandmarks]:
        rgb = _rgb_array(photo)
        faces = []
        for box in self._detector(rgb, self._upsample):
            shape = self._predictor(rgb, box)
            # dlib gives integer pixel indices: +0.5 puts them at pixel centres
            points = np.array([(shape.part(i).x + 0.5, shape.part(i).y + 0.5) for i in range(68)], dtype=np.float64)
            faces.append(FaceLandmarks(points, DLIB_SCHEME))
        return faces


DETECTORS: dict[str, Callable[[], LandmarkDetector]] = {"mediapipe": MediaPipeDetector, "dlib": DlibDetector}


def make_detector(name: str = "mediapipe") -> LandmarkDetector:
    """A detector by name (`--landmarks`); a missing package is a one-line PhotoError saying what to install."""
    try:
        factory = DETECTORS[name]
    except KeyError:
        raise PhotoError(f"--landmarks: must be one of {', '.join(DETECTORS)}, got {name!r}") from None
    return factory()
