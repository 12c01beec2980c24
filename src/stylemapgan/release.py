"""Turn a training checkpoint into a small inference model: the EMA networks an inference model of its family
needs (StyleMapGAN and SemanticStyleGAN: generator + encoder), the family's truncation centre, and a model card
(data, config, training budget, metrics) in the file's provenance and as Markdown.

What ships is the family's answer (`ModelFamily.released_roles`, `release_extra`), and the card's sample-face MSE
goes through the family's editor (`metrics.scored_model`: encode, then render), the door `stylemapgan eval` uses,
so nothing here tests a family's name. It sits above `metrics`, so it is not part of `checkpoint`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from stylemapgan.checkpoint import Checkpoint, CheckpointError, build_network, load_checkpoint, save_checkpoint
from stylemapgan.checkpoint.families import ModelFamily, family_of
from stylemapgan.data.dataset import fit_to_model, open_dataset
from stylemapgan.editing.base import editor_class
from stylemapgan.metrics.reconstruction import score_reconstructions
from stylemapgan.metrics.scored_model import PART_SWAP, scored_model
from stylemapgan.utils.files import atomic_write_bytes, file_sha256


def released_networks(family: ModelFamily, ckpt: Checkpoint, where: str) -> dict[str, str]:
    """Role -> the network a released model ships for it: the role's first (EMA) name, which the file must hold
    (a released model is for editing real images, so the encoder is not optional)."""
    shipped = {}
    for role in family.released_roles:
        names = family.roles.get(role) or family.optional_roles.get(role) or ()
        if not names or names[0] not in ckpt.networks:
            hint = (" (train one with `stylemapgan train-encoder`)" if role in family.optional_roles else "")
            raise CheckpointError(f"{where}: has no {names[0] if names else role!r} network ({role}) to release"
                                  f"{hint}")
        shipped[role] = names[0]
    return shipped


def release_model(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    name: str,
    description: str = "",
    metrics: dict[str, Any] | None = None,
    samples: str | os.PathLike[str] | None = None,
) -> Checkpoint:
    """Write the released model `out` (+ its card `out.md`). samples: the sample dataset shipped with the model
    (its encoder MSE goes in the card; its folder name is recorded, and resolves beside the model file)."""
    src = Path(source)
    ckpt = load_checkpoint(src)
    family = family_of(ckpt.config)
    shipped = released_networks(family, ckpt, str(src))
    modules = {role: build_network(ckpt, net) for role, net in shipped.items()}
    extra = dict(ckpt.extra)  # e.g. the part names of a SemanticStyleGAN model
    if family.release_extra is not None:
        extra.update(family.release_extra(modules["generator"]))
    released = Checkpoint(ckpt.config, {net: ckpt.networks[net] for net in shipped.values()}, training=None,
                          extra=extra)
    metrics = dict(metrics or {})
    if samples is not None:
        metrics["bundled_samples_recon_mse"] = samples_reconstruction_mse(released, samples)
    training = ckpt.training or {}
    card: dict[str, Any] = {
        "name": name,
        "family": family.title,
        "description": description,
        "released_from": src.name,
        "released_from_sha256": file_sha256(src),
        "iterations": training.get("iteration", ckpt.provenance.get("iterations")),
        "images_seen": ckpt.provenance.get("images_seen"),
        "training_data": ckpt.provenance.get("data"),
        "train_config": training.get("train_config"),
        "trained_on_device": ckpt.provenance.get("device"),
        "trained_with": {k: ckpt.provenance.get(k) for k in ("stylemapgan_version", "torch_version")},
        "trained_by": training.get("command", "train"),
        "training_history": training.get("history", []),  # settings changed on resume, up to this checkpoint
        "initialised_from": [_earlier_stage(event["initialised_from"]) for event in training.get("history", [])
                             if isinstance(event.get("initialised_from"), dict)],
        # networks a run took from another run (`train-encoder --encoder-from`): that run's record too
        "networks_from": [{**_earlier_stage(event["networks_from"]), "networks": event["networks_from"].get("networks")}
                          for event in training.get("history", []) if isinstance(event.get("networks_from"), dict)],
        "parameters": {role: sum(p.numel() for p in module.parameters()) for role, module in modules.items()},
        "truncation_center": family.truncation_center,
        "samples": Path(samples).name if samples is not None else None,
        "metrics": metrics,
    }
    released.provenance = {**ckpt.provenance, "source": f"release of {src.name}", "card": card}
    save_checkpoint(out, released)
    atomic_write_bytes(Path(out).with_suffix(".md"), card_markdown(card, ckpt).encode())
    return released


def _earlier_stage(origin: dict[str, Any]) -> dict[str, Any]:
    """What a run started from (a `train-encoder` run: the trained generator), as its history records it, plus that
    checkpoint's own training record when the file is still there unchanged (the card then tells both stages)."""
    stage = {k: origin.get(k) for k in ("path", "sha256", "iterations")}
    path = Path(str(origin.get("path")))
    if path.is_file() and file_sha256(path) == origin.get("sha256"):
        earlier = load_checkpoint(path)
        training = earlier.training or {}
        stage.update({"trained_by": training.get("command", "train"), "images_seen": earlier.provenance.get(
            "images_seen"), "training_data": earlier.provenance.get("data"),
            "train_config": training.get("train_config"), "training_history": training.get("history", [])})
    return stage


def _history_lines(history: list[dict[str, Any]]) -> list[str]:
    lines = []
    for event in history:
        changes = ", ".join(f"{k} {v['was']} -> {v['now']}" for k, v in event.get("resumed_with_changes", {}).items())
        if changes:
            lines.append(f"- from iteration {event['iteration']}: {changes}")
    return lines


@torch.no_grad()
def samples_reconstruction_mse(ckpt: Checkpoint, samples: str | os.PathLike[str]) -> float:
    """Encoder-projection MSE (images in [-1, 1]) over a sample dataset's test split, at the model's size, through
    the model's own editor (encode, render); the reconstruction clamped and rounded to 8 bits, as `stylemapgan
    eval`'s recon.mse."""
    data = open_dataset(samples, split="test")
    images = fit_to_model(torch.stack([data[i] for i in range(len(data))]), ckpt.config.size)
    model = scored_model(editor_class(family_of(ckpt.config)).from_loaded(ckpt, "model", "cpu"))
    rec = model.render(model.encode(images, "encoder"))
    return float(score_reconstructions(rec, images, None).mse.mean())


HEADLINE = [  # (label, metric key, target or None): what a user compares first
    ("FID (generated vs {split} split)", "fid.value", None),
    ("KID", "kid.mean", None),
    ("FID-lerp (interpolations)", "fid_lerp.value", None),
    ("reconstruction MSE, images in [-1, 1]", "recon.mse", "<= 0.02"),
    ("reconstruction LPIPS", "recon.lpips", None),
    ("local edit MSE_src (outside the mask, vs source)", "local_edit.mse_src", "< MSE_ref"),
    ("local edit MSE_ref (inside the mask, vs reference)", "local_edit.mse_ref", None),
    ("MSE on the bundled sample faces (tested)", "bundled_samples_recon_mse", None),
    ("part control, mean over parts (1: a part's codes take over its region; generator only)", "part_control.mean",
     None),
]


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def card_markdown(card: dict[str, Any], ckpt: Checkpoint) -> str:
    """The card as Markdown: headline metrics, the per-part local-edit table, then how it was trained and evaluated."""
    counts = card.get("parameters") or {}
    metrics = dict(card.get("metrics") or {})
    lines = [f"# Model card: {card['name']}", "", card.get("description") or "", "",
             f"Family: {card.get('family')}; truncation centre: {card.get('truncation_center')} (shipped in the file)."
             + (f" Sample faces: `{card['samples']}`." if card.get("samples") else ""), "", "## Metrics", ""]
    if not metrics:
        lines.append("Not evaluated yet.")
    else:
        lines += ["| metric | value | target |", "|---|---|---|"]
        for label, key, target in HEADLINE:
            if key in metrics:
                label = label.replace("{split}", str(metrics.get(f"{key.split('.')[0]}.real_split", "train")))
                lines.append(f"| {label} | {_fmt(metrics.pop(key))} | {target or ''} |")
        parts = sorted({k.split(".")[1] for k in metrics if k.startswith("local_edit.") and k.endswith(".mse_src")},
                       key=lambda part: list(metrics).index(f"local_edit.{part}.mse_src"))
        if parts:
            how = ("the reference's shape and texture codes of the part swapped into the source"
                   if metrics.get("local_edit.edit_mode") == PART_SWAP else
                   "the reference's part pasted into the source through its mask")
            control = any(k.startswith("part_control.") and k.endswith(".control") for k in metrics)
            lines += ["", f"Local edits per part ({how})" + (", and each part's control (`part_control`: sampled "
                      "pairs, generator only; n/a where no pair shows the part at the same pixels)" if control else "")
                      + ":", "", "| part | MSE_src | MSE_ref | MSE_src < MSE_ref |" + (" control |" if control else ""),
                      "|---|---|---|---|" + ("---|" if control else "")]
            for part in parts:
                src, ref = metrics.pop(f"local_edit.{part}.mse_src"), metrics.pop(f"local_edit.{part}.mse_ref", None)
                verdict = "n/a (not scored)" if src is None or ref is None else "yes" if src < ref else "NO"
                row = f"| {part} | {_fmt(src)} | {_fmt(ref)} | {verdict} |"
                if control:
                    row += f" {_fmt(metrics.pop(f'part_control.{part}.control', 'n/a'))} |"
                lines.append(row)
        if metrics:
            lines += ["", "Other values and settings: " + "; ".join(f"{k} = {_fmt(v)}" for k, v in metrics.items())
                      + "."]
    lines += ["", "## Config", "", "```json", json.dumps(ckpt.config.to_dict(), indent=2), "```", "",
              "Parameters: " + ", ".join(f"{role} {count / 1e6:.2f}M" for role, count in counts.items())
              + " (the discriminator is not shipped).", "",
              "## Training", "",
              f"- iterations: {card.get('iterations')} (`stylemapgan {card.get('trained_by', 'train')}`), "
              f"images seen: {card.get('images_seen')}",
              f"- data: {json.dumps(card.get('training_data'))}",
              f"- device: {card.get('trained_on_device')}",
              f"- train config (at release): `{json.dumps(card.get('train_config'))}`"]
    lines += _history_lines(card.get("training_history") or [])
    stages = [("Started from", stage) for stage in card.get("initialised_from") or []]
    stages += [(f"Took {', '.join(stage.get('networks') or [])} from", stage)
               for stage in card.get("networks_from") or []]
    for lead, stage in stages:
        lines += ["", f"{lead} `{Path(str(stage.get('path'))).name}` (sha256 {str(stage.get('sha256'))[:12]}..., "
                  f"{stage.get('iterations')} iterations):"]
        if "train_config" not in stage:
            lines.append("- (that checkpoint was not at hand at release: its own record is not in this card)")
            continue
        lines += [f"- `stylemapgan {stage.get('trained_by')}`, images seen: {stage.get('images_seen')}",
                  f"- data: {json.dumps(stage.get('training_data'))}",
                  f"- train config: `{json.dumps(stage.get('train_config'))}`"]
        lines += _history_lines(stage.get("training_history") or [])
    return "\n".join(lines) + "\n"
