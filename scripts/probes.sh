#!/usr/bin/env bash
# The heavy probes of issue 19 under /usr/bin/time -v: crafted checkpoints (a cpu-64-small checkpoint, 13 MB,
# whose config asks for absurd sizes), a 2.1 MB zip holding a 2 GB member, `prepare --size 100000`, a 20000x20000
# source image, unbounded counts. Prints one row per probe: exit code, peak RSS, the first stderr line.
# Usage: scripts/probes.sh [PYTHON]   (default .venv/bin/python; about two minutes on 2 CPU cores, mostly the zip)
# The quick probes are tests: tests/test_robustness.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "needs GNU time: apt-get install time" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=1

"$PY" - "$WORK" <<'EOF'
import io, json, struct, sys, zipfile, zlib
from pathlib import Path
import numpy as np
from PIL import Image
from stylemapgan.checkpoint import fresh_checkpoint, save_checkpoint
from stylemapgan.checkpoint.format import checkpoint_to_bytes
from stylemapgan.config import get_preset

work = Path(sys.argv[1])
base = fresh_checkpoint(get_preset("cpu-64-small").model, 0, "probe")
save_checkpoint(work / "good.safetensors", base)
data = checkpoint_to_bytes(base)
n = int.from_bytes(data[:8], "little")
header, body = json.loads(data[8 : 8 + n]), data[8 + n :]
for name, changes in {"mapping_layers_1e6": {"mapping_layers": 10**6}, "channel_base_81920": {"channel_base": 81920},
                      "latent_channels_1e6": {"latent_channels": 10**6}, "channel_base_2e40": {"channel_base": 2**40},
                      "latent_channels_64.5": {"latent_channels": 64.5},
                      "paper256_config": get_preset("paper-256").model.to_dict()}.items():
    h = json.loads(json.dumps(header))
    h["__metadata__"]["config"] = json.dumps({**json.loads(h["__metadata__"]["config"]), **changes})
    raw = json.dumps(h).encode()
    (work / f"{name}.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw + body)
ckpt = fresh_checkpoint(get_preset("cpu-64-small").model, 0, "probe")
ckpt.networks["g_ema"]["synthesis.const"][:] = float("nan")
save_checkpoint(work / "nan_weights.safetensors", ckpt)
rng = np.random.default_rng(0)
for i in range(2):
    Image.fromarray(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)).save(work / f"img{i}.png")
buf = io.BytesIO()
Image.fromarray(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)).save(buf, "PNG")
with zipfile.ZipFile(work / "bomb.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
    zf.writestr("ok.png", buf.getvalue())
    with zf.open("huge.bmp", "w", force_zip64=True) as f:  # 2 GiB of zeros, deflated to about 2 MB
        for _ in range(128):
            f.write(bytes(1 << 24))
def chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
side = 20000
(work / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                                + chunk(b"IDAT", zlib.compress(bytes(side * 3 + 1) * 4)) + chunk(b"IEND", b""))
EOF

printf '%-34s %4s %9s  %s\n' probe exit "RSS MB" "first stderr line"
probe() {
    local name=$1
    shift
    "$TIME" -v -o "$WORK/time.txt" "$PY" -m stylemapgan "$@" >"$WORK/out.txt" 2>"$WORK/err.txt" && code=0 || code=$?
    local rss
    rss=$(awk '/Maximum resident set size/ {print int($6 / 1024)}' "$WORK/time.txt")
    printf '%-34s %4s %9s  %s\n' "$name" "$code" "$rss" "$(head -c 150 "$WORK/err.txt" | head -n 1)"
}
W=$WORK
for ck in mapping_layers_1e6 channel_base_81920 latent_channels_1e6 channel_base_2e40 latent_channels_64.5 \
          paper256_config nan_weights; do
    probe "info $ck" info "$W/$ck.safetensors"
    probe "generate $ck" generate --ckpt "$W/$ck.safetensors" --seeds 0 --outdir "$W/gen"
done
probe "prepare 2GB zip member" prepare "$W/bomb.zip" "$W/ds" --size 64 --no-progress
probe "prepare --size 100000" prepare "$W/bomb.zip" "$W/ds2" --size 100000 --upscale-small --no-progress
probe "edit 20000x20000 source" edit --ckpt "$W/good.safetensors" --source "$W/bomb.png" \
    --reference "$W/img1.png" --mask 0,0,32,32 --outdir "$W/e1"
probe "edit --frames 100000" edit --ckpt "$W/good.safetensors" --source "$W/img0.png" \
    --reference "$W/img1.png" --mask 0,0,32,32 --frames 100000 --outdir "$W/e2"
probe "generate --seeds 0-999999999" generate --ckpt "$W/good.safetensors" --seeds 0-999999999 --outdir "$W/g2"
probe "generate --trunc nan" generate --ckpt "$W/good.safetensors" --seeds 0 --trunc nan --outdir "$W/g3"
probe "generate good (baseline)" generate --ckpt "$W/good.safetensors" --seeds 0-3 --outdir "$W/g4" --quiet
