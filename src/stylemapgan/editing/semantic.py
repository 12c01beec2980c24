"""`SemanticEditor`: the editor of SemanticStyleGAN models. Codes are W+ latents [1, n_latent, D] (28 vectors for
13 parts; the expanded 130-vector layout is accepted too), cached under handles like StyleMapGAN's stylemaps.

Edits are latent operations (`editing.parts`, `editing.part_directions`) rendered with the stored noise maps
(deterministic), and every result comes with its segmentation:

    editor = BaseEditor.from_checkpoint("semantic.safetensors")          # a SemanticEditor
    src = editor.add_code(load_official_latents("a.npy", editor.config))  # or editor.encode(image)
    ref = editor.add_code(...)
    out = editor.swap_parts(src, [PartSwap(ref, ("hair",), "shape")])    # SemanticResult
    out.images, out.segmentation, out.latents, out.segmentation_images()

Images come in through inversion (`encode`, `project`), which lives in `stylemapgan.semantic.inversion`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from PIL import Image
from torch import nn

from stylemapgan.checkpoint.families import MEAN_W_COUNT, MEAN_W_KEY, SEMANTICSTYLEGAN, class_names
from stylemapgan.checkpoint.format import Checkpoint
from stylemapgan.checkpoint.models import inference_model
from stylemapgan.editing.base import BaseEditor, EditorCapabilities, ImageLike, Samples, register_editor
from stylemapgan.editing.directions import Direction, LinearClassifier
from stylemapgan.editing.domain import reference_mse as card_reference_mse
from stylemapgan.editing.editor import _alphas, check_truncation, frame_alphas
from stylemapgan.editing.errors import EditingError
from stylemapgan.editing.part_directions import (
    part_pca_directions,
    part_sefa_directions,
    part_supervised_direction,
    sample_w,
    subspace_rows,
)
from stylemapgan.editing.parts import (
    DEFAULT_MASK_THRESHOLD,
    check_subspace,
    composition_mask,
    interpolate_parts,
    parts_under_mask,
    rows_mask,
    same_layout,
    swap_parts,
)
from stylemapgan.editing.projection import ProjectionOptions, ProjectionResult, reconstruction_metrics
from stylemapgan.semantic.config import SemanticConfig
from stylemapgan.semantic.generator import SemanticGenerator
from stylemapgan.semantic.inversion import SPACES, InversionError, InversionOptions, invert, pivotal_tuning
from stylemapgan.semantic.io import latents_npy, load_official_latents, segmentation_image
from stylemapgan.semantic.latents import (
    LatentLayoutError,
    broadcast_w,
    check_latents,
    collapse_latents,
    expand_latents,
)
from stylemapgan.utils.files import atomic_write_bytes

_OFFICIAL = InversionOptions()  # the official inversion recipe: `project`'s defaults
PartName = str | int


class SemanticResult(NamedTuple):
    """What a SemanticStyleGAN edit returns, one row per frame.

    images: [F, 3, size, size] in about [-1, 1]; segmentation: [F, K, size, size] logits (argmax = part);
    latents: [F, slots, D], what was rendered; composition_mask: [F, K] or None.
    """

    images: torch.Tensor
    segmentation: torch.Tensor
    latents: torch.Tensor
    composition_mask: torch.Tensor | None = None

    def segmentation_images(self) -> list[Image.Image]:
        """One palette PNG-ready image per frame: pixel = part index, colours = `semantic.io.class_color`."""
        return [segmentation_image(s) for s in self.segmentation.detach().cpu()]


@dataclass(frozen=True)
class PartSwap:
    """Take `parts` of `reference` (an image, a handle, a PIL image or a tensor): their shape, texture or both."""

    reference: ImageLike
    parts: tuple[PartName, ...]
    what: str = "both"


def default_part_names(count: int) -> tuple[str, ...]:
    return tuple(["background", *(f"part{k}" for k in range(1, count))])


@register_editor(SEMANTICSTYLEGAN)
class SemanticEditor(BaseEditor):
    """A SemanticStyleGAN generator (eval mode, no grads) plus an LRU cache of W+ latents; see the module."""

    projection_defaults = ProjectionOptions(
        steps=_OFFICIAL.steps, lr=_OFFICIAL.lr, mse_weight=_OFFICIAL.mse_weight,
        perceptual_weight=_OFFICIAL.lpips_weight, pti_steps=_OFFICIAL.pti_steps, pti_lr=_OFFICIAL.pti_lr,
    )

    # hybrid starts at the encoder's answer, which the official lr 0.1 (made for a start at the mean) throws away in
    # the first steps. `stylemapgan project test:0 ... test:7 --ckpt cartoon-faces-semantic --method hybrid --steps S
    # --lr LR`: encoder MSE 0.037; 10 / 50 steps at lr 0.1: 0.211 / 0.051, at lr 0.01: 0.051 / 0.037 (LPIPS 0.057 ->
    # 0.011 at 50 steps). `project --lr` still sets it.
    hybrid_lr: ClassVar[float] = 0.01

    def projection_recipe(self, method: str) -> ProjectionOptions:
        """The official recipe, except hybrid's lr (`hybrid_lr`): it refines a start that is already close."""
        if method == "hybrid":
            return dataclasses.replace(self.projection_defaults, lr=self.hybrid_lr)
        return self.projection_defaults

    def __init__(
        self,
        generator: SemanticGenerator,
        *,
        device: torch.device | str | None = None,
        cache_size: int = 128,
        model_id: str | None = None,
        batch_size: int = 8,
        part_names: Sequence[str] | None = None,
        reference_mse: float | None = None,
        reference_mse_source: str | None = None,
        encoder: nn.Module | None = None,
        dtype: str | torch.dtype = "auto",
    ) -> None:
        """part_names: one per class, background first (a checkpoint's `class_names`); default background,
        part1, part2, ... reference_mse: the model's own reconstruction MSE for the domain check (None: none).
        encoder: image -> W+ or expanded latents (`semantic.encoder.SemanticEncoder`, from `stylemapgan
        train-encoder`), if any.
        dtype: the CLI's --dtype; these networks run in fp32 ("auto" too), so only "fp32" or "auto"."""
        if dtype not in ("auto", "fp32", torch.float32):
            raise EditingError(f"--dtype {dtype}: a {SEMANTICSTYLEGAN.title} model runs in fp32 only (auto or fp32)")
        like = generator.local.pos_embed.weight
        self.device = torch.device(device) if device is not None else like.device
        self.generator = generator.to(self.device).eval().requires_grad_(False)
        self.encoder = encoder.to(self.device).eval().requires_grad_(False) if encoder is not None else None
        self.config: SemanticConfig = generator.config
        self._init_cache(cache_size, model_id)
        self.batch_size = max(1, int(batch_size))
        names = tuple(part_names) if part_names is not None else default_part_names(self.config.seg_dim)
        if len(names) != self.config.seg_dim or len(set(names)) != len(names):
            raise EditingError(f"part_names: need {self.config.seg_dim} distinct names, got {list(names)}")
        self.part_names = names
        self._mean_w: torch.Tensor | None = None
        self.reference_mse = reference_mse
        self.reference_mse_source = reference_mse_source if reference_mse is not None else None

    @classmethod
    def from_loaded(cls, ckpt: Checkpoint, where: str, device: torch.device | str, **kwargs: Any) -> SemanticEditor:
        model = inference_model(ckpt, device, where)
        generator = model.networks["generator"]
        assert isinstance(generator, SemanticGenerator)
        kwargs.setdefault("part_names", class_names(ckpt.config, ckpt.extra))
        kwargs.setdefault("encoder", model.networks.get("encoder"))
        if "reference_mse" not in kwargs:  # a released model's card: the domain check's yardstick
            kwargs["reference_mse"], kwargs["reference_mse_source"] = card_reference_mse(ckpt.provenance)
        editor = cls(generator, device=device, **kwargs)
        mean = ckpt.extra.get(MEAN_W_KEY)  # a released model ships its truncation centre (`stylemapgan release`)
        if isinstance(mean, torch.Tensor) and tuple(mean.shape) == (1, ckpt.config.style_dim):
            editor._mean_w = mean.to(editor.device, torch.float32)
        return editor

    # ---- what the model is ---------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self.config.size

    @property
    def capabilities(self) -> EditorCapabilities:
        return EditorCapabilities(
            family=self.family.title, parts=self.part_names, shape_texture=True, composition=True,
            segmentation=True, mix_splits=("shape", "texture"), code_suffix=".npy",
            projection_spaces=tuple(sorted(SPACES, key=lambda space: space != self.encoder_space)),
        )

    @property
    def encoder_space(self) -> str:
        """The layout this model's encoder answers ("w+" without an encoder): the default projection space."""
        return getattr(self.encoder, "latent_space", "w+")

    @property
    def networks(self) -> tuple[nn.Module, ...]:
        return (self.generator,)

    @property
    def code_shape(self) -> tuple[int, ...]:
        return (self.config.n_latent, self.config.style_dim)

    def part_index(self, part: PartName, field: str = "part") -> int:
        """A part name (or index) -> its class index; a one-line error naming `field` otherwise."""
        if isinstance(part, int) and not isinstance(part, bool):
            if not 0 <= part < self.config.seg_dim:
                raise EditingError(f"{field} {part}: this model has {self.config.seg_dim} parts (0-"
                                   f"{self.config.seg_dim - 1})")
            return part
        if not isinstance(part, str) or not part:
            raise EditingError(f"{field}: expected a part name, got {part!r}")
        if part in self.part_names:
            return self.part_names.index(part)
        if part.isdigit():
            return self.part_index(int(part), field)
        raise EditingError(f"{field} {part!r}: this model has no such part (its parts: {', '.join(self.part_names)})")

    def part_indices(self, parts: Sequence[PartName], field: str = "part") -> list[int]:
        if isinstance(parts, str | int):
            parts = [parts]
        if not parts:
            raise EditingError(f"{field}: name at least one part")
        return list(dict.fromkeys(self.part_index(p, field) for p in parts))

    # ---- codes and the cache -------------------------------------------------------------------------------

    def _as_latents(self, latents: torch.Tensor, field: str = "latents") -> torch.Tensor:
        t = latents.detach().to(self.device, torch.float32)
        t = t if t.ndim == 3 else t[None]
        try:
            check_latents(self.config, t)
        except LatentLayoutError as exc:
            raise EditingError(f"{field}: {exc}") from None
        if t.shape[0] != 1:
            raise EditingError(f"{field}: one code at a time, got a batch of {t.shape[0]}")
        if not bool(torch.isfinite(t).all()):
            raise EditingError(f"{field}: contains NaN or infinite values")
        return t

    def add_code(self, code: torch.Tensor) -> str:
        """Register W+ [1, n_latent, D] or expanded [1, n_latent_expanded, D] latents -> handle."""
        latents = self._as_latents(code)
        key = self.content_key(latents, "w")
        if self._lookup(key) is None:
            self._store(key, latents.clone())
        return key

    add_latents = add_code

    def code(self, item: ImageLike) -> torch.Tensor:
        """[1, slots, D] latents of an image or handle (cached)."""
        key = item if isinstance(item, str) else self.encode(item)
        latents = self._lookup(key)
        if latents is None:
            raise EditingError(f"handle {key!r}: unknown or evicted from the cache; encode the image again")
        return latents

    latents = code

    def encode(self, image: ImageLike) -> str:
        if isinstance(image, str):
            self.code(image)
            return image
        return self.encode_many(self.prepare(image))[0]

    def encode_many(self, images: torch.Tensor) -> list[str]:
        """Handles for a batch [N, 3, size, size]; only images not cached are inverted (`encode_codes`)."""
        images = images.to(self.device, torch.float32)
        keys = [self.content_key(img, "img") for img in images]
        todo = self._count_lookups(keys)
        if todo:
            index = list(todo.values())
            latents = self.encode_codes(images[index])
            with self._lock:
                self._encoded += len(index)
            for key, lat in zip(todo, latents, strict=True):
                self._store(key, lat[None].detach().clone())
        return keys

    def encode_codes(self, images: torch.Tensor) -> torch.Tensor:
        """Latents of images [N, 3, size, size] (the encoder's layout) by the family's inversion, bypassing the
        cache."""
        return self.invert(images)

    def invert(self, images: torch.Tensor, method: str = "encoder", steps: int | None = None,
               perceptual: nn.Module | None = None, *, options: InversionOptions | None = None,
               space: str | None = None, progress: bool = False) -> torch.Tensor:
        """Images [N, 3, size, size] -> latents [N, n_latent, D] (space "expanded": [N, n_latent_expanded, D]; None:
        the encoder's layout, W+ without one) by
        `semantic.inversion.invert` (the encoder, the official optimisation, or both; the optimisation's LPIPS is
        `perceptual`, else stlpips-vgg; none when `options.lpips_weight` is 0). options: the recipe (default the
        official one); steps: its steps instead. Every inversion of this editor (`encode_codes`, `project`)
        comes through here."""
        options = options or _OFFICIAL
        options = options if steps is None else dataclasses.replace(options, steps=steps)
        loss: nn.Module | str | None = None
        if method != "encoder" and options.steps > 0 and options.lpips_weight:
            loss = perceptual or "stlpips-vgg"
        try:
            result = invert(self.generator, images.to(self.device, torch.float32), method=method,
                            encoder=self.encoder, steps=None, pti_steps=0, space=space, perceptual=loss,
                            options=options, progress=progress)
        except InversionError as exc:
            raise EditingError(str(exc)) from None
        return result.latents.to(self.device, torch.float32)

    def project(
        self, images: torch.Tensor, method: str = "encoder", options: ProjectionOptions | None = None,
        perceptual: nn.Module | None = None, progress: bool = False, space: str | None = None,
    ) -> tuple[ProjectionResult, list[str]]:
        """Invert images [N, 3, size, size] into `space` ("w+" or "expanded") and cache the latents -> (result:
        latents in `stylemaps`, renders, MSE / LPIPS as StyleMapGAN's `project` reports them; handles).

        options: steps, lr, weights (`perceptual_weight` is the LPIPS weight), pivotal tuning and time limit
        (default `projection_defaults`, the official recipe); perceptual: the LPIPS of the loss and the metric
        (None: MSE only). With `options.pti_steps` each image then gets its own tuned copy of the generator at
        its latents, as the official per-image tuning does (`result.tuned_generators`; the renders are theirs,
        the cached latents render with this editor's generator)."""
        options = options or self.projection_recipe(method)
        try:
            recipe = InversionOptions(
                steps=options.steps, lr=options.lr, mse_weight=options.mse_weight,
                lpips_weight=options.perceptual_weight if perceptual is not None else 0.0, pti_steps=options.pti_steps,
                pti_lr=options.pti_lr, time_limit_s=options.time_limit_s,
            )
        except InversionError as exc:
            raise EditingError(str(exc)) from None
        images = images.to(self.device, torch.float32)
        if perceptual is not None:
            perceptual = perceptual.to(self.device)
        latents = self.invert(images, method, None, perceptual, options=dataclasses.replace(recipe, pti_steps=0),
                              space=space, progress=progress)
        tuned: list[SemanticGenerator] | None = None
        if recipe.pti_steps > 0:
            tuned, renders = [], []
            for i in range(images.shape[0]):
                generator, _ = pivotal_tuning(self.generator, latents[i : i + 1], images[i : i + 1], recipe,
                                              perceptual, progress=progress)
                with torch.no_grad():
                    renders.append(generator.synthesize(latents[i : i + 1], randomize_noise=False).image)
                tuned.append(generator)
            rendered = torch.cat(renders)
        else:
            rendered = self.render(latents).images
        mse, lpips = reconstruction_metrics(rendered, images, perceptual)
        keys = [self.add_code(lat[None]) for lat in latents]
        return ProjectionResult(latents, rendered, mse, lpips, tuned_generators=tuned), keys  # type: ignore[arg-type]

    def load_code(self, path: str | os.PathLike[str]) -> torch.Tensor:
        """Official saved latents (.npy [1, 28, D], or any form `semantic.io.load_official_latents` reads)."""
        try:
            latents = load_official_latents(path, self.config)
        except LatentLayoutError as exc:
            raise EditingError(str(exc)) from None
        if latents.shape[0] != 1:
            raise EditingError(f"{path}: holds {latents.shape[0]} latents; an input is one (split the file)")
        return latents

    def save_code(self, path: str | os.PathLike[str], code: torch.Tensor, meta: dict[str, Any]) -> None:
        """The official saved-latent format (.npy float32 [1, slots, D]); `meta` goes to the run's JSON record."""
        atomic_write_bytes(path, latents_npy(self._as_latents(code)))

    # ---- rendering -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def render(self, latents: torch.Tensor, composition: torch.Tensor | None = None) -> SemanticResult:
        """Latents [F, slots, D] (+ composition mask [F or 1, K]) -> images and segmentations, in batches, with
        the stored noise maps (the same image every call)."""
        latents = latents.to(self.device, torch.float32)
        if composition is not None:
            composition = composition.to(self.device).expand(latents.shape[0], -1)
        images, segs = [], []
        for start in range(0, latents.shape[0], self.batch_size):
            stop = start + self.batch_size
            out = self.generator.synthesize(
                latents[start:stop], composition_mask=None if composition is None else composition[start:stop],
                randomize_noise=False,
            )
            images.append(out.image)
            segs.append(out.segmentation)
        return SemanticResult(torch.cat(images), torch.cat(segs), latents, composition)

    def result(self, item: ImageLike) -> SemanticResult:
        """The rendering of an image's (or handle's) latents."""
        return self.render(self.code(item))

    def reconstruct(self, item: ImageLike) -> torch.Tensor:
        return self.result(item).images

    def segment(self, item: ImageLike) -> torch.Tensor:
        """The model's segmentation logits [1, K, size, size] of an image's (or handle's) rendering."""
        return self.result(item).segmentation

    # ---- sampling -------------------------------------------------------------------------------------------

    @property
    def truncation_center(self) -> str:
        return f"mean w of {MEAN_W_COUNT:,} z (seed 0)"

    def mean_w(self) -> torch.Tensor:
        """The truncation centre [1, D] (computed once per editor, as the official scripts do)."""
        if self._mean_w is None:
            self._mean_w = self.generator.mean_latent(MEAN_W_COUNT, seed=0)
        return self._mean_w

    @torch.no_grad()
    def sample(self, seeds: Sequence[int], trunc: float = 1.0) -> Samples:
        """z = randn(style_dim) per seed, w truncated towards `mean_w` (psi = trunc), broadcast to W+."""
        if not seeds:
            raise EditingError("seeds: need at least one seed")
        trunc = check_truncation(trunc)
        z = torch.stack([
            torch.randn(self.config.style_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds
        ]).to(self.device)
        w = torch.cat([self.generator.mapping(z[i : i + self.batch_size]) for i in range(0, len(seeds),
                                                                                            self.batch_size)])
        if trunc != 1.0:
            mean = self.mean_w()
            w = mean + trunc * (w - mean)
        latents = broadcast_w(self.config, w)
        out = self.render(latents)
        return Samples(out.images, latents, out.segmentation)

    def generate(self, seeds: Sequence[int], trunc: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        samples = self.sample(seeds, trunc)
        return samples.images, samples.codes

    # ---- part edits -----------------------------------------------------------------------------------------

    def swap_latents(
        self, source: ImageLike, swaps: Sequence[PartSwap], alphas: float | Sequence[float] = 1.0
    ) -> torch.Tensor:
        """The latents of `swap_parts` (one frame per alpha), not rendered."""
        if not swaps:
            raise EditingError("swaps: need at least one reference part swap")
        strengths = _alphas(alphas)
        base = self.code(source)
        frames = []
        for alpha in strengths:
            latents = base
            for i, swap in enumerate(swaps):  # later references on top of earlier ones
                parts = self.part_indices(swap.parts, f"swap {i + 1} part")
                what = check_subspace(swap.what, f"swap {i + 1} what")
                latents = swap_parts(self.config, latents, self.code(swap.reference), parts, what, alpha)
            frames.append(latents)
        return torch.cat(same_layout(self.config, *frames))

    def swap_parts(
        self, source: ImageLike, swaps: Sequence[PartSwap], alphas: float | Sequence[float] = 1.0
    ) -> SemanticResult:
        """The source with each swap's parts (shape, texture or both) taken from its reference; later swaps on top
        of earlier ones. alphas: strengths in [0, 1], one frame each (1: the reference's codes exactly)."""
        return self.render(self.swap_latents(source, swaps, alphas))

    def interpolate_parts(
        self, a: ImageLike, b: ImageLike, parts: Sequence[PartName] | None = None, what: str = "both",
        frames: int = 8,
    ) -> SemanticResult:
        """`frames` renders from a to b inclusive: the whole code (parts None) or only `parts`' shape / texture
        rows move; the first frame is a's latents and the last b's (on the moving rows) exactly."""
        if frames == 1:
            raise EditingError("frames: an interpolation needs at least 2 frames (a and b), got 1")
        lambdas = frame_alphas(frames)
        indices = None if parts is None else self.part_indices(parts)
        return self.render(interpolate_parts(self.config, self.code(a), self.code(b), lambdas, indices, what))

    def interpolate(self, a: ImageLike, b: ImageLike, frames: int = 8) -> torch.Tensor:
        return self.interpolate_parts(a, b, None, "both", frames).images

    def compose(
        self, source: ImageLike, remove: Sequence[PartName] = (), add: Sequence[PartSwap] = (),
        alphas: float | Sequence[float] = 1.0,
    ) -> SemanticResult:
        """Remove parts (their mask is zeroed and the rest renormalised, so what is behind shows) and/or add parts
        from references (their codes, as `swap_parts`, one frame per alpha)."""
        removed = self.part_indices(remove, "remove") if remove else []
        latents = self.swap_latents(source, add, alphas) if add else self.code(source)
        added = {self.part_index(p) for swap in add for p in swap.parts}
        clash = sorted(added & set(removed))
        if clash:
            raise EditingError(f"remove: part {self.part_names[clash[0]]!r} is also added")
        mask = composition_mask(self.config, removed, latents.shape[0]) if removed else None
        return self.render(latents, mask)

    def mix(self, a: ImageLike, b: ImageLike, split: str = "shape") -> SemanticResult:
        """Every part at once: "shape" keeps a's base and shape codes with b's textures; "texture" keeps a's
        textures (and base codes) with b's shapes."""
        if split not in ("shape", "texture"):
            raise EditingError(f"split: must be shape or texture, got {split!r}")
        take = "texture" if split == "shape" else "shape"
        latents = swap_parts(self.config, self.code(a), self.code(b), range(self.config.seg_dim), take)
        return self.render(latents)

    def parts_under_mask(
        self, item: ImageLike, mask: torch.Tensor, threshold: float = DEFAULT_MASK_THRESHOLD
    ) -> list[str]:
        """The part names a painted mask [size, size] (or [1, 1, size, size]) covers on this image, by the model's
        own segmentation of it (see `editing.parts.parts_under_mask`)."""
        return [self.part_names[k] for k in parts_under_mask(self.segment(item), mask.to(self.device), threshold)]

    # ---- directions ------------------------------------------------------------------------------------------

    def _part(self, part: PartName | None) -> tuple[int | None, str | None]:
        if part is None:
            return None, None
        index = self.part_index(part)
        return index, self.part_names[index]

    def pca_directions(
        self, k: int, samples: int = 2000, seed: int = 0, part: PartName | None = None, what: str = "both"
    ) -> list[Direction]:
        index, name = self._part(part)
        w = sample_w(self.generator, samples, seed)
        return part_pca_directions(self.config, w, k, index, what, name, _prefix(name, "pca"))

    def sefa_directions(self, k: int, part: PartName | None = None, what: str = "both") -> list[Direction]:
        index, name = self._part(part)
        return part_sefa_directions(self.generator, k, index, what, name, _prefix(name, "sefa"))

    def direction_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """W+: directions live on W+ rows, so expanded codes (an expanded encoder's) are collapsed to W+ (each
        vector the mean of the layers it feeds; exact for an expansion)."""
        try:
            return collapse_latents(self.config, codes.to(torch.float32))
        except LatentLayoutError as exc:
            raise EditingError(str(exc)) from None

    def fit_direction(
        self, name: str, codes: torch.Tensor, labels: torch.Tensor, method: str = "svm", l2: float = 1e-3,
        part: PartName | None = None, what: str = "both",
    ) -> tuple[Direction, LinearClassifier, list[int]]:
        """Supervised direction in the part's rows of labelled W+ latents; -> (direction, classifier, rows: the
        W+ rows the classifier reads, for scoring held-out latents with `classifier.accuracy(codes[:, rows])`)."""
        index, part_name = self._part(part)
        codes = self.direction_codes(codes)
        direction, classifier = part_supervised_direction(
            self.config, name if part_name is None else f"{part_name}.{name}", codes, labels, index, what, part_name,
            method, l2,
        )
        return direction, classifier, subspace_rows(self.config, index, what)

    def apply_direction(self, item: ImageLike, direction: torch.Tensor, strengths: float | Sequence[float],
                        parts: Sequence[PartName] | None = None, what: str = "both", field: str = "parts",
                        ) -> SemanticResult:
        """latents + strength * direction ([n_latent, D], e.g. zero outside one part's rows), one frame per
        strength; an expanded code gets the direction expanded the same way. parts: move only these parts'
        shape / texture / both rows (`what`): the direction's other rows are dropped, not renormalised, so a
        strength is the same distance along the rows that stay (StyleMapGAN's masked attribute edit). field: how
        errors name `parts` (a CLI passes its flag)."""
        values = [float(strengths)] if isinstance(strengths, int | float) else [float(s) for s in strengths]
        if not values:
            raise EditingError("strength: need at least one value")
        if tuple(direction.shape) != self.code_shape:
            raise EditingError(f"direction: has shape {list(direction.shape)}, this model's W+ code is "
                               f"{list(self.code_shape)}")
        latents = self.code(item)
        d = direction.to(self.device, torch.float32)[None]
        if parts is not None:
            keep = rows_mask(self.config, self.part_indices(parts, field), check_subspace(what),
                             self.config.n_latent)
            d = torch.where(keep.to(self.device).view(1, -1, 1), d, torch.zeros_like(d))
            if not bool(d.any()):
                raise EditingError(f"{field}: the direction is zero in these parts' rows (it moves other parts)")
        if latents.shape[1] != d.shape[1]:
            d = expand_latents(self.config, d)
        steps = torch.tensor(values, device=self.device).view(-1, 1, 1)
        return self.render(latents + steps * d)


def _prefix(part_name: str | None, kind: str) -> str:
    return kind if part_name is None else f"{part_name}.{kind}"

