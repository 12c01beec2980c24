"""`Editor`: one object holding a model and an LRU cache of encodings, through which every edit runs.

The CLI, a web editor and the metrics all use this class, so an image is encoded once however many edits
use it: `encode(image)` returns a handle (the content hash of the model-sized image); stylemaps and style
tensors are cached under it. Any method taking an image also takes a handle, a PIL image, or a
[3, H, W] / [1, 3, H, W] tensor in [-1, 1] at the model's resolution. Results are image tensors
[F, 3, size, size] in [-1, 1] on the editor's device.

String options (edit mode, pooling, projection method) are resolved here, at the API boundary, into the
functions that run; nothing below branches on strings inside a forward pass.

Every network call goes through the editor's runner (`stylemapgan.runtime`), so its backend and precision apply
to every render; the runner's explicit fallbacks (`eager_fp32`, `run_torch`) mark the work that must not follow
them, and the docstrings here say where they are used.
"""

from __future__ import annotations

import math
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import nn

from stylemapgan.checkpoint.families import STYLEMAPGAN
from stylemapgan.checkpoint.format import Checkpoint
from stylemapgan.checkpoint.models import EditingModel, inference_model
from stylemapgan.config import ModelConfig
from stylemapgan.editing.base import BaseEditor, EditorCapabilities, ImageLike, Samples, register_editor
from stylemapgan.editing.base import CacheInfo as CacheInfo
from stylemapgan.editing.blend import Paste, blend_layers, render_w, render_w_plus
from stylemapgan.editing.clusters import ClusterError, PartClusters, cluster_map, cluster_scores, mask_from_cluster_map
from stylemapgan.editing.clusters import from_extra as clusters_from_extra
from stylemapgan.editing.directions import apply_direction as _apply_direction
from stylemapgan.editing.domain import reference_mse as card_reference_mse
from stylemapgan.editing.errors import EditingError
from stylemapgan.editing.fast_edit import ModPaste, render_w_plus_fast
from stylemapgan.editing.images import load_stylemap, save_stylemap
from stylemapgan.editing.masks import (
    RectangleMask,
    as_mask,
    feather,
    pooling,
    rectangle_mask,
    scaled_shift,
    shift_and_zero,
)
from stylemapgan.editing.projection import (
    ProjectionOptions,
    ProjectionResult,
    init_from_encoder,
    optimise_stylemaps,
    project,
    projection_method,
    reconstruction_metrics,
)
from stylemapgan.networks import Encoder, Generator
from stylemapgan.runtime import MEAN_STYLEMAP_COUNT, TorchRunner, make_runner
from stylemapgan.runtime import mean_stylemap as mean_stylemap  # the cached truncation centre, public here too

Renderer = Callable[[Generator, Sequence[torch.Tensor], Sequence[Paste]], torch.Tensor]
LayerRenderer = Callable[[TorchRunner, Sequence[torch.Tensor]], torch.Tensor]


MAX_SEED = 2**32 - 1  # seeds are 32-bit, as NVlabs' tools read them
MAX_SEEDS = 10_000  # per call: each seed is an image, its stylemap and two files; run again for more
MAX_FRAMES = 256  # an animation's frames are held in memory together (256 px: 0.8 MB each)
MAX_FEATHER_PX = 256.0  # wider than any model: the mask is blurred into a near-constant beyond it
MAX_TRUNCATION = 10.0  # |psi|: beyond it the stylemaps leave anything the generator has seen


def parse_seeds(text: str, name: str = "seeds") -> list[int]:
    """'0-7,12' -> [0, 1, ..., 7, 12] (order kept, duplicates dropped). Seeds lie in [0, MAX_SEED], at most
    MAX_SEEDS of them, counted before any list is made (0-999999999 is refused at once). `name` is the option
    the errors name (the CLI's --seeds)."""
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise EditingError(f"{name}: cannot read {part!r} in {text!r}; expected e.g. 0-7,12")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi > MAX_SEED:
            raise EditingError(f"{name}: seed {hi} is out of range; seeds are integers in [0, {MAX_SEED}]")
        ranges.append((lo, hi))
    count = sum(hi - lo + 1 for lo, hi in ranges)
    if count > MAX_SEEDS:
        raise EditingError(f"{name}: {count} seeds asked for; at most {MAX_SEEDS} per run (split the range)")
    seeds: list[int] = []
    for lo, hi in ranges:
        seeds += range(lo, hi + 1)
    return list(dict.fromkeys(seeds))


def check_truncation(trunc: float, name: str = "trunc") -> float:
    """A finite truncation psi in [-MAX_TRUNCATION, MAX_TRUNCATION] (NaN would render black images)."""
    if not (isinstance(trunc, int | float) and math.isfinite(trunc) and abs(trunc) <= MAX_TRUNCATION):
        bound = f"{MAX_TRUNCATION:g}"
        raise EditingError(f"{name}: must be a finite number in [-{bound}, {bound}], got {trunc!r}")
    return float(trunc)


def check_feather(feather_px: float, name: str = "feather") -> float:
    """A finite feather width in pixels, in [0, MAX_FEATHER_PX]."""
    if not (isinstance(feather_px, int | float) and math.isfinite(feather_px) and 0 <= feather_px <= MAX_FEATHER_PX):
        raise EditingError(f"{name}: must be a number of pixels in [0, {MAX_FEATHER_PX:g}], got {feather_px!r}")
    return float(feather_px)


@dataclass(frozen=True)
class EditMode:
    """How a local edit runs: which layers are blended, at which resolutions, rendered how."""

    name: str
    default_pooling: str  # a masks.POOLINGS key: w max (official generate.py), w_plus avg-threshold (official demo)
    resolutions: Callable[[ModelConfig], list[int]]
    layers: Callable[[Editor, ImageLike], list[torch.Tensor]]
    render: Renderer  # base + pastes -> image on a bare generator (for callers holding one, e.g. batched metrics)
    render_layers: LayerRenderer  # blended layers -> image through a runner (what the Editor calls)


def _decode_stylemap(runner: TorchRunner, layers: Sequence[torch.Tensor]) -> torch.Tensor:
    (stylemap,) = layers
    return runner.decode(stylemap)


def _synthesize_styles(runner: TorchRunner, layers: Sequence[torch.Tensor]) -> torch.Tensor:
    return runner.synthesize_styles(layers)


EDIT_MODES: dict[str, EditMode] = {
    "w": EditMode(
        "w", "max", lambda c: [c.latent_spatial_size], lambda ed, item: [ed.stylemap(item)], render_w,
        _decode_stylemap,
    ),
    "w_plus": EditMode(
        "w_plus", "avg-threshold", lambda c: list(c.style_resolutions), lambda ed, item: ed.styles(item),
        render_w_plus, _synthesize_styles,
    ),
}


def edit_mode(name: str) -> EditMode:
    try:
        return EDIT_MODES[name]
    except KeyError:
        raise EditingError(f"mode: must be one of {', '.join(EDIT_MODES)}, got {name!r}") from None


@dataclass
class _Entry:
    stylemap: torch.Tensor  # [1, C, s, s]
    styles: list[torch.Tensor] | None = None
    cluster_ids: torch.Tensor | None = None  # [size, size] int64, the part clusters' map (cluster_map)


@dataclass(frozen=True)
class Refinement:
    """A refined encoding: its handle, and the reconstruction MSE (clamped, images in [-1, 1]) before and after."""

    handle: str
    mse_before: float
    mse_after: float
    steps: int  # optimisation steps taken (fewer than asked when the options' time limit ran out)

    @property
    def improved(self) -> bool:
        """False when no step beat the start (the start's stylemap is then what `handle` holds)."""
        return self.mse_after < self.mse_before


def _alphas(alphas: float | Sequence[float]) -> list[float]:
    values = [float(alphas)] if isinstance(alphas, int | float) else [float(a) for a in alphas]
    if not values:
        raise EditingError("alpha: need at least one blend strength")
    bad = [a for a in values if not 0.0 <= a <= 1.0]
    if bad:
        raise EditingError(f"alpha: blend strengths must lie in [0, 1], got {bad[0]}")
    return values


def frame_alphas(frames: int, name: str = "frames") -> list[float]:
    """N evenly spaced strengths from 0 to 1 (the official demo returns 16 frames), 1 <= N <= MAX_FRAMES. A
    single frame is the animation's last, the full-strength edit (the first, strength 0, would be the source)."""
    if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= MAX_FRAMES:
        raise EditingError(f"{name}: must be an integer in [1, {MAX_FRAMES}], got {frames!r}")
    return [1.0] if frames == 1 else [i / (frames - 1) for i in range(frames)]


@register_editor(STYLEMAPGAN)
class Editor(BaseEditor):
    """The StyleMapGAN editor: a model (generator + encoder, eval mode, no grads) plus an LRU cache of encodings;
    see the module docstring. `Editor.from_checkpoint` opens any family's checkpoint with that family's editor
    (`editing.base`)."""

    def __init__(
        self,
        generator: Generator,
        encoder: Encoder,
        *,
        device: torch.device | str | None = None,
        cache_size: int = 128,
        model_id: str | None = None,
        mean: torch.Tensor | None = None,
        batch_size: int = 8,
        fast_edit: bool = True,
        modulation_cache_bytes: int = 1 << 30,
        backend: str = "torch",
        compile: bool = False,
        dtype: str | torch.dtype = "auto",
        onnx_dir: str | os.PathLike[str] | None = None,
        reference_mse: float | None = None,
        reference_mse_source: str | None = None,
        clusters: PartClusters | None = None,
    ) -> None:
        """fast_edit: w_plus local edits blend cached modulations (exact; see `editing.fast_edit`), each image's
        modulations kept in a second LRU cache bounded by `modulation_cache_bytes` (~240 MB per 256 px image).
        backend ("torch" | "onnx"), compile, dtype ("fp32" | "bf16" | "auto": bf16 only where this CPU's bf16
        units measure faster, see `runtime.precision`), onnx_dir: how the networks run, see `stylemapgan.runtime`
        (defaults: eager PyTorch, automatic precision; caches and blending stay fp32). reference_mse: the
        model's own reconstruction MSE, what `check_domain` compares inputs with (`from_model` reads it from the
        model card; None: no check). clusters: the model's unsupervised part clusters (`editing.clusters`;
        `from_model` reads them from the checkpoint), for `cluster_map` / `cluster_masks`."""
        self.device = torch.device(device) if device is not None else generator.const_device
        self.generator = generator.to(self.device).eval().requires_grad_(False)
        self.encoder = encoder.to(self.device).eval().requires_grad_(False)
        self.runner = make_runner(
            self.generator, self.encoder, backend=backend, compile=compile, dtype=dtype, onnx_dir=onnx_dir
        )
        self.config: ModelConfig = generator.config
        self._init_cache(cache_size, model_id)
        self.batch_size = max(1, int(batch_size))
        self._mean = mean.to(self.device) if mean is not None else None
        self.fast_edit = fast_edit
        self.modulation_cache_bytes = int(modulation_cache_bytes)
        self._mods: OrderedDict[str, list[torch.Tensor]] = OrderedDict()
        self.reference_mse = reference_mse
        self.reference_mse_source = reference_mse_source if reference_mse is not None else None
        self.clusters = clusters

    # ---- construction ------------------------------------------------------------------------------------

    @classmethod
    def from_model(cls, model: EditingModel, *, where: str = "checkpoint", **kwargs: Any) -> Editor:
        """`where` names the checkpoint in errors (its part clusters are checked against the model)."""
        mean = model.checkpoint.extra.get("mean_stylemap") if model.checkpoint is not None else None
        if isinstance(mean, torch.Tensor) and mean.numel() == math.prod(model.config.stylemap_shape):
            kwargs.setdefault("mean", mean.reshape(1, *model.config.stylemap_shape).float())
        if model.checkpoint is not None and "reference_mse" not in kwargs:
            kwargs["reference_mse"], kwargs["reference_mse_source"] = card_reference_mse(model.checkpoint.provenance)
        if model.checkpoint is not None and "clusters" not in kwargs:
            kwargs["clusters"] = clusters_from_extra(model.checkpoint.extra, model.config, where)
        return cls(model.generator, model.encoder, **kwargs)

    @classmethod
    def from_loaded(cls, ckpt: Checkpoint, where: str, device: torch.device | str, **kwargs: Any) -> Editor:
        model = inference_model(ckpt, device, where)
        generator, encoder = model.networks["generator"], model.networks["encoder"]
        assert isinstance(generator, Generator) and isinstance(encoder, Encoder)
        return cls.from_model(EditingModel(ckpt.config, generator, encoder, ckpt), where=where, device=device,
                              **kwargs)

    @property
    def size(self) -> int:
        return self.config.size

    @property
    def capabilities(self) -> EditorCapabilities:
        return EditorCapabilities(
            family=self.family.title, masks=True, shifts=True, latent_modes=tuple(EDIT_MODES),
            mix_splits=("coarse", "fine", "K"), code_suffix=".npz",
        )

    @property
    def networks(self) -> tuple[nn.Module, ...]:
        return (self.generator, self.encoder)

    @property
    def code_shape(self) -> tuple[int, ...]:
        return tuple(self.config.stylemap_shape)

    # ---- encoding and the cache -----------------------------------------------------------------------------

    def encode(self, image: ImageLike) -> str:
        """Encode (unless cached) and return the handle."""
        if isinstance(image, str):
            self._entry(image)
            return image
        return self.encode_many(self.prepare(image))[0]

    @torch.no_grad()
    def encode_many(self, images: torch.Tensor) -> list[str]:
        """Handles for a batch [N, 3, size, size]; only images not cached go through the encoder (in batches)."""
        images = images.to(self.device, torch.float32)
        keys = [self.content_key(img, "img") for img in images]
        todo = self._count_lookups(keys)
        pending = list(todo.items())
        for start in range(0, len(pending), self.batch_size):
            chunk = pending[start : start + self.batch_size]
            stylemaps = self.runner.encode(images[[i for _, i in chunk]])
            with self._lock:
                self._encoded += len(chunk)
            for (key, _), sm in zip(chunk, stylemaps, strict=True):
                self._store(key, _Entry(sm[None].clone()))
        return keys

    def add_stylemap(self, stylemap: torch.Tensor) -> str:
        """Register a stylemap (e.g. from projection or a .npz) and return its handle."""
        sm = stylemap.detach().to(self.device, torch.float32)
        sm = sm if sm.ndim == 4 else sm[None]
        if tuple(sm.shape) != (1, *self.config.stylemap_shape):
            raise EditingError(f"stylemap: expected {(1, *self.config.stylemap_shape)}, got {tuple(stylemap.shape)}")
        key = self.content_key(sm, "sm")
        if self._lookup(key) is None:
            self._store(key, _Entry(sm.clone()))
        return key

    def _entry(self, item: ImageLike) -> _Entry:
        key = item if isinstance(item, str) else self.encode(item)
        entry = self._lookup(key)
        if entry is None:
            raise EditingError(f"handle {key!r}: unknown or evicted from the cache; encode the image again")
        return entry

    def stylemap(self, item: ImageLike) -> torch.Tensor:
        """[1, C, s, s] stylemap of an image or handle (cached)."""
        return self._entry(item).stylemap

    # the family-neutral names of the same things (`editing.base`): a StyleMapGAN code is a stylemap

    def code(self, item: ImageLike) -> torch.Tensor:
        return self.stylemap(item)

    def add_code(self, code: torch.Tensor) -> str:
        return self.add_stylemap(code)

    @torch.no_grad()
    def encode_codes(self, images: torch.Tensor) -> torch.Tensor:
        """Stylemaps of a batch straight from the eager encoder (no cache: bulk data such as labelled splits)."""
        return self.encoder(images.to(self.device))

    def load_code(self, path: str | os.PathLike[str]) -> torch.Tensor:
        return load_stylemap(path, self.config.stylemap_shape)

    def save_code(self, path: str | os.PathLike[str], code: torch.Tensor, meta: dict[str, Any]) -> None:
        save_stylemap(path, code, meta)

    @torch.no_grad()
    def styles(self, item: ImageLike) -> list[torch.Tensor]:
        """The resizer's style tensors (one per modulated conv) of an image or handle (cached)."""
        entry = self._entry(item)
        if entry.styles is None:
            entry.styles = self.runner.resize(entry.stylemap)
        return entry.styles

    @torch.no_grad()
    def modulations(self, item: ImageLike) -> list[torch.Tensor]:
        """[gamma | beta] of every modulated layer for an image or handle (cached, see `fast_edit`)."""
        key = item if isinstance(item, str) else self.encode(item)
        with self._lock:
            mods = self._mods.get(key)
            if mods is not None:
                self._mods.move_to_end(key)
                return mods
        mods = self.runner.modulations(self.styles(key))
        with self._lock:
            self._mods[key] = mods
            total = sum(sum(m.numel() * m.element_size() for m in v) for v in self._mods.values())
            while len(self._mods) > 1 and total > self.modulation_cache_bytes:
                _, dropped = self._mods.popitem(last=False)
                total -= sum(m.numel() * m.element_size() for m in dropped)
        return mods

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
            self._mods.clear()

    # ---- part clusters ---------------------------------------------------------------------------------------

    def _clusters(self) -> PartClusters:
        if self.clusters is None:
            raise ClusterError("part clusters: this model has none; fit them with `stylemapgan clusters fit`")
        return self.clusters

    @torch.no_grad()
    def cluster_map(self, item: ImageLike) -> torch.Tensor:
        """[size, size] int64: each pixel's part cluster, from the item's own generator features (its stylemap as
        encoded or projected), cached with the encoding. Features are a statistic of the model: fp32 eager PyTorch
        (the runner's `eager_fp32`) whatever the backend."""
        clusters = self._clusters()
        entry = self._entry(item)
        if entry.cluster_ids is None:
            styles = self.styles(item)
            with self.runner.eager_fp32() as generator:
                entry.cluster_ids = cluster_map(cluster_scores(generator, styles, clusters))[0]
        return entry.cluster_ids

    def cluster_masks(self, item: ImageLike) -> torch.Tensor:
        """[K, 1, size, size] binary masks, one per part cluster (id order), of an image or handle."""
        ids = self.cluster_map(item)
        return (ids[None] == torch.arange(self._clusters().k, device=ids.device)[:, None, None]).float()[:, None]

    def cluster_mask(self, items: Sequence[ImageLike], keys: Sequence[str], field: str = "--mask") -> torch.Tensor:
        """[1, 1, size, size]: the union over `items` (e.g. source and reference) of the clusters named by `keys`
        (ids '3' or names given with `clusters name`); unknown ones are a ClusterError naming `field`."""
        clusters = self._clusters()
        indices = [clusters.index(key, field) for key in keys]
        mask = torch.zeros(1, 1, self.size, self.size, device=self.device)
        for item in items:
            mask = torch.maximum(mask, mask_from_cluster_map(self.cluster_map(item), indices))
        return mask

    # ---- rendering -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def decode(self, stylemaps: torch.Tensor) -> torch.Tensor:
        """Stylemaps [N, C, s, s] -> images, in batches."""
        stylemaps = stylemaps.to(self.device)
        return torch.cat([
            self.runner.decode(stylemaps[i : i + self.batch_size])
            for i in range(0, stylemaps.shape[0], self.batch_size)
        ])

    @torch.no_grad()
    def reconstruct(self, item: ImageLike) -> torch.Tensor:
        """G(E(x)) of an image or handle -> [1, 3, size, size]."""
        return self.runner.synthesize_styles(self.styles(item))

    # ---- local editing -------------------------------------------------------------------------------------

    def blend_weights(
        self, mask: torch.Tensor, mode: str = "w", pool: str | None = None, feather_px: float = 0.0,
        shift: tuple[int, int] = (0, 0),
    ) -> list[torch.Tensor]:
        """Per-layer blend weights [1, 1, r, r] for a mask: pooled, feathered, then shifted (wrapped part zeroed)."""
        spec = edit_mode(mode)
        pool_fn = pooling(pool or spec.default_pooling)
        feather_px = check_feather(feather_px)
        mask = as_mask(mask, self.size).to(self.device)
        per_resolution: dict[int, torch.Tensor] = {}
        for r in dict.fromkeys(spec.resolutions(self.config)):
            w = feather(pool_fn(mask, r), feather_px * r / self.size)
            per_resolution[r] = shift_and_zero(w, *scaled_shift(shift, r, self.size))
        return [per_resolution[r] for r in spec.resolutions(self.config)]

    @torch.no_grad()
    def local_edit(
        self,
        source: ImageLike,
        references: Sequence[ImageLike],
        masks: Sequence[torch.Tensor],
        *,
        shifts: Sequence[tuple[int, int]] | None = None,
        mode: str = "w",
        alphas: float | Sequence[float] = 1.0,
        pool: str | None = None,
        feather_px: float = 0.0,
        fast: bool | None = None,
    ) -> torch.Tensor:
        """Paste the masked region of each reference (shifted by (dx, dy) pixels) into the source.

        masks: one [size, size] mask in [0, 1] per reference, marking the region in the reference's frame.
        alphas: one blend strength in [0, 1], or several (one output frame each). Later references are pasted
        on top of earlier ones. Returns [len(alphas), 3, size, size].
        fast: w_plus edits blend cached modulations (default: the editor's `fast_edit`; see `editing.fast_edit`);
        False = reference path. w edits always recompute: the resizer's receptive field spans the whole 8 x 8
        stylemap after two layers, so every style tensor changes everywhere and no modulation can be reused.
        """
        spec = edit_mode(mode)
        if not references:
            raise EditingError("references: need at least one reference image")
        if len(masks) != len(references):
            raise EditingError(f"masks: got {len(masks)} mask(s) for {len(references)} reference(s); give one each")
        shifts = list(shifts) if shifts is not None else [(0, 0)] * len(references)
        if len(shifts) != len(references):
            raise EditingError(f"shifts: got {len(shifts)} shift(s) for {len(references)} reference(s)")
        strengths = _alphas(alphas)
        resolutions = spec.resolutions(self.config)
        all_weights = [
            self.blend_weights(as_mask(mask, self.size, f"mask {i + 1}"), mode, pool, feather_px, shift)
            for i, (mask, shift) in enumerate(zip(masks, shifts, strict=True))
        ]
        fast = self.fast_edit if fast is None else fast
        if spec.name == "w_plus" and fast:
            return self._local_edit_fast(source, references, all_weights, shifts, strengths)
        base = spec.layers(self, source)
        plans: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []
        for ref, shift, weights in zip(references, shifts, all_weights, strict=True):
            layers = [
                shift_and_zero(layer, *scaled_shift(shift, r, self.size))
                for layer, r in zip(spec.layers(self, ref), resolutions, strict=True)
            ]
            plans.append((layers, weights))
        frames = []
        for start in range(0, len(strengths), self.batch_size):
            chunk = torch.tensor(strengths[start : start + self.batch_size], device=self.device).view(-1, 1, 1, 1)
            pastes = [Paste(layers, [w * chunk for w in weights]) for layers, weights in plans]
            image = spec.render_layers(self.runner, blend_layers(base, pastes))
            frames.append(image.expand(chunk.shape[0], -1, -1, -1))
        return torch.cat(frames)

    def paste_warnings(
        self,
        masks: Sequence[torch.Tensor],
        shifts: Sequence[tuple[int, int]] | None = None,
        *,
        mode: str = "w",
        pool: str | None = None,
        feather_px: float = 0.0,
    ) -> list[str]:
        """In words, each reference of a local edit that would paste nothing: an empty mask, a shift that moves
        the whole region off the image, or a region too small to survive the mode's pooling. The edit itself
        still runs (its result, the source, is honest); callers show and record these (the CLI: stderr and the
        JSON record's `warnings`). Empty when every reference pastes something."""
        shifts = list(shifts) if shifts is not None else [(0, 0)] * len(masks)
        notes = []
        for i, (mask, shift) in enumerate(zip(masks, shifts, strict=True)):
            m = as_mask(mask, self.size, f"mask {i + 1}")
            weights = self.blend_weights(m, mode, pool, feather_px, shift)
            if any(float(w.max()) > 0 for w in weights):
                continue
            if float(m.max()) == 0:
                why = f"mask {i + 1} is empty (no pixel selected)"
            elif tuple(shift) != (0, 0) and float(shift_and_zero(m, *shift).max()) == 0:
                why = f"shift {shift[0]},{shift[1]} moves mask {i + 1}'s region off the {self.size}x{self.size} image"
            else:
                why = (f"mask {i + 1} is too small to cover any cell after {pool or edit_mode(mode).default_pooling} "
                       f"pooling in {mode} mode")
            notes.append(f"{why}: reference {i + 1} pastes nothing")
        if notes and len(notes) == len(masks):
            notes.append("the edit returns the source's reconstruction unchanged")
        return notes

    def _local_edit_fast(
        self,
        source: ImageLike,
        references: Sequence[ImageLike],
        all_weights: Sequence[list[torch.Tensor]],
        shifts: Sequence[tuple[int, int]],
        strengths: list[float],
    ) -> torch.Tensor:
        """w_plus local edit from cached style tensors and modulations (same result as the reference path).
        The blend, with its exact recomputation of modulations along mask edges, is PyTorch code with no graph:
        it runs through the runner's `run_torch` fallback (its precision; PyTorch on every backend), and the
        synthesis through the runner's `synthesize`."""
        resolutions = self.config.style_resolutions
        base_styles, base_mods = self.styles(source), self.modulations(source)
        refs = [
            (self.styles(ref), self.modulations(ref), weights, [scaled_shift(shift, r, self.size) for r in resolutions])
            for ref, weights, shift in zip(references, all_weights, shifts, strict=True)
        ]
        frames = []
        for start in range(0, len(strengths), self.batch_size):
            chunk = torch.tensor(strengths[start : start + self.batch_size], device=self.device).view(-1, 1, 1, 1)
            pastes = [ModPaste(styles, mods, [w * chunk for w in weights], layer_shifts)
                      for styles, mods, weights, layer_shifts in refs]
            image = self.runner.run_torch(
                render_w_plus_fast, self.generator, base_styles, base_mods, pastes, self.runner.synthesize
            )
            frames.append(image)
        return torch.cat(frames)

    def transplant(
        self,
        source: ImageLike,
        reference: ImageLike,
        rectangle: RectangleMask,
        to: tuple[int, int],
        **edit_options: Any,
    ) -> torch.Tensor:
        """Copy the reference's rectangle (pixels at model size) to top-left `to` in the source: a local edit
        with a rectangle mask shifted by `to - (x0, y0)` (in "w" mode it moves whole stylemap cells)."""
        mask = rectangle_mask(rectangle, self.size)
        shift = (to[0] - rectangle.x0, to[1] - rectangle.y0)
        return self.local_edit(source, [reference], [mask], shifts=[shift], **edit_options)

    # ---- global edits --------------------------------------------------------------------------------------

    @torch.no_grad()
    def interpolate(self, a: ImageLike, b: ImageLike, frames: int = 8) -> torch.Tensor:
        """Linear interpolation in stylemap space, `frames` (2 .. MAX_FRAMES) images from a to b inclusive."""
        if frames == 1:
            raise EditingError("frames: an interpolation needs at least 2 frames (a and b), got 1")
        lambdas = torch.tensor(frame_alphas(frames), device=self.device).view(-1, 1, 1, 1)
        sa, sb = self.stylemap(a), self.stylemap(b)
        return self.decode(sa * (1 - lambdas) + sb * lambdas)

    @torch.no_grad()
    def mix(self, a: ImageLike, b: ImageLike, layers_from_a: int) -> torch.Tensor:
        """Style mixing: style tensors [0, k) from a, the rest from b (coarse = k of 2, fine = swap a and b)."""
        count = len(self.config.style_resolutions)
        if not 0 <= layers_from_a <= count:
            raise EditingError(f"split: layer index must be in [0, {count}], got {layers_from_a}")
        styles = self.styles(a)[:layers_from_a] + self.styles(b)[layers_from_a:]
        return self.runner.synthesize_styles(styles)

    @torch.no_grad()
    def apply_direction(
        self,
        item: ImageLike,
        direction: torch.Tensor,
        strengths: float | Sequence[float],
        mask: torch.Tensor | None = None,
        feather_px: float = 0.0,
        pool: str = "max",
    ) -> torch.Tensor:
        """stylemap + strength * direction, globally or only in the mask's cells (mask pooled to s x s)."""
        values = [float(strengths)] if isinstance(strengths, int | float) else [float(s) for s in strengths]
        if tuple(direction.reshape(-1).shape) != (self.config.stylemap_shape[0] * self.config.latent_spatial_size**2,):
            raise EditingError(f"direction: has {direction.numel()} entries, stylemap {self.config.stylemap_shape}")
        weight = self.blend_weights(mask, "w", pool, feather_px)[0] if mask is not None else None
        edited = _apply_direction(self.stylemap(item), direction.to(self.device), torch.tensor(values), weight)
        return self.decode(edited)

    @property
    def truncation_center(self) -> str:
        return self.mean_stylemap_source

    def sample(self, seeds: Sequence[int], trunc: float = 1.0) -> Samples:
        images, stylemaps = self.generate(seeds, trunc)
        return Samples(images, stylemaps, None)

    @property
    def mean_stylemap_source(self) -> str:
        return "checkpoint" if self._mean is not None else f"mean over {MEAN_STYLEMAP_COUNT} z (seed 0)"

    def mean_stylemap(self) -> torch.Tensor:
        """Truncation centre: from the checkpoint if it stores one, else over 5,000 z (cached per model). The
        runner computes it in fp32 eager PyTorch whatever its backend and dtype (see `TorchRunner.mean_stylemap`)."""
        if self._mean is not None:
            return self._mean
        return self.runner.mean_stylemap()

    @torch.no_grad()
    def generate(self, seeds: Sequence[int], trunc: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and stylemaps for seeds (z = randn from a CPU generator seeded per image), truncated towards
        the mean stylemap: mean + trunc * (stylemap - mean). Mapping and rendering run through the runner."""
        if not seeds:
            raise EditingError("seeds: need at least one seed")
        trunc = check_truncation(trunc)
        z = torch.stack([
            torch.randn(self.config.latent_channels, generator=torch.Generator().manual_seed(int(s))) for s in seeds
        ]).to(self.device)
        stylemaps = torch.cat([self.runner.mapping(z[i : i + self.batch_size])
                               for i in range(0, len(seeds), self.batch_size)])
        if trunc != 1.0:
            mean = self.mean_stylemap()
            stylemaps = mean + trunc * (stylemaps - mean)
        return self.decode(stylemaps), stylemaps

    # ---- projection ----------------------------------------------------------------------------------------

    def project(
        self,
        images: torch.Tensor,
        method: str = "encoder",
        options: ProjectionOptions | None = None,
        perceptual: nn.Module | None = None,
        progress: bool = False,
    ) -> tuple[ProjectionResult, list[str]]:
        """Project [N, 3, size, size] images; the stylemaps are added to the cache (handles returned).

        Encodings come from the cache (the runner's `encode`) and the results are rendered by the runner's
        `decode`; the optimisation (and PTI) runs on the runner's `eager_fp32` generator: it needs autograd in
        fp32, which neither bf16 autocast nor ONNX give. PTI-tuned generators render themselves, eagerly."""
        plan = projection_method(method)
        images = images.to(self.device, torch.float32)
        mean = self.mean_stylemap() if plan.needs_mean else None
        init = None
        if plan.initialise is init_from_encoder:  # through the cache: an image is encoded once
            init = torch.cat([self.stylemap(key) for key in self.encode_many(images)])
        if perceptual is not None:
            perceptual = perceptual.to(self.device)
        with self.runner.eager_fp32() as generator:
            result = project(generator, self.encoder, images, method, options, perceptual, mean, progress, init,
                             decode=self.runner.decode)
        keys = [self.add_stylemap(sm) for sm in result.stylemaps]
        return result, keys

    def refine(
        self,
        item: ImageLike,
        target: torch.Tensor | Image.Image,
        options: ProjectionOptions,
        perceptual: nn.Module | None = None,
    ) -> Refinement:
        """Optimise the stylemap of `item` (an image or handle: the encoder's, an exact or an already refined
        stylemap) towards `target`: hybrid projection starting from whatever encoding the item has. The encoder
        is one pass and underfits fine detail; a hundred Adam steps typically halve the reconstruction error.

        The MSEs are of the runner's clamped render (what the editor shows; the optimisation's loss is
        unclamped), and the result is never worse than the start by that measure: if it were, the start's
        stylemap is returned. The optimisation itself runs on the runner's `eager_fp32` generator (it needs
        autograd in fp32). `options.pti_steps` is ignored (tuning the generator would change every other image's
        edits)."""
        if options.steps < 0:
            raise EditingError(f"steps: must be >= 0, got {options.steps}")
        target = self.prepare(target)
        start = self.stylemap(item)
        if perceptual is not None:
            perceptual = perceptual.to(self.device)
        before, _ = reconstruction_metrics(self.runner.decode(start), target, None)
        with self.runner.eager_fp32() as generator:
            best, _, history = optimise_stylemaps(generator, target, start, options, perceptual)
        after, _ = reconstruction_metrics(self.runner.decode(best), target, None)
        if float(after[0]) > float(before[0]):  # the loss is unclamped: clamping can reorder near-equal maps
            return Refinement(self.add_stylemap(start), float(before[0]), float(before[0]), len(history))
        return Refinement(self.add_stylemap(best), float(before[0]), float(after[0]), len(history))
