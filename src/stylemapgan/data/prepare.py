"""``stylemapgan prepare``: a folder, a zip or an official LMDB -> a prepared dataset.

Inputs are read in a fixed order (sorted paths, zip member order, LMDB index order) and decoded, possibly
in worker processes, by ``images.sanitize``; results come back in input order, so the output does not depend
on the worker count. Anything unusable is skipped with a reason and listed in the metadata. The test split
is drawn from the kept images with a seeded generator.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from stylemapgan.config import LIMITS
from stylemapgan.data.images import CleanImage, ImageOptions, SkipImage, sanitize
from stylemapgan.data.labels import LabelOptions, displayed_size, sanitize_label_map
from stylemapgan.data.lmdb_format import (
    DatasetError,
    DatasetWriter,
    official_key,
    official_length,
    official_sizes,
    shared_env,
)

MAX_SIZE = LIMITS["size"][1]  # the largest model resolution: a dataset larger than any model is of no use here
MAX_WORKERS = 64  # decoding processes


class Source:
    """A list of named inputs readable by index, picklable so worker processes can read on their own."""

    kind = "?"

    def names(self) -> list[str]:
        raise NotImplementedError

    def read(self, index: int) -> bytes:
        raise NotImplementedError

    def declared_size(self, index: int) -> int | None:
        """Bytes input `index` says it holds (file size, zip directory entry) before any is read; None: unknown."""
        return None

    def ignored(self) -> list[dict[str, str]]:
        """Entries left out as not regular files (links to folders, FIFOs, devices...), as skip records."""
        return []

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind}


class FolderSource(Source):
    """Every regular file under a folder, recursively, in sorted path order (symlinked dirs not followed)."""

    kind = "folder"

    def __init__(self, root: Path, exclude: tuple[Path, ...] = ()) -> None:
        self.root = root
        skip = {p.resolve() for p in exclude}
        files, self._ignored = [], []
        for dirpath, dirnames, filenames in os.walk(root):
            links = [d for d in dirnames if Path(dirpath, d).is_symlink()]
            self._ignored += [(Path(dirpath, d), "a link to a folder, not followed") for d in links]
            dirnames[:] = sorted(d for d in dirnames if d not in links and Path(dirpath, d).resolve() not in skip)
            for name in filenames:
                path = Path(dirpath, name)
                kind = _not_a_file(path)
                if kind is None:
                    files.append(path)
                else:
                    self._ignored.append((path, kind))
        self._files = sorted(str(p.relative_to(root)) for p in files)

    def names(self) -> list[str]:
        return self._files

    def read(self, index: int) -> bytes:
        return (self.root / self._files[index]).read_bytes()

    def declared_size(self, index: int) -> int | None:
        return (self.root / self._files[index]).stat().st_size

    def ignored(self) -> list[dict[str, str]]:
        return [{"source": str(p.relative_to(self.root)), "reason": "not-a-file", "detail": kind}
                for p, kind in sorted(self._ignored)]

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, "path": str(self.root.resolve())}


def _not_a_file(path: Path) -> str | None:
    """None for a regular file (or a link to one), else what the entry is, in words."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return "a broken link" if path.is_symlink() else "unreadable entry"
    if stat.S_ISREG(mode):
        return None
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return kind
    return "not a regular file"


class ZipSource(Source):
    """Members of a zip (directories left out). Repeated member names get '#2', '#3'... suffixes."""

    kind = "zip"

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise DatasetError(f"{path}: not a readable zip file ({exc})") from exc
        self._positions: list[int] = []
        self._names: list[str] = []
        self._sizes: list[int] = []
        seen: Counter[str] = Counter()
        for pos, info in enumerate(infos):
            if info.is_dir():
                continue
            seen[info.filename] += 1
            count = seen[info.filename]
            self._names.append(info.filename if count == 1 else f"{info.filename}#{count}")
            self._positions.append(pos)
            self._sizes.append(info.file_size)
        self._zip: zipfile.ZipFile | None = None
        self._pid = -1

    def names(self) -> list[str]:
        return self._names

    def read(self, index: int) -> bytes:
        if self._zip is None or self._pid != os.getpid():
            self._zip = zipfile.ZipFile(self.path)
            self._pid = os.getpid()
        info = self._zip.infolist()[self._positions[index]]
        return self._zip.read(info)  # zipfile stops at the declared size (and fails the CRC if there is more)

    def declared_size(self, index: int) -> int | None:
        return self._sizes[index]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_zip"] = None
        state["_pid"] = -1
        return state

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, "path": str(self.path.resolve())}


class OfficialLMDBSource(Source):
    """The official StyleMapGAN / rosinality LMDB: images '{size}-{index:05d}' at its largest (or given) size."""

    kind = "official-lmdb"

    def __init__(self, path: Path, size: int | None = None) -> None:
        self.path = path
        env = shared_env(path)
        self.length = official_length(env, path)
        sizes = official_sizes(env)
        if size is None:
            if not sizes:
                raise DatasetError(f"{path}: official LMDB holds no '{{size}}-{{index}}' keys")
            size = max(sizes)
        elif size not in sizes:
            raise DatasetError(f"{path}: official LMDB has no {size}px images (has {sizes})")
        self.size = size
        self._env = None
        self._pid = -1

    def names(self) -> list[str]:
        return [official_key(self.size, i).decode() for i in range(self.length)]

    def read(self, index: int) -> bytes:
        if self._env is None or self._pid != os.getpid():
            self._env = shared_env(self.path)
            self._pid = os.getpid()
        with self._env.begin() as txn:
            value = txn.get(official_key(self.size, index))
        if value is None:
            raise SkipImage("missing", f"key {official_key(self.size, index).decode()} absent")
        return bytes(value)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_env"] = None
        state["_pid"] = -1
        return state

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, "path": str(self.path.resolve()), "source_size": self.size}


def open_source(path: str | os.PathLike[str], source_size: int | None = None, exclude: tuple[Path, ...] = ()) -> Source:
    """Folder, zip or official LMDB, by inspection; ``exclude``: folders to leave out (our own output)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    if p.is_dir():
        if (p / "data.mdb").is_file():
            return OfficialLMDBSource(p, source_size)
        return FolderSource(p, exclude)
    if zipfile.is_zipfile(p):
        return ZipSource(p)
    raise DatasetError(f"{p}: not a folder, a zip file or an LMDB directory")


def parse_test_split(text: str | float | int | None) -> float | int:
    """'500' -> 500 images; '0.05' -> 5 % of the kept images; None/'0' -> no test split."""
    if text is None:
        return 0
    if isinstance(text, int | float) and not isinstance(text, bool):
        value: float | int = text
    else:
        t = str(text).strip()
        try:
            value = float(t[:-1]) / 100.0 if t.endswith("%") else int(t) if t.isdigit() else float(t)
        except ValueError:
            raise ValueError(f"test split must be a count or a fraction, got {text!r}") from None
    if isinstance(value, float):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"test fraction must be in [0, 1), got {value}")
        return value
    if value < 0:
        raise ValueError(f"test count must be >= 0, got {value}")
    return value


def choose_test_ids(n: int, test: float | int, seed: int) -> list[int]:
    k = round(n * test) if isinstance(test, float) else int(test)
    if k > n:
        raise DatasetError(f"test split of {k} images asked for, but only {n} images were kept")
    if k == 0:
        return []
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n, size=k, replace=False))


@dataclass
class PrepareReport:
    """What a prepare run did: where, how many, and every skipped input with its reason."""

    out: Path
    kept: int
    splits: dict[str, int]
    skipped: list[dict[str, str]] = field(default_factory=list)
    conversions: dict[str, int] = field(default_factory=dict)
    label_names: tuple[str, ...] | None = None  # the classes of the label maps stored with the images, if any

    def by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(s["reason"] for s in self.skipped).items()))

    def summary(self, limit: int = 20) -> str:
        lines = [
            f"wrote {self.out}: {self.kept} images (" + ", ".join(f"{k} {v}" for k, v in self.splits.items()) + ")"
        ]
        if self.label_names is not None:
            lines.append(f"label maps: {len(self.label_names)} classes (" + ", ".join(
                f"{i}={n}" for i, n in enumerate(self.label_names)) + ")")
        if self.conversions:
            lines.append("converted: " + ", ".join(f"{k} {v}" for k, v in sorted(self.conversions.items())))
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)}: " + ", ".join(f"{k} {v}" for k, v in self.by_reason().items()))
            lines += [f"  {s['source']}: {s['reason']} ({s['detail']})" for s in self.skipped[:limit]]
            if len(self.skipped) > limit:
                lines.append(f"  ... {len(self.skipped) - limit} more in the dataset's metadata (datasets info)")
        else:
            lines.append("skipped: none")
        return "\n".join(lines)


def max_input_bytes(max_pixels: int) -> int:
    """The most bytes an input file may hold: an uncompressed 8-bit RGBA image at the pixel limit, plus 1 MiB of
    headers. Larger inputs (a zip member that would inflate to gigabytes) are skipped by their declared size,
    before a byte of them is read."""
    return 4 * max_pixels + (1 << 20)


# Worker state for the process pool: the source and options, set once per worker.
_WORKER: dict[str, Any] = {}


def _init_worker(source: Source, options: ImageOptions, dedup: bool, labels: LabelOptions | None = None) -> None:
    _WORKER.update(source=source, options=options, dedup=dedup, labels=labels)


Result = tuple[int, CleanImage | None, str | None, str | None, str | None, dict[int, bytes] | None]


def _process(index: int) -> Result:
    """(index, clean image or None, reason, detail, content hash, label map PNGs per size or None) for one input;
    never raises on bad data."""
    source: Source = _WORKER["source"]
    limit = max_input_bytes(_WORKER["options"].max_pixels)
    try:
        declared = source.declared_size(index)
        if declared is not None and declared > limit:
            raise SkipImage("too-large", f"{declared} bytes declared, over the {limit} an image within --max-pixels "
                                         f"{_WORKER['options'].max_pixels} can need; not read")
        data = source.read(index)
    except SkipImage as exc:
        return index, None, exc.reason, exc.detail, None, None
    except Exception as exc:  # unreadable file, bad zip member, permission...
        return index, None, "unreadable", f"{type(exc).__name__}: {exc}", None, None
    digest = hashlib.sha256(data).hexdigest() if _WORKER["dedup"] else None
    masks = None
    try:
        clean = sanitize(data, _WORKER["options"])
        if _WORKER.get("labels") is not None:
            masks = _label_maps(source.names()[index], data)
    except SkipImage as exc:
        return index, None, exc.reason, exc.detail, digest, None
    except MemoryError:
        return index, None, "too-large", "out of memory while decoding", digest, None
    return index, clean, None, None, digest, masks


def _label_maps(name: str, image_data: bytes) -> dict[int, bytes]:
    """The input's label map at every size, or SkipImage ('label-missing', 'label-size-mismatch', ...)."""
    labels: LabelOptions = _WORKER["labels"]
    path = labels.path_for(name)
    limit = max_input_bytes(_WORKER["options"].max_pixels)
    try:
        if path.stat().st_size > limit:
            raise SkipImage("too-large", f"label map {path}: {path.stat().st_size} bytes, over the {limit} an "
                                         "image within --max-pixels can need; not read")
        label_data = path.read_bytes()
    except FileNotFoundError:
        raise SkipImage("label-missing", f"no label map {path}") from None
    except OSError as exc:
        raise SkipImage("label-unreadable", f"{path}: {type(exc).__name__}: {exc}") from None
    return sanitize_label_map(label_data, displayed_size(image_data), _WORKER["options"], len(labels.names))


def _iter_results(source: Source, options: ImageOptions, dedup: bool, workers: int, n: int,
                  labels: LabelOptions | None = None) -> Iterator[Result]:
    if workers <= 1:
        _init_worker(source, options, dedup, labels)
        for i in range(n):
            yield _process(i)
        return
    ctx = get_context("spawn" if sys.platform == "darwin" else "fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(source, options, dedup, labels)) as pool:
        yield from pool.imap(_process, range(n), chunksize=8)


def _check_labels_place(src: Path, labels: LabelOptions) -> None:
    """The labels folder may sit inside SRC (it is left out of the images), not be SRC or hold it."""
    root, src = labels.root.resolve(), src.resolve()
    if root == src or root in src.parents:
        raise DatasetError(f"--labels {labels.root}: must not be SRC or a folder above it")


def prepare_dataset(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: ImageOptions,
    *,
    test: float | int = 0,
    seed: int = 0,
    dedup: bool = False,
    workers: int = 1,
    source_size: int | None = None,
    name: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    labels: LabelOptions | None = None,
) -> PrepareReport:
    """Build a prepared dataset from ``src``; see the module docstring. Returns the report also stored.

    ``labels``: per-pixel label maps beside the images (``data.labels``), stored as the dataset's masks; an
    image whose label map is missing or bad is skipped with a reason."""
    from tqdm import tqdm

    from stylemapgan import __version__

    log = log or (lambda msg: print(msg, file=sys.stderr))
    if max(options.sizes) > MAX_SIZE:
        raise ValueError(f"sizes: at most {MAX_SIZE} (the largest model resolution), got {max(options.sizes)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers: must be an integer in [1, {MAX_WORKERS}], got {workers!r}")
    out = Path(out)
    exclude = (out, out.with_name(out.name + ".partial"))
    if labels is not None:
        _check_labels_place(Path(src), labels)
        exclude += (labels.root,)  # label maps inside SRC are not images
    source = open_source(src, source_size, exclude=exclude)
    if labels is not None and not isinstance(source, FolderSource | ZipSource):
        raise DatasetError(f"--labels: needs a folder or zip of images (label maps are matched by file name), "
                           f"got {source.kind}")
    names = source.names()
    skipped: list[dict[str, str]] = source.ignored()
    conversions: Counter[str] = Counter()
    seen_hash: dict[str, str] = {}
    with DatasetWriter(out, overwrite=overwrite, log=log) as writer:
        bar = tqdm(
            total=len(names), unit="img", desc="prepare", disable=not progress, dynamic_ncols=True, file=sys.stderr
        )
        results = _iter_results(source, options, dedup, workers, len(names), labels)
        for index, clean, reason, detail, digest, masks in results:
            name_i = names[index]
            if clean is not None and dedup and digest is not None:
                if digest in seen_hash:
                    clean, reason, detail = None, "duplicate", f"same bytes as {seen_hash[digest]}"
                else:
                    seen_hash[digest] = name_i
            if clean is None:
                skipped.append({"source": name_i, "reason": str(reason), "detail": str(detail)})
            else:
                conversions.update(clean.conversions)
                writer.add(clean.pngs, masks=masks,
                           record={"source": name_i, "original_size": list(clean.original_size)})
            bar.update(1)
            if skipped:
                bar.set_postfix(kept=writer.count, skipped=len(skipped), refresh=False)
        bar.close()
        if writer.count == 0:
            raise DatasetError(
                f"{src}: no usable images among {len(names)} inputs"
                + (f" (first problem: {skipped[0]['source']}: {skipped[0]['detail']})" if skipped else "")
            )
        test_ids = choose_test_ids(writer.count, test, seed)
        test_set = set(test_ids)
        splits = {"train": [i for i in range(writer.count) if i not in test_set]}
        if test_ids:
            splits["test"] = test_ids
        report = PrepareReport(
            out=out,
            kept=writer.count,
            splits={k: len(v) for k, v in splits.items()},
            skipped=skipped,
            conversions=dict(conversions),
            label_names=labels.names if labels is not None else None,
        )
        meta = {
            "name": name or Path(src).name,
            "description": f"images prepared from {Path(src).name} by stylemapgan prepare",
            "source": {**source.describe(), "inputs": len(names)},
            "licence": "as the source images (unknown to this tool)",
            "attribution": None,
            "resize_filter": options.resize_filter,
            "square": options.square,
            "background": list(options.background),
            "split_seed": seed,
            "labels": None,
            "masks": labels.describe() if labels is not None else None,
            "records": True,
            "skipped": {"total": len(skipped), "by_reason": report.by_reason(), "items": skipped},
            "conversions": dict(sorted(conversions.items())),
            "created_by": f"stylemapgan {__version__}",
            "build": {
                "upscale_small": options.upscale_small,
                "max_pixels": options.max_pixels,
                "dedup": dedup,
                "test": test,
            },
        }
        writer.finish(meta, splits)
    return report
