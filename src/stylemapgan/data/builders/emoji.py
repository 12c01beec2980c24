"""``emoji``: face and people emoji (Google Noto and Twitter Twemoji artwork) at 64 px on white.

Images come from the npm packages emoji-datasource-google / -twitter 16.0.0 (installed once into the cache),
categories "Smileys & Emotion" and "People & Body", every skin-tone variation included. The split is a
seeded permutation of the sorted list, so the same seed gives the same images in the same order.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from stylemapgan.data.builders.common import (
    check_resize_filter,
    check_seed,
    check_sizes,
    default_test_count,
    progress_bar,
)
from stylemapgan.data.images import RESIZE_FILTERS, encode_png
from stylemapgan.data.lmdb_format import DatasetError, DatasetWriter
from stylemapgan.data.npm import ensure_npm_package

EMOJI_VERSION = "16.0.0"
VENDORS = ("google", "twitter")
CATEGORIES = ("Smileys & Emotion", "People & Body")
NATIVE_SIZE = 64
SKIN_TONES = ("none", "light", "medium-light", "medium", "medium-dark", "dark")
TONE_CODES = {"1F3FB": 1, "1F3FC": 2, "1F3FD": 3, "1F3FE": 4, "1F3FF": 5}
DEFAULT_TEST_COUNT = 500
LICENCES = {
    "google": "Noto Emoji artwork: Apache-2.0 (package emoji-datasource-google: MIT)",
    "twitter": "Twemoji artwork: CC-BY 4.0 (package emoji-datasource-twitter: MIT)",
}
TWEMOJI_ATTRIBUTION = (
    "Twemoji graphics copyright Twitter, Inc. and other contributors, licensed under CC-BY 4.0 "
    "(https://creativecommons.org/licenses/by/4.0/)."
)
NOTO_ATTRIBUTION = "Noto Emoji graphics copyright Google Inc., Apache-2.0."


def _tones(code: str) -> list[int]:
    return [TONE_CODES[c] for c in code.upper().split("-") if c in TONE_CODES]


def list_emoji(package_dir: Path, vendor: str) -> list[dict[str, Any]]:
    """Every selected emoji image of one vendor, with its labels, in a stable order."""
    try:
        entries = json.loads((package_dir / "emoji.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{package_dir / 'emoji.json'}: cannot read ({exc})") from exc
    items = []
    flag = f"has_img_{vendor}"
    for e in entries:
        if e.get("category") not in CATEGORIES:
            continue
        base = {
            "vendor": vendor,
            "name": (e.get("name") or e.get("short_name") or e["unified"]).lower(),
            "short_name": e.get("short_name"),
            "base_unified": e["unified"],
            "category": e["category"],
            "subcategory": e.get("subcategory") or "",
            "sort_order": int(e.get("sort_order", 0)),
        }
        if e.get(flag):
            items.append({**base, "unified": e["unified"], "image": e["image"], "skin_tones": []})
        for code, var in sorted((e.get("skin_variations") or {}).items()):
            if var.get(flag):
                items.append({**base, "unified": var["unified"], "image": var["image"], "skin_tones": _tones(code)})
    items.sort(key=lambda it: (it["sort_order"], it["unified"]))
    return items


def load_emoji_image(path: Path, background: tuple[int, int, int]) -> Image.Image:
    """RGBA PNG -> RGB composited on ``background`` at the native 64 px."""
    with Image.open(io.BytesIO(path.read_bytes())) as im:
        rgba = im.convert("RGBA")
    if rgba.size != (NATIVE_SIZE, NATIVE_SIZE):
        rgba = rgba.resize((NATIVE_SIZE, NATIVE_SIZE), Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def build_emoji(
    out: str | Path,
    *,
    sizes: tuple[int, ...] = (NATIVE_SIZE,),
    count: int | None = None,
    test_count: int | None = None,
    seed: int = 0,
    vendors: Sequence[str] = VENDORS,
    resize_filter: str = "lanczos",
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write the emoji dataset; ``count`` caps the train split (default: all not in test). The test split: 500 (at
    most a tenth of the images), or a tenth of ``count`` when only that is given (``default_test_count``)."""
    from stylemapgan import __version__

    log = log or (lambda msg: print(msg, file=sys.stderr))
    check_seed(seed)
    sizes = check_sizes("emoji", sizes, 8, NATIVE_SIZE, f"the images are {NATIVE_SIZE} px")
    check_resize_filter(resize_filter)
    vendors = tuple(vendors)
    if not vendors or any(v not in VENDORS for v in vendors):
        raise DatasetError(f"vendors must be among {VENDORS}, got {list(vendors)}")
    items: list[dict[str, Any]] = []
    package_versions = {}
    for vendor in vendors:
        pkg = ensure_npm_package(f"emoji-datasource-{vendor}", EMOJI_VERSION, log=log)
        package_versions[f"emoji-datasource-{vendor}"] = EMOJI_VERSION
        for it in list_emoji(pkg, vendor):
            it["path"] = pkg / "img" / vendor / str(NATIVE_SIZE) / it["image"]
            items.append(it)
    order = np.random.default_rng(seed).permutation(len(items))
    full_test = min(DEFAULT_TEST_COUNT, len(items) // 10)
    test_count = default_test_count(count, full_test) if test_count is None else int(test_count)
    if test_count < 0 or (count is not None and count < 1):
        raise DatasetError(f"need count >= 1 and test count >= 0 (got {count}, {test_count})")
    train_avail = len(items) - test_count
    count = train_avail if count is None else int(count)
    if count > train_avail:
        raise DatasetError(f"only {len(items)} emoji images: {count} train + {test_count} test is too many")
    plan = [("train", int(i)) for i in order[test_count : test_count + count]]
    plan += [("test", int(i)) for i in order[:test_count]]
    subcats = sorted({it["subcategory"] for it in items})
    names = sorted({it["name"] for it in items})
    label_names = ["vendor", "category", "subcategory", "skin_tone", "skin_tone_2", "has_skin_tone", "emoji"]
    vocab = {
        "vendor": list(VENDORS),
        "category": list(CATEGORIES),
        "subcategory": subcats,
        "skin_tone": list(SKIN_TONES),
        "skin_tone_2": list(SKIN_TONES),
        "emoji": names,
    }
    kinds = {n: "categorical" for n in label_names}
    kinds["has_skin_tone"] = "binary"
    splits: dict[str, list[int]] = {"train": [], "test": []}
    skipped = []
    background = (255, 255, 255)
    with DatasetWriter(out, overwrite=overwrite, log=log) as writer, progress_bar(len(plan), "emoji", progress) as bar:
        for split, i in plan:
            it = items[i]
            try:
                rgb = load_emoji_image(it["path"], background)
            except Exception as exc:  # a missing or broken file in the package: skip, report
                skipped.append({"source": str(it["path"]), "reason": "unreadable", "detail": str(exc)})
                bar.update(1)
                continue
            images = {
                s: encode_png(rgb if s == NATIVE_SIZE else rgb.resize((s, s), RESIZE_FILTERS[resize_filter]))
                for s in sizes
            }
            tones = it["skin_tones"] + [0, 0]
            labels = [
                VENDORS.index(it["vendor"]),
                CATEGORIES.index(it["category"]),
                subcats.index(it["subcategory"]),
                tones[0],
                tones[1],
                float(bool(it["skin_tones"])),
                names.index(it["name"]),
            ]
            record = {k: v for k, v in it.items() if k not in ("path", "sort_order")}
            splits[split].append(writer.add(images, record=record, labels=[float(v) for v in labels]))
            bar.update(1)
        meta = {
            "name": "emoji",
            "description": "face and people emoji (Smileys & Emotion, People & Body, all skin tones) "
            f"from {' and '.join(vendors)}, composited on white",
            "source": {"type": "npm", "packages": package_versions},
            "licence": "; ".join(LICENCES[v] for v in vendors),
            "attribution": " ".join(
                [NOTO_ATTRIBUTION] * ("google" in vendors) + [TWEMOJI_ATTRIBUTION] * ("twitter" in vendors)
            ),
            "resize_filter": resize_filter if sizes != (NATIVE_SIZE,) else "none (native 64 px)",
            "square": "native",
            "background": list(background),
            "split_seed": seed,
            "labels": {"names": label_names, "kinds": kinds, "vocab": vocab},
            "masks": None,
            "records": True,
            "skipped": {
                "total": len(skipped),
                "by_reason": {"unreadable": len(skipped)} if skipped else {},
                "items": skipped,
            },
            "conversions": {"alpha-composited": writer.count},
            "created_by": f"stylemapgan {__version__}",
            "build": {
                "builder": "emoji",
                "seed": seed,
                "vendors": list(vendors),
                "categories": list(CATEGORIES),
                "available": len(items),
            },
        }
        writer.finish(meta, {k: v for k, v in splits.items() if v or k == "train"})
    return Path(out)
