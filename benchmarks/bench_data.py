"""Data pipeline speed: building cartoon faces, and reading a prepared dataset through a DataLoader.

Usage: python benchmarks/bench_data.py [--count 300] [--size 64] [--workers 2] [--epochs 5] [--json F]
       python benchmarks/bench_data.py --read PATH [--size 64] [--epochs 1]   (read an existing dataset only)

1. build: `cartoon-faces` with --count train faces at --size (images, part masks, labels, records), timed end
   to end (npm cache assumed warm: the first run installs facesjs once), extrapolated linearly to 30,000 + 1,000.
2. read: images/s through torch DataLoader (batch 64, 2 workers, shuffled) over that dataset, images only and
   with labels + masks, after one warm-up epoch; also the single-process rate for reference.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from stylemapgan.data import PreparedDataset, build_dataset

FULL = 30_000 + 1_000


def bench_build(root: Path, count: int, size: int, workers: int) -> tuple[Path, dict[str, float]]:
    build_dataset("cartoon-faces", root / "warm", count=2, test_count=0, sizes=(size,), progress=False)
    t0 = time.perf_counter()
    path = build_dataset(
        "cartoon-faces", root / "faces", count=count, test_count=0, sizes=(size,), workers=workers, progress=False
    )
    seconds = time.perf_counter() - t0
    return path, {
        "faces": count,
        "size": size,
        "workers": workers,
        "seconds": round(seconds, 2),
        "faces_per_s": round(count / seconds, 1),
        "extrapolated_31000_min": round(FULL * seconds / count / 60, 1),
        "bytes_per_face": round(sum(f.stat().st_size for f in path.iterdir()) / count),
    }


def bench_read(path: Path, size: int, workers: int, epochs: int, extras: bool) -> float:
    ds = PreparedDataset(path, size, "train", hflip=True, labels=extras, masks=extras)
    loader = DataLoader(
        ds, batch_size=64, shuffle=True, num_workers=workers, persistent_workers=workers > 0, drop_last=False
    )
    for _ in loader:  # warm-up: worker start, page cache
        pass
    n = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            n += (batch["image"] if extras else batch).shape[0]
    return n / (time.perf_counter() - t0)


def measure_reads(path: Path, size: int, workers: int, epochs: int) -> dict[str, float]:
    has_extras = bool(PreparedDataset(path, size).meta.get("masks"))
    read = {}
    for w in (0, workers):
        for extras in (False, True) if has_extras else (False,):
            key = f"workers{w}_{'image+labels+mask' if extras else 'image'}"
            read[key] = round(bench_read(path, size, w, epochs, extras), 1)
            print(f"read {key}: {read[key]} images/s")
    return read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="build processes and DataLoader workers")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--read", default=None, metavar="PATH", help="only measure reading this prepared dataset")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.read:
        read = measure_reads(Path(args.read), args.size, args.workers, args.epochs)
        print(json.dumps({"dataset": args.read, "read_images_per_s": read}))
        return
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        path, build = bench_build(Path(tmp), args.count, args.size, args.workers)
        print(
            f"build cartoon-faces {build['faces']} x {args.size}px: {build['seconds']} s "
            f"({build['faces_per_s']} faces/s, {args.workers} workers) -> 31,000 faces in about "
            f"{build['extrapolated_31000_min']} min; {build['bytes_per_face']} bytes/face on disk"
        )
        read = measure_reads(path, args.size, args.workers, args.epochs)
    result = {"build": build, "read_images_per_s": read, "threads": torch.get_num_threads()}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
