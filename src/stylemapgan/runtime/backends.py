"""`make_runner`: the runner for an editor's options, validated here, at the API boundary."""

from __future__ import annotations

import os

import torch

from stylemapgan.networks import Encoder, Generator
from stylemapgan.runtime.onnx import OnnxRunner
from stylemapgan.runtime.precision import AUTO, resolve_dtype
from stylemapgan.runtime.runner import TorchRunner, parse_dtype

BACKENDS = ("torch", "onnx")


def make_runner(
    generator: Generator,
    encoder: Encoder,
    *,
    backend: str = "torch",
    compile: bool = False,
    dtype: str | torch.dtype = AUTO,
    onnx_dir: str | os.PathLike[str] | None = None,
) -> TorchRunner:
    """backend "torch" (eager, or compiled with `compile`, in fp32 or bf16 autocast with `dtype`) or "onnx"
    (onnxruntime on the CPU in fp32, exporting into `onnx_dir` or a temporary folder when needed). dtype "auto"
    is bf16 where the CPU's bf16 units measure faster (`runtime.precision.auto_dtype`), fp32 otherwise and on
    the onnx backend."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if isinstance(dtype, str) and dtype == AUTO:
        dtype = torch.float32 if backend == "onnx" else resolve_dtype(AUTO, generator.const_device)
    if backend == "onnx":
        if compile or parse_dtype(dtype) != torch.float32:
            raise ValueError("backend 'onnx' runs fp32 ONNX graphs; compile and bf16 apply to the torch backend")
        if generator.const_device.type != "cpu":
            raise ValueError("backend 'onnx' runs on the CPU; use the torch backend on CUDA")
        return OnnxRunner(generator, encoder, onnx_dir=onnx_dir)
    return TorchRunner(generator, encoder, compile=compile, dtype=dtype)
