"""The part-swap consistency loss (ours, `--lambda-swap`, off by default): the code swap against the editor's swap,
the loss against a by-hand loop, the trainer's use of it (not computed when 0, bit-exact resume when on), and
that descending it alone lowers it (it can be learned)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from semantic_train_script import TINY, SeededLabelled, tiny_config
from stylemapgan.editing.parts import swap_parts
from stylemapgan.semantic.latents import LatentLayoutError, swap_part_codes
from stylemapgan.semantic.objective import part_swap_loss
from stylemapgan.training.run import TrainingRun
from stylemapgan.training.semantic import SemanticTrainer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_swap_part_codes_is_the_editors_part_swap_sample_by_sample() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(4, TINY.n_latent, TINY.style_dim, generator=gen) for _ in range(2))
    parts = torch.tensor([0, 2, TINY.seg_dim - 1, 2])
    out = swap_part_codes(TINY, a, b, parts)
    for i, k in enumerate(parts.tolist()):
        assert torch.equal(out[i : i + 1], swap_parts(TINY, a[i : i + 1], b[i : i + 1], [k], "both"))
    assert torch.equal(out[:, : TINY.base_layers], a[:, : TINY.base_layers])  # base codes stay the source's
    with pytest.raises(LatentLayoutError, match="parts"):
        swap_part_codes(TINY, a, b, torch.tensor([0, 1, 2, TINY.seg_dim]))


def test_part_swap_loss_is_the_per_sample_region_means() -> None:
    gen = torch.Generator().manual_seed(1)
    n, s, k = 3, 6, 4
    images = [torch.rand(n, 3, s, s, generator=gen) * 2 - 1 for _ in range(3)]
    labels = [torch.randint(0, k, (n, s, s), generator=gen) for _ in range(3)]
    labels[2][2] = 0  # sample 2: the reference does not show its part 1 -> no inside term for it
    parts = torch.tensor([1, 2, 1])
    got = part_swap_loss(images[0], labels[0], images[1], labels[1], images[2], labels[2], parts)
    inside, outside = [], []
    for i in range(n):
        p = int(parts[i])
        for region, target, acc in (((labels[0][i] == p) & (labels[2][i] == p), images[2][i], inside),
                                    ((labels[0][i] != p) & (labels[1][i] != p) & (labels[2][i] != p), images[1][i],
                                     outside)):
            if region.any():
                acc.append(float((images[0][i] - target)[:, region].square().mean()))
    assert len(inside) == 2 and len(outside) == 3
    assert float(got) == pytest.approx(sum(inside) / len(inside) + sum(outside) / len(outside), rel=1e-6)


def test_the_trainer_computes_it_only_when_weighted() -> None:
    off = SemanticTrainer(TINY, tiny_config(), SeededLabelled(16, TINY.size, TINY.seg_dim, 0))
    assert "swap" not in off.generator_step()
    rng_after_off = off.rng.get_state()
    on = SemanticTrainer(TINY, tiny_config(lambda_swap=1.0), SeededLabelled(16, TINY.size, TINY.seg_dim, 0))
    losses = on.generator_step()
    assert losses["swap"] > 0 and not torch.equal(on.rng.get_state(), rng_after_off)  # it draws its parts
    with pytest.raises(ValueError, match="lambda_swap"):
        tiny_config(lambda_swap=-1.0)


def test_resume_with_the_swap_loss_is_bit_exact(tmp_path: Path) -> None:
    def run(run_dir: Path, iters: int, resume: bool) -> TrainingRun:
        cfg = tiny_config(iters=iters, checkpoint_every=3, sample_every=100, val_every=100, lambda_swap=1.0)
        r = TrainingRun(TINY, cfg, SeededLabelled(24, TINY.size, TINY.seg_dim, 0), run_dir, device="cpu",
                        resume=run_dir if resume else None, progress=False)
        r.run()
        return r

    straight = run(tmp_path / "a", 6, resume=False)
    run(tmp_path / "b", 3, resume=False)
    resumed = run(tmp_path / "b", 6, resume=True)
    a, b = straight.trainer.networks_state(), resumed.trainer.networks_state()
    for net in a:
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key} differs after resume"


def test_descending_the_loss_alone_makes_swaps_follow_their_parts() -> None:
    """On fixed codes, noise and targets (the source and reference renders), 30 Adam steps on the swap term alone
    lower it by more than half: what a part's codes render can be moved towards the reference inside the part and
    the source outside it."""
    t = SemanticTrainer(TINY, tiny_config(lambda_swap=1.0), SeededLabelled(16, TINY.size, TINY.seg_dim, 0))
    latents, noise = t.latents(4).detach(), t.render_noise(4)
    optim = torch.optim.Adam(t.generator.parameters(), lr=2e-3)
    values = []
    with torch.no_grad():
        fake = t.generator.synthesize(latents, noise=noise)
    for _ in range(30):
        state = t.rng.get_state()  # the same parts every step
        loss = t.part_swap_term(latents, noise, fake.image, fake.segmentation)
        t.rng.set_state(state)
        optim.zero_grad()
        loss.backward()
        optim.step()
        values.append(loss.item())
    assert values[-1] < 0.5 * values[0], values
