"""Ours against an honest official baseline, in one process, interleaved, on the same converted weights.

The baseline is the official StyleMapGAN forward math as written in `tests/official_reference.py` (an
independent, literal re-implementation working on official-layout state dicts: per-sample repeated weights in a
grouped conv, transposed convs, gamma/beta convs per call, LayerNorm per call), run with plain-PyTorch versions
of the official code's two CUDA ops that are as competent on the CPU as the CUDA kernels are on a GPU
(`official_reference.native_ops`: upfirdn2d as one depthwise conv with the padding inside it, bias + leaky ReLU
+ gain as one fresh tensor activated in place). Ours: `stylemapgan.networks` with FastOps, built from the same
state dicts through our converter. Both in fp32, NCHW inputs.

Measured, batch 1 and 4 (random official-layout weights; latency does not depend on the values):
- decoder: stylemap -> image;
- encoder: image -> stylemap;
- edit: a cached w_plus local edit (one reference, a centre rectangle) rendering `batch` frames of increasing
  strength. Ours: `Editor.local_edit` with the source's and reference's modulations cached (the editor's hot
  path). Official: the style tensors of both images cached (more than the official demo keeps), the per-layer
  blend, and the synthesis;
- train: forward and backward of one training step's networks: x -> E -> G.decode -> D, loss
  softplus(-D(G(E(x)))) + MSE(G(E(x)), x), gradients for every weight of G, E and D (no optimiser, no
  perceptual network: the networks' share of a step).

Each variant runs once untimed (that call compares the two sides' outputs, a failed comparison aborts since the
timing would be meaningless, and counts each side's FLOPs with FlopCounterMode: convs, transposed convs and
matmuls, a multiply-add = 2, backward included for `train`), then A and B alternate (A,B then B,A, ...) and
each round ends with a probe of this machine's fp32 peak per core: on one thread, the 512-channel 3x3 conv and
the square matmul that did best in `stylemapgan bench`'s peak measurement (run once at start, on one thread),
each best of 3 calls by CPU time. The peak is the better of the two (the matmul, on this AMD EPYC); the conv
peak alone is reported too. CPU time, not wall time, is what the fractions use: on a shared machine the wall
clock counts the time other jobs hold the cores, the CPU clock only the work done (plus OpenMP spin-waits, which
count against the networks, i.e. in the bound's favour). Per round: the ratio of wall times; each side's GFLOP
per CPU-second and its fraction of that round's per-core peak; and the bound, the official CPU time over the
CPU time ours would need at 100% of the peak (= official FLOPs / ours FLOPs / official fraction). The report
gives the medians over rounds.

While both sides run the same direct convolutions, the bound caps any speed-up that does not remove FLOPs; only
a cheaper algorithm (fewer FLOPs: Winograd/FFT convs, or skipped work such as the cached edit's) can beat it.

Defaults (paper-256, batch 1, 3 rounds, the training step 2 rounds) need about 5 minutes of a 2-core AVX2
machine (18 minutes at load average 6, most of it the training step); `--batches 1,4 --train-batches 1,4` is the
full measurement (each batch-4 part about 4x its batch-1 time).

Usage: python benchmarks/bench_official.py [--batches 1] [--train-batches 1] [--threads 2] [--repeats 3]
       [--train-repeats 2] [--parts decoder,encoder,edit,train] [--size 256 --spatial 8] [--tune-alloc] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import official_reference as official
from stylemapgan.checkpoint import build_network
from stylemapgan.checkpoint.official import convert_official
from stylemapgan.editing import Editor, RectangleMask, rectangle_mask
from stylemapgan.perf.bench import CONV_SHAPES, MATMUL_SIZES, conv_probe, matmul_probe, measure_peak
from stylemapgan.perf.tuning import tune_allocator

PARTS = ("decoder", "encoder", "edit", "train")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class PeakProbe:
    """This machine's fp32 peak per core, re-timed between measurements on one thread: the conv and the matmul
    problem that gave `measure_peak`'s peaks, each best of `calls` by CPU time. Calling it returns
    {"conv": GFLOP per CPU-second, "matmul": GFLOP per CPU-second}."""

    def __init__(self, peak: dict[str, float], calls: int = 3) -> None:
        cpu = torch.device("cpu")
        batch, hw = max(CONV_SHAPES, key=lambda shape: peak.get(f"conv_b{shape[0]}_{shape[1]}", 0.0))
        n = max(MATMUL_SIZES, key=lambda size: peak.get(f"matmul_{size}", 0.0))
        self.problems = {"conv": conv_probe(cpu, batch, hw), "matmul": matmul_probe(cpu, n)}
        self.name = f"1 thread: conv 512ch 3x3 {hw}x{hw} batch {batch}, matmul {n}^3"
        self.calls = calls

    def __call__(self) -> dict[str, float]:
        out = {}
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.no_grad():
                for kind, (gflop, fn) in self.problems.items():
                    fn()
                    best = float("inf")
                    for _ in range(self.calls):
                        t0 = time.process_time()
                        fn()
                        best = min(best, time.process_time() - t0)
                    out[kind] = gflop / max(best, 1e-9)
        finally:
            torch.set_num_threads(threads)
        return out


def count_gflop(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(GFLOP of one call, its result): FlopCounterMode counts conv, transposed conv and matmul work."""
    with FlopCounterMode(display=False) as counter:
        out = fn()
    return counter.get_total_flops() / 1e9, out


def interleaved(official_fn: Callable[[], object], ours_fn: Callable[[], object], repeats: int,
                gflop: dict[str, float], probe: Callable[[], dict[str, float]]) -> dict[str, Any]:
    """Median wall/CPU seconds of each side (order alternating every round), and per round: the wall-time
    ratio, each side's GFLOP per CPU-second and its fraction of the per-core peak probed at the end of the round
    (the better of conv and matmul; and of the conv alone), and the bound at 100% of the peak."""
    wall: dict[str, list[float]] = {"official": [], "ours": []}
    cpu: dict[str, list[float]] = {"official": [], "ours": []}
    probes: list[dict[str, float]] = []
    order = [("official", official_fn), ("ours", ours_fn)]
    for i in range(repeats):
        for name, fn in order if i % 2 == 0 else order[::-1]:
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
        probes.append(probe())
    peaks = [max(p.values()) for p in probes]
    ratios = [o / u for o, u in zip(wall["official"], wall["ours"], strict=True)]
    out: dict[str, Any] = {
        "official_s": statistics.median(wall["official"]), "ours_s": statistics.median(wall["ours"]),
        "official_cpu_s": statistics.median(cpu["official"]), "ours_cpu_s": statistics.median(cpu["ours"]),
        "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "cpu_ratio": statistics.median(o / u for o, u in zip(cpu["official"], cpu["ours"], strict=True)),
        "repeats": repeats, "official_gflop": gflop["official"], "ours_gflop": gflop["ours"],
        "peak_gflops": statistics.median(peaks), "conv_peak_gflops": statistics.median(p["conv"] for p in probes),
        "peak_probes": probes,
    }
    for side in ("official", "ours"):
        out[f"{side}_gflops"] = statistics.median(gflop[side] / t for t in wall[side])  # wall clock, all threads
        per_core = [gflop[side] / t for t in cpu[side]]
        out[f"{side}_gflops_per_core"] = statistics.median(per_core)
        out[f"{side}_peak_fraction"] = statistics.median(r / p for r, p in zip(per_core, peaks, strict=True))
        out[f"{side}_conv_peak_fraction"] = statistics.median(
            r / p["conv"] for r, p in zip(per_core, probes, strict=True))
    # ours at 100% of the round's per-core peak would need ours_gflop / peak CPU-seconds
    out["bound"] = statistics.median(t * p / gflop["ours"] for t, p in zip(cpu["official"], peaks, strict=True))
    return out


def check_close(name: str, ours: torch.Tensor, ref: torch.Tensor, rel: float = 1e-3) -> float:
    diff = (ours.float() - ref.float()).abs().max().item()
    tol = rel * max(1.0, ref.abs().max().item())
    if not diff <= tol:
        raise SystemExit(f"{name}: ours and the official math differ by {diff:.3g} (> {tol:.3g}); not timing")
    return diff


def build(size: int, spatial: int, seed: int) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Random official-layout state dicts and our networks converted from them (eval, no grad)."""
    layout = official.official_layout(size, spatial, official.official_channel_table(2))
    gen = torch.Generator().manual_seed(seed)
    states = {net: official.random_official_state(net, table, gen) for net, table in layout.items()}
    raw: dict[str, Any] = {"g_ema": states["g_ema"], "e_ema": states["e_ema"], "discriminator": states["d"]}
    raw["train_args"] = argparse.Namespace(size=size, latent_spatial_size=spatial, latent_channel_size=64,
                                           mapping_layer_num=8, lr_mul=0.01, channel_multiplier=2,
                                           normalize_mode="LayerNorm", small_generator=False)
    ckpt = convert_official(raw, "random official state")
    ours = {net: build_network(ckpt, name).eval().requires_grad_(False) for net, name in
            (("g", "g_ema"), ("e", "e_ema"), ("d", "discriminator"))}
    return states, ours


def official_edit(state: dict[str, torch.Tensor], src_styles: list[torch.Tensor], ref_styles: list[torch.Tensor],
                  mask: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """The official w_plus blend of cached style tensors (mask max-pooled to each layer, as generate.py), one
    frame per strength, then the synthesis."""
    size = mask.shape[-1]
    mixed = []
    for src, ref in zip(src_styles, ref_styles, strict=True):
        ratio = size // ref.shape[-1]
        pooled = (F.max_pool2d(mask.view(1, 1, size, size), ratio, ratio) > 0.5).float()
        weight = alphas.view(-1, 1, 1, 1) * pooled
        mixed.append(src + weight * (ref - src))
    return official.synthesis_ref(state, mixed)


def train_loss_ours(nets: dict[str, torch.nn.Module], x: torch.Tensor) -> torch.Tensor:
    image = nets["g"].decode(nets["e"](x))
    return F.softplus(-nets["d"](image)).mean() + F.mse_loss(image, x)


def train_loss_official(states: dict[str, dict[str, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
    image = official.decoder_ref(states["g_ema"], official.encoder_ref(states["e_ema"], x))
    return F.softplus(-official.discriminator_ref(states["d"], image)).mean() + F.mse_loss(image, x)


def step(loss_fn: Callable[[], torch.Tensor], params: list[torch.Tensor]) -> float:
    for p in params:
        p.grad = None
    loss = loss_fn()
    loss.backward()
    return loss.item()


def measured(part: str, batch: int, official_fn: Callable[[], Any], ours_fn: Callable[[], Any], repeats: int,
             probe: PeakProbe, rel: float = 1e-3) -> dict[str, Any]:
    """One part at one batch: the untimed first call of each side (FLOPs counted, outputs compared), then the
    interleaved rounds."""
    gflop_official, ref = count_gflop(official_fn)
    gflop_ours, out = count_gflop(ours_fn)
    if isinstance(ref, torch.Tensor):
        check_close(part, out, ref, rel)
    elif abs(ref - out) > rel * max(1.0, abs(ref)):  # training: the losses
        raise SystemExit(f"{part}: losses differ ({ref} vs {out}); not timing")
    result = interleaved(official_fn, ours_fn, repeats, {"official": gflop_official, "ours": gflop_ours}, probe)
    return {"part": part, "batch": batch, **result, "load": os.getloadavg()[0]}


def print_row(row: dict[str, Any]) -> None:
    print(f"{row['part']:<8} batch {row['batch']}: official {row['official_s'] * 1e3:9.1f} ms, ours "
          f"{row['ours_s'] * 1e3:8.1f} ms -> ours {row['ratio']:.2f}x faster (pairs {row['ratio_min']:.2f}-"
          f"{row['ratio_max']:.2f}; CPU time {row['official_cpu_s'] * 1e3:.0f} / {row['ours_cpu_s'] * 1e3:.0f} ms); "
          f"{100 * row['official_peak_fraction']:.0f}% / {100 * row['ours_peak_fraction']:.0f}% of the peak, bound "
          f"{row['bound']:.2f}x [load {row['load']:.2f}]", flush=True)


def run(args: argparse.Namespace, probe: PeakProbe) -> dict[str, Any]:
    states, ours = build(args.size, args.spatial, args.seed)
    g, e = ours["g"], ours["e"]
    config = g.config
    size = config.size
    gen = torch.Generator().manual_seed(args.seed + 1)
    rows: list[dict[str, Any]] = []
    parts = args.parts.split(",")

    def report(row: dict[str, Any]) -> None:
        rows.append(row)
        print_row(row)

    for batch in [int(b) for b in args.batches.split(",") if b]:
        stylemaps = torch.randn(batch, *config.stylemap_shape, generator=gen)
        images = torch.rand(batch, 3, size, size, generator=gen) * 2 - 1
        with torch.no_grad(), official.native_ops():
            if "decoder" in parts:
                report(measured("decoder", batch, lambda s=stylemaps: official.decoder_ref(states["g_ema"], s),
                                lambda s=stylemaps: g.decode(s), args.repeats, probe))
            if "encoder" in parts:
                report(measured("encoder", batch, lambda x=images: official.encoder_ref(states["e_ema"], x),
                                lambda x=images: e(x), args.repeats, probe))
            if "edit" in parts:
                editor = Editor(g, e, batch_size=batch, dtype="fp32")
                src_map, ref_map = torch.randn(2, 1, *config.stylemap_shape, generator=gen)
                src, ref = editor.add_stylemap(src_map), editor.add_stylemap(ref_map)
                editor.modulations(src), editor.modulations(ref)
                mask = rectangle_mask(RectangleMask(size // 4, size // 4, 3 * size // 4, 3 * size // 4), size)
                alphas = [(i + 1) / batch for i in range(batch)]
                src_styles = official.resizer_ref(states["g_ema"], src_map)
                ref_styles = official.resizer_ref(states["g_ema"], ref_map)
                alpha_t = torch.tensor(alphas)

                def edit_official(s=src_styles, r=ref_styles, m=mask, a=alpha_t) -> torch.Tensor:
                    return official_edit(states["g_ema"], s, r, m, a)

                def edit_ours(s=src, r=ref, m=mask, a=alphas, editor=editor) -> torch.Tensor:
                    return editor.local_edit(s, [r], [m], mode="w_plus", alphas=a, pool="max")

                report(measured("edit", batch, edit_official, edit_ours, args.repeats, probe))
                del editor
    for batch in [int(b) for b in args.train_batches.split(",") if b] if "train" in parts else []:
        images = torch.rand(batch, 3, size, size, generator=gen) * 2 - 1
        nets = {k: v.train().requires_grad_(True) for k, v in ours.items()}
        grad_states = {net: {k: v.requires_grad_(True) if v.is_floating_point() and not k.endswith(".kernel")
                             else v for k, v in sd.items()} for net, sd in states.items()}
        ours_params = [p for net in nets.values() for p in net.parameters()]
        official_params = [v for sd in grad_states.values() for v in sd.values() if v.requires_grad]

        def train_official(x=images, sd=grad_states, params=official_params) -> float:
            return step(lambda: train_loss_official(sd, x), params)

        def train_ours(x=images, nets=nets, params=ours_params) -> float:
            return step(lambda: train_loss_ours(nets, x), params)

        with official.native_ops():
            report(measured("train", batch, train_official, train_ours, args.train_repeats, probe))
        for net in nets.values():
            net.eval().requires_grad_(False)
        for p in official_params:
            p.requires_grad_(False)
            p.grad = None
        for p in ours_params:
            p.grad = None
    return {"rows": rows}


def format_table(result: dict[str, Any]) -> str:
    """One table of every row: FLOPs, times, ratio, GFLOP per CPU-second and fraction of the peak, bound."""
    peak = result["peak"]
    lines = [
        f"{result['cpu']}, torch {result['torch']}, {result['threads']} threads, fp32, {result['size']} px / "
        f"{result['spatial']}x{result['spatial']} stylemap; peak per core at start: conv {peak['conv_gflops']:.1f}, "
        f"matmul {peak['matmul_gflops']:.1f} GFLOP/s; probe {result['probe']}; load average "
        f"{result['load_before'][0]:.2f} -> {result['load_after'][0]:.2f}",
        f"{'part':<8}{'batch':>6}{'GFLOP off/ours':>16}{'official s':>12}{'ours s':>9}{'faster':>8}{'pairs':>11}"
        f"{'CPU':>7}{'GF/CPU-s off/ours':>19}{'peak':>7}{'%peak off/ours':>16}{'%conv peak':>12}{'bound':>7}"
        f"{'load':>6}",
    ]
    for r in result["rows"]:
        fractions = f"{100 * r['official_peak_fraction']:.0f}%/{100 * r['ours_peak_fraction']:.0f}%"
        conv = f"{100 * r['official_conv_peak_fraction']:.0f}%/{100 * r['ours_conv_peak_fraction']:.0f}%"
        lines.append(
            f"{r['part']:<8}{r['batch']:>6}{r['official_gflop']:>9.1f}/{r['ours_gflop']:<6.1f}{r['official_s']:>12.2f}"
            f"{r['ours_s']:>9.2f}{r['ratio']:>7.2f}x{r['ratio_min']:>6.2f}-{r['ratio_max']:<4.2f}"
            f"{r['cpu_ratio']:>6.2f}x{r['official_gflops_per_core']:>11.1f}/{r['ours_gflops_per_core']:<7.1f}"
            f"{r['peak_gflops']:>7.1f}{fractions:>16}{conv:>12}{r['bound']:>6.2f}x{r['load']:>6.2f}")
    lines.append("(medians over rounds; faster = official / ours wall time, CPU = the same in CPU time; GF/CPU-s = "
                 "GFLOP per CPU-second; peak = per-core peak, the better of the one-thread conv and matmul probes "
                 "after each round; bound = official CPU time / (ours GFLOP / peak): how much faster ours could be "
                 "at 100% of the peak doing the same FLOPs)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1", help="batches of decoder, encoder and edit (e.g. 1,4)")
    parser.add_argument("--train-batches", default="1", help="batches of the training step (e.g. 1,4)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-repeats", type=int, default=2)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--spatial", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tune-alloc", action="store_true", help="apply stylemapgan.perf.tune_allocator() first")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"--parts: unknown {', '.join(sorted(unknown))} (choose from {', '.join(PARTS)})")
    for flag, value in (("--batches", args.batches), ("--train-batches", args.train_batches)):
        if not all(b.isdigit() and int(b) > 0 for b in value.split(",") if b):
            parser.error(f"{flag}: expected comma-separated positive integers, got {value!r}")
    if min(args.repeats, args.train_repeats, args.threads) < 1:
        parser.error("--repeats, --train-repeats and --threads must be at least 1")
    tuned = tune_allocator() if args.tune_alloc else False
    load = os.getloadavg()
    torch.set_num_threads(1)  # the peak per core: it picks the problems the probe re-times
    peak = measure_peak(torch.device("cpu"), dtype="fp32")
    torch.set_num_threads(args.threads)
    probe = PeakProbe(peak)
    print(f"{cpu_model()}, torch {torch.__version__}, {args.threads} threads, fp32, {args.size} px / "
          f"{args.spatial}x{args.spatial} stylemap, allocator tuned {tuned}, load average {load[0]:.2f}; fp32 peak "
          f"per core: conv {peak['conv_gflops']:.1f}, matmul {peak['matmul_gflops']:.1f} GFLOP/s", flush=True)
    result = run(args, probe)
    result.update(cpu=cpu_model(), torch=torch.__version__, threads=args.threads, allocator_tuned=tuned,
                  load_before=list(load), load_after=list(os.getloadavg()), size=args.size, spatial=args.spatial,
                  peak=peak, probe=probe.name)
    print()
    print(format_table(result))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
