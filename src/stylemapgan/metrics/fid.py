"""Fréchet Inception Distance and Kernel Inception Distance on feature matrices.

FID = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)). The trace of the matrix square root is computed without
SciPy and without a non-symmetric matrix square root: for any factor F of S1 (F F^T = S1, F [D, k]), S1 S2
has the same non-zero eigenvalues as the symmetric PSD k x k matrix F^T S2 F, so tr((S1 S2)^(1/2)) is the sum
of the square roots of that matrix's (clipped non-negative) eigenvalues, found with `eigvalsh` in float64.
F is the centred features / sqrt(N - 1) when there are fewer samples than dimensions (k = N - 1: small,
exact), else S1^(1/2) from one eigendecomposition (cached with the real statistics, since a 2048 x 2048
`eigh` costs tens of seconds on 2 CPU cores). Exact for PSD covariances, rank-deficient ones included (where
sqrtm of the non-symmetric product is ill-conditioned and returns small imaginary parts).

KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3, estimated on
`num_subsets` random subsets of `min(max_subset_size, n_real, n_gen)` features from each set (drawn without
replacement within a subset), as in the KID paper and StyleGAN2-ADA's metric (100 subsets of 1000).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from stylemapgan.metrics.errors import MetricsError


@dataclass
class FeatureStats:
    """Mean and covariance (unbiased, N - 1) of a feature set, float64, plus an optional factor F of the
    covariance (F F^T = cov, F [D, k]) that makes the FID trace term a k x k eigenvalue problem."""

    mean: torch.Tensor  # [D]
    cov: torch.Tensor  # [D, D]
    count: int
    factor: torch.Tensor | None = None  # [D, k]

    @classmethod
    def from_features(cls, features: torch.Tensor) -> FeatureStats:
        f = features.detach().to(torch.float64).cpu()
        if f.ndim != 2 or f.shape[0] < 2:
            raise MetricsError(f"FID: need at least 2 feature vectors, got shape {tuple(f.shape)}")
        mean = f.mean(0)
        centred = f - mean
        cov = centred.T @ centred / (f.shape[0] - 1)
        # Fewer samples than dimensions: the centred data is an exact, thin factor of the covariance.
        factor = centred.T / math.sqrt(f.shape[0] - 1) if f.shape[0] - 1 < f.shape[1] else None
        return cls(mean, cov, int(f.shape[0]), factor)

    def get_factor(self) -> torch.Tensor:
        """A factor of the covariance (computed once: symmetric square root by eigendecomposition)."""
        if self.factor is None:
            self.factor = psd_sqrt(self.cov)
        return self.factor


def psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric PSD matrix (eigenvalues below 0 from rounding are clipped)."""
    sym = (matrix + matrix.T).to(torch.float64) / 2
    values, vectors = torch.linalg.eigh(sym)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def trace_sqrt_product(cov1: torch.Tensor, cov2: torch.Tensor, factor1: torch.Tensor | None = None) -> float:
    """tr((cov1 cov2)^(1/2)) for PSD covariances. With F F^T = cov1 (default F = cov1^(1/2)), cov1 cov2 has the
    same non-zero eigenvalues as the symmetric PSD matrix F^T cov2 F, so the trace is the sum of their roots."""
    f = (factor1 if factor1 is not None else psd_sqrt(cov1)).to(torch.float64)
    inner = f.T @ cov2.to(torch.float64) @ f
    values = torch.linalg.eigvalsh((inner + inner.T) / 2)
    return float(values.clamp(min=0).sqrt().sum())


def frechet_distance(
    mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor, cov2: torch.Tensor,
    factor1: torch.Tensor | None = None,
) -> float:
    """Fréchet distance between N(mean1, cov1) and N(mean2, cov2); `factor1` optionally factors cov1."""
    m1, m2 = mean1.to(torch.float64).cpu(), mean2.to(torch.float64).cpu()
    c1, c2 = cov1.to(torch.float64).cpu(), cov2.to(torch.float64).cpu()
    if m1.shape != m2.shape or c1.shape != c2.shape or c1.shape != (m1.numel(), m1.numel()):
        raise MetricsError(f"FID: mismatched statistics {tuple(m1.shape)}/{tuple(c1.shape)} vs {tuple(m2.shape)}")
    diff = float((m1 - m2).square().sum())
    f1 = factor1.to(torch.float64).cpu() if factor1 is not None else None
    value = diff + float(torch.trace(c1) + torch.trace(c2)) - 2 * trace_sqrt_product(c1, c2, f1)
    return max(value, 0.0)


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """FID, factoring whichever covariance has the thinner factor at hand (else computing one of `b`'s,
    which is cached on the object: pass the real statistics as `b`)."""
    candidates = [s for s in (a, b) if s.factor is not None]
    first = min(candidates, key=lambda s: s.factor.shape[1]) if candidates else b  # type: ignore[union-attr]
    second = a if first is b else b
    return frechet_distance(first.mean, first.cov, second.mean, second.cov, first.get_factor())


def fid_from_features(a: torch.Tensor, b: torch.Tensor) -> float:
    return fid_from_stats(FeatureStats.from_features(a), FeatureStats.from_features(b))


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = 3, coef: float = 1.0) -> torch.Tensor:
    """k(x, y) = (x.y / d + coef)^degree for every row pair (gamma = 1 / d)."""
    return (x @ y.T / x.shape[1] + coef) ** degree


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 between two equal-size samples with the KID kernel: within-set means exclude i == j."""
    m = x.shape[0]
    if m < 2 or y.shape[0] != m:
        raise MetricsError(f"KID: need two subsets of equal size >= 2, got {x.shape[0]} and {y.shape[0]}")
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2 * kxy.sum() / (m * m))


@dataclass(frozen=True)
class KIDResult:
    mean: float
    std: float
    num_subsets: int
    subset_size: int


def kernel_inception_distance(
    real: torch.Tensor,
    generated: torch.Tensor,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
) -> KIDResult:
    """KID: mean and standard deviation over subsets of the unbiased MMD^2 (see module docstring)."""
    r = real.detach().to(torch.float64).cpu()
    g = generated.detach().to(torch.float64).cpu()
    m = min(max_subset_size, r.shape[0], g.shape[0])
    if m < 2:
        raise MetricsError(f"KID: need at least 2 real and 2 generated images, got {r.shape[0]} and {g.shape[0]}")
    if num_subsets < 1:
        raise MetricsError(f"KID: num_subsets must be >= 1, got {num_subsets}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        gi = torch.from_numpy(rng.choice(g.shape[0], m, replace=False))
        ri = torch.from_numpy(rng.choice(r.shape[0], m, replace=False))
        values.append(mmd2_unbiased(g[gi], r[ri]))
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return KIDResult(mean, std, num_subsets, m)
