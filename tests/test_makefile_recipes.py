"""The Makefile's training recipes are valid command lines: every `stylemapgan train` step parses with our CLI and
does not combine flags the CLI refuses together (a fresh run takes --preset, a resumed one --resume, never both).

`make -n` prints the recipe without running it, for a run directory that does not exist and for one that does."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from stylemapgan.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def recipe_commands(target: str, **variables: str) -> list[list[str]]:
    """The `python -m stylemapgan train...` lines `make -n TARGET` would run (install skipped)."""
    if shutil.which("make") is None:
        pytest.fail("make is not installed (the README's set-up needs it)")
    args = ["make", "-n", "-o", "install", "-o", "release-default", "-o", "release-semantic", target]
    args += [f"{k}={v}" for k, v in variables.items()]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    commands = []
    for line in out.replace("\\\n", " ").splitlines():
        if "stylemapgan train" not in line:
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, ";"]:  # a shell `if A; then B; else C; fi` line: each command on its own
            if token in (";", "&&", "||"):
                tail = words[words.index("stylemapgan") + 1:] if "stylemapgan" in words else []
                if tail[:1] in (["train"], ["train-encoder"]):
                    commands.append(tail)
                words = []
            elif not (not words and token in ("if", "then", "else", "fi")):
                words.append(token)
    return commands


@pytest.mark.parametrize("target,run_var", [("train-default", "DEFAULT_RUN"), ("train-semantic", "SEM_RUN")])
@pytest.mark.parametrize("run_exists", [False, True])
def test_training_recipes_parse_and_never_mix_preset_and_resume(tmp_path, target, run_var, run_exists):
    run = tmp_path / "run"
    if run_exists:
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "ckpt-0000001.safetensors").write_bytes(b"")
    commands = recipe_commands(target, **{run_var: str(run), "DEFAULT_DATA": str(tmp_path), "SEM_DATA": str(tmp_path)})
    trains = [c for c in commands if c[0] == "train"]
    assert trains, f"make -n {target} printed no train step"
    parser = build_parser()
    for words in commands:
        args = parser.parse_args(words)  # every flag exists and takes the values given
        if words[0] == "train":
            assert not ("--preset" in words and "--resume" in words), shlex.join(words)
            assert ("--preset" in words) or ("--resume" in words), shlex.join(words)
        if words[0] == "train-encoder" and "--resume" in words:  # flags that set up a new encoder run only
            assert not {"--expanded-rank", "--encoder-from", "--ckpt"} & set(words), shlex.join(words)
    # a new run can start (make-time or shell-time choice), and an existing one is resumed, not restarted
    assert run_exists or any("--preset" in c for c in trains)
    assert not run_exists or "--resume" in trains[0], shlex.join(trains[0])
    assert args is not None
