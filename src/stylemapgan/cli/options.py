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
import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2 (`stylemapgan.cli.main`; defined here, beside the
    options that raise it, so that the package imports this module and not the reverse)."""


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


def add_output(p: argparse.ArgumentParser, *, folder: bool, help: str, positional: bool = True,
               beside: tuple[str, ...] = ()) -> None:
    """The output as `--outdir`/`--out`, and, where it reads naturally, also as a positional OUT; declared
    (`declare_output`), so it is checked before the command starts and removed if the command fails."""
    flag = "--outdir" if folder else "--out"
    metavar = "OUTDIR" if folder else "OUT"
    if positional:
        p.add_argument("out", nargs="?", metavar=metavar, help=f"{help} (or {flag})")
        p.add_argument(flag, dest="out_flag", metavar=metavar, default=None, help=f"{help} (or positional {metavar})")
    else:
        p.add_argument(flag, dest="out", metavar=metavar, required=True, help=help)
    p.set_defaults(output_flag=flag)
    declare_output(p, flag, ("out", "out_flag") if positional else ("out",), folder=folder, beside=beside)


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


# ---- outputs: checked before any work, removed again when the command fails -------------------------------------


@dataclass(frozen=True)
class OutputSpec:
    """An output a command writes. `files` maps the given value to the files written (a file output and the files
    written beside it, e.g. a model's card); a folder output is the folder itself."""

    flag: str
    dests: tuple[str, ...]
    folder: bool
    files: Callable[[str], list[Path]] | None = None

    def values(self, args: argparse.Namespace) -> list[str]:
        return list(dict.fromkeys(str(v) for d in self.dests if (v := getattr(args, d, None)) is not None))

    def paths(self, value: str) -> list[Path]:
        return [Path(value)] if self.folder or self.files is None else self.files(value)


def declare_output(p: argparse.ArgumentParser, flag: str, dests: tuple[str, ...], *, folder: bool,
                   beside: tuple[str, ...] = (), files: Callable[[str], list[Path]] | None = None) -> None:
    """Register an output of `p`'s command with `stylemapgan.cli.main`: it is checked before the command starts
    (`check_output`) and what the command created of it is removed if the command fails (`OutputGuard`).
    `beside`: suffixes of files written next to a file output (`.md` for a model card)."""
    if files is None and beside:
        files = functools.partial(_with_beside, beside)
    spec = OutputSpec(flag, dests, folder, files)
    p.set_defaults(outputs=[*(p.get_default("outputs") or []), spec])


def _with_beside(suffixes: tuple[str, ...], value: str) -> list[Path]:
    path = Path(value)
    return [path, *(path.with_suffix(s) for s in suffixes)]


def _nearest_existing(path: Path) -> Path:
    return next(p for p in (path, *path.parents) if p.exists() or p.is_symlink())


def check_output(path: str | os.PathLike[str], flag: str, *, folder: bool) -> Path:
    """Refuse, in one line naming `flag`, an output that cannot be written: a file where a folder is expected (or
    the reverse), a parent that is a file, a folder that refuses new entries (probed by creating a temporary file,
    as permissions alone do not tell: root, read-only mounts, sysfs). Nothing is created."""
    out = Path(path)
    if folder and out.exists() and not out.is_dir():
        raise CLIError(f"{out}: exists and is not a folder ({flag})")
    if not folder and out.is_dir():
        raise CLIError(f"{out}: is a folder, expected a file ({flag})")
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise CLIError(f"{out}: cannot be created, {blocking} is a file ({flag})")
    target = out if folder and out.is_dir() else _nearest_existing(out.parent)
    try:
        fd, probe = tempfile.mkstemp(prefix=".stylemapgan-write-probe-", dir=target)
    except OSError as exc:
        raise CLIError(f"{out}: cannot write into {target} ({exc.strerror or exc}) ({flag})") from None
    os.close(fd)
    os.unlink(probe)
    return out


@dataclass(frozen=True)
class _Before:
    path: Path
    existed: bool
    created_root: Path | None = None  # the outermost missing folder above the output: the command creates it
    entries: frozenset[str] | None = None  # an existing folder's entries


class OutputGuard:
    """The declared outputs of a command (`declare_output`): checked on construction; `remove_created()` after a
    failure removes what the command added (a folder it created goes entirely, new entries of an existing folder
    go, a file that did not exist goes); files it overwrote stay overwritten (writes are atomic, so they are whole)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.before: list[_Before] = []
        for spec in getattr(args, "outputs", None) or []:
            for value in spec.values(args):
                for path in spec.paths(value):
                    check_output(path, spec.flag, folder=spec.folder)
                    self.before.append(self._snapshot(path))

    @staticmethod
    def _snapshot(path: Path) -> _Before:
        if path.is_dir():
            return _Before(path, True, entries=frozenset(os.listdir(path)))
        missing_parents = [p for p in path.parents if not (p.exists() or p.is_symlink())]
        return _Before(path, path.exists() or path.is_symlink(), missing_parents[-1] if missing_parents else None)

    def remove_created(self) -> None:
        for before in self.before:
            with contextlib.suppress(OSError):
                if before.created_root is not None:
                    shutil.rmtree(before.created_root, ignore_errors=True)
                elif before.entries is not None:
                    for name in set(os.listdir(before.path)) - before.entries:
                        _remove(before.path / name)
                elif not before.existed:
                    _remove(before.path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
