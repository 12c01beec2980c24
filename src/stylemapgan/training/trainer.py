"""One StyleMapGAN training iteration, in the official order (spec section 2), plus state save/restore.

Per iteration: (1) G step: non-saturating loss updates G; latent reconstruction MSE(w, E(G(w))) updates E on
detached fakes. (2) D step: logistic loss + in-domain term softplus(D(G(E(x)))). (3) Lazy R1 every
`d_reg_every` iterations (from iteration 0). (4) Reconstruction step: MSE + LPIPS + softplus(-D(G(E(x))))
updates E and G together. (5) EMA of G and E.

With `freeze_generator` (our extension) the G updates and G's EMA are skipped and every step uses the EMA
generator, so E is fitted to the generator that ships; E's and D's losses are unchanged (D keeps training, so
the recipe that froze G for a while reproduces).

All randomness of an iteration (z, flips) comes from the trainer's own CPU generator, and data order from the
resumable sampler, so a run stopped at iteration N and resumed equals an uninterrupted one, bit for bit on CPU.
"""

from __future__ import annotations

import copy
import math
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from stylemapgan.config import ModelConfig
from stylemapgan.data.dataset import collate_images, fit_to_model
from stylemapgan.networks import Discriminator, Encoder, Generator
from stylemapgan.networks.widen import widen_into
from stylemapgan.training.batches import RealBatches
from stylemapgan.training.config import TrainConfig
from stylemapgan.training.distributed import DistInfo, all_mean, average_gradients
from stylemapgan.training.losses import d_logistic_loss, g_nonsaturating_loss, r1_penalty
from stylemapgan.training.state import progress_state, restore_progress
from stylemapgan.utils.images import make_grid


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the run stops without saving over the last good checkpoint."""


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def finite_losses(losses: dict[str, torch.Tensor], iteration: int, dist: DistInfo, device: torch.device
                  ) -> dict[str, float]:
    """The losses as floats, or TrainingDiverged naming the non-finite ones. Under DDP every rank stops together:
    one that raised alone would leave the others waiting in the next all-reduce."""
    names = list(losses)
    values = torch.stack([losses[n].float() for n in names]).tolist()
    bad = [f"{n}={v}" for n, v in zip(names, values, strict=True) if not math.isfinite(v)]
    if dist.enabled:
        flag = all_mean(torch.tensor([1.0 if bad else 0.0], device=device), dist)
        if flag.item() > 0 and not bad:
            bad = ["on another rank"]
    if bad:
        raise TrainingDiverged(f"iteration {iteration}: non-finite loss ({', '.join(bad)})")
    return dict(zip(names, values, strict=True))


@torch.no_grad()
def ema_update(ema: nn.Module, live: nn.Module, decay: float) -> None:
    """ema = decay * ema + (1 - decay) * live for parameters; buffers (norm statistics) are copied.

    As two multi-tensor ops (the same roundings as a per-tensor mul_ then add_, bit for bit) rather than two small
    ops per parameter."""
    ema_params = list(ema.parameters())
    live_params = [p.detach() for p in live.parameters()]
    if len(ema_params) != len(live_params):
        raise ValueError(f"ema_update: {len(ema_params)} EMA parameters for {len(live_params)} live ones")
    torch._foreach_mul_(ema_params, decay)
    torch._foreach_add_(ema_params, live_params, alpha=1 - decay)
    for b_ema, b in zip(ema.buffers(), live.buffers(), strict=True):
        b_ema.copy_(b)


class Trainer:
    def __init__(
        self,
        model_config: ModelConfig,
        train_config: TrainConfig,
        dataset: Dataset,
        *,
        device: torch.device | str = "cpu",
        dist_info: DistInfo | None = None,
        perceptual: nn.Module | None = None,
    ) -> None:
        self.model_config = model_config
        self.cfg = train_config
        self.device = torch.device(device)
        self.dist = dist_info or DistInfo()
        self.rng = torch.Generator().manual_seed(train_config.seed + 1)  # every random draw of an iteration
        # the real data (it refuses a batch that the processes cannot share evenly)
        self.real = RealBatches.for_run(dataset, train_config, model_config.size, self.rng, self.device, self.dist)
        self.local_batch = train_config.batch // self.dist.world_size
        self.dataset = dataset

        torch.manual_seed(train_config.seed)  # same initial weights on every rank
        self.generator = Generator(model_config).to(self.device).train()
        self.encoder = Encoder(model_config).to(self.device).train()
        self.discriminator = Discriminator(model_config).to(self.device).train()
        self.g_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        self.e_ema = copy.deepcopy(self.encoder).eval().requires_grad_(False)
        self.perceptual = perceptual.to(self.device) if perceptual is not None else None

        lr, ratio = train_config.lr, train_config.d_reg_ratio
        self.g_optim = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(0.0, 0.99))
        self.e_optim = torch.optim.Adam(self.encoder.parameters(), lr=lr, betas=(0.0, 0.99))
        self.d_optim = torch.optim.Adam(
            self.discriminator.parameters(), lr=lr * ratio, betas=(0.0**ratio, 0.99**ratio)
        )
        self.iteration = 0

    # ----- what a TrainingRun asks of a family's trainer -----------------------------------------------
    @classmethod
    def for_run(cls, model_config: ModelConfig, train_config: TrainConfig, dataset: Dataset, *,
                device: torch.device | str, dist_info: DistInfo) -> Trainer:
        """The trainer of a TrainingRun, with the perceptual network the config names."""
        from stylemapgan.losses import build_perceptual

        return cls(model_config, train_config, dataset, device=device, dist_info=dist_info,
                   perceptual=build_perceptual(train_config.perceptual))

    @staticmethod
    def check_data(model_config: ModelConfig, dataset: Dataset) -> None:
        """Images are all StyleMapGAN needs; their size is checked by the run (DataMismatchError otherwise)."""

    def fixed_noise(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """z for the run's fixed sample grid."""
        return torch.randn(count, self.model_config.latent_channels, generator=generator).to(self.device)

    @torch.no_grad()
    def sample_grids(self, fixed_z: torch.Tensor, fixed_real: torch.Tensor | None) -> dict[str, Any]:
        """Sample images of the EMA generator, and reconstructions of fixed held-out images beside them."""
        grids = {"samples": make_grid(self.g_ema(fixed_z), nrow=8)}
        if fixed_real is not None:
            rec = self.g_ema.decode(self.e_ema(fixed_real))
            grids["reconstructions"] = make_grid(torch.stack([fixed_real, rec], 1).flatten(0, 1), nrow=8)
        return grids

    @torch.no_grad()
    def validation_metrics(self, val_data: Dataset | None, count: int) -> dict[str, float] | None:
        """Reconstruction MSE and LPIPS of the EMA networks on the first `count` held-out images."""
        if val_data is None:
            return None
        n = min(count, len(val_data))
        mse_sum, lpips_sum = 0.0, 0.0
        for start in range(0, n, 16):
            real = collate_images([val_data[i] for i in range(start, min(n, start + 16))])
            real = fit_to_model(real, self.model_config.size).to(self.device)
            rec = self.g_ema.decode(self.e_ema(real))
            mse_sum += F.mse_loss(rec, real, reduction="none").flatten(1).mean(1).sum().item()
            if self.perceptual is not None:
                lpips_sum += self.perceptual(real, rec).sum().item()
        values = {"val_mse": mse_sum / n}
        if self.perceptual is not None:
            values["val_lpips"] = lpips_sum / n
        return values

    @staticmethod
    def checkpoint_extra() -> dict[str, Any]:
        """Nothing beyond config, networks and training state."""
        return {}

    @staticmethod
    def progress_fields(losses: dict[str, float]) -> dict[str, str]:
        """What the progress bar shows of an iteration's losses."""
        g_adv = f"{losses['g_adv']:.3f}" if "g_adv" in losses else "frozen"
        return {"g": g_adv, "d": f"{losses['d_adv']:.3f}", "rec": f"{losses['x_rec']:.4f}"}

    # ----- data and randomness -------------------------------------------------------------------------
    def _rank_slice(self, global_tensor: torch.Tensor) -> torch.Tensor:
        return global_tensor[self.dist.rank :: self.dist.world_size]

    def noise(self) -> torch.Tensor:
        z = torch.randn(self.cfg.batch, self.model_config.latent_channels, generator=self.rng)
        return self._rank_slice(z).to(self.device)

    def next_batch(self) -> torch.Tensor:
        """This rank's real images [n, 3, s, s], flipped at random when hflip."""
        return self.real.next()

    def close(self) -> None:
        """Stop the data loader's workers (a later batch starts them again where the data stream is)."""
        self.real.close()

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.cfg.amp_bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    # ----- the four updates ----------------------------------------------------------------------------
    @property
    def active_generator(self) -> nn.Module:
        """The generator the steps use: the live one, or its EMA when the generator is frozen."""
        return self.g_ema if self.cfg.freeze_generator else self.generator

    def generator_step(self) -> dict[str, torch.Tensor]:
        """G: non-saturating loss. E: MSE between a generated stylemap and E of its (detached) image."""
        g, e, d = self.active_generator, self.encoder, self.discriminator
        frozen = self.cfg.freeze_generator
        set_requires_grad(g, not frozen)
        set_requires_grad(e, True)
        set_requires_grad(d, False)
        z = self.noise()
        losses: dict[str, torch.Tensor] = {}
        with torch.no_grad() if frozen else nullcontext(), self._autocast():
            stylemap = g.mapping(z)
            fake = g.decode(stylemap)
            adv = None if frozen else g_nonsaturating_loss(d(fake).float())
        if adv is not None:
            self.g_optim.zero_grad(set_to_none=True)
            (adv * self.cfg.lambda_adv).backward()
            average_gradients(g, self.dist)
            self.g_optim.step()
            losses["g_adv"] = adv.detach()

        with self._autocast():
            w_rec = F.mse_loss(e(fake.detach()).float(), stylemap.detach().float())
        self.e_optim.zero_grad(set_to_none=True)
        (w_rec * self.cfg.lambda_w_rec).backward()
        average_gradients(e, self.dist)
        self.e_optim.step()
        return {**losses, "e_w_rec": w_rec.detach()}

    def discriminator_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """D: logistic loss on real vs G(z), plus G(E(x)) as an extra fake (the in-domain term)."""
        g, e, d = self.active_generator, self.encoder, self.discriminator
        set_requires_grad(g, False)
        set_requires_grad(e, False)
        set_requires_grad(d, True)
        z = self.noise()
        with torch.no_grad(), self._autocast():
            fake = g(z)
            fake_rec = g.decode(e(real))
        with self._autocast():
            real_logits = d(real).float()
            fake_logits = d(fake).float()
            rec_logits = d(fake_rec).float()
        d_adv = d_logistic_loss(real_logits, fake_logits)
        indomain = F.softplus(rec_logits).mean()
        self.d_optim.zero_grad(set_to_none=True)
        (d_adv * self.cfg.lambda_d + indomain * self.cfg.lambda_indomain_d).backward()
        average_gradients(d, self.dist)
        self.d_optim.step()
        return {
            "d_adv": d_adv.detach(), "d_indomain": indomain.detach(),
            "real_score": real_logits.detach().mean(), "fake_score": fake_logits.detach().mean(),
        }

    def r1_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """Lazy R1: (gamma / 2) * R1 * d_reg_every, in fp32."""
        d = self.discriminator
        set_requires_grad(d, True)
        real = real.detach().requires_grad_(True)
        logits = d(real)
        r1 = r1_penalty(logits, real)
        self.d_optim.zero_grad(set_to_none=True)
        (self.cfg.r1_gamma / 2 * r1 * self.cfg.d_reg_every + 0 * logits[0, 0]).backward()
        average_gradients(d, self.dist)
        self.d_optim.step()
        return {"r1": r1.detach()}

    def reconstruction_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """E and G together (E alone when G is frozen): MSE(x, G(E(x))) + LPIPS + softplus(-D(G(E(x))))."""
        g, e, d = self.active_generator, self.encoder, self.discriminator
        frozen = self.cfg.freeze_generator
        set_requires_grad(g, not frozen)
        set_requires_grad(e, True)
        set_requires_grad(d, False)
        with self._autocast():
            rec = g.decode(e(real)).float()
            terms = {"x_rec": (F.mse_loss(rec, real), self.cfg.lambda_x_rec)}
            # The optional terms are neither computed nor logged at weight 0 (D's pass and LPIPS' are a
            # noticeable share of a CPU step; benchmarks/bench_training_objectives.py measures it).
            if self.perceptual is not None and self.cfg.lambda_perceptual:
                terms["perceptual"] = (self.perceptual(real, rec).mean().float(), self.cfg.lambda_perceptual)
            if self.cfg.lambda_indomain_e:
                terms["e_indomain"] = (F.softplus(-d(rec).float()).mean(), self.cfg.lambda_indomain_e)
        weighted = [value * weight for value, weight in terms.values()]
        loss = sum(weighted[1:], weighted[0])  # left to right, as the official sum
        self.e_optim.zero_grad(set_to_none=True)
        self.g_optim.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(e, self.dist)
        self.e_optim.step()
        if not frozen:
            average_gradients(g, self.dist)
            self.g_optim.step()
        return {name: value.detach() for name, (value, _) in terms.items()}

    def train_step(self) -> dict[str, float]:
        """One full iteration; returns the losses as floats. Raises TrainingDiverged on NaN/inf."""
        real = self.next_batch()
        losses = self.generator_step()
        losses.update(self.discriminator_step(real))
        if self.cfg.r1_gamma and self.iteration % self.cfg.d_reg_every == 0:  # weight 0: not computed
            losses.update(self.r1_step(real))
        losses.update(self.reconstruction_step(real))
        if not self.cfg.freeze_generator:
            ema_update(self.g_ema, self.generator, self.cfg.ema_decay)
        ema_update(self.e_ema, self.encoder, self.cfg.ema_decay)
        values = finite_losses(losses, self.iteration, self.dist, self.device)
        self.iteration += 1
        return values

    # ----- state ---------------------------------------------------------------------------------------
    def networks_state(self) -> dict[str, dict[str, torch.Tensor]]:
        return {
            "generator": self.generator.state_dict(),
            "encoder": self.encoder.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "g_ema": self.g_ema.state_dict(),
            "e_ema": self.e_ema.state_dict(),
        }

    def training_state(self) -> dict[str, Any]:
        optimizers = {"g": self.g_optim, "e": self.e_optim, "d": self.d_optim}
        return progress_state(self.cfg, self.iteration, optimizers, self.rng, self.dist, self.device)

    def set_lr(self, lr: float) -> None:
        """Set the Adam learning rates (D's scaled by the lazy-R1 ratio), e.g. after a resume that changes lr."""
        for optim, scale in ((self.g_optim, 1.0), (self.e_optim, 1.0), (self.d_optim, self.cfg.d_reg_ratio)):
            for group in optim.param_groups:
                group["lr"] = lr * scale

    def load_weights(self, networks: dict[str, dict[str, torch.Tensor]]) -> list[str]:
        """Start from trained weights (fine-tuning): fresh optimizers, iteration 0, this run's RNG. A released
        model carries only the EMA networks: they start both the live and the EMA copies. D is loaded when the
        checkpoint has one, else it keeps its fresh initialisation. Returns the networks taken from `networks`."""
        pairs = ((self.generator, ("generator", "g_ema")), (self.g_ema, ("g_ema", "generator")),
                 (self.encoder, ("encoder", "e_ema")), (self.e_ema, ("e_ema", "encoder")),
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
        """Restore a saved state. `widen_encoder`: this trainer's E is wider than the saved one (a resume that
        raises encoder_channel_base); E and its EMA are grown from the saved ones computing the same function
        (`widen_into`), and E's Adam state starts afresh."""
        self.generator.load_state_dict(networks["generator"])
        self.discriminator.load_state_dict(networks["discriminator"])
        self.g_ema.load_state_dict(networks["g_ema"])
        optimizers = {"g": self.g_optim, "d": self.d_optim}
        if widen_encoder:
            new_channels = copy.deepcopy(self.encoder)  # E and its EMA get the same initial new channels
            widen_into(self.encoder, networks["encoder"])
            widen_into(new_channels, networks["e_ema"])
            self.e_ema.load_state_dict(new_channels.state_dict())
        else:
            self.encoder.load_state_dict(networks["encoder"])
            self.e_ema.load_state_dict(networks["e_ema"])
            optimizers["e"] = self.e_optim
        self.iteration = restore_progress(training, optimizers, self.rng, self.real, self.device)
