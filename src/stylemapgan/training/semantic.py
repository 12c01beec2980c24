"""One SemanticStyleGAN training iteration with the official objective (spec sections 8 and 9), plus state
save/restore. The loss terms are `semantic.objective`; this module weights and schedules them.

Per iteration, in the official order: (1) D: logistic loss on real (image, one-hot segmentation) pairs vs
generated ones. (2) Lazy R1 every `d_reg_every` iterations (from iteration 0): gamma_img / 2 * R1(image) +
gamma_seg / 2 * R1(segmentation), both from one D forward on the real pair, times the interval. (3) G:
non-saturating loss + lambda_mask * mask consistency. (4) Path-length regularisation every `path_every`
iterations on a batch shrunk by `path_batch_shrink`, differentiated with respect to the expanded latents, weight
times the interval. (5) EMA of G's parameters. Ours, off unless `lambda_swap` is given: in (3), each sample also
renders with one part's codes from another sample, pulled towards that sample inside the part and towards itself
outside it (`semantic.objective.part_swap_loss`). Every latent of (1), (3), (4) is mixed part-wise with probability
`mixing_prob`. Adam for G and D carries StyleGAN2's lazy-regularisation correction (lr and betas scaled by
k / (k + 1), k = path_every for G and d_reg_every for D).

All randomness of an iteration (z, the mixing draw and choices, the render net's noise, flips, the path-length
probe) is drawn for the global batch from the trainer's own CPU generator and sliced per rank, and data order
comes from the resumable sampler: a resumed run equals an uninterrupted one bit for bit on CPU, and a K-process
run equals one process up to rounding (the path-length mean is taken over the global batch, with its gradient).
"""

from __future__ import annotations

import copy
import functools
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.graph import increment_version
from torch.utils.data import Dataset

from stylemapgan.data.dataset import DataMismatchError, collate_images_and_labels, fit_labels_to_model
from stylemapgan.semantic import DualBranchDiscriminator, SemanticConfig, SemanticGenerator
from stylemapgan.semantic.io import class_color
from stylemapgan.semantic.latents import swap_part_codes
from stylemapgan.semantic.objective import (
    mask_consistency_loss,
    part_swap_loss,
    path_lengths,
    path_noise_scale,
    r1_penalties,
    real_segmentation,
    training_latents,
)
from stylemapgan.training.batches import RealBatches
from stylemapgan.training.config import RunConfig
from stylemapgan.training.distributed import DistInfo, all_mean, average_gradients
from stylemapgan.training.losses import d_logistic_loss, g_nonsaturating_loss
from stylemapgan.training.state import progress_state, restore_progress
from stylemapgan.training.trainer import ema_update, finite_losses, set_requires_grad
from stylemapgan.utils.images import make_grid

PATH_DECAY = 0.01  # the running mean of path lengths moves this far towards each batch's mean (official)
# Devices with PyTorch's fused Adam kernel: one pass over all parameters instead of ~10 small ops per tensor (on
# the 2-core CPU, G's update 18 -> 6 ms); the same update up to float32 rounding.
FUSED_ADAM_DEVICES = ("cpu", "cuda")


def keep_fused(optim: torch.optim.Optimizer, fused: bool) -> None:
    """Re-apply the fused flag after `load_state_dict` (which takes the saved groups' flags: a checkpoint written
    before the flag existed would silently switch it off), with the step counters where the fused kernel wants
    them (float32 on the parameter's device)."""
    if not fused:
        return
    for group in optim.param_groups:
        group["fused"], group["foreach"] = True, None
        for param in group["params"]:
            state = optim.state.get(param, {})
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].to(param.device, torch.float32)


def colorize_segmentation(segmentation: torch.Tensor) -> torch.Tensor:
    """Segmentation [N, K, H, W] -> its argmax in the class colours of `generate` ([N, 3, H, W] in [-1, 1])."""
    palette = torch.tensor([class_color(k) for k in range(segmentation.shape[1])], device=segmentation.device)
    return palette[segmentation.argmax(1)].permute(0, 3, 1, 2).float() / 127.5 - 1


def segmentation_of_real(seg_dim: int, labels: torch.Tensor) -> torch.Tensor:
    """Label maps [n, s, s] -> what D's segmentation branch sees of real data (DataMismatchError for a class the
    model does not have: the data does not fit the model)."""
    try:
        return real_segmentation(labels, seg_dim)
    except ValueError as exc:
        raise DataMismatchError(str(exc)) from None


@dataclass(frozen=True)
class SemanticTrainConfig(RunConfig):
    """SemanticStyleGAN's objective; defaults are the official train.py's (EMA decay per step 0.5 ** (32 / 10000),
    i.e. a half-life of 10k images at the official batch 32, applied per iteration whatever the batch)."""

    iters: int = 200_001
    ema_decay: float = 0.5 ** (32 / 10_000)
    hflip: bool = False  # official: augmentation only with --aug
    r1_seg_gamma: float = 1000.0  # R1 weight of the segmentation branch (r1_gamma: the image branch's)
    lambda_mask: float = 100.0  # mask consistency between the final and the coarse segmentation
    path_regularize: float = 0.5  # path-length weight (0: off)
    path_every: int = 4  # lazy interval of the path-length term (G's Adam correction uses it even when off)
    path_batch_shrink: int = 2  # the path-length batch is batch // path_batch_shrink
    mixing_prob: float = 0.3  # probability that an iteration's latents are mixed part-wise
    lambda_swap: float = 0.0  # ours, not the paper's: part-swap consistency weight (0: official, not computed)

    RESUME_CHANGEABLE: ClassVar[frozenset[str]] = RunConfig.RESUME_CHANGEABLE | {
        "r1_seg_gamma", "lambda_mask", "path_regularize", "mixing_prob", "lambda_swap",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("path_every", "path_batch_shrink"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("r1_gamma", "r1_seg_gamma", "lambda_mask", "path_regularize", "lambda_swap"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.mixing_prob <= 1.0:
            raise ValueError(f"mixing_prob: must be in [0, 1], got {self.mixing_prob}")

    @property
    def g_reg_ratio(self) -> float:
        """Lazy-regularisation correction for G's Adam (path length is G's lazy regulariser)."""
        return self.path_every / (self.path_every + 1)

    @property
    def path_batch(self) -> int:
        return max(1, self.batch // self.path_batch_shrink)


class SemanticTrainer:
    """Generator, dual-branch discriminator, G's EMA and their optimizers; `train_step` runs one iteration."""

    def __init__(
        self,
        model_config: SemanticConfig,
        train_config: SemanticTrainConfig,
        dataset: Dataset,
        *,
        device: torch.device | str = "cpu",
        dist_info: DistInfo | None = None,
    ) -> None:
        self.model_config = model_config
        self.cfg = train_config
        self.device = torch.device(device)
        self.dist = dist_info or DistInfo()
        self.rng = torch.Generator().manual_seed(train_config.seed + 1)  # every random draw of an iteration
        # the real data (it refuses a batch that the processes cannot share evenly)
        self.real = RealBatches.for_run(dataset, train_config, model_config.size, self.rng, self.device, self.dist,
                                        with_labels=True,
                                        labels_to_model=functools.partial(segmentation_of_real, model_config.seg_dim))
        world = self.dist.world_size
        if train_config.path_regularize and train_config.path_batch % world:
            raise ValueError(f"the path-length batch {train_config.path_batch} (--batch // --path-batch-shrink) must "
                             f"be divisible by the number of processes {world}")
        self.local_batch = train_config.batch // world
        self.dataset = dataset

        torch.manual_seed(train_config.seed)  # same initial weights on every rank
        self.generator = SemanticGenerator(model_config).to(self.device).train()
        self.discriminator = DualBranchDiscriminator(model_config).to(self.device).train()
        self.g_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)

        lr, g_ratio, d_ratio = train_config.lr, train_config.g_reg_ratio, train_config.d_reg_ratio
        self.fused_adam = self.device.type in FUSED_ADAM_DEVICES
        self.g_optim = torch.optim.Adam(
            self.generator.parameters(), lr=lr * g_ratio, betas=(0.0**g_ratio, 0.99**g_ratio), fused=self.fused_adam
        )
        self.d_optim = torch.optim.Adam(
            self.discriminator.parameters(), lr=lr * d_ratio, betas=(0.0**d_ratio, 0.99**d_ratio),
            fused=self.fused_adam,
        )
        self.iteration = 0
        self.mean_path_length = torch.zeros((), device=self.device)

    # ----- what a TrainingRun asks of a family's trainer -----------------------------------------------
    @classmethod
    def for_run(cls, model_config: SemanticConfig, train_config: SemanticTrainConfig, dataset: Dataset, *,
                device: torch.device | str, dist_info: DistInfo) -> SemanticTrainer:
        return cls(model_config, train_config, dataset, device=device, dist_info=dist_info)

    @staticmethod
    def check_data(model_config: SemanticConfig, dataset: Dataset) -> None:
        """The data must carry per-pixel label maps with the model's number of classes (DataMismatchError)."""
        names = getattr(dataset, "part_names", None)
        first = dataset[0]
        if not isinstance(first, dict) or "mask" not in first:
            if names:
                raise DataMismatchError("the dataset was opened without its label maps (open_dataset(..., masks=True))")
            raise DataMismatchError("a SemanticStyleGAN model trains on images with per-pixel label maps, and this "
                                    "dataset has none (build cartoon-faces, or prepare your images with --labels DIR)")
        if names and len(names) != model_config.seg_dim:
            raise DataMismatchError(f"the dataset's label maps have {len(names)} classes ({', '.join(names)}); "
                                    f"the model has seg_dim {model_config.seg_dim}")
        labels = first["mask"]
        if labels.ndim != 2 or int(labels.max()) >= model_config.seg_dim or int(labels.min()) < 0:
            raise DataMismatchError(f"label maps must be [H, W] class indices in [0, {model_config.seg_dim - 1}] "
                                    f"(the model's seg_dim); the first one is {list(labels.shape)} with classes "
                                    f"{int(labels.min())}..{int(labels.max())}")

    def fixed_noise(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """z for the run's fixed sample grid."""
        return torch.randn(count, self.model_config.style_dim, generator=generator).to(self.device)

    @torch.no_grad()
    def sample_grids(self, fixed_z: torch.Tensor, fixed_real: torch.Tensor | None) -> dict[str, Any]:
        """EMA samples (deterministic noise), each image beside its segmentation as colours."""
        out = self.g_ema(fixed_z, randomize_noise=False)
        pairs = torch.stack([out.image, colorize_segmentation(out.segmentation)], 1).flatten(0, 1)
        return {"samples": make_grid(pairs, nrow=8)}

    @torch.no_grad()
    def validation_metrics(self, val_data: Dataset | None, count: int) -> dict[str, float]:
        """FID-free checks of the EMA generator on `count` fixed z: the mask-consistency loss, the share of pixels
        whose final class equals the coarse mask's, and (when held-out label maps are there) the L1 distance
        between the generated and the real class frequencies (0: every part covers as much as in the data)."""
        cfg, k = self.model_config, self.model_config.seg_dim
        gen = torch.Generator().manual_seed(self.cfg.seed + 54321)
        z = torch.randn(count, cfg.style_dim, generator=gen)
        mask_sum, agree_sum, hist = 0.0, 0.0, torch.zeros(k, dtype=torch.float64)
        for start in range(0, count, 16):
            out = self.g_ema(z[start : start + 16].to(self.device), randomize_noise=False)
            n = out.image.shape[0]
            mask_sum += mask_consistency_loss(out.segmentation, out.coarse_segmentation).item() * n
            labels = out.segmentation.argmax(1)
            coarse = F.interpolate(out.coarse_segmentation, size=labels.shape[-2:], mode="nearest").argmax(1)
            agree_sum += (labels == coarse).float().mean().item() * n
            hist += torch.bincount(labels.flatten().cpu(), minlength=k).double()
        values = {"val_mask": mask_sum / count, "val_coarse_agreement": agree_sum / count}
        real_hist = self._real_class_frequencies(val_data, count)
        if real_hist is not None:
            values["val_class_l1"] = (hist / hist.sum() - real_hist).abs().sum().item()
        return values

    def _real_class_frequencies(self, val_data: Dataset | None, count: int) -> torch.Tensor | None:
        if val_data is None or len(val_data) == 0:
            return None
        items = [val_data[i] for i in range(min(count, len(val_data)))]
        if not all(isinstance(it, dict) and "mask" in it for it in items):
            return None
        labels = fit_labels_to_model(collate_images_and_labels(items)[1], self.model_config.size)
        hist = torch.bincount(labels.flatten(), minlength=self.model_config.seg_dim)[: self.model_config.seg_dim]
        return hist.double() / hist.sum()

    def checkpoint_extra(self) -> dict[str, Any]:
        """The class names of the training data's label maps (what `checkpoint.families.class_names` reads), when
        the dataset names one per class."""
        names = getattr(self.dataset, "part_names", None)
        if isinstance(names, list | tuple) and len(names) == self.model_config.seg_dim:
            return {"class_names": [str(n) for n in names]}
        return {}

    @staticmethod
    def progress_fields(losses: dict[str, float]) -> dict[str, str]:
        return {"g": f"{losses['g_adv']:.3f}", "d": f"{losses['d_adv']:.3f}", "mask": f"{losses['mask']:.4f}"}

    # ----- data and randomness -------------------------------------------------------------------------
    def _rank_slice(self, global_tensor: torch.Tensor) -> torch.Tensor:
        return global_tensor[self.dist.rank :: self.dist.world_size]

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(real images [n, 3, s, s], real segmentations [n, K, s, s] one-hot * 2 - 1) of this rank; with hflip,
        image and label map flip together."""
        return self.real.next()

    def close(self) -> None:
        """Stop the data loader's workers (a later batch starts them again where the data stream is)."""
        self.real.close()

    def latents(self, count: int) -> torch.Tensor:
        """W+ latents [count / world, n_latent, D] of this rank for a global batch of `count`: mapped z, mixed
        part-wise with probability mixing_prob (one draw for the whole batch, as official)."""
        cfg = self.model_config
        mix = bool(torch.rand((), generator=self.rng) < self.cfg.mixing_prob)
        z = torch.randn(2 if mix else 1, count, cfg.style_dim, generator=self.rng)
        choice = torch.randint(0, 3, (count, cfg.seg_dim), generator=self.rng) if mix else None
        w = self.generator.mapping(self._rank_slice(z.transpose(0, 1)).transpose(0, 1).to(self.device))
        if not mix:
            return training_latents(cfg, w[0])
        assert choice is not None
        return training_latents(cfg, w[0], w[1], self._rank_slice(choice).to(self.device))

    def render_noise(self, count: int) -> list[torch.Tensor]:
        """One N(0, 1) map per render conv for this rank's share of a global batch of `count`."""
        maps = []
        for size in (conv.noise_const.shape[-1] for conv in self.generator.render.convs):
            maps.append(self._rank_slice(torch.randn(count, 1, size, size, generator=self.rng)).to(self.device))
        return maps

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.cfg.amp_bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _step(self, optim: torch.optim.Optimizer, module: nn.Module, loss: torch.Tensor) -> None:
        optim.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(module, self.dist)
        optim.step()
        if self.fused_adam:
            # the fused kernel writes the parameters without bumping their version counters, and the layers'
            # cached rescaled weights (ops.FastOps) are only refreshed when the counter moves
            increment_version([p for group in optim.param_groups for p in group["params"] if p.grad is not None])

    # ----- the four updates ----------------------------------------------------------------------------
    def discriminator_step(self, real_image: torch.Tensor, real_seg: torch.Tensor) -> dict[str, torch.Tensor]:
        """D: logistic loss on real (image, segmentation) pairs vs generated ones."""
        g, d = self.generator, self.discriminator
        set_requires_grad(g, False)
        set_requires_grad(d, True)
        with torch.no_grad(), self._autocast():
            fake = g.synthesize(self.latents(self.cfg.batch), noise=self.render_noise(self.cfg.batch))
        with self._autocast():
            fake_logits = d(fake.image, fake.segmentation).float()
            real_logits = d(real_image, real_seg).float()
        d_adv = d_logistic_loss(real_logits, fake_logits)
        self._step(self.d_optim, d, d_adv)
        return {"d_adv": d_adv.detach(), "real_score": real_logits.detach().mean(),
                "fake_score": fake_logits.detach().mean()}

    def r1_step(self, real_image: torch.Tensor, real_seg: torch.Tensor) -> dict[str, torch.Tensor]:
        """Lazy R1 on both branches, in fp32: (gamma_img / 2 * R1_img + gamma_seg / 2 * R1_seg) * d_reg_every."""
        d, cfg = self.discriminator, self.cfg
        set_requires_grad(d, True)
        image = real_image.detach().requires_grad_(True)
        seg = real_seg.detach().requires_grad_(True)
        logits = d(image, seg)
        r1_img, r1_seg = r1_penalties(logits, image, seg)
        loss = (cfg.r1_gamma / 2 * r1_img + cfg.r1_seg_gamma / 2 * r1_seg) * cfg.d_reg_every + 0 * logits[0, 0]
        self._step(self.d_optim, d, loss)
        return {"r1_img": r1_img.detach(), "r1_seg": r1_seg.detach()}

    def generator_step(self) -> dict[str, torch.Tensor]:
        """G: non-saturating loss on D(image, segmentation) + lambda_mask * mask consistency."""
        g, d = self.generator, self.discriminator
        set_requires_grad(g, True)
        set_requires_grad(d, False)
        latents, noise = self.latents(self.cfg.batch), self.render_noise(self.cfg.batch)
        with self._autocast():
            fake = g.synthesize(latents, noise=noise)
            adv = g_nonsaturating_loss(d(fake.image, fake.segmentation).float())
        losses = {"g_adv": adv}
        loss = adv
        if self.cfg.lambda_mask:  # weight 0: not computed
            mask = mask_consistency_loss(fake.segmentation.float(), fake.coarse_segmentation.float())
            losses["mask"] = mask
            loss = adv + self.cfg.lambda_mask * mask
        if self.cfg.lambda_swap:  # weight 0 (official): not computed, and no random draw
            swap = self.part_swap_term(latents, noise, fake.image.detach().float(), fake.segmentation.detach())
            losses["swap"] = swap
            loss = loss + self.cfg.lambda_swap * swap
        self._step(self.g_optim, g, loss)
        return {name: value.detach() for name, value in losses.items()}

    def part_swap_term(self, latents: torch.Tensor, noise: list[torch.Tensor], images: torch.Tensor,
                       segmentation: torch.Tensor) -> torch.Tensor:
        """Part-swap consistency (`semantic.objective.part_swap_loss`) on this rank's G batch: sample i swaps in
        the codes of one class shown by both it and its neighbour i+1 (the reference), chosen uniformly from the
        run's generator, and is rendered with its own noise; the source and reference renders are the G step's."""
        n = latents.shape[0]
        labels = segmentation.argmax(1)
        order = torch.roll(torch.arange(n, device=latents.device), -1)
        draw = self._rank_slice(torch.rand(self.cfg.batch, self.model_config.seg_dim, generator=self.rng))
        shown = F.one_hot(labels.flatten(1), self.model_config.seg_dim).amax(1).bool()  # [n, K]
        parts = torch.where(shown & shown[order], draw.to(latents.device), -1.0).argmax(1)
        swapped_latents = swap_part_codes(self.model_config, latents, latents[order].detach(), parts)
        with self._autocast():
            swapped = self.generator.synthesize(swapped_latents, noise=noise)
        return part_swap_loss(swapped.image.float(), swapped.segmentation.detach().argmax(1), images, labels,
                              images[order], labels[order], parts)

    def path_length_step(self) -> dict[str, torch.Tensor]:
        """Path-length regularisation (fp32) on the expanded latents of a shrunk batch, weight * path_every."""
        g, cfg = self.generator, self.cfg
        set_requires_grad(g, True)
        count = cfg.path_batch
        with torch.no_grad():
            latents = g.expand_latents(self.latents(count)).clone()
        latents.requires_grad_(True)
        out = g.synthesize(latents, noise=self.render_noise(count))
        size = self.model_config.size
        probe = self._rank_slice(torch.randn(count, 3, size, size, generator=self.rng)).to(self.device)
        lengths = path_lengths(out.image, latents, probe * path_noise_scale(size))
        penalty, reported, path_mean = self._path_penalty(lengths)
        # the zero terms give the render net's untouched outputs a zero gradient (an Adam step), as official
        untouched = 0 * out.image[0, 0, 0, 0] + 0 * out.segmentation[0, 0, 0, 0]
        loss = cfg.path_regularize * cfg.path_every * penalty + untouched
        self._step(self.g_optim, g, loss)
        self.mean_path_length = path_mean.detach()
        return {"path": reported, "path_length": all_mean(lengths.detach().mean(), self.dist)}

    def _path_penalty(self, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss to differentiate on this rank, the penalty's value, the new running mean).

        The penalty is mean((l - m)^2) with m = mean_path_length + decay * (mean(l) - mean_path_length), over the
        global batch, and m's dependence on every length is differentiated. With W ranks each holding b lengths,
        m takes the global mean's value (its gradient reaching the local lengths), and the part of dL/dm that the
        other ranks' lengths contribute is added as a linear term in m; so after gradients are averaged over ranks,
        they equal the single-process gradient of the whole batch."""
        b, world = lengths.shape[0], self.dist.world_size
        if world == 1:
            batch_mean = lengths.mean()
        else:
            local_sum = lengths.sum()
            global_sum = all_mean(local_sum.detach(), self.dist) * world
            batch_mean = (local_sum + (global_sum - local_sum.detach())) / (b * world)
        path_mean = self.mean_path_length + PATH_DECAY * (batch_mean - self.mean_path_length)
        residual = lengths - path_mean
        penalty = residual.pow(2).mean()
        if world == 1:
            return penalty, penalty.detach(), path_mean
        local_residual = residual.detach().sum()
        others = all_mean(local_residual, self.dist) * world - local_residual
        return penalty - 2.0 / b * others * path_mean, all_mean(penalty.detach(), self.dist), path_mean

    def train_step(self) -> dict[str, float]:
        """One full iteration; returns the losses as floats. Raises TrainingDiverged on NaN/inf."""
        cfg = self.cfg
        real_image, real_seg = self.next_batch()
        losses = self.discriminator_step(real_image, real_seg)
        if (cfg.r1_gamma or cfg.r1_seg_gamma) and self.iteration % cfg.d_reg_every == 0:
            losses.update(self.r1_step(real_image, real_seg))
        losses.update(self.generator_step())
        if cfg.path_regularize and self.iteration % cfg.path_every == 0:
            losses.update(self.path_length_step())
        ema_update(self.g_ema, self.generator, cfg.ema_decay)
        values = finite_losses(losses, self.iteration, self.dist, self.device)
        self.iteration += 1
        return values

    # ----- state ---------------------------------------------------------------------------------------
    def networks_state(self) -> dict[str, dict[str, torch.Tensor]]:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "g_ema": self.g_ema.state_dict(),
        }

    def training_state(self) -> dict[str, Any]:
        optimizers = {"g": self.g_optim, "d": self.d_optim}
        return {**progress_state(self.cfg, self.iteration, optimizers, self.rng, self.dist, self.device),
                "mean_path_length": self.mean_path_length.detach().cpu()}

    def set_lr(self, lr: float) -> None:
        """Set the Adam learning rates (each scaled by its lazy-regularisation ratio)."""
        for optim, scale in ((self.g_optim, self.cfg.g_reg_ratio), (self.d_optim, self.cfg.d_reg_ratio)):
            for group in optim.param_groups:
                group["lr"] = lr * scale

    def load_weights(self, networks: dict[str, dict[str, torch.Tensor]]) -> list[str]:
        """Start from trained weights (fine-tuning): fresh optimizers, iteration 0. A released model carries only
        the EMA generator: it starts both copies. D is loaded when present. Returns the networks taken."""
        pairs = ((self.generator, ("generator", "g_ema")), (self.g_ema, ("g_ema", "generator")),
                 (self.discriminator, ("discriminator",)))
        taken = []
        for module, names in pairs:
            name = next((n for n in names if n in networks), None)
            if name is not None:
                module.load_state_dict(networks[name])
                taken.append(name)
        return sorted(set(taken))

    def load_state(self, networks: dict[str, dict[str, torch.Tensor]], training: dict[str, Any], *,
                   widen_encoder: bool = False) -> None:
        """Restore a saved state exactly (SemanticStyleGAN has no encoder to widen)."""
        if widen_encoder:
            raise ValueError("a SemanticStyleGAN model has no encoder to widen")
        self.generator.load_state_dict(networks["generator"])
        self.discriminator.load_state_dict(networks["discriminator"])
        self.g_ema.load_state_dict(networks["g_ema"])
        optimizers = {"g": self.g_optim, "d": self.d_optim}
        self.iteration = restore_progress(training, optimizers, self.rng, self.real, self.device)
        for optim in optimizers.values():
            keep_fused(optim, self.fused_adam)
        self.mean_path_length = training["mean_path_length"].to(self.device, torch.float32).reshape(())
