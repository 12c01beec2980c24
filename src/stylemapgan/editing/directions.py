"""Edit directions in stylemap space, learned or found, saved to and loaded from one file.

Every direction is stored as a unit vector in the flattened stylemap space: a tensor [C, s, s] with L2 norm 1
over all its entries, so a strength is a distance moved in stylemap space whatever the kind:

- supervised (InterFaceGAN style): encode labelled images, flatten the stylemaps, fit a linear classifier
  (L2-regularised squared-hinge "svm" or "logistic", full-batch L-BFGS in torch), and take the unit normal
  of its hyperplane, pointing towards the positive class;
- "pca" (GANSpace style): principal components of stylemaps of random z (the mapping network's output);
- "sefa" (closed-form factorisation): the first resizer layer is a 3x3 conv with weight W [out, in, 3, 3]
  acting on the stylemap. Stacking its 9 taps as rows, A = W.permute(0, 2, 3, 1).reshape(out * 9, in), the
  change of that layer's output caused by changing one stylemap cell by a channel vector d has squared norm
  |A d|^2 = d^T (sum_k W_k^T W_k) d. The eigenvectors of A^T A with the largest eigenvalues are the channel
  directions that change the first style tensor most; each is applied to every cell (tiled over s x s, then
  scaled to unit norm), or to the cells of a mask.

Files: safetensors, one tensor per direction (name = attribute or e.g. "pca_0"), and JSON metadata (kind,
stylemap shape, model hash, accuracy, ...) in the header; written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from stylemapgan.editing.errors import EditingError
from stylemapgan.networks import Generator
from stylemapgan.utils.files import atomic_write_bytes
from stylemapgan.utils.safetensors_meta import read_metadata

DIRECTIONS_FORMAT = "stylemapgan-directions"
DIRECTIONS_VERSION = 1


@dataclass
class Direction:
    name: str
    vector: torch.Tensor  # [C, s, s], unit L2 norm
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class LinearClassifier:
    """score(x) = (x - center) . weight / scale + bias; positive -> positive class."""

    weight: torch.Tensor  # [D]
    bias: float
    center: torch.Tensor  # [D]
    scale: float

    def score(self, features: torch.Tensor) -> torch.Tensor:
        return ((features.flatten(1) - self.center) / self.scale) @ self.weight + self.bias

    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        return float(((self.score(features) > 0) == labels.bool()).float().mean())

    @property
    def normal(self) -> torch.Tensor:
        """Unit normal of the decision hyperplane in the raw feature space (towards the positive class)."""
        return self.weight / self.weight.norm().clamp_min(1e-12)


def _squared_hinge(margins: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - margins).square()


def _logistic(margins: torch.Tensor) -> torch.Tensor:
    return F.softplus(-margins)


LINEAR_LOSSES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"svm": _squared_hinge, "logistic": _logistic}


def fit_linear_classifier(
    features: torch.Tensor, labels: torch.Tensor, method: str = "svm", l2: float = 1e-3, max_iter: int = 200
) -> LinearClassifier:
    """Fit w, b minimising mean(loss(y * score)) + l2/2 |w|^2 with y in {-1, +1}.

    Features are centred and divided by one global scale (their overall std) for conditioning; neither changes
    the direction of the normal in the raw space.
    """
    try:
        loss_fn = LINEAR_LOSSES[method]
    except KeyError:
        raise EditingError(f"method: must be one of {', '.join(LINEAR_LOSSES)}, got {method!r}") from None
    x = features.detach().double().flatten(1)
    y = labels.detach().bool()
    if y.all() or not y.any():
        raise EditingError("labels: need examples of both classes to fit a direction")
    center = x.mean(0)
    scale = float((x - center).std().clamp_min(1e-12))
    xs = (x - center) / scale
    signs = y.double() * 2 - 1
    w = torch.zeros(xs.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        objective = loss_fn(signs * (xs @ w + b)).mean() + 0.5 * l2 * w.square().sum()
        objective.backward()
        return objective

    with torch.enable_grad():
        optimizer.step(closure)
    dtype = features.dtype
    return LinearClassifier(w.detach().to(dtype), float(b.detach()), center.to(dtype), scale)


def binarise_labels(values: torch.Tensor, kind: str, name: str, extremes: float = 0.5,
                    vocab: Sequence[str] | None = None, value: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Label column -> (indices of the examples used, their boolean labels).

    binary: > 0.5; float: top vs bottom `extremes` fraction (0.5: split at the median, InterFaceGAN uses the
    extremes); categorical: NAME=VALUE one-vs-rest.
    """
    values = values.double()
    if kind == "categorical":
        if value is None:
            shown = f" ({', '.join(vocab)})" if vocab else ""
            raise EditingError(f"attribute {name!r} is categorical: give NAME=VALUE{shown}")
        codes = list(vocab or [])
        if value in codes:
            code = codes.index(value)
        else:
            try:
                code = int(value)
            except ValueError:
                raise EditingError(f"attribute {name}={value}: unknown value; known: {', '.join(codes)}") from None
        index = torch.arange(values.numel())
        return index, values.round() == code
    if value is not None:
        raise EditingError(f"attribute {name}={value}: only categorical attributes take =VALUE")
    if kind == "binary":
        return torch.arange(values.numel()), values > 0.5
    if not 0 < extremes <= 0.5:
        raise EditingError(f"extremes: must be in (0, 0.5], got {extremes}")
    order = torch.argsort(values, stable=True)
    n = max(1, round(values.numel() * extremes))
    low, high = order[:n], order[-n:]
    if float(values[high].min()) <= float(values[low].max()):
        raise EditingError(f"attribute {name!r}: too few distinct values to split into two classes")
    index = torch.cat([low, high])
    return index, torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])


def supervised_direction(
    name: str, stylemaps: torch.Tensor, labels: torch.Tensor, method: str = "svm", l2: float = 1e-3
) -> tuple[Direction, LinearClassifier]:
    classifier = fit_linear_classifier(stylemaps.flatten(1), labels, method, l2)
    vector = classifier.normal.reshape(stylemaps.shape[1:])
    meta = {
        "kind": "supervised",
        "method": method,
        "l2": l2,
        "examples": int(labels.numel()),
        "positives": int(labels.sum()),
        "train_accuracy": classifier.accuracy(stylemaps, labels),
    }
    return Direction(name, vector, meta), classifier


@torch.no_grad()
def sample_stylemaps(generator: Generator, count: int, seed: int = 0, batch: int = 500) -> torch.Tensor:
    """Stylemaps of `count` random z (on the generator's device), deterministic by seed."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, count, batch):
        n = min(batch, count - start)
        z = torch.randn(n, generator.config.latent_channels, generator=gen).to(generator.const_device)
        out.append(generator.mapping(z))
    return torch.cat(out)


def pca_directions(stylemaps: torch.Tensor, k: int, prefix: str = "pca") -> list[Direction]:
    """Top-k principal components of flattened stylemaps (sign fixed: the largest entry is positive)."""
    x = stylemaps.detach().double().flatten(1)
    k = min(k, *x.shape)
    if k < 1:
        raise EditingError("pca: needs at least one component and one sample")
    centred = x - x.mean(0)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    variance = singular.square() / max(1, x.shape[0] - 1)
    total = float(variance.sum()) or 1.0
    out = []
    for i in range(k):
        v = vh[i]
        v = v * torch.sign(v[v.abs().argmax()])
        meta = {"kind": "pca", "component": i, "samples": int(x.shape[0]),
                "explained_variance": float(variance[i]), "explained_fraction": float(variance[i]) / total}
        out.append(Direction(f"{prefix}_{i}", v.to(stylemaps.dtype).reshape(stylemaps.shape[1:]), meta))
    return out


def sefa_directions(generator: Generator, k: int, prefix: str = "sefa") -> list[Direction]:
    """Closed-form factorisation of the first resizer conv (see the module docstring)."""
    layer = generator.resizer.layers[0]
    weight = layer.weight.detach().double() * layer.scale  # [out, in, kh, kw]
    c, s = generator.config.latent_channels, generator.config.latent_spatial_size
    stacked = weight.permute(0, 2, 3, 1).reshape(-1, weight.shape[1])  # [(out*kh*kw), in]
    eigenvalues, eigenvectors = torch.linalg.eigh(stacked.T @ stacked)
    order = torch.argsort(eigenvalues, descending=True)[: min(k, c)]
    out = []
    for rank, i in enumerate(order.tolist()):
        v = eigenvectors[:, i]
        v = v * torch.sign(v[v.abs().argmax()])
        tiled = v.view(c, 1, 1).expand(c, s, s) / s  # unit norm over the whole stylemap
        meta = {"kind": "sefa", "component": rank, "eigenvalue": float(eigenvalues[i]),
                "factorised": "resizer.layers[0].weight [out,in,3,3] -> A = permute(0,2,3,1).reshape(out*9, in); "
                              "eigenvectors of A^T A, tiled over s x s"}
        out.append(Direction(f"{prefix}_{rank}", tiled.float().contiguous(), meta))
    return out


def apply_direction(
    stylemap: torch.Tensor, direction: torch.Tensor, strengths: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """stylemap [1, C, s, s] + strength * direction (* cell weight [1, 1, s, s]) for each strength -> [F, C, s, s]."""
    d = direction.reshape(1, *stylemap.shape[1:]).to(stylemap)
    if weight is not None:
        d = d * weight.to(stylemap)
    return stylemap + strengths.to(stylemap).view(-1, 1, 1, 1) * d


def save_directions(path: str | os.PathLike[str], directions: Sequence[Direction], meta: dict[str, Any]) -> None:
    if not directions:
        raise EditingError("directions: nothing to save")
    names = [d.name for d in directions]
    if len(set(names)) != len(names):
        raise EditingError(f"directions: duplicate names {sorted(n for n in names if names.count(n) > 1)}")
    tensors = {d.name: d.vector.detach().float().cpu().contiguous().clone() for d in directions}
    header = {
        "format": DIRECTIONS_FORMAT,
        "format_version": str(DIRECTIONS_VERSION),
        "meta": json.dumps(meta, sort_keys=True),
        "directions": json.dumps({d.name: d.meta for d in directions}, sort_keys=True),
    }
    atomic_write_bytes(path, st_save(tensors, metadata=header))


def read_directions_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The file-level metadata (model hash, stylemap shape, ...)."""
    return _read(Path(path))[1]


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    if not path.is_file():
        raise EditingError(f"{path}: no such file (directions)")
    data = path.read_bytes()
    try:
        header = read_metadata(data)
        tensors = st_load(data)
    except (SafetensorError, Exception) as exc:  # a bad header, or safetensors' own errors on bad tensor data
        raise EditingError(f"{path}: not a directions file ({exc})") from None
    if header.get("format") != DIRECTIONS_FORMAT:
        raise EditingError(f"{path}: not a stylemapgan directions file")
    try:
        return tensors, json.loads(header.get("meta", "{}")), json.loads(header.get("directions", "{}"))
    except json.JSONDecodeError as exc:
        raise EditingError(f"{path}: corrupt directions metadata ({exc})") from None


def load_directions(path: str | os.PathLike[str], stylemap_shape: tuple[int, int, int]) -> dict[str, Direction]:
    """All directions in a file, checked against the model's stylemap shape."""
    path = Path(path)
    tensors, _, metas = _read(path)
    out = {}
    for name, vector in tensors.items():
        if tuple(vector.shape) != tuple(stylemap_shape):
            raise EditingError(
                f"{path}: direction {name!r} has shape {tuple(vector.shape)}, this model's stylemap is "
                f"{tuple(stylemap_shape)}"
            )
        out[name] = Direction(name, vector, metas.get(name, {}))
    return out

