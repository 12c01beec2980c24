"""`stylemapgan compare`: two real tiny models of both families (StyleMapGAN `tiny`, SemanticStyleGAN
`semantic-tiny` with an encoder) on a tiny labelled dataset, end to end through the CLI.

The dataset is the semantic model's own renders (32 px, and the same images at 16 px for the StyleMapGAN model)
with its segmentation as part masks, so both models can edit every part. The compare numbers are checked against
`stylemapgan eval` run separately on the same model and faces (an independent path through the same protocol).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from image_fixtures import needs_inception, png_bytes
from stylemapgan.checkpoint import fresh_checkpoint, load_checkpoint, save_checkpoint
from stylemapgan.cli import main
from stylemapgan.config import get_preset
from stylemapgan.data import DatasetWriter
from stylemapgan.editing.semantic import SemanticEditor
from stylemapgan.metrics.compare import (
    README_BEGIN,
    README_END,
    ROWS,
    compare_markdown,
    readme_block,
    replace_readme_block,
)
from stylemapgan.metrics.inception import to_uint8
from stylemapgan.semantic.encoder import SemanticEncoder

pytestmark = pytest.mark.usefixtures("one_thread")

N_TRAIN, N_TEST, NUM = 4, 8, 4
SWAPS = ("part1", "part2", "background")



@dataclass
class Setup:
    root: Path
    smg: Path  # StyleMapGAN tiny (16 px), with its encoder
    sem: Path  # SemanticStyleGAN tiny (32 px), with an encoder
    sem_plain: Path  # the same without an encoder
    data: Path  # 32 px and 16 px, part masks = the semantic model's parts
    bare: Path  # the same images without masks
    images32: np.ndarray  # test faces, uint8 [N, 32, 32, 3]


def _write(out: Path, images: np.ndarray, labels: np.ndarray | None, parts: list[str]) -> Path:
    with DatasetWriter(out, log=lambda m: None) as writer:
        for i, image in enumerate(images):
            small = np.asarray(Image.fromarray(image).resize((16, 16), Image.Resampling.LANCZOS))
            masks = None
            if labels is not None:
                masks = {32: png_bytes(labels[i]), 16: png_bytes(np.asarray(Image.fromarray(labels[i]).resize(
                    (16, 16), Image.Resampling.NEAREST)))}
            writer.add({32: png_bytes(image), 16: png_bytes(small)}, masks=masks)
        meta = {"name": "generated", "description": "semantic-tiny renders", "source": {"type": "synthetic"},
                "licence": "CC0", "resize_filter": "lanczos", "square": "native"}
        if labels is not None:
            meta["masks"] = {"format": "label-map-png", "parts": parts}
        return writer.finish(meta, {"train": range(N_TRAIN), "test": range(N_TRAIN, N_TRAIN + N_TEST)})


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("compare")
    smg = root / "smg-tiny.safetensors"
    save_checkpoint(smg, fresh_checkpoint(get_preset("tiny").model, 0, "test"))
    sem_plain = root / "sem-plain.safetensors"
    assert main(["init", "--preset", "semantic-tiny", "--out", str(sem_plain)]) == 0
    ckpt = load_checkpoint(sem_plain)
    plain = SemanticEditor.from_loaded(ckpt, str(sem_plain), "cpu")
    encoder = SemanticEncoder(plain.config).eval()  # untrained; last layer seeded so each face gets its own codes
    encoder.set_mean_latent(plain.mean_w())
    with torch.no_grad():
        encoder.to_latents.weight.copy_(torch.randn(encoder.to_latents.weight.shape,
                                                    generator=torch.Generator().manual_seed(0)) * 0.05)
    ckpt.networks["e_ema"] = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    sem = root / "sem-enc.safetensors"
    save_checkpoint(sem, ckpt)
    samples = plain.sample(list(range(100, 100 + N_TRAIN + N_TEST)))
    images = to_uint8(samples.images).permute(0, 2, 3, 1).numpy()
    labels = samples.segmentation.argmax(1).to(torch.uint8).numpy()
    parts = list(plain.capabilities.parts)
    data = _write(root / "gen", images, labels, parts)
    bare = _write(root / "bare", images, None, parts)
    return Setup(root, smg, sem, sem_plain, data, bare, images[N_TRAIN:])


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line.strip()], captured.out


def compare_args(s: Setup, out: Path, *extra: str) -> list[str]:
    return ["compare", "--ckpt", str(s.smg), "--ckpt", str(s.sem), "--data", str(s.data), "--num", str(NUM),
            "--steps", "1", "--lpips", "stlpips-alex", "--swaps", ",".join(SWAPS), "--pair", "0,5", "--repeats",
            "2", "--warmup", "1", "--kid-subsets", "2", "--feature-batch", "8", "--stats-cache",
            str(s.root / "stats"), "--device", "cpu", "--no-progress", "--outdir", str(out), *extra]


@pytest.fixture(scope="module")
def compared(setup: Setup) -> tuple[Path, dict]:
    out = setup.root / "out"
    assert main(compare_args(setup, out)) == 0
    return out, json.loads((out / "compare.json").read_text())


@needs_inception
def test_every_metric_of_every_model_is_a_number(setup: Setup, compared: tuple[Path, dict]) -> None:
    out, record = compared
    assert record["format"] == "stylemapgan-compare"
    assert [m["family"] for m in record["models"]] == ["StyleMapGAN", "SemanticStyleGAN"]
    assert [m["name"] for m in record["models"]] == ["smg-tiny", "sem-enc"]
    smg_control = record["models"][0]["metrics"]["part_control"]  # StyleMapGAN has no part codes: n/a, why
    assert smg_control["value"] is None and "no per-part shape and texture codes" in smg_control["reason"]
    assert 0 <= record["models"][1]["metrics"]["part_control"]["value"] <= 1
    assert set(record["models"][1]["part_control"]) == {"background", "part1", "part2", "part3", "part4"}
    for m in record["models"]:
        assert set(m["metrics"]) == {key for key, _, _ in ROWS}, m["name"]
        for key, entry in m["metrics"].items():
            if m is record["models"][0] and key == "part_control":
                continue
            assert isinstance(entry["value"], float) and math.isfinite(entry["value"]), (m["name"], key, entry)
            assert "reason" not in entry
        assert 0 < m["metrics"]["recon_mse_encoder"]["value"] < 4
        assert m["metrics"]["recon_mse_optimized"]["projection_steps"] == 1
        assert m["metrics"]["fid"]["value"] > 0 and m["metrics"]["fid"]["num_generated"] == NUM
        assert m["metrics"]["encode_ms"]["value"] > 0 and m["metrics"]["edit_ms"]["repeats"] == 2
        assert set(m["per_part"]) == {"background", "part1", "part2", "part3", "part4"}
        scored = [v for v in m["per_part"].values() if v["mse_ref"] is not None]
        assert len(scored) >= 3, m["per_part"]
        for v in m["per_part"].values():  # a part without a number says why
            assert (v["mse_src"] is not None and v["mse_ref"] is not None) or v["reason"], v
    p, env = record["protocol"], record["environment"]
    assert (p["num"], p["steps"], p["projection"], p["fid"]["real_split"], p["fid"]["num_real"]) == (
        NUM, 1, "hybrid", "test", N_TEST)
    assert p["local_edit"]["pairs_seed"] is None and "IoU" in p["local_edit"]["pairing"]
    assert p["latency"]["threads"] == env["threads"] == torch.get_num_threads() == 1
    assert env["torch"] == torch.__version__ and env["cpu"] and "commit" in env
    command = record["command"]
    assert command[:6] == ["stylemapgan", "compare", "--ckpt", str(setup.smg), "--ckpt", str(setup.sem)]
    assert command[command.index("--threads") + 1] == "1" and command[-2:] == ["--outdir", str(out)]


@needs_inception
def test_numbers_equal_what_eval_reports(setup: Setup, compared: tuple[Path, dict], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`stylemapgan eval` on the same model and faces (its own process state, its own editor): the same MSEs."""
    _, record = compared
    common = ["--data", str(setup.data), "--num", str(NUM), "--lpips", "stlpips-alex", "--device", "cpu", "--quiet"]
    for m, ckpt in zip(record["models"], (setup.smg, setup.sem), strict=True):
        enc, opt = tmp_path / f"{m['name']}-enc.json", tmp_path / f"{m['name']}-opt.json"
        assert main(["eval", "--ckpt", str(ckpt), "--metrics", "recon,local_edit", *common, "--out", str(enc)]) == 0
        assert main(["eval", "--ckpt", str(ckpt), "--metrics", "recon", "--projection", "hybrid",
                     "--projection-steps", "1", *common, "--out", str(opt)]) == 0
        by_eval = json.loads(enc.read_text())["metrics"]
        optimised = json.loads(opt.read_text())["metrics"]["recon"]
        got = m["metrics"]
        assert got["recon_mse_encoder"]["value"] == pytest.approx(by_eval["recon"]["mse"], abs=1e-6)
        assert got["recon_lpips_encoder"]["value"] == pytest.approx(by_eval["recon"]["lpips"], abs=1e-6)
        assert got["recon_mse_optimized"]["value"] == pytest.approx(optimised["mse"], abs=1e-6)
        assert got["local_edit_mse_src"]["value"] == pytest.approx(by_eval["local_edit"]["mse_src"], abs=1e-6)
        assert got["local_edit_mse_ref"]["value"] == pytest.approx(by_eval["local_edit"]["mse_ref"], abs=1e-6)
        for part, v in by_eval["local_edit"]["per_part"].items():
            pairs = m["reports"]["local_edit"]["metrics"]["local_edit"]["per_part"][part]["pairs_list"]
            assert pairs == v["pairs_list"]
            for key in ("mse_src", "mse_ref"):
                if v[key] is None:
                    assert m["per_part"][part][key] is None
                else:
                    assert m["per_part"][part][key] == pytest.approx(v[key], abs=1e-6), (m["name"], part, key)
    capsys.readouterr()


@needs_inception
def test_gallery_is_models_by_source_reference_and_swaps(setup: Setup, compared: tuple[Path, dict]) -> None:
    out, record = compared
    tile = 32  # the largest model's size; the 16 px model's tiles are upsampled
    with Image.open(out / "gallery.png") as im:
        assert im.size == ((2 + len(SWAPS)) * tile, 2 * tile)
        grid = np.asarray(im.convert("RGB"))
    assert record["protocol"]["gallery"]["columns"] == ["source", "reference", *SWAPS]
    sem_row = grid[tile:]
    assert np.array_equal(sem_row[:, :tile], setup.images32[0])  # the 32 px model's row shows the faces as they are
    assert np.array_equal(sem_row[:, tile : 2 * tile], setup.images32[5])
    swaps = [grid[:, (2 + k) * tile : (3 + k) * tile] for k in range(len(SWAPS))]
    for k, swap in enumerate(swaps):  # each model made its own edit of each swap
        assert not np.array_equal(swap[:tile], swap[tile:]), SWAPS[k]
    assert all(not m["gallery"]["missing"] for m in record["models"])


@needs_inception
def test_markdown_is_the_record_rendered_and_fills_a_readme_block(compared: tuple[Path, dict]) -> None:
    out, record = compared
    md = (out / "compare.md").read_text()
    assert md == compare_markdown(record)  # rendering is a function of the JSON alone
    lines = md.splitlines()
    assert "| metric | smg-tiny | sem-enc |" in lines
    assert "| part | smg-tiny | sem-enc |" in lines
    assert any(line.startswith("| Reconstruction MSE, hybrid 1 steps |") for line in lines)
    assert any(line.startswith("| background |") for line in lines)
    assert sum(line.startswith("| ") for line in lines) == 1 + len(ROWS) + 1 + 5  # headers, metrics, parts
    mse = record["models"][1]["metrics"]["recon_mse_encoder"]["value"]
    assert f"| Reconstruction MSE, encoder | {record['models'][0]['metrics']['recon_mse_encoder']['value']:.4f} | " \
           f"{mse:.4f} |" in lines
    readme = f"# Title\n\nbefore\n\n{README_BEGIN}\nplaceholder\n{README_END}\n\nafter\n"
    filled = replace_readme_block(readme, md)
    assert readme_block(filled) == md and filled.endswith(f"{README_END}\n\nafter\n")
    assert filled.startswith("# Title\n\nbefore\n\n")


def test_a_metric_a_model_cannot_compute_is_na_with_its_reason(
        setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A SemanticStyleGAN model without an encoder: the encoder rows and the encode latency are n/a with why;
    what it can do (optimisation from the mean, the edit) is scored."""
    out = tmp_path / "out"
    args = compare_args(setup, out, "--metrics", "recon,latency", "--projection", "optimize", "--lpips", "none",
                        "--no-gallery")
    args[args.index(str(setup.sem))] = str(setup.sem_plain)
    code, err, stdout = run_cli(args, capsys)
    assert code == 0, err
    record = json.loads((out / "compare.json").read_text())
    smg, sem = record["models"]
    for key in ("recon_mse_encoder", "encode_ms"):
        assert sem["metrics"][key]["value"] is None and "needs an encoder" in sem["metrics"][key]["reason"]
        assert smg["metrics"][key]["value"] > 0
    assert sem["metrics"]["recon_mse_optimized"]["value"] > 0 and sem["metrics"]["edit_ms"]["value"] > 0
    assert sem["metrics"]["recon_lpips_optimized"] == {"value": None, "reason": "--lpips none",
                                                       **{k: sem["metrics"]["recon_lpips_optimized"][k]
                                                          for k in ("num", "projection", "projection_steps")}}
    assert not (out / "gallery.png").exists() and "fid" not in sem["metrics"]
    md = (out / "compare.md").read_text()
    assert "| Reconstruction MSE, encoder | " in md and " | n/a |" in md
    assert "- `sem-plain`, Reconstruction MSE, encoder: cannot encode the test faces (encoder):" in md
    assert md in stdout


@pytest.mark.parametrize(("case", "message"), [
    ("one model", "--ckpt: compare needs at least 2 models, got 1"),
    ("unknown ckpt", "no-such-model: no such checkpoint file or bundled model"),
    ("same model twice", "the same model as --ckpt"),
    ("no masks", "has no part masks, needed by local_edit, latency, the gallery"),
    ("num too large", f"--num {N_TEST + 1}: the test split of"),
    ("unknown swap", "part 'hair': unknown; the masks have background, part1"),
    ("pair out of range", "--pair: test face 9 does not exist (8 test faces)"),
    ("steps 0", "--steps: must be >= 1, got 0"),
    ("kid subsets 0", "--kid-subsets: must be >= 1, got 0"),
    ("unknown metric", "--metrics: unknown psnr"),
    ("outdir is a file", "exists and is not a folder (--outdir)"),
    ("readme without markers", f"needs one {README_BEGIN} line"),
])
def test_bad_input_is_refused_in_one_line_before_any_work(
        setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str) -> None:
    out = tmp_path / "out"
    args = compare_args(setup, out)
    edits = {
        "one model": lambda a: a[:1] + a[3:],
        "unknown ckpt": lambda a: [*a, "--ckpt", "no-such-model"],
        "same model twice": lambda a: [*a, "--ckpt", str(setup.smg)],
        "no masks": lambda a: [*a, "--data", str(setup.bare)],
        "num too large": lambda a: [*a, "--num", str(N_TEST + 1)],
        "unknown swap": lambda a: [*a, "--swaps", "hair"],
        "pair out of range": lambda a: [*a, "--pair", "0,9"],
        "steps 0": lambda a: [*a, "--steps", "0"],
        "kid subsets 0": lambda a: [*a, "--kid-subsets", "0"],
        "unknown metric": lambda a: [*a, "--metrics", "recon,psnr"],
        "outdir is a file": lambda a: [*a, "--outdir", str(tmp_path / "file")],
        "readme without markers": lambda a: [*a, "--readme", str(tmp_path / "README.md")],
    }
    (tmp_path / "file").write_text("x")
    (tmp_path / "README.md").write_text("# no markers\n")
    code, err, _ = run_cli(edits[case](args), capsys)
    assert code == 2 and len(err) == 1, err
    assert message in err[0] and err[0].startswith("stylemapgan compare: error: ")
    assert not out.exists() and (tmp_path / "README.md").read_text() == "# no markers\n"


def test_one_lpips_network_serves_every_evaluate_call(
        setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """compare builds the LPIPS network once and hands it to each `evaluate` call (recon of both models, encoder
    and optimised: four calls), which would otherwise build one each."""
    from stylemapgan.losses import perceptual

    built: list[str] = []
    build = perceptual.build_perceptual
    monkeypatch.setattr(perceptual, "build_perceptual", lambda kind: built.append(kind) or build(kind))
    code, err, _ = run_cli(compare_args(setup, tmp_path / "out", "--metrics", "recon", "--no-gallery"), capsys)
    assert code == 0, err
    assert built == ["stlpips-alex"]


def test_evaluate_refuses_a_perceptual_network_of_another_kind() -> None:
    from stylemapgan.losses.perceptual import build_perceptual
    from stylemapgan.metrics import EvalOptions, MetricsError, evaluate

    with pytest.raises(MetricsError, match="a stlpips-alex network, but the options ask for --lpips stlpips-vgg"):
        evaluate(None, "unused", EvalOptions(metrics=("recon",)), perceptual=build_perceptual("stlpips-alex"))


def test_the_readme_block_is_what_the_command_renders() -> None:
    """The README's comparison table is `compare.md` of the record its command wrote (docs/compare/compare.json,
    committed with the table); until that record exists the block is the placeholder naming the command."""
    repo = Path(__file__).resolve().parents[1]
    readme = (repo / "README.md").read_text(encoding="utf-8")
    block = readme_block(readme)
    command = next(line for line in readme.splitlines() if line.startswith("stylemapgan compare "))
    record_file = repo / command.split("--outdir ")[1].split()[0] / "compare.json"
    if record_file.is_file():
        record = json.loads(record_file.read_text(encoding="utf-8"))
        assert block == compare_markdown(record)
        assert record["command"][:2] == ["stylemapgan", "compare"]
    else:
        assert "will be filled by the command above" in block and "cartoon-faces-semantic" in command


def test_column_names_are_short_and_distinct() -> None:
    from stylemapgan.metrics.compare import column_names

    assert column_names(["cartoon-faces", "runs/sem/checkpoints/ckpt-0002000.safetensors", "runs/sem-enc",
                         "a/m.safetensors", "b/m.safetensors", "b/m.pt"]) == [
        "cartoon-faces", "sem/ckpt-0002000", "sem-enc", "m", "m#2", "m#3"]
