#!/usr/bin/env bash
# The README's "Your own photos" figure, made with the CLI alone: a two-face photo (two public-domain portraits that
# ship inside PyPI packages: scikit-image's astronaut, matplotlib's grace_hopper.jpg), its aligned faces
# (`stylemapgan align`), and the photo with the bundled model's reconstructions pasted back (`project --align`).
# Usage: scripts/photo-figure.sh [OUT]   (default docs/gallery/photos.jpg; needs `make install`; CPU, under a minute)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-docs/gallery/photos.jpg}
PY=${PYTHON:-.venv/bin/python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$PY" - "$WORK/group.jpg" <<'PY'
import importlib.util
import sys
from pathlib import Path

from PIL import Image


def shipped(package: str, *parts: str) -> Path:
    return Path(next(iter(importlib.util.find_spec(package).submodule_search_locations))).joinpath(*parts)


left = Image.open(shipped("skimage", "data", "astronaut.png")).convert("RGB")
right = Image.open(shipped("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg")).convert("RGB")
group = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), (128, 128, 128))
group.paste(left, (0, 0))
group.paste(right, (left.width, 0))
group.save(sys.argv[1], quality=95)
PY
"$PY" -m stylemapgan align "$WORK/group.jpg" --outdir "$WORK/faces" --size 256 --no-progress
"$PY" -m stylemapgan project "$WORK/group.jpg" --align --outdir "$WORK/proj" --no-progress --lpips none

"$PY" - "$WORK" "$OUT" <<'PY'
import sys
from pathlib import Path

from PIL import Image

work, out = Path(sys.argv[1]), Path(sys.argv[2])
h = 160
tiles = [Image.open(work / "group.jpg"), Image.open(work / "faces" / "group_face0.png"),
         Image.open(work / "faces" / "group_face1.png"), Image.open(work / "proj" / "group_recon.png")]
tiles = [t.convert("RGB").resize((round(t.width * h / t.height), h), Image.Resampling.LANCZOS) for t in tiles]
figure = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) + 1), h + 8), (255, 255, 255))
x = 4
for t in tiles:
    figure.paste(t, (x, 4))
    x += t.width + 4
out.parent.mkdir(parents=True, exist_ok=True)
figure.save(out, quality=85)
print(f"wrote {out} ({figure.width}x{figure.height})")
PY
