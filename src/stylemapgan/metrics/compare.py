"""`compare`: score several models, of any family, on one dataset by one protocol -> a record, a table, a gallery.

The scores are `evaluate`'s own (the code `stylemapgan eval` runs), called once per metric group per model with
the same options, so a number here is the number `stylemapgan eval` gives for the same model, data and `--num`:

- recon, encoder: `eval --metrics recon --num N` (first N test faces, MSE and LPIPS);
- recon, optimised: the same with `--projection P --projection-steps S` (each model's own projection recipe,
  `editor.projection_defaults`, at the same step budget S);
- local_edit: `eval --metrics local_edit --num N` (N pairs per part matched by mask IoU among the first 2N test
  faces, capped at the split; every part of the masks, background included; the same pairs for every model
  of one size, since pairing reads only the masks at the model's resolution);
- part_control: `eval --metrics part_control --num N` (N sampled pairs; generator only, per part of the model);
  a model without part codes and a segmentation (StyleMapGAN) is n/a with why;
- fid, kid: `eval --metrics fid,kid --num N --real-split SPLIT` (N generated images against the whole split).

What this module adds is the loop, latency (batch 1, median of `repeats` timed calls after `warmup` untimed ones,
at the threads recorded), a gallery of the same swaps made by each model, and the side-by-side table. Every model
is asked what it can do (`ScoredModel.check_encoding`, `part_edit`), never which family it is: a metric a model
cannot compute is recorded as `{"value": null, "reason": ...}` and shows as "n/a" with its reason under the table.

The Markdown (`compare_markdown`) is a pure function of the JSON record, so a README block pasted from it
(`replace_readme_block`) can be checked against a committed record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import io
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from stylemapgan.editing.base import BaseEditor
from stylemapgan.editing.errors import EditingError
from stylemapgan.editing.projection import projection_method
from stylemapgan.metrics.errors import MetricsError
from stylemapgan.metrics.evaluate import EvalOptions, evaluate
from stylemapgan.metrics.inception import default_inception_path, to_uint8
from stylemapgan.metrics.local_editing import part_indices, part_masks
from stylemapgan.metrics.report import _clean, _json_default
from stylemapgan.metrics.scored_model import ScoredModel, scored_model
from stylemapgan.utils.files import atomic_write_bytes, atomic_write_text

COMPARE_FORMAT = "stylemapgan-compare"
COMPARE_VERSION = 1
COMPARE_METRICS = ("recon", "local_edit", "part_control", "fid", "kid", "latency")
DEFAULT_SWAPS = ("hair", "eyes", "mouth", "glasses", "background")
README_BEGIN = "<!-- stylemapgan compare: begin -->"
README_END = "<!-- stylemapgan compare: end -->"
PAIRING = "greedy disjoint pairs by descending part-mask IoU (official pair_masks.py); deterministic, no seed"

# (key, group, label): the table's rows in order; labels take the protocol's fields
ROWS = (
    ("recon_mse_encoder", "recon", "Reconstruction MSE, encoder"),
    ("recon_lpips_encoder", "recon", "Reconstruction LPIPS ({lpips}), encoder"),
    ("recon_mse_optimized", "recon", "Reconstruction MSE, {projection} {steps} steps"),
    ("recon_lpips_optimized", "recon", "Reconstruction LPIPS ({lpips}), {projection} {steps} steps"),
    ("local_edit_mse_src", "local_edit", "Local edit MSE_src (mean of parts)"),
    ("local_edit_mse_ref", "local_edit", "Local edit MSE_ref (mean of parts)"),
    ("part_control", "part_control", "Part control (mean of parts, {num} sampled pairs)"),
    ("fid", "fid", "FID ({num} generated vs {num_real} {real_split})"),
    ("kid", "kid", "KID ({num} generated vs {num_real} {real_split})"),
    ("encode_ms", "latency", "Encode latency, ms (batch 1, {threads} threads)"),
    ("edit_ms", "latency", "Edit latency ({edit_part}), ms (batch 1, {threads} threads)"),
)
_DIGITS = {"fid": 2, "encode_ms": 1, "edit_ms": 1}


@dataclass
class CompareOptions:
    """Everything that decides the numbers (recorded in the record's `protocol`).

    `evaluation` holds what every `evaluate` call shares (num, real_split, seed, batch, feature_batch, inception,
    stats_dir, use_cache, lpips, kid_subsets, progress), checked by eval's own check; each call sets its metrics,
    projection and parts. The CLI leaves its eval-only fields (masks, codes, real_num...) at eval's defaults."""

    metrics: tuple[str, ...] = COMPARE_METRICS
    # compare's defaults: 200 test faces, FID/KID against the test split
    evaluation: EvalOptions = field(default_factory=lambda: EvalOptions(num=200, real_split="test"))
    steps: int = 100
    projection: str = "hybrid"
    pair: tuple[int, int] = (0, 5)  # gallery source / reference test faces; also the edit-latency pair
    swaps: tuple[str, ...] = DEFAULT_SWAPS  # gallery columns; the first is the timed edit
    gallery: bool = True
    repeats: int = 20
    warmup: int = 3

    def check(self) -> None:
        unknown = [m for m in self.metrics if m not in COMPARE_METRICS]
        if unknown or not self.metrics:
            raise MetricsError(f"--metrics: unknown {', '.join(unknown) or '(none given)'}; choose from "
                               f"{','.join(COMPARE_METRICS)}")
        if self.evaluation.num is None:
            raise MetricsError("--num: compare needs a count of test faces, got None")
        self.evaluation.check_shared()
        for flag, value, least in (("--steps", self.steps, 1), ("--repeats", self.repeats, 1),
                                   ("--warmup", self.warmup, 0)):
            if value < least:
                raise MetricsError(f"{flag}: must be >= {least}, got {value}")
        try:
            optimises = projection_method(self.projection).optimises
        except EditingError as exc:
            raise MetricsError(f"--projection: {exc}") from None
        if not optimises:
            raise MetricsError(f"--projection {self.projection}: the optimised reconstruction needs an optimising "
                               "method (optimize or hybrid); the encoder alone is always scored")
        if len(self.pair) != 2 or self.pair[0] == self.pair[1] or min(self.pair) < 0:
            raise MetricsError(f"--pair: two different test faces SOURCE,REFERENCE, got {self.pair}")
        if not self.swaps:
            raise MetricsError("--swaps: name at least one part")

    @property
    def needs_masks(self) -> list[str]:
        """What reads the dataset's part masks: local_edit, the gallery and the edit latency (pairs and swaps)."""
        return [m for m in ("local_edit", "latency") if m in self.metrics] + (["the gallery"] if self.gallery else [])


@dataclass
class ComparedModel:
    """One column: its label, the --ckpt as given, the file it resolved to, and its editor."""

    name: str
    ckpt: str
    path: str
    editor: BaseEditor


def column_names(ckpts: Sequence[str]) -> list[str]:
    """Short column labels: a bundled name as given, else the file or run-folder name (a run's checkpoint:
    RUN/ckpt-N); clashes get #2, #3..."""
    names: list[str] = []
    for ckpt in ckpts:
        path = Path(ckpt)
        base = (path.stem if path.suffix in (".safetensors", ".pt") else path.name) or str(ckpt)
        if path.parent.name == "checkpoints" and path.parent.parent.name:  # RUN/checkpoints/ckpt-N: "RUN/ckpt-N"
            base = f"{path.parent.parent.name}/{base}"
        name, k = base, 2
        while name in names:
            name, k = f"{base}#{k}", k + 1
        names.append(name)
    return names


# ---- checks before any work ----------------------------------------------------------------------------------


@dataclass
class TestFaces:
    """The test split at one model size, with the label maps of the faces the gallery and latency read."""

    dataset: Any
    part_names: list[str]
    label_maps: dict[int, torch.Tensor] = field(default_factory=dict)  # test index -> [S, S] part labels


def open_test_faces(data: str, sizes: Sequence[int], options: CompareOptions) -> dict[int, TestFaces]:
    """The test split at every model size, checked for what the options need; a MetricsError naming the flag
    otherwise. Cheap: opens the data, reads two label maps per size."""
    from stylemapgan.data import DatasetError, open_dataset

    num, real_split = options.evaluation.num, options.evaluation.real_split
    out: dict[int, TestFaces] = {}
    for size in sorted(set(sizes)):
        try:
            train = open_dataset(data, size=size, split="train")
            meta = getattr(train, "meta", None) or {}
            splits = meta.get("splits", {})
            if "test" not in splits:
                raise MetricsError(f"{data}: has no test split (--data)")
            if real_split not in splits or not splits[real_split]:
                raise MetricsError(f"{data}: has no {real_split} split (--real-split)")
            parts = list((meta.get("masks") or {}).get("parts") or [])
            need = options.needs_masks
            if need and not parts:
                raise MetricsError(f"{data}: has no part masks, needed by {', '.join(need)} (leave local_edit and "
                                   "latency out of --metrics and pass --no-gallery)")
            test = open_dataset(data, size=size, split="test", masks=bool(parts))
        except DatasetError as exc:
            raise MetricsError(f"{exc} (--data)") from None
        if num > len(test):
            raise MetricsError(f"--num {num}: the test split of {data} has {len(test)} faces")
        faces = TestFaces(test, parts)
        if need:
            for index in options.pair:
                if index >= len(test):
                    raise MetricsError(f"--pair: test face {index} does not exist ({len(test)} test faces)")
                faces.label_maps[index] = test[index]["mask"].to(torch.uint8)
            for part in options.swaps:
                part_indices(part, parts)  # MetricsError naming the known parts
        out[size] = faces
    return out


def check_inception(options: CompareOptions) -> None:
    """FID/KID need the Inception file: refused before any model is scored rather than after minutes of recon."""
    if not {"fid", "kid"} & set(options.metrics):
        return
    inception = options.evaluation.inception
    path = Path(inception) if inception else default_inception_path()
    if not path.is_file():
        raise MetricsError(f"{path}: no such Inception network file (--inception)")


# ---- what each model can do ----------------------------------------------------------------------------------


@dataclass
class Abilities:
    """Why a model cannot do a part of the protocol (None: it can)."""

    encode: str | None
    optimise: str | None
    edit_plan: Any
    parts: dict[str, str | None]  # mask part -> why the model cannot edit it


def probe(model: ScoredModel, image: torch.Tensor, parts: Sequence[str], options: CompareOptions,
          perceptual: Callable[[], torch.nn.Module | None]) -> Abilities:
    """Ask the model (one test image through each door it would use; each part's edit built)."""

    def why(method: str) -> str | None:
        try:
            model.check_encoding(image, method, perceptual)
        except (EditingError, ValueError) as exc:
            return f"cannot encode the test faces ({method}): {exc}"
        return None

    plan = model.edit_plan(None)
    can_edit: dict[str, str | None] = {}
    for part in parts:
        try:
            model.part_edit(part, plan)
            can_edit[part] = None
        except MetricsError as exc:
            can_edit[part] = str(exc)
    return Abilities(why("encoder"), why(options.projection), plan, can_edit)


# ---- the loop ------------------------------------------------------------------------------------------------


def _na(reason: str) -> dict[str, Any]:
    return {"value": None, "reason": reason}


def _value(value: float | None, reason_if_none: str, **extra: Any) -> dict[str, Any]:
    return {"value": value, **extra} if value is not None else {**_na(reason_if_none), **extra}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], Any], repeats: int, warmup: int, device: torch.device) -> dict[str, Any]:
    """Median wall time of `fn` in ms over `repeats` calls, after `warmup` untimed ones (no autograd)."""
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return {"value": 1000 * statistics.median(times), "min_ms": 1000 * min(times), "max_ms": 1000 * max(times),
            "repeats": repeats, "warmup": warmup, "batch": 1, "threads": torch.get_num_threads()}


class _Scorer:
    """One model's scores; `evaluate` computes every metric, this class only chooses the calls and collects."""

    def __init__(self, model: ComparedModel, data: str, faces: TestFaces, options: CompareOptions,
                 perceptual: Callable[[], torch.nn.Module | None], log: Callable[[str], None]) -> None:
        self.m, self.data, self.faces, self.options, self.log = model, data, faces, options, log
        self.editor = model.editor
        self.model = scored_model(self.editor)
        self.perceptual = perceptual
        first = faces.dataset[0]
        image = (first["image"] if isinstance(first, dict) else first)[None].to(self.editor.device)
        self.able = probe(self.model, image, faces.part_names, options, perceptual)
        self.metrics: dict[str, Any] = {}
        self.per_part: dict[str, Any] = {}
        self.part_control_per_part: dict[str, float | None] = {}  # the model's part -> its control
        self.reports: dict[str, Any] = {}

    def _evaluate(self, name: str, perceptual: torch.nn.Module | None = None, **kwargs: Any) -> dict[str, Any]:
        """One `evaluate` call: the shared options with this call's `kwargs` (metrics, projection...)."""
        eval_options = dataclasses.replace(self.options.evaluation, **kwargs)
        self.log(f"compare: {self.m.name}: {name}")
        report = evaluate(self.editor, self.data, eval_options, checkpoint=self.m.path, log=self.log,
                          perceptual=perceptual)
        report.pop("dataset", None)  # the record's protocol holds it once
        self.reports[name] = report
        return report["metrics"]

    def recon(self) -> None:
        lpips_off = f"--lpips {self.options.evaluation.lpips}"
        for suffix, method, reason in (("encoder", "encoder", self.able.encode),
                                       ("optimized", self.options.projection, self.able.optimise)):
            keys = (f"recon_mse_{suffix}", f"recon_lpips_{suffix}")
            if reason is not None:
                self.metrics.update({k: _na(reason) for k in keys})
                continue
            steps = {"projection_steps": self.options.steps} if suffix == "optimized" else {}
            # recon is the only call that scores or optimises with LPIPS: it gets the comparison's one network
            r = self._evaluate(f"recon_{suffix}", self.perceptual(), metrics=("recon",), projection=method,
                               **steps)["recon"]
            extra = {"num": r["num"], "projection": r["projection"], "projection_steps": r["projection_steps"]}
            self.metrics[keys[0]] = _value(r["mse"], "not computed", **extra)
            self.metrics[keys[1]] = _value(r["lpips"], lpips_off, **extra)

    def local_edit(self) -> None:
        parts = self.faces.part_names
        if self.able.encode is not None:
            for key in ("local_edit_mse_src", "local_edit_mse_ref"):
                self.metrics[key] = _na(self.able.encode)
            self.per_part = {p: {"mse_src": None, "mse_ref": None, "reason": self.able.encode} for p in parts}
            return
        editable = tuple(p for p in parts if self.able.parts[p] is None)
        if not editable:
            reason = "cannot edit any part of the masks: " + "; ".join(
                f"{p}: {r}" for p, r in self.able.parts.items())
            self.metrics.update({k: _na(reason) for k in ("local_edit_mse_src", "local_edit_mse_ref")})
            self.per_part = {p: {"mse_src": None, "mse_ref": None, "reason": self.able.parts[p]} for p in parts}
            return
        e = self._evaluate("local_edit", metrics=("local_edit",), projection="encoder", parts=editable)["local_edit"]
        extra = {"parts_scored": e["parts_scored"], "parts": len(parts), "pairs_per_part": e["pairs_per_part"],
                 "pool": e["pool"], "edit": e["edit"]}
        self.metrics["local_edit_mse_src"] = _value(e["mse_src"], "no pair scored", **extra)
        self.metrics["local_edit_mse_ref"] = _value(e["mse_ref"], "no pair scored", **extra)
        for p in parts:
            if p not in e["per_part"]:
                self.per_part[p] = {"mse_src": None, "mse_ref": None, "reason": self.able.parts[p]}
                continue
            v = e["per_part"][p]
            row = {k: v[k] for k in ("mse_src", "mse_ref", "pairs", "skipped_empty", "mean_iou")}
            if v["mse_src"] is None or v["mse_ref"] is None:
                row["reason"] = (f"no scored pair ({v['skipped_empty']} pairs with empty masks)" if not v["pairs"]
                                 else "every pair's union mask covers the whole image (MSE_src undefined)")
            self.per_part[p] = row

    def part_control(self) -> None:
        """The generator's part control (`evaluate`'s part_control); n/a with why for a model it cannot score."""
        reason = self.model.part_control_refusal()
        if reason is not None:
            self.metrics["part_control"] = _na(reason)
            return
        c = self._evaluate("part_control", metrics=("part_control",))["part_control"]
        self.metrics["part_control"] = _value(c["mean"], "no part scored", pairs=c["pairs"],
                                              parts_scored=c["parts_scored"], parts=len(c["per_part"]))
        self.part_control_per_part = {p: v["control"] for p, v in c["per_part"].items()}

    def fid_kid(self) -> None:
        want = tuple(m for m in ("fid", "kid") if m in self.options.metrics)
        got = self._evaluate("fid_kid", metrics=want)
        if "fid" in got:
            f = got["fid"]
            self.metrics["fid"] = _value(f["value"], "not finite", num_generated=f["num_generated"],
                                         num_real=f["num_real"], real_split=f["real_split"])
        if "kid" in got:
            k = got["kid"]
            self.metrics["kid"] = _value(k["mean"], "not finite", std=k["std"], subset_size=k["subset_size"],
                                         num_subsets=k["num_subsets"], num_generated=k["num_generated"],
                                         num_real=k["num_real"], real_split=k["real_split"])

    def _pair_images(self) -> torch.Tensor:
        ds = self.faces.dataset
        return torch.stack([ds[i]["image"] for i in self.options.pair]).to(self.editor.device)

    def _union(self, part: str) -> torch.Tensor:
        idx = part_indices(part, self.faces.part_names)
        maps = torch.stack([self.faces.label_maps[i] for i in self.options.pair])
        return part_masks(maps, idx).any(0, keepdim=True).to(self.editor.device)

    def latency(self) -> None:
        o, device = self.options, self.editor.device
        log_line = f"compare: {self.m.name}: latency ({o.repeats} repeats after {o.warmup}, batch 1)"
        self.log(log_line)
        if self.able.encode is not None:
            self.metrics["encode_ms"] = _na(self.able.encode)
        else:
            one = self._pair_images()[:1]
            self.metrics["encode_ms"] = {**median_ms(lambda: self.model.encode(one, "encoder"), o.repeats,
                                                     o.warmup, device), "what": "one test face -> its code (encoder)"}
        part = o.swaps[0]
        reason = self.able.parts.get(part)
        if reason is not None:
            self.metrics["edit_ms"] = _na(reason)
            return
        edit = self.model.part_edit(part, self.able.edit_plan)
        codes = self.editor.sample(list(o.pair), trunc=1.0).codes.to(device)  # any two codes: the cost is the same
        union = self._union(part)
        self.metrics["edit_ms"] = {
            **median_ms(lambda: edit(codes[:1], codes[1:], union), o.repeats, o.warmup, device),
            "what": f"two codes + the {part} mask -> the edited image ({self.able.edit_plan.description})",
        }

    @torch.no_grad()
    def gallery_row(self) -> tuple[list[np.ndarray | None], dict[str, str]]:
        """source, reference, then each swap: uint8 [S, S, 3] tiles (None where the model cannot), and why."""
        images = self._pair_images()
        real = [to_uint8(img).permute(1, 2, 0).cpu().numpy() for img in images]
        missing: dict[str, str] = {}
        if self.able.encode is not None:
            return [*real, *([None] * len(self.options.swaps))], dict.fromkeys(self.options.swaps, self.able.encode)
        codes = self.model.encode(images, "encoder")
        tiles: list[np.ndarray | None] = list(real)
        for part in self.options.swaps:
            if self.able.parts.get(part) is not None:
                missing[part] = str(self.able.parts[part])
                tiles.append(None)
                continue
            edited = self.model.part_edit(part, self.able.edit_plan)(codes[:1], codes[1:], self._union(part))
            tiles.append(to_uint8(edited[0]).permute(1, 2, 0).cpu().numpy())
        return tiles, missing


def gallery_image(rows: Sequence[Sequence[np.ndarray | None]]) -> Image.Image:
    """Rows of tiles -> one image, every tile at the largest tile size (Lanczos); a missing tile is grey."""
    tile = max(t.shape[0] for row in rows for t in row if t is not None)
    cols = max(len(row) for row in rows)
    canvas = Image.new("RGB", (cols * tile, len(rows) * tile), (128, 128, 128))
    for r, row in enumerate(rows):
        for c, t in enumerate(row):
            if t is None:
                continue
            im = Image.fromarray(t)
            if im.size != (tile, tile):
                im = im.resize((tile, tile), Image.Resampling.LANCZOS)
            canvas.paste(im, (c * tile, r * tile))
    return canvas


# ---- the record ----------------------------------------------------------------------------------------------


def cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def source_commit() -> dict[str, Any]:
    """The git commit of the code that ran (None outside a checkout) and whether tracked files were changed."""
    root = Path(__file__).resolve().parents[3]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _environment(device: torch.device) -> dict[str, Any]:
    from stylemapgan import __version__

    env: dict[str, Any] = {
        "device": str(device), "cpu": cpu_name(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
        "stylemapgan": __version__, **source_commit(),
    }
    with contextlib.suppress(AttributeError, OSError):  # other processes' load skews the latency
        env["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def compare(
    models: Sequence[ComparedModel],
    data: str | os.PathLike[str],
    options: CompareOptions,
    log: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], Image.Image | None]:
    """Score every model by one protocol -> (the JSON-ready record, the gallery image or None). Checks the
    options, data and Inception file first (MetricsError naming the flag) before any model is scored."""
    options.check()
    if len(models) < 2:
        raise MetricsError(f"--ckpt: compare needs at least 2 models, got {len(models)}")
    data = str(data)
    log = log or (lambda m: print(m, file=sys.stderr))
    faces = open_test_faces(data, [m.editor.size for m in models], options)
    check_inception(options)
    t_start = time.perf_counter()
    device = models[0].editor.device
    lpips_net: list[torch.nn.Module | None] = []

    def perceptual() -> torch.nn.Module | None:
        if not lpips_net:
            from stylemapgan.losses.perceptual import build_perceptual

            net = build_perceptual(options.evaluation.lpips)
            lpips_net.append(net.to(device) if net is not None else None)
        return lpips_net[0]

    entries, rows = [], []
    for m in models:
        t0 = time.perf_counter()
        scorer = _Scorer(m, data, faces[m.editor.size], options, perceptual, log)
        want = set(options.metrics)
        if "recon" in want:
            scorer.recon()
        if "local_edit" in want:
            scorer.local_edit()
        if "part_control" in want:
            scorer.part_control()
        if want & {"fid", "kid"}:
            scorer.fid_kid()
        if "latency" in want:
            scorer.latency()
        gallery_missing: dict[str, str] = {}
        if options.gallery:
            tiles, gallery_missing = scorer.gallery_row()
            rows.append(tiles)
        editor = m.editor
        entries.append({
            "name": m.name, "ckpt": m.ckpt, "path": m.path, "model_id": editor.model_id,
            "family": editor.capabilities.family, "size": editor.size, "code_space": scorer.model.code_space,
            "edit": scorer.able.edit_plan.description, "projection_recipe": dataclasses.asdict(
                dataclasses.replace(editor.projection_recipe(options.projection), steps=options.steps)),
            "metrics": {k: scorer.metrics[k] for k, _, _ in ROWS if k in scorer.metrics},
            "per_part": scorer.per_part,
            **({"part_control": scorer.part_control_per_part} if "part_control" in options.metrics else {}),
            **({"gallery": {"row": len(rows) - 1, "missing": gallery_missing}} if options.gallery else {}),
            "wall_s": round(time.perf_counter() - t0, 3),
            "reports": scorer.reports,
        })
    first = faces[min(faces)]
    card = _dataset_card(data, first)
    record = {
        "format": COMPARE_FORMAT,
        "format_version": COMPARE_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "protocol": _protocol(options, card, first),
        "environment": _environment(device),
        "models": entries,
        "wall_s": round(time.perf_counter() - t_start, 3),
    }
    return record, (gallery_image(rows) if options.gallery else None)


def _dataset_card(data: str, faces: TestFaces) -> dict[str, Any]:
    from stylemapgan.metrics.real_stats import content_sha256, dataset_card

    card = dataset_card(faces.dataset)
    card["test_content_sha256"] = content_sha256(faces.dataset, len(faces.dataset))
    card["path"] = data
    return card


def _protocol(options: CompareOptions, card: dict[str, Any], faces: TestFaces) -> dict[str, Any]:
    test_count, shared = len(faces.dataset), options.evaluation
    num_real = card["splits"].get(shared.real_split)
    return {
        "metrics": [m for m in COMPARE_METRICS if m in options.metrics],
        "data": card,
        "num": shared.num,
        "recon": f"first {shared.num} test faces",
        "steps": options.steps,
        "projection": options.projection,
        "projection_recipe": "each model's own (its editor's projection defaults), at --steps steps",
        "lpips": shared.lpips,
        "local_edit": {
            "pairs_per_part": shared.num, "pool": f"first {min(2 * shared.num, test_count)} test faces",
            "pairing": PAIRING, "pairs_seed": None, "parts": list(faces.part_names), "codes": "encoder",
        },
        **({"part_control": {"pairs": shared.num, "seed": shared.seed, "truncation": 1.0,
                             "parts": "each model's own"}} if "part_control" in options.metrics else {}),
        "fid": {"num_generated": shared.num, "real_split": shared.real_split, "num_real": num_real,
                "seed": shared.seed, "truncation": 1.0, "kid_subsets": shared.kid_subsets},
        "latency": {"batch": 1, "repeats": options.repeats, "warmup": options.warmup, "statistic": "median",
                    "edit_part": options.swaps[0], "threads": torch.get_num_threads()},
        "gallery": {"source": options.pair[0], "reference": options.pair[1], "swaps": list(options.swaps),
                    "columns": ["source", "reference", *options.swaps], "codes": "encoder"}
        if options.gallery else None,
        "seed": shared.seed,
        "batch": shared.batch,
    }


# ---- rendering -----------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and value != 0 and abs(value) < 10 ** -digits:
        return f"{value:.2e}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _cell(key: str, entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "n/a"
    value = entry.get("value")
    text = _fmt(value, _DIGITS.get(key, 4))
    if key == "kid" and value is not None and entry.get("std") is not None:
        text += f" ± {_fmt(entry['std'], 4)}"
    return text


def compare_markdown(record: dict[str, Any]) -> str:
    """The tables of a compare record (rows: metrics, columns: models; then MSE_src / MSE_ref per part), the
    reasons of every n/a, and the protocol. A function of the record alone: the README block is this text."""
    p, env, models = record["protocol"], record["environment"], record["models"]
    names = [m["name"] for m in models]
    fields = {"lpips": p["lpips"], "projection": p["projection"], "steps": p["steps"], "num": p["num"],
              "num_real": p["fid"]["num_real"], "real_split": p["fid"]["real_split"],
              "threads": p["latency"]["threads"], "edit_part": p["latency"]["edit_part"]}
    data = p["data"]
    splits = ", ".join(f"{k} {v}" for k, v in data["splits"].items())
    listed = ", ".join(f"`{m['name']}` ({m['family']}, {m['size']} px)" for m in models)
    out = [f"Models compared on `{data['name']}` ({splits}) by `stylemapgan compare`: {listed}.",
           "", "| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    reasons: list[str] = []
    for key, group, label in ROWS:
        if group not in p["metrics"]:
            continue
        cells = []
        for m in models:
            entry = m["metrics"].get(key)
            cells.append(_cell(key, entry))
            if entry is None or entry.get("value") is None:
                reasons.append(f"- `{m['name']}`, {label.format(**fields)}: "
                               f"{(entry or {}).get('reason', 'not computed')}")
        out.append(f"| {label.format(**fields)} | " + " | ".join(cells) + " |")
    if "local_edit" in p["metrics"]:
        le = p["local_edit"]
        same = ("the same pairs for every model" if len({m["size"] for m in models}) == 1
                else "pairs matched on the masks at each model's resolution")
        out += ["", f"Local edits per part, MSE_src / MSE_ref ({le['pairs_per_part']} pairs per part from the "
                    f"{le['pool']}, {same}):", "",
                "| part | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        for part in le["parts"]:
            cells = []
            for m in models:
                v = m["per_part"].get(part, {})
                cells.append(f"{_fmt(v.get('mse_src'))} / {_fmt(v.get('mse_ref'))}")
                if v.get("reason"):
                    reasons.append(f"- `{m['name']}`, part {part}: {v['reason']}")
            out.append(f"| {part} | " + " | ".join(cells) + " |")
        edits = "; ".join(f"`{m['name']}`: {m['edit']}" for m in models)
        out += ["", f"Edits: {edits}."]
    if "part_control" in p["metrics"]:
        out += _part_control_rows(models)
    if reasons:
        out += ["", "n/a:", "", *reasons]
    commit = env.get("commit")
    commit_text = f"commit {commit[:12]}{' (modified)' if env.get('dirty') else ''}" if commit else "no git commit"
    out += ["", f"Protocol: recon on the {p['recon']}, optimised by each model's own recipe for {p['steps']} steps "
                f"({p['projection']}); LPIPS {p['lpips']}; local edits on encoder codes, pairs by mask IoU; "
                + (f"part control on {p['part_control']['pairs']} sampled pairs (generator only); "
                   if "part_control" in p else "")
                + "FID/KID "
                f"of {p['num']} generated images (seed {p['seed']}, no truncation) against the {p['fid']['num_real']} "
                f"{p['fid']['real_split']} images; latency median of {p['latency']['repeats']} runs after "
                f"{p['latency']['warmup']} warm-up, batch 1, {p['latency']['threads']} threads on {env['cpu']} "
                f"({env['device']}); torch {env['torch']}, stylemapgan {env['stylemapgan']}, {commit_text}."]
    if record.get("command"):
        out += ["", f"Command: `{shlex.join(record['command'])}`"]
    out.append("")
    return "\n".join(out)


def _part_control_rows(models: Sequence[dict[str, Any]]) -> list[str]:
    """One compact line per model with part control: each of its parts' control (n/a where not scored)."""
    rows = [f"- `{m['name']}`: " + ", ".join(f"{part} {_fmt(v, 2)}" for part, v in m["part_control"].items())
            for m in models if m.get("part_control")]
    if not rows:
        return []
    return ["", "Part control per part (src / (src + ref) where a and b both show the part, after swapping its "
                "shape and texture codes from b into a; 1: the part became b's, 0: it stayed a's):", "", *rows]


def command_line(ckpts: Sequence[str], data: str, outdir: str, options: CompareOptions) -> list[str]:
    """The command that reproduces a record, every option that decides a number spelled out (the threads too)."""
    argv, shared = ["stylemapgan", "compare"], options.evaluation
    for ckpt in ckpts:
        argv += ["--ckpt", str(ckpt)]
    argv += ["--data", str(data), "--num", str(shared.num), "--real-split", shared.real_split,
             "--steps", str(options.steps), "--projection", options.projection,
             "--metrics", ",".join(options.metrics), "--lpips", shared.lpips, "--seed", str(shared.seed)]
    if {"fid", "kid"} & set(options.metrics):
        argv += ["--kid-subsets", str(shared.kid_subsets)]
    if "latency" in options.metrics:
        argv += ["--repeats", str(options.repeats), "--warmup", str(options.warmup)]
    if options.gallery or "latency" in options.metrics:
        argv += ["--pair", ",".join(map(str, options.pair)), "--swaps", ",".join(options.swaps)]
    if not options.gallery:
        argv.append("--no-gallery")
    return [*argv, "--threads", str(torch.get_num_threads()), "--outdir", str(outdir)]


def readme_block(text: str) -> str:
    """The text between the README's compare markers (MetricsError when they are missing or repeated)."""
    if text.count(README_BEGIN) != 1 or text.count(README_END) != 1 or text.index(README_BEGIN) > text.index(
            README_END):
        raise MetricsError(f"needs one {README_BEGIN} line and one {README_END} line after it")
    return text.split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip("\n") + "\n"


def replace_readme_block(text: str, markdown: str) -> str:
    """The README with its compare block replaced by `markdown` (markers kept)."""
    readme_block(text)
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    return f"{head}{README_BEGIN}\n{markdown.strip(chr(10))}\n{README_END}{tail}"


def compare_paths(outdir: str | os.PathLike[str]) -> tuple[Path, Path, Path]:
    root = Path(outdir)
    return root / "compare.json", root / "compare.md", root / "gallery.png"


def write_compare(record: dict[str, Any], gallery: Image.Image | None, outdir: str | os.PathLike[str]
                  ) -> list[Path]:
    """DIR/compare.json, DIR/compare.md and DIR/gallery.png, each written atomically."""
    import json

    json_path, md_path, png_path = compare_paths(outdir)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json_path, json.dumps(_clean(record), indent=1, default=_json_default, allow_nan=False) + "\n")
    atomic_write_text(md_path, compare_markdown(record))
    written = [json_path, md_path]
    if gallery is not None:
        buf = io.BytesIO()
        gallery.save(buf, format="PNG")
        atomic_write_bytes(png_path, buf.getvalue())
        written.append(png_path)
    return written
