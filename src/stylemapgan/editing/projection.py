"""Projection of images into stylemap space: encoder (one pass), optimisation (Image2StyleGAN style, from the
mean stylemap) and hybrid (encoder init, then optimisation); optional pivotal tuning (PTI) of the generator
around the projected stylemap for images far from the training data.

The method name is resolved once, at the boundary, into an initialiser and whether to optimise. The loss is
per sample (MSE + weight * LPIPS), summed over the batch: Adam is element-wise, so optimising a batch
together is the same as optimising each image alone. The best stylemap seen for each image is kept.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from stylemapgan.editing.errors import EditingError
from stylemapgan.losses.perceptual import perceptual_distance, reconstruction_metrics  # shared with semantic
from stylemapgan.networks import Encoder, Generator


@dataclass(frozen=True)
class ProjectionOptions:
    steps: int = 100
    lr: float = 0.05
    mse_weight: float = 1.0
    perceptual_weight: float = 1.0
    pti_steps: int = 0
    pti_lr: float = 3e-4
    # Stop the stylemap optimisation early, keeping the best so far (servers: a bound on one request's work).
    # Checked before each step; the first step always runs.
    time_limit_s: float | None = None


Initialiser = Callable[[Generator, Encoder, torch.Tensor, torch.Tensor], torch.Tensor]


def init_from_encoder(
    generator: Generator, encoder: Encoder, targets: torch.Tensor, mean: torch.Tensor
) -> torch.Tensor:
    return encoder(targets)


def init_from_mean(generator: Generator, encoder: Encoder, targets: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    return mean.expand(targets.shape[0], -1, -1, -1).clone()


@dataclass(frozen=True)
class ProjectionMethod:
    name: str
    initialise: Initialiser
    optimises: bool
    needs_mean: bool


PROJECTION_METHODS: dict[str, ProjectionMethod] = {
    "encoder": ProjectionMethod("encoder", init_from_encoder, optimises=False, needs_mean=False),
    "optimize": ProjectionMethod("optimize", init_from_mean, optimises=True, needs_mean=True),
    "hybrid": ProjectionMethod("hybrid", init_from_encoder, optimises=True, needs_mean=False),
}


def projection_method(name: str) -> ProjectionMethod:
    try:
        return PROJECTION_METHODS[name]
    except KeyError:
        raise EditingError(f"method: must be one of {', '.join(PROJECTION_METHODS)}, got {name!r}") from None


@dataclass
class ProjectionResult:
    stylemaps: torch.Tensor  # [N, C, s, s]
    images: torch.Tensor  # [N, 3, H, W] reconstructions (by the tuned generator when PTI ran)
    mse: torch.Tensor  # [N], images in [-1, 1], reconstruction clamped to [-1, 1]
    perceptual: torch.Tensor | None  # [N] LPIPS of the clamped reconstruction, None without a module
    history: list[float] = field(default_factory=list)  # mean loss per optimisation step
    loss: torch.Tensor | None = None  # [N] loss of the kept stylemap (when optimised)
    tuned_generators: list[Generator] | None = None  # one per image when PTI ran


def per_sample_loss(
    images: torch.Tensor, targets: torch.Tensor, perceptual: nn.Module | None, options: ProjectionOptions
) -> torch.Tensor:
    loss = options.mse_weight * (images - targets).square().flatten(1).mean(1)
    if perceptual is not None and options.perceptual_weight:
        loss = loss + options.perceptual_weight * perceptual_distance(perceptual, images, targets)
    return loss


def optimise_stylemaps(
    generator: Generator,
    targets: torch.Tensor,
    init: torch.Tensor,
    options: ProjectionOptions,
    perceptual: nn.Module | None,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Adam on the stylemaps; returns the best stylemap per image, its loss, and the mean loss per step taken
    (fewer than `options.steps` when `options.time_limit_s` ran out)."""
    stylemap = init.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([stylemap], lr=options.lr)
    best = stylemap.detach().clone()
    best_loss = torch.full((targets.shape[0],), float("inf"), device=targets.device)
    history: list[float] = []
    deadline = None if options.time_limit_s is None else time.perf_counter() + options.time_limit_s
    with torch.enable_grad():
        for _ in tqdm(range(options.steps), desc="optimise", leave=False, disable=not progress):
            if deadline is not None and history and time.perf_counter() > deadline:
                break
            loss = per_sample_loss(generator.decode(stylemap), targets, perceptual, options)
            with torch.no_grad():  # loss of the current stylemap, before this step changes it
                improved = loss < best_loss
                best[improved] = stylemap[improved]
                best_loss = torch.where(improved, loss, best_loss)
            history.append(float(loss.detach().mean()))
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
        with torch.no_grad():
            loss = per_sample_loss(generator.decode(stylemap), targets, perceptual, options)
            improved = loss < best_loss
            best[improved] = stylemap[improved]
            best_loss = torch.where(improved, loss, best_loss)
    return best, best_loss, history


def pivotal_tuning(
    generator: Generator,
    stylemap: torch.Tensor,
    target: torch.Tensor,
    options: ProjectionOptions,
    perceptual: nn.Module | None,
    progress: bool = False,
) -> Generator:
    """A copy of the generator fine-tuned (resizer + synthesis) so that it renders `target` from `stylemap`."""
    tuned = copy.deepcopy(generator)
    params = [p for name, p in tuned.named_parameters() if not name.startswith("mapping.")]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=options.pti_lr)
    pivot = stylemap.detach()
    with torch.enable_grad():
        steps = tqdm(range(options.pti_steps), desc="pivotal tuning", leave=False, disable=not progress)
        for _ in steps:
            loss = per_sample_loss(tuned.decode(pivot), target, perceptual, options).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return tuned.requires_grad_(False).eval()


def project(
    generator: Generator,
    encoder: Encoder,
    targets: torch.Tensor,
    method: str = "encoder",
    options: ProjectionOptions | None = None,
    perceptual: nn.Module | None = None,
    mean_stylemap: torch.Tensor | None = None,
    progress: bool = False,
    init: torch.Tensor | None = None,
    *,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> ProjectionResult:
    """Project [N, 3, size, size] images (in [-1, 1]) into stylemaps; see the module docstring.

    `init` replaces the method's initialiser (the Editor passes cached encodings). `decode` renders the kept
    stylemaps (default: `generator.decode`; the Editor passes its runner's). The optimisation and PTI always
    run on `generator` itself: they need autograd."""
    options = options or ProjectionOptions()
    plan = projection_method(method)
    if options.steps < 0 or options.pti_steps < 0:
        raise EditingError("steps: must be >= 0")
    if plan.needs_mean and mean_stylemap is None:
        raise EditingError(f"method {method!r} needs the mean stylemap")
    mean = mean_stylemap if mean_stylemap is not None else targets.new_zeros(0)
    with torch.no_grad():
        stylemaps = init if init is not None else plan.initialise(generator, encoder, targets, mean)
    history: list[float] = []
    best_loss = None
    if plan.optimises and options.steps > 0:
        stylemaps, best_loss, history = optimise_stylemaps(generator, targets, stylemaps, options, perceptual, progress)
    tuned: list[Generator] | None = None
    with torch.no_grad():
        images = (decode or generator.decode)(stylemaps)
    if options.pti_steps > 0:
        tuned = [
            pivotal_tuning(generator, stylemaps[i : i + 1], targets[i : i + 1], options, perceptual, progress)
            for i in range(targets.shape[0])
        ]
        with torch.no_grad():
            images = torch.cat([g.decode(stylemaps[i : i + 1]) for i, g in enumerate(tuned)])
    mse, lpips = reconstruction_metrics(images, targets, perceptual)
    return ProjectionResult(stylemaps.detach(), images.detach(), mse, lpips, history, best_loss, tuned)
