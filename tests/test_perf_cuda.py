"""The CUDA path (marker `cuda`; benchmarks/gpu_check.sh runs these on a lent GPU, skipped everywhere else):
networks, the cached edit, bf16 and a training step on the GPU agree with the CPU's numbers."""

from __future__ import annotations

import pytest
import torch

from stylemapgan.config import get_preset
from stylemapgan.editing import Editor, RectangleMask, rectangle_mask
from stylemapgan.networks import Discriminator, Encoder, Generator
from stylemapgan.utils.precision import set_tf32

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

BF16_PSNR_BOUND_DB = 40.0  # as tests/test_perf_precision.py documents for the CPU


@pytest.fixture(autouse=True)
def plain_fp32():
    set_tf32(False)
    yield
    set_tf32(False)


def _nets(name: str = "tiny"):
    config = get_preset(name).model
    torch.manual_seed(0)
    return config, Generator(config).eval(), Encoder(config).eval(), Discriminator(config).eval()


def test_networks_on_cuda_equal_the_cpu() -> None:
    config, g, e, d = _nets()
    gen = torch.Generator().manual_seed(1)
    stylemap = torch.randn(2, *config.stylemap_shape, generator=gen)
    images = torch.rand(4, 3, config.size, config.size, generator=gen) * 2 - 1
    with torch.no_grad():
        cpu = (g.decode(stylemap), e(images), d(images))
        g, e, d = g.cuda(), e.cuda(), d.cuda()
        gpu = (g.decode(stylemap.cuda()), e(images.cuda()), d(images.cuda()))
    for a, b in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=1e-4)


def test_cached_edit_on_cuda_equals_the_full_recomputation_and_bf16_stays_close() -> None:
    config, g, e, _ = _nets()
    size = config.size
    images = (torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(2)) * 2 - 1).cuda()
    mask = rectangle_mask(RectangleMask(size // 4, size // 4, 3 * size // 4, 3 * size // 4), size)
    outs = {}
    for dtype in ("fp32", "bf16"):
        editor = Editor(g, e, device="cuda", dtype=dtype)
        src, ref = editor.encode(images[0]), editor.encode(images[1])
        fast = editor.local_edit(src, [ref], [mask], mode="w_plus")
        full = editor.local_edit(src, [ref], [mask], mode="w_plus", fast=False)
        assert fast.is_cuda and fast.dtype == torch.float32
        if dtype == "fp32":
            torch.testing.assert_close(fast, full, rtol=0, atol=1e-4)
        outs[dtype] = fast
    mse = ((outs["fp32"] - outs["bf16"]) ** 2).mean()
    assert 10 * torch.log10(4 / mse).item() > BF16_PSNR_BOUND_DB


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_a_training_step_on_cuda_is_finite(bf16: bool) -> None:
    from stylemapgan.perf.bench import RandomImages
    from stylemapgan.training.config import TrainConfig
    from stylemapgan.training.trainer import Trainer

    config = get_preset("tiny").model
    cfg = TrainConfig(batch=4, perceptual="none", num_workers=0, amp_bf16=bf16)
    trainer = Trainer(config, cfg, RandomImages(8, config.size), device="cuda")
    losses = trainer.train_step()
    assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert next(trainer.generator.parameters()).is_cuda
