"""The SemanticStyleGAN hybrid projection refines the encoder's answer at a smaller lr than the official
optimisation from the mean (0.1 discards a close start in the first steps); every other method keeps the official
recipe, and an explicit recipe (`project --lr`) still wins."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from face_fixtures import PARTS, write_face_dataset
from semantic_train_script import TINY
from stylemapgan.checkpoint import fresh_checkpoint, load_checkpoint, save_checkpoint
from stylemapgan.cli import main
from stylemapgan.data.dataset import fit_to_model, open_dataset
from stylemapgan.editing.semantic import SemanticEditor
from stylemapgan.training.run import latest_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def test_hybrid_has_its_own_lr_and_the_rest_is_official(tmp_path: Path) -> None:
    data = write_face_dataset(tmp_path / "faces", size=TINY.size, count=6, train_count=4)
    generator = tmp_path / "generator.safetensors"
    ckpt = fresh_checkpoint(TINY, 0, "test")
    ckpt.extra["class_names"] = list(PARTS)
    save_checkpoint(generator, ckpt)
    assert main(["train-encoder", "--ckpt", str(generator), "--data", str(data), "--outdir", str(tmp_path / "enc"),
                 "--iters", "1", "--batch", "2", "--num-workers", "0", "--perceptual", "none", "--sample-every",
                 "100", "--val-every", "100", "--no-progress"]) == 0
    editor = SemanticEditor.from_loaded(load_checkpoint(latest_checkpoint(tmp_path / "enc")), "model", "cpu")
    official = editor.projection_defaults
    assert official.lr == 0.1 and editor.projection_recipe("optimize") == official
    assert editor.projection_recipe("hybrid") == dataclasses.replace(official, lr=editor.hybrid_lr)
    assert editor.hybrid_lr == 0.01
    test = open_dataset(data, split="test")
    images = fit_to_model(torch.stack([test[i] for i in range(len(test))]), TINY.size)

    def projected(options: object) -> torch.Tensor:
        result, _ = editor.project(images, "hybrid", options)  # type: ignore[arg-type]
        return result.stylemaps

    default = projected(None)  # the editor's own recipe for hybrid: 400 steps at lr 0.01
    assert torch.equal(projected(dataclasses.replace(official, lr=0.01)), default)
    start = editor.invert(images, "encoder")
    assert not torch.equal(default, start)  # it did optimise
