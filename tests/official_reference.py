"""An independent, deliberately literal reference of the official StyleMapGAN forward passes.

Written from the project spec (shared/spec/stylemapgan.md, section 1) and the official checkpoint key layout
(shared/spec/official-checkpoint-keys.json) only. It imports nothing from `stylemapgan`: every function works
directly on a state dict in the OFFICIAL key layout and follows the official way of computing things
(per-sample repeated weights run as a grouped conv, transposed convs, the upfirdn2d reference blur with the
blur buffers stored in the state dict, a LayerNorm module built per call, ...), so that agreement with our
networks after conversion is a real cross-check and not the same code run twice.

It also holds `official_layout`, a generator of official-layout key -> shape tables for arbitrary sizes and
channel widths, and `random_official_state`, which fills such a table with values for testing.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SQRT2 = math.sqrt(2.0)
State = dict[str, Tensor]


# ----------------------------------------------------------------------------------------------------------
# Primitive official operations
# ----------------------------------------------------------------------------------------------------------


def make_kernel_ref(k: list[float]) -> Tensor:
    """The official blur kernel: outer product of the 1-D taps, normalised to sum 1."""
    t = torch.tensor(k, dtype=torch.float32)
    t = t[None, :] * t[:, None]
    return t / t.sum()


def fused_lrelu_ref(x: Tensor, bias: Tensor) -> Tensor:
    """Bias-act: add a per-channel bias, leaky ReLU slope 0.2, times sqrt(2)."""
    shape = [1, -1] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), negative_slope=0.2) * SQRT2


def upfirdn2d_ref(x: Tensor, kernel: Tensor, pad: tuple[int, int]) -> Tensor:
    """upfirdn2d with up = down = 1 as the StyleGAN2 native reference: pad, then a depthwise conv with the
    flipped kernel (the stored kernel is used as is, including the x4 of upsampling blurs)."""
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    out = x.reshape(n * c, 1, h, w)
    out = F.pad(out, [pad[0], pad[1], pad[0], pad[1]])
    weight = torch.flip(kernel, [0, 1]).view(1, 1, kh, kw).to(out)
    out = F.conv2d(out, weight)
    return out.reshape(n, c, out.shape[-2], out.shape[-1])


def fused_lrelu_native(x: Tensor, bias: Tensor) -> Tensor:
    """The same bias-act as the official CUDA kernel does it: one fresh output, activated and scaled in place
    (the gain out of place while autograd records: the in-place leaky ReLU's backward reads its result)."""
    shape = [1, -1] + [1] * (x.ndim - 2)
    out = F.leaky_relu_(x + bias.view(shape), negative_slope=0.2)
    return out * SQRT2 if torch.is_grad_enabled() and out.requires_grad else out.mul_(SQRT2)


def upfirdn2d_native(x: Tensor, kernel: Tensor, pad: tuple[int, int]) -> Tensor:
    """upfirdn2d (up = down = 1) as competent plain PyTorch: one depthwise conv over all channels, the padding
    inside the conv when symmetric (as the CUDA kernel pads on the fly), not one single-channel conv of N*C maps."""
    channels = x.shape[1]
    weight = torch.flip(kernel, [0, 1]).to(x).expand(channels, 1, *kernel.shape).contiguous()
    if pad[0] == pad[1]:
        return F.conv2d(x, weight, padding=pad[0], groups=channels)
    return F.conv2d(F.pad(x, [pad[0], pad[1], pad[0], pad[1]]), weight, groups=channels)


@contextlib.contextmanager
def native_ops() -> Iterator[None]:
    """Run every function of this module with `upfirdn2d_native` and `fused_lrelu_native` in place of the literal
    primitives: the official math with plain-PyTorch versions of its two CUDA ops that are as competent on the CPU
    as the CUDA kernels are on a GPU (the honest baseline of benchmarks/bench_official.py)."""
    module = globals()
    saved = module["upfirdn2d_ref"], module["fused_lrelu_ref"]
    module["upfirdn2d_ref"], module["fused_lrelu_ref"] = upfirdn2d_native, fused_lrelu_native
    try:
        yield
    finally:
        module["upfirdn2d_ref"], module["fused_lrelu_ref"] = saved


def equal_conv_ref(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1, padding: int = 0) -> Tensor:
    """Equalised conv: weight [out, in, k, k] scaled by 1 / sqrt(in * k * k); lr_mul 1."""
    fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
    return F.conv2d(x, weight * (1.0 / math.sqrt(fan_in)), bias=bias, stride=stride, padding=padding)


def equal_conv_transpose_ref(x: Tensor, weight: Tensor) -> Tensor:
    """Equalised stride-2 transposed conv, padding 0; stored weight [out, in, k, k] used transposed."""
    fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
    return F.conv_transpose2d(x, weight.transpose(0, 1) * (1.0 / math.sqrt(fan_in)), stride=2, padding=0)


def equal_linear_ref(x: Tensor, weight: Tensor, bias: Tensor, lr_mul: float, activate: bool) -> Tensor:
    scale = (1.0 / math.sqrt(weight.shape[1])) * lr_mul
    if activate:
        return fused_lrelu_ref(F.linear(x, weight * scale), bias * lr_mul)
    return F.linear(x, weight * scale, bias=bias * lr_mul)


def pixel_norm_ref(x: Tensor) -> Tensor:
    return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


def normalize_ref(x: Tensor, mode: str, state: State, prefix: str) -> Tensor:
    if mode == "LayerNorm":
        return nn.LayerNorm(x.shape[1:], elementwise_affine=False)(x)
    if mode == "InstanceNorm2d":
        return nn.InstanceNorm2d(x.shape[1], affine=False)(x)
    if mode == "BatchNorm2d":  # eval mode: running statistics
        mean, var = state[f"{prefix}.norm.running_mean"], state[f"{prefix}.norm.running_var"]
        return (x - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + 1e-5)
    if mode == "none":
        return x
    raise ValueError(f"unknown normalize_mode {mode!r}")


# ----------------------------------------------------------------------------------------------------------
# Generator
# ----------------------------------------------------------------------------------------------------------


def mapping_ref(state: State, z: Tensor, latent_spatial_size: int, lr_mul: float = 0.01) -> Tensor:
    """z -> stylemap [N, C, s, s]: PixelNorm (module index 0), then mapping_z.1.. equalised linear + bias-act."""
    out = pixel_norm_ref(z)
    i = 1
    while f"mapping_z.{i}.weight" in state:
        out = equal_linear_ref(out, state[f"mapping_z.{i}.weight"], state[f"mapping_z.{i}.bias"], lr_mul, True)
        i += 1
    assert i > 1, "no mapping layers in the state dict"
    s = latent_spatial_size
    return out.view(z.shape[0], -1, s, s)


def modulated_conv_ref(
    state: State, prefix: str, x: Tensor, style: Tensor, upsample: bool, normalize_mode: str
) -> Tensor:
    """Official spatially-variant modulated conv (`prefix` is e.g. 'decoder.conv1'), including its bias-act."""
    batch, in_channel, height, width = x.shape
    weight5 = state[f"{prefix}.conv.weight"]  # [1, out, in, k, k]
    _, out_channel, w_in, k, _ = weight5.shape
    assert w_in == in_channel, (prefix, weight5.shape, x.shape)
    scale = 1.0 / math.sqrt(in_channel * k * k)

    gamma = equal_conv_ref(style, state[f"{prefix}.conv.gamma.weight"], state[f"{prefix}.conv.gamma.bias"], padding=1)
    beta = equal_conv_ref(style, state[f"{prefix}.conv.beta.weight"], state[f"{prefix}.conv.beta.bias"], padding=1)
    repeat = width // style.shape[3]
    if repeat != 1:
        gamma = gamma.repeat_interleave(repeat, dim=2).repeat_interleave(repeat, dim=3)
        beta = beta.repeat_interleave(repeat, dim=2).repeat_interleave(repeat, dim=3)

    weight = scale * weight5
    weight = weight.repeat(batch, 1, 1, 1, 1)  # per-sample copies, as the official grouped conv wants

    x = normalize_ref(x, normalize_mode, state, f"{prefix}.conv")
    x = x * gamma + beta

    if upsample:
        x = x.view(1, batch * in_channel, height, width)
        w = weight.view(batch, out_channel, in_channel, k, k).transpose(1, 2)
        w = w.reshape(batch * in_channel, out_channel, k, k)
        out = F.conv_transpose2d(x, w, padding=0, stride=2, groups=batch)
        out = out.view(batch, out_channel, out.shape[-2], out.shape[-1])
        out = upfirdn2d_ref(out, state[f"{prefix}.conv.blur.kernel"], pad=(1, 1))
    else:
        x = x.view(1, batch * in_channel, height, width)
        out = F.conv2d(x, weight.view(batch * out_channel, in_channel, k, k), padding=k // 2, groups=batch)
        out = out.view(batch, out_channel, out.shape[-2], out.shape[-1])
    return fused_lrelu_ref(out, state[f"{prefix}.activate.bias"])


def resizer_ref(state: State, stylemap: Tensor) -> list[Tensor]:
    """decoder.convs_latent: every layer's output is one style tensor."""
    outs = []
    out = stylemap
    j = 0
    while f"decoder.convs_latent.{j}.0.weight" in state:
        p = f"decoder.convs_latent.{j}"
        if f"{p}.1.kernel" in state:  # upsampling layer: transposed conv, blur (1, 1), bias-act
            out = equal_conv_transpose_ref(out, state[f"{p}.0.weight"])
            out = upfirdn2d_ref(out, state[f"{p}.1.kernel"], pad=(1, 1))
            out = fused_lrelu_ref(out, state[f"{p}.2.bias"])
        else:
            out = equal_conv_ref(out, state[f"{p}.0.weight"], padding=1)
            out = fused_lrelu_ref(out, state[f"{p}.1.bias"])
        outs.append(out)
        j += 1
    return outs


def decoder_ref(state: State, stylemap: Tensor, normalize_mode: str = "LayerNorm") -> Tensor:
    return synthesis_ref(state, resizer_ref(state, stylemap), normalize_mode)


def synthesis_ref(state: State, styles: list[Tensor], normalize_mode: str = "LayerNorm") -> Tensor:
    """The decoder after its resizer: the constant (repeated to the styles' batch), conv1 with style tensor 0,
    every residual block with tensors 2i+1 and 2i+2, to_rgb with the last (the official edits blend here)."""
    batch = styles[0].shape[0]
    const = state["decoder.input.input"]
    out = const.repeat(batch, 1, 1, 1)
    out = modulated_conv_ref(state, "decoder.conv1", out, styles[0], False, normalize_mode)
    i = 0
    while f"decoder.convs.{i}.conv1.conv.weight" in state:
        p = f"decoder.convs.{i}"
        skip_in = out
        h = modulated_conv_ref(state, f"{p}.conv1", out, styles[2 * i + 1], True, normalize_mode)
        h = modulated_conv_ref(state, f"{p}.conv2", h, styles[2 * i + 2], False, normalize_mode)
        skip = equal_conv_transpose_ref(skip_in, state[f"{p}.skip.0.weight"])
        skip = upfirdn2d_ref(skip, state[f"{p}.skip.1.kernel"], pad=(2, 2))
        out = (h + skip) / SQRT2
        i += 1
    assert len(styles) == 2 * i + 2, (len(styles), i)
    return modulated_conv_ref(state, "decoder.to_rgb", out, styles[-1], False, normalize_mode)


def generator_ref(
    state: State, z: Tensor, latent_spatial_size: int, lr_mul: float = 0.01, normalize_mode: str = "LayerNorm"
) -> Tensor:
    return decoder_ref(state, mapping_ref(state, z, latent_spatial_size, lr_mul), normalize_mode)


# ----------------------------------------------------------------------------------------------------------
# Encoder and discriminator
# ----------------------------------------------------------------------------------------------------------


def conv_layer_ref(state: State, prefix: str, x: Tensor, k: int) -> Tensor:
    """ConvLayer without resampling: `.0.weight` conv (padding k // 2), `.1.bias` bias-act."""
    return fused_lrelu_ref(equal_conv_ref(x, state[f"{prefix}.0.weight"], padding=k // 2), state[f"{prefix}.1.bias"])


def res_down_block_ref(state: State, prefix: str, x: Tensor) -> Tensor:
    out = conv_layer_ref(state, f"{prefix}.conv1", x, 3)
    out = upfirdn2d_ref(out, state[f"{prefix}.conv2.0.kernel"], pad=(2, 2))
    out = equal_conv_ref(out, state[f"{prefix}.conv2.1.weight"], stride=2, padding=0)
    out = fused_lrelu_ref(out, state[f"{prefix}.conv2.2.bias"])
    skip = upfirdn2d_ref(x, state[f"{prefix}.skip.0.kernel"], pad=(1, 1))
    skip = equal_conv_ref(skip, state[f"{prefix}.skip.1.weight"], stride=2, padding=0)
    return (out + skip) / SQRT2


def encoder_ref(state: State, image: Tensor) -> Tensor:
    out = conv_layer_ref(state, "from_rgb", image, 1)
    i = 0
    while f"convs.{i}.conv1.0.weight" in state:
        out = res_down_block_ref(state, f"convs.{i}", out)
        i += 1
    return conv_layer_ref(state, "final_conv", out, 3)


def minibatch_stddev_ref(x: Tensor, group_size: int = 4, n_feat: int = 1) -> Tensor:
    batch, channel, height, width = x.shape
    group = min(batch, group_size)
    s = x.view(group, -1, n_feat, channel // n_feat, height, width)
    s = torch.sqrt(s.var(0, unbiased=False) + 1e-8)
    s = s.mean([2, 3, 4], keepdim=True).squeeze(2)
    s = s.repeat(group, 1, height, width)
    return torch.cat([x, s], 1)


def discriminator_ref(state: State, image: Tensor) -> Tensor:
    out = conv_layer_ref(state, "convs.0", image, 1)
    i = 1
    while f"convs.{i}.conv1.0.weight" in state:
        out = res_down_block_ref(state, f"convs.{i}", out)
        i += 1
    out = minibatch_stddev_ref(out)
    out = conv_layer_ref(state, "final_conv", out, 3)
    out = out.view(out.shape[0], -1)
    out = equal_linear_ref(out, state["final_linear.0.weight"], state["final_linear.0.bias"], 1.0, True)
    return equal_linear_ref(out, state["final_linear.1.weight"], state["final_linear.1.bias"], 1.0, False)


# ----------------------------------------------------------------------------------------------------------
# Official-layout state-dict tables and random state dicts
# ----------------------------------------------------------------------------------------------------------


def official_channel_table(channel_multiplier: int = 2) -> Callable[[int], int]:
    table = {
        4: 512,
        8: 512,
        16: 512,
        32: 512,
        64: 256 * channel_multiplier,
        128: 128 * channel_multiplier,
        256: 64 * channel_multiplier,
        512: 32 * channel_multiplier,
        1024: 16 * channel_multiplier,
    }
    return table.__getitem__


def official_layout(
    size: int,
    latent_spatial_size: int,
    channels: Callable[[int], int],
    latent_channels: int = 64,
    mapping_layers: int = 8,
    small_generator: bool = False,
    normalize_mode: str = "LayerNorm",
) -> dict[str, dict[str, tuple[int, ...]]]:
    """Key -> shape of g_ema, e_ema and d in the official layout, in the official registration order."""
    s = latent_spatial_size
    ch = channels
    lc = latent_channels

    def style_ch(r: int) -> int:
        return lc if small_generator else ch(r)

    g: dict[str, tuple[int, ...]] = {}
    for i in range(1, mapping_layers + 1):
        out_dim = lc * s * s if i == mapping_layers else lc
        g[f"mapping_z.{i}.weight"] = (out_dim, lc)
        g[f"mapping_z.{i}.bias"] = (out_dim,)

    def modulated(prefix: str, cin: int, cout: int, k: int, style: int, up: bool) -> None:
        g[f"{prefix}.conv.weight"] = (1, cout, cin, k, k)
        if up:
            g[f"{prefix}.conv.blur.kernel"] = (4, 4)
        for part in ("gamma", "beta"):
            g[f"{prefix}.conv.{part}.weight"] = (cin, style, 3, 3)
            g[f"{prefix}.conv.{part}.bias"] = (cin,)
        if normalize_mode == "BatchNorm2d":
            g[f"{prefix}.conv.norm.running_mean"] = (cin,)
            g[f"{prefix}.conv.norm.running_var"] = (cin,)
            g[f"{prefix}.conv.norm.num_batches_tracked"] = ()
        g[f"{prefix}.activate.bias"] = (cout,)

    g["decoder.input.input"] = (1, ch(s), s, s)
    modulated("decoder.conv1", ch(s), ch(s), 3, style_ch(s), False)
    resolutions = []
    r = 2 * s
    while r <= size:
        resolutions.append(r)
        r *= 2
    for i, r in enumerate(resolutions):
        p = f"decoder.convs.{i}"
        modulated(f"{p}.conv1", ch(r // 2), ch(r), 3, style_ch(r // 2), True)
        modulated(f"{p}.conv2", ch(r), ch(r), 3, style_ch(r), False)
        g[f"{p}.skip.0.weight"] = (ch(r), ch(r // 2), 1, 1)
        g[f"{p}.skip.1.kernel"] = (4, 4)
    g["decoder.convs_latent.0.0.weight"] = (style_ch(s), lc, 3, 3)
    g["decoder.convs_latent.0.1.bias"] = (style_ch(s),)
    g["decoder.convs_latent.1.0.weight"] = (style_ch(s), style_ch(s), 3, 3)
    g["decoder.convs_latent.1.1.bias"] = (style_ch(s),)
    j = 2
    for r in resolutions:
        g[f"decoder.convs_latent.{j}.0.weight"] = (style_ch(r), style_ch(r // 2), 3, 3)
        g[f"decoder.convs_latent.{j}.1.kernel"] = (4, 4)
        g[f"decoder.convs_latent.{j}.2.bias"] = (style_ch(r),)
        g[f"decoder.convs_latent.{j + 1}.0.weight"] = (style_ch(r), style_ch(r), 3, 3)
        g[f"decoder.convs_latent.{j + 1}.1.bias"] = (style_ch(r),)
        j += 2
    modulated("decoder.to_rgb", ch(size), 3, 1, style_ch(size), False)

    def res_block(table: dict[str, tuple[int, ...]], p: str, cin: int, cout: int) -> None:
        table[f"{p}.conv1.0.weight"] = (cin, cin, 3, 3)
        table[f"{p}.conv1.1.bias"] = (cin,)
        table[f"{p}.conv2.0.kernel"] = (4, 4)
        table[f"{p}.conv2.1.weight"] = (cout, cin, 3, 3)
        table[f"{p}.conv2.2.bias"] = (cout,)
        table[f"{p}.skip.0.kernel"] = (4, 4)
        table[f"{p}.skip.1.weight"] = (cout, cin, 1, 1)

    e: dict[str, tuple[int, ...]] = {"from_rgb.0.weight": (ch(size), 3, 1, 1), "from_rgb.1.bias": (ch(size),)}
    r, i = size, 0
    while r > s:
        res_block(e, f"convs.{i}", ch(r), ch(r // 2))
        r //= 2
        i += 1
    e["final_conv.0.weight"] = (lc, ch(s), 3, 3)
    e["final_conv.1.bias"] = (lc,)

    d: dict[str, tuple[int, ...]] = {"convs.0.0.weight": (ch(size), 3, 1, 1), "convs.0.1.bias": (ch(size),)}
    r, i = size, 1
    while r > 4:
        res_block(d, f"convs.{i}", ch(r), ch(r // 2))
        r //= 2
        i += 1
    d["final_conv.0.weight"] = (ch(4), ch(4) + 1, 3, 3)
    d["final_conv.1.bias"] = (ch(4),)
    d["final_linear.0.weight"] = (ch(4), ch(4) * 16)
    d["final_linear.0.bias"] = (ch(4),)
    d["final_linear.1.weight"] = (1, ch(4))
    d["final_linear.1.bias"] = (1,)
    return {"g_ema": g, "e_ema": e, "d": d}


def _is_upsampling_kernel(net: str, key: str) -> bool:
    return net == "g_ema"  # every blur in the generator follows a 2x upsample; E and D blurs downsample


def random_official_state(
    net: str,
    layout: dict[str, tuple[int, ...]],
    generator: torch.Generator,
    lr_mul: float = 0.01,
    perturb: float = 0.1,
    empty: bool = False,
) -> State:
    """Values for one network's table, as the official init would draw them (weights N(0,1), mapping weights
    N(0,1)/lr_mul, the constant N(0,1)) but with every bias (and the gamma/beta biases, the BatchNorm stats)
    moved away from its init by `perturb` so the comparison covers them. Blur buffers hold the official
    kernel, times 4 where it follows an upsample (the official stores the scaled one). `empty` skips values."""
    out: State = {}
    blur = make_kernel_ref([1, 3, 3, 1])
    for key, shape in layout.items():
        if key.endswith(".kernel"):
            out[key] = blur * 4 if _is_upsampling_kernel(net, key) else blur.clone()
        elif key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(100, dtype=torch.long)
        elif empty:
            out[key] = torch.empty(shape)
        elif key.endswith("running_var"):
            out[key] = 1.0 + perturb * torch.rand(shape, generator=generator) * 5
        elif key.endswith("running_mean"):
            out[key] = perturb * torch.randn(shape, generator=generator)
        elif key.startswith("mapping_z.") and key.endswith(".weight"):
            out[key] = torch.randn(shape, generator=generator) / lr_mul
        elif key.startswith("mapping_z.") and key.endswith(".bias"):
            out[key] = perturb * torch.randn(shape, generator=generator) / lr_mul
        elif key.endswith("gamma.bias"):
            out[key] = 1.0 + perturb * torch.randn(shape, generator=generator)
        elif key.endswith(".bias"):
            out[key] = perturb * torch.randn(shape, generator=generator)
        else:  # conv / linear weights and the learned constant
            out[key] = torch.randn(shape, generator=generator)
    return out
