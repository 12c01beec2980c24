"""`TorchRunner`: the one door through which the `Editor` and the CLI call the networks, in eager PyTorch
(default), optionally torch.compile'd and/or under bf16 autocast. `runtime.onnx.OnnxRunner` runs the heavy
graphs in onnxruntime behind the same methods.

Every method takes and returns fp32 tensors on the editor's device (bf16 runs inside autocast and casts results
back), so the editor's caches and blending do not depend on the choice. Work that must not follow the runner's
backend or precision goes through the two explicit fallbacks, `eager_fp32` (optimisation needs autograd in
fp32; statistics of the model) and `run_torch` (PyTorch code that no graph covers), never around the runner.

Measured on the 2-core project VM (one thread, CPU time, same process): torch.compile gains nothing measurable
(the convolutions are oneDNN calls either way) and costs ~60-75 s of compilation even for small models; bf16
doubles conv throughput on this AVX-512-BF16 CPU at ~1e-2 relative error; onnxruntime runs the encoder 1.5-2x
and the decoder 1.2-1.9x faster than eager PyTorch at 32-64 px, and the cached edit about equally fast (its
synthesis from modulations is slightly slower there). ONNX stays an option rather than the default because it
needs the optional `onnx` extra and an export (~40 s at 64 px, or a folder exported beforehand with `onnx_dir`).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch

from stylemapgan.networks import Encoder, Generator

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
MEAN_STYLEMAP_COUNT = 5000  # spec: the truncation centre is the mean stylemap over 5,000 z

T = TypeVar("T")
_MEAN_CACHE: weakref.WeakKeyDictionary[Generator, dict[tuple[int, int], torch.Tensor]] = weakref.WeakKeyDictionary()


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"dtype: must be fp32 or bf16, got {dtype}")
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(f"dtype: must be one of fp32, bf16, got {dtype!r}") from None


@torch.no_grad()
def mean_stylemap(generator: Generator, count: int = MEAN_STYLEMAP_COUNT, seed: int = 0) -> torch.Tensor:
    """The generator's mean stylemap in fp32 eager PyTorch, computed once per generator object (and count, seed)
    and shared by every runner over it."""
    per_model = _MEAN_CACHE.setdefault(generator, {})
    key = (count, seed)
    if key not in per_model:
        per_model[key] = generator.mean_stylemap(count, seed)
    return per_model[key]


class TorchRunner:
    """Eager PyTorch, optionally compiled (`compile=True`) and/or under bf16 autocast (`dtype="bf16"`)."""

    backend = "torch"

    def __init__(
        self, generator: Generator, encoder: Encoder, *, compile: bool = False, dtype: str | torch.dtype = "fp32"
    ) -> None:
        self.generator = generator
        self.encoder = encoder
        self.dtype = parse_dtype(dtype)
        self.compiled = compile
        wrap: Callable[[Callable[..., Any]], Callable[..., Any]] = torch.compile if compile else (lambda f: f)
        # modules are called as modules (not .forward), so forward hooks on them still fire
        self._encode = wrap(encoder)
        self._mapping = wrap(generator.mapping)
        self._decode = wrap(generator.decode)
        self._resize = wrap(generator.resizer)
        self._synthesize = wrap(generator.synthesis.forward_modulated)
        self._synthesize_styles = wrap(generator.synthesis)

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        """No grad, plus bf16 autocast when asked for: the precision every method below runs in."""
        device = self.generator.const_device.type
        with torch.no_grad():
            if self.dtype == torch.float32:
                yield
            else:
                with torch.autocast(device, dtype=self.dtype):
                    yield

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, size, size] -> stylemaps [N, C, s, s]."""
        with self.context():
            return self._encode(images).float()

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """Latents [N, latent_channels] -> stylemaps [N, C, s, s] (the mapping network)."""
        with self.context():
            return self._mapping(z).float()

    def decode(self, stylemaps: torch.Tensor) -> torch.Tensor:
        """Stylemaps -> images (resizer + synthesis)."""
        with self.context():
            return self._decode(stylemaps).float()

    def resize(self, stylemaps: torch.Tensor) -> list[torch.Tensor]:
        """Stylemaps -> the style tensor of every modulated layer."""
        with self.context():
            return [t.float() for t in self._resize(stylemaps)]

    def modulations(self, styles: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Style tensors -> [gamma | beta] of every modulated layer (what the fast local edit caches)."""
        with self.context():
            layers = self.generator.synthesis.modulated_layers()
            return [m.modulation_params(t).float() for m, t in zip(layers, styles, strict=True)]

    def synthesize(self, mods: Sequence[torch.Tensor]) -> torch.Tensor:
        """Image from [gamma | beta] of every modulated layer (the fast local edit's last step)."""
        with self.context():
            return self._synthesize(list(mods)).float()

    def synthesize_styles(self, styles: Sequence[torch.Tensor]) -> torch.Tensor:
        """Image from the style tensors (style mixing, w_plus edits on the reference path)."""
        with self.context():
            return self._synthesize_styles(list(styles)).float()

    def mean_stylemap(self, count: int = MEAN_STYLEMAP_COUNT, seed: int = 0) -> torch.Tensor:
        """The truncation centre. Explicitly fp32 eager PyTorch on every backend and dtype: it is a statistic of
        the model (like the one a release stores), cached per generator and shared by every runner over it."""
        with self.eager_fp32() as generator:
            return mean_stylemap(generator, count, seed)

    @contextlib.contextmanager
    def eager_fp32(self) -> Iterator[Generator]:
        """Explicit fallback: the plain fp32 PyTorch generator, autograd allowed, whatever this runner's backend,
        dtype or compilation. For work that must not follow them: optimisation (projection, refine: ONNX graphs
        have no backward, bf16 gradients would stall Adam, a compiled graph recompiles for inputs that need
        grad) and statistics of the model (mean stylemap, sampled stylemaps for PCA directions)."""
        with torch.autocast(self.generator.const_device.type, enabled=False):
            yield self.generator

    def run_torch(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Explicit fallback: run PyTorch code over these networks that no method above covers (the fast edit's
        exact recomputation of modulations along a mask's edge) in this runner's precision (no grad; bf16
        autocast when asked). It runs in PyTorch on every backend; what `fn` returns is returned as is."""
        with self.context():
            return fn(*args, **kwargs)
