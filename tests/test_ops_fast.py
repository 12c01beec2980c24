"""The fast implementation of every op, layer and network equals the plain reference path (issue 9).

fp64 comparisons are tight (the math is identical, only rounding order differs); fp32 ones use the tolerances
the rest of the suite uses. Gradients are compared too: the fast path's in-place shortcuts must not break
autograd in training.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from stylemapgan.config import get_preset
from stylemapgan.networks import Discriminator, Encoder, Generator, ModulatedConv, set_impl, use_ops
from stylemapgan.networks.layers import ConvLayer, DownConvLayer, EqualLinear, ResDownBlock, UpConvLayer
from stylemapgan.ops import (
    GRAD_LAYOUT_ENV,
    GRAD_POLICIES,
    FastOps,
    LayoutPolicy,
    ReferenceOps,
    blur2d,
    blur2d_fast,
    layer_norm_chw,
    make_blur_kernel,
    upsample_blur2d,
)

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


LAYERS = {  # each built with an output gain
    "conv3": lambda g: ConvLayer(4, 6, 3, gain=g),
    "conv1-bias-only": lambda g: ConvLayer(4, 6, 1, activate=False, gain=g),
    "conv-no-bias": lambda g: ConvLayer(4, 6, 3, bias=False, gain=g),
    "down3": lambda g: DownConvLayer(4, 6, 3, gain=g),
    "down1-skip": lambda g: DownConvLayer(4, 6, 1, bias=False, activate=False, gain=g),
    "up3": lambda g: UpConvLayer(4, 6, 3, gain=g),
    "up1-skip": lambda g: UpConvLayer(4, 6, 1, bias=False, activate=False, gain=g),
    "resblock": lambda g: ResDownBlock(4, 6, gain=g),
}


def _fast_and_ref(build: Callable[[], torch.nn.Module]) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same layer (same weights) on the fast and on the reference implementation objects."""
    torch.manual_seed(0)
    fast = _randomise(build().double())
    return fast, use_ops(copy.deepcopy(fast), ReferenceOps)


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_layer_fast_equals_reference(name: str, layout: str) -> None:
    x = _rand(2, 4, 8, 8, seed=3)
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
    _, unit = _fast_and_ref(lambda: LAYERS[name](1.0))
    ref_unit = unit(x)
    for gain in (1.0, 0.5):
        fast, ref = _fast_and_ref(lambda gain=gain: LAYERS[name](gain))
        assert isinstance(fast.ops, FastOps) and isinstance(ref.ops, ReferenceOps)
        out = ref(x)
        torch.testing.assert_close(out, ref_unit * gain, rtol=0, atol=1e-12)  # the gain is an output gain
        torch.testing.assert_close(fast(x), out, rtol=0, atol=1e-12)
        with torch.no_grad():  # the second inference call runs on the cached weights
            fast(x)
            torch.testing.assert_close(fast(x), out, rtol=0, atol=1e-12)


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("norm", ["LayerNorm", "none"])
def test_modulated_conv_fast_equals_reference(upsample: bool, norm: str) -> None:
    x, style = _rand(2, 4, 8, 8, seed=4), _rand(2, 5, 8, 8, seed=5)
    for gain in (1.0, 0.5):
        fast, ref = _fast_and_ref(lambda gain=gain: ModulatedConv(4, 6, 3, 5, norm, upsample=upsample, gain=gain))
        out = ref(x, style)
        assert out.shape == ((2, 6, 16, 16) if upsample else (2, 6, 8, 8))
        torch.testing.assert_close(fast(x, style), out, rtol=0, atol=1e-12)
        with torch.no_grad():  # in place on the normalised tensor; for "none" (identity) the input must survive
            x_cl = x.contiguous(memory_format=CL)
            torch.testing.assert_close(fast(x_cl, style), out, rtol=0, atol=1e-12)
            assert torch.equal(x_cl, x)


def test_modulation_at_patches_equals_the_conv() -> None:
    """The public per-pixel modulation (what the fast edit recomputes on a mask edge) equals the conv there."""
    style = _rand(2, 5, 7, 6, seed=6)
    f, y, x = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 3, 6, 2]), torch.tensor([5, 2, 0, 3])
    padded = F.pad(style, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # the conv's zero padding, (ky, kx, c) order
    patches = torch.stack([padded[f, y + dy, x + dx] for dy in range(3) for dx in range(3)], dim=1)  # [P, 9, C]
    for module in _fast_and_ref(lambda: ModulatedConv(4, 6, 3, 5, "LayerNorm")):
        expected = module.modulation_params(style).permute(0, 2, 3, 1)[f, y, x]
        torch.testing.assert_close(module.modulation_params_from_patches(patches), expected, rtol=0, atol=1e-12)
        with pytest.raises(ValueError, match="patches"):
            module.modulation_params_from_patches(patches[..., :4])


def test_linear_fast_equals_reference() -> None:
    for activate in (True, False):
        for gain in (1.0, 0.5):
            fast, ref = _fast_and_ref(lambda a=activate, g=gain: EqualLinear(5, 7, lr_mul=0.01, activate=a, gain=g))
            x = _rand(3, 5)
            torch.testing.assert_close(fast(x), ref(x), rtol=0, atol=1e-12)


def test_set_impl_validates_and_switches() -> None:
    g = Generator(get_preset("tiny").model)
    with pytest.raises(ValueError, match="impl"):
        set_impl(g, "cuda")
    with pytest.raises(ValueError, match="impl"):
        Generator(get_preset("tiny").model, impl="cuda")
    assert set_impl(g, "ref") is g
    every_ops = [m.ops for m in g.modules() if hasattr(m, "ops")]
    assert len(every_ops) > 10 and all(isinstance(o, ReferenceOps) for o in every_ops)
    assert "impl=ref" in repr(g.synthesis.conv)
    set_impl(g, "fast")
    every_ops = [m.ops for m in g.modules() if hasattr(m, "ops")]
    assert all(isinstance(o, FastOps) for o in every_ops)
    assert len({id(o) for o in every_ops}) == len(every_ops)  # one instance (one weight cache) per layer
    use_ops(g, ReferenceOps)
    assert isinstance(g.synthesis.to_rgb.ops, ReferenceOps)


def test_weight_cache_follows_in_place_updates_and_skips_autograd() -> None:
    layer = ConvLayer(3, 4, 3)
    ops = layer.ops
    assert isinstance(ops, FastOps)
    with torch.no_grad():
        w1 = ops.scaled_weight(layer.weight, 2.0)
        assert ops.scaled_weight(layer.weight, 2.0) is w1  # reused
        torch.testing.assert_close(w1, layer.weight * 2.0)
        layer.weight.mul_(3.0)  # an optimizer / EMA / load_state_dict step bumps the version counter
        torch.testing.assert_close(ops.scaled_weight(layer.weight, 2.0), layer.weight * 2.0)
        layer.load_state_dict({k: torch.ones_like(v) for k, v in layer.state_dict().items()})
        torch.testing.assert_close(ops.scaled_weight(layer.weight, 2.0), torch.full_like(layer.weight, 2.0))
        other = torch.randn(4, 3, 3, 3)  # a shared ops object would stay correct
        torch.testing.assert_close(ops.scaled_weight(other, 2.0), other * 2.0)
        assert copy.deepcopy(layer).ops._weights == {}  # copies start with an empty cache
    w = ops.scaled_weight(layer.weight, 2.0)  # grad mode and a trainable weight: a fresh product in the graph
    assert w.requires_grad and w.grad_fn is not None


# ---- layout policy ---------------------------------------------------------------------------------------


def _layout_of(t: torch.Tensor) -> str:
    return "channels_last" if t.is_contiguous(memory_format=CL) and not t.is_contiguous() else "nchw"


def test_layout_follows_whether_autograd_records() -> None:
    """Channels-last when no gradient is recorded (inference); while autograd records, NCHW for an op whose input
    has at least `grad_min_channels` channels (256 by default) on one thread, whatever the input's layout."""
    assert LayoutPolicy() == GRAD_POLICIES["auto"] and LayoutPolicy().grad_min_channels == 256
    torch.manual_seed(0)
    x = _rand(2, 4, 8, 8, dtype=torch.float32)
    narrow = ConvLayer(4, 6, 3)
    assert narrow.ops.layout == LayoutPolicy()
    assert _layout_of(narrow(x)) == "channels_last"  # 4 channels: below the default threshold
    layer = use_ops(ConvLayer(4, 6, 3), lambda: FastOps(LayoutPolicy(grad_min_channels=4)))
    with torch.no_grad():
        assert _layout_of(layer(x)) == "channels_last"
    with torch.inference_mode():
        assert _layout_of(layer(x)) == "channels_last"
    assert _layout_of(layer(x)) == "nchw"  # trainable weights: recorded
    assert _layout_of(layer(x.contiguous(memory_format=CL))) == "nchw"  # a channels-last input is brought back
    layer.requires_grad_(False)
    assert _layout_of(layer(x)) == "channels_last"  # frozen weights, plain input: nothing to record
    assert _layout_of(layer(x.clone().requires_grad_(True))) == "nchw"  # an input gradient (projection)
    assert _layout_of(use_ops(layer, lambda: FastOps(LayoutPolicy(grad_min_channels=5)))(x.requires_grad_())) == (
        "channels_last")
    wide, wide_x = ConvLayer(256, 8, 3), _rand(1, 256, 4, 4, dtype=torch.float32)
    assert torch.get_num_threads() == 1 and _layout_of(wide(wide_x)) == "nchw"
    torch.set_num_threads(2)  # measured slower NCHW on two threads: "auto" keeps channels-last there
    try:
        assert _layout_of(wide(wide_x)) == "channels_last"
        assert _layout_of(use_ops(copy.deepcopy(wide), lambda: FastOps(GRAD_POLICIES["nchw"]))(wide_x)) == "nchw"
    finally:
        torch.set_num_threads(1)
    modulated = use_ops(ModulatedConv(4, 6, 3, 5, "LayerNorm"), lambda: FastOps(GRAD_POLICIES["nchw"]))
    style = _rand(2, 5, 8, 8, seed=1, dtype=torch.float32)
    assert _layout_of(modulated(x, style)) == "nchw"
    with torch.no_grad():
        assert _layout_of(modulated(x, style)) == "channels_last"
    old = use_ops(copy.deepcopy(modulated), lambda: FastOps(GRAD_POLICIES["channels_last"]))
    assert _layout_of(old(x, style)) == "channels_last"
    with pytest.raises(ValueError, match="grad_min_channels"):
        LayoutPolicy(grad_min_channels=-1)
    with pytest.raises(ValueError, match="grad_max_threads"):
        LayoutPolicy(grad_max_threads=0)


def test_grad_layout_setting_is_read_at_construction_and_kept_by_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GRAD_LAYOUT_ENV, "NCHW")
    layer = ConvLayer(4, 6, 3)
    monkeypatch.setenv(GRAD_LAYOUT_ENV, "channels_last")  # read once, at construction: a built layer keeps it
    assert layer.ops.layout == GRAD_POLICIES["nchw"]
    assert _layout_of(layer(_rand(2, 4, 8, 8, dtype=torch.float32))) == "nchw"
    for copied in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):  # e.g. the EMA networks
        assert copied.ops.layout == GRAD_POLICIES["nchw"] and copied.ops._weights == {}
    assert ConvLayer(4, 6, 3).ops.layout == GRAD_POLICIES["channels_last"]
    monkeypatch.setenv(GRAD_LAYOUT_ENV, "nhwc")
    with pytest.raises(ValueError, match=GRAD_LAYOUT_ENV):
        ConvLayer(4, 6, 3)
    with pytest.raises(ValueError, match="layout grad"):
        LayoutPolicy(grad="nhwc")
    monkeypatch.delenv(GRAD_LAYOUT_ENV)
    assert FastOps().layout == GRAD_POLICIES["auto"]
    assert "channels_last" in repr(FastOps(GRAD_POLICIES["channels_last"]))


@pytest.mark.parametrize("cls", [Generator, Encoder, Discriminator])
def test_grad_layouts_agree_and_inference_ignores_them(cls: type) -> None:
    """fp32: under autograd the two grad layouts run different conv algorithms, equal to round-off (values and
    gradients); without autograd both run the same channels-last path, bit for bit."""
    config = get_preset("cpu-32").model
    torch.manual_seed(1)
    net = _randomise(cls(config))
    x = (_rand(3, config.latent_channels, seed=4, dtype=torch.float32) if cls is Generator
         else _rand(4, 3, config.size, config.size, seed=5, dtype=torch.float32))
    nets = {grad: use_ops(copy.deepcopy(net), lambda grad=grad: FastOps(GRAD_POLICIES[grad]))
            for grad in ("nchw", "channels_last")}
    outs, grads = {}, {}
    for grad, module in nets.items():
        xg = x.clone().requires_grad_(True)
        outs[grad] = module(xg)
        outs[grad].square().mean().backward()
        grads[grad] = xg.grad
    scale = max(1.0, outs["nchw"].abs().max().item())
    torch.testing.assert_close(outs["nchw"], outs["channels_last"], rtol=0, atol=1e-4 * scale)
    torch.testing.assert_close(grads["nchw"], grads["channels_last"], rtol=1e-3, atol=1e-6 * scale)
    with torch.no_grad():
        inference = {grad: module(x) for grad, module in nets.items()}
    assert torch.equal(inference["nchw"], inference["channels_last"])
    torch.testing.assert_close(inference["nchw"], outs["nchw"].detach(), rtol=0, atol=1e-4 * scale)


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
