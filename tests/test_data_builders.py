"""Built-in datasets: small deterministic builds (same seed, same bytes) with labels, masks and cards.

cartoon-faces and emoji install their npm packages into the builders' cache on first use
($STYLEMAPGAN_CACHE, default ~/.cache/stylemapgan); node and npm must be on PATH.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stylemapgan.cli import main
from stylemapgan.data import DatasetError, PreparedDataset, build_dataset, read_meta
from stylemapgan.data.builders.common import default_test_count
from stylemapgan.data.builders.fashion_mnist import DEBIAN_DIR, read_idx
from stylemapgan.data.lmdb_format import shared_env


def all_values(path: Path) -> dict[bytes, bytes]:
    """Every key except the metadata record (which names the output path in no field, but keep it out)."""
    with shared_env(path).begin() as txn:
        return {bytes(k): bytes(v) for k, v in txn.cursor() if bytes(k) != b"__meta__"}


def quiet(msg: str) -> None:
    pass


# ---------------------------------------------------------------- cartoon-faces


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("faces")
    kw = {"count": 6, "test_count": 2, "progress": False, "log": quiet}
    return {
        "a": build_dataset("cartoon-faces", root / "a", seed=0, **kw),
        "b": build_dataset("cartoon-faces", root / "b", seed=0, workers=1, **kw),
        "other_seed": build_dataset("cartoon-faces", root / "c", seed=1, **kw),
        "fewer": build_dataset(
            "cartoon-faces", root / "d", seed=0, count=3, test_count=0, sizes=(64, 32), progress=False, log=quiet
        ),
    }


def test_cartoon_faces_deterministic(faces: dict[str, Path]) -> None:
    a, b, c = all_values(faces["a"]), all_values(faces["b"]), all_values(faces["other_seed"])
    assert len([k for k in a if k.startswith(b"img/64/")]) == 8
    assert a == b  # same seed (and any worker count): same bytes, images, masks, labels, records
    assert read_meta(faces["a"]) == read_meta(faces["b"])
    assert all(a[k] != c[k] for k in a if k.startswith(b"img/"))  # another seed: other faces
    # face i of the train split does not depend on how many faces are drawn
    fewer = all_values(faces["fewer"])
    train_a = PreparedDataset(faces["a"], 64, "train").ids
    for i, image_id in enumerate(train_a[:3]):
        assert fewer[f"img/64/{i:08d}".encode()] == a[f"img/64/{int(image_id):08d}".encode()]


def test_cartoon_faces_labels_masks_card(faces: dict[str, Path]) -> None:
    meta = read_meta(faces["a"])
    assert meta["splits"] == {"train": 6, "test": 2} and meta["sizes"] == [64]
    assert meta["licence"].startswith("Apache-2.0") and meta["source"]["version"] == "5.0.3"
    parts = meta["masks"]["parts"]
    for needed in (
        "background",
        "hair",
        "eyes",
        "eyebrows",
        "nose",
        "mouth",
        "ears",
        "face",
        "glasses",
        "facial_hair",
        "body",
    ):
        assert needed in parts
    labels = meta["labels"]
    for needed in (
        "female",
        "has_glasses",
        "has_facial_hair",
        "hair_id",
        "eye_id",
        "mouth_id",
        "skin_color",
        "skin_lightness",
    ):
        assert needed in labels["names"]

    ds = PreparedDataset(faces["a"], 64, "train", labels=True, masks=True, records=True)
    assert len(ds) == 6 and ds.part_names == parts and ds.label_names == labels["names"]
    name_idx = {n: i for i, n in enumerate(ds.label_names)}
    part_idx = {p: i for i, p in enumerate(parts)}
    for i in range(len(ds)):
        item = ds[i]
        image, mask, y = item["image"], item["mask"], item["labels"]
        assert image.shape == (3, 64, 64) and float(image.min()) >= -1 and float(image.max()) <= 1
        assert mask.shape == (64, 64) and mask.dtype == torch.int64 and int(mask.max()) < len(parts)
        assert y.shape == (len(ds.label_names),)
        for name, kind in labels["kinds"].items():
            v = float(y[name_idx[name]])
            if kind == "binary":
                assert v in (0.0, 1.0)
            elif kind == "categorical":
                assert v == int(v) and 0 <= v < len(labels["vocab"][name])
        for part in ("face", "eyes", "nose", "mouth", "clothes", "background"):
            assert (mask == part_idx[part]).sum() > 0, (i, part)
        # background pixels are white in the picture; face pixels are not
        white = (image > 0.99).all(0)
        assert white[mask == 0].float().mean() > 0.9  # the rest: anti-aliased outline pixels
        assert white[mask == part_idx["face"]].float().mean() < 0.05
        # areas in the labels equal the mask's pixel fractions
        assert abs(float(y[name_idx["area_face"]]) - float((mask == part_idx["face"]).float().mean())) < 1e-5
        record = json.loads(item["record"])
        face = record["face"]
        assert float(y[name_idx["has_glasses"]]) == float(face["glasses"]["id"] != "none")
        assert labels["vocab"]["hair_id"][int(y[name_idx["hair_id"]])] == face["hair"]["id"]
        assert float(y[name_idx["female"]]) == float(record["gender"] == "female")
    onehot = PreparedDataset(faces["a"], 64, "test", masks=True, mask_format="onehot")[0]["mask"]
    assert onehot.shape == (len(parts), 64, 64) and onehot.dtype == torch.uint8
    assert torch.equal(onehot.sum(0), torch.ones(64, 64, dtype=torch.uint8))
    small = PreparedDataset(faces["fewer"], 32, masks=True)[0]
    assert small["image"].shape == (3, 32, 32) and small["mask"].shape == (32, 32)


def test_cartoon_faces_cli_build_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cf"
    assert (
        main(
            [
                "datasets",
                "build",
                "cartoon-faces",
                str(out),
                "--count",
                "2",
                "--test-count",
                "1",
                "--seed",
                "5",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "cartoon-faces" in capsys.readouterr().out
    assert main(["datasets", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"] == {"train": 2, "test": 1} and info["masks"]["parts"][0] == "background"
    assert main(["datasets", "build", "cartoon-faces", str(out), "--count", "1"]) == 2  # exists
    assert "already exists" in capsys.readouterr().err
    assert main(["datasets", "build", "cartoon-faces", str(tmp_path / "x"), "--source", "y"]) == 2
    assert main(["datasets", "build", "no-such", str(tmp_path / "y")]) == 2


# ---------------------------------------------------------------- emoji


@pytest.fixture(scope="module")
def emoji(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("emoji")
    kw = {"count": 10, "test_count": 4, "progress": False, "log": quiet}
    return {
        "a": build_dataset("emoji", root / "a", seed=0, **kw),
        "b": build_dataset("emoji", root / "b", seed=0, **kw),
        "other_seed": build_dataset("emoji", root / "c", seed=1, **kw),
    }


def test_emoji_deterministic_with_labels(emoji: dict[str, Path]) -> None:
    a, b = all_values(emoji["a"]), all_values(emoji["b"])
    assert a == b
    assert a != all_values(emoji["other_seed"])
    meta = read_meta(emoji["a"])
    assert meta["splits"] == {"train": 10, "test": 4} and meta["sizes"] == [64]
    assert "CC-BY 4.0" in meta["licence"] and "Twemoji" in meta["attribution"]
    assert meta["build"]["available"] > 4000  # both vendors, all skin tones
    ds = PreparedDataset(emoji["a"], 64, "train", labels=True, records=True)
    names = ds.label_names
    vocab = meta["labels"]["vocab"]
    for i in range(len(ds)):
        item = ds[i]
        image, y, record = item["image"], item["labels"], json.loads(item["record"])
        assert image.shape == (3, 64, 64)
        assert (image == 1).all(0).float().mean() > 0.05  # transparent pixels composited on white
        assert float(image.min()) < 0.5  # something drawn
        assert vocab["vendor"][int(y[names.index("vendor")])] == record["vendor"]
        assert vocab["category"][int(y[names.index("category")])] == record["category"]
        assert record["category"] in ("Smileys & Emotion", "People & Body")
        assert vocab["emoji"][int(y[names.index("emoji")])] == record["name"]
        tone = int(y[names.index("skin_tone")])
        assert 0 <= tone <= 5 and (tone > 0) == bool(record["skin_tones"])


# ---------------------------------------------------------------- fashion-mnist


def _write_idx(folder: Path, images: np.ndarray, labels: np.ndarray, prefix: str) -> None:
    n = len(images)
    head = (2051).to_bytes(4, "big") + n.to_bytes(4, "big") + (28).to_bytes(4, "big") + (28).to_bytes(4, "big")
    (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(head + images.tobytes()))
    lhead = (2049).to_bytes(4, "big") + n.to_bytes(4, "big")
    (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(lhead + labels.tobytes()))


def test_fashion_mnist_from_fake_idx(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "idx"
    src.mkdir()
    train = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    train_y, test_y = rng.integers(0, 10, 12, dtype=np.uint8), rng.integers(0, 10, 5, dtype=np.uint8)
    _write_idx(src, train, train_y, "train")
    _write_idx(src, test, test_y, "t10k")
    a = build_dataset("fashion-mnist", tmp_path / "a", source=src, count=10, test_count=5, progress=False, log=quiet)
    b = build_dataset("fashion-mnist", tmp_path / "b", source=src, count=10, test_count=5, progress=False, log=quiet)
    assert all_values(a) == all_values(b)
    meta = read_meta(a)
    assert meta["splits"] == {"train": 10, "test": 5} and meta["sizes"] == [32] and meta["licence"].startswith("MIT")
    assert meta["labels"]["vocab"]["class"][9] == "Ankle boot"
    for split, images, ys in (("train", train, train_y), ("test", test, test_y)):
        ds = PreparedDataset(a, 32, split, labels=True)
        for i in range(len(ds)):
            item = ds[i]
            image = item["image"]
            assert image.shape == (3, 32, 32)
            assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
            assert torch.equal(image[:, :2], -torch.ones(3, 2, 32))  # zero padding
            assert torch.equal(image[:, :, 30:], -torch.ones(3, 32, 2))
            expected = torch.from_numpy(images[i].astype(np.float32)) / 127.5 - 1
            assert torch.equal(image[0, 2:30, 2:30], expected)
            assert int(item["labels"][0]) == int(ys[i])
    # other sizes resize the padded 32 px image
    big = build_dataset(
        "fashion-mnist", tmp_path / "c", source=src, count=2, test_count=0, sizes=(64,), progress=False, log=quiet
    )
    assert PreparedDataset(big, 64)[0].shape == (3, 64, 64)
    # without --test-count: the whole test split, or a tenth of --count (issue 20: --count 200 built 1,000 tests)
    whole = build_dataset("fashion-mnist", tmp_path / "w", source=src, progress=False, log=quiet)
    assert read_meta(whole)["splits"] == {"train": 12, "test": 5}
    small = build_dataset("fashion-mnist", tmp_path / "s", source=src, count=10, progress=False, log=quiet)
    assert read_meta(small)["splits"] == {"train": 10, "test": 1}
    # bad files are named in the error
    (src / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + bytes(8)))
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte\.gz: idx magic"):
        build_dataset("fashion-mnist", tmp_path / "d", source=src, progress=False, log=quiet)
    assert not (tmp_path / "d").exists() and not (tmp_path / "d.partial").exists()


@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_real_debian_files(tmp_path: Path) -> None:
    images = read_idx(DEBIAN_DIR / "train-images-idx3-ubyte.gz", 2051)
    labels = read_idx(DEBIAN_DIR / "train-labels-idx1-ubyte.gz", 2049)
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)
    assert read_idx(DEBIAN_DIR / "t10k-labels-idx1-ubyte.gz", 2049).shape == (10000,)
    assert np.bincount(labels, minlength=10).tolist() == [6000] * 10
    out = build_dataset("fashion-mnist", tmp_path / "fm", count=50, test_count=20, progress=False, log=quiet)
    meta = read_meta(out)
    assert meta["source"]["type"] == "debian" and meta["splits"] == {"train": 50, "test": 20}
    ds = PreparedDataset(out, 32, "train", labels=True)
    got = torch.stack([ds[i]["labels"] for i in range(50)])[:, 0].to(torch.uint8).numpy()
    assert np.array_equal(got, labels[:50])
    first = ds[0]["image"][0, 2:30, 2:30]
    assert torch.equal(first, torch.from_numpy(images[0].astype(np.float32)) / 127.5 - 1)


@pytest.mark.parametrize(("name", "bad_size"), [("cartoon-faces", 8), ("emoji", 80), ("fashion-mnist", 512)])
def test_builders_reject_sizes_and_filters_they_cannot_make(tmp_path: Path, name: str, bad_size: int) -> None:
    with pytest.raises(DatasetError, match=rf"{name} sizes must be \d+\.\.\d+ .*got \[32, {bad_size}\]"):
        build_dataset(name, tmp_path / "out", sizes=(32, bad_size))
    if name != "cartoon-faces":  # drawn as vectors: no resize filter
        with pytest.raises(DatasetError, match="resize filter must be one of"):
            build_dataset(name, tmp_path / "out", sizes=(32,), resize_filter="bicubic")
    assert not (tmp_path / "out").exists()


def test_default_test_count_scales_with_count() -> None:
    assert default_test_count(None, 1000) == 1000  # the builder's full test split
    assert default_test_count(200, 1000) == 20  # `datasets build cartoon-faces --count 200`: 20 test faces
    assert default_test_count(10000, 1000) == 1000  # the bundled model's 10,000 + 1,000
    assert default_test_count(30000, 1000) == 1000  # capped at the full split
    assert default_test_count(5, 1000) == 1  # at least one held-out image
