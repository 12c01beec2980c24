"""The official SemanticStyleGAN state-dict layout and how each of its keys maps onto our networks.

Pure functions of a `SemanticConfig` (no file IO; reading official `.pt` files belongs to the checkpoint layer):
- `official_layout(config)`: every key and shape of the official `g_ema` and `d` state dicts (spec section 12;
  checked against the keys instantiated from the official code, shared/spec/semanticstylegan-checkpoint-keys.json);
- `official_key_map(config)`: official key -> `KeyTarget` (our key, and the part index where our grouped local
  generators stack the K per-class official tensors along their first axis; or a constant FIR kernel buffer, which
  we do not store);
- `convert_official_generator` / `convert_official_discriminator`: an official state dict -> ours, every key
  accounted for, and any missing, unexpected or mis-shaped key an error by name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stylemapgan.ops import make_blur_kernel
from stylemapgan.semantic.config import SemanticConfig
from stylemapgan.semantic.discriminator import DualBranchDiscriminator
from stylemapgan.semantic.generator import SemanticGenerator
from stylemapgan.semantic.layers import BLUR_TAPS

GENERATOR = "g_ema"
DISCRIMINATOR = "d"


class ConversionError(ValueError):
    """An official state dict does not fit the config: the message names the keys."""


@dataclass(frozen=True)
class KeyTarget:
    """Where one official tensor goes.

    key: our state-dict key, or None for a constant blur/upsample FIR kernel buffer (not stored by us; checked).
    part: for our grouped per-class tensors, the index along their first axis this official tensor fills
        (reshaped to the remaining shape); None: the whole tensor, reshaped to our shape.
    kernel_gain: for a kernel buffer, the official kernel's sum (4 after an upsample, 1 otherwise).
    """

    key: str | None
    part: int | None = None
    kernel_gain: float = 1.0


Entry = tuple[str, tuple[int, ...], KeyTarget]
KERNEL_SHAPE = (len(BLUR_TAPS), len(BLUR_TAPS))


def _generator_entries(cfg: SemanticConfig) -> Iterator[Entry]:
    sd, lc, cc, k_parts = cfg.style_dim, cfg.local_channel, cfg.coarse_channel, cfg.seg_dim
    for i in range(cfg.n_mlp):
        yield f"style.{i + 1}.weight", (sd, sd), KeyTarget(f"mapping_network.layers.{i}.weight")
        yield f"style.{i + 1}.bias", (sd,), KeyTarget(f"mapping_network.layers.{i}.bias")
    yield "pos_embed.weights", (lc, 2 * (2 * cfg.n_freqs + 1), 1, 1), KeyTarget("local.pos_embed.weight")
    for k in range(k_parts):
        pre = f"local_nets.{k}"
        for i in range(cfg.local_layers):
            ours = f"local.layers.{i}"
            yield f"{pre}.linears.{i}.conv.weight", (1, lc, lc, 1, 1), KeyTarget(f"{ours}.weight", k)
            yield f"{pre}.linears.{i}.conv.modulation.weight", (lc, sd), KeyTarget(f"{ours}.modulation_weight", k)
            yield f"{pre}.linears.{i}.conv.modulation.bias", (lc,), KeyTarget(f"{ours}.modulation_bias", k)
            yield f"{pre}.linears.{i}.activate.bias", (lc,), KeyTarget(f"{ours}.bias", k)
        heads = [("to_feat", cc, "local.to_feat", k)]
        if k > 0:
            heads.append(("to_depth", 1, "local.to_depth", k - 1))
        for name, out_ch, ours, index in heads:
            yield f"{pre}.{name}.conv.weight", (out_ch, lc, 1, 1), KeyTarget(f"{ours}.weight", index)
            yield f"{pre}.{name}.conv.modulation", (1, lc, 1, 1), KeyTarget(f"{ours}.modulation", index)
            yield f"{pre}.{name}.bias", (1, out_ch, 1, 1), KeyTarget(f"{ours}.bias", index)
            yield f"{pre}.{name}.upsample.kernel", KERNEL_SHAPE, KeyTarget(None, kernel_gain=4.0)
    in_ch = cc
    for i, res in enumerate(cfg.render_resolutions):
        if res // 2 == cfg.coarse_size:
            in_ch += cc
        out_ch = cfg.channels(res)
        for j, conv_in in ((2 * i, in_ch), (2 * i + 1, out_ch)):
            pre, ours = f"render_net.convs.{j}", f"render.convs.{j}"
            yield f"{pre}.weight", (out_ch, conv_in, 3, 3), KeyTarget(f"{ours}.weight")
            yield f"{pre}.modulation", (1, conv_in, 1, 1), KeyTarget(f"{ours}.modulation")
            if j % 2 == 0:
                yield f"{pre}.blur.kernel", KERNEL_SHAPE, KeyTarget(None, kernel_gain=4.0)
            yield f"{pre}.noise.weight", (1,), KeyTarget(f"{ours}.noise_weight")
            yield f"{pre}.activate.bias", (out_ch,), KeyTarget(f"{ours}.bias")
            yield f"render_net.noises.noise_{j}", (1, 1, res, res), KeyTarget(f"{ours}.noise_const")
        for name, out_dim in (("to_rgbs", 3), ("to_segs", cfg.seg_dim)):
            pre, ours = f"render_net.{name}.{i}", f"render.{name}.{i}"
            yield f"{pre}.conv.weight", (out_dim, out_ch, 1, 1), KeyTarget(f"{ours}.weight")
            yield f"{pre}.conv.modulation", (1, out_ch, 1, 1), KeyTarget(f"{ours}.modulation")
            yield f"{pre}.bias", (1, out_dim, 1, 1), KeyTarget(f"{ours}.bias")
            yield f"{pre}.upsample.kernel", KERNEL_SHAPE, KeyTarget(None, kernel_gain=4.0)
        in_ch = out_ch


def _discriminator_entries(cfg: SemanticConfig) -> Iterator[Entry]:
    ch = cfg.channels
    for official, ours, in_dim in (("convs_img", "image", 3), ("convs_seg", "segmentation", cfg.seg_dim)):
        yield f"{official}.0.0.weight", (ch(cfg.size), in_dim, 1, 1), KeyTarget(f"{ours}.from_input.weight")
        yield f"{official}.0.1.bias", (ch(cfg.size),), KeyTarget(f"{ours}.from_input.bias")
        r, i = cfg.size, 1
        while r > 4:
            pre, blk = f"{official}.{i}", f"{ours}.blocks.{i - 1}"
            c_in, c_out = ch(r), ch(r // 2)
            yield f"{pre}.conv1.0.weight", (c_in, c_in, 3, 3), KeyTarget(f"{blk}.conv1.weight")
            yield f"{pre}.conv1.1.bias", (c_in,), KeyTarget(f"{blk}.conv1.bias")
            yield f"{pre}.conv2.0.kernel", KERNEL_SHAPE, KeyTarget(None)
            yield f"{pre}.conv2.1.weight", (c_out, c_in, 3, 3), KeyTarget(f"{blk}.conv2.weight")
            yield f"{pre}.conv2.2.bias", (c_out,), KeyTarget(f"{blk}.conv2.bias")
            yield f"{pre}.skip.0.kernel", KERNEL_SHAPE, KeyTarget(None)
            yield f"{pre}.skip.1.weight", (c_out, c_in, 1, 1), KeyTarget(f"{blk}.skip.weight")
            r //= 2
            i += 1
    ch4 = ch(4)
    yield "final_conv.0.weight", (ch4, ch4 + 1, 3, 3), KeyTarget("final_conv.weight")
    yield "final_conv.1.bias", (ch4,), KeyTarget("final_conv.bias")
    yield "final_linear.0.weight", (ch4, ch4 * 16), KeyTarget("final_linear.weight")
    yield "final_linear.0.bias", (ch4,), KeyTarget("final_linear.bias")
    yield "final_linear.1.weight", (1, ch4), KeyTarget("out.weight")
    yield "final_linear.1.bias", (1,), KeyTarget("out.bias")


_ENTRIES = {GENERATOR: _generator_entries, DISCRIMINATOR: _discriminator_entries}


def official_layout(config: SemanticConfig) -> dict[str, dict[str, tuple[int, ...]]]:
    """{"g_ema": {key: shape}, "d": {key: shape}} of the official networks for this config (buffers included)."""
    return {net: {key: shape for key, shape, _ in entries(config)} for net, entries in _ENTRIES.items()}


def official_key_map(config: SemanticConfig) -> dict[str, dict[str, KeyTarget]]:
    """{"g_ema": {official key: KeyTarget}, "d": {...}}: where every official tensor goes in our state dicts."""
    return {net: {key: target for key, _, target in entries(config)} for net, entries in _ENTRIES.items()}


def config_from_official_args(args: Mapping[str, Any]) -> SemanticConfig:
    """Our config from the official training arguments (the checkpoint's `args` Namespace as a dict).

    style_dim is `latent` and n_mlp is hard-coded 8 in train.py; lr_mlp is the class default (make_model does
    not pass it); residual_refine and transparent_dims default off / empty like the official argument parser.
    `channel_base` / `channel_max` (our width extension) are read when present: official files never carry
    them, so they get the official channel table, while a narrow model of ours can be written in the official
    layout (tests do this to keep official-layout files small).
    """
    fields = dict(
        size=int(args["size"]), seg_dim=int(args["seg_dim"]), style_dim=int(args.get("latent", 512)),
        n_mlp=int(args.get("n_mlp", 8)), local_layers=int(args["local_layers"]),
        local_channel=int(args["local_channel"]), coarse_channel=int(args["coarse_channel"]),
        coarse_size=int(args["coarse_size"]), min_feat_size=int(args["min_feat_size"]),
        base_layers=int(args["base_layers"]), depth_layers=int(args["depth_layers"]),
        residual_refine=bool(args.get("residual_refine", False)),
        detach_texture=bool(args.get("detach_texture", False)),
        transparent_dims=tuple(int(d) for d in (args.get("transparent_dims") or ())),
        channel_multiplier=int(args.get("channel_multiplier", 2)),
    )
    if args.get("channel_base") is not None:
        fields["channel_base"] = int(args["channel_base"])
    if args.get("channel_max") is not None:
        fields["channel_max"] = int(args["channel_max"])
    return SemanticConfig(**fields)


def our_state_shapes(config: SemanticConfig, network: str) -> dict[str, tuple[int, ...]]:
    """Shapes of our state dict for "g_ema" or "d", built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        net: nn.Module = SemanticGenerator(config) if network == GENERATOR else DualBranchDiscriminator(config)
    return {key: tuple(value.shape) for key, value in net.state_dict().items()}


def _convert(state: Mapping[str, torch.Tensor], config: SemanticConfig, network: str) -> dict[str, torch.Tensor]:
    entries = list(_ENTRIES[network](config))
    expected = {key for key, _, _ in entries}
    missing = [key for key in expected if key not in state]
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise ConversionError(
            f"official {network} state dict does not match the config: "
            f"{len(missing)} missing ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}), "
            f"{len(unexpected)} unexpected ({', '.join(unexpected[:5])}{', ...' if len(unexpected) > 5 else ''})"
        )
    ours = our_state_shapes(config, network)
    out: dict[str, torch.Tensor] = {}
    filled: dict[str, set[int]] = {}
    for key, shape, target in entries:
        value = state[key]
        if tuple(value.shape) != shape:
            raise ConversionError(f"{key}: official shape {list(value.shape)}, the config expects {list(shape)}")
        if target.key is None:
            kernel = make_blur_kernel(BLUR_TAPS, target.kernel_gain)
            if not torch.allclose(value.detach().float().cpu(), kernel, atol=1e-6):
                raise ConversionError(f"{key}: not the [1, 3, 3, 1] blur kernel this network is built with")
            continue
        our_shape = ours[target.key]
        if target.part is None:
            out[target.key] = value.detach().reshape(our_shape).clone()
            continue
        stack = out.get(target.key)
        if stack is None:
            stack = out[target.key] = torch.empty(our_shape, dtype=value.dtype, device=value.device)
            filled[target.key] = set()
        stack[target.part] = value.detach().reshape(our_shape[1:])
        filled[target.key].add(target.part)
    for key, parts in filled.items():  # guaranteed by the layout; kept as a cheap invariant check
        if len(parts) != ours[key][0]:
            raise ConversionError(f"{key}: {len(parts)} of {ours[key][0]} parts filled")
    left = sorted(set(ours) - set(out))
    if left:
        raise ConversionError(f"no official tensor for our {', '.join(left)}")
    return out


def convert_official_generator(state: Mapping[str, torch.Tensor], config: SemanticConfig) -> dict[str, torch.Tensor]:
    """Official `g_ema` (or `g`) state dict -> our `SemanticGenerator` state dict."""
    return _convert(state, config, GENERATOR)


def convert_official_discriminator(
    state: Mapping[str, torch.Tensor], config: SemanticConfig
) -> dict[str, torch.Tensor]:
    """Official `d` state dict -> our `DualBranchDiscriminator` state dict."""
    return _convert(state, config, DISCRIMINATOR)
