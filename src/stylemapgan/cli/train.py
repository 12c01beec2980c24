"""`stylemapgan train`: single process, or under `torchrun -m stylemapgan train` for many GPUs / machines."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from stylemapgan.cli import CLIError, announce_threads
from stylemapgan.cli.options import add_progress_option, add_threads_option
from stylemapgan.config import PRESETS, get_preset
from stylemapgan.training.config import PERCEPTUAL_KINDS, TrainConfig

_TRAIN_OPTIONS: list[tuple[str, type, str]] = [
    ("lr", float, "Adam learning rate of G and E (D uses lr * k/(k+1))"),
    ("ema_decay", float, "EMA decay of G and E"),
    ("r1_gamma", float, "R1 weight gamma"),
    ("d_reg_every", int, "lazy R1 interval"),
    ("lambda_adv", float, "weight of G's non-saturating loss"),
    ("lambda_w_rec", float, "weight of E's latent reconstruction loss"),
    ("lambda_d", float, "weight of D's logistic loss"),
    ("lambda_indomain_d", float, "weight of D's in-domain term"),
    ("lambda_x_rec", float, "weight of the image MSE in the reconstruction step"),
    ("lambda_perceptual", float, "weight of LPIPS in the reconstruction step"),
    ("lambda_indomain_e", float, "weight of the in-domain adversarial term for E and G"),
    ("checkpoint_every", int, "iterations between checkpoints"),
    ("keep_checkpoints", int, "how many recent checkpoints to keep"),
    ("log_every", int, "iterations between JSONL/TensorBoard loss records"),
    ("sample_every", int, "iterations between sample grids"),
    ("val_every", int, "iterations between validation MSE/LPIPS"),
    ("val_count", int, "held-out images used for validation"),
    ("num_workers", int, "DataLoader workers per process"),
]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train StyleMapGAN (G, E, D jointly, the paper's objective)",
        description="Train StyleMapGAN. Multi-GPU / multi-node: torchrun --nproc_per_node=K -m stylemapgan train ...",
    )
    p.add_argument(
        "--data", required=True, help="prepared dataset (prepare / datasets build) or official LMDB",
    )
    p.add_argument("--outdir", required=True, help="run directory: checkpoints, logs, samples")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="model preset of a new run (default paper-256; --resume and --init-from take the model "
                        "config from the checkpoint)")
    p.add_argument("--iters", type=int, default=None,
                   help="total iterations (default: 1.4M as the paper; on --resume, the run's saved total)")
    p.add_argument("--batch", type=int, default=None, help="GLOBAL batch across all processes (default: preset's)")
    p.add_argument("--resume", default=None,
                   help="run directory or checkpoint to continue (restores everything, the model config included). "
                        "Loss weights, lr, EMA, bf16/tf32, intervals, --freeze-generator and a larger "
                        "--encoder-channel-base given with it replace the saved ones and are recorded in the "
                        "checkpoints' history; batch, seed, perceptual, flips, lazy-R1 interval cannot change")
    p.add_argument("--init-from", default=None, metavar="NAME_OR_FILE",
                   help="fine-tune: start a new run from a trained model (a bundled model's name, our checkpoint "
                        "or run directory, or an official .pt) on --data; its config is used, optimizers and "
                        "iteration start afresh, and D comes from the checkpoint when it has one")
    p.add_argument("--fresh-discriminator", action="store_true",
                   help="with --init-from: a newly initialised discriminator even if the checkpoint has one")
    p.add_argument("--perceptual", choices=PERCEPTUAL_KINDS, default=None,
                   help="LPIPS network of the reconstruction loss (default stlpips-vgg; none: MSE only)")
    p.add_argument("--no-hflip", dest="hflip", action="store_const", const=False, default=None,
                   help="disable horizontal-flip augmentation")
    p.add_argument("--seed", type=int, default=None, help="seed of weights, data order and noise (default 0)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--bf16", dest="amp_bf16", action="store_const", const=True, default=None,
                   help="bf16 autocast for forward passes")
    p.add_argument("--tf32", action="store_const", const=True, default=None,
                   help="allow TF32 matmuls and convs on CUDA (default: plain fp32; PyTorch's default: TF32 convs)")
    p.add_argument("--freeze-generator", dest="freeze_generator", action="store_const", const=True, default=None,
                   help="with --resume: keep G and its EMA fixed and fit E (and D) to the EMA generator, e.g. after "
                        "widening the encoder")
    p.add_argument("--no-freeze-generator", dest="freeze_generator", action="store_const", const=False,
                   help="train G again (after --freeze-generator; E, fitted to G's EMA, meets the live G again)")
    p.add_argument("--encoder-channel-base", type=int, default=None,
                   help="the encoder's channel_base (default: the generator's, as official). With --resume it may "
                        "grow: the trained encoder is widened, computing the same function, and trains on")
    add_progress_option(p)
    add_threads_option(p)
    for name, kind, text in _TRAIN_OPTIONS:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None, help=text)
    p.set_defaults(handler=cmd_train)


STOPPED_EXIT = 143  # 128 + SIGTERM: saved and stopped early; continue with --resume
_OTHER_FIELDS = ("iters", "batch", "perceptual", "hflip", "seed", "amp_bf16", "tf32", "freeze_generator")


def given_train_options(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields set on this command line (options left out are None)."""
    names = [name for name, _, _ in _TRAIN_OPTIONS] + list(_OTHER_FIELDS)
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def given_model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ModelConfig fields set on this command line (applied to the preset, or to the resumed model)."""
    return {} if args.encoder_channel_base is None else {"encoder_channel_base": args.encoder_channel_base}


def train_config_from_args(args: argparse.Namespace, preset_batch: int) -> TrainConfig:
    return TrainConfig(**{"batch": preset_batch, **given_train_options(args)})


def _check_outdir(out: Path) -> None:
    """The run directory can be created (or written into), before any data is opened."""
    if out.exists() and not out.is_dir():
        raise CLIError(f"{out}: exists and is not a folder (--outdir)")
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise CLIError(f"{out}: cannot be created, {blocking} is a file (--outdir)")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"{out}: cannot write into {existing} (--outdir)")


def cmd_train(args: argparse.Namespace) -> int:
    from stylemapgan.data import open_dataset
    from stylemapgan.data.dataset import DataMismatchError
    from stylemapgan.data.lmdb_format import DatasetError
    from stylemapgan.training.run import TrainingRun, discard_failed_run_dir
    from stylemapgan.training.trainer import TrainingDiverged

    if args.preset is not None and (args.resume or args.init_from):
        raise CLIError("--preset: the model config comes from the checkpoint with --resume/--init-from")
    if args.fresh_discriminator and not args.init_from:
        raise CLIError("--fresh-discriminator: only with --init-from")
    preset = get_preset(args.preset or "paper-256")
    init_from = None
    if args.init_from:
        from stylemapgan.checkpoint.io import CheckpointError
        from stylemapgan.models import resolve_checkpoint

        try:
            init_from = resolve_checkpoint(args.init_from)
        except CheckpointError as exc:
            raise CLIError(f"--init-from: {exc}") from None
    try:
        train_config = train_config_from_args(args, preset.batch)
    except ValueError as exc:  # "iters: must be >= 1" -> "--iters: must be >= 1"
        field, sep, rest = str(exc).partition(": ")
        raise CLIError(f"--{field.replace('_', '-')}: {rest}" if sep and field.isidentifier() else str(exc)) from None
    _check_outdir(Path(args.outdir))
    train_data = open_dataset(args.data, split="train")
    try:
        val_data = open_dataset(args.data, split="test")
    except DatasetError:  # no held-out split (e.g. an official LMDB): no validation
        val_data = None
    existed = Path(args.outdir).exists()
    try:  # checks data and resume settings before the run directory is written
        run = TrainingRun(
            preset.model, train_config, train_data, args.outdir, val_data=val_data, device=args.device,
            resume=args.resume, resume_changes=given_train_options(args) if args.resume else None,
            init_from=init_from, fresh_discriminator=args.fresh_discriminator,
            model_changes=given_model_options(args),
            progress=args.progress, data_description={"path": str(args.data), "train_images": len(train_data)},
        )
    except DataMismatchError as exc:
        raise CLIError(f"{args.data}: {exc}") from None
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    except OSError as exc:  # the run directory cannot be made (a read-only file system...)
        if not existed:
            discard_failed_run_dir(Path(args.outdir))
        raise CLIError(f"{exc.filename or args.outdir}: {exc.strerror or exc} (--outdir)") from None

    start, total = run.trainer.iteration, run.cfg.iters
    announce_threads(args)
    try:
        result = run.run()
    except TrainingDiverged as exc:
        print(f"stylemapgan train: error: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:  # a full disk...: the run removed its directory if it had saved nothing
        raise CLIError(f"{exc.filename or args.outdir}: {exc.strerror or exc}") from None
    finally:
        run.close()
    if run.dist.is_main:
        print(_summary(result, start, total))
    return STOPPED_EXIT if result.stopped_by_signal else 0  # so `make` and scripts do not go on as if finished


def _summary(result: Any, start: int, total: int) -> str:
    """The last line of a run: where it stopped and the checkpoint to use or resume from."""
    last = f"last checkpoint: {result.last_checkpoint}" if result.last_checkpoint else "no checkpoint written"
    if result.stopped_by_signal:
        return f"stopped by signal at iteration {result.iteration}; {last} (continue with --resume)"
    if start >= total:
        return f"already at iteration {result.iteration} of {total}: nothing trained; {last} (--iters N to go on)"
    return f"finished at iteration {result.iteration}; {last}"
