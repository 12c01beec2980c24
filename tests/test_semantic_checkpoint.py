"""Checkpoints of both model families: the family travels in the stored config, networks are built from the
family registry, and official SemanticStyleGAN `.pt` files (and saved latents) load and convert."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).parent))

from semantic_official_reference import discriminator_ref, generator_ref, official_layout_ref, random_official_state
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
from stylemapgan.checkpoint.official_semantic import convert_official_semantic
from stylemapgan.config import ConfigError, get_preset
from stylemapgan.networks import Discriminator, Encoder, Generator
from stylemapgan.ops import make_blur_kernel
from stylemapgan.semantic import (
    SEMANTIC_PRESETS,
    DualBranchDiscriminator,
    LatentLayoutError,
    SemanticConfig,
    SemanticGenerator,
)
from stylemapgan.semantic.encoder import SemanticEncoder
from stylemapgan.semantic.io import as_w_plus, load_official_latents
from stylemapgan.semantic.latents import broadcast_w

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC_KEYS = Path(__file__).resolve().parents[2] / "shared" / "spec" / "semanticstylegan-checkpoint-keys.json"
if not SPEC_KEYS.exists():  # the checkout may live elsewhere; the spec is shared at a fixed place
    SPEC_KEYS = Path("/work/shared/spec/semanticstylegan-checkpoint-keys.json")

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
                                               "discriminator": DualBranchDiscriminator,
                                               "e_ema": SemanticEncoder, "encoder": SemanticEncoder}
    assert dict(SEMANTICSTYLEGAN.optional_roles) == {"encoder": ("e_ema", "encoder")}  # train-encoder adds it
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
    with pytest.raises(CheckpointError, match="unknown network 'imaginary' for a SemanticStyleGAN model"):
        check_state_dicts(TINY, {"imaginary": {}}, "here")
    with pytest.raises(CheckpointError, match="unknown network 'imaginary' for a SemanticStyleGAN model"):
        build_network(Checkpoint(TINY, {"imaginary": {}}), "imaginary")
    with pytest.raises(CheckpointError, match="here: network 'e_ema' does not match its config: missing"):
        check_state_dicts(TINY, {"e_ema": {}}, "here")  # the encoder (train-encoder) is a known network now


def test_inference_model_for_both_families_and_editing_refused_for_semantic(tmp_path: Path) -> None:
    sem = tmp_path / "sem.safetensors"
    save_checkpoint(sem, fresh_checkpoint(TINY, seed=0, source="test"))
    model = load_inference_model(sem)
    assert model.family is SEMANTICSTYLEGAN and set(model.networks) == {"generator"}
    assert isinstance(model.generator, SemanticGenerator) and not model.generator.training
    with pytest.raises(CheckpointError) as info:
        load_editing_model(sem)
    assert str(info.value).startswith(f"{sem}: a SemanticStyleGAN model edits by swapping part codes (edit --part")

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


# ----------------------------------------------------------------------------------------------------------
# Official SemanticStyleGAN .pt files
# ----------------------------------------------------------------------------------------------------------


def _ref_config(cfg: SemanticConfig) -> dict:
    """Our config as the reference's official argument dict, with our (narrow) channel table."""
    table = {2**i: cfg.channels(2**i) for i in range(2, 11)}
    return dict(
        size=cfg.size, seg_dim=cfg.seg_dim, latent=cfg.style_dim, n_mlp=cfg.n_mlp, local_layers=cfg.local_layers,
        local_channel=cfg.local_channel, coarse_channel=cfg.coarse_channel, coarse_size=cfg.coarse_size,
        min_feat_size=cfg.min_feat_size, base_layers=cfg.base_layers, depth_layers=cfg.depth_layers,
        residual_refine=cfg.residual_refine, transparent_dims=list(cfg.transparent_dims), channels=table,
    )


def _official_args(cfg: SemanticConfig) -> argparse.Namespace:
    """The official train.py Namespace (model fields plus some training ones), with our narrow channel_base."""
    return argparse.Namespace(
        path="data/celeba_mask_lmdb", iter=200001, batch=4, size=cfg.size, seg_dim=cfg.seg_dim, latent=cfg.style_dim,
        n_mlp=cfg.n_mlp, local_layers=cfg.local_layers, local_channel=cfg.local_channel,
        coarse_channel=cfg.coarse_channel, coarse_size=cfg.coarse_size, min_feat_size=cfg.min_feat_size,
        base_layers=cfg.base_layers, depth_layers=cfg.depth_layers, residual_refine=cfg.residual_refine,
        detach_texture=cfg.detach_texture, transparent_dims=list(cfg.transparent_dims),
        channel_multiplier=cfg.channel_multiplier, channel_base=cfg.channel_base, lr=0.002, r1_img=10.0,
        r1_seg=1000.0, lambda_mask=100.0, mixing=0.3, ckpt=None, local_rank=0,
    )


def _official_states(cfg: SemanticConfig, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    layout = official_layout_ref(_ref_config(cfg))
    gen = torch.Generator().manual_seed(seed)
    return {net: random_official_state(net, layout[net], gen, lr_mul=cfg.lr_mlp) for net in ("g_ema", "d")}


def _write_official(path: Path, cfg: SemanticConfig, seed: int = 0, **changes) -> dict[str, dict[str, torch.Tensor]]:
    """An official training checkpoint: g, d, g_ema, both optimiser states and the args Namespace."""
    states = _official_states(cfg, seed)
    raw = {
        "g": {k: v + 0.5 for k, v in states["g_ema"].items() if not k.endswith(".kernel")}
        | {k: v for k, v in states["g_ema"].items() if k.endswith(".kernel")},
        "d": states["d"],
        "g_ema": states["g_ema"],
        "g_optim": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
                    "param_groups": [{"lr": 0.0016, "betas": (0.0, 0.99 ** 0.8), "params": [0]}]},
        "d_optim": {"state": {}, "param_groups": [{"lr": 0.0019, "params": []}]},
        "args": _official_args(cfg),
    }
    raw.update(changes)
    torch.save(raw, path)
    return {"g_ema": raw["g_ema"], "g": raw["g"], "d": raw["d"]}


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    err = (a - b).abs().max().item()
    assert err <= 1e-5 * max(1.0, b.abs().max().item()), err


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stylemapgan", *args], capture_output=True, text=True, timeout=300)


def test_official_semantic_file_loads_converts_and_renders_the_official_math(tmp_path: Path) -> None:
    src = tmp_path / "official.pt"
    states = _write_official(src, TINY, seed=1)
    ckpt = load_checkpoint(src)
    assert ckpt.config == TINY
    assert sorted(ckpt.networks) == ["discriminator", "g_ema", "generator"]  # optimiser states dropped
    assert ckpt.provenance["official_code"] == "SemanticStyleGAN"
    official_args = ckpt.provenance["official_args"]
    assert official_args["seg_dim"] == 5 and official_args["transparent_dims"] == [3]
    assert "official.pt" in ckpt.provenance["source"] and len(ckpt.provenance["source_sha256"]) == 64

    g = build_network(ckpt, "g_ema").double()
    g_train = build_network(ckpt, "generator").double()
    d = build_network(ckpt, "discriminator").double()
    ref_cfg = _ref_config(TINY)
    official = {net: {k: v.double() for k, v in state.items()} for net, state in states.items()}
    gen = torch.Generator().manual_seed(2)
    latents = torch.randn(2, TINY.n_latent, TINY.style_dim, generator=gen).double()
    noise = [torch.randn(2, 1, c.noise_const.shape[-1], c.noise_const.shape[-1], generator=gen).double()
             for c in g.render.convs]
    with torch.no_grad():
        ours, ours_train = g.synthesize(latents, noise=noise), g_train.synthesize(latents, noise=noise)
    ref = generator_ref(official["g_ema"], ref_cfg, latents, noise)
    _close(ours.image, ref["rgb"])
    _close(ours.segmentation, ref["seg"])
    _close(ours_train.image, generator_ref(official["g"], ref_cfg, latents, noise)["rgb"])
    assert (ours.image - ours_train.image).abs().max() > 1e-3  # g and g_ema really are different networks
    img = torch.randn(4, 3, TINY.size, TINY.size, generator=gen).double()
    seg = torch.randn(4, TINY.seg_dim, TINY.size, TINY.size, generator=gen).double()
    with torch.no_grad():
        _close(d(img, seg), discriminator_ref(official["d"], img, seg))

    out = tmp_path / "converted.safetensors"
    proc = _cli("convert", str(src), str(out))
    assert proc.returncode == 0, proc.stderr
    assert "discriminator, g_ema, generator" in proc.stdout
    assert json.loads(_metadata(out)["config"])["family"] == "semanticstylegan"
    converted = load_checkpoint(out)
    assert converted.config == TINY and converted.training is None
    for name, state in ckpt.networks.items():
        assert all(torch.equal(converted.networks[name][k], v) for k, v in state.items()), name
    assert converted.provenance["source_sha256"] == ckpt.provenance["source_sha256"]


def _one_line_error(path: Path, pattern: str) -> None:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    assert re.search(pattern, message), message


def test_official_semantic_keys_left_over_missing_or_misshaped_are_named(tmp_path: Path) -> None:
    states = _official_states(TINY, seed=0)
    extra = {**states["g_ema"], "local_nets.0.to_depth.bias": torch.zeros(1, 1, 1, 1)}
    path = tmp_path / "extra.pt"
    torch.save({"g_ema": extra, "args": _official_args(TINY)}, path)
    _one_line_error(path, r"\[g_ema\].*0 missing.*1 unexpected \(local_nets\.0\.to_depth\.bias\)")

    missing = {k: v for k, v in states["d"].items() if k != "convs_seg.1.conv1.1.bias"}
    path = tmp_path / "missing.pt"
    torch.save({"g_ema": states["g_ema"], "d": missing, "args": _official_args(TINY)}, path)
    _one_line_error(path, r"\[d\].*1 missing \(convs_seg\.1\.conv1\.1\.bias\)")

    shaped = {**states["g_ema"], "style.1.weight": torch.zeros(3, 3)}
    path = tmp_path / "shape.pt"
    torch.save({"g_ema": shaped, "args": _official_args(TINY)}, path)
    _one_line_error(path, r"style\.1\.weight: official shape \[3, 3\]")

    path = tmp_path / "toplevel.pt"
    torch.save({"g_ema": states["g_ema"], "e_ema": {}, "args": _official_args(TINY)}, path)
    _one_line_error(path, r"unexpected top-level key\(s\) e_ema")

    path = tmp_path / "no-gema.pt"
    torch.save({"d": states["d"], "args": _official_args(TINY)}, path)
    _one_line_error(path, r"has no 'g_ema'")

    args = vars(_official_args(TINY))
    del args["local_layers"]
    path = tmp_path / "args.pt"
    torch.save({"g_ema": states["g_ema"], "args": argparse.Namespace(**args)}, path)
    _one_line_error(path, r"args lacks 'local_layers'")

    path = tmp_path / "badargs.pt"
    torch.save({"g_ema": states["g_ema"], "args": argparse.Namespace(**{**args, "local_layers": 4,
                                                                        "coarse_size": 24})}, path)
    _one_line_error(path, r"args describe an unsupported model: coarse_size")

    path = tmp_path / "neither.pt"
    torch.save({"g_ema": states["g_ema"], "args": {"size": 32}}, path)
    _one_line_error(path, r"neither|nor an official SemanticStyleGAN.*top level: args, g_ema")

    proc = _cli("convert", str(tmp_path / "extra.pt"), str(tmp_path / "out.safetensors"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "local_nets.0.to_depth.bias" in proc.stderr and not (tmp_path / "out.safetensors").exists()


def test_the_real_official_layouts_convert_onto_our_networks() -> None:
    """Every key of the instantiated official g_ema and d (keys file) at 512, 256 and 64 px maps onto ours."""
    if not SPEC_KEYS.exists():
        pytest.skip(f"official key table not found at {SPEC_KEYS}")
    spec = json.loads(SPEC_KEYS.read_text())["configs"]
    for name, entry in spec.items():
        raw: dict = {"args": argparse.Namespace(**entry["args"])}
        for net in ("g_ema", "d"):  # weights on the meta device (no memory); the FIR kernels real, as they are checked
            gain = 4.0 if net == "g_ema" else 1.0
            raw[net] = {k: make_blur_kernel((1, 3, 3, 1), gain) if k.endswith(".kernel")
                        else torch.empty(shape, device="meta") for k, shape in entry[net].items()}
        ckpt = convert_official_semantic(raw, f"official {name}")
        if name in ("512", "256"):
            assert ckpt.config == SEMANTIC_PRESETS[f"semantic-{name}"].model
        for ours, official in (("g_ema", "g_ema"), ("discriminator", "d")):
            n_official = sum(torch.Size(s).numel() for k, s in entry[official].items() if not k.endswith(".kernel"))
            assert sum(v.numel() for v in ckpt.networks[ours].values()) == n_official, (name, ours)


# ----------------------------------------------------------------------------------------------------------
# Saved official latents
# ----------------------------------------------------------------------------------------------------------


def test_official_latents_in_every_accepted_form(tmp_path: Path) -> None:
    cfg, d = TINY, TINY.style_dim
    gen = torch.Generator().manual_seed(0)
    w_plus = torch.randn(2, cfg.n_latent, d, generator=gen)
    np.save(tmp_path / "wplus.npy", w_plus.numpy())
    assert torch.equal(load_official_latents(tmp_path / "wplus.npy", cfg), w_plus)
    expanded = torch.randn(1, cfg.n_latent_expanded, d, generator=gen).double()
    np.save(tmp_path / "expanded.npy", expanded.numpy())
    loaded = load_official_latents(tmp_path / "expanded.npy", cfg)
    assert loaded.dtype == torch.float32 and torch.equal(loaded, expanded.float())
    w = torch.randn(3, d, generator=gen)
    np.save(tmp_path / "w.npy", w.numpy())
    assert torch.equal(load_official_latents(tmp_path / "w.npy", cfg), broadcast_w(cfg, w))
    np.savez(tmp_path / "one.npz", w.numpy())
    assert torch.equal(load_official_latents(tmp_path / "one.npz", cfg), broadcast_w(cfg, w))
    slots = [torch.randn(2, d, generator=gen) for _ in range(cfg.n_latent)]
    np.savez(tmp_path / "list.npz", *[s.numpy() for s in slots])
    assert torch.equal(load_official_latents(tmp_path / "list.npz", cfg), torch.stack(slots, 1))
    # the in-memory forms of the official forward: a list of latents, a W+ tensor
    assert torch.equal(as_w_plus(cfg, slots), torch.stack(slots, 1))
    assert torch.equal(as_w_plus(cfg, [w]), broadcast_w(cfg, w))
    # the official 28 / 130 layout
    official = SEMANTIC_PRESETS["semantic-256"].model
    for n in (28, 130):
        assert as_w_plus(official, torch.zeros(1, n, 512)).shape == (1, n, 512)
    assert as_w_plus(official, [torch.zeros(1, 512)] * 28).shape == (1, 28, 512)
    with pytest.raises(LatentLayoutError, match=r"shape \[1, 29, 512\]; accepted: \[N, 512\], \[N, 28, 512\]"):
        as_w_plus(official, torch.zeros(1, 29, 512))
    # loaded latents render like the tensors they came from
    g = SemanticGenerator(cfg).eval()
    with torch.no_grad():
        a = g.synthesize(load_official_latents(tmp_path / "list.npz", cfg), randomize_noise=False).image
        b = g.synthesize(torch.stack(slots, 1), randomize_noise=False).image
    assert torch.equal(a, b)


def test_official_latents_other_shapes_and_files_are_refused_in_one_line(tmp_path: Path) -> None:
    cfg, d = TINY, TINY.style_dim
    cases = {
        "slots.npy": np.zeros((1, cfg.n_latent + 1, d), np.float32),
        "width.npy": np.zeros((1, cfg.n_latent, d + 1), np.float32),
        "flat.npy": np.zeros((d,), np.float32),
        "four.npy": np.zeros((1, 1, cfg.n_latent, d), np.float32),
        "ints.npy": np.zeros((1, cfg.n_latent, d), np.int64),
        "nan.npy": np.full((1, cfg.n_latent, d), np.nan, np.float32),
        "empty.npy": np.zeros((0, cfg.n_latent, d), np.float32),
    }
    for name, array in cases.items():
        np.save(tmp_path / name, array)
    np.savez(tmp_path / "two.npz", np.zeros((1, d), np.float32), np.zeros((1, d), np.float32))
    np.savez(tmp_path / "three.npz", *[np.zeros((1, d), np.float32)] * 3)
    np.savez(tmp_path / "named.npz", a=np.zeros((1, d), np.float32), b=np.zeros((1, d), np.float32))
    np.save(tmp_path / "pickle.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "text.npy").write_text("not numpy")
    expected = {
        "slots.npy": r"shape \[1, 12, 32\]", "width.npy": "shape", "flat.npy": r"shape \[32\]", "four.npy": "shape",
        "ints.npy": "floating-point", "nan.npy": "NaN", "empty.npy": "batch of 0", "two.npz": "random part-wise",
        "three.npz": "a list of 3 latents", "named.npz": "arr_0", "pickle.npy": "not a NumPy",
        "text.npy": "not a NumPy", "missing.npy": "no such file",
    }
    for name, pattern in expected.items():
        with pytest.raises(LatentLayoutError) as info:
            load_official_latents(tmp_path / name, cfg)
        message = str(info.value)
        assert str(tmp_path / name) in message and "\n" not in message, message
        assert re.search(pattern, message), (name, message)
