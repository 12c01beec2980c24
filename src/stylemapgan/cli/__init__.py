"""The `stylemapgan` command: one entry point, one module per group of subcommands.

Each module in COMMAND_MODULES exposes `register(subparsers)`, adding its subcommands with a `handler`
default that takes the parsed args and returns an exit code. The CLI stays a thin layer over the library.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

COMMAND_MODULES = [
    "stylemapgan.cli.models",
    "stylemapgan.cli.data",
    "stylemapgan.cli.train",
    "stylemapgan.cli.edit",
    "stylemapgan.cli.evaluate",
    "stylemapgan.cli.serve",
    "stylemapgan.cli.bench",
]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


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
    try:
        return int(args.handler(args) or 0)
    except (CLIError, CheckpointError, ConfigError, DatasetError, FileNotFoundError) as exc:
        print(f"stylemapgan {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stylemapgan {args.command}: interrupted", file=sys.stderr)
        return 130
