"""SemanticStyleGAN networks: official parameter counts and key layout, agreement with an independent literal
reference of the official forward math (`semantic_official_reference.py`), fusion invariants, refused configs
and the 28 / 130 latent layouts."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from semantic_official_reference import (
    discriminator_ref,
    expand_latents_ref,
    generator_ref,
    mapping_ref,
    official_layout_ref,
    random_official_state,
)
from stylemapgan.config import ConfigError, ModelConfig
from stylemapgan.semantic import (
    SEMANTIC_PRESETS,
    ConversionError,
    DualBranchDiscriminator,
    LatentLayoutError,
    SemanticConfig,
    SemanticGenerator,
    config_from_official_args,
    convert_official_discriminator,
    convert_official_generator,
    expand_latents,
    official_key_map,
    official_layout,
    parameter_counts,
    part_mix,
    shape_index,
    texture_index,
)
from stylemapgan.semantic.fusion import composite_masks, fusion_weights
from stylemapgan.semantic.latents import expand_index
from stylemapgan.semantic.layers import PartLinear

SPEC_KEYS = Path(__file__).resolve().parents[2] / "shared" / "spec" / "semanticstylegan-checkpoint-keys.json"
if not SPEC_KEYS.exists():  # the checkout may live elsewhere; the spec is shared at a fixed place
    SPEC_KEYS = Path("/work/shared/spec/semanticstylegan-checkpoint-keys.json")

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = SEMANTIC_PRESETS["semantic-tiny"].model
# 64 px so the render net has widths from both halves of the channel table; two transparent classes, no
# residual refinement, no base codes, depth read after the last local layer.
SMALL_TRANSPARENT = SemanticConfig(
    size=64, seg_dim=4, style_dim=24, n_mlp=3, local_layers=3, local_channel=6, coarse_channel=10, coarse_size=16,
    min_feat_size=4, base_layers=0, depth_layers=3, residual_refine=False, transparent_dims=(1, 2),
    channel_base=512, channel_multiplier=1,
)
# No transparent classes, residual refinement, the coarse grid one doubling above the render net's start.
SMALL_PLAIN = SemanticConfig(
    size=16, seg_dim=3, style_dim=16, n_mlp=1, local_layers=5, local_channel=4, coarse_channel=6, coarse_size=8,
    min_feat_size=4, base_layers=2, depth_layers=3, residual_refine=True, channel_base=192,
    channel_multiplier=1, detach_texture=True,
)
CONFIGS = {"tiny": TINY, "small-transparent": SMALL_TRANSPARENT, "small-plain": SMALL_PLAIN}


def _spec() -> dict:
    if not SPEC_KEYS.exists():
        pytest.skip(f"official key table not found at {SPEC_KEYS}")
    return json.loads(SPEC_KEYS.read_text())["configs"]


def _ref_config(cfg: SemanticConfig) -> dict:
    """Our config as the official argument dict of the reference, with our channel table."""
    table = {2**i: cfg.channels(2**i) for i in range(2, 11)}
    return dict(
        size=cfg.size, seg_dim=cfg.seg_dim, latent=cfg.style_dim, n_mlp=cfg.n_mlp, local_layers=cfg.local_layers,
        local_channel=cfg.local_channel, coarse_channel=cfg.coarse_channel, coarse_size=cfg.coarse_size,
        min_feat_size=cfg.min_feat_size, base_layers=cfg.base_layers, depth_layers=cfg.depth_layers,
        residual_refine=cfg.residual_refine, transparent_dims=list(cfg.transparent_dims), channels=table,
    )


def _official_state(cfg: SemanticConfig, net: str, seed: int) -> dict[str, torch.Tensor]:
    layout = official_layout_ref(_ref_config(cfg))[net]
    gen = torch.Generator().manual_seed(seed)
    return {k: v.double() for k, v in random_official_state(net, layout, gen, lr_mul=cfg.lr_mlp).items()}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------------------------
# Parameter counts and the official key layout
# ----------------------------------------------------------------------------------------------------------


def test_parameter_counts_equal_the_official_networks() -> None:
    assert parameter_counts(SEMANTIC_PRESETS["semantic-512"].model) == {
        "generator": 20_320_358, "discriminator": 51_406_593,
    }
    assert parameter_counts(SEMANTIC_PRESETS["semantic-256"].model) == {
        "generator": 20_208_020, "discriminator": 51_169_793,
    }


@pytest.mark.parametrize("name", ["512", "256", "64"])
def test_per_part_counts_equal_the_keys_file(name: str) -> None:
    spec = _spec()[name]
    counts = spec["counts"]
    cfg = config_from_official_args(spec["args"])
    with torch.device("meta"):
        g, d = SemanticGenerator(cfg), DualBranchDiscriminator(cfg)
    assert _count(g) == counts["G_total"]
    assert _count(g.mapping_network) == counts["G_style_mapping"]
    assert _count(g.local.pos_embed) == counts["G_pos_embed"]
    assert _count(g.local) - _count(g.local.pos_embed) == counts["G_local_nets"]
    per_part = g.local.part_parameter_counts()
    assert per_part[0] == counts["G_local_net_0_background"]
    assert per_part[1:] == [counts["G_local_net_k_with_depth"]] * (cfg.seg_dim - 1)
    assert _count(g.render) == counts["G_render_net"]
    assert _count(g.render.convs) == counts["G_render_net_convs"]
    assert _count(g.render.to_rgbs) == counts["G_render_net_to_rgbs"]
    assert _count(g.render.to_segs) == counts["G_render_net_to_segs"]
    assert len(cfg.render_resolutions) == counts["G_render_stages"]
    assert (cfg.n_latent, cfg.n_latent_expanded) == (counts["G_n_latent"], counts["G_n_latent_expand"])
    assert _count(d) == counts["D_total"]
    assert _count(d.image) == counts["D_img_branch"]
    assert _count(d.segmentation) == counts["D_seg_branch"]
    assert _count(d.final_conv) == counts["D_final_conv"]
    assert _count(d.final_linear) + _count(d.out) == counts["D_final_linear"]


@pytest.mark.parametrize("name", ["512", "256", "64"])
def test_official_layout_equals_the_keys_file(name: str) -> None:
    spec = _spec()[name]
    cfg = config_from_official_args(spec["args"])
    ours = official_layout(cfg)
    ref = official_layout_ref(dict(spec["args"]))
    for net in ("g_ema", "d"):
        expected = {k: tuple(v) for k, v in spec[net].items()}
        assert ours[net] == expected
        assert ref[net] == expected  # the reference's own layout is right too
        buffers = set(spec[f"{net}_buffers"])
        assert buffers == {k for k, t in official_key_map(cfg)[net].items() if t.key is None} | {
            k for k in expected if "noises.noise_" in k
        }


@pytest.mark.parametrize("name", ["512", "256"])
def test_every_official_key_maps_onto_our_parameters(name: str) -> None:
    """Each official tensor fills one of ours (or one part slot of a grouped one) with the same element count,
    every element of ours is filled exactly once, and only FIR kernels are left unmapped."""
    spec = _spec()[name]
    cfg = config_from_official_args(spec["args"])
    key_map = official_key_map(cfg)
    with torch.device("meta"):
        nets = {"g_ema": SemanticGenerator(cfg), "d": DualBranchDiscriminator(cfg)}
    for net, module in nets.items():
        ours = {k: v.shape for k, v in module.state_dict().items()}
        filled: dict[str, int] = dict.fromkeys(ours, 0)
        for key, shape in spec[net].items():
            target = key_map[net][key]
            numel = int(torch.Size(shape).numel())
            if target.key is None:
                assert key.endswith(".kernel") and shape == [4, 4]
                continue
            our_shape = ours[target.key]
            if target.part is None:
                assert our_shape.numel() == numel, key
            else:
                assert 0 <= target.part < our_shape[0] and our_shape[1:].numel() == numel, key
            filled[target.key] += numel
        assert filled == {k: s.numel() for k, s in ours.items()}


def test_converter_names_missing_unexpected_and_misshaped_keys() -> None:
    state = _official_state(TINY, "g_ema", 0)
    bad = dict(state)
    del bad["local_nets.1.to_depth.bias"]
    bad["local_nets.0.to_depth.bias"] = torch.zeros(1, 1, 1, 1)
    with pytest.raises(ConversionError, match=r"1 missing \(local_nets\.1\.to_depth\.bias\).*local_nets\.0\.to_d"):
        convert_official_generator(bad, TINY)
    bad = dict(state)
    bad["style.1.weight"] = torch.zeros(3, 3)
    with pytest.raises(ConversionError, match=r"style\.1\.weight: official shape \[3, 3\]"):
        convert_official_generator(bad, TINY)
    bad = dict(state)
    bad["render_net.convs.0.blur.kernel"] = torch.ones(4, 4)
    with pytest.raises(ConversionError, match="blur kernel"):
        convert_official_generator(bad, TINY)
    with pytest.raises(ConversionError, match="missing"):
        convert_official_discriminator(_official_state(SMALL_PLAIN, "d", 0), TINY)


# ----------------------------------------------------------------------------------------------------------
# Agreement with the literal reference (float64)
# ----------------------------------------------------------------------------------------------------------


def _loaded(cfg: SemanticConfig, seed: int) -> tuple[SemanticGenerator, dict[str, torch.Tensor]]:
    state = _official_state(cfg, "g_ema", seed)
    g = SemanticGenerator(cfg).double().eval()
    g.load_state_dict(convert_official_generator(state, cfg))  # strict: every key of ours filled
    return g, state


def _noise(g: SemanticGenerator, n: int, gen: torch.Generator) -> list[torch.Tensor]:
    return [torch.randn(n, 1, c.noise_const.shape[-1], c.noise_const.shape[-1], generator=gen).double()
            for c in g.render.convs]


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    err = (a - b).abs().max().item()
    assert err <= 1e-5 * max(1.0, b.abs().max().item()), err


@pytest.mark.parametrize("name", list(CONFIGS))
def test_generator_equals_reference(name: str) -> None:
    cfg = CONFIGS[name]
    g, state = _loaded(cfg, seed=1)
    ref_cfg = _ref_config(cfg)
    gen = torch.Generator().manual_seed(2)
    n = 3
    latents = torch.randn(n, cfg.n_latent, cfg.style_dim, generator=gen).double()
    noise = _noise(g, n, gen)
    with torch.no_grad():
        out = g.synthesize(latents, noise=noise, return_parts=True)
    ref = generator_ref(state, ref_cfg, latents, noise)
    assert out.image.shape == (n, 3, cfg.size, cfg.size) and out.segmentation.shape == (n, cfg.seg_dim, cfg.size,
                                                                                         cfg.size)
    _close(out.image, ref["rgb"])
    _close(out.segmentation, ref["seg"])
    _close(out.coarse_segmentation, ref["seg_coarse"])
    _close(out.depths, ref["depths"])
    _close(out.masks, ref["masks"])
    _close(out.weights, ref["weights"])
    assert out.image.std() > 0.05 and out.segmentation.std() > 0.05  # not a trivially constant output

    # expanded latents (e.g. optimised per layer), a composition mask, the stored noise maps
    expanded = torch.randn(n, cfg.n_latent_expanded, cfg.style_dim, generator=gen).double()
    mask = (torch.rand(n, cfg.seg_dim, generator=gen) > 0.4).double()
    mask[:, 0] = 1
    with torch.no_grad():
        out = g.synthesize(expanded, composition_mask=mask, randomize_noise=False, return_parts=True)
    fixed = [state[f"render_net.noises.noise_{i}"] for i in range(len(g.render.convs))]
    ref = generator_ref(state, ref_cfg, expanded, fixed, composition_mask=mask)
    _close(out.image, ref["rgb"])
    _close(out.segmentation, ref["seg"])
    _close(out.masks, ref["masks"])


def test_sampling_with_truncation_equals_reference() -> None:
    cfg = TINY
    g, state = _loaded(cfg, seed=3)
    gen = torch.Generator().manual_seed(4)
    z = torch.randn(2, cfg.style_dim, generator=gen).double()
    noise = _noise(g, 2, gen)
    mean = g.mean_latent(64)
    assert mean.shape == (1, cfg.style_dim) and torch.equal(mean, g.mean_latent(64))
    with torch.no_grad():
        out = g(z, truncation=0.7, truncation_latent=mean, noise=noise)
    w = mapping_ref(state, z, lr_mul=cfg.lr_mlp)
    _close(g.mapping(z), w)
    w_plus = (mean + 0.7 * (w - mean)).unsqueeze(1).repeat(1, cfg.n_latent, 1)
    ref = generator_ref(state, _ref_config(cfg), w_plus, noise)
    _close(out.image, ref["rgb"])
    _close(out.segmentation, ref["seg"])
    # one z per W+ slot is mapped slot by slot
    z_plus = torch.randn(2, cfg.n_latent, cfg.style_dim, generator=gen).double()
    with torch.no_grad():
        out = g(z_plus, noise=noise)
    w_slots = torch.stack([mapping_ref(state, z_plus[:, i], lr_mul=cfg.lr_mlp) for i in range(cfg.n_latent)], 1)
    _close(out.image, generator_ref(state, _ref_config(cfg), w_slots, noise)["rgb"])
    with pytest.raises(ValueError, match="truncation_latent"):
        g(z, truncation=0.5)


@pytest.mark.parametrize("name", ["tiny", "small-transparent"])
def test_discriminator_equals_reference(name: str) -> None:
    cfg = CONFIGS[name]
    state = _official_state(cfg, "d", seed=5)
    d = DualBranchDiscriminator(cfg).double().eval()
    d.load_state_dict(convert_official_discriminator(state, cfg))
    gen = torch.Generator().manual_seed(6)
    for n in (4, 8):
        img = torch.randn(n, 3, cfg.size, cfg.size, generator=gen).double()
        seg = torch.randn(n, cfg.seg_dim, cfg.size, cfg.size, generator=gen).double()
        with torch.no_grad():
            both, image_only = d(img, seg), d(img)
        _close(both, discriminator_ref(state, img, seg))
        _close(image_only, discriminator_ref(state, img, None))
        assert (both - image_only).abs().max() > 1e-3  # the segmentation branch contributes


# ----------------------------------------------------------------------------------------------------------
# Fusion invariants
# ----------------------------------------------------------------------------------------------------------


def test_fusion_invariants_on_generated_parts() -> None:
    cfg = TINY  # class 3 transparent
    torch.manual_seed(7)
    g = SemanticGenerator(cfg).double().eval()
    for layer in g.local.layers:  # spread the depths so masks range from ~0 to ~1
        layer.weight.data *= 3
    g.local.to_depth.weight.data *= 4
    with torch.no_grad():
        out = g(torch.randn(4, cfg.style_dim).double(), randomize_noise=False, return_parts=True)
    masks, depths, weights = out.masks, out.depths, out.weights
    assert torch.equal(depths[:, 0], torch.zeros_like(depths[:, 0]))  # background without depth
    assert depths[:, 1:].abs().min() > 0
    torch.testing.assert_close(masks, torch.softmax(depths, dim=1), rtol=0, atol=1e-12)
    torch.testing.assert_close(out.coarse_segmentation, 2 * masks - 1, rtol=0, atol=1e-12)
    opaque = [k for k in range(cfg.seg_dim) if k not in cfg.transparent_dims]
    s_o = masks[:, opaque].sum(1)
    torch.testing.assert_close(weights[:, opaque].sum(1), s_o / (s_o + 1e-8), rtol=0, atol=1e-12)
    assert (weights[:, opaque].sum(1) - 1).abs().max() < 1e-6  # ~1 wherever any opaque class is visible
    # transparent classes are added on top with their own mask value: total weight 1 + m_t
    assert torch.equal(weights[:, list(cfg.transparent_dims)], masks[:, list(cfg.transparent_dims)])
    total = weights.sum(1)
    torch.testing.assert_close(total, weights[:, opaque].sum(1) + masks[:, 3], rtol=0, atol=1e-12)
    assert total.max() > 1.3 and masks[:, 3].max() > 0.3


def test_fusion_functions_on_handmade_masks() -> None:
    depths = torch.tensor([0.0, 2.0, -1.0, 30.0]).view(1, 4, 1, 1).double()  # class 3 dominates
    masks = composite_masks(depths)
    assert masks.sum().item() == pytest.approx(1.0, abs=1e-12)
    weights = fusion_weights(masks, [3])
    s_o = masks[0, :3].sum()
    assert s_o < 1e-10  # opaque classes almost invisible: renormalised to s_o / (s_o + 1e-8), not 1
    torch.testing.assert_close(weights[0, :3].sum(), s_o / (s_o + 1e-8), rtol=0, atol=1e-15)
    assert weights[0, 3] == masks[0, 3]
    assert torch.equal(fusion_weights(masks, []), masks)
    # a composition mask drops classes and renormalises the rest
    depths = torch.tensor([0.0, 2.0, -1.0, 3.0]).view(1, 4, 1, 1).double()
    dropped = composite_masks(depths, torch.tensor([[1.0, 1.0, 0.0, 0.0]]).double())
    assert dropped[0, 2:].abs().max() == 0 and dropped[0, :2].sum().item() == pytest.approx(1.0, abs=1e-7)
    torch.testing.assert_close(dropped[0, :2], torch.softmax(depths[0, :2], dim=0), rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="composition_mask"):
        composite_masks(depths, torch.ones(1, 3))


def test_fused_feature_sum_equals_the_per_class_feature_maps_summed() -> None:
    """The official code builds K full feature maps and sums them with the weights; ours never builds them."""
    torch.manual_seed(10)
    head = PartLinear(5, 6, 7).double()
    head.modulation.data += 0.1 * torch.randn(5, 6).double()
    head.bias.data += torch.randn(5, 7).double()
    x, weights = torch.randn(2, 5, 6, 9).double(), torch.rand(2, 5, 9).double()
    per_class = head(x)  # [N, K, out, P]
    torch.testing.assert_close(head.weighted_sum(x, weights), (per_class * weights.unsqueeze(2)).sum(1))
    # as the depth head of classes 1..5 of a 6-class input: class 0 exactly 0, the others as the plain head
    x6 = torch.randn(2, 6, 6, 9).double()
    with_background = head.forward_with_background(x6)
    assert torch.equal(with_background[:, 0], torch.zeros(2, 7, 9).double())
    torch.testing.assert_close(with_background[:, 1:], head(x6[:, 1:]))


def test_depth_depends_on_base_and_shape_codes_only() -> None:
    cfg = TINY
    torch.manual_seed(8)
    g = SemanticGenerator(cfg).double().eval()
    latents = torch.randn(2, cfg.n_latent, cfg.style_dim).double()
    with torch.no_grad():
        before = g.synthesize(latents, randomize_noise=False, return_parts=True)
        changed = latents.clone()
        changed[:, texture_index(cfg, 2)] = torch.randn(2, cfg.style_dim).double()
        after_texture = g.synthesize(changed, randomize_noise=False, return_parts=True)
        changed = latents.clone()
        changed[:, shape_index(cfg, 2)] = torch.randn(2, cfg.style_dim).double()
        after_shape = g.synthesize(changed, randomize_noise=False, return_parts=True)
    assert torch.equal(before.depths, after_texture.depths)
    assert (before.image - after_texture.image).abs().max() > 1e-4
    assert (before.depths[:, 2] - after_shape.depths[:, 2]).abs().max() > 1e-4
    assert torch.equal(before.depths[:, [1, 3, 4]], after_shape.depths[:, [1, 3, 4]])


@pytest.mark.parametrize("detach", [False, True])
def test_detach_texture_stops_texture_gradients_into_shape_layers(detach: bool) -> None:
    """With a constant depth head, the first local layer of classes 1.. reaches the output only through the
    texture layers, which detach_texture cuts (the background is never detached, as official)."""
    cfg = TINY.replace(detach_texture=detach)
    torch.manual_seed(9)
    g = SemanticGenerator(cfg).double()
    g.local.to_depth.weight.data.zero_()
    out = g.synthesize(torch.randn(2, cfg.n_latent, cfg.style_dim).double(), randomize_noise=False)
    (out.image.sum() + out.segmentation.sum()).backward()
    grad = g.local.layers[0].weight.grad
    assert grad[0].abs().max() > 0
    assert (grad[1:].abs().max() == 0) == detach


def test_local_generators_are_one_grouped_computation() -> None:
    """The number of torch calls in a generator forward does not grow with the number of classes."""

    class Count(torch.overrides.TorchFunctionMode):
        calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            Count.calls += 1
            return func(*args, **(kwargs or {}))

    calls = []
    for k in (3, 9):
        cfg = TINY.replace(seg_dim=k, transparent_dims=(2,))
        g = SemanticGenerator(cfg).eval()
        latents = torch.randn(1, cfg.n_latent, cfg.style_dim)
        Count.calls = 0
        with torch.no_grad(), Count():
            g.synthesize(latents, randomize_noise=False)
        calls.append(Count.calls)
    assert calls[0] == calls[1] > 0


# ----------------------------------------------------------------------------------------------------------
# Latent layouts
# ----------------------------------------------------------------------------------------------------------


def test_official_latent_layout_28_and_130() -> None:
    cfg = SEMANTIC_PRESETS["semantic-512"].model
    assert (cfg.n_latent, cfg.n_latent_expanded) == (28, 130)
    assert [shape_index(cfg, k) for k in (0, 1, 12)] == [2, 4, 26]
    assert [texture_index(cfg, k) for k in (0, 1, 12)] == [3, 5, 27]
    index = expand_index(cfg).view(13, 10).tolist()
    assert index[0] == [2] * 6 + [3] * 4  # background: no base code
    assert index[1] == [0, 1, 4, 4, 4, 4, 5, 5, 5, 5]
    assert index[12] == [0, 1, 26, 26, 26, 26, 27, 27, 27, 27]
    with pytest.raises(LatentLayoutError, match="part"):
        shape_index(cfg, 13)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_expand_latents_equals_reference_and_passes_gradients(name: str) -> None:
    cfg = CONFIGS[name]
    w = torch.randn(2, cfg.n_latent, cfg.style_dim, requires_grad=True)
    expanded = expand_latents(cfg, w)
    assert torch.equal(expanded, expand_latents_ref(_ref_config(cfg), w))
    assert expand_latents(cfg, expanded) is expanded  # already expanded: unchanged
    expanded.sum().backward()
    counts = torch.bincount(expand_index(cfg), minlength=cfg.n_latent).float()
    torch.testing.assert_close(w.grad[0, :, 0], counts)  # every slot feeds as many layers as the layout says


def test_latent_shapes_are_checked() -> None:
    cfg = TINY
    g = SemanticGenerator(cfg)
    for bad in (torch.zeros(1, cfg.n_latent + 1, cfg.style_dim), torch.zeros(1, cfg.n_latent, cfg.style_dim + 1),
                torch.zeros(cfg.n_latent, cfg.style_dim)):
        with pytest.raises(LatentLayoutError, match="latents: expected"):
            g.synthesize(bad)
    with pytest.raises(LatentLayoutError, match="z: expected"):
        g(torch.zeros(2, cfg.style_dim + 1))
    with pytest.raises(ValueError, match="noise: expected"):
        g.synthesize(torch.zeros(1, cfg.n_latent, cfg.style_dim), noise=[torch.zeros(1, 1, 8, 8)])


def test_part_mix_takes_base_from_w1_and_shape_texture_per_choice() -> None:
    cfg = TINY
    w1, w2 = torch.zeros(2, cfg.style_dim), torch.ones(2, cfg.style_dim)
    choice = torch.tensor([[0, 1, 2, 0, 1], [2, 2, 1, 0, 0]])
    mixed = part_mix(cfg, w1, w2, choice)
    assert mixed.shape == (2, cfg.n_latent, cfg.style_dim)
    values = mixed[..., 0]
    assert values[:, : cfg.base_layers].eq(0).all()
    for n in range(2):
        for k in range(cfg.seg_dim):
            c = int(choice[n, k])
            assert values[n, shape_index(cfg, k)] == (1.0 if c == 2 else 0.0)
            assert values[n, texture_index(cfg, k)] == (1.0 if c >= 1 else 0.0)
    drawn = part_mix(cfg, w1, w2, generator=torch.Generator().manual_seed(0))
    assert set(drawn[..., 0].unique().tolist()) == {0.0, 1.0}


# ----------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (dict(size=64, coarse_size=24, min_feat_size=8), "coarse_size"),  # accepted officially, never reached
        (dict(size=64, coarse_size=32, min_feat_size=12), "min_feat_size"),
        (dict(size=64, coarse_size=64, min_feat_size=8), "coarse_size"),
        (dict(size=64, coarse_size=32, min_feat_size=32), "min_feat_size"),
        (dict(depth_layers=11), "depth_layers"),
        (dict(depth_layers=0), "depth_layers"),
        (dict(base_layers=7), "base_layers"),
        (dict(transparent_dims=(0,)), "transparent_dims"),
        (dict(transparent_dims=(13,)), "transparent_dims"),
        (dict(transparent_dims=(12, 10)), "transparent_dims"),
        (dict(transparent_dims=[10, 12]), "transparent_dims"),
        (dict(size=100), "size"),
        (dict(size=2048), "size"),
        (dict(seg_dim=1), "seg_dim"),
        (dict(seg_dim=10_000), "seg_dim"),
        (dict(style_dim=1 << 20), "style_dim"),
        (dict(local_channel=1 << 16), "local_channel"),
        (dict(coarse_channel=1 << 16), "coarse_channel"),
        (dict(local_layers=1000, depth_layers=6), "local_layers"),
        (dict(n_mlp=True), "n_mlp"),
        (dict(channel_base=1 << 30), "channel_base"),
        (dict(channel_max=0), "channel_max"),
        (dict(lr_mlp=0.0), "lr_mlp"),
        (dict(lr_mlp=float("nan")), "lr_mlp"),
        (dict(residual_refine=1), "residual_refine"),
    ],
)
def test_refused_configs_name_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}:"):
        SemanticConfig(**changes)


def test_configs_the_official_code_builds_at_64px_are_accepted() -> None:
    for coarse, min_feat in ((32, 8), (32, 16), (16, 4), (16, 8), (32, 4)):
        cfg = SemanticConfig(size=64, coarse_size=coarse, min_feat_size=min_feat)
        assert cfg.render_resolutions[-1] == 64 and coarse // 2 in [cfg.min_feat_size, *cfg.render_resolutions]


def test_config_round_trips_through_json_and_carries_its_family() -> None:
    for preset in SEMANTIC_PRESETS.values():
        data = json.loads(json.dumps(preset.model.to_dict()))
        assert data["family"] == "semanticstylegan" == SemanticConfig.family
        assert SemanticConfig.from_dict(data) == preset.model
    data = TINY.to_dict()
    with pytest.raises(ConfigError, match="family"):
        SemanticConfig.from_dict({**data, "family": "stylemapgan"})
    with pytest.raises(ConfigError, match="unknown semantic model config field"):
        SemanticConfig.from_dict({**data, "latent_channels": 64})
    with pytest.raises(ConfigError, match="unknown model config field"):
        ModelConfig.from_dict(data)  # a StyleMapGAN reader refuses a semantic config


def test_official_presets_match_the_official_training_args() -> None:
    spec = _spec()
    for size in (512, 256):
        official = config_from_official_args(spec[str(size)]["args"])
        assert SEMANTIC_PRESETS[f"semantic-{size}"].model == official
        assert official.transparent_dims == (10, 12) and official.residual_refine
    assert dataclasses.asdict(SEMANTIC_PRESETS["semantic-256"].model)["min_feat_size"] == 16


def test_small_presets_build_and_run() -> None:
    counts = parameter_counts(SEMANTIC_PRESETS["semantic-cpu-64"].model)
    assert 1_000_000 <= counts["generator"] <= 3_000_000
    cfg = TINY
    g, d = SemanticGenerator(cfg), DualBranchDiscriminator(cfg)
    out = g(torch.randn(4, cfg.style_dim))
    assert out.image.shape == (4, 3, 32, 32) and out.masks is None
    assert d(out.image, out.segmentation).shape == (4, 1)
    assert "parts=5" in repr(g.local.layers[0]) and "upsample=True" in repr(g.render.convs[0])
