"""Inception features of a dataset's real images, cached on disk so that a second evaluation skips them.

Real-image features are the expensive, model-independent half of FID/KID (29,000 CelebA-HQ images take
over an hour on a CPU), so they are computed once per (data, preprocessing, network) and stored in
`<cache>/fid-stats/` (`<cache>` = $STYLEMAPGAN_CACHE, else ~/.cache/stylemapgan). The cache key hashes:

- the content of the images used: sha256 over the stored (encoded) bytes of each selected image, with its id,
  at the resolution used; so a rebuilt or edited dataset never hits a stale entry, whatever its path;
- which images (split name, count), the resolution, the dataset's resize filter and square mode (FID
  depends on them, and they are recorded with the entry);
- the feature network file's sha256 and how images are fed to it (8-bit rounding, TF1-bilinear to 299).

An entry is one safetensors file (features float32 [N, 2048] for KID; mean, covariance and, for N > 2048,
the covariance's square root, float64, for FID; the key fields as JSON metadata), written atomically (temp
file + rename), so concurrent runs and crashes never leave a half-written entry; an unreadable entry is
recomputed and replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from tqdm.auto import tqdm

from stylemapgan.metrics.errors import MetricsError
from stylemapgan.metrics.fid import FeatureStats
from stylemapgan.metrics.inception import InceptionFeatures, to_uint8
from stylemapgan.utils.files import atomic_write_bytes
from stylemapgan.utils.safetensors_meta import read_metadata

CACHE_VERSION = 1
CACHE_SUBDIR = "fid-stats"


def default_stats_dir() -> Path:
    """$STYLEMAPGAN_CACHE/fid-stats, else $XDG_CACHE_HOME/stylemapgan/fid-stats, else ~/.cache/stylemapgan/..."""
    env = os.environ.get("STYLEMAPGAN_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "stylemapgan"
    return root / CACHE_SUBDIR


def _raw_image_reader(dataset: Any) -> Callable[[int], tuple[int, bytes]]:
    """(stored id, encoded bytes) of item i, read straight from the LMDB without decoding."""
    from stylemapgan.data.dataset import OfficialLMDBDataset, PreparedDataset
    from stylemapgan.data.lmdb_format import image_key, official_key, shared_env

    env = shared_env(dataset.path)
    if isinstance(dataset, PreparedDataset):
        def key(i: int) -> tuple[int, bytes]:
            return dataset.image_id(i), image_key(dataset.size, dataset.image_id(i))
    elif isinstance(dataset, OfficialLMDBDataset):
        def key(i: int) -> tuple[int, bytes]:
            return i, official_key(dataset.size, i)
    else:
        raise MetricsError(f"real statistics: unsupported dataset type {type(dataset).__name__}")

    def read(i: int) -> tuple[int, bytes]:
        image_id, k = key(i)
        with env.begin(buffers=False) as txn:
            value = txn.get(k)
        if value is None:
            raise MetricsError(f"{dataset.path}: image {image_id} at {dataset.size}px is missing")
        return image_id, bytes(value)

    return read


def content_sha256(dataset: Any, count: int) -> str:
    """sha256 over (id, byte length, bytes) of the first `count` stored images of the dataset's split."""
    read = _raw_image_reader(dataset)
    h = hashlib.sha256(f"size={dataset.size};count={count}".encode())
    for i in range(count):
        image_id, data = read(i)
        h.update(f"|{image_id}:{len(data)}|".encode())
        h.update(data)
    return h.hexdigest()


def dataset_card(dataset: Any) -> dict[str, Any]:
    """The dataset fields a report and a cache key need (prepared datasets carry a card; official LMDBs don't)."""
    meta = getattr(dataset, "meta", None) or {}
    source = meta.get("source") or {}
    return {
        "path": str(dataset.path),
        "layout": "prepared" if meta else "official-lmdb",
        "name": meta.get("name", Path(dataset.path).name),
        "count": meta.get("count", len(dataset)),
        "splits": dict(meta.get("splits", {})) or {"train": len(dataset)},
        "sizes": list(meta.get("sizes", [dataset.size])),
        "resize_filter": meta.get("resize_filter", "unknown"),
        "square": meta.get("square", "unknown"),
        "source": source.get("type", "unknown"),
        "licence": meta.get("licence", "unknown"),
        "masks": (meta.get("masks") or {}).get("parts"),
    }


@dataclass
class RealFeatures:
    features: torch.Tensor  # float64 [N, 2048]
    stats: FeatureStats
    info: dict[str, Any] = field(default_factory=dict)


def cache_key_fields(dataset: Any, split: str, count: int, extractor: InceptionFeatures) -> dict[str, Any]:
    card = dataset_card(dataset)
    return {
        "cache_version": CACHE_VERSION,
        "dataset_name": card["name"],
        "content_sha256": content_sha256(dataset, count),
        "split": split,
        "count": count,
        "resolution": int(dataset.size),
        "resize_filter": card["resize_filter"],
        "square": card["square"],
        "feature_network_sha256": extractor.sha256,
        "feature_network_kind": extractor.kind,
        "preprocess": "uint8 round-half-up; tf1-bilinear to 299 (float); (v-128)/128",
    }


def _entry_path(stats_dir: Path, fields: dict[str, Any]) -> tuple[str, Path]:
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(fields["dataset_name"]))[:48] or "dataset"
    return key, stats_dir / f"{name}-{fields['split']}-{fields['resolution']}px-{fields['count']}-{key}.safetensors"


def _load_entry(path: Path, fields: dict[str, Any]) -> RealFeatures | None:
    try:
        data = path.read_bytes()
        tensors = st_load(data)
        stored = json.loads(read_metadata(data).get("fields", "{}"))
    except (OSError, SafetensorError, ValueError):  # SafetensorsHeaderError and JSONDecodeError are ValueErrors
        return None
    if stored != fields or not {"features", "mean", "cov"} <= set(tensors):
        return None
    feats = tensors["features"].double()
    if feats.shape != (fields["count"], tensors["mean"].numel()):
        return None
    if "factor" in tensors:
        factor = tensors["factor"].double()
    elif feats.shape[0] - 1 < feats.shape[1]:
        factor = FeatureStats.from_features(feats).factor
    else:
        return None
    stats = FeatureStats(tensors["mean"].double(), tensors["cov"].double(), feats.shape[0], factor)
    return RealFeatures(feats, stats)


def _compute(dataset: Any, count: int, extractor: InceptionFeatures, batch: int, progress: bool) -> torch.Tensor:
    out = []
    bar = tqdm(total=count, desc=f"real features ({dataset.size}px)", unit="img", disable=None if progress else True)
    for start in range(0, count, batch):
        items = [dataset[i] for i in range(start, min(start + batch, count))]
        images = torch.stack([it["image"] if isinstance(it, dict) else it for it in items])
        out.append(extractor.from_uint8(to_uint8(images)))
        bar.update(len(items))
    bar.close()
    return torch.cat(out)


def real_features(
    dataset: Any,
    split: str,
    extractor: InceptionFeatures,
    count: int | None = None,
    stats_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    batch: int = 16,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> RealFeatures:
    """Features and statistics of the first `count` (default: all) images of `dataset`, through the cache."""
    log = log or (lambda m: print(m, file=sys.stderr))
    t0 = time.perf_counter()
    n = len(dataset) if count is None else min(int(count), len(dataset))
    if n < 2:
        raise MetricsError(f"real statistics: the {split} split has {len(dataset)} image(s); need at least 2")
    fields = cache_key_fields(dataset, split, n, extractor)
    hash_s = time.perf_counter() - t0
    folder = Path(stats_dir) if stats_dir is not None else default_stats_dir()
    key, path = _entry_path(folder, fields)
    info: dict[str, Any] = {
        "split": split, "count": n, "content_sha256": fields["content_sha256"], "key": key,
        "cache_file": str(path) if use_cache else None, "hash_wall_s": round(hash_s, 3),
    }
    if use_cache and path.is_file():
        entry = _load_entry(path, fields)
        if entry is not None:
            entry.info = {**info, "cached": True, "wall_s": round(time.perf_counter() - t0, 3)}
            return entry
        log(f"real statistics: {path} is unreadable or stale; recomputing")
    # Stored as float32 (what the network computes): round here too, so a fresh and a cached run agree exactly.
    feats = _compute(dataset, n, extractor, batch, progress).float().double()
    stats = FeatureStats.from_features(feats)
    if use_cache:
        tensors = {"features": feats.float().contiguous(), "mean": stats.mean, "cov": stats.cov.contiguous()}
        if n - 1 >= feats.shape[1]:  # many images: store the covariance's square root (one slow eigh, done once)
            tensors["factor"] = stats.get_factor().contiguous()
        payload = st_save(
            tensors, metadata={"fields": json.dumps(fields, sort_keys=True), "format": "stylemapgan-fid-stats"}
        )
        try:
            atomic_write_bytes(path, payload)
        except OSError as exc:
            log(f"real statistics: cannot write the cache entry {path}: {exc}")
            info["cache_file"] = None
    return RealFeatures(feats, stats, {**info, "cached": False, "wall_s": round(time.perf_counter() - t0, 3)})
