"""Self-describing checkpoints: round trips, atomic writes, and one-line errors for bad files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from stylemapgan.checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    build_network,
    fresh_checkpoint,
    load_checkpoint,
    load_editing_model,
    save_checkpoint,
)
from stylemapgan.config import get_preset

TINY = get_preset("tiny").model


def test_round_trip_with_training_state(tmp_path: Path) -> None:
    ckpt = fresh_checkpoint(TINY, seed=3, source="test")
    g = build_network(ckpt, "generator")
    g.requires_grad_(True)
    opt = torch.optim.Adam(g.parameters(), lr=1e-3, betas=(0.0, 0.99))
    g(torch.randn(2, TINY.latent_channels)).square().mean().backward()
    opt.step()
    ckpt.training = {
        "iteration": 17,
        "optimizers": {"g": opt.state_dict()},
        "rng": {"torch": torch.get_rng_state()},
        "history": [1.5, None, "x"],
    }
    ckpt.extra = {"mean_stylemap": torch.randn(1, 8, 4, 4)}
    path = tmp_path / "a.safetensors"
    save_checkpoint(path, ckpt)
    back = load_checkpoint(path)
    assert back.config == TINY
    assert back.provenance["seed"] == 3
    for net in ckpt.networks:
        assert set(back.networks[net]) == set(ckpt.networks[net])
        for key, value in ckpt.networks[net].items():
            assert torch.equal(back.networks[net][key], value)
    assert back.training is not None and back.training["iteration"] == 17
    assert back.training["history"] == [1.5, None, "x"]
    assert torch.equal(back.training["rng"]["torch"], ckpt.training["rng"]["torch"])
    assert torch.equal(back.extra["mean_stylemap"], ckpt.extra["mean_stylemap"])
    restored = torch.optim.Adam(g.parameters(), lr=1e-3)
    restored.load_state_dict(back.training["optimizers"]["g"])
    state = restored.state_dict()
    assert state["param_groups"][0]["betas"] == (0.0, 0.99) or list(state["param_groups"][0]["betas"]) == [0.0, 0.99]
    first = next(iter(opt.state_dict()["state"]))
    assert torch.equal(state["state"][first]["exp_avg"], opt.state_dict()["state"][first]["exp_avg"])


def test_every_tool_rebuilds_from_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, fresh_checkpoint(TINY, seed=0, source="test"))
    model = load_editing_model(path)
    z = torch.randn(1, TINY.latent_channels)
    image = model.generator(z)
    assert image.shape == (1, 3, TINY.size, TINY.size)
    assert model.encoder(image).shape == (1, *TINY.stylemap_shape)


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.bin"
    atomic_write_bytes(path, b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new contents")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.bin"]


def test_killed_writer_never_leaves_a_partial_checkpoint(tmp_path: Path) -> None:
    """A real process killed mid-save leaves either no file or the previous complete one."""
    path = tmp_path / "k.safetensors"
    save_checkpoint(path, fresh_checkpoint(TINY, seed=1, source="first"))
    script = (
        "import os, signal, stylemapgan.checkpoint.io as io\n"
        "from stylemapgan.checkpoint import fresh_checkpoint\n"
        "from stylemapgan.config import get_preset\n"
        "real = os.fsync\n"
        "def die(fd):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "os.fsync = die\n"
        f"io.save_checkpoint({str(path)!r}, fresh_checkpoint(get_preset('tiny').model, 2, 'second'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9
    assert load_checkpoint(path).provenance["source"] == "first"


def test_bad_files_give_one_line_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, fresh_checkpoint(TINY, seed=0, source="test"))
    data = good.read_bytes()
    cases = {
        "truncated.safetensors": data[: len(data) // 2],
        "empty.safetensors": b"",
        "garbage.safetensors": os.urandom(2000),
        "header.safetensors": (100).to_bytes(8, "little") + b"{not json" + b" " * 200,
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    save_file({"x": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    (tmp_path / "pickle.pt").write_bytes(b"\x80\x04garbage")
    for name in [*cases, "foreign.safetensors", "pickle.pt", "missing.safetensors"]:
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(tmp_path / name)
        message = str(info.value)
        assert name in message and "\n" not in message, message
    with pytest.raises(CheckpointError, match="directory"):
        load_checkpoint(tmp_path)


def test_mismatched_weights_are_named(tmp_path: Path) -> None:
    ckpt = fresh_checkpoint(TINY, seed=0, source="test")
    ckpt.networks["g_ema"]["synthesis.const"] = torch.zeros(1, 2, 3, 3)
    del ckpt.networks["e_ema"]["from_rgb.bias"]
    with pytest.raises(CheckpointError, match=r"synthesis\.const has shape"):
        build_network(ckpt, "g_ema")
    with pytest.raises(CheckpointError, match=r"missing from_rgb\.bias"):
        build_network(ckpt, "e_ema")


def test_safetensors_header_starting_with_0x80_is_not_taken_for_a_pickle(tmp_path: Path) -> None:
    """The header length is little-endian: a length of 0x..80 starts the file with the pickle magic byte."""
    from stylemapgan.checkpoint.io import checkpoint_to_bytes

    ckpt = fresh_checkpoint(TINY, seed=0, source="test")
    pad = 0
    while True:  # grow the provenance until the header length's low byte is 0x80
        ckpt.provenance["pad"] = "x" * pad
        data = checkpoint_to_bytes(ckpt)
        if data[0] == 0x80:
            break
        pad += 1
    path = tmp_path / "p.safetensors"
    path.write_bytes(data)
    assert load_checkpoint(path).provenance["pad"] == "x" * pad
