"""Latency of the editing engine at batch 1, fp32: encode, decode, and a cached local edit (w and w_plus).

"Cached" means source and reference were encoded (and their style tensors computed) before timing, as in an
interactive editor where only the mask or the strength changes: a w edit then costs a blend of two
stylemaps + resizer + synthesis, a w_plus edit a blend of every style tensor + synthesis.

Usage: python benchmarks/bench_editing.py [--presets paper-256,cpu-64,cpu-32] [--repeats 3] [--threads N]
       [--device cpu] [--json F]
Random weights (latency does not depend on them). The paper model takes ~10 s per decode on the 2-core
machine, so it gets `--paper-repeats` (default 2) timed runs after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch

from stylemapgan.config import get_preset
from stylemapgan.editing import Editor, RectangleMask, rectangle_mask
from stylemapgan.networks import Encoder, Generator
from stylemapgan.perf.bench import synchronize


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int, device: torch.device) -> float:
    def timed() -> float:
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        return time.perf_counter() - t0

    for _ in range(warmup):
        timed()
    return statistics.median(timed() for _ in range(repeats))


@torch.no_grad()
def bench(preset: str, repeats: int, warmup: int, device: torch.device) -> dict[str, float | str]:
    config = get_preset(preset).model
    torch.manual_seed(0)
    editor = Editor(Generator(config), Encoder(config), device=device, batch_size=1)
    size = config.size
    source, reference = torch.rand(2, 1, 3, size, size, device=device) * 2 - 1
    mask = rectangle_mask(RectangleMask(size // 4, size // 4, 3 * size // 4, 3 * size // 4), size)  # centre

    def encode() -> None:
        editor.clear_cache()
        editor.encode(source)

    encode_s = median_seconds(encode, repeats, warmup, device)  # a cache miss: hash + encoder
    src, ref = editor.encode(source), editor.encode(reference)
    editor.styles(src), editor.styles(ref)  # cached style tensors, as in an interactive session
    stylemap = editor.stylemap(src)
    return {
        "preset": preset,
        "encode_s": encode_s,
        "decode_s": median_seconds(lambda: editor.generator.decode(stylemap), repeats, warmup, device),
        "edit_w_s": median_seconds(lambda: editor.local_edit(src, [ref], [mask], mode="w"), repeats, warmup, device),
        "edit_w_plus_s": median_seconds(
            lambda: editor.local_edit(src, [ref], [mask], mode="w_plus"), repeats, warmup, device
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="paper-256,cpu-64,cpu-32")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs for the CPU presets")
    parser.add_argument("--paper-repeats", type=int, default=2, help="timed runs for paper-* presets")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = os.getloadavg()
    print(f"torch {torch.__version__}, {device}, threads {torch.get_num_threads()}, fp32, batch 1, "
          f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    rows = []
    for preset in args.presets.split(","):
        repeats = args.paper_repeats if preset.startswith("paper") else args.repeats
        row = bench(preset, repeats, 1, device)
        rows.append(row)
        print(f"{preset:<12} encode {row['encode_s'] * 1000:9.1f} ms  decode {row['decode_s'] * 1000:9.1f} ms  "
              f"edit w {row['edit_w_s'] * 1000:9.1f} ms  edit w_plus {row['edit_w_plus_s'] * 1000:9.1f} ms",
              flush=True)
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "load_before": load_before, "load_after": load_after,
                       "threads": torch.get_num_threads(), "device": str(device)}, f, indent=2)


if __name__ == "__main__":
    main()
