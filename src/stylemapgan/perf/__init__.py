"""Performance tooling: benchmarks (`stylemapgan bench`), runtime tuning, FLOP and memory accounting."""

from stylemapgan.perf.tuning import tune_allocator

__all__ = ["tune_allocator"]
