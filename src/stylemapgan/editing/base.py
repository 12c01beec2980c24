"""What every family's editor shares: the `BaseEditor` interface, its `EditorCapabilities`, and the registry that
opens a checkpoint with its family's editor.

Callers (the CLI, a web editor, the metrics) open any checkpoint with `BaseEditor.from_checkpoint(path)` (or
`Editor.from_checkpoint`, the same door), then ask `editor.capabilities` what the model can do instead of testing
which family it is: StyleMapGAN pastes pixel masks (with shifts) in w / w+ mode; SemanticStyleGAN swaps named
parts (shape and texture apart), composes parts and returns a segmentation with every image.

Both families cache encodings under handles (the content hash of the model-sized image, or of a latent code) in
one LRU cache, so an image is encoded once however many edits use it. A "code" is what the family renders from:
a StyleMapGAN stylemap [1, C, s, s], a SemanticStyleGAN W+ latent [1, n_latent, D].
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, TypeVar

import torch
from PIL import Image
from torch import nn

from stylemapgan.checkpoint.families import ModelFamily, family_of
from stylemapgan.checkpoint.format import Checkpoint
from stylemapgan.checkpoint.io import load_checkpoint
from stylemapgan.editing.domain import DomainCheck, domain_warning
from stylemapgan.editing.errors import EditingError
from stylemapgan.editing.images import prepare_pil
from stylemapgan.editing.projection import ProjectionOptions, reconstruction_metrics

ImageLike = torch.Tensor | Image.Image | str


@dataclass(frozen=True)
class EditorCapabilities:
    """What an editor can do; the CLI and a web editor offer exactly these controls.

    family: the family's title, for messages ("StyleMapGAN", "SemanticStyleGAN").
    masks: local edits paste a pixel mask of a reference (`Editor.local_edit`).
    shifts: the pasted region can be moved (`shifts=` of a local edit, `transplant`).
    latent_modes: the blend spaces of a local edit ("w", "w_plus"); empty when there is no such choice.
    parts: the model's part names, index = class (background first); empty for a model without parts.
    shape_texture: a part's shape and texture can be swapped apart (`swap_parts(..., what="shape")`).
    composition: parts can be removed or added (`compose`).
    segmentation: every render comes with a segmentation (`segment`, `SemanticResult.segmentation`).
    mix_splits: the accepted `mix` splits, in words (the first is the default).
    code_suffix: the file suffix of saved codes (".npz" stylemaps, ".npy" official W+ latents).
    projection_spaces: the latent spaces `project` can invert into, default first ("w+", "expanded");
        empty when there is one (a StyleMapGAN stylemap).
    """

    family: str
    masks: bool = False
    shifts: bool = False
    latent_modes: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()
    shape_texture: bool = False
    composition: bool = False
    segmentation: bool = False
    mix_splits: tuple[str, ...] = ()
    code_suffix: str = ".npz"
    projection_spaces: tuple[str, ...] = ()

    @property
    def has_parts(self) -> bool:
        return bool(self.parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family, "masks": self.masks, "shifts": self.shifts,
            "latent_modes": list(self.latent_modes), "parts": list(self.parts),
            "shape_texture": self.shape_texture, "composition": self.composition,
            "segmentation": self.segmentation, "mix_splits": list(self.mix_splits), "code_suffix": self.code_suffix,
            "projection_spaces": list(self.projection_spaces),
        }


@dataclass(frozen=True)
class CacheInfo:
    hits: int
    misses: int
    encoder_images: int  # images passed through the encoder (SemanticStyleGAN: inverted)
    size: int
    capacity: int


class Samples(NamedTuple):
    """Random images of seeds: the images [N, 3, H, W], the codes they were rendered from, and the segmentation
    logits [N, K, H, W] when the family segments (else None)."""

    images: torch.Tensor
    codes: torch.Tensor
    segmentation: torch.Tensor | None


E = TypeVar("E", bound="BaseEditor")

# family name -> editor class; filled by `register_editor` where each editor class is defined
_EDITORS: dict[str, type[BaseEditor]] = {}


def register_editor(family: ModelFamily) -> Callable[[type[E]], type[E]]:
    """Class decorator: `cls` edits models of `family` (one editor per family)."""

    def decorate(cls: type[E]) -> type[E]:
        _EDITORS[family.name] = cls
        cls.family = family
        return cls

    return decorate


def editor_class(family: ModelFamily) -> type[BaseEditor]:
    """The editor class of a family; a one-line error for a family no editor handles."""
    try:
        return _EDITORS[family.name]
    except KeyError:
        raise EditingError(f"the editing tools cannot open a {family.title} model") from None


class BaseEditor:
    """A model, eval mode and no grads, plus an LRU cache of encodings (see the module docstring).

    Subclasses set `capabilities`, `size`, `networks` and implement the encode / render methods; the shared
    methods (`prepare`, the cache, `model_id`, `check_domain`) work on those.
    """

    family: ClassVar[ModelFamily]
    device: torch.device
    batch_size: int
    reference_mse: float | None = None
    reference_mse_source: str | None = None
    # `project`'s settings where the caller gives none: each family's own recipe (StyleMapGAN: ours, 100 steps;
    # SemanticStyleGAN: the official inversion's, 400 steps)
    projection_defaults: ClassVar[ProjectionOptions] = ProjectionOptions()
    clusters: Any = None  # fitted part clusters of the model's features (StyleMapGAN, `editing.clusters`), if any

    def projection_recipe(self, method: str) -> ProjectionOptions:
        """The family's own recipe for a projection `method` ("optimize", "hybrid"): `projection_defaults` unless the
        family tunes one method (callers then pass their step budget and flags on top)."""
        return self.projection_defaults

    def _init_cache(self, cache_size: int, model_id: str | None) -> None:
        self.cache_size = max(1, int(cache_size))
        self._model_id = model_id
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.RLock()
        self._hits = self._misses = self._encoded = 0

    # ---- construction ------------------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], device: torch.device | str = "cpu", **kwargs: Any
    ) -> BaseEditor:
        """Open a checkpoint (ours or official) with its family's editor, whichever class this is called on:
        `Editor.from_checkpoint(semantic_file)` returns a `SemanticEditor`. kwargs go to that editor."""
        from stylemapgan.checkpoint.io import file_sha256

        ckpt = load_checkpoint(path)
        target = editor_class(family_of(ckpt.config))
        kwargs.setdefault("model_id", "sha256:" + file_sha256(path))
        return target.from_loaded(ckpt, str(path), device, **kwargs)

    @classmethod
    def from_loaded(cls, ckpt: Checkpoint, where: str, device: torch.device | str, **kwargs: Any) -> BaseEditor:
        """Build this editor from a loaded checkpoint of its family (`where` names the file in errors)."""
        raise NotImplementedError

    # ---- what the model is ---------------------------------------------------------------------------------

    @property
    def capabilities(self) -> EditorCapabilities:
        raise NotImplementedError

    @property
    def size(self) -> int:
        raise NotImplementedError

    @property
    def networks(self) -> tuple[nn.Module, ...]:
        """The networks whose weights identify the model (`model_id`)."""
        raise NotImplementedError

    @property
    def code_shape(self) -> tuple[int, ...]:
        """Shape of one code without the batch axis (stylemap [C, s, s], W+ [n_latent, D]); directions have it."""
        raise NotImplementedError

    @property
    def model_id(self) -> str:
        """Content hash of the model (checkpoint file hash when loaded from a file)."""
        if self._model_id is None:
            h = hashlib.sha256()
            for net in self.networks:
                for name, tensor in net.state_dict().items():
                    h.update(name.encode())
                    h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
            self._model_id = "weights-sha256:" + h.hexdigest()
        return self._model_id

    # ---- inputs and the cache ------------------------------------------------------------------------------

    def prepare(self, image: torch.Tensor | Image.Image) -> torch.Tensor:
        """PIL image (any size/mode: centre-cropped) or model-sized tensor -> [1, 3, size, size] on device."""
        if isinstance(image, Image.Image):
            return prepare_pil(image, self.size).to(self.device)
        if not isinstance(image, torch.Tensor):
            raise EditingError(f"image: expected a tensor, a PIL image or a handle, got {type(image).__name__}")
        t = image if image.ndim == 4 else image[None]
        if t.ndim != 4 or t.shape[0] != 1 or tuple(t.shape[1:]) != (3, self.size, self.size):
            raise EditingError(f"image: expected [1, 3, {self.size}, {self.size}], got {tuple(image.shape)}")
        return t.to(self.device, torch.float32)

    @staticmethod
    def content_key(tensor: torch.Tensor, prefix: str) -> str:
        data = tensor.detach().to("cpu", torch.float32).contiguous()
        h = hashlib.sha256(str(tuple(data.shape)).encode())
        h.update(data.numpy().tobytes())
        return f"{prefix}:{h.hexdigest()[:32]}"

    def _lookup(self, key: str) -> Any:
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None:
                self._cache.move_to_end(key)
            return entry

    def _store(self, key: str, entry: Any) -> None:
        with self._lock:
            self._cache[key] = entry
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def _count_lookups(self, keys: Sequence[str]) -> dict[str, int]:
        """Count cache hits and misses of a batch; -> the keys to encode, each with its first index."""
        todo: dict[str, int] = {}
        for i, key in enumerate(keys):
            cached = self._lookup(key) is not None
            with self._lock:
                if cached:
                    self._hits += 1
                elif key not in todo:
                    self._misses += 1
                    todo[key] = i
        return todo

    def cache_info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._hits, self._misses, self._encoded, len(self._cache), self.cache_size)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def encode(self, image: ImageLike) -> str:
        """Encode (unless cached) and return the handle; a handle passes through (checked)."""
        raise NotImplementedError

    def encode_many(self, images: torch.Tensor) -> list[str]:
        """Handles for a batch [N, 3, size, size]; only images not cached are encoded."""
        raise NotImplementedError

    def encode_codes(self, images: torch.Tensor) -> torch.Tensor:
        """Codes of a batch of images [N, 3, size, size], bypassing the cache (bulk data, e.g. labelled sets)."""
        raise NotImplementedError

    def direction_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes in the layout attribute directions are fitted and scored in (default: as they are)."""
        return codes

    def add_code(self, code: torch.Tensor) -> str:
        """Register a code (from a file, a projection, a sample) and return its handle."""
        raise NotImplementedError

    def code(self, item: ImageLike) -> torch.Tensor:
        """The cached code of an image or handle, [1, *code_shape]."""
        raise NotImplementedError

    def load_code(self, path: str | os.PathLike[str]) -> torch.Tensor:
        """A saved code file (`capabilities.code_suffix`) -> [1, *code_shape]; one-line errors naming the file."""
        raise NotImplementedError

    def save_code(self, path: str | os.PathLike[str], code: torch.Tensor, meta: dict[str, Any]) -> None:
        """Write one code [*code_shape] or [1, *code_shape] in the family's file format."""
        raise NotImplementedError

    # ---- rendering and global edits ----------------------------------------------------------------------

    def reconstruct(self, item: ImageLike) -> torch.Tensor:
        """The model's rendering of an image's (or handle's) code -> [1, 3, size, size]."""
        raise NotImplementedError

    def sample(self, seeds: Sequence[int], trunc: float = 1.0) -> Samples:
        """Random images of seeds (z = randn from a CPU generator seeded per image), truncated by psi `trunc`."""
        raise NotImplementedError

    def interpolate(self, a: ImageLike, b: ImageLike, frames: int = 8) -> torch.Tensor:
        """`frames` images from a to b inclusive, linear in the family's code space."""
        raise NotImplementedError

    @property
    def truncation_center(self) -> str:
        """In words, what truncation pulls towards (for records)."""
        raise NotImplementedError

    # ---- the domain check ---------------------------------------------------------------------------------

    @torch.no_grad()
    def check_domain(
        self, images: Sequence[torch.Tensor | Image.Image] | torch.Tensor, names: Sequence[str] | None = None
    ) -> list[DomainCheck]:
        """Per image: the reconstruction MSE of its encoding (clamped, images in [-1, 1], as `project` reports
        it) and the warning `editing.domain` gives against the model's own figure (`reference_mse`; None: no
        warning). Encodings go through the cache, so checking the inputs of an edit costs one render per image."""
        batch = torch.cat([self.prepare(image) for image in images])
        if names is not None and len(names) != batch.shape[0]:
            raise EditingError(f"names: got {len(names)} for {batch.shape[0]} image(s)")
        checks = []
        for i, key in enumerate(self.encode_many(batch)):
            mse, _ = reconstruction_metrics(self.reconstruct(key), batch[i : i + 1], None)
            value = float(mse[0])
            warning = domain_warning(value, self.reference_mse, name=names[i] if names is not None else None)
            checks.append(DomainCheck(value, self.reference_mse, warning))
        return checks
