"""Networks from a checkpoint (config + state dicts), with strict, named checks (`checkpoint.validate`) made on
the meta device before any real network is built; fresh checkpoints."""

from __future__ import annotations

import torch
from torch import nn

from stylemapgan.checkpoint.format import Checkpoint, CheckpointError, default_provenance
from stylemapgan.checkpoint.validate import check_parameter_budget, dtype_problems, not_tensors
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
    problems = [f"{key} is a {type(state[key]).__name__}, expected a tensor" for key in not_tensors(state)]
    if missing:
        problems.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
    for key in sorted(set(expected) & set(state) - set(not_tensors(state))):
        if tuple(expected[key].shape) != tuple(state[key].shape):
            problems.append(f"{key} has shape {tuple(state[key].shape)}, model needs {tuple(expected[key].shape)}")
    if problems:
        raise CheckpointError(f"{where}: network {name!r} does not match its config: " + "; ".join(problems))
    problems = dtype_problems(expected, state)
    if problems:
        raise CheckpointError(f"{where}: network {name!r} has unusable weights: " + "; ".join(problems))


def check_state_dicts(config: ModelConfig, networks: dict[str, dict[str, torch.Tensor]], where: str) -> None:
    """Raise CheckpointError naming every missing, unexpected, mis-shaped or mistyped entry, or a model over
    `validate.MAX_PARAMETERS`; the networks are built on the meta device (no memory)."""
    counts = {}
    with torch.device("meta"):
        for name, state in networks.items():
            if name not in NETWORK_CLASSES:
                raise CheckpointError(f"{where}: unknown network {name!r}")
            module = NETWORK_CLASSES[name](config)
            counts[name] = sum(p.numel() for p in module.parameters())
            check_parameter_budget(counts, where)
            _check(name, module, state, where)


def build_network(ckpt: Checkpoint, name: str, device: torch.device | str = "cpu") -> nn.Module:
    if name not in ckpt.networks:
        raise CheckpointError(f"checkpoint has no {name!r} network (has: {', '.join(sorted(ckpt.networks))})")
    check_state_dicts(ckpt.config, {name: ckpt.networks[name]}, "checkpoint")  # before any memory is allocated
    module = NETWORK_CLASSES[name](ckpt.config)
    module.load_state_dict(ckpt.networks[name])
    return module.to(device).eval().requires_grad_(False)


def fresh_checkpoint(config: ModelConfig, seed: int, source: str) -> Checkpoint:
    """Newly initialised networks (seeded), G/E EMA copies equal to G/E."""
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
