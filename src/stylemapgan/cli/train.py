"""`stylemapgan train`: single process, or under `torchrun -m stylemapgan train` for many GPUs / machines.

The model family (StyleMapGAN or SemanticStyleGAN) comes from the preset, or from the checkpoint with --resume /
--init-from; its entry in `training.families` names the training config the options fill and the data it needs
(SemanticStyleGAN: images with per-pixel label maps)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stylemapgan.checkpoint.families import all_presets
from stylemapgan.cli import CLIError, announce_threads
from stylemapgan.cli.options import add_progress_option, add_threads_option, check_output
from stylemapgan.training.config import PERCEPTUAL_KINDS, TrainConfig

_TRAIN_OPTIONS: list[tuple[str, type, str]] = [
    ("lr", float, "Adam learning rate of G and E (D uses lr * k/(k+1); SemanticStyleGAN's G lr * p/(p+1), p the "
                  "path-length interval)"),
    ("ema_decay", float, "EMA decay of G and E per iteration (default 0.999; SemanticStyleGAN 0.5 ** (32 / 10000))"),
    ("r1_gamma", float, "R1 weight gamma (SemanticStyleGAN: of D's image branch)"),
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
    ("val_every", int, "iterations between validation figures (StyleMapGAN: reconstruction MSE/LPIPS; "
                       "SemanticStyleGAN: mask consistency and class coverage of fixed samples)"),
    ("val_count", int, "held-out images (SemanticStyleGAN: also fixed samples) used for validation"),
    ("num_workers", int, "DataLoader workers per process"),
]
# SemanticStyleGAN's own terms (spec section 8); defaults the official ones.
_SEMANTIC_OPTIONS: list[tuple[str, type, str]] = [
    ("r1_seg_gamma", float, "SemanticStyleGAN: R1 weight of D's segmentation branch (default 1000)"),
    ("lambda_mask", float, "SemanticStyleGAN: weight of the mask consistency between the final and the coarse "
                           "segmentation (default 100)"),
    ("path_regularize", float, "SemanticStyleGAN: path-length regularisation weight, 0 turns it off (default 0.5)"),
    ("path_every", int, "SemanticStyleGAN: lazy path-length interval (default 4)"),
    ("path_batch_shrink", int, "SemanticStyleGAN: the path-length batch is --batch divided by this (default 2)"),
    ("mixing_prob", float, "SemanticStyleGAN: probability of part-wise style mixing per iteration (default 0.3)"),
    ("lambda_swap", float, "SemanticStyleGAN, ours (not in the paper): weight of a part-swap consistency loss "
                           "that pulls a render with one part's codes from another sample towards that sample "
                           "inside the part and towards itself outside it (default 0: official, off)"),
]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train StyleMapGAN (G, E, D jointly) or SemanticStyleGAN (a semantic-* preset)",
        description="Train StyleMapGAN, or SemanticStyleGAN with a semantic-* preset (on images with per-pixel "
                    "label maps), each with its paper's objective. Multi-GPU / multi-node: "
                    "torchrun --nproc_per_node=K -m stylemapgan train ...",
    )
    p.add_argument(
        "--data", required=True,
        help="prepared dataset (prepare / datasets build) or official LMDB; SemanticStyleGAN needs label maps "
             "(cartoon-faces, or prepare --labels DIR) with as many classes as the model",
    )
    p.add_argument("--outdir", default=None, help=OUTDIR_HELP)
    p.add_argument("--preset", default=None, choices=list(all_presets()),
                   help="model preset of a new run (default paper-256; semantic-* presets train SemanticStyleGAN; "
                        "--resume and --init-from take the model config from the checkpoint)")
    p.add_argument("--iters", type=int, default=None,
                   help="total iterations (default: the paper's, 1.4M for StyleMapGAN, 200,001 for SemanticStyleGAN; "
                        "on --resume, the run's saved total)")
    p.add_argument("--batch", type=int, default=None, help="GLOBAL batch across all processes (default: preset's)")
    p.add_argument("--resume", default=None,
                   help="run directory or checkpoint to continue (restores everything, the model config included); "
                        "a run directory goes on in place unless --outdir is given. Loss weights, lr, EMA, "
                        "bf16/tf32, intervals, --freeze-generator and a larger --encoder-channel-base given with it "
                        "replace the saved ones and are recorded in the checkpoints' history; batch, seed, "
                        "perceptual, flips, lazy-R1 interval cannot change")
    p.add_argument("--init-from", default=None, metavar="NAME_OR_FILE",
                   help="fine-tune: start a new run from a trained model (a bundled model's name, our checkpoint "
                        "or run directory, or an official .pt) on --data; its config is used, optimizers and "
                        "iteration start afresh, and D comes from the checkpoint when it has one")
    p.add_argument("--fresh-discriminator", action="store_true",
                   help="with --init-from: a newly initialised discriminator even if the checkpoint has one")
    p.add_argument("--perceptual", choices=PERCEPTUAL_KINDS, default=None,
                   help="LPIPS network of the reconstruction loss (default stlpips-vgg; none: MSE only)")
    p.add_argument("--no-hflip", dest="hflip", action="store_const", const=False, default=None,
                   help="disable horizontal-flip augmentation (StyleMapGAN's default is on)")
    p.add_argument("--hflip", dest="hflip", action="store_const", const=True,
                   help="enable horizontal flips of image and label map together (SemanticStyleGAN's default is "
                        "off, as official)")
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
    for name, kind, text in _TRAIN_OPTIONS + _SEMANTIC_OPTIONS:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None, help=text)
    p.set_defaults(handler=cmd_train)


STOPPED_EXIT = 143  # 128 + SIGTERM: saved and stopped early; continue with --resume
OUTDIR_HELP = "run directory: checkpoints, logs, samples (with --resume RUN: RUN, where the run goes on)"
_OTHER_FIELDS = ("iters", "batch", "perceptual", "hflip", "seed", "amp_bf16", "tf32", "freeze_generator")


def given_train_options(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields set on this command line (options left out are None)."""
    names = [name for name, _, _ in _TRAIN_OPTIONS + _SEMANTIC_OPTIONS] + list(_OTHER_FIELDS)
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def given_model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ModelConfig fields set on this command line (applied to the preset, or to the resumed model)."""
    return {} if args.encoder_channel_base is None else {"encoder_channel_base": args.encoder_channel_base}


def train_config_from_args(args: argparse.Namespace, preset_batch: int, kind: type = TrainConfig) -> Any:
    """The family's training config (`kind`) from the preset's batch and the options given."""
    return kind(**{"batch": preset_batch, **given_train_options(args)})


def _check_options_fit(given: dict[str, Any], kind: type, title: str, model_options: dict[str, Any],
                       model_kind: type) -> None:
    """Options of the other family are refused, naming the flag."""
    for name in [*given, *model_options]:
        fields = kind.__dataclass_fields__ if name in given else model_kind.__dataclass_fields__
        if name not in fields:
            raise CLIError(f"--{name.replace('_', '-')}: not an option of {title} training")


def _checkpoint_config(path: Any) -> Any:
    """The model config inside a checkpoint (or the newest one of a run directory)."""
    from stylemapgan.checkpoint.io import CheckpointError, load_checkpoint
    from stylemapgan.training.run import latest_checkpoint

    try:
        return load_checkpoint(latest_checkpoint(path)).config
    except CheckpointError as exc:
        raise CLIError(str(exc)) from None


def run_directory(outdir: str | None, resume: str | None) -> Path:
    """Where the run writes: --outdir, else the run directory --resume names (a checkpoint file names none).
    Checked like every command's output (`check_output`) before any data is opened; not declared to the CLI's
    output guard, since a failed run removes its own directory when it saved nothing into it."""
    if outdir is None:
        if resume is None:
            raise CLIError("--outdir: required (the run directory)")
        if not Path(resume).is_dir():
            raise CLIError(f"--outdir: required when --resume names a checkpoint file ({resume}); give the run "
                           "directory to write into")
        outdir = resume
    return check_output(outdir, "--outdir", folder=True)


def cmd_train(args: argparse.Namespace) -> int:
    from stylemapgan.checkpoint.families import find_preset
    from stylemapgan.data import open_dataset
    from stylemapgan.data.dataset import DataMismatchError
    from stylemapgan.data.lmdb_format import DatasetError
    from stylemapgan.training.families import training_family
    from stylemapgan.training.run import TrainingRun, discard_failed_run_dir
    from stylemapgan.training.trainer import TrainingDiverged

    if args.preset is not None and (args.resume or args.init_from):
        raise CLIError("--preset: the model config comes from the checkpoint with --resume/--init-from")
    if args.fresh_discriminator and not args.init_from:
        raise CLIError("--fresh-discriminator: only with --init-from")
    _, preset = find_preset(args.preset or "paper-256")
    family = training_family(preset.model)
    init_from = None
    if args.init_from:
        from stylemapgan.checkpoint.io import CheckpointError
        from stylemapgan.models import resolve_checkpoint

        try:
            init_from = resolve_checkpoint(args.init_from)
        except CheckpointError as exc:
            raise CLIError(f"--init-from: {exc}") from None
    model_config = preset.model
    if args.resume or init_from:  # the family is the checkpoint's
        model_config = _checkpoint_config(args.resume or init_from)
        family = training_family(model_config)
    _check_options_fit(given_train_options(args), family.train_config, family.title, given_model_options(args),
                       family.model.config_class)
    try:
        train_config = train_config_from_args(args, preset.batch, family.train_config)
    except ValueError as exc:  # "iters: must be >= 1" -> "--iters: must be >= 1"
        field, sep, rest = str(exc).partition(": ")
        raise CLIError(f"--{field.replace('_', '-')}: {rest}" if sep and field.isidentifier() else str(exc)) from None
    outdir = run_directory(args.outdir, args.resume)
    try:
        train_data = open_dataset(args.data, split="train", **family.dataset_options)
    except DatasetError as exc:
        needs = f" ({family.title} trains on images with per-pixel label maps)" if family.dataset_options else ""
        raise CLIError(f"{exc}{needs}") from None
    try:
        val_data = open_dataset(args.data, split="test", **family.dataset_options)
    except DatasetError:  # no held-out split (e.g. an official LMDB): no validation
        val_data = None
    existed = outdir.exists()
    try:  # checks data and resume settings before the run directory is written
        run = TrainingRun(
            model_config, train_config, train_data, outdir, val_data=val_data, device=args.device,
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
            discard_failed_run_dir(outdir)
        raise CLIError(f"{exc.filename or outdir}: {exc.strerror or exc} (--outdir)") from None

    start, total = run.trainer.iteration, run.cfg.iters
    announce_threads(args)
    try:
        result = run.run()
    except TrainingDiverged as exc:
        print(f"stylemapgan train: error: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:  # a full disk...: the run removed its directory if it had saved nothing
        raise CLIError(f"{exc.filename or outdir}: {exc.strerror or exc}") from None
    except DataMismatchError as exc:  # found in a batch (e.g. a label outside the model's classes)
        raise CLIError(f"{args.data}: {exc}") from None
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
