"""Our networks, loaded from converted official checkpoints, reproduce the official model's outputs.

The official math is re-implemented independently and literally in `official_reference.py` (it works on state
dicts in the official key layout and imports nothing from stylemapgan). Random official-layout state dicts are
converted with our converter, loaded into our networks, and both forward passes are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from official_reference import (
    decoder_ref,
    discriminator_ref,
    encoder_ref,
    generator_ref,
    mapping_ref,
    official_channel_table,
    official_layout,
    random_official_state,
)
from stylemapgan.checkpoint import CheckpointError, build_network, load_checkpoint
from stylemapgan.checkpoint.io import Checkpoint
from stylemapgan.checkpoint.official import convert_official, convert_state_dict
from stylemapgan.config import ModelConfig
from stylemapgan.networks import use_ops
from stylemapgan.ops import GRAD_POLICIES, FastOps

SPEC_KEYS = Path(__file__).resolve().parents[2] / "shared" / "spec" / "official-checkpoint-keys.json"
if not SPEC_KEYS.exists():  # the checkout may live elsewhere; the spec is shared at a fixed place
    SPEC_KEYS = Path("/work/shared/spec/official-checkpoint-keys.json")

FAMILY = {"g_ema": "generator", "e_ema": "encoder", "d": "discriminator"}
OUR_NAME = {"g_ema": "g_ema", "e_ema": "e_ema", "d": "discriminator"}
OFFICIAL_TOP_KEY = {"g_ema": "g_ema", "e_ema": "e_ema", "d": "discriminator"}


def _spec_configs() -> dict[str, dict[str, dict[str, list[int]]]]:
    if not SPEC_KEYS.exists():
        pytest.skip(f"official key table not found at {SPEC_KEYS}")
    return json.loads(SPEC_KEYS.read_text())["configs"]


def _parse_config_name(name: str) -> tuple[int, int, bool]:
    parts = name.split("_")
    return int(parts[0]), int(parts[1]), parts[-1] == "small"


def _train_args(size: int, spatial: int, small: bool, **over) -> argparse.Namespace:
    fields = dict(
        size=size,
        latent_spatial_size=spatial,
        latent_channel_size=64,
        mapping_layer_num=8,
        lr_mul=0.01,
        channel_multiplier=2,
        normalize_mode="LayerNorm",
        small_generator=small,
    )
    fields.update(over)
    return argparse.Namespace(**fields)


def _assert_close(name: str, ours: torch.Tensor, ref: torch.Tensor, rel: float = 1e-4) -> float:
    """|ours - ref| <= rel * max(1, max|ref|): absolute for O(1) outputs, relative for large ones."""
    assert ours.shape == ref.shape, f"{name}: shape {tuple(ours.shape)} vs reference {tuple(ref.shape)}"
    assert torch.isfinite(ref).all(), f"{name}: reference is not finite"
    diff = (ours - ref).abs().max().item()
    mag = ref.abs().max().item()
    tol = rel * max(1.0, mag)
    assert diff <= tol, f"{name}: max abs diff {diff:.3g} > {tol:.3g} (max |ref| {mag:.3g})"
    return diff


def _compare_with_reference(name: str, states: dict[str, dict[str, torch.Tensor]], networks: dict[str, torch.nn.Module],
                            z: torch.Tensor, images: torch.Tensor, spatial: int, lr_mul: float = 0.01,
                            mode: str = "LayerNorm", rel: float = 1e-4) -> None:
    """Each of our networks given ("g_ema", "e_ema", "d") against the reference math on the same inputs."""
    assert networks and set(networks) <= {"g_ema", "e_ema", "d"}, f"{name}: nothing or unknown networks to compare"
    with torch.no_grad():
        if "g_ema" in networks:
            g, ref = networks["g_ema"], states["g_ema"]
            _assert_close(f"{name} mapping", g.mapping(z), mapping_ref(ref, z, spatial, lr_mul), rel)
            _assert_close(f"{name} G(z)", g(z), generator_ref(ref, z, spatial, lr_mul, mode), rel)
        if "e_ema" in networks:
            _assert_close(f"{name} E", networks["e_ema"](images), encoder_ref(states["e_ema"], images), rel)
        if "d" in networks:
            _assert_close(f"{name} D", networks["d"](images), discriminator_ref(states["d"], images), rel)


def _official_states(layout, seed: int, lr_mul: float = 0.01) -> dict[str, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return {net: random_official_state(net, table, gen, lr_mul) for net, table in layout.items()}


# ----------------------------------------------------------------------------------------------------------
# The generator of official-layout tables is right: it reproduces the published key table exactly.
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["256_8", "256_16", "1024_16_small", "1024_32_small"])
def test_layout_generator_matches_official_key_table(name):
    spec = _spec_configs()[name]
    size, spatial, small = _parse_config_name(name)
    layout = official_layout(size, spatial, official_channel_table(2), small_generator=small)
    for net in ("g_ema", "e_ema", "d"):
        expected = {k: tuple(v) for k, v in spec[net].items()}
        assert layout[net] == expected, f"{name}/{net}: generated layout differs from the official table"
        assert list(layout[net]) == list(expected), f"{name}/{net}: key order differs"


# ----------------------------------------------------------------------------------------------------------
# 2. Every real official config converts and loads into our networks with no missing/unexpected key.
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*non-meta parameter:UserWarning")
@pytest.mark.parametrize("name", ["256_8", "256_16", "1024_16_small", "1024_32_small"])
def test_real_official_layouts_convert_and_load_strictly(name):
    spec = _spec_configs()[name]
    size, spatial, small = _parse_config_name(name)
    gen = torch.Generator().manual_seed(0)
    raw = {
        OFFICIAL_TOP_KEY[net]: random_official_state(net, {k: tuple(v) for k, v in spec[net].items()}, gen, empty=True)
        for net in ("g_ema", "e_ema", "d")
    }
    raw["train_args"] = _train_args(size, spatial, small)
    ckpt = convert_official(raw, f"official {name}")
    assert ckpt.config.size == size and ckpt.config.latent_spatial_size == spatial
    assert ckpt.config.small_generator == small
    assert sorted(ckpt.networks) == ["discriminator", "e_ema", "g_ema"]
    for ours in ckpt.networks:
        # build_network checks keys and shapes strictly; on the meta device it costs no memory or time
        with torch.device("meta"):
            module = build_network(ckpt, ours, device="meta")
        expected = set(module.state_dict())
        assert set(ckpt.networks[ours]) == expected, f"{name}/{ours}: converted keys differ from our network's"
        n_official = sum(v.numel() for k, v in raw[ours].items() if not k.endswith(".kernel"))
        n_ours = sum(v.numel() for v in module.state_dict().values())
        assert n_ours == n_official, f"{name}/{ours}: {n_ours} numbers in our state, {n_official} in the official"


# ----------------------------------------------------------------------------------------------------------
# 1b. Small configurations: exhaustive forward comparisons (fp32 and fp64).
# ----------------------------------------------------------------------------------------------------------

SMALL_CONFIGS = {
    "32px-s8": ModelConfig(
        size=32, latent_spatial_size=8, latent_channels=16, mapping_layers=3, channel_base=512, channel_multiplier=1
    ),
    "64px-s8-widths32-16": ModelConfig(
        size=64, latent_spatial_size=8, latent_channels=16, mapping_layers=3, channel_base=1024, channel_multiplier=1
    ),
    "32px-s4-small": ModelConfig(
        size=32,
        latent_spatial_size=4,
        latent_channels=16,
        mapping_layers=3,
        channel_base=1024,
        channel_multiplier=2,
        channel_max=24,
        small_generator=True,
    ),
    "64px-s8-small": ModelConfig(
        size=64,
        latent_spatial_size=8,
        latent_channels=8,
        mapping_layers=2,
        channel_base=1024,
        channel_multiplier=1,
        small_generator=True,
    ),
    "32px-s8-instancenorm": ModelConfig(
        size=32,
        latent_spatial_size=8,
        latent_channels=16,
        mapping_layers=3,
        channel_base=512,
        channel_multiplier=1,
        normalize_mode="InstanceNorm2d",
    ),
    "32px-s8-nonorm": ModelConfig(
        size=32,
        latent_spatial_size=8,
        latent_channels=16,
        mapping_layers=3,
        channel_base=512,
        channel_multiplier=1,
        normalize_mode="none",
    ),
    "32px-s8-batchnorm": ModelConfig(
        size=32,
        latent_spatial_size=8,
        latent_channels=16,
        mapping_layers=3,
        channel_base=512,
        channel_multiplier=1,
        normalize_mode="BatchNorm2d",
    ),
}


def _small_pair(config: ModelConfig, seed: int, dtype: torch.dtype):
    layout = official_layout(
        config.size,
        config.latent_spatial_size,
        config.channels,
        config.latent_channels,
        config.mapping_layers,
        config.small_generator,
        config.normalize_mode,
    )
    states = _official_states(layout, seed, config.lr_mul)
    states = {
        net: {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()} for net, sd in states.items()
    }
    networks = {OUR_NAME[net]: convert_state_dict(FAMILY[net], sd, f"test {net}") for net, sd in states.items()}
    ckpt = Checkpoint(config, networks)
    ours = {net: build_network(ckpt, OUR_NAME[net]).to(dtype) for net in states}
    return states, ours


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("name", list(SMALL_CONFIGS))
def test_small_configs_match_reference(name, dtype):
    config = SMALL_CONFIGS[name]
    states, ours = _small_pair(config, seed=sum(map(ord, name)), dtype=dtype)
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(3, config.latent_channels, generator=gen, dtype=dtype)
    stylemap = torch.randn(2, *config.stylemap_shape, generator=gen, dtype=dtype)
    images = torch.randn(8, 3, config.size, config.size, generator=gen, dtype=dtype)  # D: two stddev groups
    rel = 1e-4 if dtype == torch.float32 else 1e-10
    s, lr, mode = config.latent_spatial_size, config.lr_mul, config.normalize_mode
    _compare_with_reference(name, states, ours, z, images, s, lr, mode, rel)  # D sees two stddev groups
    _compare_with_reference(f"{name} batch 2", states, {"e_ema": ours["e_ema"], "d": ours["d"]}, z, images[:2], s,
                            lr, mode, rel)
    with torch.no_grad():
        decoded = ours["g_ema"].decode(stylemap)
    _assert_close(f"{name} decode", decoded, decoder_ref(states["g_ema"], stylemap, mode), rel)


@pytest.mark.parametrize("grad_layout", list(GRAD_POLICIES))
def test_networks_match_reference_under_autograd(grad_layout):
    """While autograd records, FastOps lays activations out by its layout policy (NCHW for every op under "nchw",
    channels-last under "channels_last"; "auto" keeps these narrow layers channels-last): in float64 the forward
    values and the input gradients still equal the official math's, for each policy."""
    config = SMALL_CONFIGS["32px-s8"]
    states, ours = _small_pair(config, seed=5, dtype=torch.float64)
    for net in ours.values():
        use_ops(net.train().requires_grad_(True), lambda: FastOps(GRAD_POLICIES[grad_layout]))
    gen = torch.Generator().manual_seed(2)
    stylemap = torch.randn(2, *config.stylemap_shape, generator=gen, dtype=torch.float64)
    images = torch.randn(4, 3, config.size, config.size, generator=gen, dtype=torch.float64)
    cases = {
        "decode": (lambda x: ours["g_ema"].decode(x), lambda x: decoder_ref(states["g_ema"], x), stylemap),
        "E": (ours["e_ema"], lambda x: encoder_ref(states["e_ema"], x), images),
        "D": (ours["d"], lambda x: discriminator_ref(states["d"], x), images),
    }
    for name, (our_fn, ref_fn, x) in cases.items():
        xo, xr = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        out, ref = our_fn(xo), ref_fn(xr)
        assert out.requires_grad
        _assert_close(f"{grad_layout} {name}", out, ref, 1e-10)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        (ref * torch.linspace(-1, 1, ref.numel(), dtype=ref.dtype).view_as(ref)).sum().backward()
        _assert_close(f"{grad_layout} {name} input gradient", xo.grad, xr.grad, 1e-10)


def test_reference_is_sensitive_to_what_it_checks():
    """Guard against a vacuous comparison: perturbing one official bias changes the reference output."""
    config = SMALL_CONFIGS["32px-s8"]
    states, ours = _small_pair(config, seed=3, dtype=torch.float64)
    z = torch.randn(2, config.latent_channels, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        before = generator_ref(states["g_ema"], z, 8)
        _assert_close("G", ours["g_ema"](z), before, 1e-10)
        states["g_ema"]["decoder.convs.0.conv2.conv.beta.bias"] += 1e-3
        after = generator_ref(states["g_ema"], z, 8)
    assert (after - before).abs().max().item() > 1e-6


# ----------------------------------------------------------------------------------------------------------
# 1a. The full real 256 / 8x8 layout (80M-parameter G): one forward pass of each network.
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_full_256_8_matches_reference():
    layout = {k: {kk: tuple(vv) for kk, vv in v.items()} for k, v in _spec_configs()["256_8"].items()}
    states = _official_states(layout, seed=2021)
    raw = {OFFICIAL_TOP_KEY[net]: sd for net, sd in states.items()}
    raw["train_args"] = _train_args(256, 8, False)
    ckpt = convert_official(raw, "official 256_8")
    gen = torch.Generator().manual_seed(7)
    z = torch.randn(1, 64, generator=gen)
    images = torch.randn(2, 3, 256, 256, generator=gen)
    for net in ("g_ema", "e_ema", "d"):  # one 80M-parameter network in memory at a time
        _compare_with_reference("256_8", states, {net: build_network(ckpt, OUR_NAME[net])}, z, images, 8)


# ----------------------------------------------------------------------------------------------------------
# 3. A real official-format file: load_checkpoint, the CLI converter, and refusal of unsafe pickles.
# ----------------------------------------------------------------------------------------------------------

# official widths (512 at <= 32 px) make the smallest official-format model 8 px with a 4x4 stylemap
FILE_ARGS = dict(size=8, spatial=4, small=True, latent_channel_size=16, mapping_layer_num=2)


def _write_official_file(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    args = _train_args(
        FILE_ARGS["size"],
        FILE_ARGS["spatial"],
        FILE_ARGS["small"],
        latent_channel_size=FILE_ARGS["latent_channel_size"],
        mapping_layer_num=FILE_ARGS["mapping_layer_num"],
        iter=800000,
        batch=16,
    )
    layout = official_layout(
        args.size,
        args.latent_spatial_size,
        official_channel_table(2),
        args.latent_channel_size,
        args.mapping_layer_num,
        args.small_generator,
    )
    layout.pop("d")
    states = _official_states(layout, seed=5)
    torch.save({"g_ema": states["g_ema"], "e_ema": states["e_ema"], "train_args": args}, path)
    return states


def _compare_file_model(ckpt: Checkpoint, states) -> None:
    size, s = FILE_ARGS["size"], FILE_ARGS["spatial"]
    gen = torch.Generator().manual_seed(11)
    z = torch.randn(2, FILE_ARGS["latent_channel_size"], generator=gen)
    images = torch.randn(2, 3, size, size, generator=gen)
    networks = {net: build_network(ckpt, net) for net in ("g_ema", "e_ema")}
    _compare_with_reference("file", states, networks, z, images, s)


def test_official_file_round_trip_and_cli_convert(tmp_path):
    src = tmp_path / "official.pt"
    states = _write_official_file(src)
    ckpt = load_checkpoint(src)
    assert ckpt.config.latent_channels == 16 and ckpt.config.mapping_layers == 2 and ckpt.config.small_generator
    _compare_file_model(ckpt, states)

    out = tmp_path / "converted.safetensors"
    proc = subprocess.run(
        [sys.executable, "-m", "stylemapgan", "convert", str(src), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and out.read_bytes()[:2] != b"PK"
    converted = load_checkpoint(out)
    assert converted.config == ckpt.config
    _compare_file_model(converted, states)


class _Payload:
    """Pickles as a call that would create a marker file if the loader executed it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CustomTrainArgs:
    size = 8


@pytest.mark.parametrize("kind", ["os.system", "custom-class"])
def test_unsafe_official_file_is_refused_without_running_code(tmp_path, kind):
    marker = tmp_path / "PWNED"
    path = tmp_path / f"evil-{kind}.pt"
    payload = _Payload(marker) if kind == "os.system" else _CustomTrainArgs()
    torch.save({"g_ema": {}, "e_ema": {}, "train_args": payload}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    assert not marker.exists(), "loading the checkpoint executed code from its pickle"

    proc = subprocess.run(
        [sys.executable, "-m", "stylemapgan", "convert", str(path), str(tmp_path / "out.safetensors")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert str(path) in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()
