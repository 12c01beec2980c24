"""What the metrics need from a model, for every family: chosen by the editor's capabilities, never by its name.

The metrics run one protocol on any editor (`editing.base.BaseEditor`); the few things that differ between kinds
of model live here, behind `ScoredModel`:

- `generated(seeds)`: random images, no truncation (`editor.sample`, shared by every family);
- `encode(images, method, ...)`: codes of real images through the editor's encode door: the encoder alone
  (`encode_codes`) or an optimising projection (`project`);
- `render(codes)`: images of a batch of codes; `lerp` interpolates codes linearly (FID-lerp);
- `edit_plan(mode)` and `part_edit(part, plan)`: the local edit of the local-editing metric;
- `part_control_refusal()` and `swapped_part(a, b, part)`: the part swap of part_control on sampled codes (None:
  the model can; else why not).

Two kinds exist:

- `MaskPasteModel` (capabilities.masks; StyleMapGAN): codes are stylemaps; the local edit pastes the reference's
  region (the union of the two part masks) into the source's stylemaps in a latent mode ("w" or "w_plus"), as
  `Editor.local_edit` at strength 1. The encoder path is the eager encoder (no cache), exactly as before.
- `PartSwapModel` (capabilities.parts, no masks; SemanticStyleGAN): codes are W+ latents (base codes, then a
  shape and a texture code per part); the local edit swaps the part's shape and texture codes from the
  reference (`SemanticEditor.swap_parts`, "both", strength 1), the part named like the dataset's mask. FID-lerp
  interpolates the whole W+ code (every vector, base codes included), as `SemanticEditor.interpolate` does.

The pixel masks that score an edit are the dataset's part masks for both kinds (`local_editing.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from stylemapgan.editing.base import BaseEditor
from stylemapgan.editing.editor import Editor, edit_mode
from stylemapgan.editing.errors import EditingError
from stylemapgan.editing.projection import ProjectionOptions, project, projection_method
from stylemapgan.metrics.errors import MetricsError
from stylemapgan.metrics.local_editing import batched_local_edit

# (source codes [B, ...], reference codes [B, ...], union masks bool [B, size, size]) -> edited images [B, 3, S, S]
PairEdit = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

PART_SWAP = "part_swap"


@dataclass(frozen=True)
class EditPlan:
    """How local_edit edits, as the report records it: `mode` (settings and "edit_mode"), `pooling` (of the pixel
    mask onto the latent grid; None when no pixel mask enters the edit) and `description` (for the Markdown)."""

    mode: str
    pooling: str | None
    description: str


class ScoredModel:
    """The metrics' view of an editor (see the module docstring); subclasses implement the codes."""

    code_space: str  # in words, for the report: "stylemaps", "W+ latents"

    def __init__(self, editor: BaseEditor) -> None:
        self.editor = editor

    @property
    def family(self) -> str:
        return self.editor.capabilities.family

    def generated(self, seeds: Sequence[int]) -> torch.Tensor:
        """Random images of seeds, no truncation."""
        return self.editor.sample(seeds, trunc=1.0).images

    def encode(self, images: torch.Tensor, method: str = "encoder", projection: ProjectionOptions | None = None,
               perceptual: nn.Module | None = None) -> torch.Tensor:
        """Codes of images [N, 3, size, size] on the editor's device by a projection method."""
        raise NotImplementedError

    def render(self, codes: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, size, size] of codes [N, *code_shape]."""
        raise NotImplementedError

    def lerp(self, a: torch.Tensor, b: torch.Tensor, lam: np.ndarray) -> torch.Tensor:
        """(1 - l) a + l b per row (FID-lerp), in the family's code space."""
        lam_t = torch.tensor(lam, dtype=torch.float32, device=self.editor.device).view(-1, *[1] * (a.ndim - 1))
        return (1 - lam_t) * a + lam_t * b

    def check_encoding(self, images: torch.Tensor, method: str,
                       perceptual: Callable[[], nn.Module | None] = lambda: None) -> None:
        """Raise (EditingError or ValueError) when this model cannot encode images by `method`: called on one
        test image before any metric runs, so a model that cannot is refused before minutes of FID. perceptual:
        gives the LPIPS network the metrics optimise with (built only by a model that probes)."""

    def edit_plan(self, mode: str | None) -> EditPlan:
        """The local edit for `--edit-mode` (None: the model's default); a MetricsError naming the flag otherwise."""
        raise NotImplementedError

    def part_edit(self, part: str, plan: EditPlan) -> PairEdit:
        """The batched edit of one part (a name or an a+b union of the masks' part names)."""
        raise NotImplementedError

    def part_control_refusal(self) -> str | None:
        """Why part_control cannot score this model (None: it can). It needs codes with per-part rows to swap and a
        segmentation of every render."""
        caps = self.editor.capabilities
        missing = [what for ok, what in ((caps.has_parts and caps.shape_texture, "no per-part shape and texture codes"
                                          " to swap"), (caps.segmentation, "no segmentation of its renders")) if not ok]
        return f"a {self.family} model has {' and '.join(missing)}" if missing else None

    def swapped_part(self, source: torch.Tensor, reference: torch.Tensor, part: str) -> torch.Tensor:
        """Images [B, 3, S, S] of the source codes [B, ...] with the model's `part`'s shape and texture codes taken
        from the reference codes [B, ...] (part_control)."""
        raise MetricsError(f"--metrics part_control: {self.part_control_refusal() or 'no part swap'}")


class MaskPasteModel(ScoredModel):
    """Models that paste pixel masks in a latent mode (StyleMapGAN's `Editor`)."""

    code_space = "stylemaps"

    def __init__(self, editor: BaseEditor) -> None:
        super().__init__(editor)
        self.mask_editor = cast(Editor, editor)

    def encode(self, images: torch.Tensor, method: str = "encoder", projection: ProjectionOptions | None = None,
               perceptual: nn.Module | None = None) -> torch.Tensor:
        """Straight through the projection, not the Editor's cache (no cache entries for a whole pool); the
        encoder alone is one eager pass."""
        ed = self.mask_editor
        plan = projection_method(method)
        images = images.to(ed.device)
        if plan.optimises:
            mean = ed.mean_stylemap() if plan.needs_mean else None
            return project(ed.generator, ed.encoder, images, method, projection, perceptual, mean).stylemaps.detach()
        with torch.no_grad():
            return ed.encoder(images)

    def render(self, codes: torch.Tensor) -> torch.Tensor:
        return self.mask_editor.decode(codes)

    def edit_plan(self, mode: str | None) -> EditPlan:
        modes = self.editor.capabilities.latent_modes
        mode = mode or "w_plus"  # the official CelebA-HQ protocol
        if mode not in modes:
            raise MetricsError(f"--edit-mode {mode}: a {self.family} model pastes in {' or '.join(modes)}")
        pooling = edit_mode(mode).default_pooling
        return EditPlan(mode, pooling, f"{mode} mode, {pooling} pooling")

    def part_edit(self, part: str, plan: EditPlan) -> PairEdit:
        ed = self.mask_editor
        return lambda src, ref, union: batched_local_edit(ed, src, ref, union.float(), plan.mode)


class PartSwapModel(ScoredModel):
    """Models with named parts and no pixel-mask edit (SemanticStyleGAN's `SemanticEditor`)."""

    def __init__(self, editor: BaseEditor) -> None:
        super().__init__(editor)
        self.part_editor: Any = editor  # a SemanticEditor: swap_latents, render, part_index
        space = getattr(editor, "encoder_space", "w+")
        self.code_space = "expanded latents" if space == "expanded" else "W+ latents"

    def encode(self, images: torch.Tensor, method: str = "encoder", projection: ProjectionOptions | None = None,
               perceptual: nn.Module | None = None) -> torch.Tensor:
        """The editor's inversion: `encode_codes` (one pass) or `project` (optimising; its latents)."""
        if projection_method(method).optimises:
            result, _ = self.editor.project(images, method, projection, perceptual)  # type: ignore[attr-defined]
            return result.stylemaps.detach()
        return self.editor.encode_codes(images)

    def check_encoding(self, images: torch.Tensor, method: str,
                       perceptual: Callable[[], nn.Module | None] = lambda: None) -> None:
        plan = projection_method(method)
        steps = ProjectionOptions(steps=1)  # one step is enough to know the door is open
        self.encode(images[:1], method, steps, perceptual() if plan.optimises else None)

    def render(self, codes: torch.Tensor) -> torch.Tensor:
        return self.part_editor.render(codes).images

    def edit_plan(self, mode: str | None) -> EditPlan:
        if mode not in (None, PART_SWAP):
            raise MetricsError(f"--edit-mode {mode}: a {self.family} model's local edit is the part swap "
                               f"({PART_SWAP}); leave --edit-mode out")
        return EditPlan(PART_SWAP, None, "part swap: the reference's shape and texture codes of the part")

    def model_parts(self, part: str) -> tuple[int, ...]:
        """The model's parts named like the masks' part (or a+b union)."""
        try:
            return tuple(self.part_editor.part_index(name, "mask part") for name in part.split("+"))
        except EditingError as exc:
            raise MetricsError(f"{exc}; local_edit swaps the model's part named like each mask part (choose the "
                               "parts with --parts)") from None

    def part_edit(self, part: str, plan: EditPlan) -> PairEdit:
        parts = self.model_parts(part)

        def swap(src: torch.Tensor, ref: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
            return self._swap_render(src, ref, parts)

        return swap

    def _swap_render(self, src: torch.Tensor, ref: torch.Tensor, parts: tuple[int, ...]) -> torch.Tensor:
        """Renders of each source with `parts`' shape and texture codes from its reference (`swap_latents`)."""
        from stylemapgan.editing.semantic import PartSwap

        ed = self.part_editor
        latents = [
            ed.swap_latents(ed.add_code(s[None]), [PartSwap(ed.add_code(r[None]), parts, "both")], 1.0)
            for s, r in zip(src, ref, strict=True)
        ]
        return self.render(torch.cat(latents))

    def swapped_part(self, source: torch.Tensor, reference: torch.Tensor, part: str) -> torch.Tensor:
        return self._swap_render(source, reference, (self.part_editor.part_index(part),))


def scored_model(editor: BaseEditor) -> ScoredModel:
    """The metrics' view of an editor, by what it can do."""
    caps = editor.capabilities
    if caps.masks:
        return MaskPasteModel(editor)
    if caps.has_parts:
        return PartSwapModel(editor)
    raise MetricsError(f"the metrics cannot score a {caps.family} model: it neither pastes masks nor has parts")
