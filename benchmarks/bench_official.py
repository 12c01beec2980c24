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

Each variant runs once untimed, then A and B alternate (A,B then B,A, ...) and the report gives the median
wall time of each and the median of the per-pair ratios (what a shared machine distorts least), plus CPU time.
Outputs of the two sides are compared once per part (a failed comparison aborts: the timing would be
meaningless).

Usage: python benchmarks/bench_official.py [--batches 1,4] [--threads 2] [--repeats 5] [--train-repeats 3]
       [--parts decoder,encoder,edit,train] [--size 256 --spatial 8] [--tune-alloc] [--json F]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import official_reference as official
from stylemapgan.checkpoint import build_network
from stylemapgan.checkpoint.official import convert_official
from stylemapgan.editing import Editor, RectangleMask, rectangle_mask
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


def interleaved(official_fn: Callable[[], object], ours_fn: Callable[[], object], repeats: int) -> dict[str, Any]:
    """Median wall/CPU seconds of each, alternating order every repeat, and the median per-pair ratio."""
    official_fn(), ours_fn()  # warm-up: caches, allocator, oneDNN primitives
    wall: dict[str, list[float]] = {"official": [], "ours": []}
    cpu: dict[str, list[float]] = {"official": [], "ours": []}
    order = [("official", official_fn), ("ours", ours_fn)]
    for i in range(repeats):
        for name, fn in order if i % 2 == 0 else order[::-1]:
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    ratios = [o / u for o, u in zip(wall["official"], wall["ours"], strict=True)]
    return {
        "official_s": statistics.median(wall["official"]), "ours_s": statistics.median(wall["ours"]),
        "official_cpu_s": statistics.median(cpu["official"]), "ours_cpu_s": statistics.median(cpu["ours"]),
        "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios), "repeats": repeats,
    }


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
    ours = {net: build_network(ckpt, name) for net, name in
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    states, ours = build(args.size, args.spatial, args.seed)
    g, e = ours["g"], ours["e"]
    config = g.config
    size = config.size
    gen = torch.Generator().manual_seed(args.seed + 1)
    rows: list[dict[str, Any]] = []
    parts = args.parts.split(",")

    def report(part: str, batch: int, result: dict[str, Any]) -> None:
        rows.append({"part": part, "batch": batch, **result})
        print(f"{part:<8} batch {batch}: official {result['official_s'] * 1e3:9.1f} ms, ours "
              f"{result['ours_s'] * 1e3:8.1f} ms -> ours {result['ratio']:.2f}x faster (pairs "
              f"{result['ratio_min']:.2f}-{result['ratio_max']:.2f}; CPU time {result['official_cpu_s'] * 1e3:.0f} / "
              f"{result['ours_cpu_s'] * 1e3:.0f} ms) [load {os.getloadavg()[0]:.2f}]", flush=True)

    for batch in [int(b) for b in args.batches.split(",")]:
        stylemaps = torch.randn(batch, *config.stylemap_shape, generator=gen)
        images = torch.rand(batch, 3, size, size, generator=gen) * 2 - 1
        with torch.no_grad(), official.native_ops():
            if "decoder" in parts:
                check_close("decoder", g.decode(stylemaps), official.decoder_ref(states["g_ema"], stylemaps))
                report("decoder", batch, interleaved(lambda s=stylemaps: official.decoder_ref(states["g_ema"], s),
                                                     lambda s=stylemaps: g.decode(s), args.repeats))
            if "encoder" in parts:
                check_close("encoder", e(images), official.encoder_ref(states["e_ema"], images))
                report("encoder", batch, interleaved(lambda x=images: official.encoder_ref(states["e_ema"], x),
                                                     lambda x=images: e(x), args.repeats))
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

                check_close("edit", edit_ours(), edit_official(), rel=1e-3)
                report("edit", batch, interleaved(edit_official, edit_ours, args.repeats))
                del editor
        if "train" in parts:
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
                loss_o, loss_u = train_official(), train_ours()
                if abs(loss_o - loss_u) > 1e-3 * max(1.0, abs(loss_o)):
                    raise SystemExit(f"train: losses differ ({loss_o} vs {loss_u}); not timing")
                report("train", batch, interleaved(train_official, train_ours, args.train_repeats))
            for net in nets.values():
                net.eval().requires_grad_(False)
            for p in official_params:
                p.requires_grad_(False)
                p.grad = None
            for p in ours_params:
                p.grad = None
    return {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-repeats", type=int, default=3)
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
    torch.set_num_threads(args.threads)
    tuned = tune_allocator() if args.tune_alloc else False
    load = os.getloadavg()
    print(f"{cpu_model()}, torch {torch.__version__}, {args.threads} threads, fp32, {args.size} px / "
          f"{args.spatial}x{args.spatial} stylemap, allocator tuned {tuned}, load average {load[0]:.2f}", flush=True)
    result = run(args)
    result.update(cpu=cpu_model(), torch=torch.__version__, threads=args.threads, allocator_tuned=tuned,
                  load_before=list(load), load_after=list(os.getloadavg()), size=args.size, spatial=args.spatial)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
