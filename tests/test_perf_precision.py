"""Automatic precision (`stylemapgan.runtime.precision`): what "auto" picks, the --dtype flags, and the error of
bf16 against fp32 (BF16_PSNR_BOUND_DB, the bound the README documents)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylemapgan.checkpoint import fresh_checkpoint, save_checkpoint
from stylemapgan.cli import build_parser, main
from stylemapgan.config import get_preset
from stylemapgan.editing import Editor, RectangleMask, rectangle_mask
from stylemapgan.networks import Encoder, Generator
from stylemapgan.runtime import precision
from stylemapgan.runtime.precision import (
    auto_dtype,
    bf16_speedup_cpu,
    cpu_features,
    cpu_has_bf16_units,
    parse_cpu_flags,
    resolve_dtype,
)

# bf16 against fp32 on the tiny preset (random weights), worst of the reconstructions and w / w_plus edits below:
# measured 45.5 dB (the shipped cartoon-faces model: 44.7 dB on random inputs, 48.4 dB on its own generated
# faces); the README quotes these
BF16_PSNR_BOUND_DB = 40.0

XEON_AMX = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R)\n"
            "flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
EPYC = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx avx2 fma\n"


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of images in [-1, 1] (peak-to-peak 2)."""
    return (10 * torch.log10(4.0 / ((a.float() - b.float()) ** 2).mean())).item()


def test_cpu_flags_decide_whether_bf16_units_exist() -> None:
    amx = {name: name in parse_cpu_flags(XEON_AMX) for name in precision.ISA_FEATURES}
    assert amx == {"avx2": True, "avx512f": True, "avx512_bf16": True, "amx_bf16": True, "amx_tile": True}
    assert cpu_has_bf16_units(amx)
    epyc = {name: name in parse_cpu_flags(EPYC) for name in precision.ISA_FEATURES}
    assert epyc["avx2"] and not epyc["avx512f"] and not cpu_has_bf16_units(epyc)
    assert not cpu_has_bf16_units(dict.fromkeys(precision.ISA_FEATURES))  # unknown counts as absent
    assert set(cpu_features()) == set(precision.ISA_FEATURES)


def test_auto_follows_the_measured_speedup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "bf16_speedup_cpu", lambda: None)  # no bf16 units: nothing measured
    assert auto_dtype("cpu") == torch.float32
    monkeypatch.setattr(precision, "bf16_speedup_cpu", lambda: 1.1)  # units, but not faster enough
    assert auto_dtype("cpu") == torch.float32
    monkeypatch.setattr(precision, "bf16_speedup_cpu", lambda: 6.8)
    assert auto_dtype("cpu") == torch.bfloat16 and resolve_dtype("auto") == torch.bfloat16
    assert resolve_dtype("fp32") == torch.float32 and resolve_dtype("bf16") == torch.bfloat16  # forced: as given
    assert auto_dtype("cuda") == torch.float32  # the GPU's precision is chosen explicitly
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("fp16")


def test_auto_here_is_what_this_cpu_measures() -> None:
    """On a CPU without bf16 units (the project's AMD EPYC: AVX2 only) "auto" is fp32 and nothing is measured;
    on one with them, bf16 exactly where it measured faster."""
    speedup = bf16_speedup_cpu()
    if not cpu_has_bf16_units():
        assert speedup is None and auto_dtype("cpu") == torch.float32
    else:
        assert speedup is not None and speedup > 0
        assert (auto_dtype("cpu") == torch.bfloat16) == (speedup >= precision.MIN_BF16_SPEEDUP)
    config = get_preset("tiny").model
    torch.manual_seed(0)
    editor = Editor(Generator(config), Encoder(config))  # the default is "auto"
    assert editor.runner.dtype == auto_dtype("cpu")
    assert Editor(editor.generator, editor.encoder, dtype="fp32").runner.dtype == torch.float32
    assert Editor(editor.generator, editor.encoder, backend="onnx").runner.backend == "onnx"  # auto: fp32 there


def test_forced_bf16_stays_within_the_documented_bound_of_fp32() -> None:
    config = get_preset("tiny").model
    torch.manual_seed(0)
    g, e = Generator(config), Encoder(config)
    fp32, bf16 = Editor(g, e, dtype="fp32"), Editor(g, e, dtype="bf16")
    assert bf16.runner.dtype == torch.bfloat16
    size = config.size
    images = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    mask = rectangle_mask(RectangleMask(size // 4, size // 4, 3 * size // 4, 3 * size // 4), size)
    worst = float("inf")
    for i in (0, 2):
        outs = []
        for editor in (fp32, bf16):
            src, ref = editor.encode(images[i]), editor.encode(images[i + 1])
            mods = editor.modulations(src)
            assert all(m.dtype == torch.float32 for m in mods)  # the caches stay fp32
            outs.append([editor.reconstruct(src), editor.local_edit(src, [ref], [mask], mode="w_plus"),
                         editor.local_edit(src, [ref], [mask], mode="w")])
        for a, b in zip(*outs, strict=True):
            assert b.dtype == torch.float32 and not torch.equal(a, b)  # bf16 really ran
            worst = min(worst, psnr_db(a, b))
    assert worst > BF16_PSNR_BOUND_DB, worst


@pytest.mark.parametrize("command", ["edit", "project", "generate", "serve", "transplant"])
def test_dtype_flag_on_the_model_commands(command: str) -> None:
    parser = build_parser()
    required = {"edit": ["--outdir", "o", "--source", "a", "--reference", "b", "--mask", "hair"],
                "project": ["a.png", "--outdir", "o"], "generate": ["--outdir", "o", "--seeds", "0"], "serve": [],
                "transplant": ["--outdir", "o", "--source", "a", "--reference", "b", "--rect", "0,0,1,1",
                               "--to", "0,0"]}[command]
    assert parser.parse_args([command, *required]).dtype == "auto"
    assert parser.parse_args([command, *required, "--dtype", "fp32"]).dtype == "fp32"
    with pytest.raises(SystemExit):
        parser.parse_args([command, *required, "--dtype", "fp16"])


def test_generate_dtype_reaches_the_networks(tmp_path: Path) -> None:
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(ckpt, fresh_checkpoint(get_preset("tiny").model, 0, "test"))
    images = {}
    for dtype in ("fp32", "bf16", "auto"):
        out = tmp_path / dtype
        assert main(["generate", "--ckpt", str(ckpt), "--seeds", "0-1", "--outdir", str(out), "--dtype", dtype,
                     "--threads", "1", "--no-progress"]) == 0
        images[dtype] = torch.from_numpy(np.asarray(Image.open(out / "seed0001.png"), dtype=np.float32) / 127.5 - 1)
    assert not torch.equal(images["fp32"], images["bf16"])  # the flag took effect
    assert psnr_db(images["fp32"], images["bf16"]) > BF16_PSNR_BOUND_DB - 5  # 8-bit PNGs round both
    if auto_dtype("cpu") == torch.float32:
        assert torch.equal(images["auto"], images["fp32"])  # where bf16 is not faster nothing changes
