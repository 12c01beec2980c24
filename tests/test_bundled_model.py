"""The models shipped in the package: the default loads by default, and every bundled model present (cartoon-faces,
cartoon-faces-semantic) is an inference model that reconstructs its bundled sample faces
as its card says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stylemapgan.checkpoint import build_network, load_checkpoint
from stylemapgan.checkpoint.families import family_of
from stylemapgan.editing import Editor
from stylemapgan.models import DEFAULT_MODEL, ENV_DEFAULT, bundled_models, bundled_samples, resolve_checkpoint
from stylemapgan.release import samples_reconstruction_mse

pytestmark = pytest.mark.skipif(DEFAULT_MODEL not in bundled_models() and not os.environ.get("CI"),
                                reason="no bundled model in this checkout")
SHIPPED = sorted(bundled_models()) or [DEFAULT_MODEL]  # CI has the default; without it every test fails, loudly


def test_default_model_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DEFAULT, raising=False)
    assert resolve_checkpoint(None).name == f"{DEFAULT_MODEL}.safetensors"


@pytest.mark.parametrize("name", SHIPPED)
def test_bundled_model_is_an_inference_model_with_a_card(name: str) -> None:
    path = resolve_checkpoint(name)
    assert path == bundled_models()[name]
    ckpt = load_checkpoint(path)
    family = family_of(ckpt.config)
    # the EMA networks of the family's released roles, nothing else: no discriminator, no optimizer state
    assert set(ckpt.networks) == {(family.roles.get(r) or family.optional_roles[r])[0] for r in family.released_roles}
    assert ckpt.training is None
    assert family.release_extra is not None  # the family's truncation centre is in the file, as it computes it
    generator = build_network(ckpt, family.roles["generator"][0])
    for key, value in family.release_extra(generator).items():
        assert ckpt.extra[key].shape == value.shape
        torch.testing.assert_close(ckpt.extra[key], value, rtol=0, atol=1e-5)
    card = ckpt.provenance["card"]
    assert card["name"] == name and card["iterations"] > 0 and card["images_seen"] > 0
    assert path.with_suffix(".md").exists()
    assert path.stat().st_size < 40e6


@pytest.mark.parametrize("name", SHIPPED)
def test_reconstruction_mse_matches_the_card(name: str) -> None:
    path = resolve_checkpoint(name)
    ckpt = load_checkpoint(path)
    samples = bundled_samples(path)
    assert samples is not None and len(list(samples.iterdir())) > 0
    measured = samples_reconstruction_mse(ckpt, samples)
    expected = ckpt.provenance["card"]["metrics"]["bundled_samples_recon_mse"]
    assert measured == pytest.approx(expected, rel=1e-3, abs=1e-5)
    editor = Editor.from_checkpoint(path)
    assert editor.sample([0, 1]).images.shape[-1] == ckpt.config.size
    assert editor.reference_mse is not None and editor.reference_mse > 0  # the domain check has its yardstick


def test_edit_with_part_mask_needs_no_ckpt(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != ENV_DEFAULT}
    proc = subprocess.run(
        [sys.executable, "-m", "stylemapgan", "edit", "--source", "test:0", "--reference", "test:1", "--mask", "hair",
         "--outdir", str(tmp_path)], capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert any(p.suffix == ".png" for p in tmp_path.iterdir())
