#!/usr/bin/env bash
# Rebuild the README gallery from the bundled model with the CLI alone (the same commands the README shows).
# Usage: scripts/gallery.sh [OUT]   (default docs/gallery; needs `make install`; CPU, about a minute)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-docs/gallery}
S=".venv/bin/stylemapgan"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

# Reconstructions of held-out faces (encoder, one pass): inputs and outputs side by side
$S project test:0 test:1 test:2 test:3 test:4 test:5 --outdir "$WORK/proj" --quiet
# ... and refined: the encoder's stylemaps optimised towards the inputs (the web editor's Refine source)
$S project test:0 test:1 test:2 test:3 test:4 test:5 --method hybrid --steps 100 --lpips none \
    --outdir "$WORK/refined" --quiet
# Local edits: paste the reference's hair / eyes / mouth into the source (the reference's part mask, w+ blending)
for edit in hair:1 eyes:5 mouth:1; do
    part=${edit%%:*}
    $S edit --source test:0 --reference "test:${edit##*:}" --mask "$part" --mode w_plus --outdir "$WORK/edit-$part" --quiet
done
# Interpolation in stylemap space
$S interpolate test:0 test:5 --frames 8 --outdir "$WORK/lerp" --quiet
# Attribute edit with the bundled directions, when the model ships them
DIRS=src/stylemapgan/assets/models/cartoon-faces-directions.safetensors
if [ -f "$DIRS" ]; then
    $S attribute test:0 --directions "$DIRS" --attribute has_glasses --strength=-5,0,10,20 --outdir "$WORK/attr" --quiet
fi

.venv/bin/python - "$WORK" "$OUT" <<'PY'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

work, out = Path(sys.argv[1]), Path(sys.argv[2])


def row(paths: list[Path], size: int = 128) -> np.ndarray:
    tiles = [np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.NEAREST)) for p in paths]
    return np.concatenate(tiles, axis=1)


def save(name: str, rows: list[np.ndarray]) -> None:
    Image.fromarray(np.concatenate(rows, axis=0)).save(out / name)
    print(f"wrote {out / name}")


stems = [f"test{i}" for i in range(6)]
save("reconstructions.png", [row([work / "proj" / f"{s}_input.png" for s in stems]),
                             row([work / "proj" / f"{s}.png" for s in stems]),
                             row([work / "refined" / f"{s}.png" for s in stems])])
edits = [row([work / f"edit-{p}" / "test0_recon.png", work / f"edit-{p}" / "reference1_recon.png",
              work / f"edit-{p}" / "test0_mask1.png", work / f"edit-{p}" / "test0_edit.png"])
         for p in ("hair", "eyes", "mouth")]
save("local-edits.png", edits)
save("interpolation.png", [row(sorted((work / "lerp" / "interp_frames").glob("*.png")))])
frames = (work / "attr").glob("*_has_glasses_[+-]*.png") if (work / "attr").exists() else []
attr = sorted(frames, key=lambda p: float(p.stem.rsplit("_", 1)[1]))  # by strength; the strip is left out
if attr:
    save("attribute.png", [row(attr)])
PY
