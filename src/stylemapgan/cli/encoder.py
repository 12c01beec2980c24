"""`stylemapgan train-encoder`: fit an image -> W+ encoder to a trained SemanticStyleGAN generator, which stays
fixed (`training.semantic_encoder`). The run keeps `train`'s checkpoints, --resume, signals, logs and samples;
its checkpoints hold the generator and the encoder, so `--ckpt RUN/checkpoints/...` gives both to the tools."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from stylemapgan.cli import CLIError, announce_threads
from stylemapgan.cli.options import add_progress_option, add_threads_option
from stylemapgan.cli.train import OUTDIR_HELP, STOPPED_EXIT, _summary, run_directory
from stylemapgan.training.config import PERCEPTUAL_KINDS

_OPTIONS: list[tuple[str, type, str]] = [
    ("iters", int, "total iterations (default 100,000; on --resume, the run's saved total)"),
    ("batch", int, "real images, and generated images, per iteration (each; default 8)"),
    ("lr", float, "Adam learning rate of the encoder (default 0.002)"),
    ("ema_decay", float, "EMA decay of the encoder per iteration (default 0.999)"),
    ("lambda_w_rec", float, "weight of MSE(E(G(w)), w) on generated images (default 1)"),
    ("lambda_x_rec", float, "weight of the image MSE inside the image loss (default 1)"),
    ("lambda_perceptual", float, "weight of LPIPS inside the image loss (default 1)"),
    ("lambda_fake", float, "weight of the image loss of generated images (default 1)"),
    ("lambda_real", float, "weight of the image loss of real images (default 1)"),
    ("mixing_prob", float, "share of generated samples whose parts mix two latents (default 0.5)"),
    ("seed", int, "seed of weights, data order and latents (default 0)"),
    ("checkpoint_every", int, "iterations between checkpoints"),
    ("keep_checkpoints", int, "how many recent checkpoints to keep"),
    ("log_every", int, "iterations between JSONL/TensorBoard loss records"),
    ("sample_every", int, "iterations between sample grids"),
    ("val_every", int, "iterations between validation figures (latent MSE of generated images, MSE/LPIPS of "
                       "held-out real images)"),
    ("val_count", int, "images used for validation"),
    ("num_workers", int, "DataLoader workers per process"),
]
_FLAGS = ("perceptual", "hflip", "amp_bf16", "tf32")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-encoder", help="fit an image -> W+ encoder to a trained SemanticStyleGAN generator",
        description="Train an encoder mapping an image to SemanticStyleGAN's W+ latents in one pass, against the "
                    "checkpoint's EMA generator, which stays fixed: generated images (true latents known: latent "
                    "MSE + image loss) and real images from --data (MSE + LPIPS). The run's checkpoints hold the "
                    "generator with the encoder (encoder, e_ema).",
    )
    p.add_argument("--ckpt", default=None, metavar="NAME_OR_FILE",
                   help="the trained SemanticStyleGAN model (our checkpoint or run directory, a bundled model's "
                        "name, or an official .pt); an encoder already in it trains on")
    p.add_argument("--data", required=True, help="prepared dataset or official LMDB of real images (label maps "
                                                 "are not needed)")
    p.add_argument("--outdir", default=None, help=OUTDIR_HELP)
    p.add_argument("--resume", default=None, help="run directory or checkpoint of train-encoder to continue "
                                                  "exactly (loss weights, lr, EMA, intervals may change); a run "
                                                  "directory goes on in place unless --outdir is given")
    p.add_argument("--encoder-from", default=None, metavar="RUN_OR_FILE",
                   help="with --ckpt: start from the encoder (and its EMA) of this train-encoder run or checkpoint "
                        "of the same model, e.g. one fitted to an earlier snapshot of the generator, instead of a "
                        "new encoder")
    p.add_argument("--expanded-rank", dest="encoder_expanded_rank", type=int, default=None, metavar="R",
                   help="with --ckpt: an encoder answering expanded latents (one vector per local layer: its W+ "
                        "expanded plus a rank-R correction per layer; closer reconstructions than W+ can give); "
                        "0: W+ (default: the checkpoint's, W+ for a generator); a changed layout starts a new encoder")
    p.add_argument("--encoder-channel-base", dest="encoder_channel_base", type=int, default=None, metavar="N",
                   help="with --ckpt: the encoder trunk's width table (channels of the generator's table on base "
                        "N, 32 to 32768; default: the checkpoint's, the render net's for a generator); a changed "
                        "width starts a new encoder")
    p.add_argument("--perceptual", choices=PERCEPTUAL_KINDS, default=None,
                   help="LPIPS network of the image loss (default stlpips-vgg; none: MSE only)")
    p.add_argument("--no-hflip", dest="hflip", action="store_const", const=False, default=None,
                   help="do not flip real images at random (default: flip)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--bf16", dest="amp_bf16", action="store_const", const=True, default=None,
                   help="bf16 autocast for forward passes")
    p.add_argument("--tf32", action="store_const", const=True, default=None, help="allow TF32 on CUDA")
    for name, kind, text in _OPTIONS:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None, help=text)
    add_progress_option(p)
    add_threads_option(p)
    p.set_defaults(handler=cmd_train_encoder)


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    names = [name for name, _, _ in _OPTIONS] + list(_FLAGS)
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def cmd_train_encoder(args: argparse.Namespace) -> int:
    from stylemapgan.checkpoint.families import SEMANTICSTYLEGAN, family_of
    from stylemapgan.checkpoint.io import CheckpointError, load_checkpoint
    from stylemapgan.data import open_dataset
    from stylemapgan.data.dataset import DataMismatchError
    from stylemapgan.data.lmdb_format import DatasetError
    from stylemapgan.models import resolve_checkpoint
    from stylemapgan.training.run import TrainingRun, discard_failed_run_dir, latest_checkpoint
    from stylemapgan.training.semantic_encoder import SEMANTIC_ENCODER, SemanticEncoderTrainConfig
    from stylemapgan.training.trainer import TrainingDiverged

    if (args.ckpt is None) == (args.resume is None):
        raise CLIError("--ckpt: give the generator's checkpoint (a new run) or --resume RUN (continue one), not both"
                       if args.ckpt else "--ckpt: required (the trained SemanticStyleGAN model), or --resume RUN")
    if args.encoder_expanded_rank is not None and args.resume is not None:
        raise CLIError("--expanded-rank: sets a new run's encoder; a resumed run keeps its own")
    if args.encoder_expanded_rank is not None and not 0 <= args.encoder_expanded_rank <= 256:
        raise CLIError(f"--expanded-rank: must be in [0, 256], got {args.encoder_expanded_rank}")
    if args.encoder_channel_base is not None and args.resume is not None:
        raise CLIError("--encoder-channel-base: sets a new run's encoder; a resumed run keeps its own")
    if args.encoder_channel_base is not None and not 32 <= args.encoder_channel_base <= 32768:
        raise CLIError(f"--encoder-channel-base: must be in [32, 32768], got {args.encoder_channel_base}")
    if args.encoder_from is not None and args.resume is not None:
        raise CLIError("--encoder-from: starts a new run from --ckpt's generator; a resumed run has its encoder")
    flag = "--resume" if args.resume else "--ckpt"
    try:
        source = latest_checkpoint(args.resume) if args.resume else latest_checkpoint(resolve_checkpoint(args.ckpt))
        ckpt = load_checkpoint(source)
    except CheckpointError as exc:
        raise CLIError(f"{flag}: {exc}") from None
    adopt_from = None
    if args.encoder_from is not None:
        try:
            adopt_from = latest_checkpoint(resolve_checkpoint(args.encoder_from))
        except CheckpointError as exc:
            raise CLIError(f"--encoder-from: {exc}") from None
    family = family_of(ckpt.config)
    if family is not SEMANTICSTYLEGAN:
        raise CLIError(f"{flag}: {source} is a {family.title} model; train-encoder fits SemanticStyleGAN encoders "
                       "(a StyleMapGAN encoder trains with `stylemapgan train`, e.g. --resume RUN --freeze-generator)")
    try:
        train_config = SemanticEncoderTrainConfig(**given_options(args))
    except ValueError as exc:  # "iters: must be >= 1" -> "--iters: must be >= 1"
        field, sep, rest = str(exc).partition(": ")
        raise CLIError(f"--{field.replace('_', '-')}: {rest}" if sep and field.isidentifier() else str(exc)) from None
    outdir = run_directory(args.outdir, args.resume)  # train's rules: checked before the data is opened
    try:
        train_data = open_dataset(args.data, split="train")
    except DatasetError as exc:
        raise CLIError(f"--data: {exc}") from None
    try:
        val_data = open_dataset(args.data, split="test")
    except DatasetError:
        val_data = None
    existed = outdir.exists()
    try:
        run = TrainingRun(
            ckpt.config, train_config, train_data, outdir, val_data=val_data, device=args.device,
            resume=source if args.resume else None, init_from=None if args.resume else source,
            resume_changes=given_options(args) if args.resume else None, progress=args.progress,
            data_description={"path": str(args.data), "train_images": len(train_data)}, training=SEMANTIC_ENCODER,
            adopt_from=adopt_from,
            model_changes={name: getattr(args, name) for name in ("encoder_expanded_rank", "encoder_channel_base")
                           if getattr(args, name) is not None} or None,
        )
    except DataMismatchError as exc:
        raise CLIError(f"--data {args.data}: {exc}") from None
    except ValueError as exc:  # CheckpointError too: an --encoder-from file that cannot be adopted names itself
        raise CLIError(str(exc)) from None
    except OSError as exc:
        if not existed:
            discard_failed_run_dir(outdir)
        raise CLIError(f"{exc.filename or outdir}: {exc.strerror or exc} (--outdir)") from None
    # the class names (and any other extra) go on with the generator
    run.trainer.extra = dict(ckpt.extra)  # type: ignore[attr-defined]
    start, total = run.trainer.iteration, run.cfg.iters
    announce_threads(args)
    try:
        result = run.run()
    except TrainingDiverged as exc:
        print(f"stylemapgan train-encoder: error: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:
        raise CLIError(f"{exc.filename or outdir}: {exc.strerror or exc}") from None
    finally:
        run.close()
    if run.dist.is_main:
        print(_summary(result, start, total))
    return STOPPED_EXIT if result.stopped_by_signal else 0
