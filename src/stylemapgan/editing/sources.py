"""Turning what a user names on the command line into inputs: image files (any size and mode), saved codes
(StyleMapGAN stylemap .npz, SemanticStyleGAN W+ .npy, from `project` / `generate`), and dataset items
`SPLIT:INDEX` (with `--data`), which also carry part masks when the dataset has them (cartoon faces: hair,
eyes, ...)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from stylemapgan.config import ModelConfig
from stylemapgan.editing.base import BaseEditor
from stylemapgan.editing.errors import EditingError
from stylemapgan.editing.images import (
    IMAGE_SUFFIXES,
    STYLEMAP_SUFFIX,
    Color,
    collect_inputs,
    fit_to_size,
    load_image,
    load_stylemap,
    pil_to_tensor,
)
from stylemapgan.editing.masks import (
    ClusterMask,
    FileMask,
    LandmarkMask,
    PartMask,
    RectangleMask,
    mask_from_file,
    mask_from_parts,
    parse_mask,
    rectangle_mask,
)
from stylemapgan.utils.images import to_uint8

DATASET_ITEM_RE = re.compile(r"^([A-Za-z_][\w-]*):(\d+)$")
INPUT_SUFFIXES = IMAGE_SUFFIXES | {STYLEMAP_SUFFIX}


@dataclass
class InputItem:
    """One resolved input: an image, or a saved code (field `stylemap`: a stylemap, or a SemanticStyleGAN model's
    W+ latents); dataset items may carry a part label map."""

    name: str  # output file stem
    origin: str  # path, or data:SPLIT:INDEX
    image: torch.Tensor | None = None  # [1, 3, size, size] in [-1, 1]
    stylemap: torch.Tensor | None = None  # the model's code: [1, C, s, s] stylemap or [1, n, D] latents
    label_map: torch.Tensor | None = None  # [size, size] int64 part indices
    landmarks: Any = None  # photos.FaceLandmarks in this image's pixels (an aligned face); found when first needed

    def describe(self) -> dict[str, Any]:
        kind = "stylemap" if self.stylemap is not None else "image"
        return {"input": self.origin, "kind": kind, "has_part_mask": self.label_map is not None}


class InputResolver:
    """Resolves input names for one model; opens the dataset (if any) lazily, once per split. Saved codes are
    StyleMapGAN stylemaps (.npz) unless an editor is given (then its `capabilities.code_suffix` and `load_code`)."""

    def __init__(
        self, config: ModelConfig, fit: str = "crop", background: Color = (0, 0, 0), data: str | None = None,
        editor: BaseEditor | None = None,
    ) -> None:
        """editor: the model's editor, for masks from its part clusters (cluster:N, or a cluster's name)."""
        self.config = config
        self.code_suffix = editor.capabilities.code_suffix if editor is not None else STYLEMAP_SUFFIX
        self._load_code = editor.load_code if editor is not None else None
        self.editor = editor
        self.fit = fit
        self.background = background
        self.data = data
        self._datasets: dict[str, Any] = {}
        self._meta: dict[str, Any] | None = None
        self.landmark_model = "mediapipe"  # detector of `landmarks:` masks for images without known landmarks
        self._detector: Any = None

    # ---- dataset --------------------------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        if self.data is None:
            raise EditingError("--data: needed for dataset items (SPLIT:INDEX) and part-name masks")
        if self._meta is None:
            from stylemapgan.data import DatasetError, read_meta

            if not Path(self.data).exists():
                raise EditingError(f"{self.data}: no such dataset (--data)")
            try:
                self._meta = read_meta(self.data)
            except DatasetError as exc:
                raise EditingError(str(exc)) from None
        return self._meta

    @property
    def part_names(self) -> list[str]:
        return list((self.meta().get("masks") or {}).get("parts", []))

    def dataset(self, split: str, **kwargs: Any) -> Any:
        key = f"{split}|{sorted(kwargs.items())}"
        if key not in self._datasets:
            from stylemapgan.data import DatasetError, PreparedDataset

            sizes = list(self.meta().get("sizes", []))
            size = self.config.size if self.config.size in sizes else (max(sizes) if sizes else None)
            try:
                self._datasets[key] = PreparedDataset(self.data, size, split, **kwargs)
            except DatasetError as exc:
                raise EditingError(str(exc)) from None
        return self._datasets[key]

    def to_model_size(self, image: torch.Tensor) -> torch.Tensor:
        """[3, H, W] dataset image -> [1, 3, size, size] (Lanczos via PIL when the size differs)."""
        if tuple(image.shape[-2:]) == (self.config.size, self.config.size):
            return image[None].float()
        pil = Image.fromarray(to_uint8(image[None])[0])
        return pil_to_tensor(fit_to_size(pil, self.config.size, self.fit, self.background))

    def dataset_item(self, split: str, index: int, text: str) -> InputItem:
        with_masks = bool(self.meta().get("masks"))
        ds = self.dataset(split, masks=with_masks)
        if not 0 <= index < len(ds):
            raise EditingError(f"{text}: index out of range ({split} split has {len(ds)} images)")
        record = ds[index]
        image = record["image"] if isinstance(record, dict) else record
        label_map = None
        if with_masks:
            label_map = record["mask"].long()
            if tuple(label_map.shape) != (self.config.size, self.config.size):
                size = (self.config.size, self.config.size)
                label_map = F.interpolate(label_map[None, None].float(), size=size, mode="nearest")[0, 0].long()
        return InputItem(f"{split}{index}", f"data:{text}", self.to_model_size(image), label_map=label_map)

    # ---- inputs ---------------------------------------------------------------------------------------------

    def expand(self, texts: list[str]) -> list[str]:
        """Folders -> the image and .npz files inside; everything else as given."""
        out: list[str] = []
        for text in texts:
            if Path(text).is_dir():
                out += [str(p) for p in collect_inputs([text], IMAGE_SUFFIXES | {self.code_suffix})]
            else:
                out.append(text)
        return out

    def resolve(self, text: str, what: str = "image") -> InputItem:
        path = Path(text)
        if not path.exists():
            m = DATASET_ITEM_RE.match(text)
            if m and self.data is not None:
                return self.dataset_item(m.group(1), int(m.group(2)), text)
            hint = " (a dataset item SPLIT:INDEX needs --data)" if m else ""
            raise EditingError(f"{text}: no such file ({what}){hint}")
        if path.suffix.lower() == self.code_suffix:
            code = self._load_code(path) if self._load_code else load_stylemap(path, self.config.stylemap_shape)
            return InputItem(path.stem, str(path), stylemap=code)
        image = load_image(path, self.config.size, self.fit, self.background, what)
        return InputItem(path.stem, str(path), image=image, landmarks=self.aligned_landmarks(path))

    def aligned_landmarks(self, path: Path) -> Any:
        """The landmarks of a face aligned by `stylemapgan align`, from the record beside it (STEM.json), in model
        pixels; None for any other image (its landmarks are detected if a `landmarks:` mask needs them)."""
        import json

        record_path = path.with_suffix(".json")
        if not record_path.is_file():
            return None
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            return None
        from stylemapgan.photos import FaceLandmarks, FaceTransform, PhotoError
        from stylemapgan.photos.align import TRANSFORM_FORMAT

        if not isinstance(record, dict) or record.get("format") != TRANSFORM_FORMAT or "landmarks" not in record:
            return None
        try:
            transform = FaceTransform.from_dict(record, str(record_path))
            in_photo = FaceLandmarks.from_dict(record["landmarks"], str(record_path))
        except PhotoError as exc:
            raise EditingError(str(exc)) from None
        scale = self.config.size / transform.size
        return in_photo.mapped(lambda p: transform.to_aligned(p) * scale)

    def from_clusters(self, text: str, items: list[InputItem]) -> bool:
        """Whether the mask `text` comes from the model's part clusters: cluster:N, or a bare name that is a named
        cluster and is not read from dataset part masks (those win where the items carry them, as before)."""
        spec = parse_mask(text)
        if isinstance(spec, ClusterMask):
            return True
        clusters = self.editor.clusters if self.editor is not None else None
        if not isinstance(spec, PartMask) or clusters is None:
            return False
        has_parts = self.data is not None and any(item.label_map is not None for item in items) and self.part_names
        if not has_parts:
            return True
        named = {name.casefold() for name in clusters.names.values()}
        return all(n.casefold() in named for n in spec.names) and not all(n in self.part_names for n in spec.names)

    def mask(self, text: str, items: list[InputItem], field: str = "mask") -> torch.Tensor:
        """A mask spec -> [1, 1, size, size]. Part names use the part masks of `items` (union); cluster:N and
        cluster names use the items' part clusters (union), computed from their own features."""
        spec = parse_mask(text)
        if isinstance(spec, ClusterMask) and (self.editor is None or self.editor.clusters is None):
            raise EditingError(f"--mask {text!r}: this model has no part clusters; fit them with "
                               "`stylemapgan clusters fit --ckpt MODEL --k 12 --out MODEL_WITH_CLUSTERS`")
        if self.from_clusters(text, items):
            assert self.editor is not None
            keys = spec.keys if isinstance(spec, ClusterMask) else spec.names  # type: ignore[union-attr]
            handles = [self.handle(self.editor, item) for item in items]
            return self.editor.cluster_mask(handles, keys, f"--mask {text!r}").cpu()
        if isinstance(spec, RectangleMask):
            return rectangle_mask(spec, self.config.size)
        if isinstance(spec, FileMask):
            return mask_from_file(spec.path, self.config.size, self.fit)
        if isinstance(spec, LandmarkMask):
            return self.landmark_mask(spec, items, field)
        assert isinstance(spec, PartMask)
        if self.data is None:
            raise EditingError(f"{field} {text!r}: part names need --data DATASET with part masks")
        if not self.part_names:
            raise EditingError(f"{field} {text!r}: dataset {self.data} has no part masks")
        maps = [item.label_map for item in items if item.label_map is not None]
        if not maps:
            raise EditingError(
                f"{field} {text!r}: part names need the source or reference to be a dataset item SPLIT:INDEX"
            )
        return mask_from_parts(maps, self.part_names, spec, self.config.size)

    def landmarks(self, item: InputItem, field: str = "mask") -> Any:
        """The item's face landmarks (in model pixels): known from its alignment, else detected once on its image
        (shown to the detector at 256 px or more: FaceMesh's landmark model works on a 256-px face crop)."""
        if item.landmarks is None:
            from stylemapgan.photos import PhotoError, make_detector

            if item.image is None:
                raise EditingError(f"{field}: landmark parts need an image, {item.origin} is a stylemap")
            pil = Image.fromarray(to_uint8(item.image)[0])
            scale = max(1, -(-256 // pil.width))
            try:
                if self._detector is None:
                    self._detector = make_detector(self.landmark_model)
                big = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.LANCZOS)
                found = self._detector.detect(big)
            except PhotoError as exc:
                raise EditingError(f"{field}: {exc}") from None
            if not found:
                raise EditingError(f"{item.origin}: no face found for the landmark parts ({field}); align it first")
            item.landmarks = max(found, key=lambda f: f.extent).mapped(lambda p: p / scale)
        return item.landmarks

    def landmark_mask(self, spec: LandmarkMask, items: list[InputItem], field: str = "mask") -> torch.Tensor:
        """Face parts drawn from the landmarks of every given item with an image (source and reference: union)."""
        from stylemapgan.photos.masks import landmark_mask

        faces = [item for item in items if item.image is not None or item.landmarks is not None]
        if not faces:
            raise EditingError(f"{field}: landmark parts need an image (not only stylemaps)")
        mask = torch.zeros(1, 1, self.config.size, self.config.size)
        for item in faces:
            drawn = landmark_mask(self.landmarks(item, field), spec.names, self.config.size)
            mask = torch.maximum(mask, torch.from_numpy(drawn)[None, None])
        return mask

    @staticmethod
    def handle(editor: BaseEditor, item: InputItem) -> str:
        """Register the item with the editor (encode an image, or add a saved code) -> handle."""
        if item.stylemap is not None:
            return editor.add_code(item.stylemap)
        assert item.image is not None
        return editor.encode(item.image)


def labelled_stylemaps(
    resolver: InputResolver, editor: BaseEditor, split: str, limit: int | None, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Encode a dataset split (first `limit` images) -> (codes on CPU in the layout directions are fitted in,
    `editor.direction_codes`: stylemaps [N, C, s, s] or W+ latents; labels [N, L], label meta). Encodings bypass
    the cache (bulk data: `editor.encode_codes`)."""
    from tqdm.auto import tqdm

    labels_meta = resolver.meta().get("labels") or {}
    if not labels_meta:
        raise EditingError(f"{resolver.data}: this dataset has no labels")
    ds = resolver.dataset(split, labels=True)
    n = len(ds) if limit is None else min(limit, len(ds))
    if n == 0:
        raise EditingError(f"{resolver.data}: split {split!r} is empty")
    stylemaps, labels = [], []
    batch: list[torch.Tensor] = []

    def flush() -> None:
        if batch:
            with torch.no_grad():
                codes = editor.encode_codes(torch.cat(batch).to(editor.device))
                stylemaps.append(editor.direction_codes(codes).cpu())
            batch.clear()

    for i in tqdm(range(n), desc=f"encode {split}", disable=not progress):
        record = ds[i]
        batch.append(resolver.to_model_size(record["image"]))
        labels.append(record["labels"])
        if len(batch) >= editor.batch_size:
            flush()
    flush()
    return torch.cat(stylemaps), torch.stack(labels), labels_meta


def label_column(labels_meta: dict[str, Any], spec: str) -> tuple[str, int, str, str | None, list[str]]:
    """'NAME' or 'NAME=VALUE' -> (name, column, kind, value, vocab); unknown names list the known ones."""
    name, _, value = spec.partition("=")
    names = list(labels_meta.get("names", []))
    if name not in names:
        shown = ", ".join(names[:40]) + (" ..." if len(names) > 40 else "")
        raise EditingError(f"attribute {name!r}: not a label of this dataset (labels: {shown})")
    kind = labels_meta.get("kinds", {}).get(name, "float")
    vocab = list(labels_meta.get("vocab", {}).get(name, []))
    return name, names.index(name), kind, (value or None), vocab

