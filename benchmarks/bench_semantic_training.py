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
  it (with --ab, the previous and current formulations side by side); with --profile K also the top K ops of
  torch.profiler (CPU, record_shapes) over one amortised iteration.
- --ab: the previous formulations of the training speed-ups (kept here, patched in) vs the current ones, two
  trainers in one process, --iters iterations each, alternating --rounds times, at each of --thread-counts (the
  allocator is the same for both: use --compare for that).
- --compare NAME=SRC[:tuned],...: whole iterations of the code under each SRC folder (e.g. an older commit's
  `src` from `git archive`), each in its own process (`:tuned` applies `perf.tune_allocator()` first, as
  `stylemapgan train` does), the variants alternating --rounds times; prints each round and the median ratio of
  every variant to the first.

Usage: python benchmarks/bench_semantic_training.py [--presets semantic-cpu-64,cpu-64-small] [--batch 16]
       python benchmarks/bench_semantic_training.py --breakdown --presets semantic-cpu-64 --batch 8 --threads 1
       python benchmarks/bench_semantic_training.py --ab --batch 8 --thread-counts 1,2 --rounds 3
       python benchmarks/bench_semantic_training.py --compare old=/tmp/old/src,new=src:tuned --batch 8 --threads 1
"""

from __future__ import annotations

import argparse
import itertools
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


def breakdown(preset_name: str, batch: int, warmup: int, repeats: int, profile_rows: int, ab: bool = False) -> None:
    """The component table (CPU ms); with `ab`, of the previous and the current formulations side by side, each
    component run alternately by the two trainers (one process, so the machine's load hits both alike)."""
    import contextlib

    variants = {"current": (make_trainer(preset_name, batch), contextlib.nullcontext)}
    if ab:
        variants = {"previous": (previous_trainer(preset_name, batch), previous_formulations), **variants}
    parts: dict[str, dict[str, tuple[float, Callable[[], object]]]] = {}
    for name, (trainer, context) in variants.items():
        with context():
            for _ in range(warmup):
                trainer.train_step()
            parts[name] = semantic_components(trainer)
    names = list(parts["current"])
    cpu: dict[tuple[str, str], list[float]] = {(v, k): [] for v in variants for k in names}
    for _ in range(repeats):
        for part in names:
            for variant, (_, context) in variants.items():
                with context():
                    c = cpu_seconds()
                    parts[variant][part][1]()
                    cpu[variant, part].append(cpu_seconds() - c)
    print(f"{preset_name} batch {batch}, {torch.get_num_threads()} thread(s), CPU ms, median of {repeats}:")
    header = "".join(f"{v + ' ms':>16}{'ms/it':>9}" for v in variants)
    print(f"{'component':<14}{'per it':>8}{header}{'share':>8}" + (f"{'speed-up':>10}" if ab else ""))
    totals = {v: sum(parts["current"][k][0] * statistics.median(cpu[v, k]) for k in names) for v in variants}
    for part in names:
        weight = parts["current"][part][0]
        med = {v: statistics.median(cpu[v, part]) for v in variants}
        cells = "".join(f"{med[v] * 1e3:>16.1f}{weight * med[v] * 1e3:>9.1f}" for v in variants)
        ratio = f"{med['previous'] / max(med['current'], 1e-9):>9.2f}x" if ab else ""
        print(f"{part:<14}{weight:>8.4f}{cells}{weight * med['current'] / totals['current']:>8.1%}{ratio}")
    cells = "".join(f"{'':>16}{totals[v] * 1e3:>9.1f}" for v in variants)
    ratio = f"{'':>8}{totals['previous'] / totals['current']:>9.2f}x" if ab else ""
    print(f"{'amortised':<22}{cells}{ratio}")
    if profile_rows:
        from torch.profiler import ProfilerActivity, profile

        trainer = variants["current"][0]
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(trainer.cfg.d_reg_every):  # every lazy step once per period: one amortised iteration x16
                trainer.train_step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=profile_rows,
                                        max_name_column_width=40))


# ----- the previous formulations vs the current ones, in one process -------------------------------------------
def _previous_weighted_sum(head: Any, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    n, k, c, p = x.shape
    scaled = (x * weights.unsqueeze(2)).reshape(n, k * c, p)
    weight = head.effective_weight().transpose(0, 1).reshape(-1, k * c)
    return torch.matmul(weight, scaled) + torch.matmul(head.bias.t(), weights)


@torch.no_grad()
def _previous_ema_update(ema: torch.nn.Module, live: torch.nn.Module, decay: float) -> None:
    for p_ema, p in zip(ema.parameters(), live.parameters(), strict=True):
        p_ema.mul_(decay).add_(p.detach(), alpha=1 - decay)
    for b_ema, b in zip(ema.buffers(), live.buffers(), strict=True):
        b_ema.copy_(b)


def previous_formulations() -> Any:
    """A context in which SemanticStyleGAN training runs the code before the speed-ups: autograd's in-place leaky
    ReLU in the local layers, the `matmul` weighted sum, the per-tensor EMA (Adam: see `previous_trainer`)."""
    import contextlib

    import torch.nn.functional as F

    from stylemapgan.semantic import layers
    from stylemapgan.training import semantic as semantic_training

    @contextlib.contextmanager
    def patched() -> Any:
        saved = (layers.leaky_relu_inplace, layers.PartLinear.weighted_sum, semantic_training.ema_update)
        layers.leaky_relu_inplace = lambda x: F.leaky_relu_(x, layers.NEGATIVE_SLOPE)
        layers.PartLinear.weighted_sum = _previous_weighted_sum
        semantic_training.ema_update = _previous_ema_update
        try:
            yield
        finally:
            layers.leaky_relu_inplace, layers.PartLinear.weighted_sum, semantic_training.ema_update = saved

    return patched()


def previous_trainer(preset_name: str, batch: int) -> Any:
    """A trainer with the per-tensor Adam of before (same hyper-parameters)."""
    trainer = make_trainer(preset_name, batch)
    trainer.fused_adam = False
    for name in ("g_optim", "d_optim"):
        optim = getattr(trainer, name)
        group = optim.param_groups[0]
        setattr(trainer, name, torch.optim.Adam(group["params"], lr=group["lr"], betas=group["betas"]))
    return trainer


def in_process_ab(preset_name: str, batch: int, warmup: int, iters: int, rounds: int, thread_counts: list[int]
                  ) -> None:
    """Two trainers (previous and current formulations), --iters iterations each, alternating --rounds times, at
    each of `thread_counts` (torch.set_num_threads between blocks: a same-process 1- vs 2-thread comparison)."""
    trainers = {"previous": previous_trainer(preset_name, batch), "current": make_trainer(preset_name, batch)}
    contexts = {"previous": previous_formulations, "current": __import__("contextlib").nullcontext}
    for name, trainer in trainers.items():
        with contexts[name]():
            for _ in range(warmup):
                trainer.train_step()
    results: dict[tuple[str, int], list[tuple[float, float]]] = {
        (name, t): [] for t in thread_counts for name in trainers
    }
    for r in range(rounds):
        for threads in thread_counts:
            torch.set_num_threads(threads)
            for name, trainer in trainers.items():
                with contexts[name]():
                    w, c = time.perf_counter(), cpu_seconds()
                    for _ in range(iters):
                        trainer.train_step()
                    results[name, threads].append(((time.perf_counter() - w) / iters, (cpu_seconds() - c) / iters))
                wall, cpu = results[name, threads][-1]
                print(f"round {r + 1} {threads} thread(s) {name:<9} {wall:.3f} s/it wall, {cpu:.3f} s/it CPU",
                      flush=True)

    def summary(a: list[tuple[float, float]], b: list[tuple[float, float]], i: int) -> str:
        ratios = [x[i] / y[i] for x, y in zip(a, b, strict=True)]
        return f"median {statistics.median(ratios):.3f}x (rounds: {', '.join(f'{x:.2f}' for x in ratios)})"

    for threads in thread_counts:
        prev, cur = results["previous", threads], results["current", threads]
        for i, key in enumerate(("wall", "cpu")):
            print(f"{threads} thread(s) {key:<4}: previous {statistics.median(x[i] for x in prev):.3f} s/it, current "
                  f"{statistics.median(x[i] for x in cur):.3f} s/it; speed-up {summary(prev, cur, i)}")
    for low, high in itertools.pairwise(thread_counts):
        print(f"current, wall {low} -> {high} threads: {summary(results['current', low], results['current', high], 0)}")


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
    parser.add_argument("--ab", action="store_true", help="previous vs current formulations in one process")
    parser.add_argument("--thread-counts", default="1", help="--ab: thread counts to alternate, e.g. 1,2")
    parser.add_argument("--compare", metavar="NAME=SRC[:tuned],...", help="whole iterations of several source trees")
    parser.add_argument("--rounds", type=int, default=3, help="--compare: alternations of the variants")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tuned", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = args.presets.split(",")[0]
    if args.child:
        child(preset, args.batch, args.warmup, args.iters, args.tuned)
    elif args.breakdown:
        breakdown(preset, args.batch, args.warmup, args.repeats, args.profile, args.ab)
    elif args.ab:
        in_process_ab(preset, args.batch, args.warmup, args.iters, args.rounds,
                      [int(t) for t in args.thread_counts.split(",")])
    elif args.compare:
        compare(args.compare, preset, args.batch, args.warmup, args.iters, args.threads, args.rounds)
    else:
        for name in args.presets.split(","):
            r = bench(name, args.batch, args.warmup, args.iters, args.perceptual)
            print(f"{name:<16} batch {args.batch}: {r['wall']:.3f} s/it wall, {r['cpu']:.3f} s/it CPU "
                  f"({args.threads} threads, mean of {args.iters} after {args.warmup} warm-up)", flush=True)


if __name__ == "__main__":
    main()
