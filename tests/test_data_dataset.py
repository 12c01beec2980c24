"""The torch Dataset over prepared data: values, splits, flags, hflip, DataLoader workers, pickling, DDP."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler

from stylemapgan.data import (
    DatasetError,
    ImageOptions,
    PreparedDataset,
    build_dataset,
    masks_to_onehot,
    open_dataset,
    prepare_dataset,
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    root = tmp_path_factory.mktemp("ds")
    src = root / "src"
    src.mkdir()
    arrays = []
    for i in range(12):
        arr = np.random.default_rng(i).integers(0, 256, (24, 24, 3), dtype=np.uint8)
        arrays.append(arr)
        Image.fromarray(arr).save(src / f"{i:02d}.png")
    out = root / "out"
    prepare_dataset(src, out, ImageOptions(sizes=(24, 12)), test=4, seed=0, progress=False, log=lambda m: None)
    return out, arrays


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_dataset(
        "cartoon-faces",
        tmp_path_factory.mktemp("faces") / "f",
        count=4,
        test_count=0,
        progress=False,
        log=lambda m: None,
    )


def test_values_splits_and_sizes(prepared: tuple[Path, list[np.ndarray]]) -> None:
    path, arrays = prepared
    train, test = PreparedDataset(path, 24, "train"), PreparedDataset(path, 24, "test")
    everything = PreparedDataset(path, 24, "all")
    assert (len(train), len(test), len(everything)) == (8, 4, 12)
    assert set(train.ids.tolist()).isdisjoint(test.ids.tolist())
    for i in range(len(train)):
        source = train.record(i)["source"]
        expected = torch.from_numpy(arrays[int(source[:2])]).permute(2, 0, 1).float() / 127.5 - 1
        image = train[i]
        assert image.dtype == torch.float32 and image.shape == (3, 24, 24)
        assert torch.equal(image, expected)  # same size: lossless, exact
    assert PreparedDataset(path)[0].shape == (3, 24, 24)  # default: largest size
    assert PreparedDataset(path, 12, "test")[3].shape == (3, 12, 12)
    assert float(everything[-1].abs().max()) <= 1.0
    with pytest.raises(IndexError):
        train[8]
    with pytest.raises(DatasetError, match="no 16px"):
        PreparedDataset(path, 16)
    with pytest.raises(DatasetError, match="no split 'val'"):
        PreparedDataset(path, split="val")
    with pytest.raises(DatasetError, match="no labels"):
        PreparedDataset(path, labels=True)
    with pytest.raises(DatasetError, match="no masks"):
        PreparedDataset(path, masks=True)
    assert isinstance(open_dataset(path, 12, "test"), PreparedDataset)


def test_dataloader_workers_and_pickle(prepared: tuple[Path, list[np.ndarray]]) -> None:
    path, _ = prepared
    ds = PreparedDataset(path, 24, "all")
    direct = torch.stack([ds[i] for i in range(len(ds))])  # opens the env in this process first
    for workers in (0, 2):
        loader = DataLoader(ds, batch_size=5, num_workers=workers, shuffle=False)
        assert torch.equal(torch.cat(list(loader)), direct)
    loader = DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True)
    for _ in range(2):
        assert torch.equal(torch.cat(list(loader)), direct)
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[5], direct[5])
    # DDP: the Dataset is plain; DistributedSampler splits it across ranks
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        seen += list(sampler)
    assert sorted(seen) == list(range(12))


def test_hflip_flips_image_and_mask_together(faces: Path) -> None:
    plain = PreparedDataset(faces, 64, masks=True)
    flipping = PreparedDataset(faces, 64, masks=True, hflip=True)
    torch.manual_seed(0)
    flips = 0
    for _ in range(6):
        for i in range(len(plain)):
            a, b = plain[i], flipping[i]
            if torch.equal(b["image"], a["image"]):
                assert torch.equal(b["mask"], a["mask"])
            else:
                flips += 1
                assert torch.equal(b["image"], a["image"].flip(-1))
                assert torch.equal(b["mask"], a["mask"].flip(-1))
    assert 4 <= flips <= 20  # about half of 24
    onehot = masks_to_onehot(plain[0]["mask"], len(plain.part_names))
    assert onehot.shape == (13, 64, 64) and int(onehot.sum()) == 64 * 64
    batch = next(iter(DataLoader(PreparedDataset(faces, 64, labels=True, masks=True), batch_size=4, num_workers=2)))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["mask"].shape == (4, 64, 64)
    assert batch["labels"].shape == (4, len(plain.meta["labels"]["names"]))
    assert batch["index"].tolist() == [0, 1, 2, 3]


def test_stored_pngs_are_plain_rgb(prepared: tuple[Path, list[np.ndarray]]) -> None:
    from stylemapgan.data.lmdb_format import image_key, shared_env

    path, _ = prepared
    with shared_env(path).begin() as txn:
        data = bytes(txn.get(image_key(12, 0)))
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (12, 12)
