"""Files of the SemanticStyleGAN family that are not checkpoints: saved official latents and segmentation maps.

Latents: the official inversion saves W+ latents as `.npy` [1, 28, 512] (spec section 10), and the official
`forward` takes a list of latents. `as_w_plus` accepts exactly the official input forms that are deterministic:
- one [N, D] array, or a list of one (the official `g([w])`): the same w in every slot;
- [N, n_latent, D] (W+, 28 vectors) or [N, n_latent_expanded, D] (one vector per local layer, 130): as they are;
- a list of n_latent or n_latent_expanded arrays [N, D] (the official list form): stacked along the slot axis.
A list of exactly 2 is refused: the official code mixes those at random per part, a different image every call.
`.npy` holds one array; `.npz` written by `np.savez(path, *latents)` holds the list form. The latents are w
(after the mapping network), as the official loaders use them (`input_is_latent=True`).

Segmentation maps: `segmentation_image` turns the generator's K-channel output into a palette PNG whose pixel
values are the class indices (the official label format: 0 = background) and whose palette colours them.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stylemapgan.semantic.config import SemanticConfig
from stylemapgan.semantic.latents import LatentLayoutError

LatentInput = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]


def _tensor(value: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        if not np.issubdtype(value.dtype, np.floating):
            raise LatentLayoutError(f"{what}: expected floating-point latents, got dtype {value.dtype}")
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise LatentLayoutError(f"{what}: expected floating-point latents, got {type(value).__name__}")
    return value.float()


def _forms(config: SemanticConfig) -> str:
    d, n_w, n_e = config.style_dim, config.n_latent, config.n_latent_expanded
    return (f"[N, {d}], [N, {n_w}, {d}] (W+), [N, {n_e}, {d}] (expanded), "
            f"or a list of 1, {n_w} or {n_e} arrays [N, {d}]")


def as_w_plus(config: SemanticConfig, latents: LatentInput, what: str = "latents") -> torch.Tensor:
    """Any accepted official latent form -> [N, n_latent, D] or [N, n_latent_expanded, D] float32 (see module)."""
    d, slots = config.style_dim, (config.n_latent, config.n_latent_expanded)
    if isinstance(latents, Sequence) and not isinstance(latents, torch.Tensor | np.ndarray):
        items = [_tensor(v, f"{what}[{i}]") for i, v in enumerate(latents)]
        shapes = [list(t.shape) for t in items]
        if not items or any(t.ndim != 2 or t.shape != items[0].shape or t.shape[1] != d for t in items):
            raise LatentLayoutError(f"{what}: a list of {len(items)} arrays of shapes {shapes[:3]}"
                                    f"{' ...' if len(shapes) > 3 else ''}; accepted: {_forms(config)}")
        if len(items) == 2:
            raise LatentLayoutError(f"{what}: a list of 2 latents is the official random part-wise mixing (a "
                                    f"different image every call); accepted: {_forms(config)}")
        if len(items) == 1:
            out = items[0].unsqueeze(1).expand(-1, config.n_latent, -1)
        elif len(items) in slots:
            out = torch.stack(items, dim=1)
        else:
            raise LatentLayoutError(f"{what}: a list of {len(items)} latents; accepted: {_forms(config)}")
    else:
        t = _tensor(latents, what)
        if t.ndim == 2 and t.shape[1] == d:
            out = t.unsqueeze(1).expand(-1, config.n_latent, -1)
        elif t.ndim == 3 and t.shape[1] in slots and t.shape[2] == d:
            out = t
        else:
            raise LatentLayoutError(f"{what}: shape {list(t.shape)}; accepted: {_forms(config)}")
    if out.shape[0] < 1:
        raise LatentLayoutError(f"{what}: no latents (batch of 0)")
    if not torch.isfinite(out).all():
        raise LatentLayoutError(f"{what}: contains NaN or infinite values")
    return out.contiguous()


def load_official_latents(path: str | os.PathLike[str], config: SemanticConfig) -> torch.Tensor:
    """Saved official latents (`.npy`, or `.npz` holding the list form) -> W+ / expanded latents (see module).

    Never unpickles: object arrays are refused. Errors are one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise LatentLayoutError(f"{path}: no such file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LatentLayoutError(f"{path}: not a NumPy .npy / .npz file of latents ({first})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            if len(names) == 1:
                value: LatentInput = loaded[names[0]]
            else:
                order = [f"arr_{i}" for i in range(len(names))]
                if sorted(names) != sorted(order):
                    raise LatentLayoutError(f"{path}: an .npz list of latents holds arr_0 .. arr_N-1 "
                                            f"(np.savez(path, *latents)); found {', '.join(sorted(names)[:5])}")
                try:
                    value = [loaded[name] for name in order]
                except ValueError as exc:
                    raise LatentLayoutError(f"{path}: {exc}") from None
    else:
        value = loaded
    return as_w_plus(config, value, str(path))


# ---- segmentation maps ------------------------------------------------------------------------------------

# Background black, then distinct colours (the first 13 chosen for the 13 face classes); more classes repeat
# the table with a shade shift, so any K gets a fixed colour per index.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (204, 153, 102), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
    (170, 110, 40), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)


def class_color(index: int) -> tuple[int, int, int]:
    """The fixed colour of class `index` (0, the background, is black)."""
    if index < len(PALETTE):
        return PALETTE[index]
    base = PALETTE[1 + (index - 1) % (len(PALETTE) - 1)]
    shift = 40 * ((index - 1) // (len(PALETTE) - 1))
    return tuple((c + shift) % 256 for c in base)  # type: ignore[return-value]


def segmentation_labels(segmentation: torch.Tensor) -> torch.Tensor:
    """[K, H, W] (or [N, K, H, W]) segmentation logits -> class indices by argmax over K (uint8)."""
    return segmentation.argmax(dim=-3).to(torch.uint8)


def segmentation_image(segmentation: torch.Tensor) -> Image.Image:
    """[K, H, W] segmentation logits -> a palette ("P") image: pixel = class index, palette = `class_color`."""
    if segmentation.ndim != 3 or not 1 <= segmentation.shape[0] <= 256:
        raise ValueError(f"segmentation: expected [K, H, W] with K <= 256, got {list(segmentation.shape)}")
    labels = segmentation_labels(segmentation.detach().cpu()).numpy()
    image = Image.fromarray(labels)  # "L"; putpalette makes it "P" with these colours
    image.putpalette([c for k in range(256) for c in class_color(k)])
    return image


def segmentation_png(segmentation: torch.Tensor) -> bytes:
    """[K, H, W] segmentation logits -> PNG bytes of `segmentation_image`."""
    buffer = io.BytesIO()
    segmentation_image(segmentation).save(buffer, format="PNG")
    return buffer.getvalue()


def latents_npy(latents: torch.Tensor) -> bytes:
    """Latents [N, n, D] -> `.npy` bytes (float32), the official saved-latent format `load_official_latents` reads."""
    buffer = io.BytesIO()
    np.save(buffer, latents.detach().float().cpu().numpy(), allow_pickle=False)
    return buffer.getvalue()
