"""Turn a training checkpoint into a small inference model: EMA generator + encoder, the truncation centre,
and a model card (data, config, training budget, metrics) in the file's provenance and as Markdown."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from stylemapgan.checkpoint.io import (
    Checkpoint,
    CheckpointError,
    atomic_write_bytes,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
)
from stylemapgan.checkpoint.models import build_network
from stylemapgan.networks import parameter_counts


def release_model(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    name: str,
    description: str = "",
    metrics: dict[str, Any] | None = None,
    mean_count: int = 5000,
    samples: str | os.PathLike[str] | None = None,
) -> Checkpoint:
    src = Path(source)
    ckpt = load_checkpoint(src)
    for net in ("g_ema", "e_ema"):
        if net not in ckpt.networks:
            raise CheckpointError(f"{src}: has no {net!r} network to release")
    generator = build_network(ckpt, "g_ema")
    mean = generator.mean_stylemap(mean_count, seed=0)
    metrics = dict(metrics or {})
    if samples is not None:
        metrics["bundled_samples_recon_mse"] = samples_reconstruction_mse(ckpt, samples)
    training = ckpt.training or {}
    card: dict[str, Any] = {
        "name": name,
        "description": description,
        "released_from": src.name,
        "released_from_sha256": file_sha256(src),
        "iterations": training.get("iteration", ckpt.provenance.get("iterations")),
        "images_seen": ckpt.provenance.get("images_seen"),
        "training_data": ckpt.provenance.get("data"),
        "train_config": training.get("train_config"),
        "trained_on_device": ckpt.provenance.get("device"),
        "trained_with": {k: ckpt.provenance.get(k) for k in ("stylemapgan_version", "torch_version")},
        "metrics": metrics,
    }
    provenance = {**ckpt.provenance, "source": f"release of {src.name}", "card": card}
    released = Checkpoint(
        ckpt.config, {"g_ema": ckpt.networks["g_ema"], "e_ema": ckpt.networks["e_ema"]},
        training=None, provenance=provenance, extra={"mean_stylemap": mean.cpu()},
    )
    save_checkpoint(out, released)
    atomic_write_bytes(Path(out).with_suffix(".md"), card_markdown(card, ckpt).encode())
    return released


@torch.no_grad()
def samples_reconstruction_mse(ckpt: Checkpoint, samples: str | os.PathLike[str]) -> float:
    """Encoder-projection MSE (images in [-1, 1]) over a sample dataset's test split, at the model's size."""
    from stylemapgan.data import open_dataset
    from stylemapgan.training.trainer import fit_to_model

    data = open_dataset(samples, split="test")
    images = fit_to_model(torch.stack([data[i] for i in range(len(data))]), ckpt.config.size)
    rec = build_network(ckpt, "g_ema").decode(build_network(ckpt, "e_ema")(images))
    return float(torch.mean((rec - images) ** 2))


def card_markdown(card: dict[str, Any], ckpt: Checkpoint) -> str:
    counts = parameter_counts(ckpt.config)
    lines = [f"# Model card: {card['name']}", "", card.get("description") or "", "",
             "## Config", "", "```json", json.dumps(ckpt.config.to_dict(), indent=2), "```", "",
             f"Parameters: generator {counts['generator'] / 1e6:.2f}M, encoder {counts['encoder'] / 1e6:.2f}M "
             "(the discriminator is not shipped).", "",
             "## Training", "",
             f"- iterations: {card.get('iterations')}, images seen: {card.get('images_seen')}",
             f"- data: {json.dumps(card.get('training_data'))}",
             f"- device: {card.get('trained_on_device')}",
             f"- train config: `{json.dumps(card.get('train_config'))}`", "",
             "## Metrics", ""]
    metrics = card.get("metrics") or {}
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in metrics.items()]
    else:
        lines.append("Not evaluated yet.")
    return "\n".join(lines) + "\n"
