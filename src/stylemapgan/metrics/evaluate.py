"""`evaluate`: run the paper's metrics for one model on one dataset and return a self-describing report.

Every model family runs the same protocol and gets the same report layout: the metrics ask the editor what it
can do (`scored_model.py`), never which family it is. Codes are StyleMapGAN stylemaps or SemanticStyleGAN W+
latents; "encode" below is the editor's encode door (StyleMapGAN: the encoder; SemanticStyleGAN: its inversion).

Metrics (names as in `--metrics`):

- fid, kid: generated images (z ~ N(0, I), no truncation; image i uses `torch.randn(C)` from a CPU generator
  seeded with (seed << 32) + i) against real images of `real_split` (paper: train). Generated count defaults to
  the train-set size (paper protocol); real images: the whole split unless `real_num`. Real features are cached
  (`real_stats.py`). KID shares FID's features.
- fid_lerp: FID of images decoded from (1 - l) * E(a) + l * E(b) for random test images a, b (indices drawn
  independently, uniformly, with replacement, as the official script) and l ~ U[0, 1), from a NumPy generator
  seeded with [seed, 1]; same count and real statistics as fid. SemanticStyleGAN interpolates the whole W+
  code (every vector, base codes included), as `SemanticEditor.interpolate`; the official repository has no
  FID-lerp.
- recon: first N (default 500) test images, MSE and LPIPS (`reconstruction.py`).
- local_edit: MSE_src / MSE_ref per part, pairs matched by mask IoU (`local_editing.py`); the edit pastes the
  union mask (StyleMapGAN, `--edit-mode w|w_plus`) or swaps the part's shape and texture codes (SemanticStyleGAN,
  `part_swap`), scored against the dataset's part masks either way.
- part_control: generator only (no encoder, no dataset): per part of the model, src / (src + ref) of the MSEs of
  a's render with the part's shape and texture codes swapped in from b, to a and to b, where both a and b are
  segmented as the part (`part_control.py`); N sampled pairs (a: the generated images' seeds). A model without
  per-part codes and a segmentation (StyleMapGAN) is refused before any metric runs, naming --metrics.

recon and local_edit turn real images into codes by `projection` (paper: the encoder; optimize and hybrid
optimise the codes, with the LPIPS network as the loss's second term). fid_lerp always uses the encoder:
it measures the encoder's latent space. `codes` (a folder of one code file per test image, e.g. from
`stylemapgan project` or the official SemanticStyleGAN inversion) replaces the encoding for all three. A model
that cannot encode (a SemanticStyleGAN checkpoint before its inversion exists) is refused before any metric
runs, naming --metrics.

`num` caps every metric's count at once (generated images for fid/kid/fid_lerp, reconstructed images, pairs per
part, part_control's pairs); the defaults are the paper's (part_control: 250 pairs, as local_edit). With
part_control alone no dataset is needed (`data` None). Every image a metric scores is clamped and rounded to 8
bits first.

Each metric group is one function over a shared `EvalRun` (model, options, splits, the report being filled),
chosen from `METRIC_GROUPS`; a new metric is a function and a table entry.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from stylemapgan.editing.base import BaseEditor
from stylemapgan.editing.editor import EDIT_MODES, Editor
from stylemapgan.editing.errors import EditingError
from stylemapgan.editing.projection import ProjectionOptions, projection_method
from stylemapgan.metrics.errors import MetricsError
from stylemapgan.metrics.fid import FeatureStats, fid_from_stats, kernel_inception_distance
from stylemapgan.metrics.inception import InceptionFeatures, to_uint8
from stylemapgan.metrics.local_editing import load_mask_folder, part_indices, part_masks, score_pairs
from stylemapgan.metrics.part_control import REFERENCE_STREAM, reference_seeds, score_part_control
from stylemapgan.metrics.real_stats import RealFeatures, content_sha256, dataset_card, real_features
from stylemapgan.metrics.reconstruction import reconstruct_batch, score_reconstructions
from stylemapgan.metrics.scored_model import PART_SWAP, ScoredModel, scored_model

ALL_METRICS = ("fid", "kid", "fid_lerp", "recon", "local_edit", "part_control")
PAPER_METRICS = ALL_METRICS[:5]  # the default: every model family can be asked for these
FEATURE_METRICS = ("fid", "kid", "fid_lerp")
RECON_DEFAULT = 500  # paper: first 500 test images
PAIRS_DEFAULT = 250  # paper: 250 pairs per part
REPORT_FORMAT = "stylemapgan-eval"
REPORT_VERSION = 1


@dataclass
class EvalOptions:
    """Everything that decides the numbers (recorded in the report's `settings`)."""

    metrics: tuple[str, ...] = PAPER_METRICS
    num: int | None = None
    real_num: int | None = None
    real_split: str = "train"
    seed: int = 0
    batch: int = 8
    feature_batch: int = 16
    inception: str | None = None
    stats_dir: str | None = None
    use_cache: bool = True
    projection: str = "encoder"
    projection_steps: int = 100
    lpips: str = "stlpips-vgg"
    edit_mode: str | None = None  # None: the model's own (StyleMapGAN w_plus, SemanticStyleGAN part_swap)
    parts: tuple[str, ...] | None = None
    masks: str | None = None
    codes: str | None = None  # folder of the test images' codes, instead of encoding them
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    progress: bool = True

    def check(self) -> None:
        unknown = [m for m in self.metrics if m not in ALL_METRICS]
        if unknown or not self.metrics:
            raise MetricsError(f"metrics: unknown {', '.join(unknown) or '(none given)'}; choose from "
                               f"{','.join(ALL_METRICS)}")
        self.check_shared()
        if self.real_num is not None and self.real_num < 1:
            raise MetricsError(f"real-num: must be >= 1, got {self.real_num}")
        if self.projection_steps < 0:
            raise MetricsError(f"projection-steps: must be >= 0, got {self.projection_steps}")
        projection_method(self.projection)
        if self.edit_mode is not None and self.edit_mode not in (*EDIT_MODES, PART_SWAP):
            raise MetricsError(f"edit-mode: must be one of {', '.join((*EDIT_MODES, PART_SWAP))}, "
                               f"got {self.edit_mode!r}")
        if self.codes is not None and self.projection != "encoder":
            raise MetricsError("--codes: the given codes replace the projection; leave out --projection")
        if self.kid_subset_size < 2:
            raise MetricsError("kid: need >= 1 subset of >= 2 images")

    def check_shared(self) -> None:
        """The checks of the fields `stylemapgan compare` shares (`CompareOptions.evaluation`): one place, and
        the messages name the flags both commands spell the same."""
        for flag, value in (("--num", self.num), ("--batch", self.batch), ("--feature-batch", self.feature_batch),
                            ("--kid-subsets", self.kid_subsets)):
            if value is not None and value < 1:
                raise MetricsError(f"{flag}: must be >= 1, got {value}")
        if self.real_split not in ("train", "test"):
            raise MetricsError(f"--real-split: must be train or test, got {self.real_split!r}")


@dataclass
class _Clock:
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.timings[name] = round(self.timings.get(name, 0.0) + seconds, 3)


def _bar(total: int, desc: str, progress: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="img", disable=None if progress else True, leave=False)


def _open(path: str, size: int, split: str, **kwargs: Any) -> Any:
    from stylemapgan.data.dataset import open_dataset

    return open_dataset(path, size=size, split=split, **kwargs)


def _image(item: Any) -> torch.Tensor:
    return item["image"] if isinstance(item, dict) else item


def _load_images(dataset: Any, indices: Sequence[int]) -> torch.Tensor:
    return torch.stack([_image(dataset[int(i)]) for i in indices])


def generation_seeds(seed: int, count: int) -> list[int]:
    """Per-image z seeds: independent of batch size and device; different --seed values never overlap."""
    return [(int(seed) << 32) + i for i in range(count)]


def generated_batches(editor: BaseEditor, count: int, seed: int, batch: int) -> Iterator[torch.Tensor]:
    """Random images (no truncation), `batch` at a time."""
    seeds = generation_seeds(seed, count)
    for start in range(0, count, batch):
        yield editor.sample(seeds[start : start + batch], trunc=1.0).images


def encode_pool(
    editor: BaseEditor,
    dataset: Any,
    indices: Sequence[int],
    batch: int,
    keep_images: bool = False,
    method: str = "encoder",
    projection: ProjectionOptions | None = None,
    perceptual: torch.nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Codes of dataset items by `method` through the editor's encode door (`ScoredModel.encode`; StyleMapGAN:
    straight through the projection, not the Editor's cache: no cache entries for a whole pool), and optionally
    the images as uint8 (4x smaller than floats; the data are 8-bit). The encoder alone is one pass; "hybrid"
    optimises each batch from the encoder's codes (the web editor's Refine when `perceptual` is None)."""
    model = scored_model(editor)
    codes, kept = [], []
    for start in range(0, len(indices), batch):
        images = _load_images(dataset, indices[start : start + batch]).to(editor.device)
        codes.append(model.encode(images, method, projection, perceptual))
        if keep_images:
            kept.append(to_uint8(images.cpu()))
    if not codes:
        raise MetricsError("no images to encode")
    return torch.cat(codes), (torch.cat(kept) if keep_images else None)


def encode_images(editor: BaseEditor, dataset: Any, indices: Sequence[int], batch: int) -> torch.Tensor:
    return encode_pool(editor, dataset, indices, batch)[0]


def code_file(folder: Path, index: int, suffix: str) -> Path:
    """The code file of test image `index` in a `--codes` folder: `<index><suffix>` or `<index:05d><suffix>`."""
    for name in (f"{index}{suffix}", f"{index:05d}{suffix}"):
        if (folder / name).is_file():
            return folder / name
    raise MetricsError(f"{folder}: no code file for test image {index} (expected {index}{suffix} or "
                       f"{index:05d}{suffix}; --codes)")


def load_code_folder(editor: BaseEditor, folder: str | os.PathLike[str], indices: Sequence[int]) -> torch.Tensor:
    """The codes of test images `indices` from a `--codes` folder (one file per image in the family's code format,
    `capabilities.code_suffix`, read by `editor.load_code`) -> [N, *code_shape] on the editor's device."""
    root = Path(folder)
    if not root.is_dir():
        raise MetricsError(f"{root}: no such folder (--codes)")
    suffix = editor.capabilities.code_suffix
    codes = []
    for i in indices:
        path = code_file(root, int(i), suffix)
        try:
            codes.append(editor.load_code(path).to(editor.device, torch.float32))
        except (EditingError, ValueError, OSError) as exc:
            raise MetricsError(f"{path}: {exc} (--codes)") from None
    shapes = sorted({tuple(c.shape[1:]) for c in codes})
    if len(shapes) > 1:
        raise MetricsError(f"{root}: codes of different shapes {shapes}; give one layout (--codes)")
    return torch.cat(codes)


def lerp_plan(num_test: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, lambda) for FID-lerp: independent uniform test indices (with replacement), lambda in [0, 1)."""
    rng = np.random.default_rng([int(seed), 1])
    a = rng.integers(0, num_test, count)
    b = rng.integers(0, num_test, count)
    lam = rng.random(count)
    return a, b, lam


@torch.no_grad()
def lerp_batches(run: EvalRun, count: int, seed: int, batch: int) -> Iterator[torch.Tensor]:
    """Renders of (1 - l) E(a) + l E(b) for the plan's pairs, `batch` at a time."""
    a, b, lam = lerp_plan(len(run.test_split), count, seed)
    needed = np.unique(np.concatenate([a, b]))
    codes = run.pool_codes(needed.tolist(), "encoder")[0]
    row = {int(v): k for k, v in enumerate(needed)}
    for start in range(0, count, batch):
        sl = slice(start, min(start + batch, count))
        ca = codes[[row[int(v)] for v in a[sl]]]
        cb = codes[[row[int(v)] for v in b[sl]]]
        yield run.model.render(run.model.lerp(ca, cb, lam[sl]))


def features_of(batches: Iterator[torch.Tensor], extractor: InceptionFeatures, total: int, desc: str,
                progress: bool) -> torch.Tensor:
    bar = _bar(total, desc, progress)
    out = []
    for images in batches:
        out.append(extractor.from_uint8(to_uint8(images).cpu()))
        bar.update(images.shape[0])
    bar.close()
    return torch.cat(out)


def _versions() -> dict[str, str]:
    from stylemapgan import __version__

    return {
        "stylemapgan": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"type": device.type, "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
    else:
        info["name"] = platform.processor() or platform.machine()
        info["cpu_count"] = os.cpu_count()
    return info


def _finite(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


@dataclass
class EvalRun:
    """What every metric group reads and fills: the model, the options, the opened splits, and the report.

    The Inception features of the real images and the LPIPS network are built on first use and then shared
    (FID, KID and FID-lerp score against the same real statistics; recon and local_edit share the projection's
    LPIPS)."""

    editor: BaseEditor
    options: EvalOptions
    data: str | None
    want: frozenset[str]
    train: Any
    test: Any | None
    card: dict[str, Any]
    report: dict[str, Any]
    clock: _Clock
    log: Callable[[str], None]
    model: ScoredModel
    _real: tuple[InceptionFeatures, RealFeatures] | None = None
    _perceptual: torch.nn.Module | None = None
    _perceptual_built: bool = False

    @property
    def metrics(self) -> dict[str, Any]:
        return self.report["metrics"]

    @property
    def gen_count(self) -> int:
        """Generated (and interpolated) images: `num`, else the train-set size (paper protocol)."""
        return self.options.num or len(self.train)

    @property
    def test_split(self) -> Any:
        assert self.test is not None, "checked in open_splits"
        return self.test

    def real(self) -> tuple[InceptionFeatures, RealFeatures]:
        """The feature network and the real images' features (through the cache), loaded once."""
        if self._real is None:
            options = self.options
            t0 = time.perf_counter()
            extractor = InceptionFeatures(options.inception, self.editor.device, options.feature_batch)
            self.report["feature_network"] = extractor.describe()
            self.clock.add("load_feature_network", time.perf_counter() - t0)
            real_ds = self.train if options.real_split == "train" else self.test
            real = real_features(
                real_ds, options.real_split, extractor, options.real_num, options.stats_dir, options.use_cache,
                options.feature_batch, options.progress, self.log,
            )
            self.clock.add("real_stats", real.info["wall_s"])
            self.report["real_stats"] = real.info
            self.report["real_stats_cached"] = bool(real.info["cached"])
            self.report["settings"]["generation_seeds"] = (
                f"image i: torch.randn(C) seeded (seed << 32) + i, seed {options.seed}"
            )
            self._real = (extractor, real)
        return self._real

    def perceptual(self) -> torch.nn.Module | None:
        """The LPIPS network of `options.lpips` on the editor's device (None for "none"), built once (or the one
        `evaluate` was given)."""
        if not self._perceptual_built:
            from stylemapgan.losses.perceptual import build_perceptual

            net = build_perceptual(self.options.lpips)
            self._perceptual = net.to(self.editor.device) if net is not None else None
            self._perceptual_built = True
        return self._perceptual

    @property
    def projection_optimises(self) -> bool:
        return self.options.codes is None and projection_method(self.options.projection).optimises

    @property
    def projection_steps(self) -> int:
        """Optimisation steps the projection actually runs (0 for the encoder alone or given codes), as reported."""
        return self.options.projection_steps if self.projection_optimises else 0

    @property
    def projection(self) -> str:
        """How the test images became codes, as reported: the projection method, or "codes" (`--codes`)."""
        return "codes" if self.options.codes is not None else self.options.projection

    def pool_codes(
        self, indices: Sequence[int], method: str, keep_images: bool = False,
        perceptual: torch.nn.Module | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Codes of test images `indices` (the `--codes` files, else encoded by `method`), and optionally the
        images as uint8."""
        options, test = self.options, self.test_split
        if options.codes is None:
            recipe = dataclasses.replace(self.editor.projection_recipe(method), steps=options.projection_steps)
            return encode_pool(self.editor, test, indices, options.batch, keep_images, method, recipe, perceptual)
        codes = load_code_folder(self.editor, options.codes, indices)
        images = to_uint8(_load_images(test, indices)) if keep_images else None
        return codes, images


def _fid_and_kid(run: EvalRun) -> None:
    """FID and KID of generated images: one set of generated features serves both."""
    options, want, seed, count = run.options, run.want, run.options.seed, run.gen_count
    extractor, real = run.real()
    t0 = time.perf_counter()
    gen = features_of(generated_batches(run.editor, count, seed, options.batch), extractor, count,
                      "generated (fid/kid)", options.progress)
    gen_s = time.perf_counter() - t0
    run.clock.add("generate+features", gen_s)
    if "fid" in want:
        t0 = time.perf_counter()
        value = fid_from_stats(FeatureStats.from_features(gen), real.stats)
        fid_s = time.perf_counter() - t0
        run.clock.add("fid", fid_s)
        run.metrics["fid"] = {
            "value": value, "num_generated": count, "num_real": real.stats.count,
            "real_split": options.real_split, "truncation": 1.0, "seed": seed,
            "wall_s": round(gen_s + fid_s, 3),
        }
    if "kid" in want:
        t0 = time.perf_counter()
        kid = kernel_inception_distance(real.features, gen, options.kid_subsets, options.kid_subset_size, seed)
        kid_s = time.perf_counter() - t0
        run.clock.add("kid", kid_s)
        run.metrics["kid"] = {
            "mean": kid.mean, "std": kid.std, "num_subsets": kid.num_subsets, "subset_size": kid.subset_size,
            "num_generated": count, "num_real": real.stats.count, "real_split": options.real_split,
            "kernel": "(x.y/d + 1)^3", "seed": seed,
            "wall_s": round(kid_s + (0.0 if "fid" in want else gen_s), 3),
            "shares_features_with": "fid" if "fid" in want else None,
        }


def _fid_lerp(run: EvalRun) -> None:
    """FID of decoded interpolations between encoded test images (the encoder's latent space)."""
    options, seed, count, test = run.options, run.options.seed, run.gen_count, run.test_split
    extractor, real = run.real()
    t0 = time.perf_counter()
    lerp = features_of(lerp_batches(run, count, seed, options.batch), extractor, count,
                       "interpolations (fid_lerp)", options.progress)
    value = fid_from_stats(FeatureStats.from_features(lerp), real.stats)
    lerp_s = time.perf_counter() - t0
    run.clock.add("fid_lerp", lerp_s)
    a, b, _ = lerp_plan(len(test), count, seed)
    run.metrics["fid_lerp"] = {
        "value": value, "num_generated": count, "num_real": real.stats.count,
        "real_split": options.real_split, "pool": "test split (all images)",
        "distinct_test_images": int(np.unique(np.concatenate([a, b])).size), "seed": seed,
        "lambda": "U[0, 1), numpy default_rng([seed, 1])", "space": run.model.code_space,
        "codes": "encoder" if options.codes is None else f"folder {options.codes}", "wall_s": round(lerp_s, 3),
    }


def _recon(run: EvalRun) -> None:
    """MSE and LPIPS of the first N test images against their projections."""
    options, test = run.options, run.test_split
    perceptual = run.perceptual()
    # the model's own recipe (SemanticStyleGAN: the official lr 0.1, MSE 0.1), with the run's step budget
    proj_options = dataclasses.replace(run.editor.projection_recipe(options.projection),
                                       steps=options.projection_steps)
    t0 = time.perf_counter()
    count = min(options.num or RECON_DEFAULT, len(test))
    mses: list[torch.Tensor] = []
    lpips: list[torch.Tensor] = []
    bar = _bar(count, f"reconstruction ({options.projection})", options.progress)
    for start in range(0, count, options.batch):
        indices = list(range(start, min(start + options.batch, count)))
        images = _load_images(test, indices)
        if options.codes is None:
            scores = reconstruct_batch(run.editor, images, options.projection, proj_options, perceptual)
        else:
            rendered = run.model.render(load_code_folder(run.editor, options.codes, indices))
            scores = score_reconstructions(rendered, images, perceptual)
        mses.append(scores.mse)
        if scores.lpips is not None:
            lpips.append(scores.lpips)
        bar.update(images.shape[0])
    bar.close()
    recon_s = time.perf_counter() - t0
    run.clock.add("recon", recon_s)
    run.metrics["recon"] = {
        "mse": float(torch.cat(mses).mean()),
        "lpips": float(torch.cat(lpips).mean()) if lpips else None,
        "lpips_kind": options.lpips, "num": count, "images": f"first {count} of the test split",
        "projection": run.projection,
        "projection_steps": run.projection_steps,
        "codes": options.codes, "space": run.model.code_space,
        "wall_s": round(recon_s, 3), "s_per_image": round(recon_s / count, 4),
    }


def _part_label_maps(run: EvalRun, pool: int) -> tuple[torch.Tensor, list[str], str]:
    """Label maps of the first `pool` test images, their part names, and where they came from."""
    options = run.options
    if options.masks is not None:
        label_maps, part_names = load_mask_folder(options.masks, pool, run.editor.size)
        return label_maps, list(part_names), f"folder {options.masks}"
    if not run.card.get("masks"):
        raise MetricsError(f"{run.data}: has no part masks; pass --masks FOLDER or leave out local_edit")
    masked = _open(run.data, run.editor.size, "test", masks=True)
    label_maps = torch.stack([masked[i]["mask"].to(torch.uint8) for i in range(pool)])
    return label_maps, list(masked.part_names), "dataset part masks"


def _local_edit(run: EvalRun) -> None:
    """MSE_src / MSE_ref per part: each test pair matched by mask IoU, the reference's part edited in (pasted
    or swapped, as the model edits)."""
    options, test, model = run.options, run.test_split, run.model
    perceptual = run.perceptual() if run.projection_optimises else None
    t0 = time.perf_counter()
    pairs_per_part = options.num or PAIRS_DEFAULT
    pool = min(2 * pairs_per_part, len(test))
    if pool < 2:
        raise MetricsError("local_edit: the test split needs at least 2 images")
    label_maps, part_names, mask_source = _part_label_maps(run, pool)
    parts = list(options.parts) if options.parts else list(part_names)
    indices = {p: part_indices(p, part_names) for p in parts}
    plan = model.edit_plan(options.edit_mode)
    edits = {p: model.part_edit(p, plan) for p in parts}  # every part checked before the pool is encoded
    codes, images = run.pool_codes(list(range(pool)), options.projection, keep_images=True, perceptual=perceptual)
    assert images is not None
    total = len(parts) * min(pairs_per_part, pool // 2)
    bar = _bar(total, f"local editing ({plan.mode})", options.progress)
    per_part = {}
    for p in parts:
        s = score_pairs(p, part_masks(label_maps, indices[p]), images, codes, edits[p], pairs_per_part,
                        options.batch, bar)
        per_part[p] = {
            "mse_src": _finite(s.mse_src), "mse_ref": _finite(s.mse_ref), "pairs": s.pairs,
            "skipped_empty": s.skipped, "mean_iou": _finite(s.mean_iou),
            "pairs_list": [[i, j, round(iou, 6)] for i, j, iou, _, _ in s.per_pair],
        }
    bar.close()
    scored = [v for v in per_part.values() if v["pairs"]]
    src_vals = [v["mse_src"] for v in scored if v["mse_src"] is not None]
    ref_vals = [v["mse_ref"] for v in scored if v["mse_ref"] is not None]
    edit_s = time.perf_counter() - t0
    run.clock.add("local_edit", edit_s)
    run.metrics["local_edit"] = {
        "mse_src": sum(src_vals) / len(src_vals) if src_vals else None,
        "mse_ref": sum(ref_vals) / len(ref_vals) if ref_vals else None,
        "parts_scored": len(scored), "pairs_per_part": pairs_per_part, "pool": f"first {pool} test images",
        "projection": run.projection, "projection_steps": run.projection_steps, "codes": options.codes,
        "space": model.code_space, "edit_mode": plan.mode, "pooling": plan.pooling, "edit": plan.description,
        "masks": mask_source,
        "pairing": "greedy disjoint pairs by descending part-mask IoU (official pair_masks.py)",
        "per_part": per_part, "wall_s": round(edit_s, 3),
    }


def _part_control(run: EvalRun) -> None:
    """Per part: does swapping its codes from b into a make its region b's? Sampled pairs, generator only."""
    options, model = run.options, run.model
    t0 = time.perf_counter()
    count = options.num or PAIRS_DEFAULT
    bar = _bar(count, "part control (pairs)", options.progress)
    scores = score_part_control(model, generation_seeds(options.seed, count), reference_seeds(options.seed, count),
                                options.batch, bar)
    bar.close()
    per_part = {s.part: s.report() for s in scores}
    controls = [v["control"] for v in per_part.values() if v["control"] is not None]
    wall = time.perf_counter() - t0
    run.clock.add("part_control", wall)
    run.metrics["part_control"] = {
        "mean": sum(controls) / len(controls) if controls else None,  # type: ignore[arg-type]
        "parts_scored": len(controls), "pairs": count, "seed": options.seed, "truncation": 1.0,
        "a_seeds": f"(seed << 32) + i, as the generated images (seed {options.seed})",
        "b_seeds": f"(seed << 32) + {REFERENCE_STREAM} + i",
        "swap": "the part's shape and texture codes from b into a's codes, strength 1",
        "region": "pixels whose segmentation argmax is the part in both a and b",
        "control": "mse_src / (mse_src + mse_ref), pooled over the region's pixels of all pairs, all channels",
        "space": model.code_space, "per_part": per_part, "wall_s": round(wall, 3),
    }


# Metric name -> the function that computes its group. A group runs once however many of its metrics are asked
# for, in the order of ALL_METRICS, which is also the order of the report's "metrics".
METRIC_GROUPS: dict[str, Callable[[EvalRun], None]] = {
    "fid": _fid_and_kid,
    "kid": _fid_and_kid,
    "fid_lerp": _fid_lerp,
    "recon": _recon,
    "local_edit": _local_edit,
    "part_control": _part_control,
}
GENERATOR_ONLY = frozenset({"part_control"})  # need no dataset
NEEDS_TEST_SPLIT = frozenset({"fid_lerp", "recon", "local_edit"})
NEEDS_CODES = NEEDS_TEST_SPLIT  # the metrics that encode test images (or read --codes)


def _open_splits(data: str | None, size: int, options: EvalOptions, want: frozenset[str]) -> tuple[Any, Any, dict]:
    """(train, test or None, dataset card); refuses data without the test split a chosen metric reads. No data
    (None): only the generator-only metrics can run; (None, None, an empty card)."""
    if data is None:
        needs = [m for m in ALL_METRICS if m in want - GENERATOR_ONLY]
        if needs:
            raise MetricsError(f"--data: needed by {', '.join(needs)}")
        return None, None, {}
    train = _open(data, size, "train")
    card = dataset_card(train)
    card["resolution"] = size
    test = _open(data, size, "test") if "test" in card["splits"] else None
    needs_test = sorted(want & NEEDS_TEST_SPLIT) + (["--real-split test"] if options.real_split == "test" else [])
    if needs_test and test is None:
        raise MetricsError(f"{data}: has no test split, needed by {', '.join(needs_test)}")
    if test is not None and want & NEEDS_TEST_SPLIT:
        card["test_content_sha256"] = content_sha256(test, len(test))  # the images recon/edit/lerp read
    return train, test, card


def _new_report(
    editor: BaseEditor, options: EvalOptions, card: dict[str, Any], checkpoint: str | os.PathLike[str] | None,
    clock: _Clock,
) -> dict[str, Any]:
    """The report before any metric: format, versions, device, checkpoint, dataset card, settings."""
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "device": _device_info(editor.device),
        "checkpoint": {
            "path": str(checkpoint) if checkpoint is not None else None,
            "sha256": editor.model_id.removeprefix("sha256:") if editor.model_id.startswith("sha256:") else None,
            "model_id": editor.model_id,
            "family": editor.capabilities.family,
            "config": asdict(editor.config) if hasattr(editor.config, "__dataclass_fields__") else str(editor.config),
        },
        "dataset": card,
        "settings": {k: v for k, v in asdict(options).items() if k != "progress"},
        "metrics": {},
        "timings": clock.timings,
    }
    report["settings"]["metrics"] = [m for m in ALL_METRICS if m in options.metrics]
    return report


def _check_part_control(model: ScoredModel, want: frozenset[str]) -> None:
    """Refuse part_control, before the data are opened, for a model it cannot score (why, in one line)."""
    reason = model.part_control_refusal() if "part_control" in want else None
    if reason is not None:
        raise MetricsError(f"--metrics part_control: {reason} (leave part_control out)")


def _check_encoding(run: EvalRun) -> None:
    """Refuse, before any metric runs, the metrics that encode test images when the model cannot encode them by
    the method they use (one test image through the same door); given codes need no encoding."""
    need = [m for m in ALL_METRICS if m in run.want and m in NEEDS_CODES]
    if not need or run.options.codes is not None:
        return
    methods = dict.fromkeys((["encoder"] if "fid_lerp" in need else [])
                            + ([run.options.projection] if {"recon", "local_edit"} & set(need) else []))
    image = _load_images(run.test_split, [0]).to(run.editor.device)
    for method in methods:
        try:
            run.model.check_encoding(image, method, run.perceptual)
        except (EditingError, ValueError) as exc:
            raise MetricsError(f"--metrics {','.join(need)}: this {run.model.family} model cannot encode the test "
                               f"images ({method}): {exc} (leave them out, or give the codes with --codes FOLDER)"
                               ) from None


def evaluate(
    editor: BaseEditor,
    data: str | os.PathLike[str] | None,
    options: EvalOptions | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
    perceptual: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Run the chosen metrics and return the report (a JSON-ready dict; `report.write_report` saves it).

    data: the prepared dataset; None when only generator-only metrics (part_control) are asked for.

    perceptual: an already-built LPIPS network of `options.lpips` on the editor's device, used as given, so a
    caller that evaluates many times (`compare`) builds it once; None: built here on first use (as always)."""
    options = options or EvalOptions()
    options.check()
    given_kind = getattr(perceptual, "kind", None)
    if given_kind is not None and given_kind != options.lpips:
        raise MetricsError(f"perceptual: a {given_kind} network, but the options ask for --lpips {options.lpips}")
    t_start = time.perf_counter()
    model = scored_model(editor)
    options = replace(options, edit_mode=model.edit_plan(options.edit_mode).mode)  # recorded as resolved
    want, data, clock = frozenset(options.metrics), None if data is None else str(data), _Clock()
    _check_part_control(model, want)
    train, test, card = _open_splits(data, editor.size, options, want)
    report = _new_report(editor, options, card, checkpoint, clock)
    log = log or (lambda m: print(m, file=sys.stderr))
    run = EvalRun(editor, options, data, want, train, test, card, report, clock, log, model,
                  _perceptual=perceptual, _perceptual_built=perceptual is not None)
    _check_encoding(run)
    for group in dict.fromkeys(METRIC_GROUPS[m] for m in ALL_METRICS if m in want):
        group(run)
    run.report["wall_s"] = round(time.perf_counter() - t_start, 3)
    return run.report


def open_editor(
    ckpt: str | os.PathLike[str] | None, device: torch.device | str = "cpu", batch: int = 8
) -> BaseEditor:
    """The editor of a checkpoint's family for a checkpoint path or bundled model name (None: the default model)."""
    from stylemapgan.models import resolve_checkpoint

    path = resolve_checkpoint(None if ckpt is None else str(ckpt))
    return Editor.from_checkpoint(Path(path), device=device, batch_size=batch)
