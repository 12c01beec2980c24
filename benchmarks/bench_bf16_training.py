"""Training in bf16 (`train --bf16`: autocast) against fp32 on the CPU: step time and the loss curves of a short run.

Per preset, two trainers from the same seed on the same in-memory data (random images; random blocky label maps
for SemanticStyleGAN), one fp32 and one bf16, step alternately (fp32, bf16, bf16, fp32, ...), so both see the
same machine load. Reported: median seconds per iteration of each and the median per-pair ratio, then each loss
averaged over the first and the last quarter of the run for both precisions (do the curves overlap?). The full
curves go to --json.

Usage: python benchmarks/bench_bf16_training.py [--presets cpu-64-small,semantic-cpu-64] [--batch 16]
       [--iters 100] [--threads 2] [--perceptual stlpips-alex] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_semantic_training import RandomLabelled
from stylemapgan.checkpoint.families import find_preset
from stylemapgan.perf.bench import RandomImages
from stylemapgan.runtime import cpu_features
from stylemapgan.training.distributed import DistInfo
from stylemapgan.training.families import training_family


def make_trainer(preset_name: str, batch: int, bf16: bool, perceptual: str, seed: int) -> Any:
    _, preset = find_preset(preset_name)
    config = preset.model
    family = training_family(config)
    fields = family.train_config.__dataclass_fields__
    options: dict[str, Any] = {"perceptual": perceptual} if "perceptual" in fields else {}
    if "seed" in fields:
        options["seed"] = seed
    train_config = family.train_config(batch=batch, num_workers=0, amp_bf16=bf16, **options)
    data = (RandomLabelled(8 * batch, config.size, config.seg_dim) if family.dataset_options
            else RandomImages(8 * batch, config.size))
    torch.manual_seed(seed)
    return family.trainer.for_run(config, train_config, data, device="cpu", dist_info=DistInfo())


def quarter_means(curve: list[float]) -> tuple[float, float]:
    q = max(1, len(curve) // 4)
    return statistics.fmean(curve[:q]), statistics.fmean(curve[-q:])


def bench(preset: str, batch: int, iters: int, perceptual: str, seed: int) -> dict[str, Any]:
    trainers = {"fp32": make_trainer(preset, batch, False, perceptual, seed),
                "bf16": make_trainer(preset, batch, True, perceptual, seed)}
    times: dict[str, list[float]] = {k: [] for k in trainers}
    curves: dict[str, dict[str, list[float]]] = {k: {} for k in trainers}
    for i in range(iters):
        for name in ("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32"):
            t0 = time.perf_counter()
            losses = trainers[name].train_step()
            times[name].append(time.perf_counter() - t0)
            for key, value in losses.items():
                curves[name].setdefault(key, []).append(float(value))
    timed = slice(1, None) if iters > 1 else slice(None)  # iteration 0 builds oneDNN primitives
    ratios = [a / b for a, b in zip(times["fp32"][timed], times["bf16"][timed], strict=True)]
    return {"preset": preset, "batch": batch, "iters": iters,
            "fp32_s_per_it": statistics.median(times["fp32"][timed]),
            "bf16_s_per_it": statistics.median(times["bf16"][timed]),
            "bf16_speedup": statistics.median(ratios), "curves": curves}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="cpu-64-small,semantic-cpu-64")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--perceptual", default="stlpips-alex", help="StyleMapGAN's perceptual loss")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    features = cpu_features()
    print(f"{' '.join(k for k, v in features.items() if v) or 'no listed ISA features'}; torch {torch.__version__}, "
          f"{args.threads} threads, load average {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for preset in args.presets.split(","):
        row = bench(preset, args.batch, args.iters, args.perceptual, args.seed)
        rows.append(row)
        print(f"{preset:<16} batch {args.batch}: fp32 {row['fp32_s_per_it']:.3f} s/it, bf16 "
              f"{row['bf16_s_per_it']:.3f} s/it -> bf16 {row['bf16_speedup']:.2f}x (median of pairs) "
              f"[load {os.getloadavg()[0]:.2f}]", flush=True)
        for key in row["curves"]["fp32"]:
            f_first, f_last = quarter_means(row["curves"]["fp32"][key])
            b_first, b_last = quarter_means(row["curves"]["bf16"][key])
            print(f"  {key:<14} first quarter fp32 {f_first:8.4f} bf16 {b_first:8.4f} | last quarter fp32 "
                  f"{f_last:8.4f} bf16 {b_last:8.4f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu_features": features, "threads": args.threads, "rows": rows},
                                              indent=2))


if __name__ == "__main__":
    main()
