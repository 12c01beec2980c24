"""The editing commands end to end as real processes: odd-sized images of several modes in, PNG / NPZ / JSON /
GIF out, and one-line errors for missing files, non-images and masks of the wrong kind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylemapgan.checkpoint import fresh_checkpoint, save_checkpoint
from stylemapgan.config import get_preset

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # shared 2-core machine: no oneDNN thread contention


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stylemapgan", *map(str, args)], capture_output=True, text=True, env=ENV
    )


def ok(*args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr
    return proc


def error_line(*args: str | Path) -> str:
    proc = run(*args)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny and cpu-32 checkpoints, and inputs of odd sizes and modes."""
    root = tmp_path_factory.mktemp("edit_cli")
    save_checkpoint(root / "tiny.safetensors", fresh_checkpoint(get_preset("tiny").model, 3, "test"))
    save_checkpoint(root / "cpu32.safetensors", fresh_checkpoint(get_preset("cpu-32").model, 3, "test"))
    rng = np.random.default_rng(0)
    images = root / "images"
    images.mkdir()
    Image.fromarray(rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)).save(images / "wide.png")
    Image.fromarray(rng.integers(0, 256, (41, 30), dtype=np.uint8), "L").save(images / "grey.jpg")
    Image.fromarray(rng.integers(0, 256, (20, 20, 4), dtype=np.uint8), "RGBA").save(images / "alpha.png")
    Image.fromarray(rng.integers(0, 256, (17, 19), dtype=np.uint8), "L").convert("P").save(images / "palette.gif")
    Image.fromarray(rng.integers(0, 65535, (18, 18), dtype=np.uint16)).save(images / "deep.png")
    mask = np.zeros((50, 70), np.uint8)
    mask[:, :35] = 255
    Image.fromarray(mask).save(root / "mask.png")
    Image.fromarray(np.stack([mask, mask, mask, mask], -1), "RGBA").save(root / "mask_rgba.png")
    (root / "notes.png").write_text("not an image")
    return root


def test_project_folder_with_encoder(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "proj"
    ok("project", "--ckpt", work / "tiny.safetensors", work / "images", "--outdir", out, "--lpips", "none",
       "--fit", "pad")
    record = json.loads((out / "project.json").read_text())
    assert record["command"] == "project" and record["model"]["id"].startswith("sha256:")
    assert record["options"]["method"] == "encoder" and record["options"]["fit"] == "pad"
    assert len(record["images"]) == 5
    for entry in record["images"]:
        assert (out / entry["reconstruction"]).is_file() and entry["mse"] >= 0 and entry["lpips"] is None
        with Image.open(out / entry["reconstruction"]) as im:
            assert im.size == (16, 16) and im.mode == "RGB"
        with np.load(out / entry["stylemap"]) as data:
            assert data["stylemap"].shape == (8, 4, 4)
            assert json.loads(str(data["meta"]))["input"] == entry["input"]
    assert set(record["outputs"]) == {p.name for p in out.iterdir()} - {"project.json"}


def test_project_hybrid_with_lpips(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "hyb"
    ok("project", "--ckpt", work / "cpu32.safetensors", work / "images" / "wide.png", work / "images" / "grey.jpg",
       "--method", "hybrid", "--steps", "3", "--lpips", "stlpips-alex", "--outdir", out)
    record = json.loads((out / "project.json").read_text())
    for entry in record["images"]:
        assert entry["lpips"] is not None and entry["lpips"] >= 0 and entry["optimised_loss"] is not None
    assert record["summary"]["lpips_kind"] == "stlpips-alex"
    with Image.open(out / "wide.png") as im:
        assert im.size == (32, 32)


def test_generate_seed_ranges(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    ok("generate", "--ckpt", work / "tiny.safetensors", "--seeds", "0-2,7", "--trunc", "0.7", "--outdir", out)
    record = json.loads((out / "generate.json").read_text())
    assert record["inputs"] == [{"seeds": [0, 1, 2, 7]}] and record["truncation"]["psi"] == 0.7
    for seed in (0, 1, 2, 7):
        assert (out / f"seed{seed:04d}.png").is_file() and (out / f"seed{seed:04d}.npz").is_file()
    assert (out / "grid.png").is_file()


def test_edit_three_references_frames_gif(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "edit"
    images = work / "images"
    ok("edit", "--ckpt", work / "tiny.safetensors", "--source", images / "wide.png", images / "grey.jpg",
       "--reference", images / "alpha.png", "--mask", work / "mask.png", "--shift=-2,3",
       "--reference", images / "palette.gif", "--mask", "0,0,8,8", "--shift", "4,4",
       "--reference", images / "deep.png", "--mask", work / "mask_rgba.png", "--shift", "0,0",
       "--mode", "w_plus", "--frames", "4", "--feather", "2", "--outdir", out)
    record = json.loads((out / "edit.json").read_text())
    assert record["options"]["mode"] == "w_plus" and record["pooling"] == "avg-threshold"
    assert record["strengths"] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert record["shifts"] == [[-2, 3], [4, 4], [0, 0]]
    assert len(record["inputs"]["sources"]) == 2 and len(record["inputs"]["references"]) == 3
    assert record["cache"]["encoded_images"] == 5  # every image encoded once
    for stem in ("wide", "grey"):
        with Image.open(out / f"{stem}_edit.gif") as gif:
            assert gif.n_frames == 4 and gif.size == (16, 16)
        with Image.open(out / f"{stem}_edit_strip.png") as strip:
            assert strip.size == (4 * 18 + 2, 20)
        assert len(list((out / f"{stem}_edit_frames").glob("*.png"))) == 4
    with Image.open(out / "mask1.png") as m:
        arr = np.asarray(m.convert("L"))
        assert arr[:, :7].min() == 255 and arr[:, 9:].max() == 0  # left half of a 70 x 50 mask, cropped


def test_edit_alpha_w_mode(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "edit_w"
    images = work / "images"
    ok("edit", "--ckpt", work / "tiny.safetensors", "--source", images / "wide.png", "--reference",
       images / "grey.jpg", "--mask", "rect:0,0,16,8", "--alpha", "0.5", "--outdir", out)
    record = json.loads((out / "edit.json").read_text())
    assert record["strengths"] == [0.5] and record["pooling"] == "max"
    with Image.open(out / "wide_edit.png") as im:
        assert im.size == (16, 16)


def test_transplant(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "tr"
    images = work / "images"
    ok("transplant", "--ckpt", work / "tiny.safetensors", "--source", images / "wide.png", "--reference",
       images / "grey.jpg", "--rect", "0,0,8,8", "--to", "8,8", "--outdir", out)
    record = json.loads((out / "transplant.json").read_text())
    assert record["shifts"] == [[8, 8]] and record["transplant"]["rect_cells"] == [0, 0, 2, 2]
    assert (out / "wide_edit.png").is_file()


def test_interpolate_gif_and_npz_inputs(work: Path, tmp_path: Path) -> None:
    gen = tmp_path / "gen"
    ok("generate", "--ckpt", work / "tiny.safetensors", "--seeds", "1", "--outdir", gen)
    out = tmp_path / "interp"
    video = tmp_path / "interp.gif"
    ok("interpolate", "--ckpt", work / "tiny.safetensors", work / "images" / "wide.png", gen / "seed0001.npz",
       "--frames", "5", "--video", video, "--outdir", out)
    with Image.open(video) as gif:
        assert gif.n_frames == 5
    record = json.loads((out / "interpolate.json").read_text())
    assert record["inputs"][1]["kind"] == "stylemap" and record["lambdas"][-1] == 1.0
    assert len(list((out / "interp_frames").glob("*.png"))) == 5
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        line = error_line("interpolate", "--ckpt", work / "tiny.safetensors", work / "images" / "wide.png",
                          gen / "seed0001.npz", "--video", tmp_path / "v.mp4", "--outdir", out)
        assert "imageio-ffmpeg" in line


def test_mix_splits(work: Path, tmp_path: Path) -> None:
    images = work / "images"
    for split, first in (("coarse", "from_A"), ("fine", "from_B"), ("3", "from_A")):
        out = tmp_path / f"mix_{split}"
        ok("mix", "--ckpt", work / "tiny.safetensors", images / "wide.png", images / "grey.jpg", "--split", split,
           "--outdir", out)
        record = json.loads((out / "mix.json").read_text())
        assert record["layers"][first] == list(range(int(split) if split.isdigit() else 2))
        assert (out / "mix.png").is_file()
    line = error_line("mix", "--ckpt", work / "tiny.safetensors", images / "wide.png", images / "grey.jpg",
                      "--split", "middle", "--outdir", tmp_path / "bad")
    assert "--split" in line


def test_one_line_errors(work: Path, tmp_path: Path) -> None:
    ckpt, images, out = work / "tiny.safetensors", work / "images", tmp_path / "err"
    base = ("edit", "--ckpt", ckpt, "--outdir", out)
    line = error_line(*base, "--source", images / "nope.png", "--reference", images / "grey.jpg", "--mask", "0,0,8,8")
    assert "nope.png: no such file" in line
    line = error_line(*base, "--source", images / "wide.png", "--reference", work / "notes.png", "--mask", "0,0,8,8")
    assert "notes.png: not an image" in line
    line = error_line(*base, "--source", images / "wide.png", "--reference", images / "grey.jpg",
                      "--mask", work / "notes.png")
    assert "notes.png: not an image" in line
    line = error_line(*base, "--source", images / "wide.png", "--reference", images / "grey.jpg",
                      "--reference", images / "alpha.png", "--mask", "0,0,8,8")
    assert "--mask: got 1 mask(s) for 2 reference(s)" in line
    line = error_line(*base, "--source", images / "wide.png", "--reference", images / "grey.jpg", "--mask", "0,0,8")
    assert "'0,0,8'" in line and "four integers" in line
    line = error_line(*base, "--source", images / "wide.png", "--reference", images / "grey.jpg", "--mask", "hair")
    assert "'hair'" in line and "--data" in line
    line = error_line(*base, "--source", images / "wide.png", "--reference", images / "grey.jpg",
                      "--mask", "0,0,40,8")
    assert "inside the 16x16 image" in line
    line = error_line("project", "--ckpt", tmp_path / "missing.safetensors", images, "--outdir", out)
    assert "missing.safetensors" in line
    line = error_line("project", "--ckpt", ckpt, images / "nope", "--outdir", out, "--lpips", "none")
    assert "nope: no such file" in line
    line = error_line("generate", "--ckpt", ckpt, "--seeds", "5-1", "--outdir", out)
    assert "seeds" in line
