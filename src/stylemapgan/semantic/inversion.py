"""Inversion of images into SemanticStyleGAN latents: the 28-vector W+ (or the 130-vector expanded space).

Methods (spec section 10):
- "optimize", the official recipe (`visualize/invert.py`): start at the mean w (10,000 z) in every slot; Adam with
  lr 0.1 under StyleGAN2's schedule (ramp-up over the first 5 % of the steps, cosine ramp-down over the last
  25 %), 400 steps; loss = 1.0 * LPIPS + 0.1 * MSE + 1.0 * MSE(latents, mean latent). The render net's noise maps
  are the stored ones and are not optimised (the official default); with `optimize_noise` they are, with the
  official 10 * mean(noise^2) regulariser. The last latents are kept, as official.
- "encoder": one pass of a trained `SemanticEncoder` (our addition; the official repository never released one).
- "hybrid": the encoder's latents as the start of the optimisation (the prior still pulls towards the mean w).
Pivotal tuning (`pti_steps`, official `--finetune_step`, "200-400 should give good result") then fine-tunes every
generator weight with Adam lr 1e-4 on LPIPS + 0.1 * MSE at the found latents; the given generator is never
changed: a copy (or `generator_out`) is tuned.

Batches: the latent loss is per image and summed, and Adam is element-wise, so inverting a batch gives each image
the latents it would get alone (the official script inverts one image at a time). Pivotal tuning shares the
weights: it tunes one generator on the batch's mean loss (one image: the official per-image tuning).

LPIPS: the official code average-pools both images to 256 x 256 first; we pool images larger than `lpips_size`
(256) and score smaller ones at their own size (the official pooling would upsample a 64 px image 4x by
replication, for 16x the LPIPS work); under 32 px they are upsampled to 32 (the trunks need it).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from stylemapgan.losses.perceptual import build_perceptual, perceptual_distance, reconstruction_metrics
from stylemapgan.semantic.generator import SemanticGenerator
from stylemapgan.semantic.latents import expand_latents

METHODS = ("optimize", "encoder", "hybrid")
SPACES = ("w+", "expanded")

# progress(stage, step, total): stage "optimize" or "pti", step counted from 1
ProgressCallback = Callable[[str, int, int], None]


class InversionError(ValueError):
    """Bad arguments to `invert` (method, space, images, a missing encoder); the message names the argument."""


@dataclass(frozen=True)
class InversionOptions:
    """The optimisation and pivotal-tuning settings; the defaults are the official `invert.py` ones."""

    steps: int = 400
    lr: float = 0.1
    rampup: float = 0.05  # share of the steps over which the lr ramps up from 0
    rampdown: float = 0.25  # share of the steps over which it ramps down (cosine) to 0
    lpips_weight: float = 1.0
    mse_weight: float = 0.1
    mean_weight: float = 1.0  # MSE(latents, mean latent): keeps the latents near the distribution
    optimize_noise: bool = False  # official --no_noises True: the stored noise maps stay as they are
    noise_weight: float = 10.0  # mean over maps of mean(noise^2); only when the noise is optimised
    lpips_size: int | None = 256  # images larger than this are average-pooled to it for LPIPS (None: never)
    pti_steps: int = 0
    pti_lr: float = 1e-4
    # Stop the latent optimisation early, keeping the latents reached (servers: a bound on one request's work).
    # Checked before each step; the first step always runs.
    time_limit_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "pti_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InversionError(f"{name}: must be an integer >= 0, got {value!r}")
        for name in ("lr", "lpips_weight", "mse_weight", "mean_weight", "noise_weight", "pti_lr"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise InversionError(f"{name}: must be a finite number >= 0, got {value!r}")
        for name in ("rampup", "rampdown"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise InversionError(f"{name}: must be in (0, 1], got {value!r}")
        if self.lpips_size is not None and self.lpips_size < 1:
            raise InversionError(f"lpips_size: must be >= 1 or None, got {self.lpips_size!r}")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise InversionError(f"time_limit_s: must be > 0 or None, got {self.time_limit_s!r}")


@dataclass
class InversionResult:
    latents: torch.Tensor  # [N, n_latent, D] (W+) or [N, n_latent_expanded, D] (expanded)
    images: torch.Tensor  # [N, 3, H, W] reconstructions, by the tuned generator when PTI ran
    segmentation: torch.Tensor  # [N, K, H, W] class logits of the reconstructions
    mse: torch.Tensor  # [N], reconstruction clamped to [-1, 1] vs the target
    lpips: torch.Tensor | None  # [N] LPIPS of the clamped reconstruction (native size); None without a network
    history: list[float] = field(default_factory=list)  # mean latent-optimisation loss per step taken
    pti_history: list[float] = field(default_factory=list)  # mean tuning loss per PTI step
    generator: SemanticGenerator | None = None  # the tuned generator when PTI ran
    noise: list[torch.Tensor] | None = None  # optimised noise maps [N, 1, r, r] (None: the stored maps)
    seconds: float = 0.0  # wall time of the whole inversion


def ramped_lr(t: float, lr: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """StyleGAN2's projection schedule at progress t in [0, 1): 0 at t = 0, up over `rampup`, cosine down over
    the last `rampdown`."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * min(1.0, t / rampup)


def _lpips_view(images: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is not None and images.shape[-1] > size:
        return F.adaptive_avg_pool2d(images, (size, size))
    return images


def _resolve_perceptual(perceptual: nn.Module | str | None, device: torch.device) -> nn.Module | None:
    if isinstance(perceptual, str):
        try:
            perceptual = build_perceptual(perceptual)
        except (ValueError, FileNotFoundError, ImportError) as exc:
            raise InversionError(f"perceptual: {exc}") from None
    return perceptual.to(device) if perceptual is not None else None


def _check_images(generator: SemanticGenerator, images: torch.Tensor) -> None:
    size = generator.config.size
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3 or images.shape[0] < 1:
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InversionError(f"images: expected [N, 3, {size}, {size}] in [-1, 1], got {shape}")
    if tuple(images.shape[-2:]) != (size, size):
        raise InversionError(f"images: the model is {size} px, got {images.shape[-2]}x{images.shape[-1]}")
    if not torch.isfinite(images).all():
        raise InversionError("images: contain NaN or infinite values")


def image_losses(
    images: torch.Tensor, targets: torch.Tensor, perceptual: nn.Module | None, options: InversionOptions
) -> torch.Tensor:
    """Per-image lpips_weight * LPIPS + mse_weight * MSE (both on the raw, unclamped output, as official)."""
    loss = options.mse_weight * (images - targets).square().flatten(1).mean(1)
    if perceptual is not None and options.lpips_weight:
        view = options.lpips_size
        loss = loss + options.lpips_weight * perceptual_distance(
            perceptual, _lpips_view(images, view), _lpips_view(targets, view)
        )
    return loss


def _report(progress: bool | ProgressCallback | None, stage: str, step: int, total: int) -> None:
    if callable(progress):
        progress(stage, step, total)


def optimise_latents(
    generator: SemanticGenerator,
    targets: torch.Tensor,
    init: torch.Tensor,
    mean: torch.Tensor,
    options: InversionOptions,
    perceptual: nn.Module | None,
    progress: bool | ProgressCallback | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor] | None, list[float]]:
    """The official latent optimisation from `init`; returns the last latents, the optimised noise maps (None
    when the stored ones were used) and the mean loss per step taken."""
    latents = init.detach().clone().requires_grad_(True)
    noise = None
    params = [latents]
    if options.optimize_noise:
        n = targets.shape[0]
        noise = [m.detach().expand(n, -1, -1, -1).clone().requires_grad_(True)
                 for m in generator.render.fixed_noise()]
        params += noise
    optimizer = torch.optim.Adam(params, lr=options.lr)
    prior_target = mean.expand_as(latents)
    history: list[float] = []
    deadline = None if options.time_limit_s is None else time.perf_counter() + options.time_limit_s
    bar = tqdm(total=options.steps, desc="optimise", leave=False, disable=progress is not True)
    with torch.enable_grad(), bar:
        for step in range(options.steps):
            if deadline is not None and history and time.perf_counter() > deadline:
                break
            for group in optimizer.param_groups:
                group["lr"] = ramped_lr(step / options.steps, options.lr, options.rampdown, options.rampup)
            out = generator.synthesize(latents, noise=noise, randomize_noise=False)
            loss = image_losses(out.image, targets, perceptual, options)
            loss = loss + options.mean_weight * (latents - prior_target).square().flatten(1).mean(1)
            if noise is not None and options.noise_weight:
                per_map = torch.stack([m.square().flatten(1).mean(1) for m in noise], 1)  # [N, maps]
                loss = loss + options.noise_weight * per_map.mean(1)
            history.append(float(loss.detach().mean()))
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            bar.update(1)
            _report(progress, "optimize", step + 1, options.steps)
    detached = [m.detach() for m in noise] if noise is not None else None
    return latents.detach(), detached, history


def pivotal_tuning(
    generator: SemanticGenerator,
    latents: torch.Tensor,
    targets: torch.Tensor,
    options: InversionOptions,
    perceptual: nn.Module | None,
    noise: list[torch.Tensor] | None = None,
    generator_out: SemanticGenerator | None = None,
    progress: bool | ProgressCallback | None = None,
) -> tuple[SemanticGenerator, list[float]]:
    """A copy of the generator (or `generator_out`, given the same weights first) whose weights are all tuned with
    Adam (pti_lr) so that it renders `targets` from the fixed `latents`; returns it (frozen, eval) and the loss
    per step. The loss is the batch mean of the image losses (one image: the official per-image tuning)."""
    if generator_out is None:
        tuned = copy.deepcopy(generator)
    else:
        if not isinstance(generator_out, SemanticGenerator) or generator_out.config != generator.config:
            raise InversionError("generator_out: must be a SemanticGenerator of the same config as the generator")
        generator_out.load_state_dict(generator.state_dict())
        tuned = generator_out.to(latents.device)
    tuned.requires_grad_(True)
    optimizer = torch.optim.Adam(tuned.parameters(), lr=options.pti_lr)
    pivot = latents.detach()
    history: list[float] = []
    bar = tqdm(total=options.pti_steps, desc="pivotal tuning", leave=False, disable=progress is not True)
    with torch.enable_grad(), bar:
        for step in range(options.pti_steps):
            out = tuned.synthesize(pivot, noise=noise, randomize_noise=False)
            loss = image_losses(out.image, targets, perceptual, options).mean()
            history.append(float(loss.detach()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.update(1)
            _report(progress, "pti", step + 1, options.pti_steps)
    return tuned.requires_grad_(False).eval(), history


def default_space(encoder: nn.Module | None) -> str:
    """The space an inversion runs in when none is asked: the model's code space, i.e. its encoder's layout
    (`latent_space`: an expanded encoder's model keeps every code expanded, optimised ones too), else W+."""
    return getattr(encoder, "latent_space", "w+") if encoder is not None else "w+"


def invert(
    generator: SemanticGenerator,
    images: torch.Tensor,
    *,
    method: str = "optimize",
    encoder: nn.Module | None = None,
    steps: int | None = 400,
    space: str | None = None,
    pti_steps: int | None = 0,
    generator_out: SemanticGenerator | None = None,
    progress: bool | ProgressCallback | None = None,
    perceptual: nn.Module | str | None = "stlpips-vgg",
    options: InversionOptions | None = None,
    mean_latent: torch.Tensor | None = None,
    init: torch.Tensor | None = None,
) -> InversionResult:
    """Invert [N, 3, size, size] images in [-1, 1] into SemanticStyleGAN latents (see the module docstring).

    method: "optimize" (official recipe), "encoder" (one pass; needs `encoder`) or "hybrid" (encoder start, then
    the optimisation). space: "w+" ([N, n_latent, D], 28 vectors officially) or "expanded" ([N, n_latent_expanded,
    D], 130: one vector per local layer, more freedom, no longer a part-wise W+ code); None: the encoder's
    layout (`default_space`), W+ without one. steps / pti_steps override
    `options`' (official 400 / 0; None: take `options`'). perceptual: an LPIPS module (pass one when inverting
    repeatedly), a kind name (`losses.perceptual.KINDS`, built here) or None (no LPIPS term). progress: True for
    tqdm bars, or a callback progress(stage, step, total). mean_latent: the mean w [1, D] (default
    `generator.mean_latent()`, 10,000 z). init: start latents (W+ or expanded) instead of the method's own start
    (e.g. cached encodings). The result's images render the latents with the stored noise maps (or the optimised
    ones, `result.noise`), by the tuned generator when PTI ran.
    """
    started = time.perf_counter()
    if method not in METHODS:
        raise InversionError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")
    if space is None:
        space = default_space(encoder)
    if space not in SPACES:
        raise InversionError(f"space: must be one of {', '.join(SPACES)}, got {space!r}")
    if not isinstance(generator, SemanticGenerator):
        raise InversionError(f"generator: expected a SemanticGenerator, got {type(generator).__name__}")
    _check_images(generator, images)
    options = options or InversionOptions()
    options = dataclasses.replace(options, steps=options.steps if steps is None else steps,
                                  pti_steps=options.pti_steps if pti_steps is None else pti_steps)
    if method in ("encoder", "hybrid") and encoder is None and init is None:
        raise InversionError(f"method {method!r} needs an encoder (train one with `stylemapgan train-encoder`)")
    config = generator.config
    device = next(generator.parameters()).device
    targets = images.to(device, torch.float32)
    perceptual_net = _resolve_perceptual(perceptual, device)

    needs_mean = (method != "encoder" and options.steps > 0) or (method == "optimize" and init is None)
    mean = None
    if needs_mean:
        with torch.no_grad():
            mean = (mean_latent if mean_latent is not None else generator.mean_latent()).to(device).reshape(1, 1, -1)
    with torch.no_grad():
        if init is not None:
            start = init.to(device, torch.float32)
            if start.ndim != 3 or start.shape[0] != targets.shape[0]:
                raise InversionError(f"init: expected [{targets.shape[0]}, n, {config.style_dim}] latents, "
                                     f"got {list(start.shape)}")
        elif method == "optimize":
            assert mean is not None
            start = mean.expand(targets.shape[0], config.n_latent, -1)
        else:
            assert encoder is not None
            start = encoder(targets).float()
        try:
            start = expand_latents(config, start) if space == "expanded" else start
        except ValueError as exc:
            raise InversionError(f"start latents: {exc}") from None
        if space == "w+" and start.shape[1] != config.n_latent:
            if init is None:
                raise InversionError("space 'w+': this encoder answers expanded latents; invert into 'expanded', "
                                     "or optimise from the mean (method 'optimize')")
            raise InversionError(f"init: expected W+ latents [N, {config.n_latent}, {config.style_dim}] for space "
                                 f"'w+', got {list(start.shape)}")

    latents, noise, history = start.clone(), None, []
    if method != "encoder" and options.steps > 0:
        assert mean is not None
        latents, noise, history = optimise_latents(generator, targets, start, mean, options, perceptual_net, progress)
    tuned, pti_history = None, []
    if options.pti_steps > 0:
        tuned, pti_history = pivotal_tuning(generator, latents, targets, options, perceptual_net, noise,
                                            generator_out, progress)
    with torch.no_grad():
        out = (tuned or generator).synthesize(latents, noise=noise, randomize_noise=False)
    mse, lpips = reconstruction_metrics(out.image, targets, perceptual_net)
    return InversionResult(
        latents=latents.detach(), images=out.image.detach(), segmentation=out.segmentation.detach(), mse=mse,
        lpips=lpips, history=history, pti_history=pti_history, generator=tuned, noise=noise,
        seconds=time.perf_counter() - started,
    )
