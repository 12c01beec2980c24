"""The GPU check behind benchmarks/gpu_check.sh: CUDA-marked tests, then GPU timings, into one JSON.

Sized for a short lent GPU slot (the whole run under 8 minutes, each part with its own deadline):
1. `pytest -m cuda` (tests/test_perf_cuda.py and any other CUDA-marked test), pass/fail counts and the tail;
2. paper-256 (random weights) timings in fp32 (TF32 off), TF32 (cuDNN and matmul TF32 on) and bf16 autocast:
   decoder and encoder at batch 1 and 4, the cached w_plus local edit at batch 1 (Editor, modulations cached),
   and one training iteration (Trainer, batch 4, no perceptual network, R1-free iterations timed), each the
   median of CUDA-synchronised wall times after warm-up calls.
Without a CUDA GPU it says so plainly, writes a JSON with `"gpu": null`, and exits 0.

Usage: python benchmarks/gpu_check.py [--out gpu_check.json] [--budget-s 450] [--skip-tests]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "tf32", "bf16")
NO_GPU = "gpu_check: no CUDA GPU found (torch.cuda.is_available() is False); nothing was run"


def base_record() -> dict[str, Any]:
    return {"torch": torch.__version__, "python": platform.python_version(), "host": platform.node(),
            "cuda": torch.version.cuda, "gpu": None, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}


def run_cuda_tests(timeout_s: float) -> dict[str, Any]:
    """`pytest -m cuda` in a subprocess (its own time limit); the counts from pytest's summary line."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        tail = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return {"returncode": None, "timed_out": True, "seconds": timeout_s, "tail": tail[-3000:]}
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {}
    for part in summary.replace("=", "").split(","):
        words = part.strip().split()
        if len(words) >= 2 and words[0].isdigit():
            counts[words[1]] = int(words[0])
    return {"returncode": proc.returncode, "timed_out": False, "seconds": time.perf_counter() - t0,
            "summary": summary, "counts": counts, "tail": (proc.stdout + proc.stderr)[-3000:]}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], object], repeats: int, device: torch.device, warmup: int = 2) -> float:
    """Median wall milliseconds per call, synchronised on CUDA, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def set_precision(name: str) -> None:
    from stylemapgan.utils.precision import set_tf32

    set_tf32(name == "tf32")


def inference_timings(name: str, repeats: int, deadline: float, device: str = "cuda",
                      preset: str = "paper-256") -> dict[str, Any]:
    """Decoder and encoder at batch 1 and 4, the cached w_plus edit at batch 1 (random weights)."""
    from stylemapgan.config import get_preset
    from stylemapgan.editing import Editor, RectangleMask, rectangle_mask
    from stylemapgan.networks import Encoder, Generator

    device = torch.device(device)
    config = get_preset(preset).model
    torch.manual_seed(0)
    g, e = Generator(config).to(device).eval(), Encoder(config).to(device).eval()
    editor = Editor(g, e, device=device, batch_size=4, dtype="bf16" if name == "bf16" else "fp32")
    runner = editor.runner
    out: dict[str, Any] = {}
    gen = torch.Generator().manual_seed(1)
    size = config.size
    for batch in (1, 4):
        if time.monotonic() > deadline:
            out["note"] = "stopped at the deadline"
            return out
        maps = torch.randn(batch, *config.stylemap_shape, generator=gen).to(device)
        images = (torch.rand(batch, 3, size, size, generator=gen) * 2 - 1).to(device)
        out[f"decoder_b{batch}_ms"] = median_ms(lambda m=maps: runner.decode(m), repeats, device)
        out[f"encoder_b{batch}_ms"] = median_ms(lambda x=images: runner.encode(x), repeats, device)
    src, ref = (editor.add_stylemap(torch.randn(1, *config.stylemap_shape, generator=gen)) for _ in range(2))
    editor.modulations(src), editor.modulations(ref)
    mask = rectangle_mask(RectangleMask(size // 4, size // 4, 3 * size // 4, 3 * size // 4), size).to(device)
    out["edit_b1_ms"] = median_ms(lambda: editor.local_edit(src, [ref], [mask], mode="w_plus"), repeats, device)
    return out


def training_timing(name: str, repeats: int, device: str = "cuda", preset: str = "paper-256") -> dict[str, Any]:
    """One R1-free training iteration (Trainer, batch 4, no perceptual network)."""
    from stylemapgan.config import get_preset
    from stylemapgan.perf.bench import RandomImages
    from stylemapgan.training.config import TrainConfig
    from stylemapgan.training.trainer import Trainer

    config = get_preset(preset).model
    cfg = TrainConfig(batch=4, perceptual="none", num_workers=0, amp_bf16=name == "bf16", tf32=name == "tf32")
    trainer = Trainer(config, cfg, RandomImages(16, config.size), device=device)
    trainer.train_step()  # iteration 0 runs the lazy R1 step too; the timed ones do not
    out = {"train_step_b4_ms": median_ms(trainer.train_step, max(3, repeats // 3), torch.device(device), warmup=1)}
    if torch.device(device).type == "cuda":
        out["train_max_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return out


def bench_precision(name: str, repeats: int, deadline: float) -> dict[str, Any]:
    """Every timing of one precision; stops (with a note) once past `deadline` (time.monotonic())."""
    set_precision(name)
    out: dict[str, Any] = {"precision": name, **inference_timings(name, repeats, deadline)}
    torch.cuda.empty_cache()
    if "note" in out or time.monotonic() > deadline:
        out.setdefault("note", "training step skipped at the deadline")
        return out
    out.update(training_timing(name, repeats))
    torch.cuda.empty_cache()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu_check.json"))
    parser.add_argument("--budget-s", type=float, default=450.0, help="deadline for the whole run (default 450)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args()
    start = time.monotonic()
    record = base_record()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not torch.cuda.is_available():
        print(NO_GPU, flush=True)
        record["status"] = "no_gpu"
        out.write_text(json.dumps(record, indent=2))
        print(f"gpu_check: wrote {out}")
        return 0
    record["gpu"] = torch.cuda.get_device_name(0)
    record["gpu_capability"] = list(torch.cuda.get_device_capability(0))
    record["bf16_supported"] = torch.cuda.is_bf16_supported()
    print(f"gpu_check: {record['gpu']} (torch {torch.__version__}, CUDA {torch.version.cuda})", flush=True)
    if not args.skip_tests:
        record["tests"] = run_cuda_tests(timeout_s=min(180.0, args.budget_s / 3))
        print(f"gpu_check: tests: {record['tests'].get('summary', 'timed out')}", flush=True)
    record["bench"] = []
    per = (args.budget_s - (time.monotonic() - start)) / len(PRECISIONS)
    for i, name in enumerate(PRECISIONS):
        deadline = start + args.budget_s - per * (len(PRECISIONS) - i - 1)
        try:
            row = bench_precision(name, args.repeats, deadline)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:  # report and go on with the next precision
            row = {"precision": name, "error": f"{type(exc).__name__}: {exc}"[:500]}
            torch.cuda.empty_cache()
        record["bench"].append(row)
        print("gpu_check: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                        for k, v in row.items()), flush=True)
    set_precision("fp32")
    record["status"] = "ok" if record.get("tests", {}).get("returncode", 0) == 0 else "tests_failed"
    record["seconds"] = time.monotonic() - start
    out.write_text(json.dumps(record, indent=2))
    print(f"gpu_check: wrote {out} in {record['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
