"""Networks from a checkpoint (config + state dicts), with strict, named shape checks; fresh checkpoints.

Which networks a checkpoint may hold, and their classes, come from the config's family (`checkpoint.families`).
"""

from __future__ import annotations

import torch
from torch import nn

from stylemapgan.checkpoint.families import AnyConfig, ModelFamily, family_of
from stylemapgan.checkpoint.format import Checkpoint, CheckpointError, default_provenance


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


def network_class(family: ModelFamily, name: str, where: str) -> type[nn.Module]:
    """The class of network `name` in a model of this family; CheckpointError for a name it does not have."""
    try:
        return family.networks[name]
    except KeyError:
        raise CheckpointError(
            f"{where}: unknown network {name!r} for a {family.title} model (known: {', '.join(family.networks)})"
        ) from None


def check_state_dicts(config: AnyConfig, networks: dict[str, dict[str, torch.Tensor]], where: str) -> None:
    """Raise CheckpointError naming every missing, unexpected or mis-shaped key."""
    family = family_of(config)
    with torch.device("meta"):
        for name, state in networks.items():
            _check(name, network_class(family, name, where)(config), state, where)


def build_network(ckpt: Checkpoint, name: str, device: torch.device | str = "cpu") -> nn.Module:
    if name not in ckpt.networks:
        raise CheckpointError(f"checkpoint has no {name!r} network (has: {', '.join(sorted(ckpt.networks))})")
    module = network_class(family_of(ckpt.config), name, "checkpoint")(ckpt.config)
    _check(name, module, ckpt.networks[name], "checkpoint")
    module.load_state_dict(ckpt.networks[name])
    return module.to(device).eval().requires_grad_(False)


def fresh_checkpoint(config: AnyConfig, seed: int, source: str) -> Checkpoint:
    """Newly initialised networks (seeded, in the family's order), EMA copies equal to their networks."""
    family = family_of(config)
    torch.manual_seed(seed)
    networks = {name: family.networks[name](config).state_dict() for name in family.trained}
    for name, ema in family.trained.items():
        if ema is not None:
            networks[ema] = {k: v.clone() for k, v in networks[name].items()}
    provenance = default_provenance(source)
    provenance["seed"] = seed
    return Checkpoint(config, networks, provenance=provenance)
