"""Model subcommands: info, init, convert, release.

info, init and convert work for every model family: presets, parameter counts and networks come from the
family registry (`stylemapgan.checkpoint.families`), and the family of a file from the file itself."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stylemapgan.checkpoint import (
    AnyConfig,
    Checkpoint,
    all_presets,
    family_of,
    find_preset,
    fresh_checkpoint,
    load_checkpoint,
    parameter_counts,
    save_checkpoint,
)
from stylemapgan.checkpoint.io import default_provenance, file_sha256


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="print a model's config, parameter counts and provenance")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("ckpt", nargs="?", help="checkpoint file (ours or official)")
    src.add_argument("--preset", choices=sorted(all_presets()), help="describe a named preset instead")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(handler=cmd_info)

    p = subparsers.add_parser("init", help="write a freshly initialised checkpoint (seeded)")
    p.add_argument("out", help="output checkpoint path (.safetensors)")
    p.add_argument("--preset", required=True, choices=sorted(all_presets()))
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=cmd_init)

    p = subparsers.add_parser(
        "convert", help="convert an official StyleMapGAN or SemanticStyleGAN .pt checkpoint to ours"
    )
    p.add_argument("official", help="official checkpoint (.pt; the family is read from its contents)")
    p.add_argument("out", help="output checkpoint path (.safetensors)")
    p.set_defaults(handler=cmd_convert)

    p = subparsers.add_parser("release", help="strip a training checkpoint to EMA G + E + mean stylemap + card")
    p.add_argument("ckpt", help="training checkpoint (or run directory: its latest checkpoint)")
    p.add_argument("out", help="output model (.safetensors); the card is written beside it as .md")
    p.add_argument("--name", required=True)
    p.add_argument("--description", default="")
    p.add_argument("--metrics", default=None, help="report.json from `stylemapgan eval` to put in the card")
    p.add_argument("--samples", default=None, help="sample dataset shipped with the model: its MSE goes in the card")
    p.set_defaults(handler=cmd_release)


def describe(config: AnyConfig, provenance: dict, networks: list[str], source: str) -> dict:
    return {
        "source": source,
        "family": family_of(config).name,
        "config": config.to_dict(),
        "parameters": parameter_counts(config),
        "networks_in_file": networks,
        "provenance": provenance,
    }


def cmd_info(args: argparse.Namespace) -> int:
    if args.preset:
        _, preset = find_preset(args.preset)
        config = preset.model
        info = describe(config, {"preset": preset.name, "description": preset.description}, [],
                        f"preset {preset.name}")
    else:
        ckpt = load_checkpoint(args.ckpt)
        config = ckpt.config
        info = describe(config, ckpt.provenance, sorted(ckpt.networks), str(args.ckpt))
        if ckpt.training is not None:
            info["training"] = {k: v for k, v in ckpt.training.items() if isinstance(v, int | float | str)}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"source: {info['source']}")
    print(f"family: {family_of(config).title}")
    print("config:")
    for key, value in info["config"].items():
        if key != "family":
            print(f"  {key}: {value}")
    print("parameters:")
    for name, count in info["parameters"].items():
        print(f"  {name:<14} {count / 1e6:8.2f}M  ({count:,})")
    if info["networks_in_file"]:
        print(f"networks in file: {', '.join(info['networks_in_file'])}")
    if "training" in info:
        print("training: " + ", ".join(f"{k}={v}" for k, v in info["training"].items()))
    print("provenance:")
    for key, value in info["provenance"].items():
        print(f"  {key}: {value}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    _, preset = find_preset(args.preset)
    ckpt = fresh_checkpoint(preset.model, args.seed, f"init --preset {preset.name} --seed {args.seed}")
    save_checkpoint(args.out, ckpt)
    print(f"wrote {args.out}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    src = Path(args.official)
    ckpt = load_checkpoint(src)
    if not ckpt.provenance.get("source", "").startswith("converted from official"):
        ckpt.provenance = {**default_provenance(f"copied from {src.name}"), "source_sha256": file_sha256(src)}
    save_checkpoint(args.out, Checkpoint(ckpt.config, ckpt.networks, None, ckpt.provenance))
    print(f"converted {src} -> {args.out} ({family_of(ckpt.config).title}; networks: "
          f"{', '.join(sorted(ckpt.networks))})")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from stylemapgan.release import release_model
    from stylemapgan.training.run import latest_checkpoint

    metrics = None
    if args.metrics:
        metrics = eval_report_summary(json.loads(Path(args.metrics).read_text()))
    release_model(latest_checkpoint(args.ckpt), args.out, name=args.name, description=args.description,
                  metrics=metrics, samples=args.samples)
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.md')}")
    return 0


def eval_report_summary(report: dict) -> dict[str, float | int | str]:
    """The numbers of a `stylemapgan eval` report.json, flattened for a model card ("fid.value", ...)."""
    out: dict[str, float | int | str] = {}
    for metric, fields in (report.get("metrics") or {}).items():
        for key, value in fields.items():
            if isinstance(value, int | float | str) and key not in ("wall_s", "seed"):
                out[f"{metric}.{key}"] = value
        per_part = fields.get("per_part")
        if isinstance(per_part, dict):
            for part, row in per_part.items():
                for key in ("mse_src", "mse_ref"):
                    if key in row:
                        out[f"{metric}.{part}.{key}"] = row[key]
    return out
