"""`stylemapgan prepare`: every kind of bad input, zips, official LMDBs, atomic output, interrupted runs."""

from __future__ import annotations

import io
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch
from PIL import Image

from stylemapgan.cli import main
from stylemapgan.data import (
    DatasetError,
    ImageOptions,
    OfficialLMDBDataset,
    PreparedDataset,
    open_dataset,
    parse_test_split,
    prepare_dataset,
    read_meta,
)
from stylemapgan.data.lmdb_format import image_key, shared_env

SIZE = 32


def _save(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png16_rgb(arr: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _gradient(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


# name -> (bytes, expected outcome: "kept" or a skip reason)
def bad_inputs() -> dict[str, tuple[bytes, str]]:
    rgb_jpg = _save(_gradient(80, 60), "JPEG", quality=90)
    png_ok = _save(_gradient(40, 40, 1), "PNG")
    files: dict[str, tuple[bytes, str]] = {
        "rgb.jpg": (rgb_jpg, "kept"),
        "gray.png": (_save(Image.new("L", (40, 48), 90), "PNG"), "kept"),
        "bilevel.png": (_save(Image.new("1", (40, 40), 1), "PNG"), "kept"),
        "cmyk.jpg": (_save(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG"), "kept"),
        "palette_plain.gif": (_save(_gradient(40, 40, 2).convert("P"), "GIF"), "kept"),
        "la.png": (_save(Image.new("LA", (40, 40), (200, 0)), "PNG"), "kept"),
        "sixteen_gray.png": (_save(Image.fromarray(np.full((40, 40), 32768, np.uint16)), "PNG"), "kept"),
        "sixteen_rgb.png": (_png16_rgb(np.full((40, 40, 3), 65535 // 2, np.uint16)), "kept"),
        "tiny.png": (_save(_gradient(16, 16), "PNG"), "too-small"),
        "huge.png": (_save(Image.new("RGB", (2500, 2500), (10, 20, 30)), "PNG"), "too-large"),
        "random_bytes.jpg": (np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes(), "not-an-image"),
        "notes.txt": (b"this is not an image\n", "not-an-image"),
        "empty.png": (b"", "corrupt"),
        "truncated.jpg": (rgb_jpg[: len(rgb_jpg) // 2], "corrupt"),
        "truncated.png": (png_ok[: len(png_ok) // 2], "corrupt"),
        "a/same_name.png": (png_ok, "kept"),
        "b/same_name.png": (_save(_gradient(40, 40, 3), "PNG"), "kept"),
        "z_copies/rgb_copy.jpg": (rgb_jpg, "duplicate"),
    }
    # RGBA: left half fully transparent -> background; right half opaque red.
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[:, 20:] = (255, 0, 0, 255)
    files["rgba.png"] = (_save(Image.fromarray(rgba, "RGBA"), "PNG"), "kept")
    # Palette with a transparent index.
    pal = Image.new("P", (40, 40), 0)
    pal.putpalette([0, 0, 255] * 2 + [0] * 762)
    files["palette_transparent.png"] = (_save(pal, "PNG", transparency=0), "kept")
    # EXIF orientation 6 (display = stored rotated 90 degrees clockwise): stored left red / right blue.
    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:, :40] = (255, 0, 0)
    stored[:, 40:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    files["exif_rotated.jpg"] = (_save(Image.fromarray(stored), "JPEG", exif=exif, quality=95), "kept")
    # Two-frame GIF: first frame is used.
    frames = [Image.new("P", (40, 40), 1), Image.new("P", (40, 40), 2)]
    files["animated.gif"] = (_save(frames[0], "GIF", save_all=True, append_images=frames[1:]), "kept")
    return files


def write_folder(root: Path, files: dict[str, tuple[bytes, str]]) -> None:
    for name, (data, _) in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def options(**kw) -> ImageOptions:
    base = {"sizes": (SIZE,), "background": (0, 255, 0), "max_pixels": 4_000_000}
    base.update(kw)
    return ImageOptions(**base)


def test_bad_inputs_folder(tmp_path: Path) -> None:
    files = bad_inputs()
    src = tmp_path / "src"
    write_folder(src, files)
    out = tmp_path / "out"
    report = prepare_dataset(src, out, options(), dedup=True, progress=False, log=lambda m: None)
    expected_kept = sorted(n for n, (_, outcome) in files.items() if outcome == "kept")
    assert report.kept == len(expected_kept) == 14
    got_skips = {s["source"]: s["reason"] for s in report.skipped}
    want_skips = {n: outcome for n, (_, outcome) in files.items() if outcome != "kept"}
    assert got_skips == want_skips
    assert "duplicate" in report.summary() and "tiny.png" in report.summary()

    meta = read_meta(out)
    assert meta["count"] == 14 and meta["splits"] == {"train": 14}
    assert meta["skipped"]["total"] == len(want_skips)
    assert meta["skipped"]["by_reason"] == {
        "corrupt": 3,
        "duplicate": 1,
        "not-an-image": 2,
        "too-large": 1,
        "too-small": 1,
    }
    assert {"alpha-composited", "exif-rotated", "cmyk", "grayscale", "high-bit-depth", "palette"} <= set(
        meta["conversions"]
    )
    assert meta["resize_filter"] == "lanczos" and meta["sizes"] == [SIZE]
    assert (out / "CARD.md").read_text().count("too-small") >= 1
    assert not (tmp_path / "out.partial").exists()

    ds = PreparedDataset(out, SIZE, "train", records=True)
    by_source = {}
    for i in range(len(ds)):
        item = ds[i]
        image = item["image"]
        assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
        assert float(image.min()) >= -1.0 and float(image.max()) <= 1.0
        by_source[ds.record(i)["source"]] = image
    assert sorted(by_source) == expected_kept

    def rgb(name: str, y: int, x: int) -> tuple[int, ...]:
        return tuple(round((float(v) + 1) * 127.5) for v in by_source[name][:, y, x])

    # RGBA composited on the chosen green background; opaque side stays red.
    assert rgb("rgba.png", 16, 2) == (0, 255, 0) and rgb("rgba.png", 16, 29) == (255, 0, 0)
    assert rgb("palette_transparent.png", 5, 5) == (0, 255, 0)
    assert rgb("la.png", 5, 5) == (0, 255, 0)  # LA with alpha 0
    # EXIF applied: red on top, blue at the bottom (unrotated it would be red left / blue right).
    top, bottom = rgb("exif_rotated.jpg", 3, 16), rgb("exif_rotated.jpg", 28, 16)
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60
    # 16-bit inputs scaled, not clipped: half of 65535 -> about 128.
    assert all(abs(c - 128) <= 1 for c in rgb("sixteen_gray.png", 10, 10))
    assert all(abs(c - 127) <= 1 for c in rgb("sixteen_rgb.png", 10, 10))
    assert rgb("gray.png", 10, 10) == (90, 90, 90)
    # CMYK (0,255,255,0) is red.
    r, g, b = rgb("cmyk.jpg", 10, 10)
    assert r > 200 and g < 60 and b < 60


def test_workers_give_the_same_bytes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_folder(src, bad_inputs())
    for workers in (1, 2):
        prepare_dataset(src, tmp_path / f"w{workers}", options(), workers=workers, progress=False, log=lambda m: None)
    with shared_env(tmp_path / "w1").begin() as t1, shared_env(tmp_path / "w2").begin() as t2:
        one, two = dict(t1.cursor()), dict(t2.cursor())
    assert len(one) > 30 and one == two


def test_upscale_small_and_pad(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "tiny.png").write_bytes(_save(_gradient(16, 16), "PNG"))
    (src / "wide.png").write_bytes(_save(Image.new("RGB", (64, 32), (255, 0, 0)), "PNG"))
    report = prepare_dataset(
        src,
        tmp_path / "out",
        options(upscale_small=True, square="pad", resize_filter="box"),
        progress=False,
        log=lambda m: None,
    )
    assert report.kept == 2 and report.skipped == []
    meta = read_meta(tmp_path / "out")
    assert meta["square"] == "pad" and meta["resize_filter"] == "box" and meta["conversions"]["upscaled"] == 1
    ds = PreparedDataset(tmp_path / "out", SIZE, records=True)
    wide = next(ds[i]["image"] for i in range(2) if ds.record(i)["source"] == "wide.png")
    # padded with the green background above and below the red band
    assert wide[:, 0, 16].tolist() == [-1.0, 1.0, -1.0] and wide[:, 16, 16].tolist() == [1.0, -1.0, -1.0]


def test_zip_with_repeated_member_names_and_sizes(tmp_path: Path) -> None:
    zpath = tmp_path / "images.zip"
    with zipfile.ZipFile(zpath, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("faces/", b"")
        zf.writestr("faces/x.png", _save(_gradient(48, 48, 1), "PNG"))
        zf.writestr("faces/x.png", _save(_gradient(48, 48, 2), "PNG"))  # same name, other content
        zf.writestr("faces/bad.jpg", b"\xff\xd8\xff garbage")
        zf.writestr("readme.md", b"# hi")
    out = tmp_path / "out"
    report = prepare_dataset(zpath, out, options(sizes=(16, 32)), progress=False, log=lambda m: None)
    assert report.kept == 2
    assert {s["source"]: s["reason"] for s in report.skipped} == {
        "faces/bad.jpg": "not-an-image",
        "readme.md": "not-an-image",
    }
    meta = read_meta(out)
    assert meta["sizes"] == [16, 32] and meta["source"]["type"] == "zip"
    ds16, ds32 = PreparedDataset(out, 16, records=True), PreparedDataset(out, 32, records=True)
    assert [ds16.record(i)["source"] for i in range(2)] == ["faces/x.png", "faces/x.png#2"]
    assert ds16[0]["image"].shape == (3, 16, 16) and ds32[1]["image"].shape == (3, 32, 32)
    assert not torch.equal(ds32[0]["image"], ds32[1]["image"])


def test_test_split_count_fraction_and_seed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(20):
        (src / f"{i:02d}.png").write_bytes(_save(_gradient(32, 32, i), "PNG"))
    assert parse_test_split("5") == 5 and parse_test_split("0.25") == 0.25 and parse_test_split("10%") == 0.1
    with pytest.raises(ValueError, match="fraction"):
        parse_test_split("1.5")
    r1 = prepare_dataset(src, tmp_path / "a", options(), test=0.25, seed=3, progress=False, log=lambda m: None)
    r2 = prepare_dataset(src, tmp_path / "b", options(), test=5, seed=3, progress=False, log=lambda m: None)
    prepare_dataset(src, tmp_path / "c", options(), test=5, seed=4, progress=False, log=lambda m: None)
    assert r1.splits == r2.splits == {"train": 15, "test": 5}
    ids = [PreparedDataset(tmp_path / d, split="test").ids.tolist() for d in "abc"]
    assert ids[0] == ids[1] != ids[2]
    train = PreparedDataset(tmp_path / "a", split="train").ids.tolist()
    assert sorted(train + ids[0]) == list(range(20))
    with pytest.raises(DatasetError, match="only 20 images"):
        prepare_dataset(src, tmp_path / "d", options(), test=25, progress=False, log=lambda m: None)
    assert not (tmp_path / "d").exists() and not (tmp_path / "d.partial").exists()


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(_save(_gradient(32, 32), "PNG"))
    prepare_dataset(src, tmp_path / "out", options(), progress=False, log=lambda m: None)
    with pytest.raises(DatasetError, match="already exists"):
        prepare_dataset(src, tmp_path / "out", options(), progress=False, log=lambda m: None)
    (src / "b.png").write_bytes(_save(_gradient(32, 32, 1), "PNG"))
    prepare_dataset(src, tmp_path / "out", options(), overwrite=True, progress=False, log=lambda m: None)
    assert read_meta(tmp_path / "out")["count"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["CARD.md", "data.mdb"]
    # --overwrite never deletes a folder that is not one of our datasets (here: the source itself)
    with pytest.raises(DatasetError, match="refusing to replace"):
        prepare_dataset(src, src, options(), overwrite=True, progress=False, log=lambda m: None)
    assert sorted(p.name for p in src.iterdir()) == ["a.png", "b.png"]
    # output inside the source folder is not read back as input
    report = prepare_dataset(src, src / "inner", options(), progress=False, log=lambda m: None)
    assert report.kept == 2
    report = prepare_dataset(src, src / "inner", options(), overwrite=True, progress=False, log=lambda m: None)
    assert report.kept == 2 and report.skipped == []


def test_cli_prepare_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    write_folder(src, {k: v for k, v in bad_inputs().items() if k in ("rgb.jpg", "tiny.png", "notes.txt")})
    out = tmp_path / "out"
    rc = main(["prepare", str(src), str(out), "--size", "16,32", "--filter", "box", "--no-progress", "--test", "0"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "1 images" in printed and "too-small 1" in printed and "not-an-image 1" in printed
    rc = main(["datasets", "info", str(out), "--json"])
    import json

    info = json.loads(capsys.readouterr().out)
    assert info["count"] == 1 and info["sizes"] == [16, 32] and info["resize_filter"] == "box"
    assert main(["datasets", "info", str(out)]) == 0
    assert "resize filter: box" in capsys.readouterr().out
    assert main(["prepare", str(tmp_path / "missing"), str(tmp_path / "o2"), "--size", "32"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["prepare", str(src), str(tmp_path / "o3"), "--size", "x"]) == 2
    assert main(["prepare", str(src), str(tmp_path / "o4"), "--size", "32", "--background", "nope"]) == 2
    assert "not a colour" in capsys.readouterr().err


def test_interrupted_prepare_leaves_nothing_valid(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    base = _save(_gradient(256, 256, 7), "JPEG", quality=95)
    n = 1000
    for i in range(n):  # distinct files: JPEG decoders ignore bytes after the end marker
        (src / f"{i:04d}.jpg").write_bytes(base + i.to_bytes(4, "big"))
    out = tmp_path / "out"
    partial = tmp_path / "out.partial"
    proc = subprocess.Popen(
        [sys.executable, "-m", "stylemapgan", "prepare", str(src), str(out), "--size", "64"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    progress = [0]

    def watch() -> None:  # follow the tqdm bar on stderr: "prepare:  31%|... | 310/1000 [...]"
        assert proc.stderr is not None
        for chunk in iter(lambda: proc.stderr.read1(4096), b""):
            counts = re.findall(rb"(\d+)/%d" % n, chunk)
            if counts:
                progress[0] = int(counts[-1])

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        deadline = time.monotonic() + 120
        while progress[0] < 300:  # past two commits (every 128 images), well before the end
            assert proc.poll() is None, "prepare ended before it was killed"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    watcher.join(timeout=5)
    assert progress[0] < n
    assert not out.exists() and partial.exists()
    with shared_env(partial).begin() as txn:
        assert txn.get(image_key(64, 0)) is not None  # it really was killed mid-write
    for path in (partial, out):
        with pytest.raises((DatasetError, FileNotFoundError)):
            read_meta(path)
        with pytest.raises((DatasetError, FileNotFoundError)):
            open_dataset(path)
    # Re-running rebuilds from scratch.
    messages: list[str] = []
    report = prepare_dataset(src, out, options(sizes=(64,)), progress=False, log=messages.append)
    assert report.kept == n and any("rebuilding from scratch" in m for m in messages)
    assert not partial.exists() and read_meta(out)["count"] == n


def _official_lmdb(path: Path, images: list[Image.Image], sizes: tuple[int, ...]) -> dict[tuple[int, int], bytes]:
    """Write the official StyleMapGAN / rosinality layout: '{size}-{index:05d}' -> bytes, 'length'."""
    written = {}
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, im in enumerate(images):
            for size in sizes:
                fmt = "PNG" if i % 2 == 0 else "JPEG"
                data = _save(im.resize((size, size), Image.Resampling.LANCZOS), fmt, quality=95)
                txn.put(f"{size}-{str(i).zfill(5)}".encode(), data)
                written[(size, i)] = data
        txn.put(b"length", str(len(images)).encode("utf-8"))
    env.close()
    return written


def _decode(data: bytes) -> torch.Tensor:
    arr = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 127.5 - 1


def test_official_lmdb_reads_back_identically(tmp_path: Path) -> None:
    path = tmp_path / "official"
    images = [_gradient(64, 64, i) for i in range(6)]
    written = _official_lmdb(path, images, (16, 32))
    ds = OfficialLMDBDataset(path, 32)
    assert len(ds) == 6 and ds.size == 32
    for i in range(6):
        assert torch.equal(ds[i], _decode(written[(32, i)]))
    assert OfficialLMDBDataset(path).size == 32  # default: the largest stored
    ds16 = open_dataset(path, 16)
    assert isinstance(ds16, OfficialLMDBDataset) and torch.equal(ds16[3], _decode(written[(16, 3)]))
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    batches = torch.cat(list(loader))
    assert torch.equal(batches, torch.stack([ds[i] for i in range(6)]))
    with pytest.raises(DatasetError, match="no 64px"):
        OfficialLMDBDataset(path, 64)
    with pytest.raises(DatasetError, match="no 'test' split"):
        open_dataset(path, 32, "test")
    assert main(["datasets", "info", str(path)]) == 0

    # prepare from the official layout: same size -> the very same pixels, now with a card and splits
    out = tmp_path / "prepared"
    report = prepare_dataset(path, out, options(sizes=(32,)), test=2, progress=False, log=lambda m: None)
    assert report.kept == 6
    meta = read_meta(out)
    assert meta["source"]["type"] == "official-lmdb" and meta["source"]["source_size"] == 32
    prepared = PreparedDataset(out, 32, "all")
    for i in range(6):
        assert torch.equal(prepared[i], _decode(written[(32, i)]))
