"""Model subcommands: models, info, init, convert, release.

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
from stylemapgan.checkpoint.io import default_provenance, file_sha256, read_family
from stylemapgan.cli import CLIError, announce_threads
from stylemapgan.cli.options import add_output, add_threads_option, output_path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models", help="list the bundled models (name, family, headline metrics), or print one's card",
        description="List every bundled model name this version knows: the ones in this installation with their "
                    "family, size, sample faces and headline metrics, the others with the command that builds "
                    "them. With NAME, print that model's card (Markdown).",
    )
    p.add_argument("name", nargs="?", default=None, metavar="NAME", help="a bundled model: print its card")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(handler=cmd_models)

    p = subparsers.add_parser(
        "info", help="print a model's config, parameter counts and provenance",
        description="Describe a checkpoint (ours or official), a training run's newest checkpoint, a bundled model "
                    "(default: the bundled default model), or a named preset.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("ckpt", nargs="?", metavar="CKPT",
                     help="checkpoint file (ours or official), run directory or bundled model name (or --ckpt)")
    src.add_argument("--ckpt", dest="ckpt_flag", metavar="CKPT", default=None,
                     help="the same as the positional CKPT, spelled as on every other command")
    src.add_argument("--preset", choices=sorted(all_presets()), help="describe a named preset instead")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(handler=cmd_info)

    p = subparsers.add_parser("init", help="write a freshly initialised checkpoint (seeded)")
    add_output(p, folder=False, help="output checkpoint path (.safetensors)")
    p.add_argument("--preset", required=True, choices=sorted(all_presets()), help="model configuration")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights (default 0)")
    p.set_defaults(handler=cmd_init)

    p = subparsers.add_parser(
        "convert", help="convert an official StyleMapGAN or SemanticStyleGAN .pt checkpoint to ours"
    )
    p.add_argument("official", help="official checkpoint (.pt; the family is read from its contents)")
    add_output(p, folder=False, help="output checkpoint path (.safetensors)")
    p.set_defaults(handler=cmd_convert)

    p = subparsers.add_parser(
        "release", help="strip a training checkpoint to EMA G + E + truncation centre + card",
        description="Release a training checkpoint as an inference model: the EMA networks its family's "
                    "inference model needs (StyleMapGAN: g_ema + e_ema; SemanticStyleGAN: g_ema + e_ema from a "
                    "`train-encoder` run), the family's truncation centre and a model card (Markdown beside it). "
                    "No discriminator, no optimizer state.")
    p.add_argument("ckpt", help="training checkpoint (or run directory: its latest checkpoint; a SemanticStyleGAN "
                                "model's: its `train-encoder` run)")
    add_output(p, folder=False, help="output model (.safetensors); the card is written beside it as .md",
               beside=(".md",))
    p.add_argument("--name", required=True, help="model name for the card (a bundled model's name is its file stem)")
    p.add_argument("--description", default="", help="one paragraph for the card: data, budget, what it is for")
    p.add_argument("--metrics", default=None, help="report.json from `stylemapgan eval` to put in the card")
    p.add_argument("--samples", default=None,
                   help="sample dataset shipped with the model: its encoder MSE goes in the card, which names the "
                        "folder; tools find it beside the model file (test:N without --data)")
    add_threads_option(p)
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
        from stylemapgan.models import resolve_checkpoint

        if args.ckpt is not None and args.ckpt_flag is not None:
            raise CLIError("--ckpt: give the checkpoint once (positional CKPT or --ckpt)")
        path = resolve_checkpoint(args.ckpt if args.ckpt is not None else args.ckpt_flag)
        ckpt = load_checkpoint(path)
        config = ckpt.config
        info = describe(config, ckpt.provenance, sorted(ckpt.networks), str(path))
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


CARD_FIGURES = (("recon.mse", "recon MSE"), ("fid.value", "FID"), ("bundled_samples_recon_mse", "sample-face MSE"))


def bundled_model_rows() -> list[dict]:
    """One row per known bundled model name (then any other bundled file): present or not, card figures."""
    from stylemapgan.models import DEFAULT_MODEL, KNOWN_MODELS, bundled_directions, bundled_models, bundled_samples
    from stylemapgan.models import model_card as read_card

    present = bundled_models()
    rows = []
    for name in dict.fromkeys([*KNOWN_MODELS, *present]):
        row: dict = {"name": name, "default": name == DEFAULT_MODEL, "present": name in present,
                     "builds_with": KNOWN_MODELS.get(name)}
        if name in present:
            path = present[name]
            card = read_card(path) or {}
            samples, directions = bundled_samples(path), bundled_directions(path)
            metrics = card.get("metrics") or {}
            row.update({"path": str(path), "card": str(path.with_suffix(".md")), "size_bytes": path.stat().st_size,
                        "family": card.get("family") or read_family(path).title, "iterations": card.get("iterations"),
                        "trained_by": card.get("trained_by"),
                        # what the released run started from (a trained generator, an encoder of another run), first
                        "earlier_stages": [
                            {"trained_by": stage.get("trained_by"), "iterations": stage.get("iterations")}
                            for stage in [*(card.get("initialised_from") or []), *(card.get("networks_from") or [])]
                            if stage.get("iterations")],  # a fresh, untrained start is no stage
                        "samples": samples.name if samples else None,
                        "directions": directions.name if directions else None,
                        "metrics": {key: metrics[key] for key, _ in CARD_FIGURES if key in metrics}})
        rows.append(row)
    return rows


def cmd_models(args: argparse.Namespace) -> int:
    from stylemapgan.models import KNOWN_MODELS, bundled_models

    if args.name is not None:
        present = bundled_models()
        if args.name not in present:
            known = KNOWN_MODELS.get(args.name)
            raise CLIError(f"{args.name}: " + (f"a bundled model name, but its file is not in this installation "
                                              f"(`{known}` builds it)" if known else
                                              f"no such bundled model (bundled: {', '.join(present) or 'none'})"))
        print(present[args.name].with_suffix(".md").read_text(), end="")
        return 0
    rows = bundled_model_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        if not row["present"]:
            print(f"{row['name']}: not in this installation (`{row['builds_with']}` builds it)")
            continue
        figures = ", ".join(f"{label} {row['metrics'][key]:.4g}" for key, label in CARD_FIGURES
                            if isinstance(row["metrics"].get(key), int | float))
        extras = ", ".join(f"{what} {row[what]}" for what in ("samples", "directions") if row[what])
        print(f"{row['name']}{' (default)' if row['default'] else ''}: {row['family']}, "
              f"{row['size_bytes'] / 1e6:.1f} MB, {_iterations(row)}"
              f"{'; ' + figures if figures else ''}{'; ' + extras if extras else ''}")
        print(f"  card: {row['card']}")
    return 0


def _iterations(row: dict) -> str:
    """"28250 iterations", or with the stages a release went through: "8144 (train) + 1040 (train-encoder)
    iterations"."""
    if not row.get("earlier_stages"):
        return f"{row['iterations']} iterations"
    stages = [*row["earlier_stages"], {"trained_by": row.get("trained_by"), "iterations": row["iterations"]}]
    return " + ".join(f"{stage['iterations']} ({stage['trained_by'] or 'an earlier run'})" for stage in stages) \
        + " iterations"


def cmd_init(args: argparse.Namespace) -> int:
    _, preset = find_preset(args.preset)
    out = output_path(args)
    ckpt = fresh_checkpoint(preset.model, args.seed, f"init --preset {preset.name} --seed {args.seed}")
    save_checkpoint(out, ckpt)
    print(f"wrote {out}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    src, out = Path(args.official), output_path(args)
    ckpt = load_checkpoint(src)
    if not ckpt.provenance.get("source", "").startswith("converted from official"):
        ckpt.provenance = {**default_provenance(f"copied from {src.name}"), "source_sha256": file_sha256(src)}
    save_checkpoint(out, Checkpoint(ckpt.config, ckpt.networks, None, ckpt.provenance))
    print(f"converted {src} -> {out} ({family_of(ckpt.config).title}; networks: "
          f"{', '.join(sorted(ckpt.networks))})")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from stylemapgan.release import release_model
    from stylemapgan.training.run import latest_checkpoint

    out = output_path(args)
    metrics = None
    if args.metrics:
        metrics = eval_report_summary(json.loads(Path(args.metrics).read_text()))
    source = latest_checkpoint(args.ckpt)
    announce_threads(args)
    release_model(source, out, name=args.name, description=args.description, metrics=metrics, samples=args.samples)
    print(f"wrote {out} and {Path(out).with_suffix('.md')}")
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
                for key in ("control",) if "control" in row else ("mse_src", "mse_ref"):  # part_control, local_edit
                    if row.get(key) is not None:
                        out[f"{metric}.{part}.{key}"] = row[key]
    return out
