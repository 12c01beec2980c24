"""Data subcommands: prepare (folder / zip / official LMDB -> dataset), datasets build, datasets info."""

from __future__ import annotations

import argparse
import json
import sys

from stylemapgan.cli import CLIError
from stylemapgan.cli.options import add_output, add_progress_option, output_path
from stylemapgan.config import LIMITS

MAX_SIZE = LIMITS["size"][1]  # the largest model resolution: a larger dataset is of no use to any model
MAX_WORKERS = 64  # decoding or rendering processes


def _check_workers(value: int | None) -> None:
    if value is not None and not 1 <= value <= MAX_WORKERS:
        raise CLIError(f"--workers: must be in [1, {MAX_WORKERS}], got {value}")


def _sizes(values: list[str] | None) -> tuple[int, ...] | None:
    """--size 64 --size 128, or --size 64,128 -> (64, 128)."""
    if not values:
        return None
    out: list[int] = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit() or int(part) < 1:
                raise CLIError(f"--size: not a positive integer: {part!r}")
            if int(part) > MAX_SIZE:
                raise CLIError(f"--size: at most {MAX_SIZE} (the largest model resolution), got {part}")
            out.append(int(part))
    return tuple(sorted(set(out)))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="turn a folder, zip or official LMDB of images into a prepared dataset",
        description="Sanitise, square and resize every image under SRC (a folder, recursively; a zip; or an "
        "official StyleMapGAN LMDB) into an LMDB dataset at OUTDIR. Bad inputs are skipped and listed. "
        "Writes OUTDIR.partial and renames it when complete; an interrupted run is rebuilt from scratch.",
    )
    p.add_argument("src", help="folder, .zip, or official LMDB directory")
    add_output(p, folder=True, help="output dataset directory")
    p.add_argument(
        "--size",
        action="append",
        required=True,
        metavar="N",
        help=f"output resolution, at most {MAX_SIZE}; repeat or comma-separate for several (e.g. --size 128,256)",
    )
    p.add_argument(
        "--square",
        choices=["crop", "pad"],
        default="crop",
        help="make non-square images square by centre crop (default) or by padding",
    )
    p.add_argument(
        "--filter",
        dest="resize_filter",
        choices=["lanczos", "box"],
        default="lanczos",
        help="resize filter (recorded in the metadata: FID depends on it; default lanczos)",
    )
    p.add_argument(
        "--test",
        default="0",
        metavar="N|F",
        help="held-out test split: a count (500) or a fraction (0.05); default none",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the test split draw (default 0)")
    p.add_argument(
        "--background",
        default="white",
        help="colour for transparent pixels and padding: #rrggbb, r,g,b, white or black",
    )
    p.add_argument(
        "--upscale-small",
        action="store_true",
        help="upscale images smaller than the largest --size instead of skipping them",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="skip images with more pixels than this (decompression-bomb guard; default 89478485)",
    )
    p.add_argument("--dedup", action="store_true", help="skip files whose bytes equal an earlier file's")
    p.add_argument(
        "--source-size",
        type=int,
        default=None,
        help="official LMDB input: which stored resolution to read (default: the largest)",
    )
    p.add_argument("--workers", type=int, default=1, help=f"decoding processes, 1 to {MAX_WORKERS} (default 1)")
    p.add_argument(
        "--labels",
        default=None,
        metavar="DIR",
        help="per-pixel label maps (for SemanticStyleGAN): DIR/<path>/<stem>.png beside each SRC/<path>/<stem>.<ext>, "
        "a single-channel index PNG (mode L or P, 0 = background) of the image's size; images whose label map is "
        "missing or bad are skipped and listed",
    )
    p.add_argument(
        "--label-names",
        default=None,
        metavar="A,B,C",
        help="with --labels: the class names, class 0 first (default: DIR/classes.txt, one name per line)",
    )
    p.add_argument("--name", default=None, help="dataset name for the card (default: SRC's name)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTDIR if it exists (atomically)")
    add_progress_option(p)
    p.set_defaults(handler=cmd_prepare)

    p = subparsers.add_parser("datasets", help="built-in datasets: build one, or describe a prepared dataset")
    sub = p.add_subparsers(dest="datasets_command", metavar="ACTION")
    b = sub.add_parser("build", help="build a built-in dataset (deterministic by seed)")
    b.add_argument("name", help="cartoon-faces, emoji or fashion-mnist")
    add_output(b, folder=True, help="output dataset directory")
    b.add_argument(
        "--size",
        action="append",
        metavar="N",
        help="resolution(s) (cartoon-faces 64/128/256, default 64; emoji <= 64; fashion-mnist 32)",
    )
    b.add_argument("--count", type=int, default=None, help="train images (default: the builder's full set)")
    b.add_argument("--test-count", type=int, default=None,
                   help="test images (default: the builder's full test split, cartoon-faces 1,000, emoji 500, "
                        "fashion-mnist 10,000; with --count N, a tenth of N, at least 1 and at most that)")
    b.add_argument("--seed", type=int, default=0, help="seed (same seed, same images; default 0)")
    b.add_argument("--source", default=None, help="fashion-mnist: folder with the idx(.gz) files")
    b.add_argument("--workers", type=int, default=None, help="cartoon-faces: rendering processes (default 2)")
    b.add_argument("--overwrite", action="store_true", help="replace OUTDIR if it exists (atomically)")
    add_progress_option(b)
    b.set_defaults(handler=cmd_build)
    i = sub.add_parser("info", help="print a prepared dataset's card (counts, resolution, source, licence...)")
    i.add_argument("path", help="prepared dataset directory (or an official LMDB)")
    i.add_argument("--json", action="store_true", help="print the metadata record as JSON")
    i.set_defaults(handler=cmd_info)
    ls = sub.add_parser("list", help="list the built-in datasets")
    ls.set_defaults(handler=cmd_list)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def cmd_prepare(args: argparse.Namespace) -> int:
    from stylemapgan.data import DatasetError, ImageOptions, parse_color, parse_test_split, prepare_dataset
    from stylemapgan.data.images import DEFAULT_MAX_PIXELS
    from stylemapgan.data.labels import label_options

    _check_workers(args.workers)
    if args.label_names is not None and args.labels is None:
        raise CLIError("--label-names: only with --labels DIR")
    try:
        labels = label_options(args.labels, args.label_names) if args.labels is not None else None
        options = ImageOptions(
            sizes=_sizes(args.size) or (),
            square=args.square,
            resize_filter=args.resize_filter,
            background=parse_color(args.background),
            upscale_small=args.upscale_small,
            max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
        )
        test = parse_test_split(args.test)
        report = prepare_dataset(
            args.src,
            output_path(args),
            options,
            test=test,
            seed=args.seed,
            dedup=args.dedup,
            workers=args.workers,
            source_size=args.source_size,
            name=args.name,
            overwrite=args.overwrite,
            progress=args.progress,
            labels=labels,
        )
    except (ValueError, DatasetError) as exc:
        raise CLIError(str(exc)) from exc
    print(report.summary())
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from stylemapgan.data import DatasetError, build_dataset, read_meta
    from stylemapgan.data.card import card_text

    _check_workers(args.workers)
    try:
        path = build_dataset(
            args.name,
            output_path(args),
            sizes=_sizes(args.size),
            count=args.count,
            test_count=args.test_count,
            seed=args.seed,
            source=args.source,
            workers=args.workers,
            overwrite=args.overwrite or None,
            progress=False if not args.progress else None,
        )
        print(card_text(read_meta(path), str(path)))
    except (ValueError, DatasetError) as exc:
        raise CLIError(str(exc)) from exc
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from stylemapgan.data import DatasetError, detect_layout, read_meta
    from stylemapgan.data.card import card_text

    try:
        if detect_layout(args.path) == "official":
            info = _official_info(args.path)
            if args.json:
                print(json.dumps(info, indent=2))
            else:
                print("\n".join(f"{k}: {v}" for k, v in info.items()))
            return 0
        meta = read_meta(args.path)
    except DatasetError as exc:
        raise CLIError(str(exc)) from exc
    if args.json:
        print(json.dumps({"path": str(args.path), **meta}, indent=2, sort_keys=True))
    else:
        print(card_text(meta, str(args.path)))
    return 0


def _official_info(path: str) -> dict:
    from stylemapgan.data.lmdb_format import official_length, official_sizes, shared_env

    env = shared_env(path)
    return {
        "path": path,
        "format": "official StyleMapGAN / rosinality LMDB",
        "images": official_length(env, path),
        "sizes": official_sizes(env),
        "labels": "none",
        "masks": "none",
    }


def cmd_list(args: argparse.Namespace) -> int:
    from stylemapgan.data.builders import BUILDER_NAMES, get_builder

    for name in BUILDER_NAMES:
        b = get_builder(name)
        print(f"{name:<14} {b.description}\n{'':<14} source: {b.source}; licence: {b.licence}")
    sys.stdout.flush()
    return 0
