"""Attribute directions on labelled data, and part-name masks from a dataset's part masks.

The labelled data is synthetic: noise images, half of them with a bright square drawn at a random place
(label `square`), and a float label `brightness`. With an untrained model the encoder is random but still a
fixed feature map, so the test is meaningful: a direction learned on the encodings of the train split must
raise the score of an independent classifier fitted on the held-out split when added to held-out stylemaps.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylemapgan.checkpoint import fresh_checkpoint, save_checkpoint
from stylemapgan.config import get_preset
from stylemapgan.editing import EditingError, Editor, fit_linear_classifier, load_directions, supervised_direction
from stylemapgan.editing.directions import binarise_labels

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
PARTS = ["background", "face", "hair"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stylemapgan", *map(str, args)], capture_output=True, text=True, env=ENV
    )


def labelled_image(rng: np.random.Generator, square: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """16 x 16 noise, maybe a bright 8 x 8 square; part map: square = hair, the rest of the top half = face."""
    image = (rng.integers(0, 256, (16, 16, 3)) * 0.5 + 64).astype(np.uint8)
    parts = np.zeros((16, 16), np.uint8)
    parts[:8] = 1
    if square:
        x, y = rng.integers(0, 8, 2)
        image[y : y + 8, x : x + 8] = 255
        parts[y : y + 8, x : x + 8] = 2
    return image, parts, float(image.mean() / 255)


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stylemapgan.data import DatasetWriter

    root = tmp_path_factory.mktemp("directions")
    save_checkpoint(root / "tiny.safetensors", fresh_checkpoint(get_preset("tiny").model, 5, "test"))
    rng = np.random.default_rng(0)
    splits: dict[str, list[int]] = {"train": [], "test": []}
    with DatasetWriter(root / "data", log=lambda m: None) as writer:
        for i in range(160):
            image, parts, brightness = labelled_image(rng, square=i % 2 == 1)
            image_id = writer.add({16: png(image)}, masks={16: png(parts)}, labels=[float(i % 2), brightness])
            splits["train" if i < 100 else "test"].append(image_id)
        meta = {
            "name": "squares",
            "labels": {"names": ["square", "brightness"], "kinds": {"square": "binary", "brightness": "float"},
                       "vocab": {}},
            "masks": {"format": "label-map-png", "parts": PARTS},
        }
        writer.finish(meta, splits)
    return root


def _split(editor: Editor, path: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from stylemapgan.data import PreparedDataset

    ds = PreparedDataset(path, 16, split, labels=True)
    images = torch.stack([ds[i]["image"] for i in range(len(ds))])
    labels = torch.stack([ds[i]["labels"] for i in range(len(ds))])
    return torch.cat([editor.stylemap(k) for k in editor.encode_many(images)]), labels


def test_supervised_direction_moves_held_out_classifier(work: Path) -> None:
    editor = Editor.from_checkpoint(work / "tiny.safetensors")
    train, train_labels = _split(editor, work / "data", "train")
    held, held_labels = _split(editor, work / "data", "test")
    direction, classifier = supervised_direction("square", train, train_labels[:, 0] > 0.5)
    assert abs(float(direction.vector.norm()) - 1) < 1e-5
    assert classifier.accuracy(held, held_labels[:, 0]) > 0.8  # it generalises
    judge = fit_linear_classifier(held.flatten(1), held_labels[:, 0] > 0.5, "logistic")  # independent classifier
    before = judge.score(held)
    after = judge.score(held + 0.5 * direction.vector)
    assert (after > before).all()
    negatives = held_labels[:, 0] < 0.5
    flipped = (judge.score(held[negatives] + 2 * direction.vector) > 0).float().mean()
    assert flipped > (before[negatives] > 0).float().mean()
    assert (judge.score(held - 0.5 * direction.vector) < before).all()  # and the other way
    random = torch.randn_like(direction.vector)
    random /= random.norm()
    cosine = float(judge.normal @ direction.vector.flatten())
    assert cosine > 0.5 > abs(float(judge.normal @ random.flatten()))


def test_label_binarisation() -> None:
    values = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.7, 0.2])
    index, labels = binarise_labels(values, "float", "b", extremes=1 / 3)
    assert sorted(index.tolist()) == [0, 1, 4, 5] and labels.sum() == 2
    _, labels = binarise_labels(torch.tensor([0.0, 1.0, 2.0]), "categorical", "c", vocab=["a", "b", "c"], value="c")
    assert labels.tolist() == [False, False, True]
    with pytest.raises(EditingError, match="NAME=VALUE"):
        binarise_labels(torch.tensor([0.0, 1.0]), "categorical", "c", vocab=["a", "b"])
    with pytest.raises(EditingError, match="distinct"):
        binarise_labels(torch.ones(4), "float", "b")


def test_directions_and_attribute_cli(work: Path, tmp_path: Path) -> None:
    ckpt, out = work / "tiny.safetensors", tmp_path / "dirs.safetensors"
    proc = run("directions", "--ckpt", ckpt, "--data", work / "data", "--attribute", "square", "brightness",
               "--pca", "2", "--sefa", "2", "--samples", "200", "--out", out)
    assert proc.returncode == 0, proc.stderr
    directions = load_directions(out, (8, 4, 4))
    assert set(directions) == {"square", "brightness", "pca_0", "pca_1", "sefa_0", "sefa_1"}
    assert directions["square"].meta["val_accuracy"] > 0.8 and directions["square"].meta["val_split"] == "test"
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["command"] == "directions" and record["outputs"] == [str(out)]
    edited = tmp_path / "attr"
    image = tmp_path / "face.png"
    Image.fromarray(labelled_image(np.random.default_rng(9), False)[0]).resize((30, 22)).save(image)
    proc = run("attribute", "--ckpt", ckpt, image, "--directions", out, "--attribute", "square",
               "--strength=-2,0,2", "--mask", "0,0,8,16", "--outdir", edited)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in edited.glob("*.png"))
    assert names == ["face_square_+0.png", "face_square_+2.png", "face_square_-2.png", "face_square_strip.png"]
    record = json.loads((edited / "attribute.json").read_text())
    assert record["strengths"] == [-2, 0, 2] and record["direction"]["kind"] == "supervised"
    proc = run("attribute", "--ckpt", ckpt, image, "--directions", out, "--attribute", "smile", "--outdir", edited)
    assert proc.returncode == 2 and "'smile'" in proc.stderr and "square" in proc.stderr
    proc = run("directions", "--ckpt", ckpt, "--data", work / "data", "--attribute", "age", "--out", out)
    assert proc.returncode == 2 and "'age'" in proc.stderr and "brightness" in proc.stderr


def test_part_name_masks_from_dataset(work: Path, tmp_path: Path) -> None:
    ckpt, data, out = work / "tiny.safetensors", work / "data", tmp_path / "parts"
    proc = run("edit", "--ckpt", ckpt, "--data", data, "--source", "test:0", "--reference", "test:1",
               "--mask", "hair", "--mode", "w_plus", "--outdir", out)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / "edit.json").read_text())
    assert record["inputs"]["references"][0] == {"input": "data:test:1", "kind": "image", "has_part_mask": True}
    with Image.open(out / "test0_mask1.png") as m:
        mask = np.asarray(m.convert("L")) > 127
    from stylemapgan.data import PreparedDataset

    ds = PreparedDataset(data, 16, "test", masks=True)
    union = (ds[0]["mask"].numpy() == 2) | (ds[1]["mask"].numpy() == 2)  # source's and reference's hair
    assert union.any() and np.array_equal(mask, union)
    proc = run("edit", "--ckpt", ckpt, "--data", data, "--source", "test:0", "--reference", "test:1",
               "--mask", "eyebrows", "--outdir", out)
    assert proc.returncode == 2 and "'eyebrows'" in proc.stderr and "background, face, hair" in proc.stderr
    proc = run("edit", "--ckpt", ckpt, "--data", data, "--source", "test:0", "--reference", "test:999",
               "--mask", "hair", "--outdir", out)
    assert proc.returncode == 2 and "test:999" in proc.stderr and "out of range" in proc.stderr
