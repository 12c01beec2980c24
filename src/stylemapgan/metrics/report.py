"""Evaluation reports: the JSON record (everything needed to reproduce the numbers) and a Markdown rendering.

`write_report(report, "out/report.json")` writes `report.json` and `report.md` beside it, each atomically.
The Markdown starts with the metrics table (value, count, wall time), then the reproduction details:
checkpoint hash, dataset card, feature network hash, settings and seeds, versions, timings.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from stylemapgan.utils.files import atomic_write_text

_ROWS = (
    # (metric key, label, value fields, count field)
    ("fid", "FID", ("value",), "num_generated"),
    ("kid", "KID", ("mean", "std"), "num_generated"),
    ("fid_lerp", "FID-lerp", ("value",), "num_generated"),
    ("recon", "Reconstruction MSE", ("mse",), "num"),
    ("recon", "Reconstruction LPIPS", ("lpips",), "num"),
    ("local_edit", "Local editing MSE_src", ("mse_src",), "pairs_per_part"),
    ("local_edit", "Local editing MSE_ref", ("mse_ref",), "pairs_per_part"),
    ("part_control", "Part control (mean of parts)", ("mean",), "pairs"),
)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.3e}"
        return f"{value:.{digits}f}"
    return str(value)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean(obj: Any) -> Any:
    """NaN / inf -> None, recursively: JSON has no NaN, and a diverged model must still get its report."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def metric_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, value, count, wall time) rows for the chosen metrics."""
    rows = []
    for key, label, fields, count_field in _ROWS:
        entry = report.get("metrics", {}).get(key)
        if entry is None:
            continue
        if key == "kid":
            value = f"{_fmt(entry['mean'])} ± {_fmt(entry['std'])}"
        else:
            value = _fmt(entry.get(fields[0]))
        count = str(entry.get(count_field, ""))
        if key == "local_edit":
            count = f"{entry.get('parts_scored', 0)} parts x <= {count} pairs"
        elif key == "part_control":
            count = f"{entry.get('parts_scored', 0)} parts x {count} sampled pairs"
        elif key in ("fid", "kid", "fid_lerp"):
            count = f"{count} gen / {entry.get('num_real')} real ({entry.get('real_split')})"
        rows.append((label, value, count, f"{entry.get('wall_s', 0):.1f} s"))
    return rows


def render_markdown(report: dict[str, Any]) -> str:
    ckpt = report.get("checkpoint", {})
    data = report.get("dataset", {})
    out = [f"# {ckpt.get('family') or 'StyleMapGAN'} evaluation", ""]
    where = (f"on dataset `{data.get('name')}` at {data.get('resolution')} px" if data
             else "on its own samples (no dataset)")
    out.append(f"Model `{ckpt.get('path')}` (sha256 `{ckpt.get('sha256') or ckpt.get('model_id')}`) {where}, "
               f"{report.get('created')}.")
    out += ["", "| metric | value | count | wall time |", "|---|---:|---|---:|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in metric_rows(report)]
    edit = report.get("metrics", {}).get("local_edit")
    if edit:
        steps = edit.get("projection_steps") or 0
        projection = edit.get("projection", "encoder") + (f" {steps} steps" if steps else "")
        if edit.get("codes"):
            projection = f"folder {edit['codes']}"
        how = edit.get("edit") or f"{edit['edit_mode']} mode, {edit['pooling']} pooling"
        out += ["", f"## Local editing per part ({how}, {edit['masks']}, {edit.get('space', 'stylemaps')} by "
                    f"{projection})", ""]
        out += ["| part | MSE_src | MSE_ref | pairs | mean IoU |", "|---|---:|---:|---:|---:|"]
        for part, v in edit["per_part"].items():
            out.append(f"| {part} | {_fmt(v['mse_src'])} | {_fmt(v['mse_ref'])} | {v['pairs']} | "
                       f"{_fmt(v['mean_iou'], 3)} |")
        out += ["", f"Pairing: {edit['pairing']}; pool: {edit['pool']}. Means over pairs, then over parts."]
    control = report.get("metrics", {}).get("part_control")
    if control:
        out += part_control_markdown(control)
    out += ["", "## Reproduction", ""]
    out.append(f"- **checkpoint**: `{ckpt.get('path')}`, sha256 `{ckpt.get('sha256')}`")
    if not data:
        out.append("- **dataset**: none (generator-only metrics)")
    else:
        out.append(f"- **dataset**: `{data.get('path')}` ({data.get('layout')}): {data.get('name')}, "
                   f"{data.get('count')} images ({', '.join(f'{k}: {v}' for k, v in data.get('splits', {}).items())}),"
                   f" stored sizes {data.get('sizes')}, evaluated at {data.get('resolution')} px, resize filter "
                   f"{data.get('resize_filter')}, square {data.get('square')}, source {data.get('source')}, "
                   f"licence {data.get('licence')}"
                   + (f"; test split content sha256 `{data['test_content_sha256']}`"
                      if data.get("test_content_sha256") else ""))
    feat = report.get("feature_network")
    if feat:
        out.append(f"- **feature network**: `{feat['path']}` ({feat['source']}, {feat['kind']}), sha256 "
                   f"`{feat['sha256']}`; input: {feat['input']}")
    real = report.get("real_stats")
    if real:
        cached = "loaded from cache" if real.get("cached") else "computed"
        out.append(f"- **real statistics**: {real['count']} {real['split']} images, content sha256 "
                   f"`{real['content_sha256']}`, {cached} (`{real.get('cache_file')}`)")
    settings = report.get("settings", {})
    shown = ", ".join(f"{k}={v}" for k, v in settings.items() if v is not None)
    out.append(f"- **settings**: {shown}")
    versions = report.get("versions", {})
    out.append("- **versions**: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    dev = report.get("device", {})
    out.append(f"- **device**: {dev.get('type')} ({dev.get('name')}), torch threads {dev.get('torch_threads')}")
    timings = report.get("timings", {})
    out.append("- **wall time**: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
               + f"; total {report.get('wall_s', 0):.1f} s")
    out.append("")
    return "\n".join(out)


def part_control_markdown(control: dict[str, Any]) -> list[str]:
    """The per-part table of part_control (control, the MSEs to b and to a, the a-b baseline, region pixels)."""
    out = ["", f"## Part control per part ({control['pairs']} sampled pairs, seed {control['seed']}, "
               f"{control.get('space', 'W+ latents')})", "",
           "| part | control | MSE to b (ref) | MSE to a (src) | MSE a-b | pixels |", "|---|---:|---:|---:|---:|---:|"]
    for part, v in control["per_part"].items():
        out.append(f"| {part} | {_fmt(v['control'], 3)} | {_fmt(v['mse_ref'])} | {_fmt(v['mse_src'])} | "
                   f"{_fmt(v.get('mse_ab'))} | {v['pixels']} |")
    unscored: dict[str, list[str]] = {}  # reason -> parts
    for part, v in control["per_part"].items():
        if v.get("reason"):
            unscored.setdefault(v["reason"], []).append(part)
    why = "; ".join(f"{', '.join(parts)}: {reason}" for reason, parts in unscored.items()) or "none"
    out += ["", f"Control = src / (src + ref) over the {control['region']} (1: the part became b's, 0: it stayed "
                f"a's); swap: {control['swap']}. Not scored: {why}."]
    return out


def report_paths(out: str | os.PathLike[str]) -> tuple[Path, Path]:
    """`--out` -> (JSON path, Markdown path): a folder gets report.json; the Markdown goes beside the JSON."""
    path = Path(out)
    if path.is_dir() or str(out).endswith(("/", os.sep)):
        path = path / "report.json"
    elif path.suffix.lower() != ".json":
        path = path.with_name(path.name + ".json")
    return path, path.with_suffix(".md")


def write_report(report: dict[str, Any], out: str | os.PathLike[str]) -> tuple[Path, Path]:
    json_path, md_path = report_paths(out)
    text = json.dumps(_clean(report), indent=1, default=_json_default, allow_nan=False)
    atomic_write_text(json_path, text + "\n")
    atomic_write_text(md_path, render_markdown(report))
    return json_path, md_path
