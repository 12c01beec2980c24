"""Options shared by the subcommands, so that each means the same everywhere.

The conventions (NVlabs' `--outdir`, `--seeds`, `--trunc` kept):
- `--outdir DIR` names a folder a command writes into, `--out FILE` a single file (a `.json` record, a report, a
  checkpoint). Commands that read naturally as `IN OUT` (`convert`, `release`, `prepare`, `datasets build`,
  `init OUT`) keep their positional output and also take the flag.
- `--ckpt` names the model read (a file, a run directory, or a bundled model's name).
- `--no-progress` silences progress bars and progress lines on stderr on every command that shows them; `--quiet`
  is its hidden older name (on `eval` it also drops the summary, as it always did).
- `--threads N` sets PyTorch's CPU threads on every command that computes; without it the CLI chooses
  (`stylemapgan.cli.threads`).
"""

from __future__ import annotations

import argparse

from stylemapgan.cli import CLIError


class _OldQuiet(argparse.Action):
    """`--quiet`, the older name of `--no-progress` (edit commands, eval): sets both `progress` and `quiet`."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=False, help=argparse.SUPPRESS)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        namespace.progress = False
        namespace.quiet = True


def add_progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars or progress lines on stderr")
    p.add_argument("--quiet", dest="quiet", action=_OldQuiet)


def add_dtype_option(p: argparse.ArgumentParser) -> None:
    """--dtype for the commands that run a model through the Editor (see `stylemapgan.runtime.precision`)."""
    p.add_argument("--dtype", choices=("auto", "fp32", "bf16"), default="auto",
                   help="network precision: auto (default: bf16 only on a CPU whose bf16 units measure faster, "
                        "fp32 elsewhere), fp32 (full precision), bf16; caches and blending stay fp32")


def add_threads_option(p: argparse.ArgumentParser) -> None:
    """--threads; the command calls `stylemapgan.cli.announce_threads(args)` once its options have checked out."""
    p.set_defaults(thread_note_deferred=True)
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="PyTorch CPU threads (default: PyTorch's, fewer when other processes keep the cores busy; "
                        "OMP_NUM_THREADS is respected)")


def add_output(p: argparse.ArgumentParser, *, folder: bool, help: str, positional: bool = True) -> None:
    """The output as `--outdir`/`--out`, and, where it reads naturally, also as a positional OUT."""
    flag = "--outdir" if folder else "--out"
    metavar = "OUTDIR" if folder else "OUT"
    if positional:
        p.add_argument("out", nargs="?", metavar=metavar, help=f"{help} (or {flag})")
        p.add_argument(flag, dest="out_flag", metavar=metavar, default=None, help=f"{help} (or positional {metavar})")
    else:
        p.add_argument(flag, dest="out", metavar=metavar, required=True, help=help)
    p.set_defaults(output_flag=flag)


def output_path(args: argparse.Namespace) -> str:
    """The output given positionally or by its flag (exactly one of the two, or both the same)."""
    positional, flag = getattr(args, "out", None), getattr(args, "out_flag", None)
    name = args.output_flag
    if positional is not None and flag is not None and positional != flag:
        raise CLIError(f"{name}: output given twice ({positional!r} and {flag!r}); give one")
    value = positional if positional is not None else flag
    if value is None:
        raise CLIError(f"{name}: required (the output {'folder' if name == '--outdir' else 'file'})")
    return value
