"""Training settings. Defaults are the official ones (spec section 2); every weight and interval is an option."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

PERCEPTUAL_KINDS = ("stlpips-vgg", "stlpips-alex", "lpips-vgg", "none")


@dataclass(frozen=True)
class TrainConfig:
    batch: int = 16  # global batch, split across ranks
    iters: int = 1_400_000
    lr: float = 0.002
    ema_decay: float = 0.999
    r1_gamma: float = 10.0
    d_reg_every: int = 16
    lambda_adv: float = 1.0  # G non-saturating loss
    lambda_w_rec: float = 1.0  # E latent reconstruction on generated images
    lambda_d: float = 1.0  # D logistic loss
    lambda_indomain_d: float = 1.0  # D on G(E(x)) as fake
    lambda_x_rec: float = 1.0  # MSE(x, G(E(x)))
    lambda_perceptual: float = 1.0  # LPIPS(x, G(E(x)))
    lambda_indomain_e: float = 1.0  # softplus(-D(G(E(x)))) for E and G
    perceptual: str = "stlpips-vgg"
    hflip: bool = True
    seed: int = 0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 10
    sample_every: int = 500
    val_every: int = 1000
    val_count: int = 64
    num_workers: int = 2
    amp_bf16: bool = False  # autocast in bf16 (CUDA, or CPU with support)
    # Our extension: G and its EMA stay fixed; E is fitted to the EMA generator (the one that ships) with E's
    # official losses, and D keeps training so E's in-domain term stays meaningful. For a resumed run whose
    # encoder limits reconstructions (e.g. just widened).
    freeze_generator: bool = False
    tf32: bool = False

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError(f"batch: must be >= 1, got {self.batch}")
        if self.iters < 1:
            raise ValueError(f"iters: must be >= 1, got {self.iters}")
        for name in ("val_count", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "ema_decay", "r1_gamma", *(f.name for f in dataclasses.fields(self)
                                                      if f.name.startswith("lambda_"))):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: must be a finite number >= 0, got {value}")
        if not 0 <= self.ema_decay <= 1:
            raise ValueError(f"ema_decay: must be in [0, 1], got {self.ema_decay}")
        if self.perceptual not in PERCEPTUAL_KINDS:
            raise ValueError(f"perceptual: must be one of {PERCEPTUAL_KINDS}, got {self.perceptual!r}")
        for name in ("d_reg_every", "checkpoint_every", "keep_checkpoints", "log_every", "sample_every", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")

    @property
    def d_reg_ratio(self) -> float:
        """Lazy-regularisation correction for D's Adam (StyleGAN2): lr and betas scaled by k / (k + 1)."""
        return self.d_reg_every / (self.d_reg_every + 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


# What a resumed run may change (loss weights, EMA, R1 weight, lr, intervals, precision). The rest fixes the state
# layout or the data stream (batch, perceptual network, seed, flips, D's lazy-R1 betas): as the run was started.
RESUME_CHANGEABLE = frozenset({
    "iters", "lr", "ema_decay", "r1_gamma", "lambda_adv", "lambda_w_rec", "lambda_d", "lambda_indomain_d",
    "lambda_x_rec", "lambda_perceptual", "lambda_indomain_e", "checkpoint_every", "keep_checkpoints", "log_every",
    "sample_every", "val_every", "val_count", "num_workers", "amp_bf16", "tf32", "freeze_generator",
})

# Model config fields a resumed run may change: the encoder's width, upwards only. The saved encoder is widened
# into the new one computing the same function (`networks.widen`), with a fresh Adam state.
RESUME_CHANGEABLE_MODEL = frozenset({"encoder_channel_base"})
