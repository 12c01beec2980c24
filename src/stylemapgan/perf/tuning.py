"""Process-wide runtime tuning for CPU inference.

glibc serves every allocation above a (dynamic, at most 32 MB) threshold with a fresh mmap and unmaps it on
free, so each large activation is page-faulted in again on every forward. In a virtual machine a fault is
expensive: measured on the 2-core project VM, forwards spend 10-15% of their time there (paper generator at
batch 1: 2.37 s -> 2.09 s CPU; cpu-64: 33 -> 29.5 ms; the blend of cached modulations 2x faster). Keeping
freed memory in the heap (no mmap for big blocks, a high trim threshold) lets the next forward reuse it.
Opt-in because it is process-wide: a long-running editor or benchmark calls it once at start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4

_TUNED = False


def tune_allocator(trim_threshold: int = 1 << 30) -> bool:
    """Make glibc malloc keep large freed blocks for reuse; True if applied (Linux/glibc only), idempotent."""
    global _TUNED
    if _TUNED:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_MAX, 0) == 1
    ok = ok and mallopt(M_TRIM_THRESHOLD, min(int(trim_threshold), 2**31 - 1)) == 1
    ok = ok and mallopt(M_TOP_PAD, 64 << 20) == 1
    _TUNED = ok
    return ok
