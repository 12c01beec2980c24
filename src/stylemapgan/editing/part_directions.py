"""Attribute directions inside one SemanticStyleGAN part's latent subspace (the rows of its shape and/or texture
code in W+, `editing.parts.part_rows`), so that moving along one changes that part only.

Every direction is a W+ tensor [n_latent, D] that is zero outside its rows and has L2 norm 1 over all entries,
stored and loaded like StyleMapGAN's (`editing.directions`: same file format, same `Direction`), with its part
and subspace in the metadata. With no part (None) the rows are the whole W+ code.

- "pca": principal components of w = mapping(z) of random z, placed in the chosen rows (the sampled W+ has the
  same w in every row, so for "both" the component is (v, v) / sqrt(2): GANSpace in W, applied to one part);
- "sefa": closed-form factorisation of the part's own local generator: every local layer of part k reads one W+
  row through its modulation s = A_l w + b (A_l = `modulation_weight[k]` x its equalised-lr scale). Stacking the
  A_l of the layers that read the chosen rows (each in its row's column block) gives A; the eigenvectors of
  A^T A with the largest eigenvalues change that part's modulations most;
- supervised: a linear classifier (`editing.directions.fit_linear_classifier`) on the chosen rows of labelled
  latents; its unit normal, towards the positive class.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stylemapgan.editing.directions import Direction, LinearClassifier, fit_linear_classifier, pca_directions
from stylemapgan.editing.errors import EditingError
from stylemapgan.editing.parts import check_subspace, part_rows
from stylemapgan.semantic.config import SemanticConfig
from stylemapgan.semantic.generator import SemanticGenerator
from stylemapgan.semantic.latents import expand_index


def subspace_rows(config: SemanticConfig, part: int | None, what: str = "both") -> list[int]:
    """W+ rows of a part's subspace; every row when part is None."""
    if part is None:
        return list(range(config.n_latent))
    return part_rows(config, part, check_subspace(what))


def embed_rows(config: SemanticConfig, rows: Sequence[int], vector: torch.Tensor) -> torch.Tensor:
    """[len(rows), D] (or flat) -> W+ [n_latent, D], zero elsewhere, unit L2 norm."""
    out = torch.zeros(config.n_latent, config.style_dim, dtype=torch.float32)
    out[list(rows)] = vector.reshape(len(rows), config.style_dim).float()
    norm = out.norm()
    if float(norm) == 0:
        raise EditingError("direction: is zero in its part's subspace")
    return out / norm


def _meta(part_name: str | None, what: str, rows: Sequence[int]) -> dict[str, object]:
    return {"part": part_name, "subspace": what if part_name is not None else "all", "rows": list(rows)}


@torch.no_grad()
def sample_w(generator: SemanticGenerator, count: int, seed: int = 0, batch: int = 500) -> torch.Tensor:
    """w [count, D] of random z on the generator's device, deterministic by seed."""
    if count < 2:
        raise EditingError(f"samples: need at least 2 for PCA, got {count}")
    gen = torch.Generator().manual_seed(seed)
    device = generator.local.pos_embed.weight.device
    out = []
    for start in range(0, count, batch):
        z = torch.randn(min(batch, count - start), generator.config.style_dim, generator=gen).to(device)
        out.append(generator.mapping(z))
    return torch.cat(out)


def part_pca_directions(
    config: SemanticConfig, w: torch.Tensor, k: int, part: int | None, what: str = "both",
    part_name: str | None = None, prefix: str = "pca",
) -> list[Direction]:
    """Top-k principal components of sampled w [M, D], each placed in the part's rows (see module)."""
    rows = subspace_rows(config, part, what)
    samples = w.detach().float().cpu().unsqueeze(1).expand(-1, len(rows), -1)
    out = []
    for d in pca_directions(samples, k, prefix):
        out.append(Direction(d.name, embed_rows(config, rows, d.vector), {**d.meta, **_meta(part_name, what, rows)}))
    return out


def part_sefa_directions(
    generator: SemanticGenerator, k: int, part: int | None, what: str = "both", part_name: str | None = None,
    prefix: str = "sefa",
) -> list[Direction]:
    """Closed-form factorisation of the modulations that read the part's rows (see module)."""
    config = generator.config
    rows = subspace_rows(config, part, what)
    column = {row: i for i, row in enumerate(rows)}
    index = expand_index(config).tolist()
    d = config.style_dim
    blocks = []
    for slot, row in enumerate(index):
        if row not in column:
            continue
        cls, layer = divmod(slot, config.local_layers)
        module = generator.local.layers[layer]
        a = module.modulation_weight[cls].detach().double() * module.modulation_scale  # [in, D]
        block = a.new_zeros(a.shape[0], len(rows) * d)
        block[:, column[row] * d : (column[row] + 1) * d] = a
        blocks.append(block)
    stacked = torch.cat(blocks)
    eigenvalues, eigenvectors = torch.linalg.eigh(stacked.T @ stacked)
    order = torch.argsort(eigenvalues, descending=True)[: min(k, len(rows) * d)]
    out = []
    for rank, i in enumerate(order.tolist()):
        v = eigenvectors[:, i]
        v = v * torch.sign(v[v.abs().argmax()])
        meta = {"kind": "sefa", "component": rank, "eigenvalue": float(eigenvalues[i]),
                "factorised": "modulation_weight of the local layers reading these rows, stacked per row; "
                              "eigenvectors of A^T A", **_meta(part_name, what, rows)}
        out.append(Direction(f"{prefix}_{rank}", embed_rows(config, rows, v), meta))
    return out


def part_supervised_direction(
    config: SemanticConfig, name: str, latents: torch.Tensor, labels: torch.Tensor, part: int | None,
    what: str = "both", part_name: str | None = None, method: str = "svm", l2: float = 1e-3,
) -> tuple[Direction, LinearClassifier]:
    """A linear classifier on the part's rows of W+ latents [N, n_latent, D] with boolean labels [N]."""
    if latents.ndim != 3 or tuple(latents.shape[1:]) != (config.n_latent, config.style_dim):
        raise EditingError(f"latents: expected W+ [N, {config.n_latent}, {config.style_dim}], "
                           f"got {list(latents.shape)}")
    rows = subspace_rows(config, part, what)
    features = latents[:, rows].flatten(1)
    classifier = fit_linear_classifier(features, labels, method, l2)
    meta = {"kind": "supervised", "method": method, "l2": l2, "examples": int(labels.numel()),
            "positives": int(labels.sum()), "train_accuracy": classifier.accuracy(features, labels),
            **_meta(part_name, what, rows)}
    return Direction(name, embed_rows(config, rows, classifier.normal), meta), classifier
