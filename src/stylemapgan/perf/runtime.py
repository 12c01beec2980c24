"""How an `Editor` runs its networks: eager PyTorch (default), optionally torch.compile'd or in bf16, or ONNX
Runtime for the encoder, the decoder and the synthesis from modulations.

All runners take and return fp32 tensors on the editor's device (bf16 runs inside autocast and casts results
back), so the editor's caches and blending do not depend on the choice. Measured on the 2-core project VM
(one thread, CPU time, same process): torch.compile gains nothing measurable (the convolutions are oneDNN
calls either way) and costs ~60-75 s of compilation even for small models; bf16 doubles conv throughput on
this AVX-512-BF16 CPU at ~1e-2 relative error; onnxruntime runs the encoder 1.5-2x and the decoder 1.2-1.9x
faster than eager PyTorch at 32-64 px, and the cached edit about equally fast (its synthesis from
modulations is slightly slower there). ONNX stays an option rather than the default because it needs the
optional `onnx` extra and an export (~40 s at 64 px, or a folder exported beforehand with `onnx_dir`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from stylemapgan.networks import Encoder, Generator

BACKENDS = ("torch", "onnx")
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"dtype: must be fp32 or bf16, got {dtype}")
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(f"dtype: must be one of fp32, bf16, got {dtype!r}") from None


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
        self._decode = wrap(generator.decode)
        self._resize = wrap(generator.resizer)
        self._synthesize = wrap(generator.synthesis.forward_modulated)
        self._synthesize_styles = wrap(generator.synthesis)

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        """No grad, plus bf16 autocast when asked for; wrap any direct use of the networks in it."""
        device = self.generator.const_device.type
        with torch.no_grad():
            if self.dtype == torch.float32:
                yield
            else:
                with torch.autocast(device, dtype=self.dtype):
                    yield

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        with self.context():
            return self._encode(images).float()

    def decode(self, stylemaps: torch.Tensor) -> torch.Tensor:
        with self.context():
            return self._decode(stylemaps).float()

    def resize(self, stylemaps: torch.Tensor) -> list[torch.Tensor]:
        with self.context():
            return [t.float() for t in self._resize(stylemaps)]

    def modulations(self, styles: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        with self.context():
            layers = self.generator.synthesis.modulated_layers()
            return [m.modulation_params(t).float() for m, t in zip(layers, styles, strict=True)]

    def synthesize(self, mods: Sequence[torch.Tensor]) -> torch.Tensor:
        """Image from [gamma | beta] of every modulated layer (the fast local edit's last step)."""
        with self.context():
            return self._synthesize(list(mods)).float()

    def synthesize_styles(self, styles: Sequence[torch.Tensor]) -> torch.Tensor:
        with self.context():
            return self._synthesize_styles(list(styles)).float()


class OnnxRunner(TorchRunner):
    """Encoder, decoder and synthesis-from-modulations in onnxruntime (CPU); resizer and modulations stay in
    PyTorch (they run once per image and are cached). Exports to `onnx_dir` (or a temporary folder) if needed."""

    backend = "onnx"

    def __init__(
        self, generator: Generator, encoder: Encoder, *, onnx_dir: str | os.PathLike[str] | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__(generator, encoder)
        from stylemapgan.export.onnx import OnnxModels, export_onnx

        folder = onnx_dir if onnx_dir is not None else tempfile.mkdtemp(prefix="stylemapgan-onnx-")
        if not os.path.exists(os.path.join(folder, "manifest.json")):
            export_onnx(generator, encoder, folder)
        self.models = OnnxModels(folder, threads=threads if threads is not None else torch.get_num_threads())
        if self.models.config != generator.config:
            raise ValueError(f"{folder}: exported for {self.models.config}, editor model is {generator.config}")
        self.device = generator.const_device

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.models.encode(images).to(self.device)

    def decode(self, stylemaps: torch.Tensor) -> torch.Tensor:
        return self.models.decode(stylemaps).to(self.device)

    def synthesize(self, mods: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.models.synthesize(list(mods)).to(self.device)

    def synthesize_styles(self, styles: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.synthesize(self.modulations(styles))


def make_runner(
    generator: Generator,
    encoder: Encoder,
    *,
    backend: str = "torch",
    compile: bool = False,
    dtype: str | torch.dtype = "fp32",
    onnx_dir: str | os.PathLike[str] | None = None,
) -> TorchRunner:
    """The runner for an editor's options (validated here, at the API boundary)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "onnx":
        if compile or parse_dtype(dtype) != torch.float32:
            raise ValueError("backend 'onnx' runs fp32 ONNX graphs; compile and bf16 apply to the torch backend")
        if generator.const_device.type != "cpu":
            raise ValueError("backend 'onnx' runs on the CPU; use the torch backend on CUDA")
        return OnnxRunner(generator, encoder, onnx_dir=onnx_dir)
    return TorchRunner(generator, encoder, compile=compile, dtype=dtype)
