"""SemanticStyleGAN training: each term of the official objective on semantic-tiny, a short run whose losses move,
exact resume, 2 real processes equal to one, the NaN guard, and labelled data through the real CLI (prepare
--labels; train refusing unlabelled or mismatched data, and training on labelled data)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from semantic_train_script import TINY, SeededLabelled, tiny_config
from stylemapgan.checkpoint import load_checkpoint
from stylemapgan.cli import main
from stylemapgan.data import open_dataset
from stylemapgan.semantic import SemanticConfig, shape_index, texture_index
from stylemapgan.semantic.objective import mask_consistency_loss, path_lengths, r1_penalties, real_segmentation
from stylemapgan.training.run import TrainingRun, latest_checkpoint
from stylemapgan.training.semantic import SemanticTrainConfig, SemanticTrainer
from stylemapgan.training.trainer import TrainingDiverged

pytestmark = pytest.mark.usefixtures("one_thread")
SCRIPT = str(Path(__file__).parent / "semantic_train_script.py")


def trainer(**changes: object) -> SemanticTrainer:
    return SemanticTrainer(TINY, tiny_config(**changes), SeededLabelled(16, TINY.size, TINY.seg_dim, 0))


def grads(module: torch.nn.Module) -> tuple[bool, bool]:
    """(some parameter has a non-zero gradient, every gradient is None)."""
    gs = [p.grad for p in module.parameters()]
    return any(g is not None and g.abs().sum() > 0 for g in gs), all(g is None for g in gs)


def test_real_segmentation_is_one_hot_in_minus_one_one() -> None:
    labels = torch.tensor([[[0, 2], [1, 2]]])
    seg = real_segmentation(labels, 3)
    assert seg.shape == (1, 3, 2, 2) and set(seg.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(seg.argmax(1), labels) and torch.equal((seg > 0).sum(1), torch.ones(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="label maps hold class 3; the model has 3 classes"):
        real_segmentation(labels + 1, 3)


def test_r1_penalties_are_the_squared_input_gradients_of_each_branch() -> None:
    """D linear in both inputs: the gradients are the weights, so each R1 is the squared norm of its weight."""
    a, b = torch.randn(1, 3, 4, 4), torch.randn(1, 5, 4, 4)
    image = torch.randn(2, 3, 4, 4, requires_grad=True)
    seg = torch.randn(2, 5, 4, 4, requires_grad=True)
    logits = (image * a).flatten(1).sum(1) + (seg * b).flatten(1).sum(1)
    r1_img, r1_seg = r1_penalties(logits, image, seg)
    assert r1_img.item() == pytest.approx(a.pow(2).sum().item(), rel=1e-6)
    assert r1_seg.item() == pytest.approx(b.pow(2).sum().item(), rel=1e-6)


def test_r1_step_weights_the_two_branches_by_their_gammas() -> None:
    """The step's D gradient is that of (10/2 R1_img + 1000/2 R1_seg) * d_reg_every (official r1_img / r1_seg),
    and both penalties are positive; with the segmentation gamma at 0 only the image term remains."""
    for seg_gamma in (1000.0, 0.0):
        t, ref = trainer(r1_seg_gamma=seg_gamma), trainer(r1_seg_gamma=seg_gamma)
        real_image, real_seg = t.next_batch()
        losses = t.r1_step(real_image, real_seg)
        assert losses["r1_img"] > 0 and losses["r1_seg"] > 0
        image, seg = real_image.clone().requires_grad_(True), real_seg.clone().requires_grad_(True)
        r1_img, r1_seg = r1_penalties(ref.discriminator(image, seg), image, seg)
        ((10.0 / 2 * r1_img + seg_gamma / 2 * r1_seg) * 2).backward()
        assert r1_img.item() == pytest.approx(losses["r1_img"].item(), rel=1e-5)
        for got, want in zip(t.discriminator.parameters(), ref.discriminator.parameters(), strict=True):
            if want.grad is not None:
                torch.testing.assert_close(got.grad, want.grad, rtol=1e-4, atol=1e-6)
        assert grads(t.generator)[1]


def test_mask_consistency_compares_the_pooled_final_segmentation_with_the_coarse_one() -> None:
    coarse = torch.rand(2, 5, 8, 8) * 2 - 1
    final = coarse.repeat_interleave(4, 2).repeat_interleave(4, 3)  # 32 px, each coarse cell a 4x4 block
    assert mask_consistency_loss(final, coarse).item() == pytest.approx(0.0, abs=1e-12)
    assert mask_consistency_loss(final + 0.25, coarse).item() == pytest.approx(0.0625, rel=1e-6)
    shifted = final.clone()
    shifted[:, :, :4, :4] += 1.0  # one coarse cell of every class, one sample-class map of 64 cells
    assert mask_consistency_loss(shifted, coarse).item() == pytest.approx(1.0 / 64, rel=1e-6)


def test_discriminator_and_generator_steps_update_the_right_networks() -> None:
    t = trainer()
    real_image, real_seg = t.next_batch()
    assert real_seg.shape == (4, TINY.seg_dim, TINY.size, TINY.size)
    losses = t.discriminator_step(real_image, real_seg)
    assert set(losses) == {"d_adv", "real_score", "fake_score"}
    assert grads(t.discriminator)[0] and grads(t.generator)[1]
    t.discriminator.zero_grad(set_to_none=True)
    losses = t.generator_step()
    assert set(losses) == {"g_adv", "mask"} and losses["mask"] > 0
    assert grads(t.generator)[0] and grads(t.discriminator)[1]
    assert grads(t.generator.mapping_network)[0]  # z -> w is trained through the adversarial loss
    t.generator.zero_grad(set_to_none=True)
    t.cfg = t.cfg.replace(lambda_mask=0.0)
    assert set(t.generator_step()) == {"g_adv"}  # weight 0: neither computed nor logged


def test_flips_move_image_and_label_map_together() -> None:
    flipped, plain = trainer(hflip=True), trainer(hflip=False)
    (image, seg), (image0, seg0) = flipped.next_batch(), plain.next_batch()
    kinds = []
    for i in range(len(image)):
        turned = torch.equal(image[i], image0[i].flip(2))
        assert turned or torch.equal(image[i], image0[i])
        assert torch.equal(seg[i], seg0[i].flip(2) if turned else seg0[i])
        kinds.append(turned)
    assert set(kinds) == {True, False}


def test_path_length_is_taken_on_the_expanded_latents_and_tracks_its_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    t = trainer()
    seen: list[tuple[int, ...]] = []
    lengths_seen: list[torch.Tensor] = []

    def spy(image: torch.Tensor, latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(latents.shape))
        assert noise.std().item() == pytest.approx(1 / TINY.size, rel=0.2)  # N(0, 1) / sqrt(H * W)
        out = path_lengths(image, latents, noise)
        lengths_seen.append(out.detach())
        return out

    monkeypatch.setattr("stylemapgan.training.semantic.path_lengths", spy)
    losses = t.path_length_step()
    # the path batch is batch // 2, and the gradient is w.r.t. one vector per local layer (K * local_layers)
    assert seen == [(2, TINY.n_latent_expanded, TINY.style_dim)] and TINY.n_latent_expanded != TINY.n_latent
    lengths = lengths_seen[0]
    mean = 0.01 * lengths.mean()  # the running mean starts at 0 and moves 1 % towards the batch mean
    assert t.mean_path_length.item() == pytest.approx(mean.item(), rel=1e-5)
    assert losses["path"].item() == pytest.approx((lengths - mean).pow(2).mean().item(), rel=1e-5)
    assert losses["path_length"].item() == pytest.approx(lengths.mean().item(), rel=1e-6)
    assert grads(t.generator)[0]


def test_mixing_takes_parts_from_the_second_latent() -> None:
    """With mixing the base codes come from w1 and each (sample, class) takes (shape, texture) from (w1, w1),
    (w1, w2) or (w2, w2), all three occurring; without, every slot is w1."""
    t = trainer(mixing_prob=1.0)
    state = t.rng.get_state()
    n, k = 16, TINY.seg_dim
    with torch.no_grad():
        latents = t.latents(n)
        t.rng.set_state(state)
        assert bool(torch.rand((), generator=t.rng) < 1.0)
        z = torch.randn(2, n, TINY.style_dim, generator=t.rng)
        w1, w2 = t.generator.mapping(z[0]), t.generator.mapping(z[1])
    assert latents.shape == (n, TINY.n_latent, TINY.style_dim)
    assert torch.equal(latents[:, : TINY.base_layers], w1.unsqueeze(1).expand(-1, TINY.base_layers, -1))
    patterns = set()
    for i in range(n):
        for part in range(k):
            pick = []
            for slot in (shape_index(TINY, part), texture_index(TINY, part)):
                is1, is2 = torch.equal(latents[i, slot], w1[i]), torch.equal(latents[i, slot], w2[i])
                assert is1 != is2
                pick.append(1 if is1 else 2)
            patterns.add(tuple(pick))
    assert patterns == {(1, 1), (1, 2), (2, 2)}
    plain = trainer(mixing_prob=0.0).latents(4)
    assert torch.equal(plain, plain[:, :1].expand_as(plain))


def test_schedule_optimizers_and_ema_are_the_official_ones() -> None:
    t = trainer(d_reg_every=16, path_every=4)
    assert t.cfg.ema_decay == 0.5 ** (32 / 10000) and SemanticTrainConfig().hflip is False
    assert t.g_optim.param_groups[0]["lr"] == pytest.approx(0.002 * 4 / 5)
    assert t.g_optim.param_groups[0]["betas"] == (0.0, pytest.approx(0.99 ** (4 / 5)))
    assert t.d_optim.param_groups[0]["lr"] == pytest.approx(0.002 * 16 / 17)
    assert t.d_optim.param_groups[0]["betas"] == (0.0, pytest.approx(0.99 ** (16 / 17)))
    before = [p.clone() for p in t.g_ema.parameters()]
    first, second = t.train_step(), t.train_step()
    assert {"r1_img", "r1_seg", "path", "path_length"} <= set(first)  # lazy terms at iteration 0
    assert not {"r1_img", "r1_seg", "path"} & set(second)
    live = dict(t.generator.named_parameters())
    moved = lagging = False
    for (name, p), old in zip(t.g_ema.named_parameters(), before, strict=True):
        moved |= not torch.equal(p, old)
        lagging |= not torch.equal(p, live[name])
    assert moved and lagging


def test_a_short_run_moves_its_losses_and_stays_finite() -> None:
    t = trainer()
    steps = [t.train_step() for _ in range(6)]
    assert all(math.isfinite(v) for step in steps for v in step.values())
    assert len({round(s["g_adv"], 6) for s in steps}) == 6 and len({round(s["d_adv"], 6) for s in steps}) == 6
    assert steps[-1]["mask"] < steps[0]["mask"]  # the final segmentation comes to agree with the coarse one


def run_in_memory(run_dir: Path, iters: int, resume: bool) -> TrainingRun:
    cfg = tiny_config(iters=iters, checkpoint_every=3, sample_every=2, val_every=2)
    run = TrainingRun(TINY, cfg, SeededLabelled(24, TINY.size, TINY.seg_dim, 0), run_dir,
                      val_data=SeededLabelled(4, TINY.size, TINY.seg_dim, 1), device="cpu",
                      resume=run_dir if resume else None, progress=False)
    run.run()
    return run


def test_resume_is_bit_exact(tmp_path: Path) -> None:
    straight = run_in_memory(tmp_path / "a", 8, resume=False)
    run_in_memory(tmp_path / "b", 5, resume=False)  # crosses an epoch boundary (24 items / batch 4 = 6)
    resumed = run_in_memory(tmp_path / "b", 8, resume=True)
    a, b = straight.trainer.networks_state(), resumed.trainer.networks_state()
    assert set(a) == {"generator", "discriminator", "g_ema"}
    for net in a:
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key} differs after resume"
    assert torch.equal(straight.trainer.mean_path_length, resumed.trainer.mean_path_length)
    saved = load_checkpoint(latest_checkpoint(tmp_path / "b"))
    assert isinstance(saved.config, SemanticConfig) and saved.config == TINY
    assert saved.training is not None and saved.training["iteration"] == 8
    assert saved.training["train_config"]["lambda_mask"] == 100.0
    assert saved.extra["class_names"] == [f"class{i}" for i in range(TINY.seg_dim)]
    val = [json.loads(line) for line in (tmp_path / "b" / "val.jsonl").read_text().splitlines()]
    assert {"val_mask", "val_coarse_agreement", "val_class_l1"} <= set(val[-1])
    sample = np.asarray(Image.open(sorted((tmp_path / "b" / "samples").glob("samples-*.png"))[-1]))
    # 16 samples, each image beside its segmentation: 8 tiles of 32 px (+ 2 px padding) per row, 4 rows
    assert sample.shape == (4 * 34 + 2, 8 * 34 + 2, 3)
    with pytest.raises(ValueError, match="cannot change path_every when resuming"):
        TrainingRun(TINY, tiny_config(), SeededLabelled(24, TINY.size, TINY.seg_dim, 0), tmp_path / "b",
                    device="cpu", resume=tmp_path / "b", resume_changes={"iters": 9, "path_every": 8}, progress=False)
    changed = TrainingRun(TINY, tiny_config(), SeededLabelled(24, TINY.size, TINY.seg_dim, 0), tmp_path / "b",
                          device="cpu", resume=tmp_path / "b", resume_changes={"iters": 9, "lambda_mask": 10.0},
                          progress=False)
    assert changed.cfg.lambda_mask == 10.0 and changed.history[-1]["resumed_with_changes"] == {
        "lambda_mask": {"was": 100.0, "now": 10.0}}


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    run = run_in_memory(tmp_path, 3, resume=False)
    good = latest_checkpoint(tmp_path)
    good_bytes = good.read_bytes()
    with torch.no_grad():
        run.trainer.generator.local.pos_embed.weight.fill_(float("nan"))
    run.cfg = run.cfg.replace(iters=6)
    run.trainer.cfg = run.cfg
    with pytest.raises(TrainingDiverged, match=r"iteration 3: non-finite loss .*last good checkpoint: .*ckpt-0000003"):
        run.run()
    assert latest_checkpoint(tmp_path) == good and good.read_bytes() == good_bytes


def test_two_processes_match_one(tmp_path: Path) -> None:
    """Every update of an iteration (D, R1 on both branches, G with the mask term, path length with the batch mean
    over both ranks; latents mixed part-wise) steps with the gradient of the whole batch, as one process does; and
    the weights after two iterations agree. (Later on, rounding grows chaotically: two single-process runs with 1
    and 2 threads differ by ~1e-4 after 4 iterations, so comparing weights later tests nothing more.)"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["2", "8", "--changes", json.dumps({"mixing_prob": 1.0})]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           SCRIPT, str(tmp_path / "ddp"), *args, "--dump", str(tmp_path / "ddp.st")]
    ddp = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    single = subprocess.run([sys.executable, SCRIPT, str(tmp_path / "one"), *args, "--dump", str(tmp_path / "one.st")],
                            capture_output=True, text=True, env=env, timeout=240)
    _, err = ddp.communicate(timeout=240)
    assert ddp.returncode == 0, err[-3000:]
    assert single.returncode == 0, single.stderr[-3000:]
    r0, r1 = load_file(f"{tmp_path}/ddp.st.rank0"), load_file(f"{tmp_path}/ddp.st.rank1")
    one = load_file(f"{tmp_path}/one.st.rank0")
    assert set(r0) == set(one)
    for key in r0:
        assert torch.equal(r0[key], r1[key]), f"ranks disagree on {key}"
    updates = {key.split("/")[0] for key in r0 if key.startswith("grad")}
    assert updates == {"grad0", "grad1", "grad2", "grad3"}  # D, R1, G, path length
    for update in sorted(updates):  # relative error over all of the update's gradients: rounding is ~1e-6, the
        keys = [k for k in r0 if k.startswith(f"{update}/")]  # path-length mean taken per rank gives ~3e-3
        got, want = (torch.cat([grads[k].flatten() for k in keys]) for grads in (r0, one))
        error = ((got - want).norm() / want.norm()).item()
        assert error < 1e-5, f"{update}: the 2-process gradient differs from the whole batch's by {error:.2e}"

    # the mapping network stores weights x 1/lr_mlp: compare effective weights there
    def effective(key: str, value: torch.Tensor) -> torch.Tensor:
        return value * TINY.lr_mlp if ".mapping_network." in f".{key.split('/')[-1]}" else value

    weights = [k for k in r0 if not k.startswith("grad")]
    worst = max((effective(k, r0[k]) - effective(k, one[k])).abs().max().item() for k in weights)
    assert worst < 1e-5, f"2-process run differs from the single-process run by {worst}"
    assert one["mean_path_length"].item() > 0
    torch.testing.assert_close(r0["mean_path_length"], one["mean_path_length"], rtol=1e-5, atol=0)
    assert len(list((tmp_path / "ddp" / "checkpoints").iterdir())) >= 1


# ----- labelled data through the CLI ------------------------------------------------------------------------

CLASSES = ["background", "face", "hair", "eyes", "mouth"]


def _labelled_folder(root: Path) -> tuple[Path, Path]:
    """images/ and labels/: a (good), b (no label map), c (label map of another size), d (RGB label map),
    e (a class beyond the named ones), f (good, 48x40: centre-cropped)."""
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    rng = np.random.default_rng(0)
    for name, (w, h) in {"a": (32, 32), "b": (32, 32), "c": (32, 32), "d": (32, 32), "e": (32, 32),
                         "f": (48, 40)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images / f"{name}.png")
        label = np.zeros((h, w), np.uint8)
        label[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1
        label[: h // 8] = 2
        label[h // 2, w // 3 : 2 * w // 3] = 4
        if name == "b":
            continue
        if name == "c":
            label = np.zeros((16, 16), np.uint8)
        if name == "e":
            label[0, 0] = len(CLASSES)
        image = Image.fromarray(label).convert("RGB") if name == "d" else Image.fromarray(label)
        image.save(labels / f"{name}.png")
    (labels / "classes.txt").write_text("# class 0 first\n" + "\n".join(CLASSES) + "\n")
    return images, labels


def test_prepare_with_labels_keeps_good_pairs_and_lists_the_bad(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = _labelled_folder(tmp_path)
    out = tmp_path / "ds"
    assert main(["prepare", str(images), str(out), "--size", "16", "--labels", str(labels), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and ": 2 images" in printed
    assert "label maps: 5 classes (0=background, 1=face, 2=hair, 3=eyes, 4=mouth)" in printed
    for line in ("b.png: label-missing", "c.png: label-size-mismatch (label map 16x16, image 32x32)",
                 "d.png: label-not-index (mode RGB", "e.png: label-out-of-range (class 5 in the label map"):
        assert line in printed, printed
    data = open_dataset(out, split="train", masks=True)
    assert data.part_names == CLASSES and len(data) == 2
    records = [data.record(i)["source"] for i in range(2)]
    assert records == ["a.png", "f.png"]
    want = {"a.png": np.asarray(Image.open(labels / "a.png")),
            "f.png": np.asarray(Image.open(labels / "f.png"))[:, 4:44]}  # the images' centre crop
    for i, source in enumerate(records):
        full = want[source]
        nearest = np.asarray(Image.fromarray(full).resize((16, 16), Image.Resampling.NEAREST))
        assert np.array_equal(data[i]["mask"].numpy(), nearest)
    assert main(["datasets", "info", str(out), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["masks"]["parts"] == CLASSES and card["skipped"]["by_reason"] == {
        "label-missing": 1, "label-not-index": 1, "label-out-of-range": 1, "label-size-mismatch": 1}

    # --label-names instead of classes.txt must agree with it; without either there are no class names
    bad = main(["prepare", str(images), str(tmp_path / "x"), "--size", "16", "--labels", str(labels),
                "--label-names", "bg,face", "--no-progress"])
    assert bad == 2 and "--label-names bg,face: differs from" in capsys.readouterr().err
    (labels / "classes.txt").unlink()
    assert main(["prepare", str(images), str(tmp_path / "x"), "--size", "16", "--labels", str(labels),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "name the classes in" in err[0] and "--label-names" in err[0]
    assert not (tmp_path / "x").exists()


def test_train_refuses_unlabelled_or_mismatched_data_and_trains_on_labels(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = _labelled_folder(tmp_path)
    for sub in ("b", "c", "d", "e"):  # only good pairs, enough for a batch of 2
        (images / f"{sub}.png").unlink()
    base = ["--size", "32", "--no-progress"]
    assert main(["prepare", str(images), str(tmp_path / "plain"), *base]) == 0
    assert main(["prepare", str(images), str(tmp_path / "five"), *base, "--labels", str(labels)]) == 0
    (labels / "classes.txt").unlink()
    assert main(["prepare", str(images), str(tmp_path / "six"), *base, "--labels", str(labels),
                 "--label-names", ",".join([*CLASSES, "hat"])]) == 0  # valid maps, one class more than the model
    capsys.readouterr()

    def train(data: str, out: str, *extra: str) -> tuple[int, list[str]]:
        code = main(["train", "--preset", "semantic-tiny", "--data", str(tmp_path / data), "--outdir",
                     str(tmp_path / out), "--iters", "2", "--batch", "2", "--num-workers", "0", "--no-progress",
                     "--checkpoint-every", "1", *extra])
        return code, capsys.readouterr().err.strip().splitlines()

    code, err = train("plain", "r1")
    assert code == 2 and len(err) == 1 and "this dataset has no masks" in err[0], err
    code, err = train("six", "r2")
    assert code == 2 and err == [f"stylemapgan train: error: {tmp_path / 'six'}: the dataset's label maps have 6 "
                                 "classes (background, face, hair, eyes, mouth, hat); the model has seg_dim 5"]
    code, err = train("five", "r3", "--perceptual", "none")
    assert code == 2 and err == ["stylemapgan train: error: --perceptual: not an option of SemanticStyleGAN training"]
    assert not any((tmp_path / r).exists() for r in ("r1", "r2", "r3"))
    code, err = train("five", "run", "--lambda-mask", "50", "--mixing-prob", "1")
    assert code == 0, err
    saved = load_checkpoint(latest_checkpoint(tmp_path / "run"))
    assert saved.training["iteration"] == 2 and saved.training["train_config"]["lambda_mask"] == 50.0
    assert saved.extra["class_names"] == CLASSES
    code, err = train("five", "run", "--resume", str(tmp_path / "run"))
    assert code == 2 and err == ["stylemapgan train: error: --preset: the model config comes from the checkpoint "
                                 "with --resume/--init-from"]
    code = main(["train", "--data", str(tmp_path / "five"), "--outdir", str(tmp_path / "run"), "--resume",
                 str(tmp_path / "run"), "--iters", "3", "--num-workers", "0", "--no-progress"])
    assert code == 0 and load_checkpoint(latest_checkpoint(tmp_path / "run")).training["iteration"] == 3


def test_train_refuses_a_class_count_other_than_the_models(tmp_path: Path) -> None:
    cfg = tiny_config(iters=1)
    data = SeededLabelled(8, TINY.size, TINY.seg_dim + 1, 0)
    with pytest.raises(ValueError, match=r"label maps have 6 classes \(class0, .*\); the model has seg_dim 5"):
        TrainingRun(TINY, cfg, data, tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(ValueError, match="trains on images with per-pixel label maps, and this dataset has none"):
        TrainingRun(TINY, cfg, [torch.zeros(3, 32, 32)] * 8, tmp_path / "run", device="cpu", progress=False)
    assert not (tmp_path / "run").exists()
