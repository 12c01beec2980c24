"""Editing subcommands: project, generate, edit, transplant, interpolate, mix, directions, attribute.

A thin layer over `stylemapgan.editing`: parse arguments, resolve inputs, call the model's editor (any family:
`Editor.from_checkpoint`), write PNG / NPZ / NPY / GIF files and one JSON record per run (inputs, options, model
hash, outputs) next to them. Which flags a model takes comes from `editor.capabilities` (`FLAG_NEEDS`): a
StyleMapGAN model pastes masks (--mask, --shift, --mode), a SemanticStyleGAN model swaps parts (--part,
--shape-only, --texture-only, --remove-part), moves parts along directions (attribute --part), projects into W+ or
the expanded space (--space) and writes a segmentation colour map beside every image. `project` runs each
family's own recipe (`editor.projection_defaults`) under the flags given. Negative
numbers in comma lists need the `=` form: `--shift=-8,4`, `--strength=-3,0,3`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import functools
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from stylemapgan.cli import CLIError, announce_threads, resolve_device
from stylemapgan.cli.options import (
    add_dtype_option,
    add_progress_option,
    add_threads_option,
    check_output,
    declare_output,
)
from stylemapgan.cli.photos import (
    add_align_options,
    aligned_reference,
    face_items,
    paste_results,
    photos_record,
    save_transforms,
)
from stylemapgan.editing.errors import EditingError
from stylemapgan.perf.tuning import tune_allocator

Handler = Callable[[argparse.Namespace], int]


# ---- shared plumbing ------------------------------------------------------------------------------------------


MAX_BATCH = 1024  # --batch: images per forward pass (memory grows with it)
GRID_MAX = 64  # generate's grid.png: the first 64 seeds (8 x 8), so memory does not grow with the seed count


def _check_limits(args: argparse.Namespace) -> None:
    """The documented bounds of the count and number options, checked before anything is loaded or written."""
    from stylemapgan.editing.editor import check_feather, check_truncation, frame_alphas

    if getattr(args, "frames", None) is not None:
        frame_alphas(args.frames, "--frames")
    if getattr(args, "feather", None) is not None:
        check_feather(args.feather, "--feather")
    if getattr(args, "trunc", None) is not None:
        check_truncation(args.trunc, "--trunc")
    if getattr(args, "batch", None) is not None and not 1 <= args.batch <= MAX_BATCH:
        raise CLIError(f"--batch: must be in [1, {MAX_BATCH}], got {args.batch}")


def _remove_outputs(args: argparse.Namespace) -> None:
    """After a failure: the --outdir this command created goes entirely; in a folder that existed, what this
    command added goes (files it overwrote stay overwritten)."""
    created = getattr(args, "created_outdir", None)
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    before = getattr(args, "outdir_before", None)
    if before is None:
        return
    out = Path(args.outdir)
    for path in sorted(out.rglob("*"), key=lambda p: len(p.parts), reverse=True):  # children before parents
        if path in before:
            continue
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()


def _user_errors(handler: Handler) -> Handler:
    """Editing, dataset and file-system errors become one-line CLI errors; a failed command (or an interrupted
    one) removes what it wrote (`_remove_outputs`), so no half-written output folder is left behind."""

    @functools.wraps(handler)
    def wrapped(args: argparse.Namespace) -> int:
        from stylemapgan.data import DatasetError
        from stylemapgan.photos import PhotoError

        try:
            _check_limits(args)
            return handler(args)
        except (EditingError, DatasetError, PhotoError) as exc:
            _remove_outputs(args)
            raise CLIError(str(exc)) from None
        except OSError as exc:  # an output folder that cannot be written, a full disk...
            _remove_outputs(args)
            where = exc.filename if exc.filename is not None else getattr(args, "outdir", "output")
            raise CLIError(f"{where}: {exc.strerror or exc}") from None
        except BaseException:
            _remove_outputs(args)
            raise

    return wrapped


def _add_model_options(p: argparse.ArgumentParser, outdir: bool = True) -> None:
    p.add_argument(
        "--ckpt", default=None,
        help="checkpoint file (ours or official), training run directory (its newest checkpoint's EMA networks) "
             "or bundled model name (default: the bundled cartoon-faces model)",
    )
    if outdir:
        p.add_argument("--outdir", required=True, help="output folder (created); a JSON record is written there")
        declare_output(p, "--outdir", ("outdir",), folder=True)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--batch", type=int, default=8, help=f"images per forward pass, 1 to {MAX_BATCH} (default 8)")
    add_dtype_option(p)
    add_progress_option(p)
    add_threads_option(p)


def _add_image_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fit", choices=("crop", "pad"), default="crop",
                   help="make non-square inputs square by a centre crop (default) or by padding")
    p.add_argument("--background", default="black", help="padding / transparency colour (#rrggbb, r,g,b, black)")
    p.add_argument("--data", default=None, help="prepared dataset: inputs SPLIT:INDEX (e.g. test:12) and part masks")


def _add_blend_options(p: argparse.ArgumentParser) -> None:
    from stylemapgan.editing import EDIT_MODES
    from stylemapgan.editing.masks import POOLING_ORIGINS, POOLINGS

    defaults = ", ".join(f"{mode.default_pooling} for {name}" for name, mode in EDIT_MODES.items())
    p.add_argument("--mode", choices=tuple(EDIT_MODES), default=None,
                   help="w (default): blend stylemaps (mask pooled to s x s); w_plus: blend every style tensor "
                        "(mask pooled per layer). StyleMapGAN models")
    p.add_argument("--pool", choices=tuple(POOLINGS), default=None,
                   help="mask pooling: " + "; ".join(f"{k}: {POOLING_ORIGINS[k]}" for k in POOLINGS)
                        + f" (default: {defaults})")
    strength = p.add_mutually_exclusive_group()
    strength.add_argument("--alpha", type=float, default=None, help="blend strength in [0, 1] (default 1)")
    strength.add_argument("--frames", type=int, default=None,
                          help="N frames with strength 0 .. 1, N at most 256 (demo: 16; 1: the full-strength edit)")
    p.add_argument("--feather", type=float, default=0.0, help="soften the mask edge over about PX pixels (0 to 256)")


# ---- capabilities: which flags a model takes -----------------------------------------------------------------


class _ReferenceAction(argparse.Action):
    """--reference: appended to args.reference, and opens a part group that the --part / --shape-only /
    --texture-only after it fill (SemanticStyleGAN edits: one group per reference)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        namespace.reference = [*(namespace.reference or []), values]
        namespace.part_groups = [*getattr(namespace, "part_groups", []), {"parts": [], "what": []}]


class _PartAction(argparse.Action):
    """--part NAME: appended to args.part and to the group of the last --reference (group -1 before any)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        namespace.part = [*(namespace.part or []), values]
        _last_group(namespace)["parts"].append(values)


class _SubspaceAction(argparse.Action):
    """--shape-only / --texture-only: marks the group of the last --reference (and args.<dest>)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, True)
        _last_group(namespace)["what"].append(self.dest.removesuffix("_only"))


def _last_group(namespace: argparse.Namespace) -> dict[str, Any]:
    groups = getattr(namespace, "part_groups", None)
    if not groups:
        namespace.orphan_parts = True  # a part option before any --reference: reported by the handler
        namespace.part_groups = groups = [{"parts": [], "what": []}]
    return groups[-1]


def _add_part_options(p: argparse.ArgumentParser, per_reference: bool) -> None:
    where = " after a --reference: that reference's parts (repeat per reference)" if per_reference else ""
    if per_reference:
        p.add_argument("--part", action=_PartAction, default=None, metavar="NAME",
                       help=f"part name (or index) of a model with parts, repeatable{where}")
        p.add_argument("--shape-only", action=_SubspaceAction, help="take only the parts' shape codes")
        p.add_argument("--texture-only", action=_SubspaceAction, help="take only the parts' texture codes")
    else:
        p.add_argument("--part", action="append", default=None, metavar="NAME",
                       help="part name (or index) of a model with parts, repeatable")
        p.add_argument("--shape-only", action="store_true", help="only the parts' shape codes")
        p.add_argument("--texture-only", action="store_true", help="only the parts' texture codes")


def _is_set(value: Any) -> bool:
    return value not in (None, False, [], 0, 0.0, "")


@dataclass(frozen=True)
class FlagNeed:
    """A flag that only models with a capability take: `has(capabilities)` says whether this one does."""

    flag: str
    dest: str
    has: Callable[[Any], bool]
    lacks: str  # what a model without it lacks, in words
    instead: Callable[[Any], str]  # what to do instead, for this model


def _masks_instead(caps: Any) -> str:
    return "it edits whole parts: --part NAME" if caps.has_parts else "use --mask"


def _parts_instead(caps: Any) -> str:
    return "its edits take pixel regions: --mask" if caps.masks else ""


FLAG_NEEDS: tuple[FlagNeed, ...] = (
    FlagNeed("--mask", "mask", lambda c: c.masks, "pixel masks", _masks_instead),
    FlagNeed("--shift", "shift", lambda c: c.shifts, "shifted pastes", _masks_instead),
    FlagNeed("--mode", "mode", lambda c: bool(c.latent_modes), "w / w_plus blend modes", _masks_instead),
    FlagNeed("--pool", "pool", lambda c: c.masks, "mask pooling", _masks_instead),
    FlagNeed("--feather", "feather", lambda c: c.masks, "mask feathering", _masks_instead),
    FlagNeed("--part", "part", lambda c: c.has_parts, "parts", _parts_instead),
    FlagNeed("--shape-only", "shape_only", lambda c: c.shape_texture, "separate shape codes", _parts_instead),
    FlagNeed("--texture-only", "texture_only", lambda c: c.shape_texture, "separate texture codes", _parts_instead),
    FlagNeed("--remove-part", "remove_part", lambda c: c.composition, "part composition", _parts_instead),
    FlagNeed("--subspace", "subspace", lambda c: c.shape_texture, "part subspaces", _parts_instead),
    FlagNeed("--space", "space", lambda c: bool(c.projection_spaces), "choice of projection space (w+ / expanded)",
             lambda c: "it projects into its own code space"),
)


def _check_capabilities(args: argparse.Namespace, caps: Any) -> None:
    """One line naming the first flag given that this model cannot take (see FLAG_NEEDS)."""
    for need in FLAG_NEEDS:
        if _is_set(getattr(args, need.dest, None)) and not need.has(caps):
            hint = need.instead(caps)
            raise CLIError(f"{need.flag}: a {caps.family} model has no {need.lacks}" + (f" ({hint})" if hint else ""))


def _check_encodable(editor, items: Sequence[Any]) -> None:
    """Image inputs need the model's encoder; a model without one (a SemanticStyleGAN model before
    `train-encoder`) takes saved codes. One line naming the first image input otherwise."""
    if getattr(editor, "encoder", None) is not None:
        return
    for item in items:
        if item.image is not None:
            raise CLIError(f"{item.origin}: this model has no encoder to turn an image into its code (train one with "
                           f"`stylemapgan train-encoder`); give saved codes ({editor.capabilities.code_suffix}, e.g. "
                           "from `stylemapgan project --method optimize`)")


def _part_names(editor, names: Sequence[str], flag: str = "--part") -> list[int]:
    """Part names (or indices) -> class indices; one line naming the flag for a part the model does not have."""
    try:
        return [editor.part_index(name, flag) for name in names]
    except EditingError as exc:
        raise CLIError(str(exc)) from None


def _subspace(args: argparse.Namespace, shape: bool, texture: bool) -> str:
    if shape and texture:
        raise CLIError("--shape-only: cannot be combined with --texture-only for the same parts (leave both out "
                       "to take shape and texture)")
    return "shape" if shape else "texture" if texture else "both"


def _classes_record(editor) -> list[dict[str, Any]]:
    from stylemapgan.semantic.io import class_color

    return [{"index": k, "name": name, "color": "#{:02x}{:02x}{:02x}".format(*class_color(k))}
            for k, name in enumerate(editor.capabilities.parts)]


def _save_segmentations(out: Path, stem: str, segmentation: torch.Tensor, outputs: list[str]) -> None:
    """Segmentation logits [F, K, H, W] -> palette PNGs (pixel = part index, `semantic.io.class_color`): one
    `{stem}.png` for a single frame, else `{stem}_frames/NNN.png`."""
    from stylemapgan.semantic.io import segmentation_png
    from stylemapgan.utils.files import atomic_write_bytes

    segmentation = segmentation.detach().cpu()
    if segmentation.shape[0] == 1:
        atomic_write_bytes(out / f"{stem}.png", segmentation_png(segmentation[0]))
        outputs.append(f"{stem}.png")
        return
    for i, seg in enumerate(segmentation):
        atomic_write_bytes(out / f"{stem}_frames" / f"{i:03d}.png", segmentation_png(seg))
        outputs.append(f"{stem}_frames/{i:03d}.png")


def _open_editor(args: argparse.Namespace):
    from stylemapgan.editing import Editor
    from stylemapgan.models import resolve_checkpoint

    if args.batch < 1:
        raise CLIError(f"--batch: must be >= 1, got {args.batch}")
    args.ckpt = str(resolve_checkpoint(args.ckpt))
    tune_allocator()  # what `stylemapgan bench` measures with (perf.tuning)
    return Editor.from_checkpoint(args.ckpt, device=resolve_device(args.device), batch_size=args.batch,
                                  dtype=args.dtype)


def _resolver(args: argparse.Namespace, editor):
    from stylemapgan.editing.images import parse_color
    from stylemapgan.editing.sources import InputResolver

    if args.data is None:  # a bundled model brings its own sample faces (test:0 ... with part masks)
        from stylemapgan.models import bundled_samples

        samples = bundled_samples(args.ckpt)
        args.data = str(samples) if samples is not None else None
    resolver = InputResolver(editor.config, args.fit, parse_color(args.background), args.data, editor=editor)
    resolver.landmark_model = getattr(args, "landmarks", "mediapipe")
    return resolver


BAR_DELAY_S = 1.0  # a bar appears once its loop has run this long: quick commands and early errors print no bar


def _bar(args: argparse.Namespace, iterable: Any = None, **kwargs: Any) -> tqdm:
    """A progress bar on stderr unless --no-progress, on a terminal or not (a log shows progress too)."""
    return tqdm(iterable, disable=not args.progress, delay=BAR_DELAY_S, file=sys.stderr, **kwargs)


def _outdir(args: argparse.Namespace) -> Path:
    """The output folder, created; called once the inputs have checked out, so the work starts here."""
    out = check_output(args.outdir, "--outdir", folder=True)
    if out.exists():
        args.outdir_before = set(out.rglob("*"))
    else:
        args.created_outdir = next((p for p in reversed(out.parents) if not p.exists()), out)
    out.mkdir(parents=True, exist_ok=True)
    announce_threads(args)
    return out


_NOT_OPTIONS = {"handler", "command", "quiet", "progress", "threads", "thread_note", "thread_note_deferred",
                "outdir_before", "part_groups", "orphan_parts", "photos",
                "created_outdir", "outputs"}  # how the command ran, not what it did


def _options(args: argparse.Namespace, skip: Sequence[str] = ()) -> dict[str, Any]:
    hidden = {*_NOT_OPTIONS, *skip}
    return {k: v for k, v in vars(args).items() if k not in hidden}


def _warn(text: str) -> None:
    tqdm.write(f"warning: {text}", file=sys.stderr)


def _check_not_possible() -> dict[str, Any]:
    return {"possible": False,
            "reason": "the model has no card with its own reconstruction MSE (released models carry one: "
                      "`stylemapgan release`), so there is nothing to compare inputs with"}


def _domain_record(editor, rows: list[dict[str, Any]], skipped: list[str]) -> dict[str, Any]:
    from stylemapgan.editing.domain import DOMAIN_FACTOR

    if editor.reference_mse is None:
        return _check_not_possible()
    return {"possible": True, "reference_mse": editor.reference_mse, "reference": editor.reference_mse_source,
            "factor": DOMAIN_FACTOR, "inputs": rows, "skipped": skipped}


def _check_domain(editor, items: Sequence[Any]) -> dict[str, Any]:
    """The domain check of every distinct input image (`editing.domain`): each warning printed once on stderr.
    Returns the record's `domain_check` and `warnings` fields."""
    if editor.reference_mse is None:
        return {"domain_check": _check_not_possible(), "warnings": []}
    seen: dict[str, Any] = {}
    skipped: list[str] = []
    for item in items:
        if item.image is None:
            skipped.append(f"{item.origin} (a stylemap, no image to compare with)")
        elif item.origin not in seen:
            seen[item.origin] = item
    rows, warnings = [], []
    if seen:
        names = list(seen)
        checks = editor.check_domain([seen[n].image for n in names], names=names)
        for name, check in zip(names, checks, strict=True):
            rows.append({"input": name, **check.to_dict()})
            if check.warning:
                _warn(check.warning)
                warnings.append(check.warning)
    return {"domain_check": _domain_record(editor, rows, skipped), "warnings": warnings}


def _write_record(
    path: Path, args: argparse.Namespace, editor, inputs: list[Any], outputs: list[str], **extra: Any
) -> None:
    from stylemapgan import __version__
    from stylemapgan.editing.images import write_json

    record = {
        "command": args.command,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "stylemapgan_version": __version__,
        "torch_version": torch.__version__,
        "device": str(editor.device),
        "model": {"checkpoint": str(args.ckpt), "id": editor.model_id, "config": editor.config.to_dict()},
        "options": _options(args),
        "inputs": inputs,
        "outputs": outputs,
        **extra,
    }
    write_json(path, record)
    print(f"wrote {len(outputs)} file(s) and {path}")


def _strengths(args: argparse.Namespace) -> list[float]:
    from stylemapgan.editing import frame_alphas

    if args.frames is not None:
        return frame_alphas(args.frames)
    return [1.0 if args.alpha is None else args.alpha]


def _save_frames(out: Path, stem: str, frames: torch.Tensor, outputs: list[str], gif: bool = True) -> None:
    """One PNG for a single frame; otherwise a folder of frames, a strip and a GIF."""
    from stylemapgan.editing.images import save_animation, save_image
    from stylemapgan.utils.images import make_grid, save_png

    frames = frames.cpu()
    if frames.shape[0] == 1:
        save_image(out / f"{stem}.png", frames[0])
        outputs.append(f"{stem}.png")
        return
    for i, frame in enumerate(frames):
        save_image(out / f"{stem}_frames" / f"{i:03d}.png", frame)
        outputs.append(f"{stem}_frames/{i:03d}.png")
    save_png(out / f"{stem}_strip.png", make_grid(frames, nrow=frames.shape[0]))
    outputs.append(f"{stem}_strip.png")
    if gif:
        save_animation(out / f"{stem}.gif", frames)
        outputs.append(f"{stem}.gif")


# ---- registration ---------------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("project", help="project images into stylemaps (encoder, optimisation, hybrid)")
    p.add_argument("inputs", nargs="+", metavar="IMAGES_OR_FOLDER",
                   help="image files, folders of images, or SPLIT:INDEX dataset items (test:0 ...)")
    _add_model_options(p)
    _add_image_options(p)
    p.add_argument("--method", choices=("encoder", "optimize", "hybrid"), default="encoder",
                   help="encoder: one pass; optimize: from the mean code (stylemap; SemanticStyleGAN: mean w); "
                        "hybrid: encoder, then optimise")
    p.add_argument("--steps", type=int, default=None,
                   help="optimisation steps (optimize, hybrid; default: StyleMapGAN 100, SemanticStyleGAN 400, the "
                        "official recipe)")
    p.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate on the code (default: StyleMapGAN 0.05, SemanticStyleGAN 0.1 with the "
                        "official ramp, 0.01 for hybrid, which starts at the encoder's answer)")
    p.add_argument("--lpips", default="stlpips-vgg", choices=("stlpips-vgg", "stlpips-alex", "lpips-vgg", "none"),
                   help="perceptual distance for the loss and the metric (none: MSE only)")
    p.add_argument("--lpips-weight", type=float, default=None, help="weight of the perceptual term (default 1)")
    p.add_argument("--mse-weight", type=float, default=None,
                   help="weight of the pixel MSE term (default: StyleMapGAN 1, SemanticStyleGAN 0.1)")
    p.add_argument("--pti-steps", type=int, default=0,
                   help="pivotal tuning: also fit a copy of the generator to each image for N steps (default 0)")
    p.add_argument("--pti-lr", type=float, default=None,
                   help="Adam learning rate of pivotal tuning (default: StyleMapGAN 3e-4, SemanticStyleGAN 1e-4)")
    p.add_argument("--space", choices=("w+", "expanded"), default=None,
                   help="SemanticStyleGAN: invert into W+ (default; part edits need it to be part-wise) or the "
                        "expanded space (one vector per local layer: closer reconstructions)")
    add_align_options(p)
    p.set_defaults(handler=_user_errors(cmd_project))

    p = subparsers.add_parser(
        "generate", help="random images from seeds (with their stylemaps; SemanticStyleGAN: segmentations, latents)"
    )
    _add_model_options(p)
    p.add_argument("--seeds", required=True,
                   help="seeds and ranges, e.g. 0-7,12 (at most 10000 seeds, each in 0 .. 4294967295; grid.png "
                        "shows the first 64)")
    p.add_argument("--trunc", type=float, default=1.0,
                   help="truncation towards the mean stylemap (SemanticStyleGAN: the mean w), -10 to 10 (paper: 0.7)")
    p.set_defaults(handler=_user_errors(cmd_generate))

    p = subparsers.add_parser(
        "edit", help="local editing: paste masked regions (StyleMapGAN) or swap parts (SemanticStyleGAN) of "
                     "references into sources"
    )
    _add_model_options(p)
    _add_image_options(p)
    p.add_argument("--source", required=True, nargs="+",
                   help="source image(s), folder, saved code (.npz stylemap / .npy latents) or SPLIT:INDEX")
    p.add_argument("--reference", action=_ReferenceAction, default=None,
                   help="reference (repeat for several); its --mask, or its --part options, follow it")
    p.add_argument("--mask", action="append", default=None,
                   help="one per reference: mask image, rectangle x0,y0,x1,y1, part names (hair, hair+eyes), or "
                        "the model's part clusters (cluster:3, cluster:3+5, or a name given with clusters name), or "
                        "face parts from landmarks (landmarks:eyes, landmarks:brows+nose; also mouth, oval). "
                        "StyleMapGAN models")
    p.add_argument("--shift", action="append", default=None,
                   help="one per reference: move the pasted region by DX,DY pixels (negative: --shift=-8,4)")
    _add_part_options(p, per_reference=True)
    p.add_argument("--remove-part", action="append", default=None, metavar="NAME",
                   help="remove this part from the result (composition mask; repeatable). Models with parts")
    _add_blend_options(p)
    add_align_options(p)
    p.set_defaults(handler=_user_errors(cmd_edit))

    p = subparsers.add_parser("transplant", help="copy a rectangle of the reference to a position of the source")
    _add_model_options(p)
    _add_image_options(p)
    p.add_argument("--source", required=True, nargs="+", help="source image(s), folder, .npz or SPLIT:INDEX")
    p.add_argument("--reference", required=True, help="reference image, .npz or SPLIT:INDEX: the rectangle's origin")
    p.add_argument("--rect", required=True, help="x0,y0,x1,y1 in the reference (pixels at model size)")
    p.add_argument("--to", required=True, help="X,Y: top-left position in the source (pixels)")
    _add_blend_options(p)
    p.set_defaults(handler=_user_errors(cmd_transplant))

    p = subparsers.add_parser("interpolate", help="linear interpolation in stylemap space")
    p.add_argument("a", help="first image, .npz stylemap or SPLIT:INDEX")
    p.add_argument("b", help="last image, .npz stylemap or SPLIT:INDEX")
    _add_model_options(p)
    _add_image_options(p)
    p.add_argument("--frames", type=int, default=8, help="frames from A to B, 2 to 256 (default 8)")
    p.add_argument("--video", default=None, help="also write an animation (.gif; .mp4 needs imageio-ffmpeg)")
    declare_output(p, "--video", ("video",), folder=False)
    p.add_argument("--fps", type=float, default=8.0, help="frames per second of --video (default 8)")
    _add_part_options(p, per_reference=False)
    p.set_defaults(handler=_user_errors(cmd_interpolate))

    p = subparsers.add_parser("mix", help="style mixing: coarse style tensors from A, the rest from B")
    p.add_argument("a", help="image, .npz stylemap or SPLIT:INDEX giving the coarse styles (with --split coarse)")
    p.add_argument("b", help="image, .npz stylemap or SPLIT:INDEX giving the rest")
    _add_model_options(p)
    _add_image_options(p)
    p.add_argument("--split", default=None,
                   help="StyleMapGAN: coarse (default: tensors 0-1 from A), fine (0-1 from B), or K (tensors < K "
                        "from A); SemanticStyleGAN: shape (default: A's shapes, B's textures) or texture")
    p.set_defaults(handler=_user_errors(cmd_mix))

    p = subparsers.add_parser("directions", help="learn attribute directions (supervised, PCA, SeFa)")
    _add_model_options(p, outdir=False)
    p.add_argument("--out", required=True, help="directions file (.safetensors); a .json record goes beside it")
    declare_output(p, "--out", ("out",), folder=False, beside=(".json",))
    p.add_argument("--data", default=None, help="labelled prepared dataset (for --attribute)")
    p.add_argument("--attribute", nargs="+", default=[], help="label names (categorical: NAME=VALUE)")
    p.add_argument("--split", default="train", help="split of --data to learn from (default train)")
    p.add_argument("--val-split", default="test", help="held-out split for accuracy ('none' to skip)")
    p.add_argument("--limit", type=int, default=None, help="use at most N images per split")
    p.add_argument("--method", choices=("svm", "logistic"), default="svm",
                   help="linear classifier whose normal is the direction (default svm)")
    p.add_argument("--l2", type=float, default=1e-3, help="the classifier's L2 penalty (default 1e-3)")
    p.add_argument("--extremes", type=float, default=0.5,
                   help="float labels: use the top and bottom fraction (0.5: split at the median)")
    p.add_argument("--pca", type=int, default=0,
                   help="also K principal components of random stylemaps (models with parts: of w = mapping(z), "
                        "placed in the part's rows)")
    p.add_argument("--sefa", type=int, default=0,
                   help="also K SeFa directions of the first resizer layer (models with parts: of the modulations "
                        "that read the part's rows)")
    p.add_argument("--samples", type=int, default=2000, help="random stylemaps for --pca")
    p.add_argument("--seed", type=int, default=0, help="seed of the random stylemaps for --pca (default 0)")
    p.add_argument("--part", action="append", default=None, metavar="NAME",
                   help="models with parts: learn inside this part's latent rows (repeatable; default: whole code)")
    p.add_argument("--subspace", choices=("both", "shape", "texture"), default=None,
                   help="models with parts: the part's shape rows, texture rows or both (default both)")
    p.set_defaults(handler=_user_errors(cmd_directions))

    p = subparsers.add_parser("attribute", help="move images along a learned direction")
    p.add_argument("inputs", nargs="+", metavar="IMAGES_OR_FOLDER",
                   help="image files, folders, .npz stylemaps or SPLIT:INDEX dataset items")
    _add_model_options(p)
    _add_image_options(p)
    p.add_argument("--directions", required=True, help="directions file from `stylemapgan directions`")
    p.add_argument("--attribute", required=True, help="direction name in the file")
    p.add_argument("--strength", default="1", help="strength(s), e.g. 3 or =-3,0,3 (distance in stylemap space)")
    p.add_argument("--mask", default=None,
                   help="apply only inside this mask (pooled to s x s; as edit's --mask, e.g. landmarks:mouth). "
                        "StyleMapGAN models (a part direction of a model with parts moves its part only)")
    p.add_argument("--feather", type=float, default=0.0, help="soften the mask edge over about PX pixels (0 to 256)")
    p.add_argument("--part", action="append", default=None, metavar="NAME",
                   help="models with parts: move only this part's latent rows (repeatable); --attribute NAME also "
                        "finds the direction PART.NAME learned with `directions --part`")
    p.add_argument("--subspace", choices=("both", "shape", "texture"), default=None,
                   help="models with parts: with --part, only its shape rows, texture rows or both (default both)")
    add_align_options(p)
    p.set_defaults(handler=_user_errors(cmd_attribute))


# ---- commands -------------------------------------------------------------------------------------------------


def cmd_project(args: argparse.Namespace) -> int:
    from stylemapgan.editing.domain import DomainCheck, domain_warning
    from stylemapgan.editing.images import save_image, unique_stems
    from stylemapgan.editing.projection import projection_method
    from stylemapgan.losses import build_perceptual

    projection_method(args.method)
    for flag in ("steps", "pti_steps"):
        if getattr(args, flag) is not None and getattr(args, flag) < 0:
            raise CLIError(f"--{flag.replace('_', '-')}: must be >= 0, got {getattr(args, flag)}")
    editor = _open_editor(args)
    caps = editor.capabilities
    _check_capabilities(args, caps)
    if args.space is not None and args.space not in caps.projection_spaces:
        raise CLIError(f"--space: a {caps.family} model projects into {' or '.join(caps.projection_spaces)}, "
                       f"got {args.space!r}")
    if args.method != "optimize" and getattr(editor, "encoder", None) is None:
        raise CLIError(f"--method {args.method}: method '{args.method}' needs an encoder (train one with "
                       "`stylemapgan train-encoder`) and this model has none; --method optimize needs none")
    options = _projection_options(args, editor.projection_recipe(args.method))
    space = {}
    if caps.projection_spaces:
        args.space = args.space or caps.projection_spaces[0]
        space = {"space": args.space}
    resolver = _resolver(args, editor)
    if args.align:
        photos, items = face_items(args, editor.size, args.inputs)
    else:
        items = [resolver.resolve(n) for n in resolver.expand(args.inputs)]
    for item in items:
        if item.image is None:
            raise CLIError(f"{item.origin}: project needs images, not saved codes")
    out = _outdir(args)
    perceptual = build_perceptual(args.lpips)
    stems = unique_stems([Path(item.name) for item in items])
    outputs: list[str] = []
    per_image: list[dict[str, Any]] = []
    domain_rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    refined = args.method != "encoder" or args.pti_steps > 0
    reconstructions: dict[str, torch.Tensor] = {}
    bar = _bar(args, total=len(items), desc="project", unit="img")
    for start in range(0, len(items), editor.batch_size):
        chunk = items[start : start + editor.batch_size]
        images = torch.cat([item.image for item in chunk])
        result, _ = editor.project(images, args.method, options, perceptual, progress=args.progress, **space)
        for j, item in enumerate(chunk):
            stem = stems[start + j]
            mse = float(result.mse[j])
            warning = domain_warning(mse, editor.reference_mse, name=item.origin, refined=refined)
            if editor.reference_mse is not None:
                domain_rows.append({"input": item.origin, **DomainCheck(mse, editor.reference_mse, warning).to_dict()})
            if warning:
                _warn(warning)
                warnings.append(warning)
            lpips = float(result.perceptual[j]) if result.perceptual is not None else None
            save_image(out / f"{stem}.png", result.images[j].cpu())
            reconstructions[item.name] = result.images[j : j + 1].cpu()
            save_image(out / f"{stem}_input.png", images[j].cpu())
            code_file = f"{stem}{editor.capabilities.code_suffix}"
            editor.save_code(out / code_file, result.stylemaps[j],
                             {"input": item.origin, "method": args.method, "model": editor.model_id, "mse": mse})
            outputs += [f"{stem}.png", f"{stem}_input.png", code_file]
            per_image.append({
                "input": item.origin, "reconstruction": f"{stem}.png", "stylemap": code_file, "mse": mse,
                "lpips": lpips, "optimised_loss": float(result.loss[j]) if result.loss is not None else None,
            })
        bar.update(len(chunk))
    bar.close()
    lpips_values = [r["lpips"] for r in per_image if r["lpips"] is not None]
    summary = {"mse_mean": sum(r["mse"] for r in per_image) / len(per_image),
               "lpips_mean": sum(lpips_values) / len(lpips_values) if lpips_values else None,
               "lpips_kind": args.lpips,
               "note": "MSE on images in [-1, 1]; reconstruction clamped; LPIPS inputs under 32 px upsampled to 32"
                       + ("; reconstructions by each image's PTI-tuned generator (not saved)" if args.pti_steps
                          else "")}
    check = _domain_record(editor, domain_rows, [])
    if check["possible"]:
        check["mse_of"] = "the chosen --method's reconstruction" + (" (after optimisation)" if refined else "")
    extra: dict[str, Any] = {}
    if args.align:  # the whole photo with every face's reconstruction pasted back, and each face's transform
        save_transforms(out, photos, outputs, args.landmarks)
        paste_results(out, photos, reconstructions, "_recon", args.paste_feather, outputs)
        extra["photos"] = photos_record(photos)
    _write_record(out / "project.json", args, editor, [i.describe() for i in items], outputs,
                  images=per_image, summary=summary, domain_check=check, warnings=warnings, **extra)
    return 0


def _projection_options(args: argparse.Namespace, defaults: Any) -> Any:
    """The model's own projection recipe (`editor.projection_defaults`) with the flags given on top; the flags
    left out are filled in with what ran, so the record says it."""
    given = {"steps": args.steps, "lr": args.lr, "mse_weight": args.mse_weight,
             "perceptual_weight": args.lpips_weight, "pti_steps": args.pti_steps, "pti_lr": args.pti_lr}
    options = dataclasses.replace(defaults, **{k: v for k, v in given.items() if v is not None})
    args.steps, args.lr, args.mse_weight = options.steps, options.lr, options.mse_weight
    args.lpips_weight, args.pti_steps, args.pti_lr = options.perceptual_weight, options.pti_steps, options.pti_lr
    return options


def cmd_generate(args: argparse.Namespace) -> int:
    """Random images from seeds through the model's editor: per seed `seedNNNN.png` and its code (a StyleMapGAN
    stylemap `.npz`; SemanticStyleGAN W+ latents `.npy` [1, n_latent, D], the official saved-latent format), and,
    for a model that segments, the segmentation as a colour map `seedNNNN_seg.png` (a palette PNG: pixel = class
    index, 0 = background)."""
    from stylemapgan.editing import parse_seeds
    from stylemapgan.editing.images import save_image
    from stylemapgan.semantic.io import segmentation_png
    from stylemapgan.utils.files import atomic_write_bytes
    from stylemapgan.utils.images import make_grid, save_png

    seeds = parse_seeds(args.seeds, "--seeds")
    editor = _open_editor(args)
    caps = editor.capabilities
    out = _outdir(args)
    outputs: list[str] = []
    all_images = []
    for start in _bar(args, range(0, len(seeds), editor.batch_size), desc="generate"):
        chunk = seeds[start : start + editor.batch_size]
        samples = editor.sample(chunk, args.trunc)
        for i, (seed, image) in enumerate(zip(chunk, samples.images.cpu(), strict=True)):
            stem = f"seed{seed:04d}"
            save_image(out / f"{stem}.png", image)
            outputs.append(f"{stem}.png")
            if samples.segmentation is not None:
                atomic_write_bytes(out / f"{stem}_seg.png", segmentation_png(samples.segmentation[i]))
                outputs.append(f"{stem}_seg.png")
            editor.save_code(out / f"{stem}{caps.code_suffix}", samples.codes[i],
                             {"seed": seed, "trunc": args.trunc, "model": editor.model_id})
            outputs.append(f"{stem}{caps.code_suffix}")
        all_images.append(samples.images[: GRID_MAX - sum(len(i) for i in all_images)].cpu())
    save_png(out / "grid.png", make_grid(torch.cat(all_images)))
    outputs.append("grid.png")
    extra: dict[str, Any] = {"classes": _classes_record(editor)} if caps.segmentation else {}
    _write_record(out / "generate.json", args, editor, [{"seeds": seeds}], outputs,
                  family=editor.family.name, truncation={"psi": args.trunc, "center": editor.truncation_center},
                  z=f"torch.randn({editor.family.latent_dim}) from torch.Generator().manual_seed(seed), per seed",
                  **extra)
    return 0


def _edit_inputs(args: argparse.Namespace, editor, resolver):
    """Sources and references; under --align every face of the source photos (args.photos keeps the photos) and
    the largest face of each reference photo."""
    if getattr(args, "align", False):
        args.photos, sources = face_items(args, editor.size, args.source)
        references = [aligned_reference(args, resolver, n, editor.size) for n in args.reference]
        return sources, references
    sources = [resolver.resolve(n, "source") for n in resolver.expand(args.source)]
    references = [resolver.resolve(n, "reference") for n in args.reference]
    return sources, references


def _run_local_edits(
    args: argparse.Namespace, editor, resolver, sources, references, mask_texts: list[str],
    shifts: list[tuple[int, int]], record_name: str, extra: dict[str, Any],
) -> int:
    from stylemapgan.editing.editor import edit_mode
    from stylemapgan.editing.images import save_image, unique_stems

    for i, (text, ref) in enumerate(zip(mask_texts, references, strict=True)):  # bad masks fail before any work
        resolver.mask(text, [sources[0], ref], f"mask {i + 1}")
    out = _outdir(args)
    strengths = _strengths(args)
    domain = _check_domain(editor, [*sources, *references])
    ref_handles = [resolver.handle(editor, r) for r in references]
    outputs: list[str] = []
    for i, handle in enumerate(ref_handles):
        save_image(out / f"reference{i + 1}_recon.png", editor.reconstruct(handle).cpu())
        outputs.append(f"reference{i + 1}_recon.png")
    stems = unique_stems([Path(s.name) for s in sources])
    saved_masks: set[int] = set()
    warnings: list[str] = []
    edited: dict[str, torch.Tensor] = {}
    for stem, source in _bar(args, list(zip(stems, sources, strict=True)), desc="edit"):
        masks = [resolver.mask(text, [source, ref], f"mask {i + 1}")
                 for i, (text, ref) in enumerate(zip(mask_texts, references, strict=True))]
        for i, m in enumerate(masks):
            per_source = (source.label_map is not None or source.landmarks is not None
                          or resolver.from_clusters(mask_texts[i], [source]))  # masks that differ per source
            if i not in saved_masks or per_source:
                name = f"mask{i + 1}.png" if not per_source else f"{stem}_mask{i + 1}.png"
                save_image(out / name, (m[0].expand(3, -1, -1) * 2 - 1).cpu())
                outputs.append(name)
                saved_masks.add(i)
        for note in editor.paste_warnings(masks, shifts, mode=args.mode, pool=args.pool, feather_px=args.feather):
            note = f"{source.name}: {note}"
            tqdm.write(f"warning: {note}", file=sys.stderr)
            warnings.append(note)
        handle = resolver.handle(editor, source)
        save_image(out / f"{stem}_recon.png", editor.reconstruct(handle).cpu())
        outputs.append(f"{stem}_recon.png")
        frames = editor.local_edit(handle, ref_handles, masks, shifts=shifts, mode=args.mode, alphas=strengths,
                                   pool=args.pool, feather_px=args.feather)
        _save_frames(out, f"{stem}_edit", frames, outputs)
        edited[source.name] = frames.cpu()
    if getattr(args, "align", False):  # every face's edit pasted back into its whole photo
        save_transforms(out, args.photos, outputs, args.landmarks)
        paste_results(out, args.photos, edited, "_edit", args.paste_feather, outputs)
        extra = {**extra, "photos": photos_record(args.photos)}
    info = editor.cache_info()
    _write_record(out / record_name, args, editor,
                  {"sources": [s.describe() for s in sources], "references": [r.describe() for r in references]},
                  outputs, strengths=strengths, shifts=[list(s) for s in shifts],
                  pooling=args.pool or edit_mode(args.mode).default_pooling,
                  cache={"hits": info.hits, "misses": info.misses, "encoded_images": info.encoder_images},
                  **{**domain, "warnings": [*domain["warnings"], *warnings]}, **extra)
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    """A StyleMapGAN model pastes masked regions (`_run_local_edits`); a model with parts swaps them
    (`_run_part_edits`). Which one is the model's capabilities' choice, checked flag by flag."""
    from stylemapgan.editing.masks import parse_mask, parse_shift

    references = args.reference or []
    if not references and not args.remove_part:
        raise CLIError("--reference: required (one per pasted region or part swap; --remove-part needs none)")
    if getattr(args, "orphan_parts", False):
        raise CLIError("--part: give it after the --reference it takes parts from (--shape-only, --texture-only "
                       "too)")
    if args.mask is None and args.part is None and not args.remove_part:
        raise CLIError("--mask: give one per --reference (a model with parts takes --part NAME instead)")
    if args.mask is None:
        if args.align:
            raise CLIError("--align: pastes back --mask edits (StyleMapGAN models); part swaps do not take it yet")
        editor = _open_editor(args)
        _check_capabilities(args, editor.capabilities)
        return _run_part_edits(args, editor)
    if len(args.mask) != len(args.reference or []):
        raise CLIError(f"--mask: got {len(args.mask)} mask(s) for {len(args.reference)} reference(s); "
                       "give one --mask per --reference")
    if args.shift is not None and len(args.shift) != len(args.reference):
        raise CLIError(f"--shift: got {len(args.shift)} shift(s) for {len(args.reference)} reference(s); "
                       "give one --shift per --reference (0,0 leaves one in place)")
    for text in args.mask:
        parse_mask(text)  # fail on a malformed mask before loading the model
    shifts = [parse_shift(s, "--shift") for s in args.shift] if args.shift else [(0, 0)] * len(args.reference)
    editor = _open_editor(args)
    _check_capabilities(args, editor.capabilities)
    args.mode = args.mode or "w"
    resolver = _resolver(args, editor)
    sources, references = _edit_inputs(args, editor, resolver)
    return _run_local_edits(args, editor, resolver, sources, references, list(args.mask), shifts, "edit.json", {})


def _run_part_edits(args: argparse.Namespace, editor) -> int:
    """Part swaps (and removals) on a model with parts: per source `{stem}_edit.png` (or frames with --frames),
    its latents `{stem}_edit.npy` and the segmentation colour map `{stem}_edit_seg.png`; the reconstructions and
    segmentations of sources and references; one JSON record."""
    from stylemapgan.editing import PartSwap
    from stylemapgan.editing.images import unique_stems

    groups = getattr(args, "part_groups", [])
    swaps_spec = []
    for i, group in enumerate(groups):
        if not group["parts"]:
            raise CLIError(f"--part: reference {i + 1} ({args.reference[i]}) names no part; give --part NAME after it")
        whats = set(group["what"])
        what = _subspace(args, "shape" in whats, "texture" in whats)
        swaps_spec.append((_part_names(editor, group["parts"]), what))
    removed = _part_names(editor, args.remove_part or [], "--remove-part")
    clash = sorted(set(removed) & {k for parts, _ in swaps_spec for k in parts})
    if clash:
        raise CLIError(f"--remove-part {editor.capabilities.parts[clash[0]]}: that part is also taken from a "
                       "reference (--part); remove it or swap it, not both")
    resolver = _resolver(args, editor)
    sources, references = _edit_inputs(args, editor, resolver) if args.reference else (
        [resolver.resolve(n, "source") for n in resolver.expand(args.source)], [])
    _check_encodable(editor, [*sources, *references])
    out = _outdir(args)
    strengths = _strengths(args)
    domain = _check_domain(editor, [*sources, *references])
    ref_handles = [resolver.handle(editor, r) for r in references]
    outputs: list[str] = []
    for i, handle in enumerate(ref_handles):
        rendered = editor.result(handle)
        _save_frames(out, f"reference{i + 1}_recon", rendered.images, outputs)
        _save_segmentations(out, f"reference{i + 1}_seg", rendered.segmentation, outputs)
    swaps = [PartSwap(handle, tuple(parts), what) for handle, (parts, what) in zip(ref_handles, swaps_spec,
                                                                                   strict=True)]
    for stem, source in _bar(args, list(zip(unique_stems([Path(s.name) for s in sources]), sources, strict=True)),
                             desc="edit"):
        handle = resolver.handle(editor, source)
        rendered = editor.result(handle)
        _save_frames(out, f"{stem}_recon", rendered.images, outputs)
        _save_segmentations(out, f"{stem}_recon_seg", rendered.segmentation, outputs)
        result = (editor.compose(handle, removed, swaps, strengths) if removed
                  else editor.swap_parts(handle, swaps, strengths))
        images, segmentation, latents = result.images, result.segmentation, result.latents
        _save_frames(out, f"{stem}_edit", images, outputs)
        _save_segmentations(out, f"{stem}_edit_seg", segmentation, outputs)
        if latents.shape[0] == 1:
            editor.save_code(out / f"{stem}_edit{editor.capabilities.code_suffix}", latents, {})
            outputs.append(f"{stem}_edit{editor.capabilities.code_suffix}")
    names = editor.capabilities.parts
    info = editor.cache_info()
    _write_record(out / "edit.json", args, editor,
                  {"sources": [s.describe() for s in sources], "references": [r.describe() for r in references]},
                  outputs, strengths=strengths,
                  swaps=[{"reference": r.origin, "parts": [names[k] for k in parts], "what": what}
                         for r, (parts, what) in zip(references, swaps_spec, strict=True)],
                  removed=[names[k] for k in removed], classes=_classes_record(editor),
                  cache={"hits": info.hits, "misses": info.misses, "encoded_images": info.encoder_images}, **domain)
    return 0


def cmd_transplant(args: argparse.Namespace) -> int:
    from stylemapgan.editing.masks import parse_rectangle, parse_shift

    rect = parse_rectangle(args.rect, "--rect")
    to = parse_shift(args.to, "--to")
    editor = _open_editor(args)
    if not editor.capabilities.shifts:
        raise CLIError(f"--rect: a {editor.capabilities.family} model cannot move a region (transplant needs "
                       "shifted pastes; swap parts with `edit --part NAME`)")
    _check_capabilities(args, editor.capabilities)
    args.mode = args.mode or "w"
    resolver = _resolver(args, editor)
    args.reference = [args.reference]
    sources, references = _edit_inputs(args, editor, resolver)
    shift = (to[0] - rect.x0, to[1] - rect.y0)
    s, size = editor.config.latent_spatial_size, editor.size
    cells = {"rect_cells": [rect.x0 * s // size, rect.y0 * s // size, -(-rect.x1 * s // size), -(-rect.y1 * s // size)],
             "note": "a local edit with the rectangle as mask, shifted by --to minus the rectangle's corner"}
    return _run_local_edits(args, editor, resolver, sources, references, [args.rect], [shift], "transplant.json",
                            {"transplant": cells})


def cmd_interpolate(args: argparse.Namespace) -> int:
    from stylemapgan.editing.images import check_animation_path, save_animation

    if args.video:
        check_animation_path(args.video)
    if args.frames < 2:
        raise CLIError(f"--frames: need at least 2 frames, got {args.frames}")
    editor = _open_editor(args)
    _check_capabilities(args, editor.capabilities)
    parts = _part_names(editor, args.part) if args.part else None
    what = _subspace(args, args.shape_only, args.texture_only)
    if parts is None and what != "both":
        raise CLIError(f"--{what}-only: needs --part NAME (whose {what} codes move)")
    resolver = _resolver(args, editor)
    a, b = resolver.resolve(args.a, "A"), resolver.resolve(args.b, "B")
    _check_encodable(editor, [a, b])
    out = _outdir(args)
    domain = _check_domain(editor, [a, b])
    outputs: list[str] = []
    extra: dict[str, Any] = {}
    if editor.capabilities.segmentation:
        result = editor.interpolate_parts(resolver.handle(editor, a), resolver.handle(editor, b), parts, what,
                                          args.frames)
        frames = result.images.cpu()
        _save_segmentations(out, "interp_seg", result.segmentation, outputs)
        names = editor.capabilities.parts
        extra = {"parts": None if parts is None else [names[k] for k in parts], "what": what,
                 "classes": _classes_record(editor)}
    else:
        frames = editor.interpolate(resolver.handle(editor, a), resolver.handle(editor, b), args.frames).cpu()
    _save_frames(out, "interp", frames, outputs, gif=False)
    if args.video:
        save_animation(args.video, frames, args.fps)
        outputs.append(str(args.video))
    _write_record(out / "interpolate.json", args, editor, [a.describe(), b.describe()], outputs,
                  lambdas=[i / (args.frames - 1) for i in range(args.frames)], **domain, **extra)
    return 0


def parse_split(text: str, count: int) -> tuple[bool, int]:
    """coarse -> (A first, 2); fine -> (B first, 2); K -> (A first, K)."""
    if text == "coarse":
        return False, 2
    if text == "fine":
        return True, 2
    try:
        k = int(text)
    except ValueError:
        raise CLIError(f"--split: expected coarse, fine or a layer index 0..{count}, got {text!r}") from None
    if not 0 <= k <= count:
        raise CLIError(f"--split: layer index must be in 0..{count}, got {k}")
    return False, k


def cmd_mix(args: argparse.Namespace) -> int:
    from stylemapgan.editing.images import save_image

    editor = _open_editor(args)
    if editor.capabilities.has_parts:
        return _mix_parts(args, editor)
    count = len(editor.config.style_resolutions)
    args.split = args.split or "coarse"
    swap, k = parse_split(args.split, count)
    resolver = _resolver(args, editor)
    a, b = resolver.resolve(args.a, "A"), resolver.resolve(args.b, "B")
    out = _outdir(args)
    domain = _check_domain(editor, [a, b])
    ha, hb = resolver.handle(editor, a), resolver.handle(editor, b)
    mixed = editor.mix(hb, ha, k) if swap else editor.mix(ha, hb, k)
    save_image(out / "mix.png", mixed.cpu())
    save_image(out / "a_recon.png", editor.reconstruct(ha).cpu())
    save_image(out / "b_recon.png", editor.reconstruct(hb).cpu())
    first, second = ("B", "A") if swap else ("A", "B")
    outputs = ["mix.png", "a_recon.png", "b_recon.png"]
    _write_record(out / "mix.json", args, editor, [a.describe(), b.describe()], outputs,
                  layers={"from_" + first: list(range(k)), "from_" + second: list(range(k, count)),
                          "resolutions": editor.config.style_resolutions}, **domain)
    return 0


def _mix_parts(args: argparse.Namespace, editor) -> int:
    """Every part at once: --split shape keeps A's shapes (and base codes) with B's textures; texture the reverse."""
    from stylemapgan.editing.images import save_image

    splits = editor.capabilities.mix_splits
    args.split = args.split or splits[0]
    if args.split not in splits:
        raise CLIError(f"--split: a {editor.capabilities.family} model mixes by {' or '.join(splits)}, "
                       f"got {args.split!r}")
    resolver = _resolver(args, editor)
    a, b = resolver.resolve(args.a, "A"), resolver.resolve(args.b, "B")
    _check_encodable(editor, [a, b])
    out = _outdir(args)
    domain = _check_domain(editor, [a, b])
    ha, hb = resolver.handle(editor, a), resolver.handle(editor, b)
    mixed = editor.mix(ha, hb, args.split)
    outputs: list[str] = []
    save_image(out / "mix.png", mixed.images[0].cpu())
    outputs.append("mix.png")
    _save_segmentations(out, "mix_seg", mixed.segmentation, outputs)
    for name, handle in (("a", ha), ("b", hb)):
        rendered = editor.result(handle)
        save_image(out / f"{name}_recon.png", rendered.images[0].cpu())
        outputs.append(f"{name}_recon.png")
        _save_segmentations(out, f"{name}_seg", rendered.segmentation, outputs)
    kept = "texture" if args.split == "texture" else "shape"
    _write_record(out / "mix.json", args, editor, [a.describe(), b.describe()], outputs,
                  codes={"from_A": f"base and {kept} codes", "from_B": "texture codes" if kept == "shape" else
                         "shape codes"},
                  classes=_classes_record(editor), **domain)
    return 0


def cmd_directions(args: argparse.Namespace) -> int:
    from stylemapgan.editing.directions import (
        binarise_labels,
        pca_directions,
        sample_stylemaps,
        save_directions,
        sefa_directions,
        supervised_direction,
    )
    from stylemapgan.editing.sources import InputResolver, label_column, labelled_stylemaps

    if not (args.attribute or args.pca or args.sefa):
        raise CLIError("nothing to learn: give --attribute NAME (with --data), --pca K or --sefa K")
    if args.attribute and not args.data:
        raise CLIError("--attribute needs --data DATASET with labels")
    out = Path(args.out)
    editor = _open_editor(args)
    _check_capabilities(args, editor.capabilities)
    if editor.capabilities.has_parts:
        return _part_directions(args, editor, out)
    announce_threads(args)
    directions = []
    report: dict[str, Any] = {}
    if args.attribute:
        resolver = InputResolver(editor.config, data=args.data)
        columns = [label_column(resolver.meta().get("labels") or {}, spec) for spec in args.attribute]
        train_sm, train_labels, _ = labelled_stylemaps(resolver, editor, args.split, args.limit, args.progress)
        val = None
        splits = resolver.meta().get("splits", {})
        if args.val_split != "none" and args.val_split in splits and args.val_split != args.split:
            val = labelled_stylemaps(resolver, editor, args.val_split, args.limit, args.progress)
        for spec, (name, col, kind, value, vocab) in zip(args.attribute, columns, strict=True):
            index, labels = binarise_labels(train_labels[:, col], kind, name, args.extremes, vocab, value)
            direction, classifier = supervised_direction(spec, train_sm[index], labels, args.method, args.l2)
            direction.meta.update({"attribute": name, "label_kind": kind, "split": args.split})
            if val is not None:
                v_index, v_labels = binarise_labels(val[1][:, col], kind, name, args.extremes, vocab, value)
                direction.meta["val_accuracy"] = classifier.accuracy(val[0][v_index], v_labels)
                direction.meta["val_split"] = args.val_split
            directions.append(direction)
            report[spec] = direction.meta
    if args.pca:
        with editor.runner.eager_fp32() as generator:  # a statistic of the model, like the mean stylemap
            stylemaps = sample_stylemaps(generator, args.samples, args.seed)
        found = pca_directions(stylemaps.cpu(), args.pca)
        directions += found
        report.update({d.name: d.meta for d in found})
    if args.sefa:
        found = sefa_directions(editor.generator, args.sefa)
        directions += found
        report.update({d.name: d.meta for d in found})
    meta = {"model": editor.model_id, "stylemap_shape": list(editor.config.stylemap_shape),
            "data": args.data, "unit": "L2 norm 1 over the flattened stylemap"}
    save_directions(out, directions, meta)
    for name, m in report.items():
        acc = "".join(f" {k}={m[k]:.3f}" for k in ("train_accuracy", "val_accuracy") if k in m)
        print(f"{name}: {m['kind']}{acc}")
    _write_record(out.with_suffix(".json"), args, editor, [{"data": args.data, "attributes": args.attribute}],
                  [str(out)], directions=report)
    return 0


def _part_directions(args: argparse.Namespace, editor, out: Path) -> int:
    """Directions of a model with parts, each inside one part's rows (--part, repeatable; none: the whole code)."""
    from stylemapgan.editing.directions import binarise_labels, save_directions
    from stylemapgan.editing.sources import InputResolver, label_column, labelled_stylemaps

    if min(args.pca, args.sefa) < 0:
        raise CLIError("--pca / --sefa: the number of directions must be >= 0")
    if args.subspace and not args.part:
        raise CLIError("--subspace: needs --part NAME (whose shape or texture rows)")
    what = args.subspace or "both"
    parts = [editor.capabilities.parts[k] for k in _part_names(editor, args.part)] if args.part else [None]
    if args.attribute and getattr(editor, "encoder", None) is None:
        raise CLIError(f"--data {args.data}: this model has no encoder to turn the dataset's images into codes "
                       "(train one with `stylemapgan train-encoder`); --pca and --sefa need none")
    announce_threads(args)
    directions = []
    report: dict[str, Any] = {}
    if args.attribute:
        resolver = InputResolver(editor.config, data=args.data, editor=editor)
        columns = [label_column(resolver.meta().get("labels") or {}, spec) for spec in args.attribute]
        train_codes, train_labels, _ = labelled_stylemaps(resolver, editor, args.split, args.limit, args.progress)
        val = None
        splits = resolver.meta().get("splits", {})
        if args.val_split != "none" and args.val_split in splits and args.val_split != args.split:
            val = labelled_stylemaps(resolver, editor, args.val_split, args.limit, args.progress)
        for part in parts:
            for spec, (name, col, kind, value, vocab) in zip(args.attribute, columns, strict=True):
                index, labels = binarise_labels(train_labels[:, col], kind, name, args.extremes, vocab, value)
                direction, classifier, rows = editor.fit_direction(spec, train_codes[index], labels, args.method,
                                                                   args.l2, part, what)
                direction.meta.update({"attribute": name, "label_kind": kind, "split": args.split})
                if val is not None:
                    v_index, v_labels = binarise_labels(val[1][:, col], kind, name, args.extremes, vocab, value)
                    direction.meta["val_accuracy"] = classifier.accuracy(val[0][v_index][:, rows], v_labels)
                    direction.meta["val_split"] = args.val_split
                directions.append(direction)
                report[direction.name] = direction.meta
    for part in parts:
        found = []
        if args.pca:
            found += editor.pca_directions(args.pca, args.samples, args.seed, part, what)
        if args.sefa:
            found += editor.sefa_directions(args.sefa, part, what)
        directions += found
        report.update({d.name: d.meta for d in found})
    meta = {"model": editor.model_id, "code_shape": list(editor.code_shape), "data": args.data,
            "parts": parts, "subspace": what,
            "unit": "L2 norm 1 over the W+ code, zero outside the part's rows"}
    save_directions(out, directions, meta)
    for name, m in report.items():
        acc = "".join(f" {k}={m[k]:.3f}" for k in ("train_accuracy", "val_accuracy") if k in m)
        print(f"{name}: {m['kind']} part={m['part']} {m['subspace']}{acc}")
    _write_record(out.with_suffix(".json"), args, editor, [{"data": args.data, "attributes": args.attribute}],
                  [str(out)], directions=report)
    return 0


def cmd_attribute(args: argparse.Namespace) -> int:
    from stylemapgan.editing.directions import load_directions
    from stylemapgan.editing.images import save_image, unique_stems
    from stylemapgan.editing.masks import parse_mask
    from stylemapgan.utils.images import make_grid, save_png

    try:
        strengths = [float(s) for s in args.strength.split(",")]
    except ValueError:
        raise CLIError(f"--strength: expected numbers like 3 or -3,0,3, got {args.strength!r}") from None
    if args.mask:
        parse_mask(args.mask)
    editor = _open_editor(args)
    _check_capabilities(args, editor.capabilities)
    if args.subspace and not args.part:
        raise CLIError("--subspace: needs --part NAME (whose shape or texture rows move)")
    parts = [editor.capabilities.parts[k] for k in _part_names(editor, args.part)] if args.part else None
    directions = load_directions(args.directions, editor.code_shape)
    wanted = args.attribute
    if wanted not in directions and parts is not None and len(parts) == 1 and f"{parts[0]}.{wanted}" in directions:
        wanted = f"{parts[0]}.{wanted}"  # the direction `directions --part PART --attribute NAME` learned
    if wanted not in directions:
        raise CLIError(f"--attribute {args.attribute!r}: not in {args.directions} (has {', '.join(directions)})")
    direction = directions[wanted]
    resolver = _resolver(args, editor)
    if args.align:
        photos, items = face_items(args, editor.size, args.inputs)
    else:
        items = [resolver.resolve(n) for n in resolver.expand(args.inputs)]
    _check_encodable(editor, items)
    out = _outdir(args)
    domain = _check_domain(editor, items)
    outputs: list[str] = []
    moved: dict[str, torch.Tensor] = {}
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in wanted)
    for stem, item in _bar(args, list(zip(unique_stems([Path(i.name) for i in items]), items, strict=True)),
                           desc="attribute"):
        if editor.capabilities.segmentation:  # a part direction moves its part only: no mask (--part: these)
            result = editor.apply_direction(resolver.handle(editor, item), direction.vector, strengths, parts,
                                            args.subspace or "both", "--part")
            images = result.images.cpu()
            for s, seg in zip(strengths, result.segmentation, strict=True):
                _save_segmentations(out, f"{stem}_{safe}_{s:+g}_seg", seg[None], outputs)
        else:
            mask = resolver.mask(args.mask, [item]) if args.mask else None
            images = editor.apply_direction(resolver.handle(editor, item), direction.vector, strengths, mask,
                                            args.feather).cpu()
        moved[item.name] = images
        for s, image in zip(strengths, images, strict=True):
            name = f"{stem}_{safe}_{s:+g}.png"
            save_image(out / name, image)
            outputs.append(name)
        if len(strengths) > 1:
            save_png(out / f"{stem}_{safe}_strip.png", make_grid(images, nrow=len(strengths)))
            outputs.append(f"{stem}_{safe}_strip.png")
    extra: dict[str, Any] = {}
    if args.align:  # per strength, the whole photo with every face moved along the direction
        save_transforms(out, photos, outputs, args.landmarks)
        for k, s in enumerate(strengths):
            paste_results(out, photos, {n: m[k : k + 1] for n, m in moved.items()}, f"_{safe}_{s:+g}",
                          args.paste_feather, outputs)
        extra["photos"] = photos_record(photos)
    _write_record(out / "attribute.json", args, editor, [i.describe() for i in items], outputs,
                  strengths=strengths, direction={"name": direction.name, **direction.meta},
                  **({"moved_parts": parts, "moved_subspace": args.subspace or "both"} if parts else {}), **domain,
                  **extra)
    return 0
