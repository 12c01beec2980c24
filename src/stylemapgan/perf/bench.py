"""`stylemapgan bench`: latency, throughput, FLOP efficiency, memory and training speed, in one run.

Per configuration (a preset, a checkpoint, or the shipped model) and device:
- encoder / generator (stylemap -> image) latency at batch 1 (median) and throughput at batch 16;
- a cached local edit at batch 1: w_plus through the fast path (cached modulations), the reference path, and w;
- the CPU's ISA features (avx2, avx512f, avx512_bf16, amx_bf16, amx_tile) and what the automatic precision chose;
- FLOPs per image (FlopCounterMode) and the achieved GFLOP/s as a fraction of a peak measured in the same run
  in each dtype (fp32 and bf16; square matmuls up to 2048^3 and a 512-channel 3x3 conv up to 32x32, batch 1..4;
  the peak is the better of the two), the fraction against the peak of the dtype the networks run in;
- peak memory per call: CUDA max_memory_allocated, CPU the tensor high-water mark from the profiler's
  allocation timeline (tracemalloc does not see torch's allocations; RSS only ever grows);
- training iterations per second for small presets (Trainer, in-memory data, batch 16, chosen perceptual losses),
  in the run's dtype (bf16: `train --bf16`'s autocast).
Networks use random weights for presets (latency does not depend on the values).

Everything runs within a memory budget (`BenchOptions.memory_budget_gb`, 4 GB by default; printed in the report):
before a configuration is measured, its memory is estimated from its config (`ModelConfig.render_bytes`, the
weights, the edit caches); the throughput batch shrinks until the estimate fits, and a configuration or training
preset that does not fit even at batch 1 is skipped with a note. (paper-256 at batch 16 alone needs about 12 GB.)
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from stylemapgan.config import PRESETS, ModelConfig
from stylemapgan.networks import Encoder, Generator, parameter_counts, set_impl
from stylemapgan.runtime import cpu_features, parse_dtype, precision_report, resolve_dtype

SHIPPED = "shipped"
# older names of presets, still accepted: "cpu-64-narrow" was the bundled model's architecture before it was a preset
PRESET_ALIASES = {"cpu-64-narrow": "cpu-64-small"}
DEFAULT_CONFIGS = ("paper-256", "cpu-64", "cpu-64-small", SHIPPED)
DEFAULT_TRAIN_PRESETS = ("cpu-32", "cpu-64")
DEFAULT_PERCEPTUAL = ("none", "stlpips-alex")
DEFAULT_MEMORY_BUDGET_GB = 4.0
GB = 1e9


@dataclass
class BenchOptions:
    device: str = "cpu"
    repeats: int = 10  # timed runs at batch 1 for small models
    paper_repeats: int = 3  # timed runs at batch 1 for models >= 10 GFLOP per image
    throughput_batch: int = 16
    throughput: bool = True
    memory: bool = True
    training: bool = True
    train_presets: Sequence[str] = DEFAULT_TRAIN_PRESETS
    perceptual: Sequence[str] = DEFAULT_PERCEPTUAL
    train_iters: int = 3
    backend: str = "torch"
    compile: bool = False
    dtype: str = "auto"  # fp32, bf16, or auto (what the Editor and the CLI use by default)
    impl: str = "fast"
    memory_budget_gb: float = DEFAULT_MEMORY_BUDGET_GB
    progress: Callable[[str], None] | None = None


@dataclass
class Report:
    meta: dict[str, Any]
    peak: dict[str, float]
    results: list[dict[str, Any]] = field(default_factory=list)
    training: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "peak": self.peak, "results": self.results, "training": self.training,
                "notes": self.notes}


# ---- measurement primitives ------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so a clock read after it measures compute, not launches."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], repeats: int, device: torch.device, warmup: int = 1) -> list[float]:
    """Seconds per call (synchronised on CUDA), after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def median_ms(times: Sequence[float]) -> float:
    return statistics.median(times) * 1000.0


def count_gflop(fn: Callable[[], object]) -> float:
    """FLOPs of one call in GFLOP (a multiply-add counts 2), via FlopCounterMode (needs no_grad, not
    inference_mode)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory of tensors allocated during one call, above what was allocated before it (MB)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.cpu_memory_usage if event.name == "[memory]" else event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak / 2**20


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Drop what C++ code writes to file descriptor 2 meanwhile: PyTorch's profiler (Kineto) prints
    "USDT: ... profiler_start/stop" lines there at every start and stop, whatever its log level. Python's own
    sys.stderr is flushed first, and exceptions still propagate (they are printed after the fd is restored)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def quiet_exporter_logs() -> Iterator[None]:
    """Silence the ONNX exporter's registry warnings ("torchvision is not installed. Skipping torchvision::nms",
    four per export): our graphs use no torchvision operator. Other exporter warnings still show."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def max_rss_mb() -> float:
    """The process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


PEAK_DTYPES = ("fp32", "bf16")


SLOW_CALL_S = 0.25  # a peak problem whose one call takes longer is not grown further (and timed once)
MATMUL_SIZES = (256, 512, 1024, 2048)
CONV_SHAPES = ((1, 8), (1, 16), (1, 32), (2, 32), (4, 32))  # (batch, height = width), 512 channels, 3x3


def _gflops_growing(calls: Sequence[tuple[str, float, Callable[[], object]]], repeats: int,
                    device: torch.device) -> dict[str, float]:
    """GFLOP/s of each (name, gflop, fn) in order, best of `repeats`, stopping after the first call slower than
    SLOW_CALL_S: where a dtype is emulated (bf16 without bf16 units runs at ~1% of fp32) the big problems would
    take minutes, and a smaller one tells the same story."""
    out = {}
    for name, gflop, fn in calls:
        first = time_calls(fn, 1, device)[0]
        slow = first >= SLOW_CALL_S
        best = min([first, *([] if slow else time_calls(fn, repeats - 1, device, warmup=0))])
        out[name] = gflop / best
        if slow:
            break
    return out


def matmul_probe(device: torch.device, n: int, dtype: str = "fp32",
                 gen: torch.Generator | None = None) -> tuple[float, Callable[[], object]]:
    """(GFLOP per call, call) of one peak problem: an n x n by n x n matmul."""
    gen = gen if gen is not None else torch.Generator(device="cpu").manual_seed(0)
    a, b = (torch.randn(n, n, generator=gen).to(device, parse_dtype(dtype)) for _ in range(2))
    return 2 * n**3 / 1e9, lambda: a @ b


def conv_probe(device: torch.device, batch: int, hw: int, dtype: str = "fp32",
               gen: torch.Generator | None = None) -> tuple[float, Callable[[], object]]:
    """(GFLOP per call, call) of one peak problem: a 512-channel 3x3 'same' conv at hw x hw, channels-last on
    CPU as the networks run. Public so a benchmark can re-time the peak between its own measurements."""
    gen = gen if gen is not None else torch.Generator(device="cpu").manual_seed(0)
    torch_dtype = parse_dtype(dtype)
    x = torch.randn(batch, 512, hw, hw, generator=gen).to(device, torch_dtype)
    w = torch.randn(512, 512, 3, 3, generator=gen).to(device, torch_dtype)
    if device.type == "cpu":
        x, w = x.contiguous(memory_format=torch.channels_last), w.contiguous(memory_format=torch.channels_last)
    return 2 * 512 * 512 * 9 * hw * hw * batch / 1e9, lambda: F.conv2d(x, w, padding=1)


def measure_peak(device: torch.device, repeats: int = 3, dtype: str = "fp32") -> dict[str, float]:
    """Achievable GFLOP/s in `dtype` here and now: square matmuls up to 2048^3 and a 512-channel 3x3 conv up to
    32x32 at batch 1..4 (channels-last on CPU, as the networks run), grown while one call stays fast."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    with torch.no_grad():
        mm = _gflops_growing([(f"matmul_{n}", *matmul_probe(device, n, dtype, gen)) for n in MATMUL_SIZES], repeats,
                             device)
        cv = _gflops_growing([(f"conv_b{b}_{hw}", *conv_probe(device, b, hw, dtype, gen)) for b, hw in CONV_SHAPES],
                             repeats, device)
    out: dict[str, float] = {**mm, **cv}
    out["matmul_gflops"] = max(mm.values())
    out["conv_gflops"] = max(cv.values())
    out["peak_gflops"] = max(out["matmul_gflops"], out["conv_gflops"])
    return out


def measure_peaks(device: torch.device, dtype: str, repeats: int = 3) -> dict[str, Any]:
    """The peak of every dtype in PEAK_DTYPES (`by_dtype`), and at the top level the peak of `dtype`, the one
    the networks run in (what their fraction of the peak is measured against)."""
    by_dtype = {name: measure_peak(device, repeats, name) for name in PEAK_DTYPES}
    return {**by_dtype[dtype], "dtype": dtype, "by_dtype": by_dtype}


# ---- memory estimates (before anything is allocated) -------------------------------------------------------


def inference_bytes(config: ModelConfig, batch: int, params: int) -> int:
    """Estimated peak of one configuration's measurements at a batch: the weights, a render of `batch` images
    (with the encoder and inputs, a quarter more), and the cached modulations of the two edit images (each about
    0.3 of a one-image render: 240 MB at 256 px)."""
    return int(4 * params + 1.25 * config.render_bytes(batch) + 2 * 0.3 * config.render_bytes(1))


def training_bytes(config: ModelConfig, batch: int, params: int) -> int:
    """Estimated peak of a training iteration: G, E, D, their EMA copies, gradients and two Adam moments (about
    six float32 copies of every parameter), activations kept for the backward passes (about four renders of the
    batch), and 0.5 GB for a perceptual network."""
    return int(6 * 4 * params + 4 * config.render_bytes(batch) + 0.5 * GB)


def fit_batch(config: ModelConfig, wanted: int, params: int, budget: float) -> int:
    """The largest batch <= wanted (halving) whose inference estimate fits the budget; 0 if not even batch 1."""
    batch = wanted
    while batch >= 1 and inference_bytes(config, batch, params) > budget:
        batch = batch // 2 if batch > 1 else 0
    return max(batch, 0)


class OverBudget(Exception):
    """A configuration whose estimated memory exceeds the bench's budget even at batch 1."""


# ---- configurations --------------------------------------------------------------------------------------


def preset_model(name: str) -> ModelConfig:
    """A preset's model config, by its name or an older alias."""
    return PRESETS[PRESET_ALIASES.get(name, name)].model


def load_config(name: str, device: torch.device) -> tuple[str, Generator, Encoder, str]:
    """(label, generator, encoder, source) for a preset name, `shipped`, or a checkpoint path."""
    if name in PRESETS or name in PRESET_ALIASES:
        config = preset_model(name)
        torch.manual_seed(0)
        return name, Generator(config), Encoder(config), "preset (random weights)"
    from stylemapgan.checkpoint import load_editing_model
    from stylemapgan.models import resolve_checkpoint

    path = resolve_checkpoint(None if name == SHIPPED else name)
    model = load_editing_model(path, device)
    label = f"{SHIPPED} ({path.stem})" if name == SHIPPED else path.stem
    return label, model.generator, model.encoder, str(path)


def effective_dtype(opts: BenchOptions) -> str:
    """The precision the networks run in: "auto" resolved for the device (fp32 on the onnx backend)."""
    if opts.backend == "onnx":
        return "fp32"
    return "bf16" if resolve_dtype(opts.dtype, opts.device) == torch.bfloat16 else "fp32"


def _params_m(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


@contextlib.contextmanager
def _progress(opts: BenchOptions, what: str) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    if opts.progress is not None:
        opts.progress(f"  {what}: {time.perf_counter() - t0:.1f} s")


def bench_config(name: str, opts: BenchOptions, peak: dict[str, float]) -> dict[str, Any]:
    """Every inference number for one configuration on one device."""
    from stylemapgan.editing import Editor, RectangleMask, rectangle_mask

    device = torch.device(opts.device)
    budget = opts.memory_budget_gb * GB
    if name in PRESETS or name in PRESET_ALIASES:  # checked before the networks are built
        preset = PRESETS[PRESET_ALIASES.get(name, name)].model
        counts = parameter_counts(preset)
        need = inference_bytes(preset, 1, counts["generator"] + counts["encoder"])
        if need > budget:
            raise OverBudget(f"needs about {need / GB:.3g} GB at batch 1, over the {opts.memory_budget_gb:g} GB "
                             "memory budget (--memory-budget-gb)")
    label, generator, encoder, source = load_config(name, device)
    params = sum(p.numel() for p in (*generator.parameters(), *encoder.parameters()))
    set_impl(generator, opts.impl)
    set_impl(encoder, opts.impl)
    dtype = effective_dtype(opts)
    editor = Editor(generator, encoder, device=device, batch_size=1, backend=opts.backend, compile=opts.compile,
                    dtype=dtype)
    config = editor.config
    gen = torch.Generator(device="cpu").manual_seed(1)
    size = config.size
    images = (torch.rand(2, 1, 3, size, size, generator=gen) * 2 - 1).to(device)
    image = images[0]
    stylemap = torch.randn(1, *config.stylemap_shape, generator=gen).to(device)
    runner = editor.runner

    g_gflop = count_gflop(lambda: generator.decode(stylemap))
    e_gflop = count_gflop(lambda: encoder(image))
    heavy = g_gflop >= 10
    repeats = opts.paper_repeats if heavy else opts.repeats
    row: dict[str, Any] = {
        "config": label, "source": source, "device": str(device), "backend": opts.backend, "dtype": dtype,
        "compile": opts.compile, "impl": opts.impl, "model": config.to_dict(),
        "generator_params_m": round(_params_m(generator), 3), "encoder_params_m": round(_params_m(encoder), 3),
        "generator_gflop": g_gflop, "encoder_gflop": e_gflop, "repeats": repeats,
    }
    with _progress(opts, f"{label} latency"):
        row["encoder_ms"] = median_ms(time_calls(lambda: runner.encode(image), repeats, device))
        row["generator_ms"] = median_ms(time_calls(lambda: runner.decode(stylemap), repeats, device))

    src, ref = editor.encode(images[0]), editor.encode(images[1])
    mask = rectangle_mask(RectangleMask(size // 4, size // 4, 3 * size // 4, 3 * size // 4), size)
    editor.modulations(src), editor.modulations(ref)  # cached, as in an interactive session

    def edit(mode: str = "w_plus", fast: bool = True) -> torch.Tensor:
        return editor.local_edit(src, [ref], [mask], mode=mode, fast=fast)

    with _progress(opts, f"{label} edits"):
        row["edit_ms"] = median_ms(time_calls(edit, repeats, device))
        row["edit_ref_ms"] = median_ms(time_calls(lambda: edit(fast=False), repeats, device))
        row["edit_w_ms"] = median_ms(time_calls(lambda: edit("w"), repeats, device))
        row["reconstruct_ms"] = median_ms(time_calls(lambda: editor.reconstruct(src), repeats, device))

    row["peak_gflops"] = peak["peak_gflops"]
    row["conv_peak_gflops"] = peak["conv_gflops"]
    row["generator_gflops"] = g_gflop / (row["generator_ms"] / 1000)
    row["encoder_gflops"] = e_gflop / (row["encoder_ms"] / 1000)
    row["generator_peak_fraction"] = row["generator_gflops"] / peak["peak_gflops"]
    row["encoder_peak_fraction"] = row["encoder_gflops"] / peak["peak_gflops"]

    n = fit_batch(config, opts.throughput_batch, params, budget) if opts.throughput else 0
    if opts.throughput and n < opts.throughput_batch:
        need = inference_bytes(config, opts.throughput_batch, params) / GB
        row["throughput_note"] = (f"batch {n} instead of {opts.throughput_batch}: batch {opts.throughput_batch} "
                                  f"needs about {need:.3g} GB, over the {opts.memory_budget_gb:g} GB budget")
    if n >= 1:
        batch_images = (torch.rand(n, 3, size, size, generator=gen) * 2 - 1).to(device)
        batch_maps = torch.randn(n, *config.stylemap_shape, generator=gen).to(device)
        t_repeats = max(1, repeats // 4) if heavy else max(2, repeats // 2)
        with _progress(opts, f"{label} throughput"):
            e_s = statistics.median(time_calls(lambda: runner.encode(batch_images), t_repeats, device))
            g_s = statistics.median(time_calls(lambda: runner.decode(batch_maps), t_repeats, device))
        row["encoder_img_per_s"] = n / e_s
        row["generator_img_per_s"] = n / g_s
        row["generator_gflops_b16"] = g_gflop * n / g_s
        row["throughput_batch"] = n

    if opts.memory:
        with _progress(opts, f"{label} memory"):
            row["encoder_peak_mb"] = peak_memory_mb(lambda: runner.encode(image), device)
            row["generator_peak_mb"] = peak_memory_mb(lambda: runner.decode(stylemap), device)
            row["edit_peak_mb"] = peak_memory_mb(edit, device)
            mods = editor.modulations(src)
            row["modulation_cache_mb_per_image"] = sum(m.numel() * m.element_size() for m in mods) / 2**20
    row["process_max_rss_mb"] = max_rss_mb()
    return row


# ---- training --------------------------------------------------------------------------------------------


class RandomImages(torch.utils.data.Dataset):
    """Fixed random images in memory: training benchmarks time the model, not decoding or disk."""

    def __init__(self, count: int, size: int) -> None:
        self.images = torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def bench_training(preset: str, perceptual: str, opts: BenchOptions) -> dict[str, Any]:
    """Iterations per second of the full training iteration (batch 16, in-memory data, no data workers).

    Iteration 0 (which includes the lazy R1 step) is the warm-up; the timed iterations are R1-free, so the
    amortised cost adds 1/16 of an R1 step."""
    from stylemapgan.losses import build_perceptual
    from stylemapgan.training.config import TrainConfig
    from stylemapgan.training.trainer import Trainer

    config = preset_model(preset)
    batch = 16
    need = training_bytes(config, batch, sum(parameter_counts(config).values()))
    if need > opts.memory_budget_gb * GB:
        raise OverBudget(f"needs about {need / GB:.3g} GB, over the {opts.memory_budget_gb:g} GB memory budget "
                         "(--memory-budget-gb)")
    device = torch.device(opts.device)
    dtype = effective_dtype(opts)
    cfg = TrainConfig(batch=batch, perceptual=perceptual, num_workers=0, amp_bf16=dtype == "bf16")
    module = build_perceptual(perceptual)
    trainer = Trainer(config, cfg, RandomImages(4 * batch, config.size), device=device, perceptual=module)
    for net in (trainer.generator, trainer.encoder, trainer.discriminator):
        set_impl(net, opts.impl)
    times = time_calls(trainer.train_step, opts.train_iters, device)
    s = statistics.median(times)
    return {"preset": preset, "perceptual": perceptual, "device": str(device), "batch": batch,
            "iters_per_s": 1 / s, "s_per_iter": s, "timed_iters": len(times), "impl": opts.impl, "dtype": dtype}


# ---- the whole run ---------------------------------------------------------------------------------------


def _cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def run_bench(configs: Sequence[str], opts: BenchOptions) -> Report:
    """Measure everything for `configs` (preset names, checkpoint paths, or 'shipped')."""
    from stylemapgan.checkpoint import CheckpointError

    device = torch.device(opts.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device available")
    opts = replace(opts, dtype=effective_dtype(opts))
    meta: dict[str, Any] = {
        "torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
        "cpu": _cpu_name(), "cpu_features": cpu_features(), "dtype": opts.dtype, "backend": opts.backend,
        "compile": opts.compile, "impl": opts.impl, "load_before": list(os.getloadavg()),
        "python": platform.python_version(),
        "memory_budget_gb": opts.memory_budget_gb, "throughput_batch": opts.throughput_batch,
    }
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    if device.type == "cpu":
        meta["precision"] = precision_report()
    with _progress(opts, "peak"):
        peak = measure_peaks(device, opts.dtype)
    report = Report(meta, peak)
    for name in configs:
        try:
            with quiet_exporter_logs():  # --backend onnx exports the graphs first
                row = bench_config(name, opts, peak)
            report.results.append(row)
            if "throughput_note" in row:
                report.notes.append(f"{row['config']}: throughput at {row['throughput_note']}")
        except (CheckpointError, OverBudget) as exc:
            report.notes.append(f"{name}: skipped ({exc})")
    if opts.training:
        for preset in opts.train_presets:
            for kind in opts.perceptual:
                try:
                    with _progress(opts, f"training {preset} {kind}"):
                        report.training.append(bench_training(preset, kind, opts))
                except (ValueError, OverBudget) as exc:  # e.g. LPIPS on a model smaller than 32 px
                    report.notes.append(f"training {preset} {kind}: skipped ({exc})")
    report.meta["load_after"] = list(os.getloadavg())
    report.meta["process_max_rss_mb"] = max_rss_mb()
    return report


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _feature_lines(meta: dict[str, Any]) -> list[str]:
    features = meta.get("cpu_features")
    if not features or meta.get("device", "cpu") != "cpu":
        return []
    shown = ", ".join(f"{k} {'yes' if v else ('?' if v is None else 'no')}" for k, v in features.items())
    line = f"cpu features: {shown}"
    precision = meta.get("precision")
    if precision:
        speedup = precision.get("bf16_speedup")
        measured = "no bf16 units, not measured" if speedup is None else f"bf16 conv {speedup:.2f}x fp32"
        line += f"; auto precision: {precision['auto_dtype']} ({measured})"
    return [line]


def _peak_lines(peak: dict[str, Any]) -> list[str]:
    by_dtype = peak.get("by_dtype") or {peak.get("dtype", "fp32"): peak}
    lines = []
    for name, p in by_dtype.items():
        used = " <- the networks' precision (the %peak columns)" if name == peak.get("dtype") else ""
        lines.append(f"peak {name}: matmul {p['matmul_gflops']:.1f} GFLOP/s, conv 512ch 3x3 "
                     f"{p['conv_gflops']:.1f} GFLOP/s -> peak {p['peak_gflops']:.1f} GFLOP/s{used}")
    return lines


def format_report(report: Report) -> str:
    """The table `stylemapgan bench` prints."""
    m, p = report.meta, report.peak
    load = " ".join(f"{v:.2f}" for v in m["load_before"])
    lines = [
        f"stylemapgan bench: torch {m['torch']}, {m['device']} ({m.get('gpu', m['cpu'])}), threads {m['threads']}, "
        f"{m['dtype']}, backend {m['backend']}{', compiled' if m['compile'] else ''}, impl {m['impl']}, "
        f"load average {load}, memory budget {m.get('memory_budget_gb', DEFAULT_MEMORY_BUDGET_GB):g} GB",
        *_feature_lines(m),
        *_peak_lines(p),
        "",
        f"{'config':<26}{'params G/E (M)':>15}{'enc ms':>9}{'gen ms':>10}{'edit ms':>9}{'edit ref':>10}"
        f"{'edit w':>9}{'G GFLOP':>9}{'G GF/s':>8}{'%peak':>7}{'E %peak':>8}{'enc img/s':>10}{'gen img/s':>10}"
        f"{'mem G/edit MB':>15}",
    ]
    for r in report.results:
        mem = f"{_fmt(r.get('generator_peak_mb'), 0)}/{_fmt(r.get('edit_peak_mb'), 0)}"
        lines.append(
            f"{r['config'][:25]:<26}{r['generator_params_m']:>7.2f}/{r['encoder_params_m']:<7.2f}"
            f"{r['encoder_ms']:>9.1f}{r['generator_ms']:>10.1f}{r['edit_ms']:>9.1f}{r['edit_ref_ms']:>10.1f}"
            f"{r['edit_w_ms']:>9.1f}{r['generator_gflop']:>9.2f}{r['generator_gflops']:>8.0f}"
            f"{100 * r['generator_peak_fraction']:>6.0f}%{100 * r['encoder_peak_fraction']:>7.0f}%"
            f"{_fmt(r.get('encoder_img_per_s')):>10}{_fmt(r.get('generator_img_per_s')):>10}{mem:>15}"
        )
    lines.append("(batch 1 medians; edit = cached w_plus local edit via cached modulations, edit ref = the same "
                 "edit recomputed in full, edit w = w-mode edit; img/s at batch "
                 f"{m.get('throughput_batch', 16)}, smaller where a note says so)")
    if report.training:
        lines += ["", f"{'training (batch 16)':<22}{'perceptual':<15}{'dtype':<7}{'it/s':>8}{'s/it':>9}"]
        for t in report.training:
            lines.append(f"{t['preset']:<22}{t['perceptual']:<15}{t.get('dtype', 'fp32'):<7}"
                         f"{t['iters_per_s']:>8.3f}{t['s_per_iter']:>9.2f}")
    for note in report.notes:
        lines.append(f"note: {note}")
    load_after = " ".join(f"{v:.2f}" for v in m.get("load_after", []))
    lines.append(f"load average after: {load_after}; process max RSS {m.get('process_max_rss_mb', 0):.0f} MB")
    return "\n".join(lines)
