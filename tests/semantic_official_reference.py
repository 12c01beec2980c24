"""An independent, deliberately literal reference of the official SemanticStyleGAN forward passes.

Written from the spec (shared/spec/semanticstylegan.md, sections 1-7 and 12) and the official key layout
(shared/spec/semanticstylegan-checkpoint-keys.json). It imports nothing from `stylemapgan`: every function works
on a state dict in the OFFICIAL key layout and computes the way the official code does (a Python loop over the
classes, one local generator each; per-sample modulated weights run as a grouped conv; K full feature maps summed
with the mask weights; upfirdn2d written out as zero insertion, padding and a flipped-kernel conv, with the kernel
buffers read from the state dict), so that agreement with our grouped networks is a real cross-check.

Configs are plain dicts with the official argument names (size, seg_dim, latent, n_mlp, local_layers,
local_channel, coarse_channel, coarse_size, min_feat_size, base_layers, depth_layers, residual_refine,
transparent_dims, channel_multiplier), plus an optional "channels" table {resolution: width} that replaces the
official StyleGAN2 table for narrow test models.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

SQRT2 = math.sqrt(2.0)
State = dict[str, Tensor]
Config = dict[str, Any]


def official_channels(channel_multiplier: int = 2) -> dict[int, int]:
    cm = channel_multiplier
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}


def _channels(cfg: Config) -> dict[int, int]:
    return cfg.get("channels") or official_channels(cfg.get("channel_multiplier", 2))


# ----------------------------------------------------------------------------------------------------------
# Primitive official operations
# ----------------------------------------------------------------------------------------------------------


def make_kernel_ref(taps: list[float]) -> Tensor:
    t = torch.tensor(taps, dtype=torch.float32)
    t = t[None, :] * t[:, None]
    return t / t.sum()


def fused_lrelu_ref(x: Tensor, bias: Tensor) -> Tensor:
    shape = [1, -1] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), negative_slope=0.2) * SQRT2


def upfirdn2d_ref(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Insert up-1 zeros after every pixel, pad (before, after), convolve with the flipped kernel, keep every
    down-th pixel. The kernel is used as stored (including the x4 gain of upsampling kernels)."""
    n, c, h, w = x.shape
    if up > 1:
        zeros = torch.zeros(n, c, h * up, w * up, dtype=x.dtype)
        zeros[:, :, ::up, ::up] = x
        x = zeros
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    k = torch.flip(kernel, [0, 1]).to(x).view(1, 1, *kernel.shape)
    out = F.conv2d(x.reshape(n * c, 1, x.shape[2], x.shape[3]), k)
    out = out.view(n, c, out.shape[2], out.shape[3])
    return out[:, :, ::down, ::down]


def equal_linear_ref(x: Tensor, weight: Tensor, bias: Tensor, lr_mul: float = 1.0, activate: bool = False) -> Tensor:
    scale = (1.0 / math.sqrt(weight.shape[1])) * lr_mul
    if activate:
        return fused_lrelu_ref(F.linear(x, weight * scale), bias * lr_mul)
    return F.linear(x, weight * scale, bias=bias * lr_mul)


def pixel_norm_ref(x: Tensor) -> Tensor:
    return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


def styled_conv_1x1_ref(state: State, prefix: str, x: Tensor, style: Tensor) -> Tensor:
    """Official StyledConv(k=1, no noise): per-sample modulated + demodulated weight as a grouped conv, then
    fused leaky ReLU with `activate.bias`."""
    weight = state[f"{prefix}.conv.weight"]  # [1, out, in, 1, 1]
    _, out_ch, in_ch, kh, kw = weight.shape
    batch, _, h, w = x.shape
    s = equal_linear_ref(style, state[f"{prefix}.conv.modulation.weight"], state[f"{prefix}.conv.modulation.bias"])
    wgt = (1.0 / math.sqrt(in_ch * kh * kw)) * weight * s.view(batch, 1, in_ch, 1, 1)
    demod = torch.rsqrt(wgt.pow(2).sum([2, 3, 4]) + 1e-8)
    wgt = wgt * demod.view(batch, out_ch, 1, 1, 1)
    out = F.conv2d(x.reshape(1, batch * in_ch, h, w), wgt.view(batch * out_ch, in_ch, kh, kw), groups=batch)
    out = out.view(batch, out_ch, h, w)
    return fused_lrelu_ref(out, state[f"{prefix}.activate.bias"])


def fixed_to_rgb_ref(state: State, prefix: str, x: Tensor, skip: Tensor | None) -> Tensor:
    """The re-defined ToRGB: constant modulation, no demodulation, 1x1 conv, + bias, + upfirdn-upsampled skip."""
    weight = state[f"{prefix}.conv.weight"]  # [out, in, 1, 1]
    scale = 1.0 / math.sqrt(weight.shape[1])
    out = F.conv2d(x, state[f"{prefix}.conv.modulation"] * scale * weight) + state[f"{prefix}.bias"]
    if skip is not None:
        kernel = state[f"{prefix}.upsample.kernel"]
        p = kernel.shape[0] - 2
        out = out + upfirdn2d_ref(skip, kernel, up=2, pad=((p + 1) // 2 + 1, p // 2))
    return out


def fixed_styled_conv_ref(state: State, prefix: str, x: Tensor, noise: Tensor, upsample: bool) -> Tensor:
    """FixedStyledConv 3x3: constant modulation, demodulation, optional transposed-conv upsample + blur,
    noise injection, fused leaky ReLU."""
    weight = state[f"{prefix}.weight"]
    out_ch, in_ch, k, _ = weight.shape
    wgt = state[f"{prefix}.modulation"] * (1.0 / math.sqrt(in_ch * k * k)) * weight
    wgt = wgt * torch.rsqrt(wgt.pow(2).sum([1, 2, 3]) + 1e-8).view(out_ch, 1, 1, 1)
    if upsample:
        out = F.conv_transpose2d(x, wgt.transpose(0, 1), padding=0, stride=2)
        p = (4 - 2) - (k - 1)
        out = upfirdn2d_ref(out, state[f"{prefix}.blur.kernel"], pad=((p + 1) // 2 + 1, p // 2 + 1))
    else:
        out = F.conv2d(x, wgt, padding=k // 2)
    out = out + state[f"{prefix}.noise.weight"] * noise
    return fused_lrelu_ref(out, state[f"{prefix}.activate.bias"])


# ----------------------------------------------------------------------------------------------------------
# Generator
# ----------------------------------------------------------------------------------------------------------


def mapping_ref(state: State, z: Tensor, lr_mul: float = 0.01) -> Tensor:
    out = pixel_norm_ref(z)
    i = 1
    while f"style.{i}.weight" in state:
        out = equal_linear_ref(out, state[f"style.{i}.weight"], state[f"style.{i}.bias"], lr_mul, activate=True)
        i += 1
    return out


def expand_latents_ref(cfg: Config, latent: Tensor) -> Tensor:
    """W+ [N, base + 2K, D] -> [N, K * local_layers, D], written as the official loop."""
    k_parts, n_layers = cfg["seg_dim"], cfg["local_layers"]
    base, depth = cfg["base_layers"], cfg["depth_layers"]
    if latent.shape[1] == k_parts * n_layers:
        return latent
    assert latent.shape[1] == base + 2 * k_parts
    pieces = []
    for i in range(k_parts):
        shape_code = latent[:, 2 * i + base].unsqueeze(1)
        texture_code = latent[:, 2 * i + base + 1].unsqueeze(1)
        if i == 0:
            pieces.append(shape_code.repeat(1, depth, 1))
            pieces.append(texture_code.repeat(1, n_layers - depth, 1))
        else:
            pieces.append(latent[:, :base])
            pieces.append(shape_code.repeat(1, depth - base, 1))
            pieces.append(texture_code.repeat(1, n_layers - depth, 1))
    return torch.cat(pieces, 1)


def make_coords_ref(batch: int, size: int, dtype: torch.dtype) -> Tensor:
    x_channel = torch.linspace(-1, 1, size, dtype=dtype).view(1, 1, 1, -1).repeat(batch, 1, size, 1)
    y_channel = torch.linspace(-1, 1, size, dtype=dtype).view(1, 1, -1, 1).repeat(batch, 1, 1, size)
    return torch.cat((x_channel, y_channel), dim=1)


def position_embedding_ref(state: State, coords: Tensor, n_freqs: int) -> Tensor:
    out = [coords]
    for f in range(n_freqs):
        freq = 2.0**f
        out.append(torch.sin(freq * coords))
        out.append(torch.cos(freq * coords))
    out = torch.cat(out, 1)
    weight = state["pos_embed.weights"]
    return F.conv2d(out, weight / math.sqrt(weight.shape[1]))


def local_generator_ref(state: State, cfg: Config, part: int, x: Tensor, latent: Tensor) -> tuple[Tensor, Tensor]:
    prefix = f"local_nets.{part}"
    depth = torch.zeros(x.shape[0], 1, x.shape[2], x.shape[3], dtype=x.dtype)
    for i in range(cfg["local_layers"]):
        x = styled_conv_1x1_ref(state, f"{prefix}.linears.{i}", x, latent[:, i])
        if part > 0 and i == cfg["depth_layers"] - 1:
            depth = fixed_to_rgb_ref(state, f"{prefix}.to_depth", x, None)
    return fixed_to_rgb_ref(state, f"{prefix}.to_feat", x, None), depth


def composite_ref(
    cfg: Config, feats: list[Tensor], depths: list[Tensor], mask: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """-> (fused features, seg (the masks after the composition mask), the per-class weights)."""
    seg = F.softmax(torch.cat(depths, dim=1), dim=1)
    k_parts = cfg["seg_dim"]
    if mask is not None:
        seg = seg * mask.reshape(seg.shape[0], k_parts, 1, 1)
        seg = seg / (seg.sum(1, keepdim=True) + 1e-8)
    transparent = list(cfg.get("transparent_dims") or [])
    if transparent:
        opaque = torch.tensor([0.0 if i in transparent else 1.0 for i in range(k_parts)], dtype=seg.dtype)
        seg_normal = seg * opaque.view(1, -1, 1, 1)
        seg_normal = seg_normal / (seg_normal.sum(1, keepdim=True) + 1e-8)
        seg_trans = seg * (1.0 - opaque).view(1, -1, 1, 1)
        weights = seg_normal + seg_trans
    else:
        weights = seg
    feat = sum(feats[i] * weights[:, i : i + 1] for i in range(k_parts))
    return feat, seg, weights


def render_net_ref(
    state: State, cfg: Config, x: Tensor, noise: list[Tensor], skip_seg: Tensor | None
) -> tuple[Tensor, Tensor]:
    min_size, coarse = cfg["min_feat_size"], cfg["coarse_size"]
    n_stages = int(math.log2(cfg["size"])) - int(math.log2(min_size))
    x_orig, x = x, F.adaptive_avg_pool2d(x, (min_size, min_size))
    rgb = seg = None
    for i in range(n_stages):
        if x.shape[2] == coarse:
            x = torch.cat((x, x_orig), 1)
        x = fixed_styled_conv_ref(state, f"render_net.convs.{2 * i}", x, noise[2 * i], upsample=True)
        x = fixed_styled_conv_ref(state, f"render_net.convs.{2 * i + 1}", x, noise[2 * i + 1], upsample=False)
        rgb = fixed_to_rgb_ref(state, f"render_net.to_rgbs.{i}", x, rgb)
        seg = fixed_to_rgb_ref(state, f"render_net.to_segs.{i}", x, seg)
        if skip_seg is not None and seg.shape[2] == skip_seg.shape[2]:
            seg = seg + skip_seg
    return rgb, seg


def generator_ref(
    state: State, cfg: Config, latent: Tensor, noise: list[Tensor], composition_mask: Tensor | None = None
) -> dict[str, Tensor]:
    """W+ [N, base + 2K, D] or expanded latents -> {"rgb", "seg", "seg_coarse", "depths", "masks", "weights"}."""
    latent = expand_latents_ref(cfg, latent)
    n, n_layers = latent.shape[0], cfg["local_layers"]
    coords = make_coords_ref(n, cfg["coarse_size"], latent.dtype)
    n_freqs = int(math.log(cfg["size"], 2))
    feats, depths = [], []
    for k in range(cfg["seg_dim"]):
        x = position_embedding_ref(state, coords.clone(), n_freqs)
        feat, depth = local_generator_ref(state, cfg, k, x, latent[:, k * n_layers : (k + 1) * n_layers])
        feats.append(feat)
        depths.append(depth)
    feat, seg, weights = composite_ref(cfg, feats, depths, composition_mask)
    seg_coarse = 2 * seg - 1
    rgb, seg_out = render_net_ref(state, cfg, feat, noise, seg_coarse if cfg["residual_refine"] else None)
    return {
        "rgb": rgb, "seg": seg_out, "seg_coarse": seg_coarse, "depths": torch.cat(depths, 1), "masks": seg,
        "weights": weights,
    }


# ----------------------------------------------------------------------------------------------------------
# Discriminator
# ----------------------------------------------------------------------------------------------------------


def conv_layer_ref(state: State, prefix: str, x: Tensor, downsample: bool, activate: bool = True) -> Tensor:
    """Official ConvLayer = Sequential([Blur] if downsample, EqualConv2d, [FusedLeakyReLU])."""
    idx = 0
    if downsample:
        kernel = state[f"{prefix}.0.kernel"]
        k_conv = state[f"{prefix}.1.weight"].shape[-1]
        p = (kernel.shape[0] - 2) + (k_conv - 1)
        x = upfirdn2d_ref(x, kernel, pad=((p + 1) // 2, p // 2))
        idx = 1
    weight = state[f"{prefix}.{idx}.weight"]
    scale = 1.0 / math.sqrt(weight.shape[1] * weight.shape[2] * weight.shape[3])
    stride, padding = (2, 0) if downsample else (1, weight.shape[-1] // 2)
    x = F.conv2d(x, weight * scale, stride=stride, padding=padding)
    if activate:
        x = fused_lrelu_ref(x, state[f"{prefix}.{idx + 1}.bias"])
    return x


def res_block_ref(state: State, prefix: str, x: Tensor) -> Tensor:
    out = conv_layer_ref(state, f"{prefix}.conv1", x, downsample=False)
    out = conv_layer_ref(state, f"{prefix}.conv2", out, downsample=True)
    skip = conv_layer_ref(state, f"{prefix}.skip", x, downsample=True, activate=False)
    return (out + skip) / math.sqrt(2)


def _trunk_ref(state: State, name: str, x: Tensor) -> Tensor:
    x = conv_layer_ref(state, f"{name}.0", x, downsample=False)
    i = 1
    while f"{name}.{i}.conv1.0.weight" in state:
        x = res_block_ref(state, f"{name}.{i}", x)
        i += 1
    return x


def discriminator_ref(state: State, img: Tensor, seg: Tensor | None) -> Tensor:
    out = _trunk_ref(state, "convs_img", img)
    if seg is not None:
        out = out + _trunk_ref(state, "convs_seg", seg)
    batch, channel, h, w = out.shape
    group = min(batch, 4)
    stddev = out.view(group, -1, 1, channel, h, w)
    stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8)
    stddev = stddev.mean([2, 3, 4], keepdim=True).squeeze(2)
    stddev = stddev.repeat(group, 1, h, w)
    out = torch.cat([out, stddev], 1)
    out = conv_layer_ref(state, "final_conv", out, downsample=False)
    out = out.view(batch, -1)
    out = equal_linear_ref(out, state["final_linear.0.weight"], state["final_linear.0.bias"], activate=True)
    return equal_linear_ref(out, state["final_linear.1.weight"], state["final_linear.1.bias"])


# ----------------------------------------------------------------------------------------------------------
# Layout and random weights
# ----------------------------------------------------------------------------------------------------------


def official_layout_ref(cfg: Config) -> dict[str, dict[str, tuple[int, ...]]]:
    """{"g_ema": {key: shape}, "d": {key: shape}}, buffers included, for a config dict."""
    ch = _channels(cfg)
    sd, lc, cc, k_parts = cfg["latent"], cfg["local_channel"], cfg["coarse_channel"], cfg["seg_dim"]
    n_freqs = int(math.log(cfg["size"], 2))
    g: dict[str, tuple[int, ...]] = {}
    for i in range(1, cfg["n_mlp"] + 1):
        g[f"style.{i}.weight"] = (sd, sd)
        g[f"style.{i}.bias"] = (sd,)
    g["pos_embed.weights"] = (lc, 2 * (2 * n_freqs + 1), 1, 1)

    def to_rgb(prefix: str, in_ch: int, out_ch: int) -> None:
        g[f"{prefix}.conv.weight"] = (out_ch, in_ch, 1, 1)
        g[f"{prefix}.conv.modulation"] = (1, in_ch, 1, 1)
        g[f"{prefix}.bias"] = (1, out_ch, 1, 1)
        g[f"{prefix}.upsample.kernel"] = (4, 4)

    for k in range(k_parts):
        for i in range(cfg["local_layers"]):
            p = f"local_nets.{k}.linears.{i}"
            g[f"{p}.conv.weight"] = (1, lc, lc, 1, 1)
            g[f"{p}.conv.modulation.weight"] = (lc, sd)
            g[f"{p}.conv.modulation.bias"] = (lc,)
            g[f"{p}.activate.bias"] = (lc,)
        to_rgb(f"local_nets.{k}.to_feat", lc, cc)
        if k > 0:
            to_rgb(f"local_nets.{k}.to_depth", lc, 1)
    in_ch = cc
    stages = int(math.log2(cfg["size"])) - int(math.log2(cfg["min_feat_size"]))
    for i in range(stages):
        res = cfg["min_feat_size"] * 2 ** (i + 1)
        out_ch = ch[res]
        if res // 2 == cfg["coarse_size"]:
            in_ch += cc
        for j, c_in in ((2 * i, in_ch), (2 * i + 1, out_ch)):
            p = f"render_net.convs.{j}"
            g[f"{p}.weight"] = (out_ch, c_in, 3, 3)
            g[f"{p}.modulation"] = (1, c_in, 1, 1)
            if j == 2 * i:
                g[f"{p}.blur.kernel"] = (4, 4)
            g[f"{p}.noise.weight"] = (1,)
            g[f"{p}.activate.bias"] = (out_ch,)
            g[f"render_net.noises.noise_{j}"] = (1, 1, res, res)
        to_rgb(f"render_net.to_rgbs.{i}", out_ch, 3)
        to_rgb(f"render_net.to_segs.{i}", out_ch, k_parts)
        in_ch = out_ch

    d: dict[str, tuple[int, ...]] = {}
    size = cfg["size"]
    for name, in_dim in (("convs_img", 3), ("convs_seg", k_parts)):
        d[f"{name}.0.0.weight"] = (ch[size], in_dim, 1, 1)
        d[f"{name}.0.1.bias"] = (ch[size],)
        in_c = ch[size]
        for idx, log_r in enumerate(range(int(math.log2(size)), 2, -1), start=1):
            out_c = ch[2 ** (log_r - 1)]
            p = f"{name}.{idx}"
            d[f"{p}.conv1.0.weight"] = (in_c, in_c, 3, 3)
            d[f"{p}.conv1.1.bias"] = (in_c,)
            d[f"{p}.conv2.0.kernel"] = (4, 4)
            d[f"{p}.conv2.1.weight"] = (out_c, in_c, 3, 3)
            d[f"{p}.conv2.2.bias"] = (out_c,)
            d[f"{p}.skip.0.kernel"] = (4, 4)
            d[f"{p}.skip.1.weight"] = (out_c, in_c, 1, 1)
            in_c = out_c
    d["final_conv.0.weight"] = (ch[4], in_c + 1, 3, 3)
    d["final_conv.1.bias"] = (ch[4],)
    d["final_linear.0.weight"] = (ch[4], ch[4] * 16)
    d["final_linear.0.bias"] = (ch[4],)
    d["final_linear.1.weight"] = (1, ch[4])
    d["final_linear.1.bias"] = (1,)
    return {"g_ema": g, "d": d}


def random_official_state(
    net: str, layout: dict[str, tuple[int, ...]], generator: torch.Generator, lr_mul: float = 0.01,
    perturb: float = 0.1,
) -> State:
    """Values as the official init draws them (weights N(0, 1), mapping weights N(0, 1) / lr_mul, fixed noise
    N(0, 1)), but every parameter initialised to a constant (biases 0, modulation biases and constant
    modulations 1, noise strengths 0) moved away from it by `perturb`, so the comparison covers them. Kernels hold
    the official blur kernel (x4 in the generator, where every kernel follows an upsample)."""
    out: State = {}
    blur = make_kernel_ref([1, 3, 3, 1])
    for key, shape in layout.items():
        noise = perturb * torch.randn(shape, generator=generator)
        if key.endswith(".kernel"):
            out[key] = blur * 4 if net == "g_ema" else blur.clone()
        elif key.startswith("style.") and key.endswith(".weight"):
            out[key] = torch.randn(shape, generator=generator) / lr_mul
        elif key.startswith("style.") and key.endswith(".bias"):
            out[key] = noise / lr_mul
        elif key.endswith("modulation.bias") or key.endswith(".modulation"):
            out[key] = 1.0 + noise
        elif key.endswith(".bias") or key.endswith("noise.weight"):
            out[key] = noise
        else:  # conv / linear weights, the position embedding, the fixed noise maps
            out[key] = torch.randn(shape, generator=generator)
    return out
