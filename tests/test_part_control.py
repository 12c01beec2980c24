"""part_control (`eval --metrics part_control`, a compare row): does each part's code control its region?

Checked against an independent computation (the generator's own mapping and synthesize, the W+ rows of each part
from the config's layout, masks and 8-bit rounding by hand), on a constructed case whose answer is known (b = a:
0/0, not scored), and through both commands: a StyleMapGAN model is refused by eval in one line and n/a in compare.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from image_fixtures import png_bytes
from stylemapgan.checkpoint import build_network, fresh_checkpoint, load_checkpoint, save_checkpoint
from stylemapgan.cli import main
from stylemapgan.config import get_preset
from stylemapgan.data import DatasetWriter
from stylemapgan.editing.semantic import SemanticEditor
from stylemapgan.metrics import EvalOptions, MetricsError, evaluate
from stylemapgan.metrics.part_control import reference_seeds, score_part_control
from stylemapgan.metrics.scored_model import scored_model

pytestmark = pytest.mark.usefixtures("one_thread")

PAIRS = 3


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(semantic-tiny, StyleMapGAN tiny) checkpoints."""
    root = tmp_path_factory.mktemp("part-control")
    sem, smg = root / "sem.safetensors", root / "smg.safetensors"
    assert main(["init", "--preset", "semantic-tiny", "--out", str(sem)]) == 0
    save_checkpoint(smg, fresh_checkpoint(get_preset("tiny").model, 0, "test"))
    return sem, smg


def _by_hand(ckpt_path: Path, seed: int, pairs: int) -> dict[str, dict[str, float | int]]:
    """The definition, computed without the editor or the metric: pooled sums over R per part."""
    ckpt = load_checkpoint(ckpt_path)
    g, cfg = build_network(ckpt, "g_ema").eval(), ckpt.config
    names = list(SemanticEditor.from_loaded(ckpt, str(ckpt_path), "cpu").capabilities.parts)

    def render(latents: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        out = g.synthesize(latents, randomize_noise=False)
        image = ((out.image.clamp(-1, 1) + 1) * 127.5 + 0.5).floor().clamp(0, 255).double() / 127.5 - 1
        return image.numpy(), out.segmentation.argmax(1)

    def codes(first: int) -> torch.Tensor:
        z = torch.stack([torch.randn(cfg.style_dim, generator=torch.Generator().manual_seed((seed << 32) + first + i))
                         for i in range(pairs)])
        return g.mapping(z)[:, None].expand(-1, cfg.n_latent, -1).clone()  # W+: w in every row

    with torch.no_grad():
        la, lb = codes(0), codes(1 << 31)
        (ia, sa), (ib, sb) = render(la), render(lb)
        result = {}
        for k, name in enumerate(names):
            rows = [cfg.base_layers + 2 * k, cfg.base_layers + 2 * k + 1]  # shape, texture
            swapped = la.clone()
            swapped[:, rows] = lb[:, rows]
            out, _ = render(swapped)
            region = ((sa == k) & (sb == k)).numpy()[:, None].repeat(3, 1)
            n = int(region.sum())
            result[name] = {"pixels": n // 3, "mse_ref": ((out - ib) ** 2)[region].sum() / n if n else None,
                            "mse_src": ((out - ia) ** 2)[region].sum() / n if n else None,
                            "mse_ab": ((ia - ib) ** 2)[region].sum() / n if n else None}
    return result


def test_equals_the_definition_computed_by_hand(models: tuple[Path, Path]) -> None:
    sem, _ = models
    editor = SemanticEditor.from_checkpoint(sem, device="cpu", batch_size=8)
    report = evaluate(editor, None, EvalOptions(metrics=("part_control",), num=PAIRS, seed=1, progress=False))
    got = report["metrics"]["part_control"]
    want = _by_hand(sem, 1, PAIRS)
    assert list(got["per_part"]) == list(editor.capabilities.parts) == list(want)
    scored = []
    for name, w in want.items():
        v = got["per_part"][name]
        assert v["pixels"] == w["pixels"], name
        for key in ("mse_ref", "mse_src", "mse_ab"):
            assert (v[key] is None) == (w[key] is None) and (v[key] is None or abs(v[key] - w[key]) < 1e-6), name
        if w["pixels"]:
            control = w["mse_src"] / (w["mse_src"] + w["mse_ref"])
            assert 0 <= v["control"] <= 1 and abs(v["control"] - control) < 1e-6, name
            scored.append(control)
        else:
            assert v["control"] is None and "no pixel" in v["reason"], name
    assert len(scored) >= 2, got["per_part"]  # the check compares numbers, not only Nones
    assert got["parts_scored"] == len(scored) and abs(got["mean"] - sum(scored) / len(scored)) < 1e-6
    assert got["pairs"] == PAIRS and report["dataset"] == {} and report["settings"]["metrics"] == ["part_control"]


def test_the_same_codes_on_both_sides_are_0_over_0_not_scored(models: tuple[Path, Path]) -> None:
    """b = a: the swap changes nothing, so src = ref = 0 on every region: not a 0 or a 1, not scored, with why."""
    sem, _ = models
    model = scored_model(SemanticEditor.from_checkpoint(sem, device="cpu"))
    seeds = reference_seeds(0, 2)
    entries = [s.report() for s in score_part_control(model, seeds, seeds, batch=1)]
    assert any(e["pixels"] for e in entries)
    for e in entries:
        assert e["control"] is None
        if e["pixels"]:
            assert e["mse_src"] == e["mse_ref"] == e["mse_ab"] == 0 and "(0/0)" in e["reason"]
        else:
            assert "no pixel" in e["reason"]
    with pytest.raises(MetricsError, match="as many a seeds as b seeds"):
        score_part_control(model, seeds, seeds[:1])


def test_a_stylemapgan_model_is_refused_in_one_line_and_only_part_control_runs_without_data(
        models: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sem, smg = models
    out = tmp_path / "r.json"
    code = main(["eval", "--ckpt", str(smg), "--metrics", "part_control", "--num", "2", "--device", "cpu",
                 "--no-progress", "--out", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("stylemapgan eval: error: --metrics part_control: a StyleMapGAN model has no per-part "
                             "shape and texture codes to swap and no segmentation of its renders"), err
    assert not out.exists()
    code = main(["eval", "--ckpt", str(sem), "--metrics", "recon,part_control", "--out", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and err == ["stylemapgan eval: error: --data: needed by recon"] and not out.exists()


def test_eval_cli_writes_the_report_and_its_per_part_table(
        models: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sem, _ = models
    out = tmp_path / "r.json"
    assert main(["eval", "--ckpt", str(sem), "--metrics", "part_control", "--num", str(PAIRS), "--seed", "1",
                 "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    report = json.loads(out.read_text())
    control = report["metrics"]["part_control"]
    parts = list(SemanticEditor.from_checkpoint(sem, device="cpu").capabilities.parts)
    assert list(control["per_part"]) == parts and control["pairs"] == PAIRS
    by_api = evaluate(SemanticEditor.from_checkpoint(sem, device="cpu"), None,
                      EvalOptions(metrics=("part_control",), num=PAIRS, seed=1, progress=False))
    assert control["per_part"] == by_api["metrics"]["part_control"]["per_part"]
    md = out.with_suffix(".md").read_text()
    assert "on its own samples (no dataset)" in md and "| Part control (mean of parts) |" in md
    assert "| part | control | MSE to b (ref) | MSE to a (src) | MSE a-b | pixels |" in md
    for part in parts:
        v = control["per_part"][part]
        assert f"| {part} | " in md and (v["control"] is not None or v["reason"] in md)
    assert "Part control (mean of parts)" in stdout


def _dataset(root: Path) -> Path:
    """Two train and two test images at 16 and 32 px, no masks: part_control reads no data, compare opens it."""
    rng = np.random.default_rng(0)
    with DatasetWriter(root, log=lambda m: None) as writer:
        for _ in range(4):
            image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            small = np.asarray(Image.fromarray(image).resize((16, 16), Image.Resampling.LANCZOS))
            writer.add({32: png_bytes(image), 16: png_bytes(small)})
        meta = {"name": "noise", "description": "random pixels", "source": {"type": "synthetic"}, "licence": "CC0",
                "resize_filter": "lanczos", "square": "native"}
        return writer.finish(meta, {"train": range(2), "test": range(2, 4)})


def test_compare_shows_it_per_model_and_na_with_why(
        models: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sem, smg = models
    out = tmp_path / "out"
    code = main(["compare", "--ckpt", str(smg), "--ckpt", str(sem), "--data", str(_dataset(tmp_path / "data")),
                 "--num", "2", "--metrics", "part_control", "--no-gallery", "--device", "cpu", "--no-progress",
                 "--outdir", str(out)])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "compare.json").read_text())
    smg_entry, sem_entry = record["models"]
    assert smg_entry["metrics"]["part_control"]["value"] is None
    assert "no per-part shape and texture codes" in smg_entry["metrics"]["part_control"]["reason"]
    by_eval = evaluate(SemanticEditor.from_checkpoint(sem, device="cpu"), None,
                       EvalOptions(metrics=("part_control",), num=2, progress=False))["metrics"]["part_control"]
    assert sem_entry["metrics"]["part_control"]["value"] == pytest.approx(by_eval["mean"], abs=1e-12)
    assert sem_entry["part_control"] == {p: v["control"] for p, v in by_eval["per_part"].items()}
    md = (out / "compare.md").read_text()
    assert f"| Part control (mean of parts, 2 sampled pairs) | n/a | {by_eval['mean']:.4f} |" in md
    assert "- `smg`, Part control (mean of parts, 2 sampled pairs): a StyleMapGAN model has no per-part" in md
    line = next(row for row in md.splitlines() if row.startswith("- `sem`: "))
    assert line.count(",") == len(by_eval["per_part"]) - 1 and "background " in line
    assert "part control on 2 sampled pairs (generator only)" in md
