"""Shapes, value ranges, parameter counts and stage separation of the three networks."""

from __future__ import annotations

import pytest
import torch

from stylemapgan.config import ConfigError, ModelConfig, get_preset
from stylemapgan.networks import Discriminator, Encoder, Generator
from stylemapgan.networks.discriminator import minibatch_stddev
from stylemapgan.networks.layers import DownConvLayer, UpConvLayer
from stylemapgan.ops import blur2d, make_blur_kernel


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("preset", "g", "e", "d"),
    [
        ("paper-256", 79.74, 17.62, 28.86),
        ("paper-256-16", 61.50, 12.64, None),
        ("paper-1024-small", 21.24, 12.78, 29.01),
        ("paper-1024-32-small", 18.59, 7.80, None),
    ],
)
def test_parameter_counts_equal_official(preset: str, g: float, e: float, d: float | None) -> None:
    config = get_preset(preset).model
    with torch.device("meta"):
        nets = Generator(config), Encoder(config), Discriminator(config)
    assert round(count(nets[0]) / 1e6, 2) == g
    assert round(count(nets[1]) / 1e6, 2) == e
    if d is not None:
        assert round(count(nets[2]) / 1e6, 2) == d


def small_config(**changes: object) -> ModelConfig:
    base = {"size": 32, "latent_spatial_size": 8, "latent_channels": 16, "mapping_layers": 3,
            "channel_base": 512, "channel_multiplier": 1}
    base.update(changes)
    return ModelConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "spatial", "small"),
    [(16, 4, False), (32, 8, False), (32, 4, True), (64, 8, False), (64, 16, False), (32, 32, False)],
)
def test_output_shapes_and_ranges(size: int, spatial: int, small: bool) -> None:
    torch.manual_seed(0)
    config = small_config(size=size, latent_spatial_size=spatial, small_generator=small)
    g, e, d = Generator(config).eval(), Encoder(config).eval(), Discriminator(config).eval()
    z = torch.randn(3, config.latent_channels)
    stylemap = g.mapping(z)
    assert stylemap.shape == (3, config.latent_channels, spatial, spatial)
    styles = g.resizer(stylemap)
    assert [t.shape[-1] for t in styles] == config.style_resolutions
    assert len(styles) == 2 + 2 * (size // spatial).bit_length() - 2
    if small:
        assert all(t.shape[1] == config.latent_channels for t in styles)
    image = g.synthesis(styles)
    assert image.shape == (3, 3, size, size)
    assert torch.isfinite(image).all()
    # the official output passes through the scaled leaky ReLU: negatives are compressed by 0.2
    assert image.std() > 0.01
    assert e(image).shape == stylemap.shape
    logits = d(image)
    assert logits.shape == (3, 1) and torch.isfinite(logits).all()


def test_stages_compose_to_forward() -> None:
    torch.manual_seed(1)
    g = Generator(small_config()).eval()
    z = torch.randn(2, 16)
    full = g(z)
    staged = g.synthesis(g.resizer(g.mapping(z)))
    assert torch.equal(full, staged)
    assert torch.equal(g.decode(g.mapping(z)), full)
    layers, styles = g.synthesis.modulated_layers(), g.resizer(g.mapping(z))
    gamma_betas = [m.modulation_params(t) for m, t in zip(layers, styles, strict=True)]
    assert torch.allclose(g.synthesis.forward_modulated(gamma_betas), full, atol=1e-6)


@pytest.mark.parametrize("mode", ["LayerNorm", "InstanceNorm2d", "BatchNorm2d", "none"])
def test_normalize_modes_run_and_differ(mode: str) -> None:
    torch.manual_seed(2)
    config = small_config(normalize_mode=mode)
    g = Generator(config).eval()
    out = g(torch.randn(2, 16))
    assert out.shape == (2, 3, 32, 32) and torch.isfinite(out).all()
    if mode == "BatchNorm2d":
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())
    if mode == "none":
        torch.manual_seed(2)
        ln = Generator(small_config()).eval()
        assert not torch.allclose(ln(torch.randn(2, 16)), out)


def test_layer_norm_is_per_sample_over_chw() -> None:
    torch.manual_seed(3)
    g = Generator(small_config()).eval()
    x = torch.randn(2, 8, 8, 8) * 5 + 3
    y = g.synthesis.conv.norm(x)
    assert torch.allclose(y.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(y.var(dim=(1, 2, 3), unbiased=False), torch.ones(2), atol=1e-3)


def test_resampling_layers_exact_sizes() -> None:
    x = torch.randn(1, 4, 8, 8)
    for k in (1, 3):
        assert UpConvLayer(4, 5, k)(x).shape == (1, 5, 16, 16)
        assert DownConvLayer(4, 5, k)(x).shape == (1, 5, 4, 4)


def test_blur_kernel_preserves_constants() -> None:
    kernel = make_blur_kernel((1, 3, 3, 1))
    assert kernel.sum().item() == pytest.approx(1.0)
    assert kernel[1, 1].item() == pytest.approx(9 / 64)
    x = torch.full((1, 2, 6, 6), 2.5)
    y = blur2d(x, kernel, (2, 1))
    assert y.shape == (1, 2, 6, 6)
    assert torch.allclose(y[..., 2:-2, 2:-2], torch.full_like(y[..., 2:-2, 2:-2], 2.5))


def test_minibatch_stddev_groups_like_official() -> None:
    torch.manual_seed(4)
    x = torch.randn(8, 3, 4, 4)
    out = minibatch_stddev(x)
    assert out.shape == (8, 4, 4, 4)
    # samples n and n + 2 + ... share a group of 4 when N = 8 (group index = n % 2)
    group0 = x[[0, 2, 4, 6]]
    expected = torch.sqrt(group0.var(0, unbiased=False) + 1e-8).mean()
    assert out[0, 3, 0, 0].item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.equal(out[0, 3], out[6, 3])
    assert minibatch_stddev(torch.randn(6, 3, 4, 4)).shape == (6, 4, 4, 4)  # 6 is not a multiple of 4


def test_mean_stylemap_is_deterministic() -> None:
    torch.manual_seed(5)
    g = Generator(small_config()).eval()
    a, b = g.mean_stylemap(300, seed=7, batch=128), g.mean_stylemap(300, seed=7, batch=300)
    assert a.shape == (1, 16, 8, 8)
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    ("field", "value"),
    [("size", 48), ("size", 2048), ("latent_spatial_size", 3), ("latent_spatial_size", 64),
     ("normalize_mode", "GroupNorm"), ("lr_mul", 0.0), ("channel_max", 0), ("encoder_channel_base", 16)],
)
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**{field: value})  # type: ignore[arg-type]


def test_config_round_trip_and_unknown_fields() -> None:
    config = get_preset("paper-1024-small").model
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="bogus"):
        ModelConfig.from_dict({**config.to_dict(), "bogus": 1})


def test_official_channel_table() -> None:
    c = ModelConfig()
    assert [c.channels(r) for r in (4, 8, 16, 32, 64, 128, 256, 512, 1024)] == [
        512, 512, 512, 512, 512, 256, 128, 64, 32]
    c4 = ModelConfig(channel_multiplier=4)
    assert c4.channels(64) == 1024 and c4.channels(32) == 512
    assert ModelConfig(channel_max=128).channels(16) == 128


def test_encoder_channel_base_widens_only_the_encoder() -> None:
    base = get_preset("cpu-64-small").model
    wide = base.replace(encoder_channel_base=4 * base.channel_base)
    assert base.encoder_channel_base is None  # official: the encoder shares the generator's table
    assert [wide.encoder_channels(r) for r in (8, 16, 32, 64)] == [4 * base.channels(r) for r in (8, 16, 32, 64)]
    assert [wide.channels(r) for r in (8, 16, 32, 64)] == [base.channels(r) for r in (8, 16, 32, 64)]
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(Generator(wide)) == count(Generator(base))
    assert count(Discriminator(wide)) == count(Discriminator(base))
    assert count(Encoder(wide)) > 10 * count(Encoder(base))
    assert Encoder(wide)(torch.zeros(2, 3, 64, 64)).shape == (2, *base.stylemap_shape)
    assert ModelConfig.from_dict({k: v for k, v in base.to_dict().items() if k != "encoder_channel_base"}) == base


def test_widening_keeps_the_function_and_refuses_to_narrow() -> None:
    from stylemapgan.networks.widen import WidenError, widen_into

    base = get_preset("tiny").model
    torch.manual_seed(0)
    narrow = Encoder(base).eval()
    with torch.no_grad():  # trained-looking weights: non-zero biases everywhere
        for p in narrow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    wide = Encoder(base.replace(encoder_channel_base=3 * base.channel_base)).eval()
    widen_into(wide, narrow.state_dict())
    x = torch.randn(3, 3, base.size, base.size)
    with torch.no_grad():
        assert torch.allclose(wide(x), narrow(x), atol=1e-5)
        wide.blocks[0].conv2.weight[:, -1].add_(1.0)  # once the zeroed weights move, new channels count
        assert not torch.allclose(wide(x), narrow(x), atol=1e-3)
    with pytest.raises(WidenError, match=r"from_rgb\.weight"):
        widen_into(Encoder(base), wide.state_dict())
