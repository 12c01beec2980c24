"""Real photos (issue 21): FFHQ alignment on real portraits, paste-back into the whole photo, landmark masks, and the
`align` / `--align` / `paste` commands end to end with a converted official-layout checkpoint (random weights).

The photographs ship inside PyPI packages (tests/photo_fixtures.py); the landmark model inside the mediapipe wheel.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from photo_fixtures import mediapipe_or_skip, photo_path, two_faces
from stylemapgan.editing import EditingError, parse_mask
from stylemapgan.photos import (
    FaceTransform,
    PhotoError,
    align_photo,
    edit_photo,
    landmark_mask,
    load_photo,
    load_transform,
    make_detector,
    paste_faces,
    paste_weight,
)

sys.path.insert(0, str(Path(__file__).parent))
from official_reference import official_channel_table, official_layout, random_official_state

SIZE = 256
# The FFHQ template at 256 px: the recipe puts the eyes 1/4 of the side apart, centred, 0.48 of the side down for
# usual face proportions (the eye-mouth distance moves it by a pixel or two).
TEMPLATE = np.array([[0.375 * SIZE, 0.48 * SIZE], [0.625 * SIZE, 0.48 * SIZE]])
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
MODEL_SIZE = 16  # the converted official-layout model (official channel widths: 512 at this size)


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stylemapgan", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=600)


@pytest.fixture(scope="module")
def detector():
    mediapipe_or_skip()
    found = make_detector("mediapipe")
    yield found
    found.close()


def eyes(landmarks) -> np.ndarray:
    return np.stack([landmarks.eye_left, landmarks.eye_right])


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_aligned_eyes_land_on_the_ffhq_template(detector, name: str) -> None:
    faces = align_photo(load_photo(photo_path(name)), SIZE, detector, name=name)
    assert len(faces) == 1 and faces[0].image.size == (SIZE, SIZE)
    placed = eyes(faces[0].landmarks)  # where the transform put the photo's eyes
    assert np.abs(placed[:, 0] - TEMPLATE[:, 0]).max() < 0.5  # x: by construction of the quad
    again = detector.detect(faces[0].image)  # independently: the landmarks found again in the aligned crop
    assert len(again) == 1
    error = np.hypot(*(eyes(again[0]) - TEMPLATE).T)
    print(f"{name}: eye distance from the FFHQ template {error.round(2)} px at {SIZE} px")
    assert error.max() < 3.0, error
    assert np.hypot(*(eyes(again[0]) - placed).T).max() < 3.0


def test_exif_orientation_is_applied(detector, tmp_path: Path) -> None:
    """A portrait stored sideways with EXIF orientation 6 aligns like the upright photo."""
    upright = load_photo(photo_path("grace_hopper"))
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # stored turned left; orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(tmp_path / "sideways.png", exif=exif)  # lossless: the same pixels once turned back
    loaded = load_photo(tmp_path / "sideways.png")
    assert loaded.size == upright.size == (512, 600)
    a = align_photo(upright, SIZE, detector)[0].transform
    b = align_photo(loaded, SIZE, detector)[0].transform
    assert b.photo_size == (512, 600)
    assert np.array_equal(np.asarray(loaded), np.asarray(upright))
    assert np.abs(a.quad - b.quad).max() < 1e-6  # the same square, in the upright photo's coordinates


def test_paste_back_geometry_and_untouched_pixels(detector) -> None:
    photo = load_photo(photo_path("astronaut"))
    face = align_photo(photo, SIZE, detector)[0]
    red = Image.new("RGB", (SIZE, SIZE), (255, 0, 0))
    out = np.asarray(paste_faces(photo, [(red, face.transform)], feather=0.1))
    before = np.asarray(photo)
    assert out.shape == before.shape
    weight, (x0, y0, x1, y1) = paste_weight(face.transform, 0.1)
    inside = np.zeros(before.shape[:2], bool)
    inside[y0:y1, x0:x1] = weight > 0
    full = np.zeros(before.shape[:2], bool)
    full[y0:y1, x0:x1] = weight == 1
    assert np.array_equal(out[~inside], before[~inside])  # outside the feathered square: exactly the photo
    assert (out[full] == [255, 0, 0]).all()
    # the geometry: the photo's eye and mouth pixels lie in the fully pasted part, the photo's corners outside
    lm = face.landmarks.mapped(face.transform.to_photo)
    for point in (lm.eye_left, lm.eye_right, (lm.mouth_left + lm.mouth_right) / 2):
        assert full[int(point[1]), int(point[0])]
    assert not inside[0, 0] and not inside[-1, -1]
    # the unedited crop pasted back reproduces the photo (resampled twice): a round trip of the transform
    back = np.asarray(paste_faces(photo, [(face.image, face.transform)]), dtype=np.float64)
    assert np.abs(back[full] - before[full]).mean() < 4.0


def test_edit_photo_edits_every_face_and_keeps_the_rest(detector, tmp_path: Path) -> None:
    """The library's whole-photo edit: every face aligned, edited by the function (here: colours inverted, two
    frames), pasted back; the photo's size, and its pixels outside the faces, are kept."""
    photo = Image.open(two_faces(tmp_path / "two.png")).convert("RGB")
    seen = []

    def invert(face):
        seen.append(face.image.size)
        inverted = Image.fromarray(255 - np.asarray(face.image))
        return [face.image, inverted]

    result = edit_photo(photo, invert, 64, detector)
    assert seen == [(64, 64), (64, 64)] and len(result.faces) == 2 and len(result.frames) == 2
    before = np.asarray(photo)
    keep = untouched(before, [f.transform for f in result.faces])
    for frame in result.frames:
        assert frame.size == photo.size
        assert np.array_equal(np.asarray(frame)[keep], before[keep])
    for f in result.faces:
        cx, cy = (int(v) for v in f.transform.to_photo(np.array([32.0, 32.0])))  # the face's centre: inverted
        patch = (slice(cy - 10, cy + 10), slice(cx - 10, cx + 10))
        assert np.abs(np.asarray(result.frames[1])[patch].astype(int) - (255 - before[patch])).mean() < 25
    assert len(edit_photo(photo, invert, 64, detector, largest=True).faces) == 1


def test_transform_round_trip_and_json(detector, tmp_path: Path) -> None:
    face = align_photo(load_photo(photo_path("astronaut")), SIZE, detector)[0]
    t = face.transform
    corners = np.array([[0, 0], [0, SIZE], [SIZE, SIZE], [SIZE, 0]], dtype=np.float64)
    assert np.allclose(t.to_photo(corners), t.quad)
    assert np.allclose(t.to_aligned(t.to_photo(corners + 7.3)), corners + 7.3)
    (tmp_path / "t.json").write_text(json.dumps(face.record()))
    loaded = load_transform(tmp_path / "t.json")
    assert loaded.size == SIZE and loaded.photo_size == (512, 512) and np.allclose(loaded.quad, t.quad, atol=1e-3)
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(PhotoError, match=r"bad\.json"):
        load_transform(tmp_path / "bad.json")


def test_landmark_masks_cover_their_parts(detector) -> None:
    face = align_photo(load_photo(photo_path("astronaut")), SIZE, detector)[0]
    lm = face.landmarks
    masks = {name: landmark_mask(lm, [name], SIZE) for name in ("eyes", "brows", "nose", "mouth", "oval")}
    for name, m in masks.items():
        assert 0 < m.mean() < 0.5, name
    mouth_centre = (lm.mouth_left + lm.mouth_right) / 2
    for point, name in ((lm.eye_left, "eyes"), (lm.eye_right, "eyes"), (mouth_centre, "mouth")):
        assert masks[name][int(point[1]), int(point[0])] == 1
    assert (masks["eyes"] * masks["mouth"]).sum() == 0
    for part in ("eyes", "nose", "mouth"):  # the oval holds the inner parts
        assert (masks[part] * (1 - masks["oval"])).sum() == 0, part
    rows = np.arange(SIZE)[:, None]
    assert (masks["brows"] * rows).sum() / masks["brows"].sum() < (masks["eyes"] * rows).sum() / masks["eyes"].sum()
    union = landmark_mask(lm, ["eyes", "mouth"], SIZE)
    assert np.array_equal(union, np.maximum(masks["eyes"], masks["mouth"]))
    assert parse_mask("landmarks:eyes+lips").names == ("eyes", "mouth")
    with pytest.raises(EditingError, match="ears"):
        parse_mask("landmarks:ears")


def test_dlib_landmarks_where_installed() -> None:
    """dlib's 68 points are an option: they align the astronaut like FaceMesh, or the error says what to install."""
    try:
        dlib = make_detector("dlib")
    except PhotoError as exc:
        assert "dlib" in str(exc) and "\n" not in str(exc)
        return
    face = align_photo(load_photo(photo_path("astronaut")), SIZE, dlib)[0]
    assert np.hypot(*(eyes(face.landmarks) - TEMPLATE).T).max() < 6.0


# ---- the commands, with a converted official-layout checkpoint -------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A converted official-layout checkpoint (random weights), a two-face photo, a portrait, a landscape."""
    mediapipe_or_skip()
    root = tmp_path_factory.mktemp("photos")
    layout = official_layout(MODEL_SIZE, 4, official_channel_table(2), 16, 2, small_generator=True)
    gen = torch.Generator().manual_seed(0)
    states = {net: random_official_state(net, layout[net], gen) for net in ("g_ema", "e_ema")}
    args = argparse.Namespace(size=MODEL_SIZE, latent_spatial_size=4, latent_channel_size=16, mapping_layer_num=2,
                              lr_mul=0.01, channel_multiplier=2, normalize_mode="LayerNorm", small_generator=True)
    torch.save({**states, "train_args": args}, root / "official.pt")
    proc = cli("convert", root / "official.pt", root / "model.safetensors")
    assert proc.returncode == 0, proc.stderr
    two_faces(root / "two.png")
    Image.open(photo_path("grace_hopper")).save(root / "hopper.jpg", quality=95)
    Image.open(photo_path("china")).save(root / "landscape.jpg", quality=95)
    return root


def untouched(photo: np.ndarray, transforms: list[FaceTransform]) -> np.ndarray:
    """Pixels whose centres map outside every face's aligned square (computed here, not by the paste code)."""
    h, w = photo.shape[:2]
    xs, ys = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    keep = np.ones((h, w), bool)
    for t in transforms:
        uv = t.to_aligned(np.stack([xs, ys], axis=-1))
        keep &= ~((uv > 0) & (uv < t.size)).all(axis=-1)
    return keep


def test_two_face_photo_edit_align_comes_back_whole(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "edit"
    proc = cli("edit", "--ckpt", work / "model.safetensors", "--source", work / "two.png", "--reference",
               work / "hopper.jpg", "--mask", "landmarks:eyes+mouth", "--align", "--outdir", out, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    before = np.asarray(Image.open(work / "two.png").convert("RGB"))
    after = np.asarray(Image.open(out / "two_edit.png").convert("RGB"))
    assert after.shape == before.shape == (600, 1024, 3)  # the whole photo, at its own resolution
    transforms = [load_transform(out / f"two_face{k}.json") for k in (0, 1)]
    assert not (out / "two_face2.json").exists()
    centres = [t.quad.mean(axis=0)[0] for t in transforms]
    assert centres[0] < 512 < centres[1]  # one face on each half, left to right
    keep = untouched(before, transforms)
    assert keep.mean() > 0.3
    assert np.array_equal(after[keep], before[keep])  # outside the feathered borders: exactly unchanged
    for t in transforms:  # both faces edited: the centre of each aligned square changed
        cx, cy = t.to_photo(np.array([t.size / 2, t.size / 2]))
        r = int(t.scale * t.size / 6)
        patch = (slice(int(cy) - r, int(cy) + r), slice(int(cx) - r, int(cx) + r))
        assert np.abs(after[patch].astype(int) - before[patch]).mean() > 10
    record = json.loads((out / "edit.json").read_text())
    assert record["photos"] == [{"photo": str(work / "two.png"), "size": [1024, 600], "faces": 2}]
    masks = [np.asarray(Image.open(out / f"two_face{k}_mask1.png").convert("L")) for k in (0, 1)]
    assert all(0 < (m > 127).mean() < 0.6 for m in masks)  # landmark masks of each face
    assert "GetPrototype" not in proc.stderr and "W0000" not in proc.stderr  # no native log lines


def test_align_project_edit_paste_end_to_end(work: Path, tmp_path: Path) -> None:
    proc = cli("align", work / "hopper.jpg", "--outdir", tmp_path / "faces", "--size", MODEL_SIZE)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "faces").iterdir()) == ["hopper_face0.json", "hopper_face0.png"]
    proc = cli("project", tmp_path / "faces" / "hopper_face0.png", "--ckpt", work / "model.safetensors",
               "--outdir", tmp_path / "proj", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    proc = cli("edit", "--ckpt", work / "model.safetensors", "--source", tmp_path / "proj" / "hopper_face0.npz",
               "--reference", tmp_path / "faces" / "hopper_face0.png", "--mask", "landmarks:eyes+brows",
               "--outdir", tmp_path / "edit", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    edited = tmp_path / "edit" / "hopper_face0_edit.png"
    proc = cli("paste", work / "hopper.jpg", "--face", edited, tmp_path / "faces" / "hopper_face0.json",
               "--out", tmp_path / "back.png")
    assert proc.returncode == 0, proc.stderr
    before = np.asarray(load_photo(work / "hopper.jpg"))
    after = np.asarray(Image.open(tmp_path / "back.png").convert("RGB"))
    assert after.shape == before.shape == (600, 512, 3)
    transform = load_transform(tmp_path / "faces" / "hopper_face0.json")
    keep = untouched(before, [transform])
    assert np.array_equal(after[keep], before[keep])
    assert np.abs(after[~keep].astype(int) - before[~keep]).mean() > 5


def test_no_face_is_one_line_and_exit_2(work: Path, tmp_path: Path) -> None:
    for args in (("align", work / "landscape.jpg", "--outdir", tmp_path / "a"),
                 ("project", work / "landscape.jpg", "--align", "--ckpt", work / "model.safetensors",
                  "--outdir", tmp_path / "b")):
        proc = cli(*args)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "landscape.jpg: no face found" in lines[0], proc.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
