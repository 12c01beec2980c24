"""A cached local edit with and without `stylemapgan.perf.tune_allocator()`, each in a fresh process.

The tuning is process-wide (glibc malloc keeps large freed blocks instead of unmapping them), so each variant
runs in its own new interpreter: tuned and untuned processes alternate, --pairs times. In each, the editor is
built (random weights for a preset, or a checkpoint / 'shipped'), the source's and reference's modulations are
cached, and the median of --repeats cached w_plus edits is printed. The CLI's editing commands and `serve`
apply the tuning (as `stylemapgan bench` does); library users call `tune_allocator()` themselves.

Usage: python benchmarks/bench_allocator.py [--configs shipped,paper-256] [--pairs 3] [--repeats 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys


def child(config: str, tuned: bool, repeats: int, threads: int) -> None:
    import time

    import torch

    from stylemapgan.perf import tune_allocator

    applied = tune_allocator() if tuned else False
    torch.set_num_threads(threads)
    from stylemapgan.editing import Editor, RectangleMask, rectangle_mask
    from stylemapgan.perf.bench import load_config

    _, g, e, _ = load_config(config, torch.device("cpu"))
    editor = Editor(g, e, batch_size=1, dtype="fp32")
    size = editor.size
    gen = torch.Generator().manual_seed(0)
    src, ref = (editor.add_stylemap(torch.randn(1, *editor.config.stylemap_shape, generator=gen)) for _ in range(2))
    editor.modulations(src), editor.modulations(ref)
    mask = rectangle_mask(RectangleMask(size // 4, size // 4, 3 * size // 4, 3 * size // 4), size)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        editor.local_edit(src, [ref], [mask], mode="w_plus")
        times.append(time.perf_counter() - t0)
    print(json.dumps({"tuned": applied, "median_ms": statistics.median(times[1:]) * 1e3}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="shipped,paper-256")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "TUNED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1] == "1", args.repeats, args.threads)
        return
    for config in args.configs.split(","):
        results: dict[bool, list[float]] = {True: [], False: []}
        for i in range(args.pairs):
            for tuned in (True, False) if i % 2 == 0 else (False, True):
                proc = subprocess.run([sys.executable, __file__, "--child", config, "1" if tuned else "0",
                                       "--repeats", str(args.repeats), "--threads", str(args.threads)],
                                      capture_output=True, text=True, check=True)
                results[tuned].append(json.loads(proc.stdout.strip().splitlines()[-1])["median_ms"])
        on, off = statistics.median(results[True]), statistics.median(results[False])
        print(f"{config}: cached w_plus edit {on:.1f} ms tuned, {off:.1f} ms untuned ({off / on:.2f}x), "
              f"{args.pairs} fresh processes each, {args.threads} threads [load {os.getloadavg()[0]:.2f}]",
              flush=True)


if __name__ == "__main__":
    main()
