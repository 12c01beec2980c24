"""The model shipped in the package: loads by default, and reconstructs its bundled test faces as its card says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stylemapgan.checkpoint import load_checkpoint, load_editing_model
from stylemapgan.models import DEFAULT_MODEL, ENV_DEFAULT, bundled_models, bundled_samples, resolve_checkpoint
from stylemapgan.release import samples_reconstruction_mse

pytestmark = pytest.mark.skipif(DEFAULT_MODEL not in bundled_models() and not os.environ.get("CI"),
                                reason="no bundled model in this checkout")


def test_default_model_resolves_and_has_a_card(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DEFAULT, raising=False)
    path = resolve_checkpoint(None)
    assert path.name == f"{DEFAULT_MODEL}.safetensors"
    ckpt = load_checkpoint(path)
    assert set(ckpt.networks) == {"g_ema", "e_ema"}  # no discriminator, no optimizer state
    assert ckpt.training is None
    assert ckpt.extra["mean_stylemap"].shape == (1, *ckpt.config.stylemap_shape)
    card = ckpt.provenance["card"]
    assert card["iterations"] > 0 and card["images_seen"] > 0
    assert path.with_suffix(".md").exists()
    assert path.stat().st_size < 40e6


def test_reconstruction_mse_matches_the_card() -> None:
    path = resolve_checkpoint(None)
    ckpt = load_checkpoint(path)
    samples = bundled_samples(path)
    assert samples is not None
    measured = samples_reconstruction_mse(ckpt, samples)
    expected = ckpt.provenance["card"]["metrics"]["bundled_samples_recon_mse"]
    assert measured == pytest.approx(expected, rel=1e-3, abs=1e-5)
    model = load_editing_model(path)
    assert model.generator(torch.randn(2, model.config.latent_channels)).shape[-1] == model.config.size


def test_edit_with_part_mask_needs_no_ckpt(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != ENV_DEFAULT}
    proc = subprocess.run(
        [sys.executable, "-m", "stylemapgan", "edit", "--source", "test:0", "--reference", "test:1", "--mask", "hair",
         "--outdir", str(tmp_path)], capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert any(p.suffix == ".png" for p in tmp_path.iterdir())
