"""The `stylemapgan` command: one entry point, one module per group of subcommands.

Each module in COMMAND_MODULES exposes `register(subparsers)`, adding its subcommands with a `handler`
default that takes the parsed args and returns an exit code. The CLI stays a thin layer over the library.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import TYPE_CHECKING

from stylemapgan.cli.options import CLIError, OutputGuard

if TYPE_CHECKING:
    import torch

__all__ = ["CLIError", "announce_threads", "build_parser", "main", "resolve_device"]

COMMAND_MODULES = [
    "stylemapgan.cli.models",
    "stylemapgan.cli.data",
    "stylemapgan.cli.train",
    "stylemapgan.cli.encoder",
    "stylemapgan.cli.edit",
    "stylemapgan.cli.clusters",
    "stylemapgan.cli.photos",
    "stylemapgan.cli.evaluate",
    "stylemapgan.cli.compare",
    "stylemapgan.cli.serve",
    "stylemapgan.cli.bench",
]


def resolve_device(name: str) -> torch.device:
    """`--device` value -> torch.device ("auto": CUDA when available); a one-line error for unusable devices."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CLIError(f"--device: unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {name}: CUDA is not available on this machine")
    return device


def _set_threads(args: argparse.Namespace, automatic: bool) -> None:
    """Apply `stylemapgan.cli.threads`' policy for commands with --threads; the note waits in args.thread_note."""
    args.thread_note = None
    if not hasattr(args, "threads"):
        return
    if args.threads is not None and args.threads < 1:
        raise CLIError(f"--threads: must be >= 1, got {args.threads}")
    if args.threads is None and not automatic:
        return
    import torch

    from stylemapgan.cli.threads import choose_threads, load_average, usable_cores

    choice = choose_threads(args.threads, os.environ, load_average(), usable_cores(), torch.get_num_threads())
    if choice.threads is not None:
        torch.set_num_threads(choice.threads)
    args.thread_note = choice.note


def announce_threads(args: argparse.Namespace) -> None:
    """Print the thread note (once), when the command starts its work: a bad option still fails in one line."""
    note = getattr(args, "thread_note", None)
    if note:
        print(note, file=sys.stderr, flush=True)
        args.thread_note = None


def build_parser() -> argparse.ArgumentParser:
    from stylemapgan import __version__

    parser = argparse.ArgumentParser(
        prog="stylemapgan",
        description="StyleMapGAN in pure PyTorch: train, convert, edit and evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"stylemapgan {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command group not written yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from stylemapgan.checkpoint import CheckpointError
    from stylemapgan.config import ConfigError
    from stylemapgan.data.lmdb_format import DatasetError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from stylemapgan.utils.precision import set_tf32

    set_tf32(False)  # plain fp32 unless a command asks (train --tf32); see utils/precision.py
    guard = None
    try:
        _set_threads(args, automatic=argv is None)
        guard = OutputGuard(args)  # outputs that cannot be written fail here, before any work
        if not getattr(args, "thread_note_deferred", False):
            announce_threads(args)
        return int(args.handler(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:  # not SystemExit: a command may exit on purpose
        if guard is not None:
            guard.remove_created()  # nothing half-written is left behind
        if isinstance(exc, CLIError | CheckpointError | ConfigError | DatasetError | FileNotFoundError):
            print(f"stylemapgan {args.command}: error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, OSError):  # an output that could not be written after all: a full disk, a race...
            where = exc.filename if exc.filename is not None else "output"
            print(f"stylemapgan {args.command}: error: {where}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        if isinstance(exc, KeyboardInterrupt):
            print(f"stylemapgan {args.command}: interrupted", file=sys.stderr)
            return 130
        raise
