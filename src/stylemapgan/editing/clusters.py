"""Part masks without labels, for any model ("Editing in Style", Collins et al. 2020): the generator's features
at one layer (or several, upsampled to the largest) group into parts. Spherical k-means over the per-pixel feature
vectors of random samples gives K centroids; an image's part map is, at every pixel, the centroid most similar
(cosine) to its own features, which come from its stylemap (encoded or projected).

The centroids, the layers they came from and the names users give them are stored in the checkpoint
(`Checkpoint.extra["part_clusters"]`: one tensor plus JSON metadata, nothing pickled), so `--ckpt FILE` carries
them. Reading them back checks everything against the model (never trusting the file): the layers must be
synthesis resolutions of this model, the centroid width the sum of those layers' channel counts, names valid and
unique, ids in range.

Features of layer r are the synthesis output at resolution r (the first modulated conv at the stylemap's
resolution s, else the synthesis block that doubles to r), each pixel's vector scaled to unit length so that
layers of different magnitudes weigh alike when several are concatenated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

from stylemapgan.checkpoint.format import CheckpointError
from stylemapgan.config import ModelConfig
from stylemapgan.editing.errors import EditingError
from stylemapgan.networks import Generator

EXTRA_KEY = "part_clusters"  # the checkpoint's extra entry
MIN_CLUSTERS, MAX_CLUSTERS = 2, 64
MAX_NAME_CHARS = 40
NAME_RE = re.compile(r"^[A-Za-z_][\w-]*$")  # the names `--mask NAME` accepts (letters first: '3' is an id)
# Default layers: size/4 and size/2 concatenated. On cartoon-faces (64 px, K=16, benchmarks/bench_clusters_iou.py)
# the mean best-union IoU over its 13 labelled parts was 0.277 for 16+32, against 0.246 (16), 0.263 (16+32+64),
# 0.238 (32+64) and 0.22 or less for 8, 32 or 64 alone.
DEFAULT_LAYER_FRACTIONS = (4, 2)


class ClusterError(EditingError):
    """Part clusters that cannot be fitted, named or used; the message names the option or file."""


# ---- features -----------------------------------------------------------------------------------------------


def synthesis_resolutions(config: ModelConfig) -> list[int]:
    """Every resolution the synthesis network has a feature map at: s, 2s, ..., size."""
    return list(dict.fromkeys(config.style_resolutions))


def default_resolutions(config: ModelConfig) -> tuple[int, ...]:
    """The layers where parts separated best (see DEFAULT_LAYER_FRACTIONS), the nearest the synthesis has."""
    known = synthesis_resolutions(config)
    wanted = (config.size // f for f in DEFAULT_LAYER_FRACTIONS)
    return tuple(sorted({min(known, key=lambda r, w=w: abs(r - w)) for w in wanted}))


def feature_width(config: ModelConfig, resolutions: Sequence[int]) -> int:
    """Length of a pixel's feature vector: the channels of every chosen layer, concatenated."""
    return sum(config.channels(r) for r in resolutions)


def check_resolutions(config: ModelConfig, resolutions: Sequence[int], field_name: str = "layer") -> tuple[int, ...]:
    """Sorted, distinct synthesis resolutions of this model, or a ClusterError naming `field_name`."""
    known = synthesis_resolutions(config)
    values = tuple(sorted({int(r) for r in resolutions}))
    bad = [r for r in values if r not in known]
    if not values or bad:
        raise ClusterError(f"{field_name}: {bad[0] if bad else 'none given'} is not a synthesis layer of this model; "
                           f"resolutions: {', '.join(map(str, known))}")
    return values


def parse_resolutions(text: str, config: ModelConfig, field_name: str = "--layer") -> tuple[int, ...]:
    """'32', '16,32' or '16+32' -> checked resolutions."""
    try:
        values = [int(part) for part in re.split(r"[,+]", text) if part.strip()]
    except ValueError:
        raise ClusterError(f"{field_name} {text!r}: expected resolutions such as 32 or 16,32") from None
    return check_resolutions(config, values, f"{field_name} {text!r}")


@torch.no_grad()
def synthesis_features(
    generator: Generator, styles: Sequence[torch.Tensor], resolutions: Sequence[int]
) -> torch.Tensor:
    """Unit-length per-pixel features [N, D, R, R] at R = max(resolutions), from the style tensors of N images.
    Runs the synthesis only as far as the largest layer asked for."""
    synthesis = generator.synthesis
    wanted = set(resolutions)
    top = max(wanted)
    n = styles[0].shape[0]
    x = synthesis.conv(synthesis.const.expand(n, -1, -1, -1), styles[0])
    maps = [x] if x.shape[-1] in wanted else []
    for i, block in enumerate(synthesis.blocks):
        if x.shape[-1] >= top:
            break
        x = block(x, styles[1 + 2 * i], styles[2 + 2 * i])
        if x.shape[-1] in wanted:
            maps.append(x)
    parts = []
    for m in maps:
        m = F.normalize(m.float(), dim=1)
        parts.append(m if m.shape[-1] == top else F.interpolate(m, size=(top, top), mode="bilinear",
                                                                  align_corners=False))
    return F.normalize(torch.cat(parts, dim=1), dim=1)


# ---- spherical k-means --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KMeansResult:
    centroids: torch.Tensor  # [K, D], unit rows
    labels: torch.Tensor  # [N] int64
    objective: float  # mean cosine similarity of each point to its centroid (higher is better)
    iterations: int


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _kmeans_pp(x: torch.Tensor, k: int, rng: torch.Generator) -> torch.Tensor:
    """k-means++ seeding on cosine distance (1 - similarity); draws on a CPU generator, so any device agrees."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=rng))
    centroids = [x[first]]
    distance = (1 - x @ x[first]).clamp_min(0)
    for _ in range(1, k):
        weights = distance.double().cpu()
        if float(weights.sum()) <= 0:  # fewer distinct points than clusters: any point will do
            pick = int(torch.randint(n, (1,), generator=rng))
        else:
            pick = int(torch.multinomial(weights, 1, generator=rng))
        centroids.append(x[pick])
        distance = torch.minimum(distance, (1 - x @ x[pick]).clamp_min(0))
    return torch.stack(centroids)


def _assign(x: torch.Tensor, centroids: torch.Tensor, chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """Most similar centroid of each row (lowest index on ties) and that similarity, in chunks of rows."""
    labels, best = [], []
    for start in range(0, x.shape[0], chunk):
        sim = x[start : start + chunk] @ centroids.T
        value, index = sim.max(dim=1)
        labels.append(index)
        best.append(value)
    return torch.cat(labels), torch.cat(best)


def _update(x: torch.Tensor, labels: torch.Tensor, best: torch.Tensor, k: int) -> torch.Tensor:
    """Normalised mean of each cluster's members; an empty cluster takes the point worst served by its own centroid
    (deterministic: the lowest similarity, lowest index on ties), which then leaves its old cluster."""
    sums = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=k)
    best = best.clone()
    for empty in torch.nonzero(counts == 0).flatten().tolist():
        worst = int(torch.argmin(best))
        sums[labels[worst]] -= x[worst]
        sums[empty] = x[worst]
        best[worst] = float("inf")
    return F.normalize(sums, dim=1)


def spherical_kmeans(
    x: torch.Tensor, k: int, *, seed: int = 0, iterations: int = 100, restarts: int = 1
) -> KMeansResult:
    """Spherical k-means of the rows of x (normalised to unit length first): assign each row to the centroid of
    highest cosine similarity, move each centroid to its members' normalised mean, until no assignment changes
    (or `iterations`). k-means++ seeding; `restarts` runs from seeds seed, seed+1, ..., best objective kept.
    Deterministic for a given seed, device and thread count."""
    if x.ndim != 2 or x.shape[0] < 1:
        raise ClusterError(f"k-means: expected a non-empty [N, D] matrix, got {tuple(x.shape)}")
    if not MIN_CLUSTERS <= k <= min(MAX_CLUSTERS, x.shape[0]):
        raise ClusterError(f"--k: must be in [{MIN_CLUSTERS}, {min(MAX_CLUSTERS, x.shape[0])}], got {k}")
    if iterations < 1 or restarts < 1:
        raise ClusterError("k-means: iterations and restarts must be >= 1")
    x = F.normalize(x.float(), dim=1)
    best_result: KMeansResult | None = None
    for run in range(restarts):
        centroids = _kmeans_pp(x, k, _seeded(seed + run))
        labels, sim = _assign(x, centroids)
        steps = 0
        while steps < iterations:
            steps += 1
            centroids = _update(x, labels, sim, k)
            new_labels, sim = _assign(x, centroids)
            changed = bool((new_labels != labels).any())
            labels = new_labels
            if not changed:
                break
        result = KMeansResult(centroids, labels, float(sim.mean()), steps)
        if best_result is None or result.objective > best_result.objective:
            best_result = result
    assert best_result is not None
    return best_result


# ---- clusters of a model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartClusters:
    """K centroids of unit-length generator features at `resolutions`, with the names users gave some of them."""

    centroids: torch.Tensor  # [K, D]
    resolutions: tuple[int, ...]
    names: dict[int, str] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)  # how they were fitted (samples, seed, objective, ...)

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    def label(self, index: int) -> str:
        return self.names.get(index, f"cluster {index}")

    def index(self, key: str, field_name: str = "--mask") -> int:
        """A cluster id ('3') or a name given with `clusters name` -> its index."""
        key = key.strip()
        if key.isdigit():
            if int(key) < self.k:
                return int(key)
            raise ClusterError(f"{field_name}: cluster {key} does not exist; this model has clusters 0-{self.k - 1}")
        by_name = {name.casefold(): i for i, name in self.names.items()}
        if key.casefold() in by_name:
            return by_name[key.casefold()]
        named = ", ".join(f"{i}={n}" for i, n in sorted(self.names.items())) or "none named yet"
        raise ClusterError(f"{field_name}: no cluster named {key!r} (clusters 0-{self.k - 1}; named: {named})")

    def renamed(self, assignments: Mapping[int, str | None]) -> PartClusters:
        """A copy with names set (or removed, for None/''); names are checked and must stay unique."""
        names = dict(self.names)
        for index, name in assignments.items():
            if not 0 <= index < self.k:
                raise ClusterError(f"cluster {index}: does not exist; this model has clusters 0-{self.k - 1}")
            if name:
                names[index] = check_name(name)
            else:
                names.pop(index, None)
        seen: dict[str, int] = {}
        for index, name in sorted(names.items()):
            if name.casefold() in seen:
                raise ClusterError(f"name {name!r}: given to clusters {seen[name.casefold()]} and {index}; "
                                   "names must be unique")
            seen[name.casefold()] = index
        return replace(self, names=names)

    def to_extra(self) -> dict[str, Any]:
        """The checkpoint's extra entry: one tensor; the rest are JSON values (int keys written as strings)."""
        return {"centroids": self.centroids.detach().float().cpu().contiguous(),
                "resolutions": list(self.resolutions),
                "names": {str(i): n for i, n in sorted(self.names.items())},
                "fit": dict(self.fit)}

    def similarity(self, features: torch.Tensor) -> torch.Tensor:
        """Unit features [N, D, R, R] -> cosine similarity to each centroid [N, K, R, R]."""
        return torch.einsum("ndhw,kd->nkhw", features, self.centroids.to(features))


def check_name(name: str) -> str:
    name = name.strip()
    if not NAME_RE.match(name) or len(name) > MAX_NAME_CHARS:
        raise ClusterError(f"name {name!r}: a name is a letter or _ then letters, digits, _ or - "
                           f"(at most {MAX_NAME_CHARS} characters), e.g. hair or left_eye")
    if name.casefold() == "cluster":
        raise ClusterError("name 'cluster': reserved (cluster:N selects by id)")
    return name


def from_extra(extra: Mapping[str, Any], config: ModelConfig, where: str) -> PartClusters | None:
    """The checkpoint's clusters, checked against the model (`where` names the file in errors); None if absent."""
    entry = extra.get(EXTRA_KEY)
    if entry is None:
        return None

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{where}: part clusters refused ({what})")

    if not isinstance(entry, dict):
        raise bad("not a map")
    centroids, resolutions = entry.get("centroids"), entry.get("resolutions")
    names, fit = entry.get("names", {}), entry.get("fit", {})
    if not isinstance(centroids, torch.Tensor) or centroids.ndim != 2 or not centroids.is_floating_point():
        raise bad("centroids must be a [K, D] float tensor")
    if not isinstance(resolutions, list) or not all(isinstance(r, int) and not isinstance(r, bool)
                                                     for r in resolutions):
        raise bad("resolutions must be a list of integers")
    try:
        resolutions_checked = check_resolutions(config, resolutions, "layers")
    except ClusterError as exc:
        raise bad(str(exc)) from None
    if len(resolutions_checked) != len(resolutions):
        raise bad("resolutions repeat or are out of order")
    k, width = centroids.shape
    if not MIN_CLUSTERS <= k <= MAX_CLUSTERS:
        raise bad(f"{k} clusters; between {MIN_CLUSTERS} and {MAX_CLUSTERS} allowed")
    expected = feature_width(config, resolutions_checked)
    if width != expected:
        raise bad(f"centroids are {width} wide but this model's features at {resolutions_checked} are {expected}")
    if not bool(torch.isfinite(centroids).all()) or not torch.allclose(
        centroids.double().norm(dim=1), torch.ones(k, dtype=torch.float64), atol=1e-3
    ):
        raise bad("centroids must be finite unit vectors")
    if not isinstance(names, dict) or not isinstance(fit, dict):
        raise bad("names and fit must be maps")
    parsed: dict[int, str | None] = {}
    for key, name in names.items():
        if not (isinstance(key, str) and key.isdigit() and isinstance(name, str)):
            raise bad(f"name entry {key!r}: expected a cluster id and a name")
        parsed[int(key)] = name
    clusters = PartClusters(centroids.float().contiguous(), resolutions_checked, {}, dict(fit))
    try:
        return clusters.renamed(parsed)
    except ClusterError as exc:
        raise bad(str(exc)) from None


# ---- fitting and part maps ----------------------------------------------------------------------------------


@torch.no_grad()
def sample_features(
    generator: Generator, count: int, resolutions: Sequence[int], *, seed: int = 0, batch: int = 16,
    pixels_per_sample: int | None = None,
) -> torch.Tensor:
    """Per-pixel features [M, D] of `count` random samples (z drawn from a CPU generator seeded with `seed`), at
    most `pixels_per_sample` pixels of each (a seeded random subset; None: every pixel)."""
    config = generator.config
    rng = _seeded(seed)
    device = generator.const_device
    rows = []
    for start in range(0, count, batch):
        n = min(batch, count - start)
        z = torch.randn(n, config.latent_channels, generator=rng).to(device)
        styles = generator.resizer(generator.mapping(z))
        feats = synthesis_features(generator, styles, resolutions)
        flat = feats.permute(0, 2, 3, 1).reshape(n, -1, feats.shape[1])
        if pixels_per_sample is not None and pixels_per_sample < flat.shape[1]:
            picks = torch.stack([torch.randperm(flat.shape[1], generator=rng)[:pixels_per_sample] for _ in range(n)])
            flat = torch.gather(flat, 1, picks.to(device)[..., None].expand(-1, -1, flat.shape[2]))
        rows.append(flat.reshape(-1, flat.shape[2]))
    return torch.cat(rows)


MAX_FIT_SAMPLES = 10_000


def fit_clusters(
    generator: Generator, k: int, *, resolutions: Sequence[int] | None = None, samples: int = 200, seed: int = 0,
    iterations: int = 100, restarts: int = 1, batch: int = 16, pixels_per_sample: int | None = 1024,
) -> PartClusters:
    """Spherical k-means of generator features of `samples` random images (Collins et al. 2020)."""
    config = generator.config
    resolutions = check_resolutions(config, resolutions or default_resolutions(config), "--layer")
    if not 1 <= samples <= MAX_FIT_SAMPLES:
        raise ClusterError(f"--samples: must be in [1, {MAX_FIT_SAMPLES}], got {samples}")
    features = sample_features(generator, samples, resolutions, seed=seed, batch=batch,
                               pixels_per_sample=pixels_per_sample)
    result = spherical_kmeans(features, k, seed=seed, iterations=iterations, restarts=restarts)
    fit = {"method": "spherical k-means (k-means++ seeding)", "samples": samples, "seed": seed,
           "pixels": int(features.shape[0]), "iterations": result.iterations, "restarts": restarts,
           "objective": round(result.objective, 6)}
    return PartClusters(result.centroids.cpu(), resolutions, {}, fit)


@torch.no_grad()
def cluster_scores(generator: Generator, styles: Sequence[torch.Tensor], clusters: PartClusters) -> torch.Tensor:
    """Cosine similarity of each pixel's features to each centroid, upsampled to the image: [N, K, size, size]."""
    sim = clusters.similarity(synthesis_features(generator, styles, clusters.resolutions))
    size = generator.config.size
    return sim if sim.shape[-1] == size else F.interpolate(sim, size=(size, size), mode="bilinear",
                                                           align_corners=False)


def cluster_map(scores: torch.Tensor) -> torch.Tensor:
    """[N, K, H, W] scores -> [N, H, W] int64 cluster ids (lowest id on ties)."""
    return scores.argmax(dim=1)


def mask_from_cluster_map(label_map: torch.Tensor, indices: Sequence[int]) -> torch.Tensor:
    """[H, W] cluster ids -> [1, 1, H, W] float mask of the union of `indices`."""
    hit = torch.zeros_like(label_map, dtype=torch.bool)
    for i in indices:
        hit |= label_map == int(i)
    return hit.float()[None, None]


# Distinct colours for cluster maps (`clusters show`), cycling past 20 clusters.
PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40),
    (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
]


def colourise(label_map: torch.Tensor) -> torch.Tensor:
    """[H, W] ids -> [H, W, 3] uint8 colours."""
    palette = torch.tensor(PALETTE, dtype=torch.uint8)
    return palette[label_map.cpu() % len(PALETTE)]
