"""Hostile and careless inputs (issue 19), each driven through the real command line: exit code 2, one stderr
line naming the file or flag, no traceback, nothing left behind, and bounded memory for the inputs that used to
exhaust it (crafted checkpoints, a zip member declaring gigabytes, --size 100000). The library side: crafted
checkpoints raise CheckpointError, configs are bounded, a cancelled server job never runs, failed runs leave no
run directory, stale temporaries are cleaned, bench keeps to its memory budget.

`scripts/probes.sh` runs the heaviest probes (a real 2 GB zip member) under /usr/bin/time -v.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import sys
import threading
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylemapgan.checkpoint import CheckpointError, fresh_checkpoint, load_checkpoint, save_checkpoint
from stylemapgan.checkpoint.format import checkpoint_to_bytes
from stylemapgan.config import LIMITS, PRESETS, ConfigError, ModelConfig, get_preset
from stylemapgan.semantic.config import SEMANTIC_PRESETS, SemanticConfig

TINY = get_preset("tiny").model
SEMANTIC_TINY = SEMANTIC_PRESETS["semantic-tiny"].model
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
MAX_RSS_KB = 1 << 20  # 1 GiB: what a refused input may cost at most
# Runs a command and reports its peak RSS (KiB) on the last stderr line: this small parent has no other
# children, so RUSAGE_CHILDREN is the command's own.
RSS_WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print(f'MAXRSS {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', file=sys.stderr); "
               "sys.exit(r.returncode)")


def run_cli(*args: str | Path, cwd: Path | None = None) -> tuple[int, list[str], int]:
    """(exit code, stderr lines, peak RSS in KiB) of `python -m stylemapgan ARGS`."""
    proc = subprocess.run([sys.executable, "-c", RSS_WRAPPER, sys.executable, "-m", "stylemapgan", *map(str, args)],
                          capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300)
    lines = proc.stderr.strip().splitlines()
    rss = int(lines.pop().split()[1])
    return proc.returncode, lines, rss


def one_line_error(*args: str | Path, cwd: Path | None = None) -> tuple[str, int]:
    code, lines, rss = run_cli(*args, cwd=cwd)
    text = "\n".join(lines)
    assert code == 2, (code, text)
    assert len(lines) == 1 and "Traceback" not in text, text
    assert lines[0].startswith("stylemapgan "), text
    return lines[0], rss


# ---- crafted inputs ---------------------------------------------------------------------------------------


def _split(data: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _join(header: object, body: bytes = b"") -> bytes:
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return len(raw).to_bytes(8, "little") + raw + body


def crafted_checkpoints(root: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, words its error must contain): every crafted checkpoint the issue lists, and a few more."""
    header, body = _split(checkpoint_to_bytes(fresh_checkpoint(TINY, 0, "probe")))
    cases: dict[str, tuple[bytes, str]] = {}

    def meta(**changes: str) -> bytes:
        h = json.loads(json.dumps(header))
        h["__metadata__"].update(changes)
        return _join(h, body)

    def config(**changes: object) -> bytes:
        return meta(config=json.dumps({**json.loads(header["__metadata__"]["config"]), **changes}))

    cases["mapping_layers_1e6"] = (config(mapping_layers=10**6), "mapping_layers")
    cases["channel_base_81920"] = (config(channel_base=81920), "channel_base")
    cases["channel_base_2e40"] = (config(channel_base=2**40), "channel_base")
    cases["latent_channels_1e6"] = (config(latent_channels=10**6), "latent_channels")
    cases["latent_channels_64.5"] = (config(latent_channels=64.5), "latent_channels")
    cases["config_list"] = (meta(config="[1, 2]"), "JSON object")
    cases["paper_config_tiny_weights"] = (config(**PRESETS["paper-256"].model.to_dict()), "does not match")
    cases["provenance_list"] = (meta(provenance="[1, 2]"), "provenance")
    cases["networks_nested"] = (meta(networks='[["g_ema"]]'), "networks")
    cases["extra_ref_list"] = (meta(extra='{"__dict__": {"str:m": {"__tensor__": [1]}}}'), "missing tensor")
    cases["training_list_node"] = (meta(training='{"__dict__": {"str:a": [1, 2]}}'), "list")
    cases["deep_metadata"] = (meta(training="[" * 50_000 + "]" * 50_000), "nested too deeply")
    tensor_list = json.loads(json.dumps(header))
    tensor_list[next(k for k in tensor_list if k != "__metadata__")] = [1, 2, 3]
    cases["tensor_entry_list"] = (_join(tensor_list, body), "tensor data")
    cases["header_array"] = (_join([1, 2]), "not an object")
    cases["header_deep"] = (_join(b"[" * 50_000 + b"]" * 50_000), "nested too deeply")
    semantic_header, semantic_body = _split(checkpoint_to_bytes(fresh_checkpoint(SEMANTIC_TINY, 0, "probe")))
    for name, change in {"semantic_n_mlp_1e6": {"n_mlp": 10**6}, "semantic_local_channel_64.5": {"local_channel": 64.5},
                         "semantic_seg_dim_1e4": {"seg_dim": 10**4}}.items():
        h = json.loads(json.dumps(semantic_header))
        h["__metadata__"]["config"] = json.dumps({**json.loads(h["__metadata__"]["config"]), **change})
        cases[name] = (_join(h, semantic_body), next(iter(change)))
    files = {name: (root / f"{name}.safetensors", words) for name, (_, words) in cases.items()}
    for name, (data, _) in cases.items():
        files[name][0].write_bytes(data)
    for dtype in ("int64", "float16", "bool"):
        ckpt = fresh_checkpoint(TINY, 0, "probe")
        ckpt.networks = {n: {k: v.to(getattr(torch, dtype)) for k, v in s.items()} for n, s in ckpt.networks.items()}
        files[f"weights_{dtype}"] = (root / f"weights_{dtype}.safetensors", f"{dtype}, expected float32")
        save_checkpoint(files[f"weights_{dtype}"][0], ckpt)
    ckpt = fresh_checkpoint(TINY, 0, "probe")
    ckpt.networks["g_ema"]["synthesis.const"][0, 0, 0, 0] = float("nan")
    files["weights_nan"] = (root / "weights_nan.safetensors", "NaN")
    save_checkpoint(files["weights_nan"][0], ckpt)
    ckpt = fresh_checkpoint(TINY, 0, "probe")
    ckpt.extra["mean_stylemap"] = torch.full((1, *TINY.stylemap_shape), float("inf"))
    files["mean_inf"] = (root / "mean_inf.safetensors", "mean_stylemap")
    save_checkpoint(files["mean_inf"][0], ckpt)
    return files


class _Pickled:
    def __reduce__(self) -> tuple:
        return (os.system, ("true",))


def bomb_png(path: Path, side: int) -> None:
    """A PNG whose header says side x side pixels (the data is a few rows): Pillow's bomb guard reads the header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\0" * (side * 3 + 1) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def zip_declaring(path: Path, member: str, declared: int, images: dict[str, bytes]) -> None:
    """A zip with small images and one member whose directory entry declares `declared` bytes (its data is 1 KiB
    of zeros): the declared size is what a reader can check before reading."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in images.items():
            zf.writestr(name, data)
        zf.writestr(member, b"\0" * 1024)
    data = bytearray(path.read_bytes())
    central = data.rfind(b"PK\x01\x02")  # the last central directory entry is `member`'s
    assert data[central + 46 : central + 46 + len(member)] == member.encode()
    struct.pack_into("<I", data, central + 24, declared)  # uncompressed size in the central directory
    path.write_bytes(bytes(data))


def png_bytes(seed: int, side: int = 24) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("robust")
    save_checkpoint(root / "tiny.safetensors", fresh_checkpoint(TINY, 3, "test"))
    (root / "crafted").mkdir()
    crafted_checkpoints(root / "crafted")
    torch.save({"g_ema": {}, "train_args": _Pickled()}, root / "pickled.pt")
    for i in range(3):
        (root / f"img{i}.png").write_bytes(png_bytes(i))
    bomb_png(root / "bomb.png", 20000)
    zip_declaring(root / "declared2g.zip", "huge.bmp", 2**31, {"a.png": png_bytes(5), "b.png": png_bytes(6)})
    (root / "afile").write_text("a file where a folder is expected")
    (root / "adir").mkdir()  # a folder where a file is expected
    (root / "card.md").mkdir()  # a folder where `release` writes the model card
    data = root / "data"
    data.mkdir()
    for i in range(6):
        (data / f"{i}.png").write_bytes(png_bytes(10 + i, 20))
    code, lines, _ = run_cli("prepare", data, root / "ds", "--size", "16", "--test", "2", "--no-progress")
    assert code == 0, lines
    return root


# ---- the table: one bad input per row, through the CLI -----------------------------------------------------

CKPT_ARGS: dict[str, Callable[[Path], list[str | Path]]] = {
    "info": lambda ckpt: ["info", ckpt],
    "generate": lambda ckpt: ["generate", "--ckpt", ckpt, "--seeds", "0", "--outdir", "OUT"],
}
# crafted checkpoints through the CLI (all of them go through the library loader below)
CLI_CRAFTED = ["mapping_layers_1e6", "channel_base_81920", "paper_config_tiny_weights", "header_deep", "weights_nan"]


@pytest.mark.parametrize("name", CLI_CRAFTED)
def test_crafted_checkpoints_are_refused_in_one_line_and_little_memory(work: Path, tmp_path: Path, name: str) -> None:
    path = work / "crafted" / f"{name}.safetensors"
    for command, build in CKPT_ARGS.items():
        if command == "info" and name != "mapping_layers_1e6":
            continue  # info and generate share the loader: one command per file keeps the table quick
        args = [tmp_path / "out" if a == "OUT" else a for a in build(path)]
        line, rss = one_line_error(*args)
        assert str(path) in line, line
        assert rss < MAX_RSS_KB, f"{name} via {command}: peak RSS {rss / 1024:.0f} MB"
        assert not (tmp_path / "out").exists()


def _flag_cases(work: Path) -> dict[str, tuple[list[str | Path], str]]:
    ckpt, img0, img1 = work / "tiny.safetensors", work / "img0.png", work / "img1.png"
    edit = ["edit", "--ckpt", ckpt, "--source", img0, "--reference", img1, "--mask", "0,0,8,8", "--outdir", "OUT"]
    gen = ["generate", "--ckpt", ckpt, "--outdir", "OUT"]
    train = ["train", "--data", work / "ds", "--preset", "tiny", "--outdir", "OUT"]
    return {
        "seeds_too_big": ([*gen, "--seeds", "99999999999999999999"], "--seeds"),
        "seeds_too_many": ([*gen, "--seeds", "0-999999999"], "--seeds"),
        "trunc_nan": ([*gen, "--seeds", "0-3", "--trunc", "nan"], "--trunc"),
        "frames_huge": ([*edit, "--frames", "100000"], "--frames"),
        "frames_zero": ([*edit, "--frames", "0"], "--frames"),
        "feather_nan": ([*edit, "--feather", "nan"], "--feather"),
        "feather_negative": ([*edit, "--feather=-5"], "--feather"),
        "batch_huge": ([*edit, "--batch", "100000"], "--batch"),
        "source_bomb": (["edit", "--ckpt", ckpt, "--source", work / "bomb.png", "--reference", img1, "--mask",
                         "0,0,8,8", "--outdir", "OUT"], "bomb.png"),
        "pickled_checkpoint": (["generate", "--ckpt", work / "pickled.pt", "--seeds", "0", "--outdir", "OUT"],
                               "pickled.pt"),
        "prepare_size_huge": (["prepare", work / "declared2g.zip", "OUT", "--size", "100000", "--upscale-small"],
                              "--size"),
        "prepare_workers_negative": (["prepare", work / "declared2g.zip", "OUT", "--size", "16", "--workers", "-3"],
                                     "--workers"),
        "train_iters_negative": ([*train, "--iters", "-5"], "--iters"),
        "train_batch_over_dataset": ([*train, "--iters", "2", "--batch", "100"], "--batch"),
        "train_lr_nan": ([*train, "--iters", "2", "--lr", "nan"], "--lr"),
        "generate_outdir_is_file": ([*gen[:-1], work / "afile", "--seeds", "0"], "afile"),
        "generate_parent_is_file": ([*gen[:-1], work / "afile" / "sub", "--seeds", "0"], "afile"),
        "edit_parent_is_file": ([*edit[:-1], work / "afile" / "x" / "y"], "afile"),
        "train_outdir_is_file": ([*train[:-1], work / "afile", "--iters", "2"], "afile"),
        "train_parent_is_file": ([*train[:-1], work / "afile" / "run", "--iters", "2"], "afile"),
        "prepare_parent_is_file": (["prepare", work / "declared2g.zip", work / "afile" / "ds", "--size", "16"],
                                   "afile"),
        # every other output: a folder where a file is expected, a parent that is a file (issue 19, outputs)
        "init_out_is_folder": (["init", "--preset", "tiny", "--out", work / "adir"], "adir: is a folder, expected a "
                               "file (--out)"),
        "convert_parent_is_file": (["convert", ckpt, work / "afile" / "c.safetensors"], "afile is a file (--out)"),
        "release_out_is_folder": (["release", ckpt, "--out", work / "adir", "--name", "x"], "adir: is a folder"),
        "release_parent_is_file": (["release", ckpt, "--out", work / "afile" / "r.safetensors", "--name", "x"],
                                   "afile is a file (--out)"),
        "release_card_is_folder": (["release", ckpt, "--out", work / "card.safetensors", "--name", "x"],
                                   "card.md: is a folder, expected a file (--out)"),
        "directions_out_is_folder": (["directions", "--ckpt", ckpt, "--pca", "1", "--samples", "4", "--out",
                                      work / "adir"], "adir: is a folder, expected a file (--out)"),
        "directions_parent_is_file": (["directions", "--ckpt", ckpt, "--pca", "1", "--samples", "4", "--out",
                                       work / "afile" / "d.safetensors"], "afile is a file (--out)"),
        "export_onnx_outdir_is_file": (["export-onnx", "--ckpt", ckpt, "--outdir", work / "afile"],
                                       "afile: exists and is not a folder (--outdir)"),
        "export_onnx_parent_is_file": (["export-onnx", "--ckpt", ckpt, "--outdir", work / "afile" / "onnx"],
                                       "afile is a file (--outdir)"),
        "eval_parent_is_file": (["eval", "--ckpt", ckpt, "--data", work / "ds", "--out",
                                 work / "afile" / "report.json"], "afile is a file (--out)"),
        "bench_out_is_folder": (["bench", "--config", "tiny", "--out", work / "adir"], "adir: is a folder"),
        "datasets_build_out_is_file": (["datasets", "build", "emoji", work / "afile"], "afile: exists and is not a "
                                       "folder (--outdir)"),
        "interpolate_video_is_folder": (["interpolate", img0, img1, "--ckpt", ckpt, "--outdir", "OUT", "--video",
                                         work / "adir"], "adir: is a folder, expected a file (--video)"),
        "clusters_show_outdir_is_file": (["clusters", "show", "--ckpt", ckpt, "--outdir", work / "afile"],
                                         "afile: exists and is not a folder (--outdir)"),
        "clusters_fit_parent_is_file": (["clusters", "fit", "--ckpt", ckpt, "--k", "2", "--out",
                                         work / "afile" / "c.safetensors"], "afile is a file (--out)"),
        "interpolate_video_parent_is_file": (["interpolate", img0, img1, "--ckpt", ckpt, "--outdir", "OUT",
                                              "--video", work / "afile" / "v.gif"], "afile is a file (--video)"),
    }


FLAG_CASES = list(_flag_cases(Path("x")))


@pytest.mark.parametrize("case", FLAG_CASES)
def test_bad_options_and_outputs_give_one_line_naming_the_flag_or_file(work: Path, tmp_path: Path, case: str) -> None:
    args, words = _flag_cases(work)[case]
    out = tmp_path / "out"
    line, rss = one_line_error(*[out if a == "OUT" else a for a in args])
    assert words in line, line
    assert "weights_only" not in line
    assert not out.exists() and not Path(f"{out}.partial").exists(), f"{case} left {out} behind"
    assert (work / "afile").is_file()
    assert not any((work / "adir").iterdir()) and not any((work / "card.md").iterdir())
    assert not (work / "card.safetensors").exists()
    if case == "prepare_size_huge":
        assert rss < MAX_RSS_KB


def test_unwritable_output_folders_give_one_line(work: Path) -> None:
    """A folder in a file system that refuses new entries (sysfs, even for root): every command, one line."""
    target = Path("/sys/stylemapgan_probe")
    try:
        target.mkdir()
    except OSError:
        pass
    else:  # a writable /sys: nothing to probe here
        target.rmdir()
        return
    ckpt = work / "tiny.safetensors"
    for args in (["generate", "--ckpt", ckpt, "--seeds", "0", "--outdir", target],
                 ["edit", "--ckpt", ckpt, "--source", work / "img0.png", "--reference", work / "img1.png",
                  "--mask", "0,0,8,8", "--outdir", target],
                 ["prepare", work / "declared2g.zip", target, "--size", "16"],
                 ["train", "--data", work / "ds", "--preset", "tiny", "--iters", "2", "--outdir", target],
                 ["export-onnx", "--ckpt", ckpt, "--outdir", target],
                 ["release", ckpt, "--out", target / "r.safetensors", "--name", "x"],
                 ["init", "--preset", "tiny", "--out", target / "i.safetensors"],
                 ["directions", "--ckpt", ckpt, "--pca", "1", "--samples", "4", "--out", target / "d.safetensors"],
                 ["eval", "--ckpt", ckpt, "--data", work / "ds", "--out", target / "report.json"],
                 ["bench", "--config", "tiny", "--out", target / "bench.json"]):
        line, _ = one_line_error(*args)
        assert str(target) in line and "cannot write into" in line and "(--out" in line, line


def test_a_failed_command_removes_the_outputs_it_created(work: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A command that fails after writing part of its output (here `release`, its model written, its card not:
    a full disk) removes what it created: the file, and the folders it made for it; in an existing folder, what
    was there stays."""
    import stylemapgan.release
    from stylemapgan.cli import main
    from stylemapgan.utils.files import atomic_write_bytes

    def half_release(source: object, out: str, **kwargs: object) -> None:
        atomic_write_bytes(out, b"a model")
        raise OSError(28, "No space left on device", str(Path(out).with_suffix(".md")))

    monkeypatch.setattr(stylemapgan.release, "release_model", half_release)
    ckpt = work / "tiny.safetensors"
    assert main(["release", str(ckpt), "--out", str(tmp_path / "new" / "sub" / "m.safetensors"), "--name", "x"]) == 2
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "mine.txt").write_text("the user's")
    assert main(["release", str(ckpt), "--out", str(tmp_path / "old" / "m.safetensors"), "--name", "x"]) == 2
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["mine.txt"]


# ---- memory: inputs checked by their declared size ----------------------------------------------------------


def test_a_zip_member_declaring_gigabytes_is_skipped_unread(work: Path, tmp_path: Path) -> None:
    code, lines, rss = run_cli("prepare", work / "declared2g.zip", tmp_path / "ds", "--size", "16", "--no-progress")
    assert code == 0, lines
    assert rss < MAX_RSS_KB
    from stylemapgan.data import read_meta

    meta = read_meta(tmp_path / "ds")
    assert meta["count"] == 2
    assert [(s["source"], s["reason"]) for s in meta["skipped"]["items"]] == [("huge.bmp", "too-large")]
    assert "2147483648 bytes declared" in meta["skipped"]["items"][0]["detail"]
    assert "not read" in meta["skipped"]["items"][0]["detail"]


def test_prepare_lists_the_links_fifos_and_devices_it_ignored(work: Path, tmp_path: Path) -> None:
    from stylemapgan.data import ImageOptions, prepare_dataset

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.png").write_bytes(png_bytes(1))
    (src / "sub" / "b.png").write_bytes(png_bytes(2))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "c.png").write_bytes(png_bytes(3))
    os.symlink(tmp_path / "elsewhere", src / "linked_dir")
    os.symlink(tmp_path / "missing.png", src / "broken.png")
    os.symlink(tmp_path / "elsewhere" / "c.png", src / "linked.png")  # a link to a file is read as the file
    os.mkfifo(src / "pipe")
    report = prepare_dataset(src, tmp_path / "ds", ImageOptions(sizes=(16,)), progress=False)
    assert report.kept == 3
    assert {s["source"]: (s["reason"], s["detail"]) for s in report.skipped} == {
        "broken.png": ("not-a-file", "a broken link"),
        "linked_dir": ("not-a-file", "a link to a folder, not followed"),
        "pipe": ("not-a-file", "a FIFO"),
    }
    assert "pipe: not-a-file (a FIFO)" in report.summary()


# ---- the library: crafted checkpoints, bounded configs -------------------------------------------------------


def test_every_crafted_checkpoint_raises_checkpoint_error(work: Path) -> None:
    files = crafted_checkpoints(work / "crafted")
    assert len(files) >= 20
    for name, (path, words) in files.items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message, (name, message)
        assert words in message, (name, message)


def test_a_pickled_checkpoint_is_refused_without_suggesting_the_unsafe_path(work: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(work / "pickled.pt")
    message = str(info.value)
    assert "weights_only" not in message and "will likely succeed" not in message, message
    assert "system" in message and "could run code" in message, message


@pytest.mark.parametrize(
    ("field", "value"),
    [("mapping_layers", 10**6), ("mapping_layers", 0), ("channel_base", 81920), ("channel_base", 2**40),
     ("latent_channels", 10**6), ("latent_channels", 64.5), ("latent_channels", True), ("channel_multiplier", 8),
     ("channel_max", 10**9), ("encoder_channel_base", 10**6), ("size", 2**20), ("lr_mul", float("nan")),
     ("lr_mul", float("inf")), ("small_generator", "yes")],
)
def test_config_bounds_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**{field: value})  # type: ignore[arg-type]


def test_the_largest_configs_inside_the_bounds_are_refused_by_their_render_estimate() -> None:
    biggest = {k: hi for k, (_, hi) in LIMITS.items() if k not in ("channel_max", "latent_spatial_size")}
    with pytest.raises(ConfigError, match="GiB"):
        ModelConfig(**biggest, latent_spatial_size=32)
    for preset in PRESETS.values():  # every preset, the official 1024 px models included, is well inside
        assert preset.model.render_bytes(1) < (4 << 30)


def test_semantic_configs_are_bounded_and_their_largest_refused_by_the_parameter_budget() -> None:
    """SemanticConfig bounds its own fields (typed, as ModelConfig); a checkpoint of the largest config inside those
    bounds (about 1.1G parameters) is refused by the checkpoint's parameter budget before anything is allocated."""
    from stylemapgan.checkpoint.build import check_state_dicts

    for field, value in (("n_mlp", 10**6), ("local_channel", 64.5), ("style_dim", True), ("seg_dim", 10**4)):
        with pytest.raises(ConfigError, match=field):
            SemanticConfig(**{field: value})  # type: ignore[arg-type]
    largest = SemanticConfig(size=1024, seg_dim=64, style_dim=1024, n_mlp=16, local_layers=32, local_channel=256,
                             coarse_channel=1024, coarse_size=128, min_feat_size=64, channel_base=32768,
                             channel_multiplier=4)
    with pytest.raises(CheckpointError, match=r"M parameters .* more than the 600M"):
        check_state_dicts(largest, {"g_ema": {}}, "largest.safetensors")


def test_render_estimate_is_within_a_factor_of_two_of_the_measured_peak() -> None:
    from stylemapgan.networks import Generator
    from stylemapgan.perf.bench import peak_memory_mb

    config = PRESETS["cpu-32"].model
    torch.manual_seed(0)
    generator = Generator(config).eval()
    stylemaps = torch.randn(8, *config.stylemap_shape)
    with torch.no_grad():
        measured = peak_memory_mb(lambda: generator.decode(stylemaps), torch.device("cpu")) * 2**20
    estimate = config.render_bytes(8)
    assert measured / 2 < estimate < measured * 2, (estimate, measured)


# ---- no wrong output with exit 0 ------------------------------------------------------------------------------


def test_one_frame_is_the_full_strength_edit(work: Path, tmp_path: Path) -> None:
    ckpt = work / "tiny.safetensors"
    base = ["edit", "--ckpt", ckpt, "--source", work / "img0.png", "--reference", work / "img1.png",
            "--mask", "0,0,8,16", "--quiet"]
    for extra, out in ((["--frames", "1"], "frames1"), (["--alpha", "1"], "alpha1"), (["--alpha", "0"], "alpha0")):
        code, lines, _ = run_cli(*base, *extra, "--outdir", tmp_path / out)
        assert code == 0, lines

    def pixels(folder: str) -> np.ndarray:
        return np.asarray(Image.open(tmp_path / folder / "img0_edit.png"))

    assert np.array_equal(pixels("frames1"), pixels("alpha1"))
    assert not np.array_equal(pixels("frames1"), pixels("alpha0"))


def test_edits_that_paste_nothing_warn_on_stderr_and_in_the_record(work: Path, tmp_path: Path) -> None:
    ckpt = work / "tiny.safetensors"
    code, lines, _ = run_cli("edit", "--ckpt", ckpt, "--source", work / "img0.png", "--reference", work / "img1.png",
                             "--reference", work / "img2.png", "--mask", "0,0,8,8", "--mask", "0,0,8,8",
                             "--shift=100,0", "--shift=0,0", "--quiet", "--outdir", tmp_path / "out")
    assert code == 0, lines
    record = json.loads((tmp_path / "out" / "edit.json").read_text())
    assert record["warnings"] == ["img0: shift 100,0 moves mask 1's region off the 16x16 image: reference 1 pastes "
                                  "nothing"]
    assert lines == [f"warning: {record['warnings'][0]}"]


def test_paste_warnings_name_each_reason() -> None:
    from stylemapgan.editing import Editor, RectangleMask, rectangle_mask

    torch.manual_seed(0)
    ckpt = fresh_checkpoint(TINY, 0, "test")
    from stylemapgan.checkpoint import build_network

    editor = Editor(build_network(ckpt, "g_ema"), build_network(ckpt, "e_ema"))
    full, empty = torch.ones(16, 16), torch.zeros(16, 16)
    corner = rectangle_mask(RectangleMask(0, 0, 4, 4), 16)
    assert editor.paste_warnings([full, corner], [(0, 0), (4, 4)]) == []
    notes = editor.paste_warnings([empty, corner], [(0, 0), (16, 0)])
    assert notes == ["mask 1 is empty (no pixel selected): reference 1 pastes nothing",
                     "shift 16,0 moves mask 2's region off the 16x16 image: reference 2 pastes nothing",
                     "the edit returns the source's reconstruction unchanged"]
    tiny_mask = torch.zeros(16, 16)
    tiny_mask[7, 7] = 0.1
    assert editor.paste_warnings([tiny_mask], mode="w_plus", pool="avg-threshold")[0].startswith(
        "mask 1 is too small to cover any cell after avg-threshold pooling")


# ---- nothing half-written -------------------------------------------------------------------------------------


def test_a_failed_edit_removes_what_it_wrote_and_keeps_what_was_there(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("the user's")
    (out / "img0_edit.png").mkdir()  # the edit's output name taken by a folder: the write fails mid-run
    line, _ = one_line_error("edit", "--ckpt", work / "tiny.safetensors", "--source", work / "img0.png",
                             "--reference", work / "img1.png", "--mask", "0,0,8,8", "--quiet", "--outdir", out)
    assert line.endswith(f"{out / 'img0_edit.png'}: Is a directory"), line  # the output named, not a temporary
    assert sorted(p.name for p in out.iterdir()) == ["img0_edit.png", "mine.txt"]


def test_a_failed_run_leaves_no_run_directory_and_stale_temporaries_are_cleaned(tmp_path: Path) -> None:
    from stylemapgan.training.config import TrainConfig
    from stylemapgan.training.run import TrainingRun, checkpoint_path

    data = torch.rand(8, 3, 16, 16) * 2 - 1
    cfg = TrainConfig(batch=4, iters=2, perceptual="none", num_workers=0, checkpoint_every=1, sample_every=100,
                      val_every=100)
    run_dir = tmp_path / "runs" / "a"
    run = TrainingRun(TINY, cfg, data, run_dir, device="cpu", progress=False)
    assert run_dir.is_dir()

    def broken_step() -> dict[str, float]:
        raise RuntimeError("simulated failure")

    run.trainer.train_step = broken_step  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="simulated"):
        run.run()
    assert not run_dir.exists() and (tmp_path / "runs").is_dir()

    TrainingRun(TINY, cfg, data, run_dir, device="cpu", progress=False).run()
    stale = run_dir / "checkpoints" / f".{checkpoint_path(run_dir, 3).name}.k9x2.tmp"
    stale.write_bytes(b"half a checkpoint")
    TrainingRun(TINY, cfg.replace(iters=3), data, run_dir, device="cpu", progress=False, resume=run_dir).run()
    assert not stale.exists()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir())[-1] == "ckpt-0000003.safetensors"

    run = TrainingRun(TINY, cfg.replace(iters=4), data, run_dir, device="cpu", progress=False, resume=run_dir)
    run.trainer.train_step = broken_step  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        run.run()
    assert run_dir.is_dir(), "a run that has checkpoints is never removed"


# ---- the server's queue: a cancelled job never runs ----------------------------------------------------------


def test_a_job_cancelled_while_queued_never_runs_fifty_times() -> None:
    """The race of issue 19: the request's cancellation must reach the worker's queue before the job ahead of it
    ends. (With `asyncio.wrap_future` the queued job ran in about half of such trials.)"""
    from stylemapgan.serving.engine import InferenceEngine

    ran: list[int] = []
    for trial in range(50):
        engine = InferenceEngine(None, max_pending=2)  # type: ignore[arg-type]  (the jobs do not use the editor)

        async def scenario(trial: int = trial, engine: InferenceEngine = engine) -> None:
            release = threading.Event()
            blocker = asyncio.ensure_future(engine.run(lambda ed: release.wait(10)))
            while engine.pending < 1:
                await asyncio.sleep(0.001)
            queued = asyncio.ensure_future(engine.run(lambda ed: ran.append(trial)))
            while engine.pending < 2:
                await asyncio.sleep(0.001)
            queued.cancel()
            release.set()
            await blocker
            with pytest.raises(asyncio.CancelledError):
                await queued
            assert engine.pending == 0

        try:
            asyncio.run(scenario())
        finally:
            engine.shutdown()
    assert ran == []


# ---- bench within its memory budget -----------------------------------------------------------------------------


def test_bench_keeps_to_its_memory_budget() -> None:
    from stylemapgan.networks import parameter_counts
    from stylemapgan.perf.bench import GB, BenchOptions, OverBudget, bench_config, fit_batch, inference_bytes

    paper = PRESETS["paper-256"].model
    counts = parameter_counts(paper)
    params = counts["generator"] + counts["encoder"]
    assert inference_bytes(paper, 16, params) > 10 * GB  # what the default run used to attempt
    batch = fit_batch(paper, 16, params, 4 * GB)
    assert 1 <= batch < 16 and inference_bytes(paper, batch, params) <= 4 * GB
    assert fit_batch(paper, 16, params, 0.5 * GB) == 0

    peak = {"peak_gflops": 1.0, "conv_gflops": 1.0}
    quick = {"repeats": 1, "paper_repeats": 1, "memory": False, "training": False}
    with pytest.raises(OverBudget, match="memory budget"):
        bench_config("paper-256", BenchOptions(memory_budget_gb=0.5, **quick), peak)
    tiny = PRESETS["tiny"].model
    tiny_params = sum(parameter_counts(tiny)[k] for k in ("generator", "encoder"))
    budget = (inference_bytes(tiny, 2, tiny_params) + 1) / GB  # batch 2 fits, batch 4 does not
    row = bench_config("tiny", BenchOptions(memory_budget_gb=budget, throughput_batch=16, **quick), peak)
    assert row["throughput_batch"] == 2 and "batch 2 instead of 16" in row["throughput_note"]
