"""Same-process A/B of the issue-9 speedups, robust to a shared machine: A and B alternate within each repeat,
and both wall time and process CPU time are reported (CPU time is what a busy machine distorts least; with one
thread it is the cleanest relative measure).

A/B pairs per configuration, batch 1, fp32:
- generator decode and encoder: layers `impl="fast"` vs `impl="ref"` (same weights);
- cached w_plus local edit: fast path (cached modulations) vs full recomputation (`fast=False`);
- with `--onnx`: encoder, decoder and the cached edit also through onnxruntime (`Editor(backend="onnx")`,
  exported once per configuration, which takes ~40 s at 64 px).

Usage: python benchmarks/bench_ab.py [--configs paper-256,cpu-64,cpu-64-narrow] [--threads 1] [--repeats 5]
       [--paper-repeats 3] [--tune-alloc] [--onnx] [--json F]
`--tune-alloc` applies `stylemapgan.perf.tune_allocator()` (glibc keeps freed memory; both variants benefit).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import torch

from stylemapgan.editing import Editor, RectangleMask, rectangle_mask
from stylemapgan.networks import set_impl
from stylemapgan.perf.bench import load_config
from stylemapgan.perf.tuning import tune_allocator


def ab(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU milliseconds per variant, variants interleaved in every repeat (one warm-up each)."""
    for fn in fns.values():
        fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    return {k: {"wall_ms": statistics.median(wall[k]) * 1e3, "cpu_ms": statistics.median(cpu[k]) * 1e3} for k in fns}


@torch.no_grad()
def bench(name: str, repeats: int, onnx: bool = False) -> dict[str, object]:
    _, g, e, _ = load_config(name, torch.device("cpu"))
    g.eval().requires_grad_(False)
    e.eval().requires_grad_(False)
    g_ref, e_ref = set_impl(copy.deepcopy(g), "ref"), set_impl(copy.deepcopy(e), "ref")
    config = g.config
    gen = torch.Generator().manual_seed(0)
    stylemap = torch.randn(1, *config.stylemap_shape, generator=gen)
    image = torch.rand(1, 3, config.size, config.size, generator=gen) * 2 - 1
    nets = ab({"decode_fast": lambda: g.decode(stylemap), "decode_ref": lambda: g_ref.decode(stylemap),
               "encode_fast": lambda: e(image), "encode_ref": lambda: e_ref(image)}, repeats)

    editor = Editor(g, e, batch_size=1)
    size = config.size
    images = torch.rand(2, 3, size, size, generator=gen) * 2 - 1
    src, ref = editor.encode(images[0]), editor.encode(images[1])
    editor.modulations(src), editor.modulations(ref)
    mask = rectangle_mask(RectangleMask(size // 4, size // 4, 3 * size // 4, 3 * size // 4), size)
    edits = ab({
        "edit_fast": lambda: editor.local_edit(src, [ref], [mask], mode="w_plus"),
        "edit_ref": lambda: editor.local_edit(src, [ref], [mask], mode="w_plus", fast=False),
    }, repeats)
    row: dict[str, object] = {"config": name, **nets, **edits}
    if onnx:
        with tempfile.TemporaryDirectory() as folder:
            ort = Editor(g, e, batch_size=1, backend="onnx", onnx_dir=folder)
            o_src, o_ref = ort.encode(images[0]), ort.encode(images[1])
            ort.modulations(o_src), ort.modulations(o_ref)
            row.update(ab({
                "decode_onnx": lambda: ort.runner.decode(stylemap), "decode_fast": lambda: g.decode(stylemap),
                "encode_onnx": lambda: ort.runner.encode(image), "encode_fast": lambda: e(image),
                "edit_onnx": lambda: ort.local_edit(o_src, [o_ref], [mask], mode="w_plus"),
                "edit_fast": lambda: editor.local_edit(src, [ref], [mask], mode="w_plus"),
            }, repeats))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="paper-256,cpu-64,cpu-64-narrow")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--paper-repeats", type=int, default=3)
    parser.add_argument("--tune-alloc", action="store_true")
    parser.add_argument("--onnx", action="store_true", help="also onnxruntime (needs the `onnx` extra)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tuned = tune_allocator() if args.tune_alloc else False
    load = os.getloadavg()
    print(f"torch {torch.__version__}, threads {args.threads}, allocator tuned {tuned}, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    rows = []
    for name in args.configs.split(","):
        row = bench(name, args.paper_repeats if name.startswith("paper") else args.repeats, args.onnx)
        rows.append(row)
        parts = []
        for what in ("decode", "encode", "edit"):
            f, r = row[f"{what}_fast"], row[f"{what}_ref"]
            parts.append(f"{what} fast {f['wall_ms']:.1f} / ref {r['wall_ms']:.1f} ms wall, "
                         f"{f['cpu_ms']:.1f} / {r['cpu_ms']:.1f} ms CPU (x{r['cpu_ms'] / f['cpu_ms']:.2f})")
            if f"{what}_onnx" in row:
                o = row[f"{what}_onnx"]
                parts[-1] += f", onnx {o['wall_ms']:.1f} ms wall / {o['cpu_ms']:.1f} ms CPU"
        print(f"{name}: " + "; ".join(parts) + f"  [load {os.getloadavg()[0]:.2f}]", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "allocator_tuned": tuned, "load_before": load,
                       "load_after": os.getloadavg(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
