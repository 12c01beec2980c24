"""The shared helpers every package uses: the colour parser, the RGB converter, the safetensors metadata reader,
atomic writes, and the batch helpers (collate, fit to the model's size)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save as st_save

from stylemapgan.checkpoint import CheckpointError, load_checkpoint
from stylemapgan.data import parse_color as data_parse_color
from stylemapgan.data.dataset import DataMismatchError, check_fits, collate_images, fit_to_model
from stylemapgan.editing.directions import load_directions
from stylemapgan.editing.errors import EditingError
from stylemapgan.editing.images import parse_color as editing_parse_color
from stylemapgan.editing.images import to_rgb as editing_to_rgb
from stylemapgan.utils.files import atomic_write_json, atomic_write_text
from stylemapgan.utils.images import ImageModeError, high_depth_to_l, parse_color, to_rgb
from stylemapgan.utils.safetensors_meta import (
    MAX_HEADER_BYTES,
    SafetensorsHeaderError,
    looks_like_safetensors,
    read_metadata,
)

# ---- colours ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["#1a2B3c", "1a2b3c", " #1A2B3C ", "26,43,60", "26, 43 ,60"])
def test_colour_spellings(text: str) -> None:
    assert parse_color(text) == (26, 43, 60)


def test_colour_names_and_one_rule_everywhere() -> None:
    assert parse_color("White") == (255, 255, 255) and parse_color("grey") == parse_color("gray") == (128,) * 3
    assert data_parse_color is parse_color  # the data CLI and the editor accept the same spellings
    assert editing_parse_color("ff0000") == editing_parse_color("#ff0000") == (255, 0, 0)


@pytest.mark.parametrize("text", ["#12345", "1234567", "#gg0000", "256,0,0", "1,2", "-1,2,3", "red", "", "²,1,1"])
def test_bad_colours_name_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="not a colour") as info:
        parse_color(text)
    assert repr(text) in str(info.value)
    with pytest.raises(EditingError, match=r"^background: not a colour"):
        editing_parse_color(text)


# ---- RGB ----------------------------------------------------------------------------------------------------


def _px(image: Image.Image) -> tuple[int, int, int]:
    assert image.mode == "RGB"
    return tuple(int(v) for v in np.asarray(image)[0, 0])  # type: ignore[return-value]


def test_rgb_is_returned_as_is_and_the_editor_uses_the_same_converter() -> None:
    image = Image.new("RGB", (2, 2), (1, 2, 3))
    assert to_rgb(image) is image and editing_to_rgb is to_rgb


@pytest.mark.parametrize(
    ("mode", "value", "grey"),
    [
        ("I;16", 32768, 128),  # 16-bit: by 65535
        ("I;16", 200, 1),  # a dark 16-bit image stays dark
        ("I", 100, 100),  # 32-bit ints holding 8-bit values: kept
        ("I", 40000, 156),  # ... holding 16-bit values: by 65535
        ("I", 200000, 255),  # ... beyond 16 bits: by the peak
        ("F", 0.5, 128),  # floats in [0, 1]
        ("F", 100.0, 100),  # floats in [0, 255]
    ],
)
def test_high_bit_depths_are_scaled_by_their_range(mode: str, value: float, grey: int) -> None:
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    image = Image.fromarray(np.full((2, 2), value, dtype))
    if mode == "I;16":
        assert image.mode == "I;16"
    notes: list[str] = []
    assert _px(to_rgb(image, notes=notes)) == (grey,) * 3 and notes == ["high-bit-depth"]
    assert np.asarray(high_depth_to_l(image))[0, 0] == grey


def test_transparency_is_composited_over_the_background() -> None:
    clear = Image.new("RGBA", (2, 2), (255, 0, 0, 0))
    half = Image.new("RGBA", (2, 2), (255, 0, 0, 128))
    assert _px(to_rgb(clear, (0, 255, 0))) == (0, 255, 0)
    assert _px(to_rgb(half, (0, 0, 255))) == (128, 0, 127)
    assert _px(to_rgb(Image.new("LA", (2, 2), (200, 0)), (9, 9, 9))) == (9, 9, 9)
    palette = Image.new("P", (2, 2), 3)
    palette.info["transparency"] = 3
    notes: list[str] = []
    assert _px(to_rgb(palette, (1, 2, 3), notes)) == (1, 2, 3) and notes == ["palette", "alpha-composited"]


def test_other_modes_convert_and_say_how() -> None:
    for mode, colour, word, rgb in [
        ("L", 90, "grayscale", (90, 90, 90)),
        ("1", 1, "grayscale", (255, 255, 255)),
        ("CMYK", (0, 255, 255, 0), "cmyk", (255, 0, 0)),
    ]:
        notes: list[str] = []
        assert _px(to_rgb(Image.new(mode, (2, 2), colour), notes=notes)) == rgb and notes == [word]


def test_a_mode_pillow_cannot_convert_is_an_image_mode_error() -> None:
    image = Image.new("HSV", (2, 2))

    def refuse(*args: object, **kwargs: object) -> Image.Image:
        raise ValueError("conversion not supported")

    image.convert = refuse  # type: ignore[method-assign]
    with pytest.raises(ImageModeError, match="cannot convert mode HSV to RGB"):
        to_rgb(image)


# ---- safetensors metadata -----------------------------------------------------------------------------------


def _header_file(header: object, body: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + body


def test_metadata_of_a_real_file() -> None:
    data = st_save({"x": torch.zeros(2)}, metadata={"format": "f", "n": "1"})
    assert read_metadata(data) == {"format": "f", "n": "1"} and looks_like_safetensors(data)
    assert read_metadata(st_save({"x": torch.zeros(2)})) == {}


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty or truncated"),
        (b"\x05\x00\x00", "empty or truncated"),
        ((0).to_bytes(8, "little") + b"{}", "header says 0 bytes"),
        ((50).to_bytes(8, "little") + b"{}", "header says 50 bytes"),
        ((MAX_HEADER_BYTES + 1).to_bytes(8, "little") + b"{" + b" " * 16, "header says"),
        ((9).to_bytes(8, "little") + b"{not json", "corrupt safetensors header"),
        (_header_file([1, 2]), "not an object"),
        (_header_file({"__metadata__": {"a": 1}}), "not a map of strings"),
        (_header_file({"__metadata__": ["a"]}), "not a map of strings"),
    ],
)
def test_bad_headers_are_refused(data: bytes, words: str) -> None:
    with pytest.raises(SafetensorsHeaderError, match=words):
        read_metadata(data)


def test_a_header_too_big_is_refused_before_it_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    import stylemapgan.utils.safetensors_meta as meta

    data = st_save({"x": torch.zeros(2)}, metadata={"a": "b"})
    monkeypatch.setattr(meta, "MAX_HEADER_BYTES", int.from_bytes(data[:8], "little") - 1)
    with pytest.raises(SafetensorsHeaderError, match="header says"):
        meta.read_metadata(data)


def test_every_reader_uses_the_strict_rules(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(_header_file({"__metadata__": {"format": "stylemapgan", "format_version": 1}}))
    with pytest.raises(CheckpointError, match=r"bad\.safetensors: corrupt safetensors header"):
        load_checkpoint(bad)
    with pytest.raises(EditingError, match=r"not a directions file .*map of strings"):
        load_directions(bad, (1, 2, 2))
    listed = tmp_path / "list.safetensors"
    listed.write_bytes(_header_file(["a"]))
    with pytest.raises(CheckpointError, match=r"list\.safetensors: corrupt safetensors header"):
        load_checkpoint(listed)


# ---- atomic writes ------------------------------------------------------------------------------------------


def test_atomic_text_and_json(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "r.json"
    atomic_write_json(path, {"b": 1, "a": [1, 2]})
    assert path.read_text() == '{\n  "b": 1,\n  "a": [\n    1,\n    2\n  ]\n}\n'
    atomic_write_text(path, "héllo")
    assert path.read_bytes() == "héllo".encode() and os.listdir(path.parent) == ["r.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


# ---- batches ------------------------------------------------------------------------------------------------


def test_collate_and_fit_to_model() -> None:
    a, b = torch.rand(3, 4, 4), torch.rand(3, 4, 4)
    batch = collate_images([{"image": a}, (b, 0), a])
    assert torch.equal(batch, torch.stack([a, b, a]))
    half = fit_to_model(batch, 2)
    assert half.shape == (3, 3, 2, 2)
    assert torch.allclose(half[1, :, 0, 1], b[:, 0:2, 2:4].mean(dim=(1, 2)))
    assert fit_to_model(batch, 4) is batch
    for stored, size in [(4, 3), (2, 4)]:
        with pytest.raises(DataMismatchError, match=f"dataset images are {stored}px; the model needs {size}px"):
            check_fits(stored, size)
