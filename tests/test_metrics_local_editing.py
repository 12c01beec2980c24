"""Local-editing metric pieces: masked MSEs on hand-built images, IoU pairing, the batched edit against
Editor.local_edit, reconstruction scoring, and masks given as files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylemapgan.checkpoint import fresh_checkpoint
from stylemapgan.checkpoint.models import build_network
from stylemapgan.config import get_preset
from stylemapgan.editing import Editor
from stylemapgan.metrics.errors import MetricsError
from stylemapgan.metrics.local_editing import (
    batched_local_edit,
    iou_matrix,
    load_mask_folder,
    masked_mse,
    match_pairs,
    part_indices,
    part_masks,
    score_part,
)
from stylemapgan.metrics.reconstruction import mse_per_image, score_reconstructions


@pytest.fixture(scope="module")
def editor() -> Editor:
    ckpt = fresh_checkpoint(get_preset("tiny").model, 0, "test")
    return Editor(build_network(ckpt, "g_ema"), build_network(ckpt, "e_ema"), device="cpu")


def test_masked_mse_on_hand_built_images() -> None:
    result = torch.zeros(3, 3, 2, 2)
    source = torch.full((3, 3, 2, 2), 0.5)
    reference = torch.zeros(3, 3, 2, 2)
    reference[:, :, 0, 0] = torch.tensor([1.0, 2.0, 3.0])  # the one masked pixel, per channel
    reference[:, :, 1, 1] = 9.0  # outside the mask: must not count for MSE_ref
    mask = torch.zeros(3, 2, 2, dtype=torch.bool)
    mask[0, 0, 0] = True  # pair 0: one pixel inside
    mask[1] = True  # pair 1: everything inside -> MSE_src undefined
    # pair 2: empty mask -> MSE_ref undefined
    mse_src, mse_ref = masked_mse(result, source, reference, mask)
    assert mse_src[0].item() == pytest.approx(0.25)  # 3 outside pixels x 3 channels, each (0 - 0.5)^2
    assert mse_ref[0].item() == pytest.approx((1 + 4 + 9) / 3)
    assert math.isnan(mse_src[1].item()) and mse_ref[1].item() == pytest.approx((1 + 4 + 9 + 3 * 81) / 12)
    assert mse_src[2].item() == pytest.approx(0.25) and math.isnan(mse_ref[2].item())
    # a perfect edit scores 0 on both sides
    perfect = torch.where(mask[:, None], reference, source)
    s, r = masked_mse(perfect, source, reference, mask)
    assert s[0].item() == 0 and r[0].item() == 0


def test_part_masks_and_iou() -> None:
    labels = torch.tensor([
        [[0, 1], [2, 2]],
        [[1, 1], [0, 2]],
        [[0, 0], [0, 0]],
    ])
    parts = ["background", "hair", "eyes"]
    assert part_indices("hair+eyes", parts) == [1, 2]
    with pytest.raises(MetricsError, match="unknown"):
        part_indices("nose", parts)
    m = part_masks(labels, [1])
    assert m.sum((1, 2)).tolist() == [1, 2, 0]
    iou = iou_matrix(m)
    assert iou[0, 1].item() == pytest.approx(1 / 2)  # {(0,1)} vs {(0,0),(0,1)}
    assert iou[0, 0].item() == 1 and iou[2, 2].item() == 0 and iou[0, 2].item() == 0  # empty: 0, not NaN


def test_pairs_are_greedy_disjoint_by_descending_iou() -> None:
    iou = torch.zeros(4, 4, dtype=torch.float64)
    for (i, j), v in {(0, 1): 0.9, (2, 3): 0.8, (0, 2): 0.95, (1, 3): 0.1}.items():
        iou[i, j] = iou[j, i] = v
    assert match_pairs(iou, 10) == [(0, 2, 0.95), (1, 3, 0.1)]
    assert match_pairs(iou, 1) == [(0, 2, 0.95)]
    # ties keep the (i, j) order of all pairs i < j; an odd pool leaves one image out
    assert [p[:2] for p in match_pairs(torch.zeros(5, 5), 10)] == [(0, 1), (2, 3)]


@pytest.mark.parametrize("mode", ["w", "w_plus"])
def test_batched_edit_equals_editor_local_edit(editor: Editor, mode: str) -> None:
    g = torch.Generator().manual_seed(1)
    size = editor.size
    images = torch.rand(4, 3, size, size, generator=g) * 2 - 1
    stylemaps = editor.encoder(images)
    masks = torch.zeros(2, size, size)
    masks[0, 2:9, 3:12] = 1
    masks[1, 8:, :5] = 1
    batched = batched_local_edit(editor, stylemaps[[0, 1]], stylemaps[[2, 3]], masks, mode)
    for k, (src, ref) in enumerate([(0, 2), (1, 3)]):
        single = editor.local_edit(images[src], [images[ref]], [masks[k]], mode=mode, alphas=1.0)
        torch.testing.assert_close(batched[k : k + 1], single, atol=1e-5, rtol=1e-5)


def test_score_part_skips_empty_unions(editor: Editor) -> None:
    size = editor.size
    labels = torch.zeros(6, size, size, dtype=torch.long)
    labels[0, :4, :4] = 1
    labels[1, :4, :5] = 1  # best match of image 0; images 2..5 have no part 1
    images = torch.randint(0, 256, (6, 3, size, size), dtype=torch.uint8)
    stylemaps = editor.encoder(images.float() / 127.5 - 1)
    score = score_part(editor, "p", [1], images, stylemaps, labels, pairs_per_part=3, mode="w_plus", batch=2)
    assert [p[:2] for p in score.per_pair] == [(0, 1)] and score.skipped == 2 and score.pairs == 1
    assert score.mean_iou == pytest.approx(16 / 20)
    assert 0 < score.mse_src < 4 and 0 < score.mse_ref < 4


def test_reconstruction_scores_round_to_8_bits() -> None:
    target = torch.zeros(2, 3, 4, 4)
    recon = torch.full((2, 3, 4, 4), 0.5)
    recon[1] = 3.0  # clamped to 1 before scoring
    scores = score_reconstructions(recon, target, None)
    assert scores.lpips is None
    level = round(1.5 * 127.5) / 127.5 - 1  # 0.5 -> the nearest 8-bit level
    assert scores.mse.tolist() == pytest.approx([level**2, 1.0])
    assert mse_per_image(target, target).tolist() == [0.0, 0.0]


def test_masks_from_a_folder(tmp_path: Path) -> None:
    binary = np.zeros((8, 8), np.uint8)
    binary[:4] = 255
    Image.fromarray(binary).save(tmp_path / "0.png")
    Image.fromarray(binary[::-1].copy()).save(tmp_path / "00001.png")
    maps, names = load_mask_folder(tmp_path, 2, 16)
    assert names == ["background", "mask"] and maps.shape == (2, 16, 16)
    assert maps[0, :8].eq(1).all() and maps[0, 8:].eq(0).all() and maps[1, 8:].eq(1).all()
    labelled = np.zeros((16, 16), np.uint8)
    labelled[4:8, 4:8] = 2
    Image.fromarray(labelled).save(tmp_path / "0.png")
    (tmp_path / "parts.txt").write_text("background\nhair\neyes\n")
    maps, names = load_mask_folder(tmp_path, 1, 16)
    assert names == ["background", "hair", "eyes"] and int(maps[0].max()) == 2
    with pytest.raises(MetricsError, match="no mask file for test image 2"):
        load_mask_folder(tmp_path, 3, 16)


def test_pool_projection_hybrid_matches_project(editor: Editor) -> None:
    """local_edit's pool through `--projection hybrid`: the same stylemaps as `project` (no cache entries), each
    reconstructing its image better than the encoder's one pass; the encoder path stays the plain encoder."""
    from stylemapgan.editing.projection import ProjectionOptions, project
    from stylemapgan.metrics.evaluate import encode_pool

    torch.manual_seed(0)
    images = torch.rand(3, 3, editor.size, editor.size) * 2 - 1
    dataset = [{"image": img} for img in images]
    options = ProjectionOptions(steps=5, perceptual_weight=0.0)
    cached = editor.cache_info().size

    enc, kept = encode_pool(editor, dataset, [0, 1, 2], batch=2, keep_images=True)
    hyb, _ = encode_pool(editor, dataset, [0, 1, 2], batch=2, method="hybrid", projection=options)
    assert kept is not None and kept.dtype == torch.uint8 and kept.shape == (3, 3, editor.size, editor.size)
    with torch.no_grad():
        assert torch.allclose(enc, editor.encoder(images), atol=1e-6)
        expected = torch.cat([project(editor.generator, editor.encoder, images[s : s + 2], "hybrid", options
                                      ).stylemaps for s in (0, 2)])
        assert torch.allclose(hyb, expected, atol=1e-5)
        err_enc = mse_per_image(editor.generator.decode(enc), images)
        err_hyb = mse_per_image(editor.generator.decode(hyb), images)
    assert bool((err_hyb < err_enc).all())
    assert editor.cache_info().size == cached
