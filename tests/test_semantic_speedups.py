"""The SemanticStyleGAN training speed-ups compute what the plain formulations compute: the fused weighted sum
of the local generators, the in-place leaky ReLU whose backward treats its output as a constant (first and second
derivatives, as the path-length regulariser takes them), the multi-tensor EMA (bit for bit), and the fused Adam
(same update up to float32 rounding, version counters bumped so that cached layer weights are refreshed, kept on
across a resume from a checkpoint written without it)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from semantic_train_script import TINY, SeededLabelled, tiny_config
from stylemapgan.semantic import SemanticGenerator, layers
from stylemapgan.semantic.latents import broadcast_w
from stylemapgan.semantic.layers import PartLinear, PartModulatedLinear, leaky_relu_inplace
from stylemapgan.semantic.objective import path_lengths, path_noise_scale
from stylemapgan.training.semantic import SemanticTrainer
from stylemapgan.training.trainer import ema_update, set_requires_grad

pytestmark = pytest.mark.usefixtures("one_thread")
RTOL = 1e-5  # float32 round-off between two orderings of the same sums


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-30)).item()


def literal_weighted_sum(head: PartLinear, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_k weights[:, k] * head(x)[:, k]: the official per-class outputs summed with the fusion weights."""
    return (head(x) * weights.unsqueeze(2)).sum(1)


def matmul_weighted_sum(head: PartLinear, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The previous formulation (2-D weight broadcast by `matmul`)."""
    n, k, c, p = x.shape
    scaled = (x * weights.unsqueeze(2)).reshape(n, k * c, p)
    weight = head.effective_weight().transpose(0, 1).reshape(-1, k * c)
    return torch.matmul(weight, scaled) + torch.matmul(head.bias.t(), weights)


def test_weighted_sum_equals_the_per_class_sum_in_float64() -> None:
    torch.manual_seed(0)
    head = PartLinear(5, 6, 7).double()
    with torch.no_grad():
        head.bias.normal_()
        head.modulation.uniform_(0.5, 1.5)
    x = torch.randn(3, 5, 6, 16, dtype=torch.float64)
    weights = torch.softmax(torch.randn(3, 5, 16, dtype=torch.float64), 1)
    torch.testing.assert_close(head.weighted_sum(x, weights), literal_weighted_sum(head, x, weights),
                               rtol=1e-12, atol=1e-12)


def test_weighted_sum_gradients_equal_the_previous_formulation() -> None:
    torch.manual_seed(1)
    head = PartLinear(13, 32, 128)
    with torch.no_grad():
        head.bias.normal_()
    x = torch.randn(4, 13, 32, 64, requires_grad=True)
    weights = torch.softmax(torch.randn(4, 13, 64), 1).requires_grad_(True)
    probe = torch.randn(4, 128, 64)
    results = []
    for fn in (matmul_weighted_sum, lambda h, a, b: h.weighted_sum(a, b)):
        out = fn(head, x, weights)
        results.append([out, *torch.autograd.grad((out * probe).sum(), [x, weights, *head.parameters()])])
    for old, new in zip(*results, strict=True):
        assert rel_err(old, new) < RTOL


def test_inplace_leaky_relu_first_and_second_derivatives() -> None:
    torch.manual_seed(2)
    base = torch.randn(6, 40, dtype=torch.float64)
    results = []
    for act in (lambda t: F.leaky_relu(t, 0.2), leaky_relu_inplace):
        w = base.clone().requires_grad_(True)
        x = torch.randn(40, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        y = act(w @ x) @ x  # an op after the activation makes its second derivative reach w
        (grad,) = torch.autograd.grad(y.square().sum(), w, create_graph=True)
        (second,) = torch.autograd.grad(grad.square().sum(), w)
        results.append((y.detach(), grad.detach(), second))
    for old, new in zip(*results, strict=True):
        torch.testing.assert_close(new, old, rtol=1e-12, atol=1e-12)
    for needs_grad in (False, True):  # in place, with and without autograd recording
        fresh = torch.randn(5, requires_grad=needs_grad) * 1.0
        expected = F.leaky_relu(fresh.detach(), 0.2)
        assert leaky_relu_inplace(fresh) is fresh and torch.equal(fresh.detach(), expected)


def test_part_layer_first_derivative_is_bit_identical_to_autograds_inplace_op(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(4)
    layer = PartModulatedLinear(3, 8, 8, 16)
    x, styles = torch.randn(2, 3, 8, 20), torch.randn(2, 3, 16)
    results = []
    for act in (lambda t: F.leaky_relu_(t, layers.NEGATIVE_SLOPE), leaky_relu_inplace):
        monkeypatch.setattr(layers, "leaky_relu_inplace", act)
        out = layer(x, styles)
        results.append([out, *torch.autograd.grad(out.sin().sum(), list(layer.parameters()))])
    for old, new in zip(*results, strict=True):
        assert torch.equal(old, new)


def path_gradients(generator: SemanticGenerator, latents: torch.Tensor, noise: list[torch.Tensor],
                   probe: torch.Tensor) -> list[torch.Tensor]:
    """Gradients of a path-length penalty: the double backward the regulariser runs."""
    latents = latents.detach().requires_grad_(True)
    out = generator.synthesize(latents, noise=noise)
    lengths = path_lengths(out.image, latents, probe * path_noise_scale(TINY.size))
    return [lengths, *torch.autograd.grad((lengths - lengths.mean().detach()).square().mean(),
                                          [p for p in generator.parameters()], allow_unused=True)]


def test_path_length_gradients_equal_the_previous_formulation(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(5)
    g = SemanticGenerator(TINY)
    latents = g.expand_latents(broadcast_w(TINY, g.mapping(torch.randn(2, TINY.style_dim)))).detach()
    noise = [torch.randn(2, 1, c.noise_const.shape[-1], c.noise_const.shape[-1]) for c in g.render.convs]
    probe = torch.randn(2, 3, TINY.size, TINY.size)
    new = path_gradients(g, latents, noise, probe)
    monkeypatch.setattr(layers, "leaky_relu_inplace", lambda t: F.leaky_relu_(t, layers.NEGATIVE_SLOPE))
    monkeypatch.setattr(PartLinear, "weighted_sum", matmul_weighted_sum)
    old = path_gradients(g, latents, noise, probe)
    for a, b in zip(old, new, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert rel_err(a, b) < RTOL


def test_ema_update_is_bit_identical_to_the_per_tensor_loop() -> None:
    torch.manual_seed(6)
    live, ema = SemanticGenerator(TINY), SemanticGenerator(TINY)
    expected = [e.detach() * 0.99 + 0 for e in ema.parameters()]
    for e, p in zip(expected, live.parameters(), strict=True):
        e.add_(p.detach(), alpha=1 - 0.99)
    ema_update(ema, live, 0.99)
    assert all(torch.equal(a, b) for a, b in zip(ema.parameters(), expected, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(ema.buffers(), live.buffers(), strict=True))


def make_trainer() -> SemanticTrainer:
    return SemanticTrainer(TINY, tiny_config(), SeededLabelled(16, TINY.size, TINY.seg_dim, 0))


def test_fused_adam_update_equals_the_per_tensor_adam() -> None:
    t = make_trainer()
    assert t.fused_adam and t.g_optim.param_groups[0]["fused"] and t.d_optim.param_groups[0]["fused"]
    group = t.g_optim.param_groups[0]
    params = [p.detach().clone().requires_grad_(True) for p in group["params"]]
    plain = torch.optim.Adam(params, lr=group["lr"], betas=group["betas"], foreach=False)
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        for fused_p, plain_p in zip(group["params"], params, strict=True):
            fused_p.grad = torch.randn(fused_p.shape, generator=gen)
            plain_p.grad = fused_p.grad.clone()
        t.g_optim.step()
        plain.step()
    for fused_p, plain_p in zip(group["params"], params, strict=True):
        assert rel_err(plain_p.detach(), fused_p.detach()) < RTOL


def test_updates_refresh_the_discriminators_cached_weights() -> None:
    """The fused kernel does not bump version counters; the D's frozen-weight cache (used in G's step) must still
    see each update, or G trains against a stale D."""
    t = make_trainer()
    t.train_step()
    versions = [p._version for p in t.discriminator.parameters()]
    t.train_step()  # D update, then G's step through D with frozen (cached) weights
    assert all(p._version > v for p, v in zip(t.discriminator.parameters(), versions, strict=True))
    set_requires_grad(t.discriminator, False)
    image, seg = t.next_batch()
    cached = t.discriminator(image, seg)
    fresh = copy.deepcopy(t.discriminator)(image, seg)  # copies start with empty caches
    assert torch.equal(cached, fresh)


def test_resume_from_a_checkpoint_without_fused_adam_keeps_it_fused() -> None:
    a = make_trainer()
    a.train_step()
    training = copy.deepcopy(a.training_state())
    for state in training["optimizers"].values():  # as written before the fused flag was set
        for group in state["param_groups"]:
            group["fused"] = None
    b = make_trainer()
    b.load_state(copy.deepcopy(a.networks_state()), training)
    for optim in (b.g_optim, b.d_optim):
        assert optim.param_groups[0]["fused"] is True
    a.train_step()
    b.train_step()
    for net, params in a.networks_state().items():
        for key, value in params.items():
            assert torch.equal(value, b.networks_state()[net][key]), f"{net}.{key}"
