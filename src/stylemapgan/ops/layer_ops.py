"""The few ops every equalised-lr layer is made of, in two implementations with one interface.

A layer holds one of these objects (`layer.ops`) and its single `forward` calls it, so the choice between the
plain and the fused math is made at the op (as NVlabs stylegan3's `bias_act(impl=...)` does), not in every layer:

- `ReferenceOps` ("ref"): the literal formulation: conv, blur with an explicit pad, bias, leaky ReLU, gain.
- `FastOps` ("fast", the default): the same numbers with fewer memory passes: the bias goes into the conv call,
  the activation gain and the output gain into the weight (g * lrelu(a) = lrelu(g * a) for g > 0), the leaky
  ReLU and the modulation's multiply-add run in place on fresh intermediates, the blur padding is done by the
  conv, a blur before a 1x1 stride-2 conv is evaluated only where needed, a 1x1 stride-2 transposed conv + blur
  becomes a 1x1 conv + depthwise transposed conv, 4-D inputs on CPU are laid out as its `LayoutPolicy` picks
  (channels-last for inference, where oneDNN convolutions run 1.3-1.5x faster; NCHW for wide layers while
  autograd records, where oneDNN's conv backward is faster), and the rescaled weights are kept between
  inference calls.

Every op takes the layer's stored tensors (weights N(0, 1) as [out, in, k, k], with their equalised-lr factor
`weight_gain`) and returns `gain * op(x)` for the layer's fixed output `gain` (e.g. a residual branch's
1/sqrt(2)). A `None` bias means no bias term; `activate` applies the scaled leaky ReLU after the bias. Both
implementations are autograd-safe; FastOps takes no in-place, out= or caching shortcut while autograd records
or under torch.compile, torch.export or the tracer (ONNX export).

Each layer owns its own `FastOps` instance, so the weight cache is per layer; copies and pickles start empty.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from stylemapgan.ops.bias_act import GAIN, add_, inplace_ok, leaky_relu_, needs_grad, scaled_leaky_relu, tracing
from stylemapgan.ops.blur import blur2d, blur2d_fast, upsample_conv2d, upsample_conv2d_fast

Tensor = torch.Tensor
CHANNELS_LAST = torch.channels_last


class LayerOps(abc.ABC):
    """The interface: what a layer may ask of its implementation."""

    name: ClassVar[str]

    @abc.abstractmethod
    def linear(
        self, x: Tensor, weight: Tensor, bias: Tensor | None, *, weight_gain: float, bias_gain: float = 1.0,
        activate: bool = False, gain: float = 1.0,
    ) -> Tensor:
        """`gain * act(x @ (weight * weight_gain).T + bias * bias_gain)`."""

    @abc.abstractmethod
    def conv2d(
        self, x: Tensor, weight: Tensor, bias: Tensor | None, *, weight_gain: float, padding: int,
        activate: bool = False, gain: float = 1.0,
    ) -> Tensor:
        """Stride-1 conv with zero `padding`, then bias (+ activation), times `gain`."""

    @abc.abstractmethod
    def down_conv2d(
        self, x: Tensor, weight: Tensor, bias: Tensor | None, blur_kernel: Tensor, blur_pad: tuple[int, int], *,
        weight_gain: float, activate: bool = False, gain: float = 1.0,
    ) -> Tensor:
        """Blur (padded by `blur_pad`), then an unpadded stride-2 conv, then bias (+ activation), times `gain`."""

    @abc.abstractmethod
    def up_conv2d(
        self, x: Tensor, weight: Tensor, bias: Tensor | None, blur_kernel: Tensor, blur_pad: tuple[int, int], *,
        weight_gain: float, activate: bool = False, gain: float = 1.0,
    ) -> Tensor:
        """Stride-2 transposed conv, then blur (padded by `blur_pad`), then bias (+ activation), times `gain`."""

    @abc.abstractmethod
    def modulate(self, x: Tensor, norm: nn.Module, gamma_beta: Tensor) -> Tensor:
        """`norm(x) * gamma + beta`, gamma_beta being [gamma | beta] along channels."""

    @abc.abstractmethod
    def residual_sum(self, a: Tensor, b: Tensor) -> Tensor:
        """`a + b` for two fresh branch outputs (their 1/sqrt(2) is already in the branches' gains)."""

    @abc.abstractmethod
    def conv2d_patches(self, patches: Tensor, weight: Tensor, bias: Tensor | None, *, weight_gain: float) -> Tensor:
        """The conv (plus bias) at P pixels from their gathered k x k input neighbourhoods [P, k*k, C] (or
        [P, k*k*C]) in (ky, kx, c) order, i.e. one row of im2col per pixel: [P, out]."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _with_gain(x: Tensor, gain: float) -> Tensor:
    return x if gain == 1.0 else x * gain


def _bias_act(x: Tensor, bias: Tensor | None, activate: bool) -> Tensor:
    if bias is not None:
        x = x + bias.view([1, -1] + [1] * (x.ndim - 2))
    return scaled_leaky_relu(x) if activate else x


def _patch_matmul(patches: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """One matmul (measured faster for an edit's band than a stride-k conv over the patches viewed as an image)."""
    kernel = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)  # [O, k*k*C] in (ky, kx, c) order
    rows = patches.reshape(patches.shape[0], -1)
    if bias is None:
        return rows @ kernel.t()
    return torch.addmm(bias, rows, kernel.t())


class ReferenceOps(LayerOps):
    """The literal formulation, one step per line of the paper's math (the baseline the fast path must equal)."""

    name = "ref"

    def linear(
        self, x: Tensor, weight: Tensor, bias: Tensor | None, *, weight_gain: float, bias_gain: float = 1.0,
        activate: bool = False, gain: float = 1.0,
    ) -> Tensor:
        bias = None if bias is None else bias * bias_gain
        if activate:
            return _with_gain(_bias_act(F.linear(x, weight * weight_gain), bias, True), gain)
        return _with_gain(F.linear(x, weight * weight_gain, bias), gain)

    def conv2d(
        self, x: Tensor, weight: Tensor, bias: Tensor | None, *, weight_gain: float, padding: int,
        activate: bool = False, gain: float = 1.0,
    ) -> Tensor:
        return _with_gain(_bias_act(F.conv2d(x, weight * weight_gain, padding=padding), bias, activate), gain)

    def down_conv2d(
        self, x: Tensor, weight: Tensor, bias: Tensor | None, blur_kernel: Tensor, blur_pad: tuple[int, int], *,
        weight_gain: float, activate: bool = False, gain: float = 1.0,
    ) -> Tensor:
        y = F.conv2d(blur2d(x, blur_kernel, blur_pad), weight * weight_gain, stride=2)
        return _with_gain(_bias_act(y, bias, activate), gain)

    def up_conv2d(
        self, x: Tensor, weight: Tensor, bias: Tensor | None, blur_kernel: Tensor, blur_pad: tuple[int, int], *,
        weight_gain: float, activate: bool = False, gain: float = 1.0,
    ) -> Tensor:
        y = upsample_conv2d(x, weight * weight_gain, blur_kernel, blur_pad)
        return _with_gain(_bias_act(y, bias, activate), gain)

    def modulate(self, x: Tensor, norm: nn.Module, gamma_beta: Tensor) -> Tensor:
        gamma, beta = gamma_beta.chunk(2, dim=1)
        return norm(x) * gamma + beta

    def residual_sum(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b

    def conv2d_patches(self, patches: Tensor, weight: Tensor, bias: Tensor | None, *, weight_gain: float) -> Tensor:
        return _patch_matmul(patches, weight * weight_gain, bias)


LAYOUTS: dict[str, torch.memory_format] = {"channels_last": CHANNELS_LAST, "nchw": torch.contiguous_format}
GRAD_LAYOUT_ENV = "STYLEMAPGAN_GRAD_LAYOUT"


@dataclass(frozen=True)
class LayoutPolicy:
    """The memory layout of a layer's 4-D CPU activations, chosen per call by whether autograd records it.

    Measured on the project's 2-core AMD EPYC (Zen 3, AVX2 + FMA, no AVX-512), fp32, oneDNN convolutions, one
    thread unless said, channels-last against NCHW in the same process, interleaved:
    - no gradient recorded (inference: `torch.no_grad`, `torch.inference_mode`, frozen weights and inputs):
      channels-last runs the convs 1.3-1.5x faster, and the editor, generate and serve rely on it;
    - while autograd records, at the paper's 512 channels oneDNN's conv backward is slower channels-last: the
      E -> G -> D step of the official 32 px layout took 1.33-1.38x longer than NCHW at batch 1, 4 and 16 (a
      paper-256 step spent 4.9 s in conv backward against the official NCHW math's 2.7 s, plus 1.06 s of layout
      copies: 0.58x the official step);
    - while autograd records at 32-128 channels (the shipped cpu-64-small model) NCHW gains nothing: its E -> G
      -> D step 0.87-1.04x at batch 1, 4 and 16, the whole training iteration (stlpips-alex, batch 16) 0.91-0.92x;
    - on two threads (the machine loaded by other jobs) NCHW lost at 512 channels too: the 32 px step 0.46x,
      and 0.61x against 0.88x of the official step for channels-last (one profile saw them equal).
    Hence: channels-last without autograd; under autograd NCHW for an op whose input has at least
    `grad_min_channels` (256) channels while torch runs at most `grad_max_threads` (1) intra-op threads (read at
    the call: `torch.get_num_threads()`, the setting oneDNN runs under), the inference layout otherwise; a network
    changes layout at most where its width crosses the threshold. The balance is the CPU's and the load's
    (oneDNN's backward kernels differ by ISA; AVX-512 / AMX Xeons and a quiet 2-core machine were not measured),
    so it is a setting: pass a policy to `FastOps(layout=...)` (`use_ops(net, lambda:
    FastOps(GRAD_POLICIES["channels_last"]))` for a built network), or set STYLEMAPGAN_GRAD_LAYOUT to one of
    `GRAD_POLICIES` ("auto", the default; "nchw": every recorded op NCHW, any width, any thread count;
    "channels_last": no autograd exception, the layout before) before the layers are built: it is read once, at
    construction. Only CPU tensors are moved; other devices keep the caller's layout.
    """

    inference: str = "channels_last"
    grad: str = "nchw"
    grad_min_channels: int = 256
    grad_max_threads: int | None = 1

    def __post_init__(self) -> None:
        for name, value in (("inference", self.inference), ("grad", self.grad)):
            if value not in LAYOUTS:
                raise ValueError(f"layout {name}: must be one of {tuple(LAYOUTS)}, got {value!r}")
        if self.grad_min_channels < 0:
            raise ValueError(f"layout grad_min_channels: must be >= 0, got {self.grad_min_channels}")
        if self.grad_max_threads is not None and self.grad_max_threads < 1:
            raise ValueError(f"layout grad_max_threads: must be >= 1 or None, got {self.grad_max_threads}")

    @classmethod
    def from_env(cls) -> LayoutPolicy:
        """The policy STYLEMAPGAN_GRAD_LAYOUT names (one of `GRAD_POLICIES`), "auto" when it is unset."""
        name = os.environ.get(GRAD_LAYOUT_ENV, "").strip().lower() or "auto"
        if name not in GRAD_POLICIES:
            raise ValueError(f"{GRAD_LAYOUT_ENV}: must be one of {tuple(GRAD_POLICIES)}, got {name!r}")
        return GRAD_POLICIES[name]

    def memory_format(self, recording: bool, channels: int) -> torch.memory_format:
        """The layout for a call on an input of `channels` channels that autograd records (`recording`) or not."""
        if recording and channels >= self.grad_min_channels and (
                self.grad_max_threads is None or torch.get_num_threads() <= self.grad_max_threads):
            return LAYOUTS[self.grad]
        return LAYOUTS[self.inference]

    def lay_out(self, recording: bool, *tensors: Tensor) -> tuple[Tensor, ...]:
        """The tensors in the layout for a call that autograd records or not, decided on the first one's channels:
        4-D CPU tensors only, a no-op for one already so (a channels-last input under autograd is copied to NCHW
        once, then stays so)."""
        first = tensors[0]
        if first.ndim != 4 or first.device.type != "cpu":
            return tensors
        fmt = self.memory_format(recording, first.shape[1])
        return tuple(t.contiguous(memory_format=fmt) if t.ndim == 4 and t.device.type == "cpu" else t
                     for t in tensors)


GRAD_POLICIES: dict[str, LayoutPolicy] = {
    "auto": LayoutPolicy(),
    "nchw": LayoutPolicy(grad_min_channels=0, grad_max_threads=None),
    "channels_last": LayoutPolicy(grad="channels_last"),
}


def _to_layout(weight: Tensor, channels_last: bool) -> Tensor:
    return weight.contiguous(memory_format=CHANNELS_LAST) if channels_last else weight


def _is_channels_last(x: Tensor) -> bool:
    return x.ndim == 4 and x.is_contiguous(memory_format=CHANNELS_LAST) and not x.is_contiguous()


def _scaled_bias(bias: Tensor | None, factor: float) -> Tensor | None:
    return bias if bias is None or factor == 1.0 else bias * factor


class FastOps(LayerOps):
    """Folded gains, in-place activation, padding inside the conv, the CPU layout `layout` picks per call
    (channels-last for inference, NCHW for wide layers under autograd by default), cached scaled weights.

    Keep one instance per layer: the cache holds one weight's rescaled copies (a shared instance stays correct,
    as every look-up checks the weight, but would keep recomputing). `layout` defaults to
    `LayoutPolicy.from_env()`, read here once.
    """

    name = "fast"

    def __init__(self, layout: LayoutPolicy | None = None) -> None:
        self.layout = LayoutPolicy.from_env() if layout is None else layout
        self._weight_state: tuple[object, ...] | None = None
        self._weights: dict[tuple[float, bool, bool], Tensor] = {}

    def __reduce__(self) -> tuple[type, tuple[LayoutPolicy]]:
        """Copies (copy.deepcopy of a network) and pickles keep the layout policy and start with an empty cache."""
        return (type(self), (self.layout,))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layout={self.layout!r})"

    def _activation(self, x: Tensor, weight: Tensor) -> Tensor:
        """`x` in the layout for this call: recorded by autograd when grad mode is on and `x` or `weight`
        requires grad."""
        return self.layout.lay_out(needs_grad(x, weight), x)[0]

    def scaled_weight(self, weight: Tensor, factor: float, *, channels_last: bool = False) -> Tensor:
        """`weight * factor` (channels-last when asked, on CPU), kept between inference calls.

        Rescaling (and re-laying-out) the big weights costs ~10% of a paper-size forward at batch 1. The copy is
        reused only while the weight is unchanged: its version counter (bumped by every in-place update such as
        load_state_dict, an optimizer or EMA step), storage, shape and dtype must match, and so must the factor.
        Never cached when autograd needs the weight's gradient, under tracing/compilation, or for a weight made
        under torch.inference_mode (an inference tensor has no version counter, so a change would go unseen).
        A copy made inside inference mode is kept apart from one made outside (autograd cannot save an inference
        tensor for a backward pass through frozen weights).
        """
        if needs_grad(weight) or tracing():
            return weight * factor
        channels_last = channels_last and weight.ndim == 4 and weight.device.type == "cpu"
        if weight.is_inference():
            return _to_layout(weight * factor, channels_last)
        state = (weight._version, weight.data_ptr(), weight.shape, weight.dtype)
        if state != self._weight_state:
            self._weight_state, self._weights = state, {}
        key = (factor, channels_last, torch.is_inference_mode_enabled())
        out = self._weights.get(key)
        if out is None:
            out = self._weights[key] = _to_layout(weight * factor, channels_last)
        return out

    def linear(
        self, x: Tensor, weight: Tensor, bias: Tensor | None, *, weight_gain: float, bias_gain: float = 1.0,
        activate: bool = False, gain: float = 1.0,
    ) -> Tensor:
        # not cached: the mapping's weights are large and it runs once per z
        m = gain * (GAIN if activate else 1.0)
        y = F.linear(x, weight * (weight_gain * m), None if bias is None else bias * (bias_gain * m))
        return leaky_relu_(y) if activate else y

    def conv2d(
        self, x: Tensor, weight: Tensor, bias: Tensor | None, *, weight_gain: float, padding: int,
        activate: bool = False, gain: float = 1.0,
    ) -> Tensor:
        x = self._activation(x, weight)
        m = gain * (GAIN if activate else 1.0)
        w = self.scaled_weight(weight, weight_gain * m, channels_last=_is_channels_last(x))
        y = F.conv2d(x, w, _scaled_bias(bias, m), padding=padding)
        return leaky_relu_(y) if activate else y

    def down_conv2d(
        self, x: Tensor, weight: Tensor, bias: Tensor | None, blur_kernel: Tensor, blur_pad: tuple[int, int], *,
        weight_gain: float, activate: bool = False, gain: float = 1.0,
    ) -> Tensor:
        x = self._activation(x, weight)
        m = gain * (GAIN if activate else 1.0)
        w = self.scaled_weight(weight, weight_gain * m, channels_last=_is_channels_last(x))
        b = _scaled_bias(bias, m)
        if w.shape[-1] == 1:  # a 1x1 stride-2 conv reads every second blurred pixel: blur only those
            y = F.conv2d(blur2d_fast(x, blur_kernel, blur_pad, stride=2), w, b)
        else:
            y = F.conv2d(blur2d_fast(x, blur_kernel, blur_pad), w, b, stride=2)
        return leaky_relu_(y) if activate else y

    def up_conv2d(
        self, x: Tensor, weight: Tensor, bias: Tensor | None, blur_kernel: Tensor, blur_pad: tuple[int, int], *,
        weight_gain: float, activate: bool = False, gain: float = 1.0,
    ) -> Tensor:
        x = self._activation(x, weight)
        m = gain * (GAIN if activate else 1.0)
        # only the 1x1 case runs a plain conv; a transposed conv uses the weight transposed, as stored
        w = self.scaled_weight(weight, weight_gain * m, channels_last=weight.shape[-1] == 1 and _is_channels_last(x))
        y = upsample_conv2d_fast(x, w, blur_kernel, blur_pad, _scaled_bias(bias, m))
        return leaky_relu_(y) if activate else y

    def modulate(self, x: Tensor, norm: nn.Module, gamma_beta: Tensor) -> Tensor:
        """One fused multiply-add, in place on the normalised tensor when no gradient is recorded."""
        x, gamma_beta = self.layout.lay_out(needs_grad(x, gamma_beta), x, gamma_beta)
        gamma, beta = gamma_beta.chunk(2, dim=1)
        normed = norm(x)
        if normed is not x and inplace_ok(normed, gamma_beta):
            return torch.addcmul(beta, normed, gamma, out=normed)
        return torch.addcmul(beta, normed, gamma)

    def residual_sum(self, a: Tensor, b: Tensor) -> Tensor:
        return add_(a, b)

    def conv2d_patches(self, patches: Tensor, weight: Tensor, bias: Tensor | None, *, weight_gain: float) -> Tensor:
        """With the conv's own cached weight: channels-last (as for channels-last inputs) makes the reshape a view."""
        return _patch_matmul(patches, self.scaled_weight(weight, weight_gain, channels_last=True), bias)


OPS: dict[str, type[LayerOps]] = {"fast": FastOps, "ref": ReferenceOps}
IMPLS = tuple(OPS)


def ops_factory(impl: str) -> Callable[[], LayerOps]:
    """The implementation class for a name ("fast" or "ref"); a ValueError naming `impl` otherwise."""
    if impl not in OPS:
        raise ValueError(f"impl: must be one of {IMPLS}, got {impl!r}")
    return OPS[impl]


def make_ops(impl: str) -> LayerOps:
    """A fresh implementation object for one layer, by name."""
    return ops_factory(impl)()
