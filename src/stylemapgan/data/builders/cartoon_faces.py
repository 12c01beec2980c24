"""``cartoon-faces``: procedurally drawn faces from facesjs, with their face records, labels and part masks.

One node process (``facesjs_render.mjs``) generates faces and their SVGs as JSON lines; worker processes
rasterise each SVG (the picture, and a flat-colour re-render for the part label map, see ``facesjs_svg``).
Face ``i`` of a split depends only on (seed, split, i): Math.random is replaced by a seeded generator per face,
so counts can change without changing the faces already there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from stylemapgan.data.builders.common import check_seed, check_sizes, default_test_count, progress_bar
from stylemapgan.data.builders.facesjs_svg import (
    FAINT_ALPHA,
    PARTS,
    VIEW_BOX,
    render_label_map,
    render_png,
    set_view_box,
)
from stylemapgan.data.images import encode_png
from stylemapgan.data.lmdb_format import DatasetError, DatasetWriter
from stylemapgan.data.npm import ensure_npm_package, find_tool

FACESJS_VERSION = "5.0.3"
# facesjs's own dependencies, pinned so that the SVG geometry (bounding boxes) cannot drift.
FACESJS_DEPS = {"dlv": "1.1.3", "dset": "3.1.4", "svg-path-bbox": "2.1.0", "svgpath": "2.6.0"}
NODE_SCRIPT = Path(__file__).with_name("facesjs_render.mjs")
STREAMS = {"train": 0, "test": 1}
DEFAULT_COUNT = 30_000
DEFAULT_TEST_COUNT = 1_000
CATEGORICAL_FEATURES = {  # label name -> facesjs feature
    "hair_id": "hair",
    "hair_bg_id": "hairBg",
    "head_id": "head",
    "eye_id": "eye",
    "eyebrow_id": "eyebrow",
    "nose_id": "nose",
    "mouth_id": "mouth",
    "ear_id": "ear",
    "glasses_id": "glasses",
    "facial_hair_id": "facialHair",
    "accessory_id": "accessories",
    "eye_line_id": "eyeLine",
    "smile_line_id": "smileLine",
    "misc_line_id": "miscLine",
    "body_id": "body",
    "jersey_id": "jersey",
}
PRESENCE = {  # binary label -> feature whose id is not "none"
    "has_glasses": "glasses",
    "has_facial_hair": "facialHair",
    "has_accessory": "accessories",
    "has_hair_bg": "hairBg",
    "has_eye_line": "eyeLine",
    "has_smile_line": "smileLine",
    "has_misc_line": "miscLine",
}
HATS = ("hat", "hat2", "hat3", "santa-hat")
FLOATS = {  # label -> (feature, field); numbers straight from the face record
    "fatness": (None, "fatness"),
    "eye_angle": ("eye", "angle"),
    "eyebrow_angle": ("eyebrow", "angle"),
    "nose_size": ("nose", "size"),
    "ear_size": ("ear", "size"),
    "body_size": ("body", "size"),
    "smile_line_size": ("smileLine", "size"),
}
FLIPS = {"hair_flip": "hair", "mouth_flip": "mouth", "nose_flip": "nose"}


def _lightness(hex_color: str) -> float:
    """Relative luminance (0 black .. 1 white) of '#rrggbb': a continuous skin / hair tone label."""
    h = hex_color.lstrip("#")
    rgb = np.array([int(h[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.float64) / 255.0
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return round(float(lin @ np.array([0.2126, 0.7152, 0.0722])), 6)


def _unique(seq) -> list[str]:
    return list(dict.fromkeys(seq))


class LabelSchema:
    """Numeric labels from a face record; vocabularies come from the facesjs header so they are complete."""

    def __init__(self, header: dict[str, Any]) -> None:
        races = list(header["races"])
        colors = header["colors"]
        self.vocab: dict[str, list[str]] = {
            "race": races,
            "skin_color": _unique(c.lower() for r in races for c in colors[r]["skin"]),
            "hair_color": _unique(c.lower() for r in races for c in colors[r]["hair"]),
        }
        for name, feature in CATEGORICAL_FEATURES.items():
            self.vocab[name] = list(header["svgsIndex"][feature])
        self.kinds: dict[str, str] = {"female": "binary"}
        self.kinds.update(
            race="categorical",
            skin_color="categorical",
            skin_lightness="float",
            hair_color="categorical",
            hair_lightness="float",
        )
        self.kinds.update({name: "categorical" for name in CATEGORICAL_FEATURES})
        self.kinds.update({name: "binary" for name in PRESENCE})
        self.kinds["has_hat"] = "binary"
        self.kinds.update({name: "float" for name in FLOATS})
        self.kinds["head_shave"] = "float"
        self.kinds.update({name: "binary" for name in FLIPS})
        self.kinds.update({f"area_{p}": "float" for p in PARTS[1:]})
        self.names = list(self.kinds)

    def row(self, item: dict[str, Any], areas: list[float]) -> list[float]:
        face = item["face"]
        values: dict[str, float] = {
            "female": float(item["gender"] == "female"),
            "race": self._index("race", item["race"]),
            "skin_color": self._index("skin_color", face["body"]["color"].lower()),
            "skin_lightness": _lightness(face["body"]["color"]),
            "hair_color": self._index("hair_color", face["hair"]["color"].lower()),
            "hair_lightness": _lightness(face["hair"]["color"]),
        }
        for name, feature in CATEGORICAL_FEATURES.items():
            values[name] = self._index(name, face[feature]["id"])
        for name, feature in PRESENCE.items():
            values[name] = float(face[feature]["id"] != "none")
        values["has_hat"] = float(face["accessories"]["id"] in HATS)
        for name, (feature, key) in FLOATS.items():
            values[name] = float((face if feature is None else face[feature])[key])
        shave = face["head"]["shave"]  # "rgba(0,0,0,A)"
        values["head_shave"] = float(shave.rstrip(")").split(",")[-1])
        for name, feature in FLIPS.items():
            values[name] = float(bool(face[feature]["flip"]))
        for part, area in zip(PARTS[1:], areas[1:], strict=True):
            values[f"area_{part}"] = area
        return [values[n] for n in self.names]

    def _index(self, name: str, value: str) -> float:
        try:
            return float(self.vocab[name].index(value))
        except ValueError:
            raise DatasetError(f"facesjs produced {name}={value!r}, not in its own vocabulary") from None

    def describe(self) -> dict[str, Any]:
        return {"names": self.names, "kinds": self.kinds, "vocab": self.vocab}


def mask_supersample(size: int) -> int:
    return max(1, min(4, 512 // size))


def render_face(
    line: str, sizes: tuple[int, ...]
) -> tuple[dict[str, Any], dict[int, bytes], dict[int, bytes], list[float]]:
    """One JSON line from node -> (item without svg, image PNGs, mask PNGs, part area fractions)."""
    from PIL import Image

    item = json.loads(line)
    svg = set_view_box(item.pop("svg"), VIEW_BOX)
    images, masks = {}, {}
    areas: list[float] = []
    for size in sizes:
        images[size] = encode_png(render_png(svg, size))
        label_map = render_label_map(svg, size, mask_supersample(size))
        masks[size] = encode_png(Image.fromarray(label_map, mode="L"))
        if size == max(sizes):
            counts = np.bincount(label_map.ravel(), minlength=len(PARTS))
            areas = [round(float(c) / label_map.size, 6) for c in counts]
    return item, images, masks, areas


def _start_node(package_dir: Path, seed: int, count: int, test_count: int, stderr) -> subprocess.Popen:
    job = {"seed": seed, "ranges": [[STREAMS["train"], 0, count], [STREAMS["test"], 0, test_count]]}
    return subprocess.Popen(
        [find_tool("node"), str(NODE_SCRIPT), str(package_dir), json.dumps(job)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        bufsize=1 << 20,
    )


def _tail(stream) -> str:
    stream.seek(0)
    return stream.read()[-800:].decode(errors="replace").strip()


def build_cartoon_faces(
    out: str | Path,
    *,
    sizes: tuple[int, ...] = (64,),
    count: int | None = None,
    test_count: int | None = None,
    seed: int = 0,
    workers: int = 2,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Draw ``count`` train and ``test_count`` test faces at each size; returns the dataset path. Defaults: 30,000
    + 1,000; a ``count`` without ``test_count`` draws a tenth as many test faces (``default_test_count``)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    test_count = default_test_count(count, DEFAULT_TEST_COUNT) if test_count is None else int(test_count)
    count = DEFAULT_COUNT if count is None else int(count)
    check_seed(seed)
    if count < 1 or test_count < 0:
        raise DatasetError(f"need count >= 1 and test count >= 0 (got {count}, {test_count})")
    sizes = check_sizes("cartoon-faces", sizes, 16, 1024, "vector drawings; 64, 128, 256 are usual")
    package_dir = ensure_npm_package("facesjs", FACESJS_VERSION, FACESJS_DEPS, log=log)
    total = count + test_count
    with tempfile.TemporaryFile() as node_err:
        node = _start_node(package_dir, seed, count, test_count, node_err)
        try:
            header = json.loads(node.stdout.readline() or "null") if node.stdout else None
            if not isinstance(header, dict) or header.get("type") != "header":
                raise DatasetError(f"facesjs script failed: {_tail(node_err)}")
            schema = LabelSchema(header)
            with DatasetWriter(out, overwrite=overwrite, log=log) as writer:
                splits = _render_all(node, writer, schema, sizes, seed, workers, total, progress)
                if node.wait() != 0:
                    raise DatasetError(f"facesjs script exited with {node.returncode}: {_tail(node_err)}")
                if writer.count != total:
                    raise DatasetError(f"facesjs script produced {writer.count} faces, expected {total}")
                meta = _card(header, schema, sizes, seed, count, test_count)
                writer.finish(meta, {k: v for k, v in splits.items() if v or k == "train"})
        finally:
            if node.poll() is None:
                node.kill()
            node.wait()
    return Path(out)


def _render_all(
    node: subprocess.Popen,
    writer: DatasetWriter,
    schema: LabelSchema,
    sizes: tuple[int, ...],
    seed: int,
    workers: int,
    total: int,
    progress: bool,
) -> dict[str, list[int]]:
    """Stream node's faces through a process pool (bounded queue, input order kept) into the writer."""
    splits: dict[str, list[int]] = {"train": [], "test": []}
    workers = max(1, workers)
    with get_context("fork").Pool(workers) as pool, progress_bar(total, "cartoon-faces", progress) as bar:
        pending: deque = deque()

        def drain_one() -> None:
            item, images, masks, areas = pending.popleft().get()
            split = "train" if item["stream"] == STREAMS["train"] else "test"
            record = {
                "split": split,
                "index": item["index"],
                "seed": seed,
                "gender": item["gender"],
                "race": item["race"],
                "face": item["face"],
            }
            splits[split].append(writer.add(images, masks=masks, record=record, labels=schema.row(item, areas)))
            bar.update(1)

        assert node.stdout is not None
        for line in node.stdout:
            pending.append(pool.apply_async(render_face, (line, sizes)))
            if len(pending) >= 8 * workers:
                drain_one()
        while pending:
            drain_one()
    return splits


def _card(
    header: dict[str, Any], schema: LabelSchema, sizes: tuple[int, ...], seed: int, count: int, test_count: int
) -> dict[str, Any]:
    from stylemapgan import __version__

    return {
        "name": "cartoon-faces",
        "description": "cartoon faces procedurally drawn by facesjs, with their face records "
        "(ground-truth attributes), numeric labels and per-part masks",
        "source": {
            "type": "npm",
            "package": "facesjs",
            "version": header["facesjs_version"],
            "dependencies": FACESJS_DEPS,
        },
        "licence": "Apache-2.0 (facesjs, whose artwork these images are drawn from)",
        "attribution": "Faces drawn with facesjs by Jeremy Scheff (zengm-games), Apache-2.0.",
        "resize_filter": "vector",
        "square": "native",
        "background": [255, 255, 255],
        "split_seed": seed,
        "labels": schema.describe(),
        "masks": {
            "format": "label-map-png",
            "parts": list(PARTS),
            "description": "each pixel holds the index of the topmost part that visibly paints it "
            f"(paint opacity >= {FAINT_ALPHA}); weighted majority over a supersampled "
            "flat-colour render of the same SVG",
        },
        "records": True,
        "skipped": {"total": 0, "by_reason": {}, "items": []},
        "conversions": {},
        "created_by": f"stylemapgan {__version__}",
        "build": {
            "builder": "cartoon-faces",
            "seed": seed,
            "count": count,
            "test_count": test_count,
            "view_box": list(VIEW_BOX),
            "mask_supersample": {str(s): mask_supersample(s) for s in sizes},
            "streams": STREAMS,
            "renderer": _renderer_version(),
        },
    }


def _renderer_version() -> str:
    import cairocffi
    import cairosvg

    return f"cairosvg {cairosvg.__version__}, cairo {cairocffi.cairo_version_string()}"
