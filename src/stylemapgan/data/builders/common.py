"""Small pieces shared by the built-in dataset builders."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from stylemapgan.data.images import RESIZE_FILTERS
from stylemapgan.data.lmdb_format import DatasetError

MAX_SEED = 2**32 - 1


def check_seed(seed: int) -> int:
    """Seeds are 32-bit so that the node generator and numpy agree on them."""
    if not 0 <= int(seed) <= MAX_SEED:
        raise DatasetError(f"seed must be in 0..{MAX_SEED}, got {seed}")
    return int(seed)


def default_test_count(count: int | None, full: int) -> int:
    """Test images when none are asked for: the builder's full test split, or, given a train count, a tenth of it
    (at least 1, at most the full split), so that a small build stays small and keeps a held-out split."""
    if count is None:
        return full
    return min(full, max(1, int(count) // 10))


def check_sizes(name: str, sizes: Iterable[int], low: int, high: int, why: str = "") -> tuple[int, ...]:
    """The requested output sizes, sorted and unique, each within what the builder can make."""
    given = [int(s) for s in sizes]
    out = tuple(sorted(set(given)))
    if not out or any(not low <= s <= high for s in out):
        raise DatasetError(f"{name} sizes must be {low}..{high}{f' ({why})' if why else ''}, got {given}")
    return out


def check_resize_filter(resize_filter: str) -> str:
    if resize_filter not in RESIZE_FILTERS:
        raise DatasetError(f"resize filter must be one of {sorted(RESIZE_FILTERS)}, got {resize_filter!r}")
    return resize_filter


@contextmanager
def progress_bar(total: int, desc: str, enabled: bool = True) -> Iterator:
    """A tqdm bar on stderr with counts, rate and ETA (a no-op object when disabled)."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="img", disable=not enabled, dynamic_ncols=True, file=sys.stderr)
    try:
        yield bar
    finally:
        bar.close()
