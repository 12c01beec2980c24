"""Training settings. `RunConfig` holds what every model family's run shares (batch, schedule, R1, EMA, outputs,
precision); each family's config adds its own loss weights: `TrainConfig` (StyleMapGAN, defaults the official
ones, spec section 2) and `training.semantic.SemanticTrainConfig` (SemanticStyleGAN). Every weight and interval
is an option."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # typing.Self is Python 3.11+; annotations are not evaluated at run time
    from typing import Self

PERCEPTUAL_KINDS = ("stlpips-vgg", "stlpips-alex", "lpips-vgg", "none")


@dataclass(frozen=True)
class RunConfig:
    """The settings of a training run that do not depend on the model family."""

    batch: int = 16  # global batch, split across ranks
    iters: int = 1_400_000
    lr: float = 0.002
    ema_decay: float = 0.999
    r1_gamma: float = 10.0
    d_reg_every: int = 16
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
    tf32: bool = False

    # What a resumed run may change (loss weights, EMA, R1 weight, lr, intervals, precision). The rest fixes the
    # state layout or the data stream (batch, seed, flips, D's lazy-R1 betas): as the run was started.
    RESUME_CHANGEABLE: ClassVar[frozenset[str]] = frozenset({
        "iters", "lr", "ema_decay", "r1_gamma", "checkpoint_every", "keep_checkpoints", "log_every",
        "sample_every", "val_every", "val_count", "num_workers", "amp_bf16", "tf32",
    })
    # Model config fields a resumed run may change (none unless the family says so).
    RESUME_CHANGEABLE_MODEL: ClassVar[frozenset[str]] = frozenset()

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
        perceptual = getattr(self, "perceptual", None)  # the families that use a perceptual loss
        if perceptual is not None and perceptual not in PERCEPTUAL_KINDS:
            raise ValueError(f"perceptual: must be one of {PERCEPTUAL_KINDS}, got {perceptual!r}")
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
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """The fields this class knows (a saved config of a newer version may carry more)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TrainConfig(RunConfig):
    """StyleMapGAN's objective: G, E and D trained jointly (spec section 2)."""

    lambda_adv: float = 1.0  # G non-saturating loss
    lambda_w_rec: float = 1.0  # E latent reconstruction on generated images
    lambda_d: float = 1.0  # D logistic loss
    lambda_indomain_d: float = 1.0  # D on G(E(x)) as fake
    lambda_x_rec: float = 1.0  # MSE(x, G(E(x)))
    lambda_perceptual: float = 1.0  # LPIPS(x, G(E(x)))
    lambda_indomain_e: float = 1.0  # softplus(-D(G(E(x)))) for E and G
    perceptual: str = "stlpips-vgg"
    # Our extension: G and its EMA stay fixed; E is fitted to the EMA generator (the one that ships) with E's
    # official losses, and D keeps training so E's in-domain term stays meaningful. For a resumed run whose
    # encoder limits reconstructions (e.g. just widened).
    freeze_generator: bool = False

    RESUME_CHANGEABLE: ClassVar[frozenset[str]] = RunConfig.RESUME_CHANGEABLE | {
        "lambda_adv", "lambda_w_rec", "lambda_d", "lambda_indomain_d", "lambda_x_rec", "lambda_perceptual",
        "lambda_indomain_e", "freeze_generator",
    }
    # The encoder's width, upwards only. The saved encoder is widened into the new one computing the same function
    # (`networks.widen`), with a fresh Adam state.
    RESUME_CHANGEABLE_MODEL: ClassVar[frozenset[str]] = frozenset({"encoder_channel_base"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.perceptual not in PERCEPTUAL_KINDS:
            raise ValueError(f"perceptual: must be one of {PERCEPTUAL_KINDS}, got {self.perceptual!r}")


# StyleMapGAN's, under the names other modules import.
RESUME_CHANGEABLE = TrainConfig.RESUME_CHANGEABLE
RESUME_CHANGEABLE_MODEL = TrainConfig.RESUME_CHANGEABLE_MODEL
