"""Seconds per training iteration: SemanticStyleGAN vs StyleMapGAN, where a SemanticStyleGAN step goes, and old
code vs new code on a shared machine.

Every mode trains on in-memory random data (random label maps for SemanticStyleGAN) with its family's default
objective and no data workers, and reports wall time and this process's CPU time (user + system; with one thread
on a busy machine CPU time is the fairer figure, since wall time counts the waits for a core).

Modes:
- default: each of --presets, the mean over --iters consecutive iterations after --warmup (16 covers one lazy R1
  step and, for SemanticStyleGAN, four path-length steps: the amortised cost).
- --breakdown: SemanticStyleGAN (--presets' first) one component at a time (data, D step, R1 step, G step,
  path-length step, EMA, loss readout), the median of --repeats, each weighted by how often an iteration runs
  it; with --profile K also the top K ops of torch.profiler (CPU, record_shapes) over one amortised iteration.
- --compare NAME=SRC[:tuned],...: whole iterations of the code under each SRC folder (e.g. an older commit's
  `src` from `git archive`), each in its own process (`:tuned` applies `perf.tune_allocator()` first, as
  `stylemapgan train` does), the variants alternating --rounds times; prints each round and the median ratio of
  every variant to the first.

Usage: python benchmarks/bench_semantic_training.py [--presets semantic-cpu-64,cpu-64-small] [--batch 16]
       python benchmarks/bench_semantic_training.py --breakdown --presets semantic-cpu-64 --batch 8 --threads 1
       python benchmarks/bench_semantic_training.py --compare old=/tmp/old/src,new=src:tuned --batch 8 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch


class RandomLabelled(torch.utils.data.Dataset):
    """Random images and random blocky label maps (8x8 blocks)."""

    def __init__(self, count: int, size: int, classes: int) -> None:
        gen = torch.Generator().manual_seed(0)
        self.images = torch.rand(count, 3, size, size, generator=gen) * 2 - 1
        blocks = torch.randint(0, classes, (count, size // 8, size // 8), generator=gen)
        self.labels = blocks.repeat_interleave(8, 1).repeat_interleave(8, 2)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "mask": self.labels[index]}


def cpu_seconds() -> float:
    """User + system CPU time of this process (page faults of fresh allocations are system time)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_trainer(preset_name: str, batch: int, perceptual: str = "stlpips-vgg") -> Any:
    from stylemapgan.checkpoint.families import find_preset
    from stylemapgan.perf.bench import RandomImages
    from stylemapgan.training.distributed import DistInfo
    from stylemapgan.training.families import training_family

    _, preset = find_preset(preset_name)
    config = preset.model
    family = training_family(config)
    options = {"perceptual": perceptual} if "perceptual" in family.train_config.__dataclass_fields__ else {}
    train_config = family.train_config(batch=batch, num_workers=0, **options)
    data = (RandomLabelled(4 * batch, config.size, config.seg_dim) if family.dataset_options
            else RandomImages(4 * batch, config.size))
    return family.trainer.for_run(config, train_config, data, device="cpu", dist_info=DistInfo())


def bench(preset_name: str, batch: int, warmup: int, iters: int, perceptual: str) -> dict[str, float]:
    trainer = make_trainer(preset_name, batch, perceptual)
    for _ in range(warmup):
        trainer.train_step()
    wall, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(iters):
        trainer.train_step()
    return {"wall": (time.perf_counter() - wall) / iters, "cpu": (cpu_seconds() - cpu) / iters}


# ----- per-component breakdown of a SemanticStyleGAN iteration ------------------------------------------------
def semantic_components(trainer: Any) -> dict[str, tuple[float, Callable[[], object]]]:
    """name -> (runs per iteration, one run), in the order an iteration runs them."""
    from stylemapgan.training.trainer import ema_update, finite_losses

    cfg = trainer.cfg
    real = trainer.next_batch()
    losses = trainer.discriminator_step(*real)
    return {
        "data": (1.0, trainer.next_batch),
        "D step": (1.0, lambda: trainer.discriminator_step(*real)),
        "R1 step": (1.0 / cfg.d_reg_every, lambda: trainer.r1_step(*real)),
        "G step": (1.0, trainer.generator_step),
        "path step": (1.0 / cfg.path_every, trainer.path_length_step),
        "EMA": (1.0, lambda: ema_update(trainer.g_ema, trainer.generator, cfg.ema_decay)),
        "loss readout": (1.0, lambda: finite_losses(losses, 0, trainer.dist, trainer.device)),
    }


def breakdown(preset_name: str, batch: int, warmup: int, repeats: int, profile_rows: int) -> None:
    trainer = make_trainer(preset_name, batch)
    for _ in range(warmup):
        trainer.train_step()
    parts = semantic_components(trainer)
    wall: dict[str, list[float]] = {k: [] for k in parts}
    cpu: dict[str, list[float]] = {k: [] for k in parts}
    for _ in range(repeats):
        for name, (_, run) in parts.items():
            w, c = time.perf_counter(), cpu_seconds()
            run()
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(cpu_seconds() - c)
    total = sum(weight * statistics.median(cpu[name]) for name, (weight, _) in parts.items())
    print(f"{preset_name} batch {batch}, {torch.get_num_threads()} thread(s), median of {repeats}:")
    print(f"{'component':<14}{'wall ms':>10}{'CPU ms':>10}{'per it':>8}{'CPU ms/it':>11}{'share':>8}")
    for name, (weight, _) in parts.items():
        c = statistics.median(cpu[name])
        print(f"{name:<14}{statistics.median(wall[name]) * 1e3:>10.1f}{c * 1e3:>10.1f}{weight:>8.4f}"
              f"{weight * c * 1e3:>11.1f}{weight * c / total:>8.1%}")
    print(f"{'amortised':<42}{total * 1e3:>11.1f}")
    if profile_rows:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(trainer.cfg.d_reg_every):  # every lazy step once per period: one amortised iteration x16
                trainer.train_step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=profile_rows,
                                        max_name_column_width=40))


# ----- old code vs new code, each in its own process ----------------------------------------------------------
def child(preset_name: str, batch: int, warmup: int, iters: int, tuned: bool) -> None:
    if tuned:
        from stylemapgan.perf import tune_allocator

        tune_allocator()
    print(json.dumps(bench(preset_name, batch, warmup, iters, "stlpips-vgg")))


def compare(variants: str, preset_name: str, batch: int, warmup: int, iters: int, threads: int, rounds: int) -> None:
    parsed = []
    for item in variants.split(","):
        name, _, spec = item.partition("=")
        src, _, flag = spec.partition(":")
        if not name or not os.path.isdir(src) or flag not in ("", "tuned"):
            raise SystemExit(f"--compare: expected NAME=SRC_DIR[:tuned], got {item!r}")
        parsed.append((name, os.path.abspath(src), flag == "tuned"))
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in parsed}
    for r in range(rounds):
        for name, src, tuned in parsed:
            env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": str(threads)}
            cmd = [sys.executable, __file__, "--child", "--presets", preset_name, "--batch", str(batch),
                   "--warmup", str(warmup), "--iters", str(iters), "--threads", str(threads)]
            out = subprocess.run(cmd + (["--tuned"] if tuned else []), env=env, check=True, capture_output=True,
                                 text=True).stdout
            results[name].append(json.loads(out.strip().splitlines()[-1]))
            res = results[name][-1]
            print(f"round {r + 1} {name:<10} {res['wall']:.3f} s/it wall, {res['cpu']:.3f} s/it CPU", flush=True)
    first = parsed[0][0]
    for name, _, _ in parsed:
        for key in ("wall", "cpu"):
            ratios = [a[key] / b[key] for a, b in zip(results[first], results[name], strict=True)]
            print(f"{name:<10} {key:<4} median {statistics.median(r[key] for r in results[name]):.3f} s/it, "
                  f"speed-up vs {first}: median {statistics.median(ratios):.3f}x "
                  f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="semantic-cpu-64,cpu-64-small")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--perceptual", default="stlpips-vgg", help="StyleMapGAN's perceptual loss (official: vgg)")
    parser.add_argument("--breakdown", action="store_true", help="per-component times of a SemanticStyleGAN step")
    parser.add_argument("--repeats", type=int, default=5, help="--breakdown: runs of each component")
    parser.add_argument("--profile", type=int, default=0, metavar="K", help="--breakdown: also the top K ops")
    parser.add_argument("--compare", metavar="NAME=SRC[:tuned],...", help="whole iterations of several source trees")
    parser.add_argument("--rounds", type=int, default=3, help="--compare: alternations of the variants")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tuned", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = args.presets.split(",")[0]
    if args.child:
        child(preset, args.batch, args.warmup, args.iters, args.tuned)
    elif args.compare:
        compare(args.compare, preset, args.batch, args.warmup, args.iters, args.threads, args.rounds)
    elif args.breakdown:
        breakdown(preset, args.batch, args.warmup, args.repeats, args.profile)
    else:
        for name in args.presets.split(","):
            r = bench(name, args.batch, args.warmup, args.iters, args.perceptual)
            print(f"{name:<16} batch {args.batch}: {r['wall']:.3f} s/it wall, {r['cpu']:.3f} s/it CPU "
                  f"({args.threads} threads, mean of {args.iters} after {args.warmup} warm-up)", flush=True)


if __name__ == "__main__":
    main()
