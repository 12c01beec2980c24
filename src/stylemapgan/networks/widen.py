"""Grow a trained network into a wider one that computes the same function, so training goes on from where it was.

Why: a small model's encoder can be the limit on reconstructions long after its generator is good. Starting a wider
encoder from scratch throws away what the small one learned; widening keeps it and adds capacity (Net2Net-style,
with zeros instead of copies, so no symmetry has to be broken).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stylemapgan.networks.layers import ConvBase


class WidenError(ValueError):
    """The source weights do not fit inside the target network."""


@torch.no_grad()
def widen_into(target: nn.Module, source_state: dict[str, torch.Tensor]) -> None:
    """Load `source_state` (a narrower network of the same layout) into the freshly initialised `target`.

    For each equalised-lr conv (weight [o, i, k, k], runtime scale 1/sqrt(i k k)): the old block is copied and
    multiplied by sqrt(i'/i), so the scaled weight is unchanged; weights from new input channels are zeroed, so
    new channels do not reach old outputs; weights into new output channels keep their fresh initialisation.
    Biases: the old part is copied, new channels keep theirs (zero). Any other tensor must match exactly.
    The new channels start to matter as soon as training moves the zeroed weights.
    """
    target_state = target.state_dict()
    unknown = sorted(set(source_state) - set(target_state))
    missing = sorted(set(target_state) - set(source_state))
    if unknown or missing:
        raise WidenError(f"layouts differ: unexpected {unknown[:3]}, missing {missing[:3]}")
    convs = {name for name, module in target.named_modules() if isinstance(module, ConvBase)}
    for key, new in target_state.items():
        old = source_state[key]
        owner, _, leaf = key.rpartition(".")
        if old.shape == new.shape and not (owner in convs and leaf == "weight"):
            new.copy_(old)
            continue
        if old.dim() != new.dim() or any(o > n for o, n in zip(old.shape, new.shape, strict=True)):
            raise WidenError(f"{key}: {tuple(old.shape)} does not fit in {tuple(new.shape)}")
        if owner in convs and leaf == "weight":
            grow = math.sqrt(new.shape[1] / old.shape[1])
            new[:, old.shape[1]:] = 0
            new[: old.shape[0], : old.shape[1]] = old * grow
        elif owner in convs and leaf == "bias":
            new[: old.shape[0]] = old
        else:
            raise WidenError(f"{key}: only conv layers can be widened ({tuple(old.shape)} -> {tuple(new.shape)})")
    target.load_state_dict(target_state)
