"""Wall time of each `stylemapgan eval` metric at a small N, extrapolated to the paper-protocol counts.

Runs `evaluate()` once with every metric (cold real-statistics cache in a temporary folder), then again
for the real statistics only (cache hit), and times the count-independent steps at full size (covariance
square root and FID trace at 2048 dimensions, KID with 100 subsets of 1000). Per-image rates from the
small run and steady-state component timings (Inception after its TorchScript warm-up, generator,
encoder) are scaled to the protocol counts: generated images = train-set size (FID, FID-lerp), real images
= the train split, 500 reconstructions, 250 pairs x every part (local editing, pool of 500 test images).

Usage: python benchmarks/bench_metrics.py [--ckpt PATH | --preset cpu-64] [--data data/cartoon-faces-64]
       [--num 16] [--real-num 32] [--lpips stlpips-vgg] [--threads N] [--device cpu] [--json F]
Random weights by default (wall time does not depend on them). Other processes share the CPU: the load
average before and after is printed; compare runs only at similar load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from stylemapgan.checkpoint import fresh_checkpoint, save_checkpoint
from stylemapgan.config import get_preset
from stylemapgan.editing import Editor
from stylemapgan.metrics import EvalOptions, evaluate
from stylemapgan.metrics.evaluate import PAIRS_DEFAULT, RECON_DEFAULT
from stylemapgan.metrics.fid import FeatureStats, fid_from_stats, kernel_inception_distance, psd_sqrt
from stylemapgan.perf.bench import synchronize


def timed(fn, device: torch.device | None = None) -> float:  # type: ignore[no-untyped-def]
    """Seconds for one call; with a device, its queued work is waited for on both sides (CUDA is async)."""
    if device is not None:
        synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device is not None:
        synchronize(device)
    return time.perf_counter() - t0


def constant_costs() -> dict[str, float]:
    """Count-independent steps at the protocol's size (2048-d features)."""
    g = torch.Generator().manual_seed(0)
    real = torch.randn(3000, 2048, generator=g, dtype=torch.float64)
    gen = torch.randn(3000, 2048, generator=g, dtype=torch.float64) * 1.1
    sr, sg = FeatureStats.from_features(real), FeatureStats.from_features(gen)  # N > D: no thin factor
    out = {"cov_sqrt_2048 (once per real-stats entry)": timed(lambda: setattr(sr, "factor", psd_sqrt(sr.cov)))}
    out["fid_trace_2048 (per FID)"] = timed(lambda: fid_from_stats(sg, sr))
    out["kid_100x1000 (per KID)"] = timed(lambda: kernel_inception_distance(real, gen, 100, 1000, 0))
    return out


def cache_hit_cost(data: str, size: int, count: int) -> float:
    """A cache hit at full count: hash every train image's bytes (measured) + read a cache entry of the full
    size (features float32 [count, 2048], mean, covariance and its square root float64; measured on a dummy)."""
    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    from stylemapgan.data.dataset import open_dataset
    from stylemapgan.metrics.real_stats import content_sha256

    train = open_dataset(data, size=size, split="train")
    hashing = timed(lambda: content_sha256(train, min(count, len(train))))
    square = torch.zeros(2048, 2048, dtype=torch.float64)
    entry = {"features": torch.zeros(count, 2048), "mean": torch.zeros(2048, dtype=torch.float64),
             "cov": square, "factor": square.clone()}
    path = Path(tempfile.mkdtemp(prefix="bench-entry-")) / "entry.safetensors"
    path.write_bytes(st_save(entry))
    reading = timed(lambda: st_load(path.read_bytes()))
    shutil.rmtree(path.parent, ignore_errors=True)
    return hashing + reading


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=None, help="checkpoint (default: random --preset weights)")
    parser.add_argument("--preset", default="cpu-64")
    parser.add_argument("--data", default="data/cartoon-faces-64")
    parser.add_argument("--num", type=int, default=16, help="generated images / reconstructions / pairs per part")
    parser.add_argument("--real-num", type=int, default=32)
    parser.add_argument("--lpips", default="stlpips-vgg")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    ckpt = args.ckpt
    if ckpt is None:
        ckpt = str(tmp / f"{args.preset}.safetensors")
        save_checkpoint(ckpt, fresh_checkpoint(get_preset(args.preset).model, 0, "bench"))
    editor = Editor.from_checkpoint(ckpt, device=device, batch_size=8)
    opts = EvalOptions(num=args.num, real_num=args.real_num, stats_dir=str(tmp / "stats"), lpips=args.lpips,
                       progress=False)
    print(f"torch {torch.__version__}, {device}, threads {torch.get_num_threads()}, model {args.ckpt or args.preset} "
          f"({editor.size}px), data {args.data}, N={args.num}, real N={args.real_num}, load {load_before}")

    report = evaluate(editor, args.data, opts, checkpoint=ckpt, log=lambda m: None)
    t = report["timings"]
    m = report["metrics"]
    hit = evaluate(editor, args.data, EvalOptions(**{**opts.__dict__, "metrics": ("fid",), "num": 2}),
                   log=lambda m: None)
    assert hit["real_stats_cached"]

    # steady-state component rates (the small run's first Inception batches include TorchScript's warm-up)
    from stylemapgan.data.dataset import open_dataset
    from stylemapgan.metrics.inception import InceptionFeatures

    test = open_dataset(args.data, size=editor.size, split="test")
    k = 16
    images = torch.stack([test[i] for i in range(k)])
    stylemaps = editor.encoder(images.to(device))

    def best(fn) -> float:  # type: ignore[no-untyped-def]
        return min(timed(fn, device) for _ in range(3)) / k  # min of 3: the least disturbed by other processes

    enc = best(lambda: editor.encoder(images.to(device)))
    gen = best(lambda: editor.generate(list(range(k))))
    dec = best(lambda: editor.decode(stylemaps))
    ext = InceptionFeatures(device=device, batch_size=16)
    warmup = timed(lambda: ext(images), device) + timed(lambda: ext(images), device)
    inc = best(lambda: ext(images))
    consts = constant_costs()
    rates = {"inception_s_per_img": inc, "inception_warmup_s (2 batches)": warmup, "generate_s_per_img": gen,
             "encode_s_per_img": enc, "decode_s_per_img": dec}

    card = report["dataset"]
    n_train, n_test = card["splits"]["train"], card["splits"]["test"]
    parts = m["local_edit"]["parts_scored"] or 1
    n, rn = args.num, report["real_stats"]["count"]
    pairs_done = sum(v["pairs"] + v["skipped_empty"] for v in m["local_edit"]["per_part"].values())
    pool = 2 * args.num
    paper_pool = min(2 * PAIRS_DEFAULT, n_test)
    rows = []

    def row(name: str, measured_n: str, seconds: float, per_unit: float, paper_n: str, paper_s: float) -> None:
        rows.append({"metric": name, "measured_n": measured_n, "measured_s": round(seconds, 2),
                     "per_unit_s": round(per_unit, 4), "paper_n": paper_n, "paper_s": round(paper_s, 1)})

    row("real stats (cold)", f"{rn} train imgs", t["real_stats"], inc, f"{n_train} train imgs",
        inc * n_train + consts["cov_sqrt_2048 (once per real-stats entry)"])
    row("real stats (cache hit)", f"{rn} train imgs", hit["timings"]["real_stats"], hit["timings"]["real_stats"] / rn,
        f"{n_train} train imgs", cache_hit_cost(args.data, editor.size, n_train))
    row("fid (generate + features + distance)", f"{n} gen", m["fid"]["wall_s"], gen + inc, f"{n_train} gen",
        (gen + inc) * n_train + consts["fid_trace_2048 (per FID)"])
    row("kid (shares fid's features)", f"{n} gen", m["kid"]["wall_s"], 0.0, "100 subsets x 1000",
        consts["kid_100x1000 (per KID)"])
    row("fid_lerp", f"{n} lerps", m["fid_lerp"]["wall_s"], dec + inc, f"{n_train} lerps, {n_test} encoded",
        (dec + inc) * n_train + n_test * enc + consts["fid_trace_2048 (per FID)"])
    recon_n = m["recon"]["num"]
    recon_rate = m["recon"]["wall_s"] / recon_n
    row(f"recon ({m['recon']['projection']}, {args.lpips})", f"{recon_n} imgs", m["recon"]["wall_s"], recon_rate,
        f"{RECON_DEFAULT} imgs", recon_rate * RECON_DEFAULT)
    edit_rate = max(m["local_edit"]["wall_s"] - pool * enc, 0.0) / max(pairs_done, 1)
    row(f"local_edit ({m['local_edit']['edit_mode']})", f"{parts} parts x {args.num} pairs",
        m["local_edit"]["wall_s"], edit_rate, f"{parts} parts x {PAIRS_DEFAULT} pairs",
        edit_rate * parts * min(PAIRS_DEFAULT, paper_pool // 2) + paper_pool * enc)

    load_after = os.getloadavg()
    print(f"{'metric':<40} {'measured':>26} {'s':>8} {'s/unit':>8}   {'paper protocol':>30} {'s':>9} {'h':>6}")
    for r in rows:
        print(f"{r['metric']:<40} {r['measured_n']:>26} {r['measured_s']:>8.2f} {r['per_unit_s']:>8.4f}   "
              f"{r['paper_n']:>30} {r['paper_s']:>9.1f} {r['paper_s'] / 3600:>6.2f}")
    total = sum(r["paper_s"] for r in rows if "cache hit" not in r["metric"])
    print(f"paper protocol, all metrics, cold cache: {total:.0f} s = {total / 3600:.2f} h")
    print("constants: " + ", ".join(f"{k} {v:.2f} s" for k, v in consts.items()))
    print("rates: " + ", ".join(f"{k} {v:.4f}" for k, v in rates.items()))
    print(f"timings of the small run (first Inception batches include warm-up): {t}")
    print(f"load average before {load_before}, after {load_after}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "constants": consts, "rates": rates, "timings": t,
                       "load_before": load_before, "load_after": load_after, "threads": torch.get_num_threads(),
                       "device": str(device), "num": args.num, "real_num": args.real_num}, f, indent=2)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
