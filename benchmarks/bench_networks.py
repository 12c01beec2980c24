"""Forward-pass latency of generator (stylemap -> image) and encoder at batch 1, per preset, fp32.

Usage: python benchmarks/bench_networks.py [--presets paper-256,cpu-64] [--repeats 5] [--threads N] [--json F]
       [--impl fast|ref] [--tune-alloc]
(`stylemapgan bench` is the complete benchmark; `benchmarks/bench_ab.py` compares fast and ref in one process;
`benchmarks/bench_official.py` compares ours with the official math, interleaved in one process.)
Runs under torch.inference_mode, networks built inside it (their weights are then inference tensors, which the
layers' weight cache must not and does not rely on).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from stylemapgan.config import get_preset
from stylemapgan.networks import Encoder, Generator
from stylemapgan.perf.tuning import tune_allocator


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.inference_mode()
def bench(preset: str, repeats: int, batch: int, impl: str = "fast") -> dict[str, float]:
    config = get_preset(preset).model
    torch.manual_seed(0)
    g, e = Generator(config, impl=impl).eval(), Encoder(config, impl=impl).eval()
    stylemap = torch.randn(batch, *config.stylemap_shape)
    image = torch.randn(batch, 3, config.size, config.size)
    return {
        "preset": preset,
        "batch": batch,
        "generator_s": median_seconds(lambda: g.decode(stylemap), repeats),
        "encoder_s": median_seconds(lambda: e(image), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="paper-256,cpu-64,cpu-32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--impl", default="fast", choices=["fast", "ref"])
    parser.add_argument("--tune-alloc", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tune_alloc:
        tune_allocator()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, fp32, batch {args.batch}, impl {args.impl}")
    rows = []
    for preset in args.presets.split(","):
        row = bench(preset, args.repeats if preset.startswith("paper") else args.repeats * 10, args.batch, args.impl)
        rows.append(row)
        g_ms, e_ms = row["generator_s"] * 1000, row["encoder_s"] * 1000
        print(f"{preset:<18} generator {g_ms:10.1f} ms   encoder {e_ms:10.1f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
