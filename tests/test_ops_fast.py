"""The fast implementation of every op, layer and network equals the plain reference path (issue 9).

fp64 comparisons are tight (the math is identical, only rounding order differs); fp32 ones use the tolerances
the rest of the suite uses. Gradients are compared too: the fast path's in-place shortcuts must not break
autograd in training.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from stylemapgan.config import get_preset
from stylemapgan.networks import Discriminator, Encoder, Generator, set_impl
from stylemapgan.networks.layers import (
    ConvLayer,
    DownConvLayer,
    EqualLinear,
    ResDownBlock,
    UpConvLayer,
    scaled_weight,
)
from stylemapgan.ops import blur2d, blur2d_fast, layer_norm_chw, make_blur_kernel, upsample_blur2d

CL = torch.channels_last


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---- ops -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pad", [(1, 1), (2, 2), (2, 1)])
@pytest.mark.parametrize("stride", [1, 2])
def test_blur_fast_equals_reference(pad: tuple[int, int], stride: int) -> None:
    x = _rand(2, 3, 9, 9)
    kernel = make_blur_kernel((1, 3, 3, 1), 4.0).double()
    bias = _rand(3, seed=1)
    ref = blur2d(x, kernel, pad)[..., ::stride, ::stride] * 0.5 + bias.view(1, -1, 1, 1)
    fast = blur2d_fast(x, kernel, pad, stride=stride, bias=bias, scale=0.5)
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("pad", [(2, 2), (1, 1), (2, 1)])
def test_upsample_blur_is_zero_insertion_then_blur(pad: tuple[int, int]) -> None:
    x = _rand(2, 3, 5, 5)
    kernel = make_blur_kernel((1, 3, 3, 1), 4.0).double()
    up = torch.zeros(2, 3, 9, 9, dtype=x.dtype)
    up[..., ::2, ::2] = x
    bias = _rand(3, seed=2)
    ref = blur2d(up, kernel, pad) + bias.view(1, -1, 1, 1)
    torch.testing.assert_close(upsample_blur2d(x, kernel, pad, bias=bias), ref, rtol=0, atol=1e-12)


def test_layer_norm_keeps_channels_last() -> None:
    x = _rand(2, 5, 6, 7) * 3 + 1
    ref = F.layer_norm(x, x.shape[1:])
    out = layer_norm_chw(x.contiguous(memory_format=CL))
    assert out.is_contiguous(memory_format=CL)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(layer_norm_chw(x), ref, rtol=0, atol=1e-12)


# ---- layers ----------------------------------------------------------------------------------------------


def _randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-zero biases so folding them into the convs is exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim == 1:
                p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    return module


LAYERS = {
    "conv3": lambda: ConvLayer(4, 6, 3),
    "conv1-bias-only": lambda: ConvLayer(4, 6, 1, activate=False),
    "conv-no-bias": lambda: ConvLayer(4, 6, 3, bias=False),
    "down3": lambda: DownConvLayer(4, 6, 3),
    "down1-skip": lambda: DownConvLayer(4, 6, 1, bias=False, activate=False),
    "up3": lambda: UpConvLayer(4, 6, 3),
    "up1-skip": lambda: UpConvLayer(4, 6, 1, bias=False, activate=False),
    "resblock": lambda: ResDownBlock(4, 6),
}


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_layer_fast_equals_reference(name: str, layout: str) -> None:
    torch.manual_seed(0)
    layer = _randomise(LAYERS[name]().double())
    x = _rand(2, 4, 8, 8, seed=3)
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
    ref = layer.forward_ref(x)
    for gain in (1.0, 0.5):
        torch.testing.assert_close(layer.forward_fast(x, gain), ref * gain, rtol=0, atol=1e-12)
    assert layer(x).shape == ref.shape


def test_linear_fast_equals_reference() -> None:
    torch.manual_seed(0)
    for activate in (True, False):
        layer = _randomise(EqualLinear(5, 7, lr_mul=0.01, activate=activate).double())
        x = _rand(3, 5)
        torch.testing.assert_close(layer.forward_fast(x), layer.forward_ref(x), rtol=0, atol=1e-12)


def test_set_impl_validates_and_switches() -> None:
    g = Generator(get_preset("tiny").model)
    with pytest.raises(ValueError, match="impl"):
        set_impl(g, "cuda")
    set_impl(g, "ref")
    assert not g.synthesis.conv.fast and not g.resizer.layers[0].fast
    set_impl(g, "fast")
    assert g.synthesis.conv.fast


def test_weight_cache_follows_in_place_updates_and_skips_autograd() -> None:
    layer = ConvLayer(3, 4, 3)
    with torch.no_grad():
        w1 = scaled_weight(layer, 2.0)
        assert scaled_weight(layer, 2.0) is w1  # reused
        torch.testing.assert_close(w1, layer.weight * 2.0)
        layer.weight.mul_(3.0)  # an optimizer / EMA / load_state_dict step bumps the version counter
        torch.testing.assert_close(scaled_weight(layer, 2.0), layer.weight * 2.0)
        layer.load_state_dict({k: torch.ones_like(v) for k, v in layer.state_dict().items()})
        torch.testing.assert_close(scaled_weight(layer, 2.0), torch.full_like(layer.weight, 2.0))
    w = scaled_weight(layer, 2.0)  # grad mode and a trainable weight: a fresh product in the graph
    assert w.requires_grad and w.grad_fn is not None


# ---- networks --------------------------------------------------------------------------------------------


def _pair(cls: type, preset: str, dtype: torch.dtype) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(1)
    fast = _randomise(cls(get_preset(preset).model).to(dtype))
    ref = set_impl(copy.deepcopy(fast), "ref")
    return fast, ref


@pytest.mark.parametrize("preset", ["tiny", "cpu-32"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
def test_networks_fast_equal_reference_with_gradients(preset: str, dtype: torch.dtype) -> None:
    config = get_preset(preset).model
    atol = 1e-10 if dtype == torch.float64 else 1e-4
    inputs = {
        Generator: _rand(3, config.latent_channels, seed=4, dtype=dtype),
        Encoder: _rand(2, 3, config.size, config.size, seed=5, dtype=dtype),
        Discriminator: _rand(4, 3, config.size, config.size, seed=6, dtype=dtype),
    }
    for cls, x in inputs.items():
        fast, ref = _pair(cls, preset, dtype)
        xf, xr = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        out_f, out_r = fast(xf), ref(xr)
        assert out_f.is_contiguous()  # outputs leave channels-last behind
        scale = max(1.0, out_r.abs().max().item())
        torch.testing.assert_close(out_f, out_r, rtol=0, atol=atol * scale)
        out_f.square().mean().backward()
        out_r.square().mean().backward()
        if dtype == torch.float64:  # fp32 gradients can differ at leaky-ReLU kinks crossed by rounding
            torch.testing.assert_close(xf.grad, xr.grad, rtol=1e-8, atol=1e-12)
            for (name, pf), pr in zip(fast.named_parameters(), ref.parameters(), strict=True):
                torch.testing.assert_close(pf.grad, pr.grad, rtol=1e-8, atol=1e-12, msg=name)


def test_generator_stages_fast_equal_reference_in_inference() -> None:
    fast, ref = _pair(Generator, "cpu-32", torch.float32)
    fast.eval().requires_grad_(False)
    ref.eval().requires_grad_(False)
    stylemap = _rand(2, *fast.config.stylemap_shape, seed=7, dtype=torch.float32)
    with torch.inference_mode():
        styles_f, styles_r = fast.resizer(stylemap), ref.resizer(stylemap)
        for a, b in zip(styles_f, styles_r, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
        torch.testing.assert_close(fast.decode(stylemap), ref.decode(stylemap), rtol=0, atol=1e-4)
        torch.testing.assert_close(fast.decode(stylemap), fast.decode(stylemap), rtol=0, atol=0)  # cache is stable


def test_bench_cli_writes_the_required_numbers(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from stylemapgan.cli import main

    out = tmp_path / "bench.json"
    args = ["bench", "--config", "tiny", "--config", "no-such.safetensors", "--no-training", "--no-throughput",
            "--repeats", "1", "--threads", "1", "--no-tune-alloc", "--json", str(out)]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "tiny" in table and "peak" in table and "no-such.safetensors: skipped" in table
    report = json.loads(out.read_text())
    (row,) = report["results"]
    for key in ("encoder_ms", "generator_ms", "edit_ms", "generator_gflop", "peak_gflops", "edit_peak_mb"):
        assert row[key] > 0, key
    assert row["device"] == "cpu" and report["peak"]["peak_gflops"] == row["peak_gflops"]
