"""Fitting a `SemanticEncoder` (image -> W+) to a frozen SemanticStyleGAN generator (`stylemapgan train-encoder`).

The official repository never released an encoder (spec section 10, SemanticStyleGAN issue #1). Ours learns from
two kinds of images per iteration, `batch` of each:
- generated: W+ latents sampled as in the official training (mapped z, mixed part-wise: every sample with
  probability `mixing_prob`, so the encoder sees parts with their own codes), rendered by the frozen EMA generator
  with its stored noise. The true latents are known: lambda_w_rec * MSE(E(x), w), plus lambda_fake times the image
  loss of G(E(x)) against x;
- real (the dataset): lambda_real times the image loss of G(E(x)) against x;
where the image loss is lambda_x_rec * MSE + lambda_perceptual * LPIPS. G stays fixed (its weights get no
gradient); Adam updates the encoder and an EMA copy (`e_ema`, its decay ramped up, see `ema_decay`) follows it.
The checkpoints hold the generator (`g_ema`) with `encoder` and `e_ema`, so the file is a whole model for
inversion; `TrainingRun` gives them the run loop's checkpoints, resume, signals, logs, samples, validation and
NaN guard.

All randomness (z, mixing, flips) comes from the trainer's own CPU generator and the data order from the resumable
sampler, so a resumed run equals an uninterrupted one bit for bit on CPU.
"""

from __future__ import annotations

import copy
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from stylemapgan.checkpoint.families import SEMANTICSTYLEGAN
from stylemapgan.data.dataset import collate_images, fit_to_model
from stylemapgan.losses.perceptual import build_perceptual, perceptual_distance
from stylemapgan.semantic import SemanticConfig, SemanticGenerator
from stylemapgan.semantic.encoder import SemanticEncoder
from stylemapgan.semantic.latents import expand_latents, part_mix
from stylemapgan.training.batches import RealBatches
from stylemapgan.training.config import PERCEPTUAL_KINDS, RunConfig
from stylemapgan.training.distributed import DistInfo, all_mean, average_gradients
from stylemapgan.training.families import TrainingFamily
from stylemapgan.training.state import progress_state, restore_progress
from stylemapgan.training.trainer import ema_update, finite_losses
from stylemapgan.utils.images import make_grid

COMMAND = "train-encoder"


def ema_decay(decay: float, iteration: int) -> float:
    """The EMA decay at an iteration: ramped up as (1 + i) / (10 + i) until it reaches `decay` (StyleGAN2-ADA's
    warm-up idea), so a short run's e_ema follows the encoder instead of staying near the untrained start (a
    decay of 0.999 keeps 93 % of the start after 75 iterations)."""
    return min(decay, (1 + iteration) / (10 + iteration))


def in_layout_of(config: SemanticConfig, predicted: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """True W+ latents in the predicted layout: expanded for an expanded encoder (each W+ vector then weighs by
    the local layers it drives), as they are otherwise."""
    return expand_latents(config, latents) if predicted.shape[1] != latents.shape[1] else latents


def latent_error(config: SemanticConfig, predicted: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """Per-sample MSE [N] of predicted latents against true W+ ones, in the predicted layout."""
    return (predicted - in_layout_of(config, predicted, latents)).square().flatten(1).mean(1)


@dataclass(frozen=True)
class SemanticEncoderTrainConfig(RunConfig):
    """Encoder fitting: loss weights and the generated-latent distribution (our recipe; no official one exists).
    `batch` is the number of real images and of generated images per iteration each."""

    batch: int = 8
    iters: int = 100_000
    lr: float = 0.002  # Adam on equalised-lr layers, as the StyleMapGAN encoder
    ema_decay: float = 0.999
    hflip: bool = True  # real images only (a mirrored face is still a face)
    lambda_w_rec: float = 1.0  # MSE(E(G(w)), w) on generated images
    lambda_x_rec: float = 1.0  # image MSE weight inside the image loss
    lambda_perceptual: float = 1.0  # LPIPS weight inside the image loss
    lambda_fake: float = 1.0  # image loss of generated images
    lambda_real: float = 1.0  # image loss of real images
    mixing_prob: float = 0.5  # share of generated samples whose parts mix two latents
    perceptual: str = "stlpips-vgg"

    # The generator comes from a trained checkpoint and stays fixed (TrainingRun refuses a run without one).
    freeze_generator: ClassVar[bool] = True
    RESUME_CHANGEABLE: ClassVar[frozenset[str]] = RunConfig.RESUME_CHANGEABLE | {
        "lambda_w_rec", "lambda_x_rec", "lambda_perceptual", "lambda_fake", "lambda_real", "mixing_prob",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.perceptual not in PERCEPTUAL_KINDS:
            raise ValueError(f"perceptual: must be one of {PERCEPTUAL_KINDS}, got {self.perceptual!r}")
        if not 0.0 <= self.mixing_prob <= 1.0:
            raise ValueError(f"mixing_prob: must be in [0, 1], got {self.mixing_prob}")


class SemanticEncoderTrainer:
    """The frozen EMA generator, the encoder, its EMA and Adam; `train_step` runs one iteration (see module)."""

    def __init__(
        self,
        model_config: SemanticConfig,
        train_config: SemanticEncoderTrainConfig,
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
        self.real = RealBatches.for_run(dataset, train_config, model_config.size, self.rng, self.device, self.dist)
        self.dataset = dataset
        torch.manual_seed(train_config.seed)  # same initial weights on every rank
        self.g_ema = SemanticGenerator(model_config).to(self.device).eval().requires_grad_(False)
        self.encoder = SemanticEncoder(model_config).to(self.device).train()
        self.e_ema = copy.deepcopy(self.encoder).eval().requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.encoder.parameters(), lr=train_config.lr, betas=(0.9, 0.99))
        self.perceptual = build_perceptual(train_config.perceptual)
        if self.perceptual is not None:
            self.perceptual = self.perceptual.to(self.device)
        self.iteration = 0
        self.extra: dict[str, Any] = {}  # the generator checkpoint's extra (class names...), carried along

    # ----- what a TrainingRun asks of a trainer --------------------------------------------------------
    @classmethod
    def for_run(cls, model_config: SemanticConfig, train_config: SemanticEncoderTrainConfig, dataset: Dataset, *,
                device: torch.device | str, dist_info: DistInfo) -> SemanticEncoderTrainer:
        return cls(model_config, train_config, dataset, device=device, dist_info=dist_info)

    @staticmethod
    def check_data(model_config: SemanticConfig, dataset: Dataset) -> None:
        """Any images will do (label maps are not used); their size is checked by the run."""

    def fixed_noise(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """z for the fixed generated images of the sample grids."""
        return torch.randn(count, self.model_config.style_dim, generator=generator).to(self.device)

    @torch.no_grad()
    def sample_grids(self, fixed_z: torch.Tensor, fixed_real: torch.Tensor | None) -> dict[str, Any]:
        """Generated images above their reconstructions by G(E_ema(x)); held-out real images likewise."""
        generated = self.g_ema(fixed_z[:8], randomize_noise=False).image
        grids = {"generated": make_grid(torch.cat([generated, self.reconstruct(generated)]), nrow=8)}
        if fixed_real is not None:
            grids["reconstructions"] = make_grid(torch.cat([fixed_real, self.reconstruct(fixed_real)]),
                                                 nrow=fixed_real.shape[0])
        return grids

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.g_ema.synthesize(self.e_ema(images), randomize_noise=False).image

    @torch.no_grad()
    def validation_metrics(self, val_data: Dataset | None, count: int) -> dict[str, float]:
        """E_ema on `count` fixed generated images (latent MSE, image MSE) and held-out real ones (MSE, LPIPS);
        reconstructions clamped to [-1, 1]."""
        cfg = self.model_config
        gen = torch.Generator().manual_seed(self.cfg.seed + 54321)
        z = torch.randn(2, count, cfg.style_dim, generator=gen)
        choice = torch.randint(0, 3, (count, cfg.seg_dim), generator=gen)  # every sample mixed part-wise
        sums = {"val_latent_mse": 0.0, "val_fake_mse": 0.0}
        for start in range(0, count, 16):
            w = self.g_ema.mapping(z[:, start : start + 16].to(self.device))
            latents = part_mix(cfg, w[0], w[1], choice[start : start + 16].to(self.device))
            images = self.g_ema.synthesize(latents, randomize_noise=False).image
            predicted = self.e_ema(images)
            sums["val_latent_mse"] += latent_error(cfg, predicted, latents).sum().item()
            recon = self.g_ema.synthesize(predicted, randomize_noise=False).image.clamp(-1, 1)
            sums["val_fake_mse"] += (recon - images).square().flatten(1).mean(1).sum().item()
        values = {k: v / max(count, 1) for k, v in sums.items()}
        if val_data is not None and len(val_data) > 0:
            n = min(count, len(val_data))
            mse_sum, lpips_sum = 0.0, 0.0
            for start in range(0, n, 16):
                items = [val_data[i] for i in range(start, min(start + 16, n))]
                real = fit_to_model(collate_images(items), self.model_config.size).to(self.device)
                recon = self.reconstruct(real).clamp(-1, 1)
                mse_sum += (recon - real).square().flatten(1).mean(1).sum().item()
                if self.perceptual is not None:
                    lpips_sum += perceptual_distance(self.perceptual, recon, real).sum().item()
            values["val_mse"] = mse_sum / n
            if self.perceptual is not None:
                values["val_lpips"] = lpips_sum / n
        return values

    def checkpoint_extra(self) -> dict[str, Any]:
        """The generator checkpoint's extra (e.g. class names), so the encoder's file names the same parts."""
        return dict(self.extra)

    @staticmethod
    def progress_fields(losses: dict[str, float]) -> dict[str, str]:
        return {"w": f"{losses['latent']:.4f}", "fake": f"{losses['fake_image']:.4f}",
                "real": f"{losses['real_image']:.4f}"}

    # ----- data and randomness -------------------------------------------------------------------------
    def _rank_slice(self, global_tensor: torch.Tensor) -> torch.Tensor:
        return global_tensor[self.dist.rank :: self.dist.world_size]

    def next_batch(self) -> torch.Tensor:
        """This rank's real images [n, 3, s, s], flipped at random when hflip."""
        return self.real.next()

    def close(self) -> None:
        """Stop the data loader's workers (a later batch starts them again where the data stream is)."""
        self.real.close()

    def generated_latents(self) -> torch.Tensor:
        """This rank's W+ latents: mapped z, each sample mixed part-wise with another with probability
        mixing_prob (choice drawn per part: (shape, texture) from (w1, w1), (w1, w2) or (w2, w2))."""
        cfg, n = self.model_config, self.cfg.batch
        z = torch.randn(2, n, cfg.style_dim, generator=self.rng)
        mixed = torch.rand(n, generator=self.rng) < self.cfg.mixing_prob
        choice = torch.randint(0, 3, (n, cfg.seg_dim), generator=self.rng) * mixed.unsqueeze(1)
        z = self._rank_slice(z.transpose(0, 1)).transpose(0, 1).to(self.device)
        with torch.no_grad():
            w = self.g_ema.mapping(z)
        return part_mix(cfg, w[0], w[1], self._rank_slice(choice).to(self.device))

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.cfg.amp_bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def image_loss(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """lambda_x_rec * MSE + lambda_perceptual * LPIPS, batch mean (LPIPS skipped when its weight is 0)."""
        loss = self.cfg.lambda_x_rec * (recon - target).square().mean()
        if self.perceptual is not None and self.cfg.lambda_perceptual:
            loss = loss + self.cfg.lambda_perceptual * perceptual_distance(self.perceptual, recon, target).mean()
        return loss

    # ----- the iteration -------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One update of the encoder on generated and real images; EMA; raises TrainingDiverged on NaN/inf."""
        cfg = self.cfg
        real = self.next_batch()
        latents = self.generated_latents()
        with torch.no_grad(), self._autocast():
            fake = self.g_ema.synthesize(latents, randomize_noise=False).image.float()
        with self._autocast():
            predicted = self.encoder(torch.cat([fake, real]))
            recon = self.g_ema.synthesize(predicted, randomize_noise=False).image.float()
        predicted = predicted.float()
        n = fake.shape[0]
        latent = (predicted[:n] - in_layout_of(self.model_config, predicted, latents)).square().mean()
        fake_image = self.image_loss(recon[:n], fake)
        real_image = self.image_loss(recon[n:], real)
        loss = cfg.lambda_w_rec * latent + cfg.lambda_fake * fake_image + cfg.lambda_real * real_image
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self.encoder, self.dist)
        self.optimizer.step()
        ema_update(self.e_ema, self.encoder, ema_decay(cfg.ema_decay, self.iteration))
        losses = {"loss": loss.detach(), "latent": latent.detach(), "fake_image": fake_image.detach(),
                  "real_image": real_image.detach(),
                  "real_mse": (recon[n:].detach() - real).square().mean()}
        losses = {k: all_mean(v, self.dist) for k, v in losses.items()}
        values = finite_losses(losses, self.iteration, self.dist, self.device)
        self.iteration += 1
        return values

    # ----- state ---------------------------------------------------------------------------------------
    def networks_state(self) -> dict[str, dict[str, torch.Tensor]]:
        return {"g_ema": self.g_ema.state_dict(), "encoder": self.encoder.state_dict(),
                "e_ema": self.e_ema.state_dict()}

    def training_state(self) -> dict[str, Any]:
        return {"command": COMMAND,
                **progress_state(self.cfg, self.iteration, {"e": self.optimizer}, self.rng, self.dist, self.device)}

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def load_weights(self, networks: dict[str, dict[str, torch.Tensor]]) -> list[str]:
        """Start from a trained model: the EMA generator (else the live one) is the frozen generator; an encoder
        already in the file goes on training (its EMA copy too), else the new encoder starts at the generator's
        mean w. Returns the networks taken."""
        name = next(n for n in ("g_ema", "generator") if n in networks)
        self.g_ema.load_state_dict(networks[name])
        taken = [name]
        for module, names in ((self.encoder, ("encoder", "e_ema")), (self.e_ema, ("e_ema", "encoder"))):
            found = next((n for n in names if n in networks), None)
            if found is not None:
                module.load_state_dict(networks[found])
                taken.append(found)
        if len(taken) == 1:
            w_avg = self.g_ema.mean_latent()
            self.encoder.set_mean_latent(w_avg)
            self.e_ema.set_mean_latent(w_avg)
        return sorted(set(taken))

    def load_state(self, networks: dict[str, dict[str, torch.Tensor]], training: dict[str, Any], *,
                   widen_encoder: bool = False) -> None:
        """Restore a saved state exactly."""
        if widen_encoder:
            raise ValueError("the SemanticStyleGAN encoder cannot be widened")
        self.g_ema.load_state_dict(networks["g_ema"])
        self.encoder.load_state_dict(networks["encoder"])
        self.e_ema.load_state_dict(networks["e_ema"])
        self.iteration = restore_progress(training, {"e": self.optimizer}, self.rng, self.real, self.device)


SEMANTIC_ENCODER = TrainingFamily(SEMANTICSTYLEGAN, SemanticEncoderTrainConfig, SemanticEncoderTrainer,
                                  command=COMMAND, adoptable=("encoder", "e_ema"),
                                  init_model_fields=("encoder_expanded_rank", "encoder_channel_base"))
