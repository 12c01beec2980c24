"""ONNX export (encoder, decoder, synthesis from modulations) and the onnxruntime editor backend agree with
PyTorch, with a dynamic batch axis (issue 9)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from stylemapgan.checkpoint import fresh_checkpoint, load_editing_model, save_checkpoint
from stylemapgan.cli import main
from stylemapgan.config import get_preset
from stylemapgan.editing import Editor, RectangleMask, rectangle_mask
from stylemapgan.runtime import OnnxModels, export_onnx

TOL = 1e-4
PRESET = "cpu-32"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / f"{PRESET}.safetensors"
    save_checkpoint(path, fresh_checkpoint(get_preset(PRESET).model, 11, "test"))
    return path


@pytest.fixture(scope="module")
def exported(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = load_editing_model(ckpt)
    folder = tmp_path_factory.mktemp("onnx-export")
    export_onnx(model.generator, model.encoder, folder)
    return folder


def test_graphs_match_pytorch_at_several_batch_sizes(ckpt: Path, exported: Path) -> None:
    model = load_editing_model(ckpt)
    g, e, config = model.generator, model.encoder, model.config
    ort = OnnxModels(exported, threads=1)
    assert ort.config == config
    gen = torch.Generator().manual_seed(0)
    for n in (1, 3):
        images = torch.rand(n, 3, config.size, config.size, generator=gen) * 2 - 1
        with torch.no_grad():
            stylemaps = e(images)
            torch.testing.assert_close(ort.encode(images), stylemaps, rtol=0, atol=TOL)
            torch.testing.assert_close(ort.decode(stylemaps), g.decode(stylemaps), rtol=0, atol=TOL)
            layers = g.synthesis.modulated_layers()
            mods = [m.modulation_params(t) for m, t in zip(layers, g.resizer(stylemaps), strict=True)]
            torch.testing.assert_close(ort.synthesize(mods), g.synthesis.forward_modulated(mods), rtol=0, atol=TOL)


def test_onnx_editor_backend_matches_torch(ckpt: Path, exported: Path) -> None:
    torch_editor = Editor.from_checkpoint(ckpt)
    onnx_editor = Editor.from_checkpoint(ckpt, backend="onnx", onnx_dir=exported)
    size = torch_editor.size
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    mask = rectangle_mask(RectangleMask(4, 8, 20, 30), size)
    outs = []
    for editor in (torch_editor, onnx_editor):
        src, ref = editor.encode(images[0]), editor.encode(images[1])
        outs.append([
            editor.stylemap(src), editor.reconstruct(src),
            editor.local_edit(src, [ref], [mask], mode="w_plus", alphas=[0.5, 1.0]),
            editor.local_edit(src, [ref], [mask], mode="w_plus", fast=False), editor.mix(src, ref, 2),
            editor.local_edit(src, [ref], [mask], mode="w"), editor.decode(editor.stylemap(ref)),
            *editor.generate([0, 5], trunc=0.7), editor.project(images, "encoder")[0].images,
        ])
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=TOL)
    # generate: the mapping falls back to eager fp32 PyTorch (the same stylemaps), the render is onnxruntime's
    onnx_images, onnx_maps = outs[1][-3:-1]
    assert torch.equal(onnx_maps, outs[0][-2])
    assert torch.equal(onnx_images, onnx_editor.runner.models.decode(onnx_maps))
    assert not torch.equal(onnx_images, outs[0][-3])


def test_backend_options_are_validated(ckpt: Path) -> None:
    with pytest.raises(ValueError, match="backend"):
        Editor.from_checkpoint(ckpt, backend="tensorrt")
    with pytest.raises(ValueError, match="bf16"):
        Editor.from_checkpoint(ckpt, backend="onnx", dtype="bf16")


def test_export_cli_with_check(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-onnx", "--ckpt", str(ckpt), "--outdir", str(tmp_path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "encoder" in out and "max abs difference" in out
    assert {p.name for p in tmp_path.iterdir()} >= {"encoder.onnx", "decoder.onnx", "synthesis.onnx", "manifest.json"}
