"""The training step under FastOps' layout policies (`stylemapgan.ops.GRAD_POLICIES`), interleaved in one process:
step time and losses.

One StyleMapGAN trainer per policy, from the same seed on the same in-memory random images
(`bench_bf16_training`'s `make_trainer`), step in turn (the order rotated every iteration) so all see the same
machine load; inference (the EMA networks, samples) is channels-last under every policy. "channels_last" (no
autograd exception: the layout before the policy) is the baseline. Per thread count: the median seconds per
iteration of each policy; for each other policy the median and range of the per-iteration ratio baseline time /
its time (above 1: faster than the baseline); and the relative difference of the first iteration's losses
against the baseline's (same math, different conv algorithms: fp32 round-off; later iterations drift apart as
any two GAN runs whose weights differ in the last bit do). Iteration 0 (oneDNN primitive creation, the lazy R1
step) is left out of the timings. The load average before and after is printed: on a shared machine trust the
ratios, not the times.

Usage: python benchmarks/bench_grad_layout.py [--preset cpu-64-small] [--batch 16] [--perceptual stlpips-alex]
       [--policies nchw,channels_last] [--iters 8] [--threads 1,2] [--json F]
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

from bench_bf16_training import make_trainer
from stylemapgan.networks import use_ops
from stylemapgan.ops import GRAD_POLICIES, FastOps

BASELINE = "channels_last"


def with_policy(trainer: Any, policy: str) -> Any:
    """Every network of a StyleMapGAN trainer on FastOps with the named layout policy."""
    for net in (trainer.generator, trainer.encoder, trainer.discriminator, trainer.g_ema, trainer.e_ema):
        use_ops(net, lambda: FastOps(GRAD_POLICIES[policy]))
    return trainer


def first_step_difference(a: dict[str, list[float]], b: dict[str, list[float]]) -> float:
    """The largest relative difference between two runs' first-iteration losses."""
    return max(abs(a[key][0] - b[key][0]) / max(abs(a[key][0]), abs(b[key][0]), 1e-12) for key in a)


def bench(args: argparse.Namespace, threads: int, policies: list[str]) -> dict[str, Any]:
    torch.set_num_threads(threads)
    trainers = {p: with_policy(make_trainer(args.preset, args.batch, False, args.perceptual, args.seed), p)
                for p in policies}
    times: dict[str, list[float]] = {p: [] for p in policies}
    curves: dict[str, dict[str, list[float]]] = {p: {} for p in policies}
    load_before = os.getloadavg()[0]
    for i in range(args.iters + 1):
        for policy in policies[i % len(policies):] + policies[:i % len(policies)]:  # each in each position
            t0 = time.perf_counter()
            losses = trainers[policy].train_step()
            times[policy].append(time.perf_counter() - t0)
            for key, value in losses.items():
                curves[policy].setdefault(key, []).append(float(value))
    timed = {p: v[1:] for p, v in times.items()}
    row: dict[str, Any] = {"preset": args.preset, "batch": args.batch, "perceptual": args.perceptual,
                           "threads": threads, "iters": args.iters, "load_before": load_before,
                           "s_per_it": {p: statistics.median(v) for p, v in timed.items()}, "vs_baseline": {}}
    for p in policies:
        if p != BASELINE:
            ratios = [b / t for b, t in zip(timed[BASELINE], timed[p], strict=True)]
            row["vs_baseline"][p] = {"speedup": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
                                     "first_step_loss_diff": first_step_difference(curves[p], curves[BASELINE])}
    row.update(load_after=os.getloadavg()[0], times=times, curves=curves)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-64-small", help="a StyleMapGAN preset")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--perceptual", default="stlpips-alex")
    parser.add_argument("--policies", default="nchw,channels_last",
                        help=f"comma-separated layout policies (of {','.join(GRAD_POLICIES)}); {BASELINE} is added")
    parser.add_argument("--iters", type=int, default=8, help="timed iterations of each layout (after one warm-up)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not all(t.isdigit() and int(t) > 0 for t in args.threads.split(",")):
        parser.error(f"--threads: expected comma-separated positive integers, got {args.threads!r}")
    if args.iters < 1 or args.batch < 1:
        parser.error("--iters and --batch must be at least 1")
    policies = list(dict.fromkeys([p for p in args.policies.split(",") if p] + [BASELINE]))
    unknown = set(policies) - set(GRAD_POLICIES)
    if unknown:
        parser.error(f"--policies: unknown {', '.join(sorted(unknown))} (choose from {', '.join(GRAD_POLICIES)})")
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        row = bench(args, threads, policies)
        rows.append(row)
        times = ", ".join(f"{p} {t:.3f}" for p, t in row["s_per_it"].items())
        print(f"{row['preset']} batch {row['batch']} {row['perceptual']}, {threads} thread(s), median of "
              f"{row['iters']}, load {row['load_before']:.2f} -> {row['load_after']:.2f}: s/it {times}", flush=True)
        for p, r in row["vs_baseline"].items():
            print(f"  {p}: {r['speedup']:.2f}x faster than {BASELINE} (per iteration {r['min']:.2f}-{r['max']:.2f});"
                  f" first-iteration losses differ by {r['first_step_loss_diff']:.1e} (relative)", flush=True)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
