"""On-disk layout of prepared datasets, and of the official StyleMapGAN / rosinality LMDB.

A prepared dataset is a directory holding one LMDB environment (``data.mdb``) plus a human-readable
``CARD.md``. LMDB because it reads fast from many DataLoader workers and DDP ranks at once (memory-mapped,
readonly, no lock file needed). Keys, all utf-8:

- ``__meta__``              JSON metadata record (the dataset card; see ``card.py``). Written last.
- ``img/{size}/{id:08d}``   PNG bytes, RGB, ``size`` x ``size``.
- ``mask/{size}/{id:08d}``  PNG bytes, mode L: a part-index label map (0 = background); only with masks.
- ``rec/{id:08d}``          JSON: per-image record (source name, raw attributes); optional.
- ``labels``                ``numpy.save`` bytes, float32 [N, L]: numeric labels, columns named in the metadata.
- ``split/{name}``          ``numpy.save`` bytes, uint32: the image ids of that split (e.g. train, test).

Atomicity: everything is written into ``OUT.partial``; only a build that reached its end writes
``__meta__`` (with ``"complete": true``) and renames the directory to ``OUT``. A killed build leaves only
``OUT.partial``, which no reader accepts; the next run deletes it and rebuilds from scratch.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_NAME = "stylemapgan-prepared"
FORMAT_VERSION = 1
META_KEY = b"__meta__"
PARTIAL_SUFFIX = ".partial"
# Address space reserved for a writer; LMDB files grow only as data is written (sparse on Linux).
WRITE_MAP_SIZE = 1 << 40


class DatasetError(Exception):
    """A dataset path that cannot be read or written as asked (message names the path and the problem)."""


def image_key(size: int, image_id: int) -> bytes:
    return f"img/{size}/{image_id:08d}".encode()


def mask_key(size: int, image_id: int) -> bytes:
    return f"mask/{size}/{image_id:08d}".encode()


def record_key(image_id: int) -> bytes:
    return f"rec/{image_id:08d}".encode()


def split_key(name: str) -> bytes:
    return f"split/{name}".encode()


LABELS_KEY = b"labels"


def official_key(size: int, index: int) -> bytes:
    """Key of image ``index`` at ``size`` in the official (rosinality) layout."""
    return f"{size}-{index:05d}".encode()


def array_to_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def array_from_bytes(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def open_env(path: str | os.PathLike[str]):
    """Open an LMDB directory for reading: readonly, lock-free, so any number of processes can share it."""
    import lmdb

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such dataset")
    if not (path / "data.mdb").is_file():
        raise DatasetError(f"{path}: not an LMDB dataset directory (no data.mdb)")
    try:
        return lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False, max_readers=512)
    except lmdb.Error as exc:
        raise DatasetError(f"{path}: cannot open LMDB: {exc}") from exc


# One readonly environment per (data file, process): py-lmdb refuses to open the same files twice in a process,
# and two datasets (say train and test splits) of one path must still coexist.
_SHARED_ENVS: dict[tuple[int, int], tuple[int, Any]] = {}


def shared_env(path: str | os.PathLike[str]):
    """The process's readonly environment for ``path`` (opened on first use; never closed by callers).

    An entry inherited through fork is closed in the child (LMDB handles must not cross fork) and reopened.
    A dataset replaced on disk (new inode) gets a new environment.
    """
    data_file = Path(path) / "data.mdb"
    try:
        st = data_file.stat()
    except FileNotFoundError:
        open_env(path)  # raises the right error
        raise
    key = (st.st_dev, st.st_ino)
    pid = os.getpid()
    entry = _SHARED_ENVS.get(key)
    if entry is not None:
        if entry[0] == pid:
            return entry[1]
        with contextlib.suppress(Exception):
            entry[1].close()
        del _SHARED_ENVS[key]
    env = open_env(path)
    _SHARED_ENVS[key] = (pid, env)
    return env


def detect_layout(path: str | os.PathLike[str]) -> str:
    """'prepared' (ours, complete), 'official' (rosinality/StyleMapGAN) or raise DatasetError."""
    with shared_env(path).begin() as txn:
        if txn.get(META_KEY) is not None:
            return "prepared"
        if txn.get(b"length") is not None:
            return "official"
    hint = " (an interrupted build: rerun the command to rebuild it)" if str(path).endswith(PARTIAL_SUFFIX) else ""
    raise DatasetError(f"{path}: no metadata record and no 'length' key: not a complete dataset{hint}")


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata record of a complete prepared dataset; DatasetError for anything else."""
    path = Path(path)
    if path.name.endswith(PARTIAL_SUFFIX):
        raise DatasetError(f"{path}: an unfinished build (interrupted?); rerun the command to rebuild it")
    with shared_env(path).begin() as txn:
        raw = txn.get(META_KEY)
    if raw is None:
        raise DatasetError(f"{path}: no metadata record: not a complete prepared dataset")
    try:
        meta = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: metadata record is not valid JSON: {exc}") from exc
    if meta.get("format") != FORMAT_NAME or not meta.get("complete"):
        raise DatasetError(f"{path}: metadata record is not a complete '{FORMAT_NAME}' dataset")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise DatasetError(f"{path}: format_version {meta['format_version']} is newer than this reader")
    return meta


def official_sizes(env) -> list[int]:
    """Resolutions present in an official LMDB (keys '{size}-{index}'), found by scanning keys."""
    sizes: set[int] = set()
    with env.begin() as txn:
        cursor = txn.cursor()
        for key in cursor.iternext(keys=True, values=False):
            head, sep, tail = bytes(key).partition(b"-")
            if sep and head.isdigit() and tail.isdigit():
                sizes.add(int(head))
    return sorted(sizes)


def official_length(env, path: str | os.PathLike[str] = "") -> int:
    with env.begin() as txn:
        raw = txn.get(b"length")
    if raw is None:
        raise DatasetError(f"{path}: official LMDB has no 'length' key")
    try:
        return int(bytes(raw).decode("ascii").strip())
    except ValueError as exc:
        raise DatasetError(f"{path}: official LMDB 'length' is not an integer: {bytes(raw)[:20]!r}") from exc


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + PARTIAL_SUFFIX)


class DatasetWriter:
    """Writes a prepared dataset into ``OUT.partial``; ``finish()`` seals it and renames it to ``OUT``.

    Image ids are assigned in call order from 0. Labels are collected in memory (a float row per image) and
    written as one array at the end, so a loader can fetch them in one read.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        commit_every: int = 256,
        log=None,
    ) -> None:
        import lmdb

        self.out = Path(out)
        self.partial = partial_path(self.out)
        self._log = log or (lambda msg: print(msg, file=sys.stderr))
        if self.out.exists():
            if not overwrite:
                raise DatasetError(f"{self.out}: already exists (pass --overwrite to replace it)")
            if not _is_replaceable(self.out):
                raise DatasetError(f"{self.out}: refusing to replace it: not a dataset directory written by us")
        blocking = next((p for p in self.out.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise DatasetError(f"{self.out}: cannot be created, {blocking} is a file")
        # One build per output at a time: a second one would delete the first one's OUT.partial.
        self._lock_path = self.out.with_name(self.out.name + ".lock")
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self._lock = open(self._lock_path, "w")  # noqa: SIM115 (held until finish/abort)
        except OSError as exc:
            raise DatasetError(f"{self.out}: cannot write here ({exc.strerror or exc})") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise DatasetError(f"{self.out}: another build is writing it right now") from None
        if self.partial.exists():
            self._log(f"removing {self.partial} left by an interrupted run; rebuilding from scratch")
            shutil.rmtree(self.partial)
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self.partial.mkdir()
        self._env = lmdb.open(str(self.partial), map_size=WRITE_MAP_SIZE, subdir=True, meminit=False)
        self._txn = self._env.begin(write=True)
        self._pending = 0
        self._commit_every = commit_every
        self.count = 0
        self._labels: list[Sequence[float]] = []
        self._label_width: int | None = None
        self.sizes: set[int] = set()

    def _put(self, key: bytes, value: bytes) -> None:
        self._txn.put(key, value)
        self._pending += 1

    def add(
        self,
        images: dict[int, bytes],
        *,
        masks: dict[int, bytes] | None = None,
        record: dict[str, Any] | None = None,
        labels: Sequence[float] | None = None,
    ) -> int:
        """Store one image (PNG bytes per size), optional masks, record and label row; returns its id."""
        image_id = self.count
        for size, png in images.items():
            self._put(image_key(size, image_id), png)
            self.sizes.add(int(size))
        for size, png in (masks or {}).items():
            self._put(mask_key(size, image_id), png)
        if record is not None:
            self._put(record_key(image_id), json.dumps(record, sort_keys=True).encode())
        if labels is not None:
            if self._label_width is None:
                self._label_width = len(labels)
            elif len(labels) != self._label_width:
                raise ValueError(f"image {image_id}: {len(labels)} labels, expected {self._label_width}")
            self._labels.append(labels)
        self.count += 1
        if self._pending >= self._commit_every:
            self._txn.commit()
            self._txn = self._env.begin(write=True)
            self._pending = 0
        return image_id

    def finish(self, meta: dict[str, Any], splits: dict[str, Iterable[int]]) -> Path:
        """Write splits, labels and the metadata record, then move the directory into place."""
        from stylemapgan.data.card import card_markdown

        split_counts = {}
        for name, ids in splits.items():
            arr = np.asarray(sorted(ids), dtype=np.uint32)
            if arr.size and int(arr.max()) >= self.count:
                raise ValueError(f"split {name!r} names image id {int(arr.max())} of {self.count}")
            self._put(split_key(name), array_to_bytes(arr))
            split_counts[name] = int(arr.size)
        if self._labels:
            if len(self._labels) != self.count:
                raise ValueError(f"labels for {len(self._labels)} of {self.count} images")
            self._put(LABELS_KEY, array_to_bytes(np.asarray(self._labels, dtype=np.float32)))
        meta = dict(meta)
        meta.update(
            format=FORMAT_NAME,
            format_version=FORMAT_VERSION,
            complete=True,
            count=self.count,
            sizes=sorted(self.sizes),
            splits=split_counts,
        )
        self._txn.put(META_KEY, json.dumps(meta, indent=1, sort_keys=True).encode())
        self._txn.commit()
        self._txn = None
        self._env.sync(True)
        self._env.close()
        (self.partial / "CARD.md").write_text(card_markdown(meta), encoding="utf-8")
        for name in ("lock.mdb",):  # readers open lock-free; a stale lock file only confuses tools
            (self.partial / name).unlink(missing_ok=True)
        _fsync_dir(self.partial)
        if self.out.exists():
            old = self.out.with_name(self.out.name + ".old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(self.out, old)
            os.replace(self.partial, self.out)
            shutil.rmtree(old)
        else:
            os.replace(self.partial, self.out)
        _fsync_dir(self.out.parent)
        self._release()
        return self.out

    def _release(self) -> None:
        if not self._lock.closed:
            self._lock_path.unlink(missing_ok=True)
            self._lock.close()

    def abort(self) -> None:
        """Drop the unfinished build (used on Python-level errors; a SIGKILL leaves it for the next run)."""
        if self._txn is not None:
            self._txn.abort()
            self._txn = None
        try:
            self._env.close()
        finally:
            shutil.rmtree(self.partial, ignore_errors=True)
            self._release()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self.partial.exists():
            self.abort()
        self._release()


def _is_replaceable(path: Path) -> bool:
    """Only an empty directory or one holding exactly our files may be replaced by --overwrite."""
    if not path.is_dir():
        return False
    names = {p.name for p in path.iterdir()}
    return names <= {"data.mdb", "lock.mdb", "CARD.md"}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
