"""One convention per flag across the `stylemapgan` commands (issue 20): help on every option, `--outdir` /
`--out` for outputs, `--no-progress` (hidden old name `--quiet`) and `--threads` wherever they apply, the thread
policy, run directories and bundled names wherever a model is read, and no third-party noise on stderr."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from stylemapgan.checkpoint import fresh_checkpoint, save_checkpoint
from stylemapgan.cli import build_parser, main
from stylemapgan.cli.threads import choose_threads
from stylemapgan.config import PRESETS, get_preset
from stylemapgan.perf.bench import DEFAULT_CONFIGS, SHIPPED

# commands that can run longer than a few seconds: a progress flag and a threads flag each
LONG_RUNNING = {"project", "generate", "edit", "transplant", "interpolate", "mix", "directions", "attribute",
                "train", "train-encoder", "eval", "compare", "bench", "prepare", "datasets build"}
COMPUTING = LONG_RUNNING - {"prepare", "datasets build"} | {"export-onnx", "release", "serve"}
FOLDER_OUTPUT = {"project", "generate", "edit", "transplant", "interpolate", "mix", "attribute", "train",
                 "export-onnx", "prepare", "datasets build", "align", "train-encoder", "compare"}
FILE_OUTPUT = {"directions", "eval", "bench", "init", "convert", "release", "paste"}


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[str, argparse.ArgumentParser, str | None]]:
    """(name, parser, its help line) of every subcommand, nested ones as 'datasets build'."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield " ".join((*path, name)), sub, helps.get(name)
                yield from commands(sub, (*path, name))


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


def test_every_option_of_every_command_has_help() -> None:
    missing = []
    for name, parser, line in commands(build_parser()):
        if not line:
            missing.append(f"{name} (the command itself)")
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if not action.help:  # a hidden alias has argparse.SUPPRESS, which is a help text
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, "options without help: " + ", ".join(missing)


def test_the_walk_sees_every_command() -> None:
    names = {name for name, _, _ in commands(build_parser())}
    assert names >= LONG_RUNNING | COMPUTING | FOLDER_OUTPUT | FILE_OUTPUT
    assert len(names) >= 22  # a walk that found nothing would pass the help test


def test_one_name_per_flag() -> None:
    table = {name: parser for name, parser, _ in commands(build_parser())}
    for name in LONG_RUNNING:
        opts = options(table[name])
        assert opts["--no-progress"].dest == "progress" and opts["--no-progress"].help != argparse.SUPPRESS, name
        assert opts["--quiet"].help == argparse.SUPPRESS, name  # the old name, hidden
    for name in COMPUTING:
        assert "--threads" in options(table[name]), name
    for name in FOLDER_OUTPUT:
        assert "--outdir" in options(table[name]) and "--out" not in options(table[name]), name
    for name in FILE_OUTPUT:
        assert "--out" in options(table[name]) and "--outdir" not in options(table[name]), name
    for name, parser in table.items():  # a visible --quiet or a --json naming a file would be the old mix
        opts = options(parser)
        if "--quiet" in opts:
            assert opts["--quiet"].help == argparse.SUPPRESS, name
        if "--json" in opts and opts["--json"].help != argparse.SUPPRESS:
            assert opts["--json"].nargs == 0, f"{name}: --json prints JSON; a file output is --out"


@pytest.mark.parametrize("flag", ["--no-progress", "--quiet"])
def test_progress_flags_parse_to_the_same_thing(flag: str) -> None:
    parser = build_parser()
    for argv in (["train", "--data", "d", "--outdir", "o"], ["project", "x.png", "--outdir", "o"],
                 ["prepare", "a", "b", "--size", "8"], ["bench"]):
        assert parser.parse_args([*argv, flag]).progress is False, argv
        assert parser.parse_args(argv).progress is True


def test_positional_and_flag_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert main(["init", "--preset", "tiny", str(a)]) == 0
    assert main(["init", "--preset", "tiny", "--out", str(b)]) == 0
    assert a.stat().st_size == b.stat().st_size > 0
    capsys.readouterr()
    assert main(["init", "--preset", "tiny"]) == 2
    assert capsys.readouterr().err.strip() == "stylemapgan init: error: --out: required (the output file)"
    assert main(["init", "--preset", "tiny", str(a), "--out", str(b)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--out: output given twice" in err
    assert main(["convert", str(a), "--out", str(tmp_path / "c.safetensors")]) == 0


# ---- threads ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("requested", "env", "load", "cores", "current", "expected"), [
    (3, {}, 9.0, 2, 2, 3),  # --threads wins
    (None, {"OMP_NUM_THREADS": "2"}, 9.0, 2, 2, None),  # the user's environment is left alone
    (None, {}, 0.2, 2, 2, None),  # a quiet machine: PyTorch's default
    (None, {}, 1.0, 2, 2, 1),  # one core taken
    (None, {}, 1.6, 2, 2, 1),
    (None, {}, 5.0, 2, 2, 1),  # at least 1
    (None, {}, 3.4, 16, 8, None),  # 12.6 free cores: no change
    (None, {}, 10.4, 16, 8, 6),  # 5.6 free: 6
    (None, {}, None, 2, 2, None),  # no load average on this OS
])
def test_thread_policy(requested, env, load, cores, current, expected) -> None:
    choice = choose_threads(requested, env, load, cores, current)
    assert choice.threads == expected
    automatic = requested is None and expected is not None
    assert (choice.note is not None) == automatic
    if automatic:
        assert f"uses {expected} thread" in choice.note and f"instead of {current}" in choice.note
        assert "--threads N" in choice.note and "OMP_NUM_THREADS" in choice.note


@pytest.fixture()
def tiny_ckpt(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, fresh_checkpoint(get_preset("tiny").model, 0, "test"))
    return path


@pytest.fixture()
def restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_busy_machine_threads_at_cli_start(tiny_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str], restore_threads: None) -> None:
    import stylemapgan.cli.threads as threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "load_average", lambda: 50.0)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    torch.set_num_threads(2)
    argv = ["generate", "--ckpt", str(tiny_ckpt), "--seeds", "0", "--outdir", str(tmp_path / "g"), "--no-progress"]
    assert main(argv) == 0  # called from Python: the caller's threads stay
    assert torch.get_num_threads() == 2 and "PyTorch uses" not in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["stylemapgan", *argv])
    assert main() == 0  # the `stylemapgan` process: the tool chooses and says so, once
    assert torch.get_num_threads() == 1
    err = capsys.readouterr().err
    assert err.count("PyTorch uses 1 thread instead of 2") == 1
    # a bad option still fails in one line: the note waits for the work to start
    torch.set_num_threads(2)
    monkeypatch.setattr(sys, "argv", ["stylemapgan", "generate", "--ckpt", str(tiny_ckpt), "--seeds", "x",
                                      "--outdir", str(tmp_path / "h")])
    assert main() == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    # --threads wins, in-process too
    assert main([*argv[:-1], "--threads", "3"]) == 0 and torch.get_num_threads() == 3
    assert main([*argv, "--threads", "0"]) == 2


# ---- models: bundled names and run directories everywhere --------------------------------------------------


def test_info_and_ckpt_take_bundled_names_and_run_directories(tmp_path: Path, tiny_ckpt: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from stylemapgan.models import bundled_models

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for i, seed in ((2, 1), (10, 2)):  # the newest is the one with the highest iteration
        save_checkpoint(run / "checkpoints" / f"ckpt-{i:07d}.safetensors",
                        fresh_checkpoint(get_preset("tiny").model, seed, f"seed {seed}"))
    assert main(["info", str(run), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["source"].endswith("ckpt-0000010.safetensors") and info["provenance"]["seed"] == 2
    assert main(["info", "--ckpt", str(tiny_ckpt), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["provenance"]["seed"] == 0
    assert main(["generate", "--ckpt", str(run), "--seeds", "0", "--outdir", str(tmp_path / "g"),
                 "--no-progress"]) == 0
    record = json.loads((tmp_path / "g" / "generate.json").read_text())
    assert record["model"]["checkpoint"].endswith("ckpt-0000010.safetensors")
    assert main(["info", str(tmp_path)]) == 2  # a folder that is no run: one line
    assert "not a training run" in capsys.readouterr().err
    if bundled_models():
        name = next(iter(bundled_models()))
        assert main(["info", name, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["source"].endswith(f"{name}.safetensors")
        assert main(["info", "--json"]) == 0  # no model named: the default, as everywhere
        assert json.loads(capsys.readouterr().out)["source"].endswith(".safetensors")


# ---- bench and export-onnx: only our own lines on stderr -----------------------------------------------------


def test_bench_defaults_are_presets() -> None:
    assert all(name in PRESETS or name == SHIPPED for name in DEFAULT_CONFIGS)
    assert build_parser().parse_args(["bench", "--json", "x.json"]).out == "x.json"  # the old name still works


def test_bench_and_export_print_no_profiler_or_torchvision_noise(tiny_ckpt: Path, tmp_path: Path,
                                                                capfd: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxscript")
    args = ["bench", "--config", str(tiny_ckpt), "--no-training", "--no-throughput", "--repeats", "1",
            "--threads", "1", "--no-tune-alloc", "--out", str(tmp_path / "b.json")]
    assert main(args) == 0
    out, err = capfd.readouterr()
    assert "memory" in err and json.loads((tmp_path / "b.json").read_text())["results"][0]["edit_peak_mb"] > 0
    assert "USDT" not in err and "profiler_start" not in err, err
    assert main(["export-onnx", "--ckpt", str(tiny_ckpt), "--outdir", str(tmp_path / "onnx")]) == 0
    out, err = capfd.readouterr()
    assert "encoder: " in out and "torchvision" not in err, err


def test_train_summary_on_a_finished_run(tmp_path: Path) -> None:
    from face_fixtures import write_face_dataset

    data = write_face_dataset(tmp_path / "faces", size=16, count=5, train_count=4)
    common = [sys.executable, "-m", "stylemapgan", "train", "--data", str(data), "--outdir", str(tmp_path / "run"),
              "--num-workers", "0", "--no-progress", "--threads", "1"]
    env_proc = {"capture_output": True, "text": True, "timeout": 240}
    proc = subprocess.run([*common, "--preset", "tiny", "--perceptual", "none", "--iters", "1"], **env_proc)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("finished at iteration 1; last checkpoint: "
                                        f"{tmp_path / 'run' / 'checkpoints' / 'ckpt-0000001.safetensors'}")
    proc = subprocess.run([*common, "--resume", str(tmp_path / "run")], **env_proc)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("already at iteration 1 of 1: nothing trained; last checkpoint: "
                                   f"{tmp_path / 'run' / 'checkpoints' / 'ckpt-0000001.safetensors'} "
                                   "(--iters N to go on)")
