"""The `stylemapgan` command on SemanticStyleGAN models, as real processes: info (official parameter counts),
init, generate (image + segmentation colour map + W+ latents, equal to an in-process render), convert and
generate straight from an official .pt, export-onnx, and a one-line refusal from `project` (no inversion yet)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

from stylemapgan.checkpoint import load_checkpoint, load_inference_model
from stylemapgan.semantic import SEMANTIC_PRESETS
from stylemapgan.semantic.io import class_color, load_official_latents
from stylemapgan.utils.images import to_uint8

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = SEMANTIC_PRESETS["semantic-tiny"].model


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stylemapgan", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("semantic-cli") / "tiny.safetensors"
    proc = run("init", "--preset", "semantic-tiny", "--seed", "5", str(path))
    assert proc.returncode == 0, proc.stderr
    return path


def test_info_prints_the_official_parameter_counts() -> None:
    proc = run("info", "--preset", "semantic-256")
    assert proc.returncode == 0, proc.stderr
    assert "family: SemanticStyleGAN" in proc.stdout
    assert "(20,208,020)" in proc.stdout and "(51,169,793)" in proc.stdout
    info = json.loads(run("info", "--preset", "semantic-512", "--json").stdout)
    assert info["family"] == "semanticstylegan" and info["config"]["family"] == "semanticstylegan"
    assert info["parameters"] == {"generator": 20_320_358, "discriminator": 51_406_593}
    assert json.loads(run("info", "--preset", "tiny", "--json").stdout)["family"] == "stylemapgan"


def test_init_then_info(tiny_ckpt: Path) -> None:
    info = json.loads(run("info", str(tiny_ckpt), "--json").stdout)
    assert info["family"] == "semanticstylegan" and info["provenance"]["seed"] == 5
    assert info["networks_in_file"] == ["discriminator", "g_ema", "generator"]
    assert info["config"]["seg_dim"] == 5 and info["config"]["transparent_dims"] == [3]
    assert load_checkpoint(tiny_ckpt).config == TINY


def _render(ckpt: Path, seeds: list[int], psi: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What generate should write, computed in this process: z per seed, w truncated towards the mean of 10,000 w."""
    g = load_inference_model(ckpt).generator
    z = torch.stack([torch.randn(TINY.style_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])
    with torch.no_grad():
        w = g.mapping(z)
        mean = g.mean_latent(10000, seed=0)
        w_plus = (mean + psi * (w - mean)).unsqueeze(1).expand(-1, TINY.n_latent, -1)
        out = g.synthesize(w_plus, randomize_noise=False)
    return out.image, out.segmentation, w_plus


def test_generate_writes_images_segmentation_maps_and_latents(tiny_ckpt: Path, tmp_path: Path) -> None:
    seeds = [0, 1, 7]
    out = tmp_path / "gen"
    proc = run("generate", "--ckpt", str(tiny_ckpt), "--outdir", str(out), "--seeds", "0-1,7", "--trunc", "0.7",
               "--device", "cpu", "--batch", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    images, segmentation, latents = _render(tiny_ckpt, seeds, 0.7)
    labels = segmentation.argmax(1)
    assert labels.unique().numel() >= 2  # a map with more than one class, so the comparison means something
    for i, seed in enumerate(seeds):
        png = np.asarray(Image.open(out / f"seed{seed:04d}.png").convert("RGB"))
        assert np.abs(png.astype(int) - to_uint8(images[i : i + 1])[0].astype(int)).max() <= 1
        seg = Image.open(out / f"seed{seed:04d}_seg.png")
        assert seg.mode == "P" and seg.size == (TINY.size, TINY.size)
        assert np.array_equal(np.asarray(seg), labels[i].numpy().astype(np.uint8))  # pixel = class index
        rgb = np.asarray(seg.convert("RGB"))
        for k in labels[i].unique().tolist():
            assert (rgb[labels[i].numpy() == k] == class_color(k)).all()  # the fixed palette
        saved = load_official_latents(out / f"seed{seed:04d}.npy", TINY)  # the official latent format
        assert saved.shape == (1, TINY.n_latent, TINY.style_dim)
        assert torch.allclose(saved[0], latents[i], atol=1e-6)
    assert (out / "grid.png").is_file()
    record = json.loads((out / "generate.json").read_text())
    assert record["family"] == "semanticstylegan" and record["truncation"]["psi"] == 0.7
    assert [c["color"] for c in record["classes"]] == ["#000000", *("#{:02x}{:02x}{:02x}".format(*class_color(k))
                                                                   for k in range(1, TINY.seg_dim))]
    assert record["model"]["config"]["family"] == "semanticstylegan"

    # batching does not change a seed's image; psi 1 is a different, untruncated image
    again = tmp_path / "again"
    assert run("generate", "--ckpt", str(tiny_ckpt), "--outdir", str(again), "--seeds", "7", "--trunc", "0.7",
               "--device", "cpu", "--batch", "1").returncode == 0
    assert (again / "seed0007.png").read_bytes() == (out / "seed0007.png").read_bytes()
    assert (again / "seed0007_seg.png").read_bytes() == (out / "seed0007_seg.png").read_bytes()


def test_convert_and_generate_from_an_official_file(tmp_path: Path) -> None:
    from test_semantic_checkpoint import _write_official

    src = tmp_path / "official.pt"
    _write_official(src, TINY, seed=2)
    proc = run("convert", str(src), str(tmp_path / "ours.safetensors"))
    assert proc.returncode == 0, proc.stderr
    assert "SemanticStyleGAN" in proc.stdout
    info = json.loads(run("info", str(src), "--json").stdout)  # an official file is read anywhere
    assert info["family"] == "semanticstylegan" and info["provenance"]["official_code"] == "SemanticStyleGAN"
    for ckpt, name in ((src, "from-pt"), (tmp_path / "ours.safetensors", "from-ours")):
        proc = run("generate", "--ckpt", str(ckpt), "--outdir", str(tmp_path / name), "--seeds", "3", "--device", "cpu")
        assert proc.returncode == 0, proc.stderr
    for file in ("seed0003.png", "seed0003_seg.png", "seed0003.npy"):
        assert (tmp_path / "from-pt" / file).read_bytes() == (tmp_path / "from-ours" / file).read_bytes(), file


def test_editing_commands_refuse_a_semantic_model_in_one_line(tiny_ckpt: Path, tmp_path: Path) -> None:
    image = tmp_path / "face.png"
    Image.new("RGB", (32, 32), (120, 80, 60)).save(image)
    proc = run("project", str(image), "--ckpt", str(tiny_ckpt), "--outdir", str(tmp_path / "p"), "--device", "cpu")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    # the editor opens it (part edits work on latents); this model has no encoder (train-encoder fits one)
    assert "method 'encoder' needs an encoder (train one with `stylemapgan train-encoder`)" in proc.stderr


def test_export_onnx_renders_like_pytorch(tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from stylemapgan.cli import main

    assert main(["export-onnx", "--ckpt", str(tiny_ckpt), "--outdir", str(tmp_path), "--check"]) == 0
    out = capsys.readouterr().out
    line = next(s for s in out.splitlines() if "max abs difference" in s)
    diffs = dict(part.rsplit(" ", 1) for part in line.split(": ", 1)[1].split(", "))
    assert set(diffs) == {"image", "segmentation"} and all(float(v) < 1e-4 for v in diffs.values())
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["files"] == {"semantic": "semantic.onnx"}
    assert manifest["inputs"]["latents"] == ["N", TINY.n_latent, TINY.style_dim]
