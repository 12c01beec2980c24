"""SemanticStyleGAN editing: part swaps, part interpolation, composition, part directions, painted masks to parts,
one Editor interface for both families, and the CLI driven by the editor's capabilities.

The model is a random `semantic-tiny` generator. A random model's pseudo-depths are near zero, so its part masks
are flat; `crisp` scales the depth heads by 10 to give the clear-cut parts a trained model has, so that the
locality of a part swap can be measured at all (by the model's own segmentation).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylemapgan.checkpoint import build_network, fresh_checkpoint, save_checkpoint
from stylemapgan.cli import main
from stylemapgan.config import get_preset
from stylemapgan.editing import (
    BaseEditor,
    EditingError,
    Editor,
    PartSwap,
    SemanticEditor,
    interpolate_parts,
    load_directions,
    part_supervised_direction,
    parts_under_mask,
)
from stylemapgan.editing.parts import part_rows, swap_parts
from stylemapgan.semantic import SEMANTIC_PRESETS
from stylemapgan.semantic.io import load_official_latents

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = SEMANTIC_PRESETS["semantic-tiny"].model  # 5 parts, W+ = 1 base + 2 x 5 = 11 vectors of 32
NAMES = ["background", "skin", "hair", "glasses", "mouth"]


def crisp(seed: int) -> SemanticEditor:
    g = build_network(fresh_checkpoint(TINY, seed=seed, source="test"), "g_ema")
    with torch.no_grad():
        g.local.to_depth.weight.mul_(10)
    return SemanticEditor(g, part_names=NAMES)


@pytest.fixture(scope="module")
def editor() -> SemanticEditor:
    return crisp(1)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("semedit")
    sem = fresh_checkpoint(TINY, seed=1, source="test")
    sem.extra["class_names"] = NAMES
    save_checkpoint(root / "sem.safetensors", sem)
    save_checkpoint(root / "smg.safetensors", fresh_checkpoint(get_preset("tiny").model, seed=0, source="test"))
    return {"sem": root / "sem.safetensors", "smg": root / "smg.safetensors", "root": root}


def random_latents(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, TINY.n_latent, TINY.style_dim, generator=torch.Generator().manual_seed(seed))


# ---- latent operations --------------------------------------------------------------------------------------


def test_a_swapped_part_comes_from_the_reference_and_everything_else_from_the_source() -> None:
    src, ref = random_latents(1, 0), random_latents(1, 1)
    for what, rows in (("both", [3, 4, 7, 8]), ("shape", [3, 7]), ("texture", [4, 8])):  # parts 1 and 3
        out = swap_parts(TINY, src, ref, [1, 3], what)
        assert sorted(part_rows(TINY, 1, what) + part_rows(TINY, 3, what)) == rows
        for row in range(TINY.n_latent):
            expected = ref if row in rows else src
            assert torch.equal(out[0, row], expected[0, row]), (what, row)
    # the expanded layout: the same part's slots of its own local generator (not the shared base slot)
    big = swap_parts(TINY, src, expanded(ref), [2], "shape")
    slots = part_rows(TINY, 2, "shape", TINY.n_latent_expanded)
    assert slots == [2 * TINY.local_layers + 1]  # layer 0 is the base code, layer 1 the shape, layers 2-3 texture
    assert torch.equal(big[:, slots], expanded(ref)[:, slots])
    others = [j for j in range(TINY.n_latent_expanded) if j not in slots]
    assert torch.equal(big[:, others], expanded(src)[:, others])


def expanded(latents: torch.Tensor) -> torch.Tensor:
    from stylemapgan.semantic.latents import expand_latents

    return expand_latents(TINY, latents)


def test_editor_swaps_several_references_and_parts_at_once(editor: SemanticEditor) -> None:
    codes = random_latents(3, 5)
    src, r1, r2 = (editor.add_code(codes[i : i + 1]) for i in range(3))
    out = editor.swap_parts(src, [PartSwap(r1, ("hair",), "shape"), PartSwap(r2, ("mouth", "glasses"))])
    lat = out.latents[0]
    assert torch.equal(lat[part_rows(TINY, 2, "shape")], codes[1, part_rows(TINY, 2, "shape")])
    for part in (3, 4):
        assert torch.equal(lat[part_rows(TINY, part)], codes[2, part_rows(TINY, part)])
    untouched = [r for r in range(TINY.n_latent) if r not in part_rows(TINY, 2, "shape") + part_rows(TINY, 3)
                 + part_rows(TINY, 4)]
    assert torch.equal(lat[untouched], codes[0, untouched])  # incl. hair's texture: shape-only keeps it
    assert out.images.shape == (1, 3, TINY.size, TINY.size) and out.segmentation.shape[1] == TINY.seg_dim
    again = editor.render(out.latents)
    assert torch.equal(again.images, out.images)  # deterministic: stored noise
    frames = editor.swap_parts(src, [PartSwap(r1, ("hair",))], alphas=[0.0, 0.5, 1.0])
    assert torch.equal(frames.latents[0], codes[0]) and torch.equal(frames.latents[2][part_rows(TINY, 2)],
                                                                    codes[1, part_rows(TINY, 2)])
    with pytest.raises(EditingError, match="swap 1 part 'nose': this model has no such part"):
        editor.swap_parts(src, [PartSwap(r1, ("nose",))])


def test_swapping_a_part_changes_pixels_mostly_inside_its_mask() -> None:
    """Texture swaps of every part (area >= 5 %) on three random models: the fused features change almost only
    under the part's own mask, and the image changes much more inside the part's segmented region than its area
    share (the render net's convolutions spread some change past the border)."""
    inside = total = 0.0
    areas = []
    for seed in range(3):
        ed = crisp(seed)
        g = ed.generator
        samples = ed.sample([1, 2])
        a, b = ed.add_code(samples.codes[:1]), ed.add_code(samples.codes[1:])
        labels = samples.segmentation[0].argmax(0)
        for part in range(1, TINY.seg_dim):
            out = ed.swap_parts(a, [PartSwap(b, (part,), "texture")])
            with torch.no_grad():
                feat_a, _, _, weights = g.local(g.expand_latents(samples.codes[:1]))
                feat_b = g.local(g.expand_latents(out.latents))[0]
            under = weights[0, part] > 0.5
            if float(under.float().mean()) < 0.05:
                continue
            change = (feat_b - feat_a).abs().sum(1)[0]
            assert float(change[under].mean()) > 1.5 * float(change[~under].mean()), (seed, part)  # per cell
            region = (labels == part) | (out.segmentation[0].argmax(0) == part)
            pixels = (out.images - samples.images[:1]).abs().sum(1)[0]
            inside += float(pixels[region].sum())
            total += float(pixels.sum())
            areas.append(float(region.float().mean()))
    assert len(areas) >= 6
    assert inside / total > 0.5 and inside / total > 2 * (sum(areas) / len(areas))


def test_shape_only_keeps_the_texture_codes_and_moves_the_mask(editor: SemanticEditor) -> None:
    samples = editor.sample([3, 4])
    a, b = editor.add_code(samples.codes[:1]), editor.add_code(samples.codes[1:])
    out = editor.swap_parts(a, [PartSwap(b, ("hair",), "shape")])
    texture = part_rows(TINY, 2, "texture")
    assert torch.equal(out.latents[0, texture], samples.codes[0, texture])
    assert not torch.equal(out.latents[0, part_rows(TINY, 2, "shape")], samples.codes[0, part_rows(TINY, 2, "shape")])
    with torch.no_grad():
        before = editor.generator.synthesize(samples.codes[:1], return_parts=True, randomize_noise=False).masks
        after = editor.generator.synthesize(out.latents, return_parts=True, randomize_noise=False).masks
    assert float((after[0, 2] - before[0, 2]).abs().max()) > 0.1  # the shape code moves the part's mask


def test_part_interpolation_endpoints_equal_the_inputs(editor: SemanticEditor) -> None:
    samples = editor.sample([5, 6])
    a, b = editor.add_code(samples.codes[:1]), editor.add_code(samples.codes[1:])
    whole = editor.interpolate_parts(a, b, None, "both", 5)
    assert torch.equal(whole.latents[0], samples.codes[0]) and torch.equal(whole.latents[-1], samples.codes[1])
    assert torch.equal(whole.images[0], samples.images[0]) and torch.equal(whole.images[-1], samples.images[1])
    assert torch.equal(editor.interpolate(a, b, 5), whole.images)
    hair = editor.interpolate_parts(a, b, ["hair"], "texture", 4)
    rows = part_rows(TINY, 2, "texture")
    others = [r for r in range(TINY.n_latent) if r not in rows]
    assert torch.equal(hair.latents[0], samples.codes[0])
    assert torch.equal(hair.latents[-1, rows], samples.codes[1, rows])
    assert torch.equal(hair.latents[:, others], samples.codes[:1, others].expand(4, -1, -1))
    middle = interpolate_parts(TINY, samples.codes[:1], samples.codes[1:], [0.25], [2], "texture")
    assert torch.allclose(middle[0, rows], 0.75 * samples.codes[0, rows] + 0.25 * samples.codes[1, rows], atol=1e-6)


def test_removing_a_part_zeroes_its_mask(editor: SemanticEditor) -> None:
    samples = editor.sample([7])
    handle = editor.add_code(samples.codes)
    out = editor.compose(handle, remove=["hair"])
    assert out.composition_mask is not None and out.composition_mask.tolist() == [[1, 1, 0, 1, 1]]
    with torch.no_grad():
        parts = editor.generator.synthesize(out.latents, composition_mask=out.composition_mask, return_parts=True,
                                            randomize_noise=False)
    assert float(parts.masks[0, 2].abs().max()) == 0.0
    assert torch.equal(parts.image, out.images) and not torch.equal(out.images, samples.images)
    with pytest.raises(EditingError, match="cannot remove every part"):
        editor.compose(handle, remove=NAMES)


def test_a_painted_mask_maps_to_the_parts_it_covers(editor: SemanticEditor) -> None:
    samples = editor.sample([8])
    handle = editor.add_code(samples.codes)
    labels = samples.segmentation[0].argmax(0)
    present = labels.unique().tolist()
    part = max(present, key=lambda k: int((labels == k).sum()))
    mask = (labels == part).float()
    assert editor.parts_under_mask(handle, mask) == [NAMES[part]]
    # half of the part's pixels: covered at threshold 0.5, not at 0.6
    ys, xs = torch.nonzero(labels == part, as_tuple=True)
    half = torch.zeros_like(mask)
    keep = len(ys) // 2 + (len(ys) % 2)
    half[ys[:keep], xs[:keep]] = 1
    assert parts_under_mask(samples.segmentation, half, 0.5) == [part]
    assert parts_under_mask(samples.segmentation, half, 0.6) == []
    assert parts_under_mask(samples.segmentation, torch.ones_like(mask)) == sorted(present)
    with pytest.raises(EditingError, match="threshold"):
        parts_under_mask(samples.segmentation, mask, 0.0)


# ---- directions -----------------------------------------------------------------------------------------------


def test_directions_move_only_their_parts_subspace(editor: SemanticEditor) -> None:
    found = (editor.pca_directions(2, 200, 0, "hair", "shape") + editor.sefa_directions(3, "mouth")
             + editor.sefa_directions(1, "glasses", "texture"))
    expected_rows = {"hair": part_rows(TINY, 2, "shape"), "mouth": part_rows(TINY, 4), "glasses":
                     part_rows(TINY, 3, "texture")}
    for d in found:
        rows = expected_rows[d.meta["part"]]
        outside = [r for r in range(TINY.n_latent) if r not in rows]
        assert d.vector.shape == (TINY.n_latent, TINY.style_dim)
        assert float(d.vector[outside].abs().max()) == 0.0 and float(d.vector[rows].abs().max()) > 0
        assert abs(float(d.vector.norm()) - 1) < 1e-5
    # SeFa: the top direction changes the part's modulations more than any random unit vector in its rows
    g = editor.generator
    top = found[2].vector
    rows = expected_rows["mouth"]

    def modulation_change(v: torch.Tensor) -> float:
        slots = g.expand_latents(v[None])[0].view(TINY.seg_dim, TINY.local_layers, -1)[4]
        return sum(float((layer.modulation_weight[4] @ slots[i]).norm() ** 2) for i, layer in enumerate(g.local.layers))

    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        r = torch.zeros_like(top)
        r[rows] = torch.randn(len(rows), TINY.style_dim, generator=gen)
        assert modulation_change(top) >= modulation_change(r / r.norm()) - 1e-6
    # applied, a direction changes only its rows of the code
    handle = editor.add_code(random_latents(1, 9))
    moved = editor.apply_direction(handle, top, [-2.0, 0.0, 2.0]).latents
    assert torch.equal(moved[1], editor.code(handle)[0])
    delta = moved[2] - moved[1]
    assert float(delta[[r for r in range(TINY.n_latent) if r not in rows]].abs().max()) == 0.0
    assert torch.allclose(delta, 2 * top, atol=1e-6)


def test_supervised_part_direction_finds_the_labelled_attribute() -> None:
    """Labels depend on one direction inside hair's texture row; the fitted direction recovers it and is zero
    elsewhere, though the other rows carry a stronger (unlabelled) signal."""
    gen = torch.Generator().manual_seed(3)
    latents = torch.randn(400, TINY.n_latent, TINY.style_dim, generator=gen)
    latents[:, part_rows(TINY, 4, "both")] *= 5  # loud rows of another part
    truth = torch.randn(TINY.style_dim, generator=gen)
    truth /= truth.norm()
    row = part_rows(TINY, 2, "texture")[0]
    labels = latents[:, row] @ truth > 0
    direction, _ = part_supervised_direction(TINY, "curly", latents, labels, 2, "texture", "hair")
    assert direction.meta["part"] == "hair" and direction.meta["rows"] == [row]
    assert float(direction.vector[row] @ truth) > 0.9
    others = [r for r in range(TINY.n_latent) if r != row]
    assert float(direction.vector[others].abs().max()) == 0.0
    assert direction.meta["train_accuracy"] > 0.95


# ---- one interface, capabilities, the CLI ---------------------------------------------------------------------


def test_from_checkpoint_opens_each_family_with_its_editor(files: dict[str, Path]) -> None:
    sem = Editor.from_checkpoint(files["sem"])
    smg = BaseEditor.from_checkpoint(files["smg"])
    assert isinstance(sem, SemanticEditor) and type(smg) is Editor
    assert sem.capabilities.parts == tuple(NAMES) and sem.capabilities.shape_texture and sem.capabilities.composition
    assert sem.capabilities.segmentation and not sem.capabilities.masks and not sem.capabilities.latent_modes
    assert smg.capabilities.masks and smg.capabilities.shifts and smg.capabilities.latent_modes == ("w", "w_plus")
    assert not smg.capabilities.parts and not smg.capabilities.segmentation
    assert sem.model_id.startswith("sha256:") and sem.code_shape == (TINY.n_latent, TINY.style_dim)
    with pytest.raises(EditingError, match="method 'encoder' needs an encoder \\(train one with"):  # none in it
        sem.encode(torch.zeros(1, 3, TINY.size, TINY.size))


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip()


def test_cli_swaps_parts_and_writes_segmentation_maps(files: dict[str, Path], capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    root, ckpt = files["root"], files["sem"]
    assert run_cli(capsys, "generate", "--ckpt", ckpt, "--seeds", "0-2", "--outdir", root / "gen", "--device",
                   "cpu", "--no-progress")[0] == 0
    gen = root / "gen"
    out = root / "edit"
    code, err = run_cli(capsys, "edit", "--ckpt", ckpt, "--source", gen / "seed0000.npy", "--reference",
                        gen / "seed0001.npy", "--part", "hair", "--shape-only", "--reference", gen / "seed0002.npy",
                        "--part", "mouth", "--part", "glasses", "--outdir", out, "--device", "cpu", "--no-progress")
    assert code == 0, err
    src, r1, r2 = (load_official_latents(gen / f"seed000{i}.npy", TINY)[0] for i in range(3))
    edited = load_official_latents(out / "seed0000_edit.npy", TINY)[0]
    expected = src.clone()
    expected[part_rows(TINY, 2, "shape")] = r1[part_rows(TINY, 2, "shape")]
    expected[part_rows(TINY, 3) + part_rows(TINY, 4)] = r2[part_rows(TINY, 3) + part_rows(TINY, 4)]
    assert torch.equal(edited, expected)
    seg = Image.open(out / "seed0000_edit_seg.png")
    assert seg.mode == "P" and seg.size == (TINY.size, TINY.size) and int(np.asarray(seg).max()) < TINY.seg_dim
    record = json.loads((out / "edit.json").read_text())
    assert record["swaps"] == [{"reference": str(gen / "seed0001.npy"), "parts": ["hair"], "what": "shape"},
                               {"reference": str(gen / "seed0002.npy"), "parts": ["mouth", "glasses"],
                                "what": "both"}]
    assert [c["name"] for c in record["classes"]] == NAMES
    code, err = run_cli(capsys, "interpolate", gen / "seed0000.npy", gen / "seed0001.npy", "--part", "hair",
                        "--frames", "3", "--ckpt", ckpt, "--outdir", root / "interp", "--device", "cpu")
    assert code == 0, err
    assert (root / "interp" / "interp_seg_frames" / "002.png").is_file()
    code, err = run_cli(capsys, "directions", "--ckpt", ckpt, "--sefa", "2", "--part", "hair", "--subspace",
                        "texture", "--out", root / "d.safetensors", "--device", "cpu")
    assert code == 0, err
    loaded = load_directions(root / "d.safetensors", (TINY.n_latent, TINY.style_dim))
    assert sorted(loaded) == ["hair.sefa_0", "hair.sefa_1"]
    code, err = run_cli(capsys, "attribute", gen / "seed0000.npy", "--ckpt", ckpt, "--directions",
                        root / "d.safetensors", "--attribute", "hair.sefa_0", "--strength=-2,2", "--outdir",
                        root / "attr", "--device", "cpu", "--no-progress")
    assert code == 0, err
    assert (root / "attr" / "seed0000_hair_sefa_0_+2_seg.png").is_file()


def test_capabilities_drive_the_cli_errors(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root = files["root"]
    image = root / "face.png"
    Image.new("RGB", (32, 32), (120, 80, 60)).save(image)
    latents = root / "w.npy"
    np.save(latents, random_latents(1, 0).numpy())
    sem = ["edit", "--ckpt", files["sem"], "--source", latents, "--reference", latents, "--outdir", root / "x",
           "--device", "cpu"]
    smg = ["edit", "--ckpt", files["smg"], "--source", image, "--reference", image, "--outdir", root / "x",
           "--device", "cpu"]
    cases = [
        ([*sem, "--part", "nose"], "--part 'nose': this model has no such part (its parts: background, skin, hair"),
        ([*sem, "--part", "9"], "--part 9: this model has 5 parts (0-4)"),
        ([*sem, "--part", "hair", "--shift", "1,1"], "--shift: a SemanticStyleGAN model has no shifted pastes"),
        ([*sem, "--part", "hair", "--mode", "w_plus"], "--mode: a SemanticStyleGAN model has no w / w_plus"),
        ([*sem, "--mask", "0,0,8,8"], "--mask: a SemanticStyleGAN model has no pixel masks (it edits whole parts"),
        ([*sem, "--part", "hair", "--shape-only", "--texture-only"], "--shape-only: cannot be combined"),
        (["edit", "--ckpt", files["sem"], "--source", latents, "--part", "hair", "--reference", latents, "--outdir",
          root / "x"], "--part: give it after the --reference"),
        ([*smg, "--mask", "0,0,8,8", "--part", "hair"], "--part: a StyleMapGAN model has no parts"),
        ([*smg, "--mask", "0,0,8,8", "--remove-part", "hair"], "--remove-part: a StyleMapGAN model has no part"),
        (smg, "--mask: give one per --reference"),
        (["interpolate", image, image, "--part", "hair", "--ckpt", files["smg"], "--outdir", root / "x"],
         "--part: a StyleMapGAN model has no parts"),
        (["mix", latents, latents, "--split", "coarse", "--ckpt", files["sem"], "--outdir", root / "x"],
         "--split: a SemanticStyleGAN model mixes by shape or texture"),
        (["transplant", "--ckpt", files["sem"], "--source", latents, "--reference", latents, "--rect", "0,0,8,8",
          "--to", "4,4", "--outdir", root / "x"], "--rect: a SemanticStyleGAN model cannot move a region"),
    ]
    for argv, expected in cases:
        code, err = run_cli(capsys, *argv)
        assert code == 2, (argv, err)
        assert err.count("\n") == 0 and expected in err, (expected, err)
    assert not (root / "x").exists()
