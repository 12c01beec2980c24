"""The dataset card: the metadata record of a prepared dataset, rendered for people.

Metadata fields (JSON, key ``__meta__`` in the LMDB; ``read_meta`` returns it):

- ``name``, ``description``: what the dataset is.
- ``source``: dict, ``type`` ('folder', 'zip', 'official-lmdb', 'npm', 'debian', 'idx-files') and where from.
- ``licence``, ``attribution`` (text to reproduce, or null).
- ``count`` (images in the file), ``splits`` ({split name: image count}), ``split_seed``.
- ``sizes`` (resolutions stored), ``resize_filter`` ('lanczos' or 'box': FID depends on it), ``square``
  ('crop', 'pad' or 'native'), ``background`` (RGB used for transparency and padding).
- ``labels``: null, or ``{"names": [...], "kinds": {name: "binary"|"categorical"|"float"},
  "vocab": {categorical name: [value names, index = label value]}}``; the label matrix is float32 [count, L].
- ``masks``: null, or ``{"format": "label-map-png", "parts": [part names; index 0 is background], ...}``:
  one mode-L PNG per image and size whose pixel values index ``parts``.
- ``records``: whether per-image JSON records exist (source name, raw attributes such as a face record).
- ``skipped``: ``{"total": n, "by_reason": {reason: n}, "items": [{"source", "reason", "detail"}]}``.
- ``conversions``: ``{what was done to some inputs: n}`` (e.g. alpha-composited, exif-rotated).
- ``format``, ``format_version``, ``complete``, ``created_by``, ``build``: bookkeeping and generator options.
"""

from __future__ import annotations

from typing import Any


def _labels_line(meta: dict[str, Any]) -> str:
    labels = meta.get("labels")
    if not labels:
        return "none"
    names = labels.get("names", [])
    kinds = labels.get("kinds", {})
    shown = ", ".join(f"{n} ({kinds.get(n, '?')})" for n in names[:12])
    more = f", ... ({len(names)} in all)" if len(names) > 12 else ""
    return shown + more


def _masks_line(meta: dict[str, Any]) -> str:
    masks = meta.get("masks")
    if not masks:
        return "none"
    return f"{masks.get('format', '?')}: " + ", ".join(f"{i}={p}" for i, p in enumerate(masks.get("parts", [])))


def _source_line(meta: dict[str, Any]) -> str:
    source = meta.get("source") or {}
    rest = ", ".join(f"{k}={v}" for k, v in source.items() if k != "type" and not isinstance(v, dict | list))
    return f"{source.get('type', '?')}" + (f" ({rest})" if rest else "")


def card_lines(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, text) pairs shared by the terminal and Markdown renderings."""
    splits = meta.get("splits", {})
    skipped = meta.get("skipped") or {}
    lines = [
        ("name", str(meta.get("name", "?"))),
        ("description", str(meta.get("description", ""))),
        ("source", _source_line(meta)),
        ("licence", str(meta.get("licence", "unknown"))),
    ]
    if meta.get("attribution"):
        lines.append(("attribution", str(meta["attribution"])))
    lines += [
        (
            "images",
            f"{meta.get('count', '?')} ("
            + ", ".join(f"{k}: {splits[k]}" for k in sorted(splits, key=lambda k: (k != "train", k)))
            + ")",
        ),
        ("resolution", ", ".join(f"{s}x{s}" for s in meta.get("sizes", []))),
        ("resize filter", str(meta.get("resize_filter", "?"))),
        ("square", str(meta.get("square", "?"))),
        ("labels", _labels_line(meta)),
        ("masks", _masks_line(meta)),
    ]
    if skipped:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.get("by_reason", {}).items()))
        lines.append(("skipped", f"{skipped.get('total', 0)}" + (f" ({reasons})" if reasons else "")))
    if meta.get("conversions"):
        lines.append(("conversions", ", ".join(f"{k}: {v}" for k, v in sorted(meta["conversions"].items()))))
    return lines


def card_text(meta: dict[str, Any], path: str = "") -> str:
    """Plain-text card for ``stylemapgan datasets info``."""
    lines = [f"dataset: {path}"] if path else []
    width = max(len(k) for k, _ in card_lines(meta))
    lines += [f"{k + ':':<{width + 1}} {v}" for k, v in card_lines(meta)]
    return "\n".join(lines)


def card_markdown(meta: dict[str, Any]) -> str:
    """CARD.md written beside the data, for people browsing the folder."""
    out = [f"# Dataset card: {meta.get('name', '?')}", ""]
    for key, value in card_lines(meta):
        out.append(f"- **{key}**: {value}")
    items = (meta.get("skipped") or {}).get("items") or []
    if items:
        out += ["", "## Skipped inputs", ""]
        out += [f"- `{it['source']}`: {it['reason']} ({it['detail']})" for it in items[:200]]
        if len(items) > 200:
            out.append(f"- ... {len(items) - 200} more (see the metadata record)")
    out += ["", "Read it with `stylemapgan datasets info PATH` or `stylemapgan.data.PreparedDataset(PATH)`.", ""]
    return "\n".join(out)
