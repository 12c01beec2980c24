"""Checkpoints of both model families: the family travels in the stored config, networks are built from the
family registry, and official SemanticStyleGAN `.pt` files (and saved latents) load and convert."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).parent))

from stylemapgan.checkpoint import (
    FAMILIES,
    Checkpoint,
    CheckpointError,
    build_network,
    check_state_dicts,
    config_from_dict,
    family_of,
    find_preset,
    fresh_checkpoint,
    load_checkpoint,
    load_editing_model,
    load_inference_model,
    save_checkpoint,
)
from stylemapgan.checkpoint.families import SEMANTICSTYLEGAN, STYLEMAPGAN
from stylemapgan.checkpoint.io import checkpoint_to_bytes
from stylemapgan.config import ConfigError, get_preset
from stylemapgan.networks import Discriminator, Encoder, Generator
from stylemapgan.semantic import SEMANTIC_PRESETS, DualBranchDiscriminator, SemanticGenerator

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = SEMANTIC_PRESETS["semantic-tiny"].model
SMG_TINY = get_preset("tiny").model


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return f.metadata()


# ----------------------------------------------------------------------------------------------------------
# The family registry and our format
# ----------------------------------------------------------------------------------------------------------


def test_registry_maps_each_family_to_its_config_networks_and_presets() -> None:
    assert set(FAMILIES) == {"stylemapgan", "semanticstylegan"}
    assert family_of(SMG_TINY) is STYLEMAPGAN and family_of(TINY) is SEMANTICSTYLEGAN
    assert dict(STYLEMAPGAN.networks) == {"g_ema": Generator, "generator": Generator, "e_ema": Encoder,
                                          "encoder": Encoder, "discriminator": Discriminator}
    assert dict(SEMANTICSTYLEGAN.networks) == {"g_ema": SemanticGenerator, "generator": SemanticGenerator,
                                               "discriminator": DualBranchDiscriminator}
    assert find_preset("semantic-256") == (SEMANTICSTYLEGAN, SEMANTIC_PRESETS["semantic-256"])
    assert find_preset("tiny")[0] is STYLEMAPGAN
    with pytest.raises(ConfigError, match=r"unknown preset 'nope'.*semantic-tiny"):
        find_preset("nope")
    assert STYLEMAPGAN.editable and not SEMANTICSTYLEGAN.editable


def test_semantic_checkpoint_round_trips_with_its_family(tmp_path: Path) -> None:
    ckpt = fresh_checkpoint(TINY, seed=3, source="test")
    assert sorted(ckpt.networks) == ["discriminator", "g_ema", "generator"]
    assert all(torch.equal(ckpt.networks["g_ema"][k], v) for k, v in ckpt.networks["generator"].items())
    path = tmp_path / "sem.safetensors"
    save_checkpoint(path, ckpt)
    stored = json.loads(_metadata(path)["config"])
    assert stored["family"] == "semanticstylegan" and stored["seg_dim"] == 5
    loaded = load_checkpoint(path)
    assert loaded.config == TINY and sorted(loaded.networks) == sorted(ckpt.networks)
    for name, state in ckpt.networks.items():
        assert all(torch.equal(loaded.networks[name][k], v) for k, v in state.items()), name
    g = build_network(loaded, "g_ema")
    d = build_network(loaded, "discriminator")
    assert isinstance(g, SemanticGenerator) and isinstance(d, DualBranchDiscriminator)
    z = torch.randn(2, TINY.style_dim, generator=torch.Generator().manual_seed(0))
    fresh = SemanticGenerator(TINY)
    fresh.load_state_dict(ckpt.networks["g_ema"])
    with torch.no_grad():
        assert torch.equal(g(z, randomize_noise=False).image, fresh.eval()(z, randomize_noise=False).image)
    # seeded: the same seed gives the same weights, another seed different ones
    again = fresh_checkpoint(TINY, seed=3, source="test").networks["g_ema"]
    other = fresh_checkpoint(TINY, seed=4, source="test").networks["g_ema"]
    assert all(torch.equal(again[k], v) for k, v in ckpt.networks["g_ema"].items())
    assert not torch.equal(other["render.convs.0.weight"], ckpt.networks["g_ema"]["render.convs.0.weight"])


def test_stylemapgan_checkpoints_without_a_family_key_load_unchanged(tmp_path: Path) -> None:
    ckpt = fresh_checkpoint(SMG_TINY, seed=0, source="test")
    path = tmp_path / "smg.safetensors"
    save_checkpoint(path, ckpt)
    assert "family" not in json.loads(_metadata(path)["config"])  # the files older readers know
    loaded = load_checkpoint(path)
    assert loaded.config == SMG_TINY and family_of(loaded.config) is STYLEMAPGAN
    assert sorted(loaded.networks) == ["discriminator", "e_ema", "encoder", "g_ema", "generator"]
    assert config_from_dict({**SMG_TINY.to_dict(), "family": "stylemapgan"}) == SMG_TINY
    model = load_editing_model(path)
    assert isinstance(model.generator, Generator) and isinstance(model.encoder, Encoder)


def test_unknown_family_and_mismatched_semantic_weights_are_named(tmp_path: Path) -> None:
    data = checkpoint_to_bytes(fresh_checkpoint(TINY, seed=0, source="test"))
    path = tmp_path / "future.safetensors"
    path.write_bytes(data.replace(b'\\"family\\": \\"semanticstylegan\\"', b'\\"family\\": \\"imaginary-family\\"'))
    with pytest.raises(CheckpointError, match=r"future\.safetensors: unknown model family 'imaginary-family'") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)

    ckpt = fresh_checkpoint(TINY, seed=0, source="test")
    ckpt.networks["g_ema"]["local.to_feat.weight"] = torch.zeros(2, 2)
    del ckpt.networks["discriminator"]["out.bias"]
    with pytest.raises(CheckpointError, match=r"local\.to_feat\.weight has shape \(2, 2\)"):
        build_network(ckpt, "g_ema")
    with pytest.raises(CheckpointError, match=r"missing out\.bias"):
        build_network(ckpt, "discriminator")
    with pytest.raises(CheckpointError, match="unknown network 'e_ema' for a SemanticStyleGAN model"):
        check_state_dicts(TINY, {"e_ema": {}}, "here")
    with pytest.raises(CheckpointError, match="unknown network 'e_ema' for a SemanticStyleGAN model"):
        build_network(Checkpoint(TINY, {"e_ema": {}}), "e_ema")


def test_inference_model_for_both_families_and_editing_refused_for_semantic(tmp_path: Path) -> None:
    sem = tmp_path / "sem.safetensors"
    save_checkpoint(sem, fresh_checkpoint(TINY, seed=0, source="test"))
    model = load_inference_model(sem)
    assert model.family is SEMANTICSTYLEGAN and set(model.networks) == {"generator"}
    assert isinstance(model.generator, SemanticGenerator) and not model.generator.training
    with pytest.raises(CheckpointError) as info:
        load_editing_model(sem)
    assert str(info.value) == f"{sem}: this model has no encoder yet: editing arrives with issue 23"

    smg = tmp_path / "smg.safetensors"
    ckpt = fresh_checkpoint(SMG_TINY, seed=0, source="test")
    save_checkpoint(smg, ckpt)
    model = load_inference_model(smg)
    assert model.family is STYLEMAPGAN and set(model.networks) == {"generator", "encoder"}
    del ckpt.networks["e_ema"], ckpt.networks["encoder"]
    save_checkpoint(smg, ckpt)
    with pytest.raises(CheckpointError, match=r"needs its encoder network \(e_ema or encoder\)"):
        load_inference_model(smg)
    # a semantic file with only the training generator still renders (g_ema preferred when present)
    ckpt = fresh_checkpoint(TINY, seed=0, source="test")
    del ckpt.networks["g_ema"]
    save_checkpoint(sem, ckpt)
    assert isinstance(load_inference_model(sem).generator, SemanticGenerator)
