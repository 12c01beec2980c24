"""`stylemapgan clusters fit | name | show`: part masks without labels (`stylemapgan.editing.clusters`).

fit: spherical k-means of generator features of random samples, written into a copy of the checkpoint (its
extra entry `part_clusters`), so `--ckpt OUT` carries them to `edit --mask cluster:N`, `attribute --mask` and the
web editor. name: give clusters names (`3=hair`), in place or into --out. show: samples beside their cluster maps,
with ids, so the user can see which cluster is which.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from stylemapgan.cli import CLIError, announce_threads, resolve_device
from stylemapgan.cli.options import add_progress_option, add_threads_option, declare_output

NAME_ARG_RE = re.compile(r"^(\d+)=(.*)$")
MAX_SHOW_SEEDS = 64


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("clusters", help="part masks without labels: fit, name and show a model's part clusters")
    sub = p.add_subparsers(dest="clusters_command", metavar="ACTION")
    ckpt_help = "checkpoint file, run directory or bundled model name (default: the bundled cartoon-faces model)"

    f = sub.add_parser("fit", help="cluster generator features of random samples (spherical k-means) into K parts",
                       description="Fit K part clusters (Collins et al. 2020, Editing in Style) and write the "
                                   "checkpoint with them to --out.")
    f.add_argument("--ckpt", default=None, help=ckpt_help)
    f.add_argument("--k", type=int, required=True, help="number of clusters, 2 to 64 (8 to 16 suits faces)")
    f.add_argument("--out", required=True, help="checkpoint to write (the model with its clusters)")
    declare_output(f, "--out", ("out",), folder=False)
    f.add_argument("--layer", default=None,
                   help="synthesis resolution(s) whose features are clustered, e.g. 32 or 16+32 "
                        "(default: size/4 + size/2, what separated parts best on cartoon-faces)")
    f.add_argument("--samples", type=int, default=200, help="random samples the features come from (default 200)")
    f.add_argument("--seed", type=int, default=0, help="seed of the samples and of the k-means seeding (default 0)")
    f.add_argument("--iterations", type=int, default=100, help="k-means iterations at most (default 100)")
    f.add_argument("--restarts", type=int, default=1, help="k-means runs from successive seeds, best kept")
    f.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    add_progress_option(f)
    add_threads_option(f)
    f.set_defaults(handler=cmd_fit)

    n = sub.add_parser("name", help="name clusters (3=hair 5=eyes; 3= removes a name)")
    n.add_argument("--ckpt", required=True, help="checkpoint with part clusters (from clusters fit), updated in place "
                                                "unless --out is given")
    n.add_argument("names", nargs="+", metavar="ID=NAME", help="cluster id and name, e.g. 3=hair")
    n.add_argument("--out", default=None, help="write here instead of updating --ckpt in place")
    declare_output(n, "--out", ("out",), folder=False)
    n.set_defaults(handler=cmd_name)

    s = sub.add_parser("show", help="samples beside their cluster maps, with ids and names (clusters.png)")
    s.add_argument("--ckpt", default=None, help=ckpt_help)
    s.add_argument("--outdir", required=True, help="output folder (created): clusters.png, clusters.json")
    declare_output(s, "--outdir", ("outdir",), folder=True)
    s.add_argument("--seeds", default="0-7", help=f"samples shown, e.g. 0-7 (at most {MAX_SHOW_SEEDS})")
    s.add_argument("--trunc", type=float, default=1.0, help="truncation psi of the samples (default 1)")
    s.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    add_threads_option(s)
    s.set_defaults(handler=cmd_show)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _editing_errors(fn: Any) -> Any:
    """EditingError (ClusterError included) -> one-line CLI error."""

    def wrapped(args: argparse.Namespace) -> int:
        from stylemapgan.editing.errors import EditingError

        try:
            return fn(args)
        except EditingError as exc:
            raise CLIError(str(exc)) from None

    return wrapped


def _check_out(out: str) -> Path:
    from stylemapgan.models import bundled_models_dir

    path = Path(out)
    if path.is_dir():
        raise CLIError(f"--out {out}: is a directory, expected a checkpoint file name")
    if path.resolve().parent == bundled_models_dir().resolve():
        raise CLIError(f"--out {out}: the bundled models' folder is not for writing; pick another path")
    if not path.parent.is_dir():
        raise CLIError(f"--out {out}: folder {path.parent} does not exist")
    return path


def _load_clusters(ckpt_path: Path):
    from stylemapgan.checkpoint import load_checkpoint
    from stylemapgan.checkpoint.families import family_of
    from stylemapgan.editing.clusters import from_extra

    ckpt = load_checkpoint(ckpt_path)
    family = family_of(ckpt.config)
    if family.no_editing is not None:
        raise CLIError(f"{ckpt_path}: {family.no_editing}")
    return ckpt, from_extra(ckpt.extra, ckpt.config, str(ckpt_path))


def _summary(clusters) -> str:
    named = ", ".join(f"{i}={n}" for i, n in sorted(clusters.names.items())) or "none named"
    layers = "+".join(map(str, clusters.resolutions))
    return f"{clusters.k} clusters of layer {layers} features ({named})"


@_editing_errors
def cmd_fit(args: argparse.Namespace) -> int:
    import torch

    from stylemapgan.checkpoint import save_checkpoint
    from stylemapgan.checkpoint.models import load_editing_model
    from stylemapgan.editing.clusters import EXTRA_KEY, MAX_CLUSTERS, MIN_CLUSTERS, fit_clusters, parse_resolutions
    from stylemapgan.models import resolve_checkpoint

    if not MIN_CLUSTERS <= args.k <= MAX_CLUSTERS:
        raise CLIError(f"--k: must be in [{MIN_CLUSTERS}, {MAX_CLUSTERS}], got {args.k}")
    for flag in ("samples", "iterations", "restarts"):
        if getattr(args, flag) < 1:
            raise CLIError(f"--{flag}: must be >= 1, got {getattr(args, flag)}")
    out = _check_out(args.out)
    path = resolve_checkpoint(args.ckpt)
    device = resolve_device(args.device)
    model = load_editing_model(path, device)
    resolutions = parse_resolutions(args.layer, model.config) if args.layer else None
    announce_threads(args)
    if args.progress:
        print(f"fitting {args.k} clusters on {args.samples} samples of {path} ...", file=sys.stderr, flush=True)
    with torch.no_grad():
        clusters = fit_clusters(model.generator.eval(), args.k, resolutions=resolutions, samples=args.samples,
                                seed=args.seed, iterations=args.iterations, restarts=args.restarts)
    ckpt = model.checkpoint
    ckpt.extra[EXTRA_KEY] = clusters.to_extra()
    save_checkpoint(out, ckpt)
    print(f"{out}: {_summary(clusters)}; mean cosine similarity {clusters.fit['objective']:.3f} after "
          f"{clusters.fit['iterations']} iterations")
    print(f"next: stylemapgan clusters show --ckpt {out} --outdir DIR; stylemapgan clusters name --ckpt {out} 3=hair")
    return 0


@_editing_errors
def cmd_name(args: argparse.Namespace) -> int:
    from stylemapgan.checkpoint import save_checkpoint
    from stylemapgan.editing.clusters import EXTRA_KEY
    from stylemapgan.models import resolve_checkpoint

    path = resolve_checkpoint(args.ckpt)
    out = _check_out(args.out) if args.out else _check_out(str(path))
    assignments: dict[int, str | None] = {}
    for text in args.names:
        m = NAME_ARG_RE.match(text.strip())
        if not m:
            raise CLIError(f"name {text!r}: expected ID=NAME, e.g. 3=hair (3= removes the name)")
        assignments[int(m.group(1))] = m.group(2).strip() or None
    ckpt, clusters = _load_clusters(path)
    if clusters is None:
        raise CLIError(f"--ckpt {args.ckpt}: has no part clusters; fit them first with stylemapgan clusters fit")
    clusters = clusters.renamed(assignments)
    ckpt.extra[EXTRA_KEY] = clusters.to_extra()
    save_checkpoint(out, ckpt)
    print(f"{out}: {_summary(clusters)}")
    return 0


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{v:02x}" for v in rgb)


def _id_positions(ids, k: int) -> dict[int, tuple[int, int]]:
    """Where to write each cluster's id on its map: the cluster's pixel nearest its pixels' mean position."""
    import torch

    out = {}
    for c in range(k):
        ys, xs = torch.nonzero(ids == c, as_tuple=True)
        if len(ys) < 4:
            continue
        my, mx = ys.float().mean(), xs.float().mean()
        j = int(torch.argmin((ys - my) ** 2 + (xs - mx) ** 2))
        out[c] = (int(xs[j]), int(ys[j]))
    return out


@_editing_errors
def cmd_show(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from stylemapgan.editing import Editor
    from stylemapgan.editing.clusters import PALETTE, colourise
    from stylemapgan.editing.editor import parse_seeds
    from stylemapgan.models import resolve_checkpoint
    from stylemapgan.utils.files import atomic_write_bytes
    from stylemapgan.utils.images import png_bytes, to_uint8

    seeds = parse_seeds(args.seeds, "--seeds")
    if len(seeds) > MAX_SHOW_SEEDS:
        raise CLIError(f"--seeds: at most {MAX_SHOW_SEEDS} samples in one picture, got {len(seeds)}")
    path = resolve_checkpoint(args.ckpt)
    editor = Editor.from_checkpoint(path, device=resolve_device(args.device))
    clusters = editor.clusters
    if clusters is None:
        raise CLIError(f"--ckpt {args.ckpt or path}: has no part clusters; fit them with stylemapgan clusters fit")
    announce_threads(args)
    outdir = Path(args.outdir)
    if outdir.exists() and not outdir.is_dir():
        raise CLIError(f"--outdir {args.outdir}: exists and is not a folder")
    outdir.mkdir(parents=True, exist_ok=True)
    images, stylemaps = editor.generate(seeds, args.trunc)
    maps = [editor.cluster_map(editor.add_stylemap(sm)).cpu() for sm in stylemaps]
    scale = max(1, 128 // editor.size)
    tile = editor.size * scale
    pad, legend_row = 4, 18
    rows_legend = (clusters.k + 3) // 4
    width = len(seeds) * (tile + pad) + pad
    canvas = Image.new("RGB", (max(width, 4 * 150 + pad), 2 * (tile + pad) + pad + rows_legend * legend_row + pad),
                       "white")
    draw = ImageDraw.Draw(canvas)
    pixels = to_uint8(images)
    share = torch.zeros(clusters.k)
    for col, (rgb, ids) in enumerate(zip(pixels, maps, strict=True)):
        x0 = pad + col * (tile + pad)
        canvas.paste(Image.fromarray(rgb).resize((tile, tile), Image.Resampling.NEAREST), (x0, pad))
        colour = Image.fromarray(colourise(ids).numpy()).resize((tile, tile), Image.Resampling.NEAREST)
        canvas.paste(colour, (x0, 2 * pad + tile))
        share += torch.bincount(ids.flatten(), minlength=clusters.k).float()
        for c, (x, y) in _id_positions(ids, clusters.k).items():
            tx, ty = x0 + x * scale + scale // 2 - 4, 2 * pad + tile + y * scale + scale // 2 - 5
            draw.text((tx + 1, ty + 1), str(c), fill="black")
            draw.text((tx, ty), str(c), fill="white")
    top = 2 * (tile + pad) + pad
    for c in range(clusters.k):
        x, y = pad + (c % 4) * 150, top + (c // 4) * legend_row
        draw.rectangle([x, y + 2, x + 12, y + 14], fill=PALETTE[c % len(PALETTE)], outline="black")
        draw.text((x + 18, y + 3), f"{c}: {clusters.names.get(c, '')}".rstrip(": ").rstrip(), fill="black")
    atomic_write_bytes(outdir / "clusters.png", png_bytes(np.asarray(canvas)))
    share = share / share.sum()
    record = {"model": str(path), "model_id": editor.model_id, "seeds": seeds, "trunc": args.trunc,
              "layers": list(clusters.resolutions), "fit": clusters.fit,
              "clusters": [{"id": c, "name": clusters.names.get(c), "colour": _hex(PALETTE[c % len(PALETTE)]),
                            "pixel_share": round(float(share[c]), 4)} for c in range(clusters.k)],
              "outputs": ["clusters.png"]}
    atomic_write_bytes(outdir / "clusters.json", (json.dumps(record, indent=2) + "\n").encode())
    print(f"{outdir / 'clusters.png'}: {len(seeds)} samples (top) and their cluster maps (below); {_summary(clusters)}")
    return 0
