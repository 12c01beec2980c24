"""Real photographs that ship inside PyPI packages (no network), for the photo tests and the README commands.

- scikit-image `data/astronaut.png`: Eileen Collins, NASA portrait, public domain (scikit-image's data README).
- matplotlib `mpl-data/sample_data/grace_hopper.jpg`: Grace Hopper, US Navy portrait, public domain.
- scikit-learn `datasets/images/china.jpg`: a landscape (a temple, no face), CC BY 2.0 by danielbuechele (its README).

The files are found by package location, without importing the packages (their imports are slow and pull extras).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from PIL import Image

PHOTOS = {
    "astronaut": ("skimage", ("data", "astronaut.png")),
    "grace_hopper": ("matplotlib", ("mpl-data", "sample_data", "grace_hopper.jpg")),
    "china": ("sklearn", ("datasets", "images", "china.jpg")),
}


def photo_path(name: str) -> Path:
    package, parts = PHOTOS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{package} is not installed (its sample photo {parts[-1]} is a test input)")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} is missing from the installed {package}")
    return path


def two_faces(out: Path) -> Path:
    """The astronaut (512x512) and Grace Hopper (512x600) side by side on grey: one 1024x600 photo, two faces."""
    left = Image.open(photo_path("astronaut")).convert("RGB")
    right = Image.open(photo_path("grace_hopper")).convert("RGB")
    canvas = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), (128, 128, 128))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    canvas.save(out)
    return out


def mediapipe_or_skip() -> None:
    if importlib.util.find_spec("mediapipe") is None:
        pytest.skip("mediapipe is not installed (make install: pip install --no-deps mediapipe==0.10.21)")
