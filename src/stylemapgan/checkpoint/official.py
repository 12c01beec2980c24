"""Read checkpoints of the official code of either family and map them onto our networks.

Both are `torch.save` pickles, read with `torch.load(weights_only=True)` and only argparse.Namespace
allow-listed, so loading one never runs code; which family a file is comes from its contents (`OFFICIAL_FORMATS`:
a StyleMapGAN file has 'train_args', a SemanticStyleGAN one 'args' with 'seg_dim'). The SemanticStyleGAN
mapping is `checkpoint.official_semantic`; the StyleMapGAN one is below.

An official StyleMapGAN file is a dict ('g_ema', 'e_ema', optionally 'generator', 'encoder', 'discriminator',
optimizer states) plus 'train_args', an argparse.Namespace. Every key is mapped by a rule below; blur-kernel buffers
are checked against ours and dropped; anything unmapped or mis-shaped is an error by name.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stylemapgan.checkpoint.build import check_state_dicts
from stylemapgan.checkpoint.families import SEMANTICSTYLEGAN, STYLEMAPGAN, ModelFamily
from stylemapgan.checkpoint.format import Checkpoint, CheckpointError, default_provenance
from stylemapgan.checkpoint.official_semantic import (
    convert_official_semantic,
    is_official_semantic,
    provenance_args,
)
from stylemapgan.config import ConfigError, ModelConfig
from stylemapgan.ops import make_blur_kernel
from stylemapgan.utils.files import file_sha256

# official top-level key -> (our network name, layout family)
OFFICIAL_NETWORKS = {
    "g_ema": ("g_ema", "generator"),
    "generator": ("generator", "generator"),
    "e_ema": ("e_ema", "encoder"),
    "encoder": ("encoder", "encoder"),
    "discriminator": ("discriminator", "discriminator"),
}

_NORM_BUFFER = r"(running_mean|running_var|num_batches_tracked)"


def _modulated(prefix_official: str, prefix_ours: str) -> list[tuple[str, str]]:
    """Rules for one official StyledConv (named groups, so a numbered prefix cannot shift them)."""
    return [
        (rf"{prefix_official}\.conv\.weight", f"{prefix_ours}.weight"),
        (
            rf"{prefix_official}\.conv\.(?P<part>gamma|beta)\.(?P<param>weight|bias)",
            f"{prefix_ours}.modulation.\\g<param>",
        ),
        (rf"{prefix_official}\.activate\.bias", f"{prefix_ours}.bias"),
        (rf"{prefix_official}\.conv\.norm\.(?P<buf>{_NORM_BUFFER})", f"{prefix_ours}.norm.\\g<buf>"),
    ]


_RES_BLOCK = [
    (r"conv1\.0\.weight", "conv1.weight"),
    (r"conv1\.1\.bias", "conv1.bias"),
    (r"conv2\.1\.weight", "conv2.weight"),
    (r"conv2\.2\.bias", "conv2.bias"),
    (r"skip\.1\.weight", "skip.weight"),
]

# Each rule: official key regex (named groups) -> our key template. `{prev}` is the `idx` group minus one.
RULES: dict[str, list[tuple[str, str]]] = {
    "generator": [
        (r"mapping_z\.(?P<idx>\d+)\.(?P<param>weight|bias)", "mapping.layers.{prev}.\\g<param>"),
        (r"decoder\.input\.input", "synthesis.const"),
        *_modulated(r"decoder\.conv1", "synthesis.conv"),
        *_modulated(r"decoder\.convs\.(?P<blk>\d+)\.conv1", "synthesis.blocks.\\g<blk>.conv_up"),
        *_modulated(r"decoder\.convs\.(?P<blk>\d+)\.conv2", "synthesis.blocks.\\g<blk>.conv"),
        (r"decoder\.convs\.(?P<blk>\d+)\.skip\.0\.weight", "synthesis.blocks.\\g<blk>.skip.weight"),
        (r"decoder\.convs_latent\.(?P<blk>\d+)\.0\.weight", "resizer.layers.\\g<blk>.weight"),
        (r"decoder\.convs_latent\.(?P<blk>\d+)\.[12]\.bias", "resizer.layers.\\g<blk>.bias"),
        *_modulated(r"decoder\.to_rgb", "synthesis.to_rgb"),
    ],
    "encoder": [
        (r"from_rgb\.0\.weight", "from_rgb.weight"),
        (r"from_rgb\.1\.bias", "from_rgb.bias"),
        *[(rf"convs\.(?P<blk>\d+)\.{a}", f"blocks.\\g<blk>.{b}") for a, b in _RES_BLOCK],
        (r"final_conv\.0\.weight", "to_stylemap.weight"),
        (r"final_conv\.1\.bias", "to_stylemap.bias"),
    ],
    "discriminator": [
        (r"convs\.0\.0\.weight", "from_rgb.weight"),
        (r"convs\.0\.1\.bias", "from_rgb.bias"),
        *[(rf"convs\.(?P<idx>\d+)\.{a}", "blocks.{prev}." + b) for a, b in _RES_BLOCK],
        (r"final_conv\.0\.weight", "final_conv.weight"),
        (r"final_conv\.1\.bias", "final_conv.bias"),
        (r"final_linear\.0\.(?P<param>weight|bias)", "final_linear.\\g<param>"),
        (r"final_linear\.1\.(?P<param>weight|bias)", "out.\\g<param>"),
    ],
}

# The official generator's blurs all follow a 2x upsample and store the kernel x4; E and D store it x1.
BLUR_GAIN = {"generator": 4.0, "encoder": 1.0, "discriminator": 1.0}

_KERNEL_KEY = re.compile(r".*\.kernel$")


def _rename(family: str, key: str) -> str | None:
    """Our key for an official key, or None when no rule matches."""
    for pattern, target in RULES[family]:
        m = re.fullmatch(pattern, key)
        if m:
            if "{prev}" in target:
                target = target.replace("{prev}", str(int(m.group("idx")) - 1))
            return m.expand(target)
    return None


def convert_state_dict(family: str, official: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """Official state dict -> ours (gamma and beta fused into one modulation conv). Errors name the key."""
    blur = make_blur_kernel((1, 3, 3, 1))
    out: dict[str, torch.Tensor] = {}
    pending: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in official.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{where}: key {key!r} is a {type(value).__name__}, expected a tensor")
        if _KERNEL_KEY.fullmatch(key):
            gain = BLUR_GAIN[family]
            if tuple(value.shape) != (4, 4) or not torch.allclose(value.float(), blur * gain, atol=1e-6):
                raise CheckpointError(f"{where}: blur kernel {key!r} is not the [1,3,3,1] kernel x{gain:g}")
            continue
        ours = _rename(family, key)
        if ours is None:
            raise CheckpointError(f"{where}: unexpected key {key!r} (no mapping for the official {family})")
        if ".conv.weight" in key and value.ndim == 5:  # official modulated weight [1, out, in, k, k]
            value = value[0]
        part = re.search(r"\.conv\.(gamma|beta)\.", key)
        if part:
            pending.setdefault(ours, {})[part.group(1)] = value
            continue
        if ours in out:
            raise CheckpointError(f"{where}: two official keys map to {ours!r}")
        out[ours] = value
    for ours, parts in pending.items():
        if set(parts) != {"gamma", "beta"}:
            raise CheckpointError(f"{where}: {ours!r} needs both gamma and beta, found only {sorted(parts)}")
        out[ours] = torch.cat([parts["gamma"], parts["beta"]], dim=0)
    return out


def config_from_train_args(args: Any, where: str) -> ModelConfig:
    """Model config from the official `train_args` Namespace (or a dict of the same fields)."""
    fields = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    mapping: dict[str, tuple[str, Callable[[Any], Any]]] = {
        "size": ("size", int),
        "latent_spatial_size": ("latent_spatial_size", int),
        "latent_channel_size": ("latent_channels", int),
        "mapping_layer_num": ("mapping_layers", int),
        "lr_mul": ("lr_mul", float),
        "channel_multiplier": ("channel_multiplier", int),
        "normalize_mode": ("normalize_mode", str),
        "small_generator": ("small_generator", bool),
    }
    kwargs = {}
    for theirs, (ours, cast) in mapping.items():
        if theirs in fields:
            kwargs[ours] = cast(fields[theirs])
    for required in ("size", "latent_spatial_size"):
        if required not in kwargs:
            raise CheckpointError(f"{where}: train_args lacks {required!r}; cannot rebuild the model")
    try:
        return ModelConfig(**kwargs)
    except ConfigError as exc:
        raise CheckpointError(f"{where}: train_args describe an unsupported model: {exc}") from None


def convert_official(raw: dict[str, Any], where: str) -> Checkpoint:
    """An official checkpoint dict (already safely loaded) -> our Checkpoint. Optimizer states are dropped."""
    if not isinstance(raw, dict) or "train_args" not in raw:
        raise CheckpointError(f"{where}: not an official StyleMapGAN checkpoint (no 'train_args')")
    config = config_from_train_args(raw["train_args"], where)
    networks = {}
    for key, (ours, family) in OFFICIAL_NETWORKS.items():
        if key in raw:
            networks[ours] = convert_state_dict(family, raw[key], f"{where} [{key}]")
    if "g_ema" not in networks:
        raise CheckpointError(f"{where}: official checkpoint has no 'g_ema'")
    check_state_dicts(config, networks, where)
    return Checkpoint(config, networks)


def is_official_stylemapgan(raw: Any) -> bool:
    return isinstance(raw, Mapping) and "train_args" in raw


@dataclass(frozen=True)
class OfficialFormat:
    """One official checkpoint layout: how to recognise a loaded file, convert it, and which entry holds the
    training arguments (kept, JSON-safe, in the provenance)."""

    family: ModelFamily
    matches: Callable[[Any], bool]
    convert: Callable[[Any, str], Checkpoint]
    args_key: str
    provenance_key: str
    provenance_args: Callable[[Any], dict[str, Any]]


def _stylemapgan_args(args: Any) -> dict[str, Any]:
    if not isinstance(args, argparse.Namespace):
        return {}
    return {k: v for k, v in vars(args).items() if isinstance(v, str | int | float | bool) or v is None}


OFFICIAL_FORMATS = (
    OfficialFormat(STYLEMAPGAN, is_official_stylemapgan, convert_official, "train_args", "official_train_args",
                   _stylemapgan_args),
    OfficialFormat(SEMANTICSTYLEGAN, is_official_semantic, convert_official_semantic, "args", "official_args",
                   provenance_args),
)


def read_official(path: str | Path) -> Any:
    """torch.load with weights_only and argparse.Namespace allow-listed; a one-line CheckpointError otherwise."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... on bad files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: cannot read as an official checkpoint ({first_line})") from None


def official_format(raw: Any, where: str) -> OfficialFormat:
    """Which official layout a loaded file is, from its contents."""
    for fmt in OFFICIAL_FORMATS:
        if fmt.matches(raw):
            return fmt
    keys = ", ".join(sorted(str(k) for k in raw)) if isinstance(raw, Mapping) else f"a {type(raw).__name__}"
    raise CheckpointError(
        f"{where}: not an official StyleMapGAN checkpoint (no 'train_args') nor an official SemanticStyleGAN one "
        f"(no 'args' with 'seg_dim'); top level: {keys or 'empty'}"
    )


def load_official(path: str | Path) -> Checkpoint:
    """An official .pt file of either family -> our Checkpoint (optimiser states dropped)."""
    path = Path(path)
    raw = read_official(path)
    fmt = official_format(raw, str(path))
    ckpt = fmt.convert(raw, str(path))
    ckpt.provenance = default_provenance(f"converted from official checkpoint {path.name}")
    ckpt.provenance["source_sha256"] = file_sha256(path)
    ckpt.provenance["official_code"] = fmt.family.title
    ckpt.provenance[fmt.provenance_key] = fmt.provenance_args(raw[fmt.args_key])
    return ckpt
