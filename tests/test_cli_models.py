"""The `stylemapgan` entry point: info, init, convert, --help, and error exits, as real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stylemapgan.cli import build_parser


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stylemapgan", *args], capture_output=True, text=True)


def test_info_preset_prints_official_counts() -> None:
    proc = run("info", "--preset", "paper-256")
    assert proc.returncode == 0, proc.stderr
    for figure in ("79.74M", "17.62M", "28.86M"):
        assert figure in proc.stdout
    proc = run("info", "--preset", "paper-1024-small", "--json")
    info = json.loads(proc.stdout)
    assert round(info["parameters"]["generator"] / 1e6, 2) == 21.24
    assert info["config"]["small_generator"] is True


def test_init_then_info(tmp_path: Path) -> None:
    out = tmp_path / "tiny.safetensors"
    assert run("init", "--preset", "tiny", "--seed", "4", str(out)).returncode == 0
    proc = run("info", str(out), "--json")
    info = json.loads(proc.stdout)
    assert info["provenance"]["seed"] == 4
    assert info["config"]["size"] == 16
    assert set(info["networks_in_file"]) == {"g_ema", "e_ema", "generator", "encoder", "discriminator"}
    again = tmp_path / "again.safetensors"
    run("init", "--preset", "tiny", "--seed", "4", str(again))
    from stylemapgan.checkpoint import load_checkpoint

    a, b = load_checkpoint(out), load_checkpoint(again)
    assert all((a.networks["g_ema"][k] == b.networks["g_ema"][k]).all() for k in a.networks["g_ema"])


def test_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    proc = run("info", str(tmp_path / "nope.safetensors"))
    assert proc.returncode == 2
    assert "nope.safetensors" in proc.stderr and proc.stderr.strip().count("\n") == 0


def test_help_everywhere() -> None:
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"info", "init", "convert"} <= set(subcommands)
    for name in subcommands:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([name, "--help"])
        assert exit_info.value.code == 0
