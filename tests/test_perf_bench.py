"""Performance tooling: the layers under torch.inference_mode, `stylemapgan bench`'s per-dtype peaks, ISA
features and bf16 training rows, the official baseline's native ops, and the GPU check's dry run on a CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

import official_reference as official
from stylemapgan.config import ModelConfig, get_preset
from stylemapgan.networks import Encoder, Generator
from stylemapgan.perf import bench
from stylemapgan.runtime.precision import ISA_FEATURES

ROOT = Path(__file__).resolve().parents[1]


# ---- the layers under torch.inference_mode ---------------------------------------------------------------


def test_networks_built_and_run_under_inference_mode_equal_no_grad() -> None:
    """Weights made under inference_mode are inference tensors without a version counter: the layers' weight
    cache must not read it (it used to raise 'Inference tensors do not track version counter')."""
    config = get_preset("tiny").model
    stylemap = torch.randn(2, *config.stylemap_shape, generator=torch.Generator().manual_seed(0))
    images = torch.rand(2, 3, config.size, config.size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    torch.manual_seed(3)
    g, e = Generator(config).eval(), Encoder(config).eval()
    with torch.no_grad():
        expected_g, expected_e = g.decode(stylemap), e(images)
    with torch.inference_mode():
        torch.manual_seed(3)
        g_inf, e_inf = Generator(config).eval(), Encoder(config).eval()
        assert next(g_inf.parameters()).is_inference()
        for _ in range(2):  # the second call would read the cache
            torch.testing.assert_close(g_inf.decode(stylemap), expected_g, rtol=0, atol=1e-6)
            torch.testing.assert_close(e_inf(images), expected_e, rtol=0, atol=1e-6)
        torch.testing.assert_close(g.decode(stylemap), expected_g, rtol=0, atol=0)  # normal weights, cached


def test_a_weight_cached_under_inference_mode_is_not_used_by_autograd() -> None:
    config = get_preset("tiny").model
    torch.manual_seed(0)
    g = Generator(config).eval().requires_grad_(False)
    stylemap = torch.randn(1, *config.stylemap_shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        g.decode(stylemap)
    with torch.no_grad():
        expected = g.decode(stylemap)
    leaf = stylemap.clone().requires_grad_(True)
    out = g.decode(leaf)  # frozen weights, a gradient for the input: the cached copies are saved for backward
    out.sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0
    torch.testing.assert_close(out.detach(), expected, rtol=0, atol=1e-6)


def test_bench_networks_script_runs_under_inference_mode() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_networks.py"), "--presets", "tiny",
                           "--repeats", "1"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "tiny" in proc.stdout and "generator" in proc.stdout


# ---- stylemapgan bench -----------------------------------------------------------------------------------


@pytest.fixture
def small_peak_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "MATMUL_SIZES", (64, 128))
    monkeypatch.setattr(bench, "CONV_SHAPES", ((1, 4), (1, 8)))


def test_peak_problems_stop_growing_once_a_call_is_slow(small_peak_problems: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    grown = bench.measure_peak(torch.device("cpu"), repeats=1)
    assert {"matmul_64", "matmul_128", "conv_b1_4", "conv_b1_8"} <= set(grown)
    monkeypatch.setattr(bench, "SLOW_CALL_S", 0.0)  # every call "slow": only the first problem of each kind
    first = bench.measure_peak(torch.device("cpu"), repeats=3, dtype="bf16")
    assert "matmul_64" in first and "matmul_128" not in first and "conv_b1_8" not in first
    assert first["peak_gflops"] == max(first["matmul_gflops"], first["conv_gflops"]) > 0


def test_bench_reports_features_peaks_per_dtype_and_bf16_training(small_peak_problems: None) -> None:
    opts = bench.BenchOptions(repeats=1, paper_repeats=1, throughput=False, memory=False, training=True,
                              train_presets=("tiny",), perceptual=("none",), train_iters=1, dtype="bf16")
    report = bench.run_bench(["tiny"], opts)
    peak = report.peak
    assert peak["dtype"] == "bf16" and set(peak["by_dtype"]) == {"fp32", "bf16"}
    assert peak["peak_gflops"] == peak["by_dtype"]["bf16"]["peak_gflops"]
    (row,) = report.results
    assert row["dtype"] == "bf16"
    assert row["generator_peak_fraction"] == pytest.approx(row["generator_gflops"] / peak["peak_gflops"])
    (train,) = report.training
    assert train["dtype"] == "bf16" and train["iters_per_s"] > 0
    assert set(report.meta["cpu_features"]) == set(ISA_FEATURES)
    text = bench.format_report(report)
    assert "peak fp32:" in text and "peak bf16:" in text and "cpu features: avx2" in text
    assert "the networks' precision" in text.split("peak bf16:")[1].splitlines()[0]


def test_bench_auto_dtype_resolves_to_what_the_editor_uses() -> None:
    from stylemapgan.runtime import auto_dtype

    expected = "bf16" if auto_dtype("cpu") == torch.bfloat16 else "fp32"
    assert bench.effective_dtype(bench.BenchOptions()) == expected
    assert bench.effective_dtype(bench.BenchOptions(dtype="bf16", backend="onnx")) == "fp32"


# ---- the official baseline's native ops ------------------------------------------------------------------


def test_native_ops_compute_the_literal_official_math() -> None:
    """benchmarks/bench_official.py times the official math with competent native upfirdn2d / bias-act: they
    must give the literal reference's numbers (float64), forward and backward."""
    config = ModelConfig(size=32, latent_spatial_size=8, latent_channels=16, mapping_layers=3, channel_base=512,
                         channel_multiplier=1)
    layout = official.official_layout(config.size, config.latent_spatial_size, config.channels,
                                      config.latent_channels, config.mapping_layers)
    gen = torch.Generator().manual_seed(0)
    states = {net: {k: v.double() for k, v in official.random_official_state(net, table, gen).items()}
              for net, table in layout.items()}
    stylemap = torch.randn(2, *config.stylemap_shape, generator=gen, dtype=torch.float64)
    images = torch.randn(2, 3, 32, 32, generator=gen, dtype=torch.float64, requires_grad=True)

    def run() -> tuple[torch.Tensor, ...]:
        images.grad = None
        out = (official.decoder_ref(states["g_ema"], stylemap), official.encoder_ref(states["e_ema"], images),
               official.discriminator_ref(states["d"], images))
        out[1].square().sum().backward()
        return (*(o.detach() for o in out), images.grad.clone())

    literal = run()
    with official.native_ops():
        native = run()
        assert official.upfirdn2d_ref is official.upfirdn2d_native
    assert official.upfirdn2d_ref is not official.upfirdn2d_native  # restored
    for a, b in zip(literal, native, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    x = torch.randn(1, 3, 9, 9, dtype=torch.float64)
    kernel = official.make_kernel_ref([1, 3, 3, 1]).double()
    for pad in ((1, 1), (2, 1)):  # symmetric padding inside the conv, asymmetric by an explicit pad
        torch.testing.assert_close(official.upfirdn2d_native(x, kernel, pad), official.upfirdn2d_ref(x, kernel, pad),
                                   rtol=0, atol=1e-12)


# ---- the GPU check on a machine without one -------------------------------------------------------------


def test_gpu_check_says_plainly_that_no_gpu_was_found(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: benchmarks/gpu_check.sh runs for real here")
    out = tmp_path / "sub" / "gpu.json"
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(out)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA GPU found" in proc.stdout
    record = json.loads(out.read_text())
    assert record["gpu"] is None and record["status"] == "no_gpu" and record["torch"] == torch.__version__
    env["OUT"] = str(tmp_path)  # without an argument: $OUT/gpu_check.json
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0 and (tmp_path / "gpu_check.json").exists(), proc.stderr


def test_gpu_check_timings_run_on_the_cpu_with_a_tiny_preset() -> None:
    """The timing code the GPU check runs, exercised here on the CPU (the GPU slot is too short to debug in)."""
    import time

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_check

    for name in ("fp32", "bf16"):
        row = gpu_check.inference_timings(name, 1, time.monotonic() + 600, device="cpu", preset="tiny")
        keys = {"decoder_b1_ms", "decoder_b4_ms", "encoder_b1_ms", "encoder_b4_ms", "edit_b1_ms"}
        assert keys <= set(row) and all(row[k] > 0 for k in keys)
    assert gpu_check.training_timing("bf16", 1, device="cpu", preset="tiny")["train_step_b4_ms"] > 0
    assert gpu_check.inference_timings("fp32", 1, time.monotonic() - 1, device="cpu", preset="tiny") == {
        "note": "stopped at the deadline"}
