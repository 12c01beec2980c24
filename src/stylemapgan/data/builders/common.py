"""Small pieces shared by the built-in dataset builders."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from stylemapgan.data.lmdb_format import DatasetError

MAX_SEED = 2**32 - 1


def check_seed(seed: int) -> int:
    """Seeds are 32-bit so that the node generator and numpy agree on them."""
    if not 0 <= int(seed) <= MAX_SEED:
        raise DatasetError(f"seed must be in 0..{MAX_SEED}, got {seed}")
    return int(seed)


@contextmanager
def progress_bar(total: int, desc: str, enabled: bool = True) -> Iterator:
    """A tqdm bar on stderr with counts, rate and ETA (a no-op object when disabled)."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="img", disable=not enabled, dynamic_ncols=True, file=sys.stderr)
    try:
        yield bar
    finally:
        bar.close()
