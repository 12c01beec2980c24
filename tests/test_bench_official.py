"""benchmarks/bench_official.py: the per-round arithmetic of ratio, peak fraction and bound, the FLOP counts
against the spec's, and one small end-to-end run that writes the JSON and prints the table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_official  # noqa: E402
from stylemapgan.config import get_preset  # noqa: E402
from stylemapgan.networks import Encoder, Generator  # noqa: E402


class FakeProbe:
    """A peak probe giving fixed values, one dict per round."""

    def __init__(self, rounds: list[dict[str, float]]) -> None:
        self.rounds = iter(rounds)

    def __call__(self) -> dict[str, float]:
        return next(self.rounds)


def test_interleaved_fractions_and_bound_follow_from_times_flops_and_the_peak(
        monkeypatch: pytest.MonkeyPatch) -> None:
    wall = iter([0.0, 2.0, 10.0, 11.0,  # round 0: official 2 s, then ours 1 s
                 20.0, 21.0, 30.0, 34.0])  # round 1 (reversed): ours 1 s, official 4 s
    cpu = iter([0.0, 3.0, 10.0, 11.5,  # CPU seconds: official 3, ours 1.5
                20.0, 22.0, 30.0, 34.0])  # ours 2, official 4
    monkeypatch.setattr(bench_official.time, "perf_counter", lambda: next(wall))
    monkeypatch.setattr(bench_official.time, "process_time", lambda: next(cpu))
    probe = FakeProbe([{"conv": 40.0, "matmul": 50.0}, {"conv": 40.0, "matmul": 100.0}])
    out = bench_official.interleaved(lambda: None, lambda: None, 2, {"official": 100.0, "ours": 80.0}, probe)
    assert out["official_s"] == 3.0 and out["ours_s"] == 1.0 and out["official_cpu_s"] == 3.5
    assert out["ratio"] == pytest.approx(3.0) and (out["ratio_min"], out["ratio_max"]) == (2.0, 4.0)
    assert out["cpu_ratio"] == pytest.approx(2.0)
    assert out["peak_gflops"] == 75.0 and out["conv_peak_gflops"] == 40.0
    assert out["official_gflops"] == pytest.approx((50 + 25) / 2)  # wall clock
    # per CPU-second: official 100/3 then 25 against per-core peaks 50 and 100
    assert out["official_gflops_per_core"] == pytest.approx((100 / 3 + 25) / 2)
    assert out["official_peak_fraction"] == pytest.approx((100 / 3 / 50 + 25 / 100) / 2)
    assert out["ours_peak_fraction"] == pytest.approx((80 / 1.5 / 50 + 40 / 100) / 2)
    assert out["official_conv_peak_fraction"] == pytest.approx((100 / 3 / 40 + 25 / 40) / 2)
    # ours at 100% of the peak: 80/50 = 1.6 and 80/100 = 0.8 CPU-s, against official 3 and 4 CPU-s
    assert out["bound"] == pytest.approx((3 / 1.6 + 4 / 0.8) / 2)


def test_flop_counts_match_the_spec_at_256_px() -> None:
    """The spec's compute per image (256 px, 8x8 stylemap): generator 441.7, encoder 93.6 GFLOP; counted on the
    meta device, the way the benchmark counts (FlopCounterMode: convs and matmuls, multiply-add = 2)."""
    config = get_preset("paper-256").model
    g = Generator(config).to("meta").requires_grad_(False)
    e = Encoder(config).to("meta").requires_grad_(False)
    with torch.no_grad():
        g_gflop, _ = bench_official.count_gflop(lambda: g.decode(torch.zeros(1, *config.stylemap_shape,
                                                                             device="meta")))
        e_gflop, _ = bench_official.count_gflop(lambda: e(torch.zeros(1, 3, 256, 256, device="meta")))
    assert g_gflop == pytest.approx(441.7, rel=2e-3)
    assert e_gflop == pytest.approx(93.6, rel=5e-3)


def test_small_run_writes_every_row_with_its_flops_and_bound(tmp_path: Path) -> None:
    out = tmp_path / "official.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_official.py"), "--size", "16", "--spatial", "8",
         "--parts", "encoder,train", "--batches", "1", "--train-batches", "1", "--repeats", "1",
         "--train-repeats", "1", "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    rows = {row["part"]: row for row in result["rows"]}
    assert set(rows) == {"encoder", "train"}
    for row in rows.values():
        assert row["official_gflop"] > 0 and row["ours_gflop"] > 0 and row["peak_gflops"] > 0
        # a single round: the bound is exactly official CPU time x peak / ours FLOPs
        assert row["bound"] == pytest.approx(row["official_cpu_s"] * row["peak_gflops"] / row["ours_gflop"])
        assert row["bound"] == pytest.approx(row["official_gflop"] / row["ours_gflop"]
                                             / row["official_peak_fraction"])
    # same network math on both sides: FLOPs within 1% (ours skips none of the official convs' work at 16 px)
    assert rows["encoder"]["ours_gflop"] == pytest.approx(rows["encoder"]["official_gflop"], rel=0.01)
    # backward is counted: a training step is at least twice the forward work of E alone
    assert rows["train"]["ours_gflop"] > 2 * rows["encoder"]["ours_gflop"]
    assert result["peak"]["conv_gflops"] > 0 and "load_after" in result
    assert "bound" in proc.stdout and "encoder" in proc.stdout.split("part")[-1]


def test_bad_batches_exit_2_naming_the_flag() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_official.py"), "--batches", "1,x"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "--batches" in proc.stderr
