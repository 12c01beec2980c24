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


def test_release_writes_an_inference_model_and_a_readable_card(tmp_path: Path) -> None:
    from face_fixtures import write_face_dataset
    from stylemapgan.checkpoint import load_checkpoint

    data = write_face_dataset(tmp_path / "faces", size=16, count=5, train_count=4)
    run_dir = tmp_path / "run"
    common = ["train", "--data", str(data), "--outdir", str(run_dir), "--num-workers", "0", "--no-progress"]
    proc = run(*common, "--preset", "tiny", "--perceptual", "none", "--checkpoint-every", "2", "--iters", "2")
    assert proc.returncode == 0, proc.stderr
    # the model comes from the checkpoint: no --preset needed (the default preset is 256 px, the data 16 px)
    proc = run(*common, "--iters", "3", "--resume", str(run_dir), "--lambda-x-rec", "10")
    assert proc.returncode == 0, proc.stderr
    report = {"metrics": {
        "fid": {"value": 123.456789, "num_generated": 10, "real_split": "test", "wall_s": 1.0},
        "recon": {"mse": 0.0123, "lpips": 0.2},
        "local_edit": {"mse_src": 0.05, "mse_ref": 0.07,
                       "per_part": {"hair": {"mse_src": 0.04, "mse_ref": 0.09},
                                    "background": {"mse_src": 0.2, "mse_ref": 0.1}}},
    }}
    (tmp_path / "report.json").write_text(json.dumps(report))
    out = tmp_path / "model.safetensors"
    proc = run("release", str(run_dir), str(out), "--name", "toy", "--metrics", str(tmp_path / "report.json"),
               "--samples", str(data))
    assert proc.returncode == 0, proc.stderr
    released = load_checkpoint(out)
    assert set(released.networks) == {"g_ema", "e_ema"} and released.training is None
    card = released.provenance["card"]
    assert card["iterations"] == 3 and card["images_seen"] == 12
    assert card["training_history"][0]["resumed_with_changes"] == {"lambda_x_rec": {"was": 1.0, "now": 10.0}}
    assert 0 < card["metrics"]["bundled_samples_recon_mse"] < 4
    text = out.with_suffix(".md").read_text()
    assert "| FID (generated vs test split) | 123.5 |  |" in text  # the split the report names
    assert "| reconstruction MSE, images in [-1, 1] | 0.0123 | <= 0.02 |" in text
    assert "| hair | 0.04 | 0.09 | yes |" in text and "| background | 0.2 | 0.1 | NO |" in text
    assert "- from iteration 2: lambda_x_rec 1.0 -> 10.0" in text
    assert "fid.num_generated = 10" in text and "wall_s" not in text
