"""Build networks from a checkpoint (config + state dicts), with strict, named shape checks."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from stylemapgan.checkpoint.io import Checkpoint, CheckpointError, load_checkpoint
from stylemapgan.config import ModelConfig
from stylemapgan.networks import Discriminator, Encoder, Generator

NETWORK_CLASSES: dict[str, type[nn.Module]] = {
    "g_ema": Generator,
    "generator": Generator,
    "e_ema": Encoder,
    "encoder": Encoder,
    "discriminator": Discriminator,
}


def _check(name: str, module: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
    for key in sorted(set(expected) & set(state)):
        if tuple(expected[key].shape) != tuple(state[key].shape):
            problems.append(f"{key} has shape {tuple(state[key].shape)}, model needs {tuple(expected[key].shape)}")
    if problems:
        raise CheckpointError(f"{where}: network {name!r} does not match its config: " + "; ".join(problems))


def check_state_dicts(config: ModelConfig, networks: dict[str, dict[str, torch.Tensor]], where: str) -> None:
    """Raise CheckpointError naming every missing, unexpected or mis-shaped key."""
    with torch.device("meta"):
        for name, state in networks.items():
            if name not in NETWORK_CLASSES:
                raise CheckpointError(f"{where}: unknown network {name!r}")
            _check(name, NETWORK_CLASSES[name](config), state, where)


def build_network(ckpt: Checkpoint, name: str, device: torch.device | str = "cpu") -> nn.Module:
    if name not in ckpt.networks:
        raise CheckpointError(f"checkpoint has no {name!r} network (has: {', '.join(sorted(ckpt.networks))})")
    module = NETWORK_CLASSES[name](ckpt.config)
    _check(name, module, ckpt.networks[name], "checkpoint")
    module.load_state_dict(ckpt.networks[name])
    return module.to(device).eval().requires_grad_(False)


@dataclass
class EditingModel:
    """What the editing tools need: the EMA generator and encoder, built from a checkpoint."""

    config: ModelConfig
    generator: Generator
    encoder: Encoder
    checkpoint: Checkpoint


def load_editing_model(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> EditingModel:
    ckpt = load_checkpoint(path)
    g_name = "g_ema" if "g_ema" in ckpt.networks else "generator"
    e_name = "e_ema" if "e_ema" in ckpt.networks else "encoder"
    generator = build_network(ckpt, g_name, device)
    encoder = build_network(ckpt, e_name, device)
    assert isinstance(generator, Generator) and isinstance(encoder, Encoder)
    return EditingModel(ckpt.config, generator, encoder, ckpt)


def fresh_checkpoint(config: ModelConfig, seed: int, source: str) -> Checkpoint:
    """Newly initialised networks (seeded), G/E EMA copies equal to G/E."""
    from stylemapgan.checkpoint.io import default_provenance

    torch.manual_seed(seed)
    g, e, d = Generator(config), Encoder(config), Discriminator(config)
    networks = {
        "generator": g.state_dict(),
        "encoder": e.state_dict(),
        "discriminator": d.state_dict(),
        "g_ema": {k: v.clone() for k, v in g.state_dict().items()},
        "e_ema": {k: v.clone() for k, v in e.state_dict().items()},
    }
    provenance = default_provenance(source)
    provenance["seed"] = seed
    return Checkpoint(config, networks, provenance=provenance)
