"""`stylemapgan release` of a SemanticStyleGAN `train-encoder` run (semantic-tiny): what ships (EMA generator +
EMA encoder, the truncation centre, part names), the card (both training stages, part-swap metrics, the sample-face
MSE through the model's own encode/render), the editor's use of them; bundled model names and `stylemapgan models`."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from face_fixtures import PARTS, write_face_dataset
from semantic_train_script import TINY
from stylemapgan.checkpoint import build_network, fresh_checkpoint, load_checkpoint, save_checkpoint
from stylemapgan.cli import main
from stylemapgan.data.dataset import fit_to_model, open_dataset
from stylemapgan.editing.base import BaseEditor
from stylemapgan.metrics.inception import quantize
from stylemapgan.models import bundled_samples, resolve_checkpoint
from stylemapgan.semantic import SemanticGenerator
from stylemapgan.training.run import latest_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
REPORT = {"metrics": {  # the shape of a SemanticStyleGAN `stylemapgan eval` report
    "recon": {"mse": 0.25, "lpips": 0.4, "projection": "encoder", "wall_s": 3.0},
    "local_edit": {"mse_src": 0.02, "mse_ref": 0.2, "edit_mode": "part_swap", "pooling": None,
                   "per_part": {"eyes": {"mse_src": 0.01, "mse_ref": 0.3}, "background": {"mse_src": 0.3,
                                                                                    "mse_ref": 0.1}}},
    "part_control": {"mean": 0.5, "pairs": 4, "per_part": {"eyes": {"control": 0.15, "mse_ref": 0.1, "mse_src": 0.02},
                                                          "background": {"control": None, "pixels": 0}}},
}}


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny generator, a 2-iteration encoder run on it, and its release with sample faces and an eval report."""
    tmp = tmp_path_factory.mktemp("release")
    data = write_face_dataset(tmp / "faces", size=TINY.size, count=8, train_count=4)
    generator = tmp / "generator.safetensors"
    ckpt = fresh_checkpoint(TINY, 0, "test")
    ckpt.extra["class_names"] = list(PARTS)
    save_checkpoint(generator, ckpt)
    run = tmp / "enc"
    assert main(["train-encoder", "--ckpt", str(generator), "--data", str(data), "--outdir", str(run), "--iters", "2",
                 "--batch", "2", "--num-workers", "0", "--perceptual", "none", "--checkpoint-every", "1",
                 "--sample-every", "100", "--val-every", "100", "--no-progress"]) == 0
    (tmp / "report.json").write_text(json.dumps(REPORT))
    out = tmp / "model.safetensors"
    assert main(["release", str(run), str(out), "--name", "toy-sem", "--samples", str(data),
                 "--metrics", str(tmp / "report.json")]) == 0
    return {"model": out, "data": data, "generator": generator, "run": run, "tmp": tmp}


def test_release_ships_the_ema_networks_the_mean_w_and_the_part_names(released: dict[str, Path]) -> None:
    model, source = load_checkpoint(released["model"]), load_checkpoint(latest_checkpoint(released["run"]))
    assert set(source.networks) == {"g_ema", "encoder", "e_ema"}
    assert set(model.networks) == {"g_ema", "e_ema"} and model.training is None  # no optimizer, no D, no raw E
    for net in ("g_ema", "e_ema"):
        assert all(torch.equal(v, source.networks[net][k]) for k, v in model.networks[net].items())
    assert model.extra["class_names"] == PARTS
    generator = build_network(model, "g_ema")
    assert isinstance(generator, SemanticGenerator)
    torch.testing.assert_close(model.extra["mean_w"], generator.mean_latent(10_000, seed=0))
    card = model.provenance["card"]
    assert card["family"] == "SemanticStyleGAN" and card["trained_by"] == "train-encoder"
    assert card["iterations"] == 2 and card["images_seen"] == 4 and card["samples"] == "faces"
    encoder = build_network(model, "e_ema")
    assert card["parameters"] == {"generator": sum(p.numel() for p in generator.parameters()),
                                  "encoder": sum(p.numel() for p in encoder.parameters())}
    (stage,) = card["initialised_from"]  # the generator's own record: the card tells both stages
    assert stage["path"] == str(released["generator"]) and stage["trained_by"] == "train"
    # the sample-face MSE, recomputed here from the raw networks: encoder -> W+ -> render (stored noise), 8 bits
    test = open_dataset(released["data"], split="test")
    images = fit_to_model(torch.stack([test[i] for i in range(len(test))]), TINY.size)
    with torch.no_grad():
        rec = generator.synthesize(encoder(images), randomize_noise=False).image
    expected = float((quantize(rec.clamp(-1, 1)) - images).square().flatten(1).mean(1).mean())
    assert card["metrics"]["bundled_samples_recon_mse"] == pytest.approx(expected, rel=1e-5)
    assert card["metrics"]["local_edit.eyes.mse_ref"] == 0.3 and "recon.wall_s" not in card["metrics"]
    text = released["model"].with_suffix(".md").read_text()
    assert "Family: SemanticStyleGAN; truncation centre: mean w of 10,000 z (seed 0)" in text
    assert "| reconstruction MSE, images in [-1, 1] | 0.25 | <= 0.02 |" in text
    assert "shape and texture codes of the part swapped into the source" in text
    assert "| eyes | 0.01 | 0.3 | yes | 0.15 |" in text and "| background | 0.3 | 0.1 | NO | n/a |" in text
    assert card["metrics"]["part_control.mean"] == 0.5 and "part_control.eyes.mse_ref" not in card["metrics"]
    assert "| part control, mean over parts" in text
    assert "- iterations: 2 (`stylemapgan train-encoder`)" in text and "Started from `generator.safetensors`" in text
    assert f"Parameters: generator {card['parameters']['generator'] / 1e6:.2f}M, encoder" in text


def test_the_card_tells_the_run_an_encoder_was_taken_from(released: dict[str, Path], tmp_path: Path) -> None:
    """An encoder run that began from another run's encoder (`--encoder-from`): the card names that run's file and
    tells its own training record, beside the generator's."""
    run = tmp_path / "enc2"
    assert main(["train-encoder", "--ckpt", str(released["generator"]), "--encoder-from", str(released["run"]),
                 "--data", str(released["data"]), "--outdir", str(run), "--iters", "1", "--batch", "2",
                 "--num-workers", "0", "--perceptual", "none", "--lambda-x-rec", "5", "--sample-every", "100",
                 "--val-every", "100", "--no-progress"]) == 0
    out = tmp_path / "model.safetensors"
    assert main(["release", str(run), str(out), "--name", "toy-sem2"]) == 0
    card = load_checkpoint(out).provenance["card"]
    (taken,) = card["networks_from"]
    assert taken["path"] == str(latest_checkpoint(released["run"])) and taken["networks"] == ["encoder", "e_ema"]
    assert taken["trained_by"] == "train-encoder" and taken["train_config"]["lambda_x_rec"] == 1.0
    assert card["train_config"]["lambda_x_rec"] == 5.0 and len(card["initialised_from"]) == 1
    text = out.with_suffix(".md").read_text()
    assert "Took encoder, e_ema from `ckpt-0000002.safetensors`" in text and "Started from `generator" in text


def test_a_release_from_another_folder_keeps_the_earlier_stage_and_says_when_it_is_gone(
        released: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs record the files they started from as resolved paths, so a release made from another folder still
    tells the generator's own training; once that file is gone, the card says its record was not at hand."""
    work = tmp_path / "runs"
    work.mkdir()
    shutil.copy(released["generator"], work / "g.safetensors")
    monkeypatch.chdir(work)
    assert main(["train-encoder", "--ckpt", "g.safetensors", "--data", str(released["data"]), "--outdir", "enc",
                 "--iters", "1", "--batch", "2", "--num-workers", "0", "--perceptual", "none", "--sample-every",
                 "100", "--val-every", "100", "--no-progress"]) == 0
    monkeypatch.chdir(tmp_path)  # elsewhere: "g.safetensors" alone would not resolve here
    assert main(["release", "runs/enc", "kept.safetensors", "--name", "kept"]) == 0
    (stage,) = load_checkpoint(tmp_path / "kept.safetensors").provenance["card"]["initialised_from"]
    assert stage["path"] == str(work / "g.safetensors") and stage["trained_by"] == "train"
    (work / "g.safetensors").unlink()
    assert main(["release", "runs/enc", "lost.safetensors", "--name", "lost"]) == 0
    (stage,) = load_checkpoint(tmp_path / "lost.safetensors").provenance["card"]["initialised_from"]
    assert "trained_by" not in stage and stage["path"] == str(work / "g.safetensors")
    assert "that checkpoint was not at hand at release" in (tmp_path / "lost.md").read_text()


def test_the_editor_uses_the_shipped_centre_card_and_samples(released: dict[str, Path],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_checkpoint(released["model"])

    def no_recompute(*args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("the truncation centre is in the file")

    monkeypatch.setattr(SemanticGenerator, "mean_latent", no_recompute)
    editor = BaseEditor.from_checkpoint(released["model"])
    assert torch.equal(editor.mean_w(), model.extra["mean_w"])
    assert editor.sample([0, 1], trunc=0.5).images.shape == (2, 3, TINY.size, TINY.size)
    assert editor.reference_mse == model.provenance["card"]["metrics"]["recon.mse"]  # the card's yardstick
    assert bundled_samples(released["model"]) == released["data"]  # named by the card, beside the model


def test_edit_a_released_model_by_its_sample_faces(released: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "edit"
    assert main(["edit", "--ckpt", str(released["model"]), "--source", "test:0", "--reference", "test:1", "--part",
                 "hair", "--outdir", str(out), "--no-progress"]) == 0  # no --data: the card's sample faces
    assert any(p.suffix == ".png" for p in out.iterdir())


def test_release_refuses_a_model_without_an_encoder(released: dict[str, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.safetensors"
    assert main(["release", str(released["generator"]), str(out), "--name", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "has no 'e_ema' network (encoder)" in err and "train-encoder" in err, err
    assert not out.exists() and not out.with_suffix(".md").exists()


def test_bundled_semantic_name_resolves_lists_and_fails_in_one_line(
        released: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import stylemapgan.models

    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setattr(stylemapgan.models, "bundled_models_dir", lambda: folder)
    capsys.readouterr()
    assert main(["info", "cartoon-faces-semantic"]) == 2  # a known name, its file not released yet
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cartoon-faces-semantic: a bundled model name, but its file is not in this " \
                                   "installation" in err and "`make train-semantic` builds it" in err, err
    path = folder / "cartoon-faces-semantic.safetensors"
    shutil.copy(released["model"], path)
    shutil.copy(released["model"].with_suffix(".md"), path.with_suffix(".md"))
    shutil.copytree(released["data"], folder / "faces")  # the card's samples (cartoon-faces-samples when shipped)
    assert resolve_checkpoint("cartoon-faces-semantic") == path
    assert bundled_samples(path) == folder / "faces"
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "cartoon-faces: not in this installation (`make train-default` builds it)" in out
    assert "cartoon-faces-semantic: SemanticStyleGAN, " in out and "recon MSE 0.25" in out
    assert ", 2 iterations;" in out  # its generator was a fresh, untrained checkpoint: no earlier stage
    assert "samples faces" in out and f"card: {path.with_suffix('.md')}" in out
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["cartoon-faces-semantic"]["present"] and rows["cartoon-faces-semantic"]["iterations"] == 2
    assert not rows["cartoon-faces"]["present"] and rows["cartoon-faces"]["default"]
    assert main(["models", "cartoon-faces-semantic"]) == 0
    assert capsys.readouterr().out.startswith("# Model card: toy-sem\n")
    assert main(["models", "nope"]) == 2
    assert "nope: no such bundled model (bundled: cartoon-faces-semantic)" in capsys.readouterr().err
