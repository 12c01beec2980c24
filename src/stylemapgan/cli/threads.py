"""How many CPU threads PyTorch uses, chosen once at CLI start for every command that computes.

Why: PyTorch's parallel regions end at a barrier, so a region split over N threads runs at the pace of the slowest
one. When another process holds one of the cores, a 2-thread region waits on a thread the scheduler keeps
parking: on a busy 2-core machine `cpu-32` training ran at 0.07 it/s with 2 threads against 0.7 it/s with 1, and
`project --method hybrid` printed nothing for more than 10 minutes. So:

1. `--threads N` wins;
2. else an OMP_NUM_THREADS in the environment (PyTorch already read it) is left alone;
3. else, if the 1-minute load average leaves fewer free cores than PyTorch's thread count, use that many
   (free cores = usable cores - load, rounded to the nearest integer, at least 1) and say so in one line.

The load average counts this very process only once it runs, so at start it measures the others. Calling
`stylemapgan.cli.main(argv)` from Python (tests, notebooks) leaves the caller's threads alone unless `--threads`
is given: rule 3 is for the `stylemapgan` process itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ThreadChoice:
    threads: int | None  # what to set; None: leave PyTorch's setting
    note: str | None  # the one line to print when the tool chose for the user


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every OS
        return None


def choose_threads(
    requested: int | None, env: Mapping[str, str], load: float | None, cores: int, current: int
) -> ThreadChoice:
    """The policy of the module docstring, as a pure function of its inputs."""
    if requested is not None:
        return ThreadChoice(requested, None)
    if env.get("OMP_NUM_THREADS", "").strip() or load is None:
        return ThreadChoice(None, None)
    free = max(1, int(cores - load + 0.5))
    if free >= current:
        return ThreadChoice(None, None)
    note = (f"stylemapgan: other processes keep the CPU busy (1-minute load {load:.1f} on {cores} cores), so "
            f"PyTorch uses {free} thread{'s' if free > 1 else ''} instead of {current}: more would stall; "
            "--threads N or OMP_NUM_THREADS=N to choose")
    return ThreadChoice(free, note)
