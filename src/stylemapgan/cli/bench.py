"""Performance subcommands: bench (latency / throughput / FLOP efficiency / memory / training speed) and
export-onnx (StyleMapGAN: encoder, decoder and synthesis-from-modulations graphs; SemanticStyleGAN: W+ latents
to image + segmentation; for onnxruntime)."""

from __future__ import annotations

import argparse
import json
import math
import sys

from stylemapgan.cli import announce_threads
from stylemapgan.cli.options import add_output, add_progress_option, add_threads_option, declare_output
from stylemapgan.perf.bench import DEFAULT_CONFIGS, DEFAULT_MEMORY_BUDGET_GB, DEFAULT_PERCEPTUAL, DEFAULT_TRAIN_PRESETS
from stylemapgan.utils.files import atomic_write_text


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench", help="benchmark encoder, generator, cached local edits and training on this machine",
        description="Latency (batch 1, medians), throughput (batch 16), achieved GFLOP/s vs a peak measured in the "
        "same run, peak memory, and training iterations/s. Configs: preset names, checkpoint paths, 'shipped' "
        "(the bundled default model, skipped with a note if this installation has none).",
    )
    p.add_argument("--config", action="append", default=None, metavar="NAME|CKPT",
                   help=f"preset, checkpoint or 'shipped' (repeatable or comma-separated; default "
                        f"{','.join(DEFAULT_CONFIGS)})")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to measure (default cpu)")
    p.add_argument("--out", default=None, metavar="PATH", help="also write every number as JSON to PATH")
    p.add_argument("--json", dest="out", default=None, help=argparse.SUPPRESS)  # the old name of --out
    declare_output(p, "--out", ("out",), folder=False)
    p.add_argument("--repeats", type=int, default=10, help="timed runs per batch-1 number (small models)")
    p.add_argument("--paper-repeats", type=int, default=3, help="timed runs per batch-1 number (>= 10 GFLOP)")
    p.add_argument("--batch", type=int, default=16, help="batch for the throughput numbers (shrunk to the budget)")
    p.add_argument("--memory-budget-gb", type=float, default=DEFAULT_MEMORY_BUDGET_GB, metavar="GB",
                   help="estimated memory a measurement may use: larger throughput batches shrink, larger configs "
                        f"are skipped with a note (default {DEFAULT_MEMORY_BUDGET_GB:g})")
    p.add_argument("--no-throughput", action="store_true", help="skip the batch throughput numbers")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory numbers")
    p.add_argument("--no-training", action="store_true", help="skip the training iterations/s")
    p.add_argument("--train-presets", default=",".join(DEFAULT_TRAIN_PRESETS),
                   help="presets whose training speed is measured (comma-separated)")
    p.add_argument("--perceptual", default=",".join(DEFAULT_PERCEPTUAL),
                   help="perceptual losses the training speed is measured with (comma-separated)")
    p.add_argument("--train-iters", type=int, default=3, help="timed training iterations (after one warm-up)")
    p.add_argument("--backend", default="torch", choices=["torch", "onnx"],
                   help="run the networks in PyTorch or as ONNX graphs in onnxruntime (default torch)")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks (CPU needs a C++ compiler)")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"],
                   help="network and training precision (default auto: what the editing commands use, see "
                        "runtime.precision)")
    p.add_argument("--impl", default="fast", choices=["fast", "ref"], help="layer implementation (A/B)")
    p.add_argument("--no-tune-alloc", action="store_true", help="leave glibc malloc as is (see perf.tuning)")
    add_progress_option(p)
    add_threads_option(p)
    p.set_defaults(handler=cmd_bench)

    p = subparsers.add_parser(
        "export-onnx", help="export the model to ONNX (StyleMapGAN: encoder, decoder, synthesis; SemanticStyleGAN: "
        "W+ latents -> image + segmentation)"
    )
    p.add_argument("--ckpt", default=None,
                   help="checkpoint file, run directory or bundled model name (default: the bundled model)")
    add_output(p, folder=True, positional=False, help="output folder for the .onnx graphs and their manifest")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's tested one)")
    p.add_argument("--check", action="store_true", help="run the graphs in onnxruntime and compare with PyTorch")
    add_progress_option(p)
    add_threads_option(p)
    p.set_defaults(handler=cmd_export_onnx)


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from stylemapgan.cli import CLIError
    from stylemapgan.perf.bench import BenchOptions, format_report, run_bench
    from stylemapgan.perf.tuning import tune_allocator

    if args.device == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda: no CUDA device is available")
    if args.backend == "onnx" and (args.compile or args.dtype == "bf16" or args.device != "cpu"):
        raise CLIError("--backend onnx runs the fp32 ONNX graphs on the CPU; --compile/--dtype apply to torch")
    if not (math.isfinite(args.memory_budget_gb) and args.memory_budget_gb > 0):
        raise CLIError(f"--memory-budget-gb: must be a positive number, got {args.memory_budget_gb}")
    if args.batch < 1:
        raise CLIError(f"--batch: must be >= 1, got {args.batch}")
    if not args.no_tune_alloc:
        tune_allocator()
    configs = [c for text in (args.config or [",".join(DEFAULT_CONFIGS)]) for c in _csv(text)]
    opts = BenchOptions(
        device=args.device, repeats=args.repeats, paper_repeats=args.paper_repeats, throughput_batch=args.batch,
        throughput=not args.no_throughput, memory=not args.no_memory, training=not args.no_training,
        train_presets=_csv(args.train_presets), perceptual=_csv(args.perceptual), train_iters=args.train_iters,
        backend=args.backend, compile=args.compile, dtype=args.dtype, impl=args.impl,
        memory_budget_gb=args.memory_budget_gb,
        progress=(lambda line: print(line, file=sys.stderr, flush=True)) if args.progress else None,
    )
    announce_threads(args)
    report = run_bench(configs, opts)
    report.meta["allocator_tuned"] = not args.no_tune_alloc
    print(format_report(report))
    if args.out:
        atomic_write_text(args.out, json.dumps(report.to_dict(), indent=2))
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    """The ONNX graphs of the model's family (`runtime.export_model_onnx`): StyleMapGAN encoder, decoder and
    synthesis; SemanticStyleGAN W+ latents -> image + segmentation."""
    from stylemapgan.checkpoint import load_inference_model
    from stylemapgan.cli import CLIError
    from stylemapgan.models import resolve_checkpoint
    from stylemapgan.perf.bench import quiet_exporter_logs
    from stylemapgan.runtime import (
        DEFAULT_OPSET,
        OnnxExportError,
        check_model_onnx,
        export_model_onnx,
        onnxruntime_available,
    )

    path = resolve_checkpoint(args.ckpt)
    model = load_inference_model(path, "cpu")
    announce_threads(args)
    if args.progress:  # tens of seconds and no bar to show: say what runs
        print(f"exporting {path.name} to ONNX in {args.out} ...", file=sys.stderr, flush=True)
    try:
        with quiet_exporter_logs():
            paths = export_model_onnx(model, args.out, opset=args.opset or DEFAULT_OPSET)
    except OnnxExportError as exc:
        raise CLIError(str(exc)) from None
    for name, file in paths.items():
        print(f"{name}: {file} ({file.stat().st_size / 2**20:.1f} MB)")
    if args.check:
        if not onnxruntime_available():
            print("onnxruntime is not installed (pip install 'stylemapgan[onnx]'); skipped --check", file=sys.stderr)
            return 2
        diffs = check_model_onnx(model, args.out)
        print("onnxruntime vs PyTorch, max abs difference: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    return 0
