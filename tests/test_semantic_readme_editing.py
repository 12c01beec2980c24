"""Every editing command of the README on a SemanticStyleGAN checkpoint (issue 23): project (encoder, optimize,
hybrid, pivotal tuning, W+ / expanded), generate, edit (part swaps by shape / texture, several references,
frames, removal, dataset items), interpolate (whole code and one part), mix, directions (supervised per part from
dataset labels, PCA, SeFa) and attribute (--part); and the one-line refusals of what the model cannot do.

The model is a random `semantic-tiny` generator with an encoder that `train-encoder` fitted for two iterations;
the inputs are real image files (PNG) and a tiny labelled dataset with part masks. The commands run in-process
(`stylemapgan.cli.main`). Every segmentation colour map is checked against the model's own segmentation of the
saved latents, every saved code against the latent operation the command promises.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from stylemapgan.checkpoint import fresh_checkpoint, save_checkpoint
from stylemapgan.cli import main
from stylemapgan.config import get_preset
from stylemapgan.data import DatasetWriter
from stylemapgan.editing import Editor, SemanticEditor, load_directions
from stylemapgan.editing.images import prepare_pil
from stylemapgan.editing.parts import composition_mask, part_rows
from stylemapgan.semantic import SEMANTIC_PRESETS
from stylemapgan.semantic.io import class_color, load_official_latents
from stylemapgan.utils.images import to_uint8

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = SEMANTIC_PRESETS["semantic-tiny"].model  # 32 px, 5 parts, W+ 11 x 32, expanded 20 x 32
PARTS = ["background", "face", "hair", "eyes", "mouth"]
HAIR, EYES, MOUTH = 2, 3, 4
CPU = ["--device", "cpu", "--no-progress"]


def draw_face(rng: np.random.Generator, long_hair: bool, size: int = 32) -> tuple[Image.Image, Image.Image]:
    """A drawn face and its label map (pixel = part index of PARTS)."""
    colors = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in PARTS]
    image, labels, s = Image.new("RGB", (size, size), colors[0]), Image.new("L", (size, size), 0), size
    hair = s // 3 if long_hair else s // 6
    for target, fill in ((image, lambda k: colors[k]), (labels, lambda k: k)):
        draw = ImageDraw.Draw(target)
        draw.ellipse((s // 6, s // 6, 5 * s // 6, 5 * s // 6), fill=fill(1))
        draw.rectangle((s // 6, s // 8, 5 * s // 6, s // 8 + hair), fill=fill(HAIR))
        draw.rectangle((s // 3, s // 2 - 2, s // 3 + 3, s // 2 + 1), fill=fill(EYES))
        draw.rectangle((2 * s // 3 - 3, s // 2 - 2, 2 * s // 3, s // 2 + 1), fill=fill(EYES))
        draw.rectangle((s // 3, 2 * s // 3, 2 * s // 3, 2 * s // 3 + 2), fill=fill(MOUTH))
    return image, labels


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sem.safetensors (no encoder), enc/ (train-encoder's run: the generator with an encoder), smg.safetensors (a
    StyleMapGAN model), data/ (12 labelled faces with part masks: 8 train, 4 test), face0-3.png and wide.png."""
    root = tmp_path_factory.mktemp("sem-readme")
    sem = fresh_checkpoint(TINY, seed=0, source="test")
    sem.extra["class_names"] = PARTS
    save_checkpoint(root / "sem.safetensors", sem)
    save_checkpoint(root / "smg.safetensors", fresh_checkpoint(get_preset("tiny").model, seed=0, source="test"))
    rng = np.random.default_rng(0)
    splits: dict[str, list[int]] = {"train": [], "test": []}
    with DatasetWriter(root / "data", log=lambda m: None) as writer:
        for i in range(12):
            image, labels = draw_face(rng, long_hair=i % 2 == 1)
            if i < 4:
                image.save(root / f"face{i}.png")
            mouth = float(np.asarray(image)[21, 16].mean() / 255)
            key = writer.add({32: png(image)}, masks={32: png(labels)}, labels=[float(i % 2), mouth])
            splits["train" if i < 8 else "test"].append(key)
        writer.finish({"name": "faces", "masks": {"format": "label-map-png", "parts": PARTS},
                       "labels": {"names": ["long_hair", "mouth_brightness"],
                                  "kinds": {"long_hair": "binary", "mouth_brightness": "float"}, "vocab": {}}},
                      splits)
    wide, _ = draw_face(rng, long_hair=True, size=48)
    wide.crop((0, 8, 48, 40)).save(root / "wide.png")  # 48 x 32: centre-cropped to the model's square
    code = main(["train-encoder", "--ckpt", str(root / "sem.safetensors"), "--data", str(root / "data"), "--outdir",
                 str(root / "enc"), "--iters", "2", "--batch", "2", "--num-workers", "0", "--perceptual", "none",
                 "--no-progress"])
    assert code == 0
    return root


@pytest.fixture(scope="module")
def editor(work: Path) -> SemanticEditor:
    """The trained encoder's checkpoint, opened as the commands open it (to render what they saved)."""
    ed = Editor.from_checkpoint(next((work / "enc" / "checkpoints").glob("*.safetensors")))
    assert isinstance(ed, SemanticEditor) and ed.encoder is not None
    return ed


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip()


def ok(capsys: pytest.CaptureFixture[str], work: Path, *args: str | Path) -> dict:
    """Run a command on the encoder's checkpoint; -> its JSON record."""
    code, err = cli(capsys, *args, "--ckpt", work / "enc", *CPU)
    assert code == 0, (args, err)
    out = Path(args[args.index("--outdir") + 1]) if "--outdir" in args else Path(args[args.index("--out") + 1])
    record = out / f"{args[0]}.json" if out.suffix == "" else out.with_suffix(".json")
    return json.loads(record.read_text())


def rgb(path: Path) -> np.ndarray:
    image = Image.open(path)
    assert image.mode == "RGB" and image.size == (TINY.size, TINY.size), (path, image.mode, image.size)
    return np.asarray(image).astype(np.int16)


def seg_labels(path: Path) -> np.ndarray:
    """A segmentation colour map: a palette PNG at model size, pixel = part index, palette = class_color."""
    image = Image.open(path)
    assert image.mode == "P" and image.size == (TINY.size, TINY.size), (path, image.mode, image.size)
    palette = image.getpalette()
    assert palette is not None
    for k in range(TINY.seg_dim):
        assert tuple(palette[3 * k : 3 * k + 3]) == class_color(k)
    labels = np.asarray(image)
    assert int(labels.max()) < TINY.seg_dim
    return labels


def model_labels(editor: SemanticEditor, latents: torch.Tensor, composition: torch.Tensor | None = None
                 ) -> np.ndarray:
    """The model's own part map of latents [1, slots, D]."""
    return editor.render(latents, composition).segmentation[0].argmax(0).to(torch.uint8).cpu().numpy()


def latents(path: Path) -> torch.Tensor:
    return load_official_latents(path, TINY)


def encoded(editor: SemanticEditor, path: Path) -> torch.Tensor:
    """What the encoder gives for an image file (as the commands read it)."""
    with torch.no_grad():
        return editor.encoder(prepare_pil(Image.open(path), TINY.size))


def rendered(editor: SemanticEditor, code: torch.Tensor) -> np.ndarray:
    """The image of latents as a command saves it (uint8 HWC)."""
    return to_uint8(editor.render(code).images)[0].astype(np.int16)


def directions_file(work: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """Two SeFa directions of the hair's rows (for the tests of attribute's errors)."""
    file = work / "hair-sefa.safetensors"
    if not file.exists():
        ok(capsys, work, "directions", "--sefa", "2", "--part", "hair", "--out", file)
    return file


# ---- project ---------------------------------------------------------------------------------------------------


def test_project_encoder_gives_the_encoders_latents_and_their_render(work: Path, editor: SemanticEditor,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = work / "proj-enc"
    record = ok(capsys, work, "project", work / "face0.png", work / "face1.png", work / "wide.png", "--outdir", out,
                "--lpips", "none")
    for stem in ("face0", "face1", "wide"):
        assert latents(out / f"{stem}.npy").shape == (1, TINY.n_latent, TINY.style_dim)
        rgb(out / f"{stem}.png")
        rgb(out / f"{stem}_input.png")
    saved = latents(out / "face0.npy")
    assert torch.allclose(saved, encoded(editor, work / "face0.png"), atol=1e-5)
    assert record["options"]["space"] == "w+" and record["options"]["method"] == "encoder"
    mse = [row["mse"] for row in record["images"]]
    render = editor.render(saved).images.clamp(-1, 1)
    target = torch.from_numpy(rgb(out / "face0_input.png")).permute(2, 0, 1).float() / 127.5 - 1
    assert abs(mse[0] - float((render[0] - target).square().mean())) < 2e-3  # the input PNG is quantised


def test_project_optimize_hybrid_pti_and_the_expanded_space(work: Path, editor: SemanticEditor,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    face = work / "face0.png"
    base = ok(capsys, work, "project", face, "--outdir", work / "p-enc", "--lpips", "none")
    record = ok(capsys, work, "project", face, "--method", "optimize", "--steps", "3", "--lpips", "none",
                "--outdir", work / "p-opt")
    # the official recipe fills every flag left out, and the record says so
    opts = record["options"]
    assert (opts["steps"], opts["lr"], opts["mse_weight"], opts["lpips_weight"], opts["pti_lr"]) == (3, 0.1, 0.1, 1.0,
                                                                                                     1e-4)
    start = editor.generator.mean_latent().reshape(1, 1, -1)
    assert not torch.allclose(latents(work / "p-opt" / "face0.npy"), start.expand(1, TINY.n_latent, -1))
    hybrid = ok(capsys, work, "project", face, "--method", "hybrid", "--steps", "8", "--lr", "0.05", "--lpips", "none",
                "--outdir", work / "p-hyb")
    assert hybrid["images"][0]["mse"] < base["images"][0]["mse"]  # optimising from the encoder's start helps
    # pivotal tuning: the latents stay the encoder's, the tuned generator's reconstruction is closer
    tuned = ok(capsys, work, "project", face, work / "face1.png", "--pti-steps", "4", "--pti-lr", "0.01", "--lpips",
               "none", "--outdir", work / "p-pti")
    assert torch.allclose(latents(work / "p-pti" / "face0.npy"), latents(work / "p-enc" / "face0.npy"), atol=1e-5)
    assert tuned["images"][0]["mse"] < base["images"][0]["mse"]
    assert "PTI-tuned generator (not saved)" in tuned["summary"]["note"]
    expanded = ok(capsys, work, "project", face, "--method", "hybrid", "--steps", "2", "--space", "expanded",
                  "--lpips", "none", "--outdir", work / "p-exp")
    assert expanded["options"]["space"] == "expanded"
    code = latents(work / "p-exp" / "face0.npy")
    assert code.shape == (1, TINY.n_latent_expanded, TINY.style_dim)
    # an expanded code edits like any other: the swapped part's slots come from the reference
    ok(capsys, work, "edit", "--source", work / "p-exp" / "face0.npy", "--reference", work / "p-enc" / "face0.npy",
       "--part", "hair", "--outdir", work / "p-exp-edit")
    edited = latents(work / "p-exp-edit" / "face0_edit.npy")
    rows = part_rows(TINY, HAIR, "both", TINY.n_latent_expanded)
    others = [r for r in range(TINY.n_latent_expanded) if r not in rows]
    assert torch.equal(edited[:, others], code[:, others]) and not torch.equal(edited[:, rows], code[:, rows])


# ---- generate, edit, interpolate, mix ----------------------------------------------------------------------------


def test_generate_writes_images_colour_maps_and_latents(work: Path, editor: SemanticEditor,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = work / "gen"
    record = ok(capsys, work, "generate", "--seeds", "0-2", "--trunc", "0.7", "--outdir", out)
    for seed in range(3):
        code = latents(out / f"seed000{seed}.npy")
        assert code.shape == (1, TINY.n_latent, TINY.style_dim)
        rgb(out / f"seed000{seed}.png")
        assert np.array_equal(seg_labels(out / f"seed000{seed}_seg.png"), model_labels(editor, code))
    assert [c["name"] for c in record["classes"]] == PARTS


def test_edit_swaps_parts_by_shape_and_texture_from_several_references(work: Path, editor: SemanticEditor,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = work / "edit"
    record = ok(capsys, work, "edit", "--source", work / "face0.png", "--reference", work / "face1.png", "--part",
                "hair", "--shape-only", "--reference", work / "face2.png", "--part", "eyes", "--part", "mouth",
                "--texture-only", "--outdir", out)
    src, r1, r2 = (encoded(editor, work / f"face{i}.png") for i in range(3))
    expected = src.clone()
    for ref, parts, what in ((r1, [HAIR], "shape"), (r2, [EYES, MOUTH], "texture")):
        for part in parts:
            rows = part_rows(TINY, part, what)
            expected[:, rows] = ref[:, rows]
    edited = latents(out / "face0_edit.npy")
    assert torch.allclose(edited, expected, atol=1e-5)
    changed = (edited - src).abs().amax(-1)[0] > 0
    assert changed.nonzero().flatten().tolist() == sorted(part_rows(TINY, HAIR, "shape")
                                                          + part_rows(TINY, EYES, "texture")
                                                          + part_rows(TINY, MOUTH, "texture"))
    rgb(out / "face0_edit.png")
    assert np.array_equal(seg_labels(out / "face0_edit_seg.png"), model_labels(editor, edited))
    for name in ("face0_recon_seg.png", "reference1_seg.png", "reference2_seg.png"):
        seg_labels(out / name)
    assert record["swaps"][0]["what"] == "shape" and record["swaps"][1]["parts"] == ["eyes", "mouth"]
    # frames blend the codes from the source (0) to the full swap (1)
    out = work / "edit-frames"
    ok(capsys, work, "edit", "--source", work / "face0.png", "--reference", work / "face1.png", "--part", "hair",
       "--frames", "3", "--outdir", out)
    for i in range(3):
        rgb(out / "face0_edit_frames" / f"00{i}.png")
        seg_labels(out / "face0_edit_seg_frames" / f"00{i}.png")
    assert (out / "face0_edit.gif").is_file() and (out / "face0_edit_strip.png").is_file()
    first = rgb(out / "face0_edit_frames" / "000.png")
    assert int(np.abs(first - rgb(out / "face0_recon.png")).max()) <= 1
    assert int(np.abs(rgb(out / "face0_recon.png") - rendered(editor, src)).max()) <= 1


def test_edit_removes_a_part_and_takes_dataset_items(work: Path, editor: SemanticEditor,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    ok(capsys, work, "project", work / "face0.png", "--outdir", work / "rm-src", "--lpips", "none")
    out = work / "remove"
    record = ok(capsys, work, "edit", "--source", work / "rm-src" / "face0.npy", "--remove-part", "hair",
                "--outdir", out)
    assert record["removed"] == ["hair"]
    code = latents(work / "rm-src" / "face0.npy")
    labels = seg_labels(out / "face0_edit_seg.png")
    assert np.array_equal(labels, model_labels(editor, code, composition_mask(TINY, [HAIR])))
    assert HAIR in np.unique(model_labels(editor, code)) and HAIR not in np.unique(labels)
    out = work / "edit-data"
    ok(capsys, work, "edit", "--data", work / "data", "--source", "test:0", "test:1", "--reference", "test:2",
       "--part", "2", "--outdir", out)
    for stem in ("test0", "test1"):
        edited = latents(out / f"{stem}_edit.npy")
        assert np.array_equal(seg_labels(out / f"{stem}_edit_seg.png"), model_labels(editor, edited))


def test_interpolate_whole_codes_and_one_part(work: Path, editor: SemanticEditor,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = work / "lerp"
    record = ok(capsys, work, "interpolate", work / "face0.png", work / "face1.png", "--frames", "4", "--video",
                work / "lerp.gif", "--outdir", out)
    assert record["lambdas"] == [0, 1 / 3, 2 / 3, 1] and (work / "lerp.gif").is_file()
    a, b = encoded(editor, work / "face0.png"), encoded(editor, work / "face1.png")
    for i, t in enumerate(record["lambdas"]):
        rgb(out / "interp_frames" / f"00{i}.png")
        frame = torch.lerp(a, b, t)
        assert (seg_labels(out / "interp_seg_frames" / f"00{i}.png") != model_labels(editor, frame)).mean() < 0.01
    out = work / "lerp-part"
    record = ok(capsys, work, "interpolate", work / "face0.png", work / "face1.png", "--part", "hair",
                "--texture-only", "--frames", "3", "--outdir", out)
    assert record["parts"] == ["hair"] and record["what"] == "texture"
    moved = a.clone()
    moved[:, part_rows(TINY, HAIR, "texture")] = b[:, part_rows(TINY, HAIR, "texture")]
    last = seg_labels(out / "interp_seg_frames" / "002.png")
    assert (last != model_labels(editor, moved)).mean() < 0.01


def test_mix_takes_shapes_from_a_and_textures_from_b(work: Path, editor: SemanticEditor,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = work / "mix"
    ok(capsys, work, "mix", work / "face0.png", work / "face1.png", "--split", "shape", "--outdir", out)
    a, b = encoded(editor, work / "face0.png"), encoded(editor, work / "face1.png")
    mixed = a.clone()
    textures = [r for k in range(TINY.seg_dim) for r in part_rows(TINY, k, "texture")]
    mixed[:, textures] = b[:, textures]
    for name in ("mix.png", "a_recon.png", "b_recon.png"):
        rgb(out / name)
    assert (seg_labels(out / "mix_seg.png") != model_labels(editor, mixed)).mean() < 0.01
    assert (seg_labels(out / "a_seg.png") != model_labels(editor, a)).mean() < 0.01


# ---- directions and attribute ------------------------------------------------------------------------------------


def test_part_directions_from_labels_pca_and_sefa_then_attribute(work: Path, editor: SemanticEditor,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    file = work / "dirs.safetensors"
    record = ok(capsys, work, "directions", "--data", work / "data", "--attribute", "long_hair", "--part", "hair",
                "--pca", "2", "--sefa", "2", "--out", file)
    found = load_directions(file, (TINY.n_latent, TINY.style_dim))
    assert sorted(found) == ["hair.long_hair", "hair.pca_0", "hair.pca_1", "hair.sefa_0", "hair.sefa_1"]
    hair = part_rows(TINY, HAIR)
    others = [r for r in range(TINY.n_latent) if r not in hair]
    for direction in found.values():
        assert abs(float(direction.vector.norm()) - 1) < 1e-5
        assert float(direction.vector[others].abs().max()) == 0.0 and direction.meta["part"] == "hair"
    meta = record["directions"]["hair.long_hair"]
    assert meta["kind"] == "supervised" and meta["examples"] == 8 and meta["positives"] == 4
    assert meta["train_accuracy"] == 1.0 and "val_accuracy" in meta  # 8 latents of 64 numbers: separable
    # attribute --part NAME finds PART.NAME; strength 0 is the reconstruction
    out = work / "attr"
    record = ok(capsys, work, "attribute", work / "face0.png", "--directions", file, "--attribute", "long_hair",
                "--part", "hair", "--strength=-4,0,4", "--outdir", out)
    assert record["direction"]["name"] == "hair.long_hair"
    stem = "face0_hair_long_hair"
    for s in ("-4", "+0", "+4"):
        rgb(out / f"{stem}_{s}.png")
    src = encoded(editor, work / "face0.png")
    vector = found["hair.long_hair"].vector[None]
    assert np.array_equal(seg_labels(out / f"{stem}_+4_seg.png"), model_labels(editor, src + 4 * vector))
    assert int(np.abs(rgb(out / f"{stem}_+0.png") - rendered(editor, src)).max()) <= 1
    assert (out / f"{stem}_strip.png").is_file()
    # a whole-code direction restricted to one part's texture rows moves only those rows
    whole = work / "whole.safetensors"
    ok(capsys, work, "directions", "--pca", "1", "--samples", "64", "--out", whole)
    out = work / "attr-part"
    record = ok(capsys, work, "attribute", work / "face0.png", "--directions", whole, "--attribute", "pca_0",
                "--part", "mouth", "--subspace", "texture", "--strength=3", "--outdir", out)
    assert record["moved_parts"] == ["mouth"] and record["moved_subspace"] == "texture"
    pca = load_directions(whole, (TINY.n_latent, TINY.style_dim))["pca_0"].vector
    moved = src.clone()
    rows = part_rows(TINY, MOUTH, "texture")
    moved[:, rows] += 3 * pca[rows]
    assert np.array_equal(seg_labels(out / "face0_pca_0_+3_seg.png"), model_labels(editor, moved))


# ---- what the model cannot do: one line naming the flag, exit 2 --------------------------------------------------


def test_refusals_name_the_flag(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    face, enc, smg, sem = work / "face0.png", work / "enc", work / "smg.safetensors", work / "sem.safetensors"
    dirs = directions_file(work, capsys)
    x = work / "refused"
    edit = ["edit", "--ckpt", enc, "--source", face, "--reference", work / "face1.png", "--outdir", x]
    cases = [
        ([*edit, "--mask", "hair"], "--mask: a SemanticStyleGAN model has no pixel masks"),
        ([*edit, "--part", "hair", "--shift=-8,4"], "--shift: a SemanticStyleGAN model has no shifted pastes"),
        ([*edit, "--part", "hair", "--mode", "w_plus"], "--mode: a SemanticStyleGAN model has no w / w_plus"),
        ([*edit, "--part", "hair", "--pool", "max"], "--pool: a SemanticStyleGAN model has no mask pooling"),
        ([*edit, "--part", "hair", "--feather", "4"], "--feather: a SemanticStyleGAN model has no mask feathering"),
        ([*edit, "--part", "nose"], "--part 'nose': this model has no such part (its parts: background, face, hair"),
        ([*edit, "--part", "hair", "--remove-part", "hair"], "--remove-part hair: that part is also taken from a "
         "reference"),
        (["transplant", "--ckpt", enc, "--source", face, "--reference", face, "--rect", "0,0,16,16", "--to", "4,4",
          "--outdir", x], "--rect: a SemanticStyleGAN model cannot move a region"),
        (["mix", face, face, "--split", "coarse", "--ckpt", enc, "--outdir", x],
         "--split: a SemanticStyleGAN model mixes by shape or texture"),
        (["attribute", face, "--directions", dirs, "--attribute", "hair.sefa_0", "--mask",
          "0,0,8,8", "--ckpt", enc, "--outdir", x], "--mask: a SemanticStyleGAN model has no pixel masks"),
        (["attribute", face, "--directions", dirs, "--attribute", "hair.sefa_0", "--part",
          "eyes", "--ckpt", enc, "--outdir", x], "--part: the direction is zero in these parts' rows"),
        (["attribute", face, "--directions", dirs, "--attribute", "hair.sefa_0", "--subspace",
          "shape", "--ckpt", enc, "--outdir", x], "--subspace: needs --part NAME"),
        (["interpolate", face, face, "--texture-only", "--ckpt", enc, "--outdir", x],
         "--texture-only: needs --part NAME"),
        (["directions", "--sefa", "1", "--subspace", "shape", "--ckpt", enc, "--out", x / "d.safetensors"],
         "--subspace: needs --part NAME"),
        (["generate", "--seeds", "0", "--dtype", "bf16", "--ckpt", enc, "--outdir", x],
         "--dtype bf16: a SemanticStyleGAN model runs in fp32 only (auto or fp32)"),
        # a model without an encoder: saved latents only, and --method optimize
        (["project", face, "--ckpt", sem, "--outdir", x],
         "--method encoder: method 'encoder' needs an encoder (train one with `stylemapgan train-encoder`)"),
        (["edit", "--ckpt", sem, "--source", face, "--remove-part", "hair", "--outdir", x],
         f"{face}: this model has no encoder to turn an image into its code"),
        (["directions", "--ckpt", sem, "--data", work / "data", "--attribute", "long_hair", "--out",
          x / "d.safetensors"], f"--data {work / 'data'}: this model has no encoder"),
        # the part flags on a StyleMapGAN model
        (["project", face, "--ckpt", smg, "--space", "expanded", "--outdir", x],
         "--space: a StyleMapGAN model has no choice of projection space"),
        (["attribute", face, "--directions", dirs, "--attribute", "x", "--part", "hair",
          "--ckpt", smg, "--outdir", x], "--part: a StyleMapGAN model has no parts"),
        (["directions", "--sefa", "1", "--part", "hair", "--ckpt", smg, "--out", x / "d.safetensors"],
         "--part: a StyleMapGAN model has no parts"),
        (["edit", "--ckpt", smg, "--source", face, "--reference", face, "--mask", "0,0,8,8", "--remove-part", "hair",
          "--outdir", x], "--remove-part: a StyleMapGAN model has no part composition"),
    ]
    for argv, expected in cases:
        code, err = cli(capsys, *argv, *CPU)
        assert code == 2, (argv, err)
        assert err.count("\n") == 0 and expected in err, (expected, err)
    assert not x.exists()
