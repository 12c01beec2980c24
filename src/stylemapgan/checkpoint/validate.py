"""Checks on a checkpoint's contents before any network is built from them.

A checkpoint is untrusted input: its config is bounded by `ModelConfig` itself (see `config.LIMITS`); here the
tensors are checked against the networks that config describes, built on the meta device (no memory): every
value a tensor (not a list or a number) of the network's shape and kind (floating-point weights as float32 or
float64, integer buffers as integers), and the networks' total size within `MAX_PARAMETERS`. Only then are real
networks built, so a crafted file can make the loader allocate no more than the tensors it contains. A loaded
file's values must also be finite (`check_finite`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from stylemapgan.checkpoint.format import CheckpointError

# The networks of one checkpoint together (EMA copies counted): the official 256 px model's five networks hold
# about 250M parameters; a config inside `config.LIMITS` can ask for about 2G.
MAX_PARAMETERS = 600_000_000
WEIGHT_DTYPES = (torch.float32, torch.float64)


def _dtype_problem(expected: torch.Tensor, value: torch.Tensor) -> str | None:
    dtype = str(value.dtype).removeprefix("torch.")
    if expected.is_floating_point():
        return None if value.dtype in WEIGHT_DTYPES else f"{dtype}, expected float32 weights"
    if value.is_floating_point() or value.dtype == torch.bool or value.is_complex():
        return f"{dtype}, expected an integer buffer"
    return None


def dtype_problems(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> list[str]:
    """Tensors of `state` whose dtype is not of the network's kind (floating-point weights stored as int64, bool
    or float16; integer buffers as floats), one entry per kind of problem, naming the first key."""
    found: dict[str, list[str]] = {}
    for key in sorted(set(expected) & set(state)):
        problem = _dtype_problem(expected[key], state[key])
        if problem is not None:
            found.setdefault(problem, []).append(key)
    return [f"{keys[0]}{f' and {len(keys) - 1} more' if len(keys) > 1 else ''}: {problem}"
            for problem, keys in found.items()]


def check_finite(networks: Mapping[str, Mapping[str, torch.Tensor]], extra: Mapping[str, Any], where: str) -> None:
    """Every floating-point tensor of the networks, and those stored beside them (the mean stylemap, directions),
    must be finite: NaN weights or a NaN truncation centre turn every generated image black."""
    for name, state in networks.items():
        bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            raise CheckpointError(f"{where}: network {name!r} has unusable weights: NaN or infinite values in "
                                  f"{bad[0]}{more}")
    for key, value in extra.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{where}: extra tensor {key!r} holds NaN or infinite values")


def not_tensors(state: Mapping[str, Any]) -> list[str]:
    """Keys whose values are not tensors (a crafted file, or a caller's mistake), so shapes can be compared."""
    return sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))


def check_parameter_budget(counts: Mapping[str, int], where: str) -> None:
    total = sum(counts.values())
    if total > MAX_PARAMETERS:
        detail = ", ".join(f"{name} {count / 1e6:.0f}M" for name, count in counts.items())
        raise CheckpointError(
            f"{where}: the config describes {total / 1e6:.0f}M parameters ({detail}), more than the "
            f"{MAX_PARAMETERS / 1e6:.0f}M this tool loads"
        )
