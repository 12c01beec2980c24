"""SemanticStyleGAN inversion on semantic-tiny: the official optimisation (loss terms, lr ramp, prior, stored noise,
batch independence), W+ vs expanded, pivotal tuning, the encoder and hybrid methods, saved latents; and the encoder's
training (losses move, exact resume, NaN guard, the encoder in the checkpoint, the train-encoder command)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from semantic_train_script import TINY, SeededLabelled
from stylemapgan.checkpoint import load_checkpoint, save_checkpoint
from stylemapgan.checkpoint.build import fresh_checkpoint
from stylemapgan.checkpoint.format import CheckpointError
from stylemapgan.checkpoint.models import load_inference_model
from stylemapgan.cli import main
from stylemapgan.config import PRESETS
from stylemapgan.editing.semantic import PartSwap, SemanticEditor
from stylemapgan.semantic import SEMANTIC_PRESETS, SemanticGenerator
from stylemapgan.semantic.encoder import SemanticEncoder
from stylemapgan.semantic.inversion import InversionError, InversionOptions, invert, ramped_lr
from stylemapgan.semantic.io import latents_npy, load_official_latents
from stylemapgan.semantic.latents import collapse_latents, expand_latents, part_mix
from stylemapgan.training.run import TrainingRun, latest_checkpoint
from stylemapgan.training.semantic import SemanticTrainConfig
from stylemapgan.training.semantic_encoder import SEMANTIC_ENCODER, SemanticEncoderTrainConfig, SemanticEncoderTrainer
from stylemapgan.training.trainer import TrainingDiverged

pytestmark = pytest.mark.usefixtures("one_thread")
# MSE only, no prior: how well the optimiser itself recovers an image (the official weights keep the latents near
# the mean, which a random tiny generator's mixed samples are far from)
PLAIN = InversionOptions(mse_weight=1.0, mean_weight=0.0)


def tiny_generator(seed: int = 0) -> SemanticGenerator:
    torch.manual_seed(seed)
    return SemanticGenerator(TINY).eval().requires_grad_(False)


def generated(g: SemanticGenerator, count: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(W+ latents mixed part-wise, their images with the stored noise)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = g.mapping(torch.randn(2, count, TINY.style_dim, generator=gen))
        latents = part_mix(TINY, w[0], w[1], torch.randint(0, 3, (count, TINY.seg_dim), generator=gen))
        return latents, g.synthesize(latents, randomize_noise=False).image


def test_lr_schedule_is_stylegan2s_ramp() -> None:
    assert ramped_lr(0.0, 0.1) == 0.0
    assert ramped_lr(0.025, 0.1) == pytest.approx(0.05)  # halfway up the 5 % ramp
    assert ramped_lr(0.05, 0.1) == pytest.approx(0.1) and ramped_lr(0.5, 0.1) == pytest.approx(0.1)
    assert ramped_lr(0.875, 0.1) == pytest.approx(0.05)  # halfway down the cosine over the last 25 %
    assert ramped_lr(0.999, 0.1) < 1e-5


def test_the_defaults_are_the_official_recipe() -> None:
    o = InversionOptions()
    assert (o.steps, o.lr, o.rampup, o.rampdown) == (400, 0.1, 0.05, 0.25)
    assert (o.lpips_weight, o.mse_weight, o.mean_weight, o.noise_weight) == (1.0, 0.1, 1.0, 10.0)
    assert (o.optimize_noise, o.lpips_size, o.pti_steps, o.pti_lr) == (False, 256, 0, 1e-4)


def test_optimisation_starts_at_the_mean_latent_with_the_official_loss() -> None:
    g = tiny_generator()
    _, target = generated(g, 1)
    mean = g.mean_latent()
    # one step: the lr ramp starts at 0, so the latents stay at the start; the loss there is 0.1 * MSE (the prior
    # is 0 at the mean; LPIPS off here)
    result = invert(g, target, steps=1, perceptual=None)
    assert torch.equal(result.latents, mean.view(1, 1, -1).expand(1, TINY.n_latent, -1))
    with torch.no_grad():
        start = g.synthesize(result.latents, randomize_noise=False).image
    assert result.history == [pytest.approx(0.1 * (start - target).square().mean().item(), rel=1e-5)]
    assert torch.allclose(result.images, start) and result.noise is None and result.generator is None


def test_steps_from_options_progress_callback_and_time_limit() -> None:
    g = tiny_generator()
    _, target = generated(g, 1)
    calls: list[tuple[str, int, int]] = []
    result = invert(g, target, steps=None, pti_steps=None, options=InversionOptions(steps=3, pti_steps=2),
                    perceptual=None, progress=lambda *call: calls.append(call))
    assert len(result.history) == 3 and len(result.pti_history) == 2
    assert calls == [("optimize", 1, 3), ("optimize", 2, 3), ("optimize", 3, 3), ("pti", 1, 2), ("pti", 2, 2)]
    limited = invert(g, target, steps=50, perceptual=None, options=InversionOptions(time_limit_s=1e-9))
    assert len(limited.history) == 1  # the first step always runs


def test_optimisation_recovers_a_generated_image() -> None:
    g = tiny_generator()
    _, target = generated(g, 2)
    start = invert(g, target, steps=0, perceptual=None)
    result = invert(g, target, steps=60, perceptual=None, options=PLAIN)
    assert result.latents.shape == (2, TINY.n_latent, TINY.style_dim)
    assert (result.mse < start.mse / 8).all(), (start.mse, result.mse)
    assert result.history[-1] < result.history[0] / 8
    # the kept latents are the last ones, and they render what is reported
    with torch.no_grad():
        again = g.synthesize(result.latents, randomize_noise=False).image
    assert torch.equal(again, result.images)


def test_a_batch_inverts_as_each_image_alone() -> None:
    g = tiny_generator()
    _, target = generated(g, 2)
    together = invert(g, target, steps=8, perceptual=None)
    alone = [invert(g, target[i : i + 1], steps=8, perceptual=None) for i in range(2)]
    # equal up to the rounding of batched convolutions (Adam scales each step to about lr = 0.1)
    assert torch.allclose(together.latents, torch.cat([a.latents for a in alone]), atol=1e-4)


def test_expanded_space_has_one_vector_per_local_layer() -> None:
    g = tiny_generator()
    _, target = generated(g, 2)
    w_plus = invert(g, target, steps=20, perceptual=None, options=PLAIN)
    expanded = invert(g, target, steps=20, perceptual=None, options=PLAIN, space="expanded")
    assert w_plus.latents.shape == (2, TINY.n_latent, TINY.style_dim)  # 11 = 1 base + 2 x 5 parts
    assert expanded.latents.shape == (2, TINY.n_latent_expanded, TINY.style_dim)  # 20 = 5 parts x 4 layers
    start = invert(g, target, steps=0, perceptual=None, space="expanded")
    assert torch.equal(start.latents, expand_latents(TINY, invert(g, target, steps=0, perceptual=None).latents))
    # more freedom: the expanded space fits at least as well within the same steps
    assert expanded.mse.mean() <= w_plus.mse.mean() * 1.05


def test_pivotal_tuning_lowers_the_loss_and_leaves_the_generator_alone() -> None:
    g = tiny_generator()
    before = {k: v.clone() for k, v in g.state_dict().items()}
    _, target = generated(g, 1)
    options = PLAIN.__class__(mse_weight=1.0, mean_weight=0.0, pti_lr=5e-4)  # official 1e-4 over 200-400 steps
    plain = invert(g, target, steps=10, perceptual=None, options=options)
    out = SemanticGenerator(TINY)
    tuned = invert(g, target, steps=10, pti_steps=30, perceptual=None, options=options, generator_out=out)
    assert torch.equal(tuned.latents, plain.latents)  # PTI tunes the weights at the found pivot only
    assert tuned.generator is out and not any(p.requires_grad for p in out.parameters())
    assert len(tuned.pti_history) == 30 and tuned.pti_history[-1] < tuned.pti_history[0] / 2
    assert tuned.mse.item() < plain.mse.item() / 2
    with torch.no_grad():
        assert torch.equal(out.synthesize(tuned.latents, randomize_noise=False).image, tuned.images)
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())
    with pytest.raises(InversionError, match="generator_out: must be a SemanticGenerator of the same config"):
        invert(g, target, steps=0, pti_steps=1, perceptual=None,
               generator_out=SemanticGenerator(TINY.replace(style_dim=16)))


def test_noise_optimisation_gives_each_image_its_own_maps() -> None:
    g = tiny_generator()
    with torch.no_grad():  # a trained generator's noise strengths (a fresh one's are 0: the noise does nothing)
        for conv in g.render.convs:
            conv.noise_weight.fill_(0.5)
    _, target = generated(g, 2)
    stored = [m.clone() for m in g.render.fixed_noise()]
    result = invert(g, target, steps=10, perceptual=None, options=InversionOptions(optimize_noise=True))
    assert all(torch.equal(a, b) for a, b in zip(stored, g.render.fixed_noise(), strict=True))  # copies moved
    assert result.noise is not None and len(result.noise) == len(stored)
    assert all(m.shape == (2, *s.shape[1:]) for m, s in zip(result.noise, stored, strict=True))
    assert not torch.equal(result.noise[0][0], result.noise[0][1])  # moved, each its own way
    with torch.no_grad():
        assert torch.equal(g.synthesize(result.latents, noise=result.noise, randomize_noise=False).image,
                           result.images)


def test_encoder_and_hybrid_methods() -> None:
    g = tiny_generator()
    _, target = generated(g, 2)
    encoder = SemanticEncoder(TINY).eval()
    encoder.set_mean_latent(g.mean_latent())
    # an untrained encoder answers the mean latent: the optimisation's own start
    encoded = invert(g, target, method="encoder", encoder=encoder, perceptual=None)
    mean_start = invert(g, target, steps=0, perceptual=None).latents
    assert encoded.history == [] and torch.allclose(encoded.latents, mean_start)
    hybrid = invert(g, target, method="hybrid", encoder=encoder, steps=5, perceptual=None)
    optimised = invert(g, target, steps=5, perceptual=None)
    assert torch.allclose(hybrid.latents, optimised.latents, atol=1e-6)
    with torch.no_grad():  # a trained-looking encoder: hybrid starts from its answer, not from the mean
        encoder.to_latents.bias.normal_()
    guess = encoder(target)
    hybrid = invert(g, target, method="hybrid", encoder=encoder, steps=1, perceptual=None)
    assert torch.allclose(hybrid.latents, guess)  # one step at lr 0
    cached = invert(g, target, method="encoder", init=guess, perceptual=None, space="expanded")
    assert torch.allclose(cached.latents, expand_latents(TINY, guess))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"method": "svm"}, "method: must be one of optimize, encoder, hybrid, got 'svm'"),
    ({"space": "w"}, "space: must be one of w\\+, expanded, got 'w'"),
    ({"method": "hybrid"}, "method 'hybrid' needs an encoder"),
    ({"steps": -1}, "steps: must be an integer >= 0"),
    ({"images": torch.zeros(1, 3, 16, 16)}, "images: the model is 32 px, got 16x16"),
    ({"images": torch.zeros(3, 32, 32)}, "images: expected \\[N, 3, 32, 32\\]"),
    ({"perceptual": "vgg"}, "perceptual: unknown LPIPS kind 'vgg'"),
])
def test_bad_arguments_raise_inversion_errors(kwargs: dict, message: str) -> None:
    g = tiny_generator()
    images = kwargs.pop("images", torch.zeros(1, 3, 32, 32))
    with pytest.raises(InversionError, match=message):
        invert(g, images, **kwargs)


def test_saved_latents_of_28_or_130_vectors_load(tmp_path: Path) -> None:
    official = SEMANTIC_PRESETS["semantic-256"].model
    for count in (28, 130):
        array = np.random.default_rng(count).standard_normal((1, count, 512)).astype(np.float32)
        np.save(tmp_path / f"{count}.npy", array)
        loaded = load_official_latents(tmp_path / f"{count}.npy", official)
        assert loaded.shape == (1, count, 512) and torch.equal(loaded, torch.from_numpy(array))
    with pytest.raises(ValueError, match=r"shape \[1, 27, 512\]"):
        np.save(tmp_path / "27.npy", np.zeros((1, 27, 512), np.float32))
        load_official_latents(tmp_path / "27.npy", official)
    # an inversion's latents round-trip through .npy and render the same image
    g = tiny_generator()
    _, target = generated(g, 1)
    result = invert(g, target, steps=3, perceptual=None, space="expanded")
    (tmp_path / "inv.npy").write_bytes(latents_npy(result.latents))
    with torch.no_grad():
        image = g.synthesize(load_official_latents(tmp_path / "inv.npy", TINY), randomize_noise=False).image
    assert torch.equal(image, result.images)


# ---- the encoder's training ---------------------------------------------------------------------------------

def encoder_config(**changes: object) -> SemanticEncoderTrainConfig:
    cfg = SemanticEncoderTrainConfig(batch=2, num_workers=0, perceptual="none", checkpoint_every=2, log_every=1,
                                     sample_every=3, val_every=3, val_count=4)
    return cfg.replace(**changes)


def generator_file(tmp_path: Path) -> Path:
    path = tmp_path / "generator.safetensors"
    ckpt = fresh_checkpoint(TINY, 0, "test")
    ckpt.extra["class_names"] = [f"class{i}" for i in range(TINY.seg_dim)]
    save_checkpoint(path, ckpt)
    return path


def test_encoder_training_moves_its_losses_and_keeps_the_generator_fixed() -> None:
    trainer = SemanticEncoderTrainer(TINY, encoder_config(lr=0.01), SeededLabelled(16, TINY.size, TINY.seg_dim, 0))
    trainer.load_weights(fresh_checkpoint(TINY, 0, "test").networks)
    generator = {k: v.clone() for k, v in trainer.g_ema.state_dict().items()}
    assert torch.allclose(trainer.encoder.w_avg, trainer.g_ema.mean_latent().view(-1))
    steps = [trainer.train_step() for _ in range(12)]
    assert all(math.isfinite(v) for s in steps for v in s.values())
    assert len({round(s["latent"], 6) for s in steps}) == 12
    first, last = (sum(s["latent"] for s in part) / 3 for part in (steps[:3], steps[-3:]))
    assert last < first * 0.9, (first, last)
    assert all(torch.equal(generator[k], v) for k, v in trainer.g_ema.state_dict().items())
    assert all(p.grad is None for p in trainer.g_ema.parameters())


def run_encoder(tmp_path: Path, run_dir: Path, iters: int, resume: bool, expanded_rank: int = 0) -> TrainingRun:
    changes = {"encoder_expanded_rank": expanded_rank} if expanded_rank and not resume else None
    run = TrainingRun(TINY, encoder_config(iters=iters), SeededLabelled(12, TINY.size, TINY.seg_dim, 0), run_dir,
                      val_data=SeededLabelled(4, TINY.size, TINY.seg_dim, 1), device="cpu",
                      resume=run_dir if resume else None, init_from=None if resume else generator_file(tmp_path),
                      progress=False, training=SEMANTIC_ENCODER, model_changes=changes)
    run.run()
    return run


def test_encoder_training_resumes_bit_exactly_and_the_checkpoint_carries_the_encoder(tmp_path: Path) -> None:
    straight = run_encoder(tmp_path, tmp_path / "a", 8, resume=False)
    run_encoder(tmp_path, tmp_path / "b", 5, resume=False)  # crosses an epoch boundary (12 items / batch 2 = 6)
    resumed = run_encoder(tmp_path, tmp_path / "b", 8, resume=True)
    a, b = straight.trainer.networks_state(), resumed.trainer.networks_state()
    assert set(a) == {"g_ema", "encoder", "e_ema"}
    for net in a:
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key} differs after resume"
    path = latest_checkpoint(tmp_path / "b")
    saved = load_checkpoint(path)
    assert saved.training is not None and saved.training["command"] == "train-encoder"
    assert saved.training["iteration"] == 8 and saved.config == TINY
    val = [json.loads(line) for line in (tmp_path / "b" / "val.jsonl").read_text().splitlines()]
    assert {"val_latent_mse", "val_fake_mse", "val_mse"} <= set(val[-1])
    model = load_inference_model(path)
    encoder = model.networks["encoder"]
    assert isinstance(encoder, SemanticEncoder) and isinstance(model.generator, SemanticGenerator)
    images = torch.rand(2, 3, TINY.size, TINY.size) * 2 - 1
    with torch.no_grad():
        assert torch.equal(encoder(images), resumed.trainer.e_ema(images))
    result = invert(model.generator, images, method="encoder", encoder=encoder, perceptual=None)
    assert result.latents.shape == (2, TINY.n_latent, TINY.style_dim)
    # a GAN run's --resume refuses this run, and the other way round
    with pytest.raises(ValueError, match="written by `stylemapgan train-encoder`; resume it with `stylemapgan "
                                         "train-encoder --resume`"):
        TrainingRun(TINY, SemanticTrainConfig(batch=2), SeededLabelled(12, TINY.size, TINY.seg_dim, 0),
                    tmp_path / "b", device="cpu", resume=tmp_path / "b", progress=False)


def test_an_encoder_fitted_to_one_generator_goes_on_against_another(tmp_path: Path) -> None:
    """adopt_from (train-encoder --encoder-from): the encoder of an earlier fit, the generator of --ckpt."""
    first = run_encoder(tmp_path, tmp_path / "first", 4, resume=False)
    later = tmp_path / "later.safetensors"
    later_ckpt = fresh_checkpoint(TINY, 1, "test")  # stands in for the generator trained further
    save_checkpoint(later, later_ckpt)
    run = TrainingRun(TINY, encoder_config(iters=6), SeededLabelled(12, TINY.size, TINY.seg_dim, 0),
                      tmp_path / "second", device="cpu", init_from=later, adopt_from=tmp_path / "first",
                      progress=False, training=SEMANTIC_ENCODER)
    fitted = first.trainer.networks_state()
    for name in ("encoder", "e_ema"):
        state = run.trainer.networks_state()[name]
        assert all(torch.equal(state[k], fitted[name][k]) for k in state), name
    g = run.trainer.g_ema.state_dict()
    assert all(torch.equal(g[k], later_ckpt.networks["g_ema"][k]) for k in g)
    assert any(not torch.equal(g[k], fitted["g_ema"][k]) for k in g)  # a generator other than the first fit's
    record = run.history[0]["networks_from"]
    assert record["networks"] == ["encoder", "e_ema"] and record["iterations"] == 4
    assert record["path"] == str(latest_checkpoint(tmp_path / "first"))
    run.run()
    saved = load_checkpoint(latest_checkpoint(tmp_path / "second"))
    assert saved.training["history"][0]["networks_from"]["sha256"] == record["sha256"]
    # refused before anything is built: another model's file, a file without an encoder, no init_from
    other = tmp_path / "other.safetensors"
    save_checkpoint(other, fresh_checkpoint(TINY.replace(style_dim=TINY.style_dim * 2), 0, "test"))
    data = SeededLabelled(12, TINY.size, TINY.seg_dim, 0)
    with pytest.raises(ValueError, match="model config differs from the generator's"):
        TrainingRun(TINY, encoder_config(), data, tmp_path / "x", device="cpu", init_from=later, adopt_from=other,
                    progress=False, training=SEMANTIC_ENCODER)
    with pytest.raises(CheckpointError, match="has none of encoder, e_ema"):
        TrainingRun(TINY, encoder_config(), data, tmp_path / "y", device="cpu", init_from=later, adopt_from=later,
                    progress=False, training=SEMANTIC_ENCODER)
    with pytest.raises(ValueError, match="give init_from too"):
        TrainingRun(TINY, encoder_config(), data, tmp_path / "z", device="cpu", resume=tmp_path / "first",
                    adopt_from=tmp_path / "first", progress=False, training=SEMANTIC_ENCODER)
    assert not any((tmp_path / name).exists() for name in "xyz")


def test_an_expanded_encoder_run_resumes_bit_exactly(tmp_path: Path) -> None:
    straight = run_encoder(tmp_path, tmp_path / "a", 6, resume=False, expanded_rank=2)
    run_encoder(tmp_path, tmp_path / "b", 3, resume=False, expanded_rank=2)
    resumed = run_encoder(tmp_path, tmp_path / "b", 6, resume=True)
    a, b = straight.trainer.networks_state(), resumed.trainer.networks_state()
    assert "slot_correction.basis" in a["encoder"] and resumed.trainer.model_config.encoder_expanded_rank == 2
    for net in a:
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key} differs after resume"
    assert a["encoder"]["slot_correction.coefficients.weight"].abs().max() > 0


def test_an_expanded_encoder_starts_as_its_w_plus_encoder_and_edits_parts(tmp_path: Path) -> None:
    """encoder_expanded_rank R > 0: expanded latents (W+ expanded + a rank-R correction per slot), zero at start."""
    expanded_cfg = TINY.replace(encoder_expanded_rank=3)
    encoder, w_plus = SemanticEncoder(expanded_cfg), SemanticEncoder(TINY)
    w_plus.load_state_dict({k: v for k, v in encoder.state_dict().items() if not k.startswith("slot_correction.")})
    images = torch.rand(2, 3, TINY.size, TINY.size) * 2 - 1
    with torch.no_grad():
        out = encoder(images)
        assert out.shape == (2, TINY.n_latent_expanded, TINY.style_dim) and encoder.latent_space == "expanded"
        assert torch.equal(out, expand_latents(TINY, w_plus(images))) and w_plus.latent_space == "w+"
    trainer = SemanticEncoderTrainer(expanded_cfg, encoder_config(lr=0.01),
                                     SeededLabelled(16, TINY.size, TINY.seg_dim, 0))
    trainer.load_weights(fresh_checkpoint(TINY, 0, "test").networks)
    steps = [trainer.train_step() for _ in range(8)]
    assert all(math.isfinite(v) for s in steps for v in s.values())
    assert steps[-1]["latent"] < steps[0]["latent"]
    correction = trainer.encoder.slot_correction.coefficients.weight
    assert correction.abs().max() > 0  # the correction learns
    g = trainer.g_ema
    result = invert(g, images, method="encoder", encoder=trainer.encoder, perceptual=None)  # space: the encoder's
    assert result.latents.shape == (2, TINY.n_latent_expanded, TINY.style_dim)
    with pytest.raises(InversionError, match="this encoder answers expanded latents"):
        invert(g, images, method="encoder", encoder=trainer.encoder, perceptual=None, space="w+")
    editor = SemanticEditor(g, encoder=trainer.encoder)
    assert editor.capabilities.projection_spaces == ("expanded", "w+")
    assert SemanticEditor(g, encoder=w_plus).capabilities.projection_spaces == ("w+", "expanded")
    swapped = editor.swap_latents(images[:1], [PartSwap(images[1:], (1,), "both")])
    source, reference = editor.code(images[:1]), editor.code(images[1:])
    rows = torch.arange(TINY.n_latent_expanded).view(TINY.seg_dim, TINY.local_layers)
    optimised = invert(g, images[:1], method="optimize", encoder=trainer.encoder, perceptual=None, steps=2)
    assert optimised.latents.shape[1] == TINY.n_latent_expanded  # the model's code space, optimised codes too
    # directions live on W+ rows: expanded codes collapse to W+ exactly when they are an expansion
    w = torch.randn(3, TINY.n_latent, TINY.style_dim)
    assert torch.allclose(collapse_latents(TINY, expand_latents(TINY, w)), w, atol=1e-6)
    assert editor.direction_codes(source).shape == (1, TINY.n_latent, TINY.style_dim)
    codes = editor.encode_codes(torch.rand(6, 3, TINY.size, TINY.size) * 2 - 1)
    direction, _, _ = editor.fit_direction("x", codes, torch.tensor([0, 1, 0, 1, 0, 1]).bool(), part="part1")
    assert direction.vector.shape == (TINY.n_latent, TINY.style_dim)
    # W+ files are written as before the field existed; an expanded encoder's config round-trips
    assert "encoder_expanded_rank" not in TINY.to_dict() and expanded_cfg.to_dict()["encoder_expanded_rank"] == 3
    assert type(TINY).from_dict(expanded_cfg.to_dict()) == expanded_cfg
    wide_cfg = TINY.replace(encoder_channel_base=TINY.channel_base * 4)
    assert "encoder_channel_base" not in TINY.to_dict() and type(TINY).from_dict(wide_cfg.to_dict()) == wide_cfg
    wide = SemanticEncoder(wide_cfg)
    assert wide.final_conv.weight.shape[0] == wide_cfg.encoder_channels(min(8, TINY.size))
    assert wide.final_conv.weight.shape[0] == 4 * w_plus.final_conv.weight.shape[0]
    own = rows[1, TINY.base_layers:]  # part 1's own layers; the base-code layers stay the source's, as in W+
    assert torch.equal(swapped[:, own], reference[:, own]) and not torch.equal(source[:, own], reference[:, own])
    kept = torch.cat([rows[1, :TINY.base_layers], rows[0], rows[2:].flatten()])
    assert torch.equal(swapped[:, kept], source[:, kept])


def test_a_nan_stops_encoder_training_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    run = run_encoder(tmp_path, tmp_path / "run", 2, resume=False)
    good = latest_checkpoint(tmp_path / "run")
    good_bytes = good.read_bytes()
    with torch.no_grad():
        run.trainer.encoder.hidden.weight.fill_(float("nan"))
    run.cfg = run.cfg.replace(iters=4)
    run.trainer.cfg = run.cfg
    with pytest.raises(TrainingDiverged, match=r"iteration 2: non-finite loss .*last good checkpoint: .*ckpt-0000002"):
        run.run()
    assert latest_checkpoint(tmp_path / "run") == good and good.read_bytes() == good_bytes


def test_train_encoder_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    assert main(["prepare", str(folder), str(tmp_path / "data"), "--size", "32", "--no-progress"]) == 0
    capsys.readouterr()
    ckpt = generator_file(tmp_path)

    def run(*args: str) -> tuple[int, list[str]]:
        code = main(["train-encoder", "--data", str(tmp_path / "data"), "--outdir", str(tmp_path / "run"),
                     "--batch", "2", "--num-workers", "0", "--perceptual", "none", "--no-progress", *args])
        captured = capsys.readouterr()
        return code, captured.err.strip().splitlines() + captured.out.strip().splitlines()

    code, out = run("--ckpt", str(ckpt), "--iters", "2", "--checkpoint-every", "1", "--lambda-real", "0.5")
    assert code == 0, out
    saved = load_checkpoint(latest_checkpoint(tmp_path / "run"))
    assert sorted(saved.networks) == ["e_ema", "encoder", "g_ema"]
    assert saved.training["train_config"]["lambda_real"] == 0.5 and saved.training["iteration"] == 2
    assert saved.extra["class_names"] == [f"class{i}" for i in range(TINY.seg_dim)]
    assert saved.provenance["data"]["train_images"] > 0
    code, out = run("--resume", str(tmp_path / "run"), "--iters", "3")
    assert code == 0 and load_checkpoint(latest_checkpoint(tmp_path / "run")).training["iteration"] == 3, out
    # bad input: one line naming the flag, exit 2
    code, out = run()
    assert code == 2 and out == ["stylemapgan train-encoder: error: --ckpt: required (the trained SemanticStyleGAN "
                                 "model), or --resume RUN"]
    code, out = run("--ckpt", str(ckpt), "--iters", "0")
    assert code == 2 and out == ["stylemapgan train-encoder: error: --iters: must be >= 1, got 0"]
    code, out = run("--ckpt", str(ckpt), "--encoder-from", str(tmp_path / "run"), "--outdir", str(tmp_path / "more"),
                    "--iters", "1")
    assert code == 0, out
    taken = load_checkpoint(latest_checkpoint(tmp_path / "more")).training["history"][0]["networks_from"]
    assert taken["networks"] == ["encoder", "e_ema"] and taken["iterations"] == 3
    code, out = run("--resume", str(tmp_path / "run"), "--encoder-from", str(tmp_path / "run"))
    assert code == 2 and out == ["stylemapgan train-encoder: error: --encoder-from: starts a new run from --ckpt's "
                                 "generator; a resumed run has its encoder"]
    code, out = run("--ckpt", str(ckpt), "--encoder-from", str(tmp_path / "absent"), "--outdir", str(tmp_path / "n"))
    assert code == 2 and len(out) == 1 and out[0].startswith("stylemapgan train-encoder: error: --encoder-from: ")
    assert not (tmp_path / "n").exists()
    code, out = run("--ckpt", str(ckpt), "--expanded-rank", "2", "--outdir", str(tmp_path / "wide"), "--iters", "1")
    assert code == 0, out
    saved = load_checkpoint(latest_checkpoint(tmp_path / "wide"))
    assert saved.config.encoder_expanded_rank == 2 and "slot_correction.basis" in saved.networks["encoder"]
    code, out = run("--ckpt", str(ckpt), "--encoder-channel-base", str(TINY.channel_base * 2), "--outdir",
                    str(tmp_path / "widetrunk"), "--iters", "1")
    assert code == 0, out
    widened = load_checkpoint(latest_checkpoint(tmp_path / "widetrunk")).config
    assert widened.encoder_channel_base == TINY.channel_base * 2
    code, out = run("--ckpt", str(ckpt), "--encoder-channel-base", "8", "--outdir", str(tmp_path / "n"))
    assert code == 2 and out == ["stylemapgan train-encoder: error: --encoder-channel-base: must be in [32, 32768], "
                                 "got 8"]
    code, out = run("--ckpt", str(ckpt), "--expanded-rank", "999", "--outdir", str(tmp_path / "n"))
    assert code == 2 and out == ["stylemapgan train-encoder: error: --expanded-rank: must be in [0, 256], got 999"]
    code, out = run("--resume", str(tmp_path / "wide"), "--expanded-rank", "4")
    assert code == 2 and out == ["stylemapgan train-encoder: error: --expanded-rank: sets a new run's encoder; a "
                                 "resumed run keeps its own"]
    stylemapgan_ckpt = tmp_path / "smg.safetensors"
    save_checkpoint(stylemapgan_ckpt, fresh_checkpoint(PRESETS["cpu-32"].model, 0, "test"))
    code, out = run("--ckpt", str(stylemapgan_ckpt), "--outdir", str(tmp_path / "other"))
    assert code == 2 and len(out) == 1 and "--ckpt: " in out[0] and "is a StyleMapGAN model" in out[0], out
