"""Automatic precision: bf16 where this machine's hardware makes it faster, fp32 everywhere else.

bf16 pays on CPUs with bf16 matrix units (Intel AMX `amx_bf16`/`amx_tile`, AVX512-BF16 `avx512_bf16`): a 2-core
Xeon with AMX ran a 2048^3 matmul 6.8x and a channels-last 3x3 conv 9x faster in bf16 than in fp32. Without
such units oneDNN emulates bf16 through fp32 and it is slower, so "auto" picks fp32 there without measuring.
Where the units exist, one quick measurement (a channels-last 3x3 conv, the networks' dominant op, fp32 against
bf16, interleaved; well under a second) decides, once per process and device type. On CUDA "auto" is fp32 (the
GPU path's precision is chosen explicitly; see benchmarks/gpu_check.sh).

The runner keeps every result in fp32 (the editor's caches and blending stay fp32); `dtype="fp32"` forces
full precision everywhere.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import time
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

AUTO = "auto"
DTYPE_CHOICES = ("fp32", "bf16", AUTO)
ISA_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
BF16_UNITS = ("amx_bf16", "avx512_bf16")
MIN_BF16_SPEEDUP = 1.2  # below this, noise and the casts around each op eat the gain: stay exact


def parse_cpu_flags(cpuinfo: str) -> set[str]:
    """The `flags` of the first processor in a /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


@functools.cache
def cpu_features() -> dict[str, bool | None]:
    """Which of ISA_FEATURES this CPU has (Linux: /proc/cpuinfo). Elsewhere each is None (unknown), except that
    PyTorch's own dispatch level still tells whether AVX2 / AVX-512 kernels run."""
    with contextlib.suppress(OSError):
        flags = parse_cpu_flags(Path("/proc/cpuinfo").read_text())
        if flags:
            return {name: name in flags for name in ISA_FEATURES}
    out: dict[str, bool | None] = dict.fromkeys(ISA_FEATURES)
    capability = torch.backends.cpu.get_cpu_capability().upper()
    if capability in ("AVX2", "AVX512"):
        out["avx2"] = True
        out["avx512f"] = capability == "AVX512"
    return out


def cpu_has_bf16_units(features: Mapping[str, bool | None] | None = None) -> bool:
    """True where the CPU reports AMX-BF16 or AVX512-BF16 (unknown counts as absent)."""
    features = cpu_features() if features is None else features
    return any(bool(features.get(name)) for name in BF16_UNITS)


def _conv_seconds(dtype: torch.dtype, repeats: int) -> list[float]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 256, 32, 32, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
    out = []
    with torch.no_grad():
        F.conv2d(x, w, padding=1)  # oneDNN builds its primitive on the first call
        for _ in range(repeats):
            t0 = time.perf_counter()
            F.conv2d(x, w, padding=1)
            out.append(time.perf_counter() - t0)
    return out


def measure_bf16_speedup(repeats: int = 3) -> float:
    """fp32 time / bf16 time of a channels-last 256-channel 3x3 conv at 32x32, batch 4 (best of `repeats`
    each, the two dtypes alternating). > 1 means bf16 is faster here."""
    fp32, bf16 = [], []
    for _ in range(repeats):
        fp32 += _conv_seconds(torch.float32, 1)
        bf16 += _conv_seconds(torch.bfloat16, 1)
    return min(fp32) / min(bf16)


@functools.cache
def bf16_speedup_cpu() -> float | None:
    """The measured bf16 speedup on this CPU, once per process; None where the CPU has no bf16 units (bf16 is
    emulated there and never faster, so nothing is measured)."""
    if not cpu_has_bf16_units():
        return None
    return measure_bf16_speedup()


def auto_dtype(device: torch.device | str = "cpu") -> torch.dtype:
    """The precision "auto" means on `device`: bf16 on a CPU whose bf16 units measure at least MIN_BF16_SPEEDUP
    faster than fp32, fp32 otherwise (and on every other device)."""
    if torch.device(device).type != "cpu":
        return torch.float32
    speedup = bf16_speedup_cpu()
    return torch.bfloat16 if speedup is not None and speedup >= MIN_BF16_SPEEDUP else torch.float32


def resolve_dtype(dtype: str | torch.dtype, device: torch.device | str = "cpu") -> torch.dtype:
    """"fp32" / "bf16" (or the torch dtypes) as given; "auto" as `auto_dtype(device)`. ValueError otherwise."""
    from stylemapgan.runtime.runner import parse_dtype

    if isinstance(dtype, str) and dtype == AUTO:
        return auto_dtype(device)
    return parse_dtype(dtype)


def precision_report() -> dict[str, object]:
    """What the automatic choice saw on the CPU (for `stylemapgan bench` and bug reports)."""
    speedup = bf16_speedup_cpu()
    return {
        "cpu_features": cpu_features(), "bf16_units": cpu_has_bf16_units(), "bf16_speedup": speedup,
        "auto_dtype": "bf16" if auto_dtype("cpu") == torch.bfloat16 else "fp32", "machine": platform.machine(),
    }
