#!/usr/bin/env bash
# Every input of issue 19, run as a hostile user would, under /usr/bin/time -v: crafted checkpoints (a
# cpu-64-small checkpoint, 13 MB, whose config asks for absurd sizes, or whose tensors are of the wrong kind), a
# 2.1 MB zip holding a real 2 GB member, `prepare --size 100000`, a 20000x20000 source image, unbounded counts,
# bad flags, outputs that cannot be written, failed commands (what they leave behind).
# Prints one row per probe: exit code, peak RSS, the first stderr line; `left:` rows list what a failed command
# left in its output folder, `check:` rows compare outputs.
# Usage: scripts/probes.sh [--bench] [PYTHON]   (default .venv/bin/python; about ten minutes on 2 idle CPU cores,
# --bench adds `stylemapgan bench` with its defaults: several minutes more)
# Crafted inputs (except the 2 GB member) must each stay under 1 GB; the quick probes are also tests:
# tests/test_robustness.py.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=0
if [ "${1:-}" = "--bench" ]; then BENCH=1; shift; fi
PY=${1:-.venv/bin/python}
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "needs GNU time: apt-get install time" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=1

"$PY" - "$WORK" <<'EOF'
import io, json, os, struct, sys, zipfile, zlib
from pathlib import Path
import numpy as np
import torch
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

def write(name, h, b=body):
    raw = json.dumps(h).encode() if not isinstance(h, bytes) else h
    (work / f"{name}.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw + b)

for name, changes in {"mapping_layers_1e6": {"mapping_layers": 10**6}, "channel_base_81920": {"channel_base": 81920},
                      "latent_channels_1e6": {"latent_channels": 10**6}, "channel_base_2e40": {"channel_base": 2**40},
                      "latent_channels_64.5": {"latent_channels": 64.5},
                      "paper256_config": get_preset("paper-256").model.to_dict()}.items():
    h = json.loads(json.dumps(header))
    h["__metadata__"]["config"] = json.dumps({**json.loads(h["__metadata__"]["config"]), **changes})
    write(name, h)
h = json.loads(json.dumps(header))
h["__metadata__"]["provenance"] = "[1, 2]"
write("provenance_list", h)
write("header_array", b"[1, 2]", b"")
write("header_deep", b"[" * 50_000 + b"]" * 50_000, b"")
h = json.loads(json.dumps(header))
h[next(k for k in h if k != "__metadata__")] = [1, 2, 3]
write("tensor_entry_list", h)
for dtype in ("int64", "float16", "bool"):
    ckpt = fresh_checkpoint(get_preset("cpu-64-small").model, 0, "probe")
    ckpt.networks = {k: {n: v.to(getattr(torch, dtype)) for n, v in s.items()} for k, s in ckpt.networks.items()}
    save_checkpoint(work / f"weights_{dtype}.safetensors", ckpt)
ckpt = fresh_checkpoint(get_preset("cpu-64-small").model, 0, "probe")
ckpt.networks["g_ema"]["synthesis.const"][:] = float("nan")
save_checkpoint(work / "weights_nan.safetensors", ckpt)

class Pickled:
    def __reduce__(self):
        return (os.system, ("true",))

torch.save({"g_ema": {}, "train_args": Pickled()}, work / "pickled.pt")
rng = np.random.default_rng(0)
(work / "imgs").mkdir()
for i in range(6):
    Image.fromarray(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)).save(work / "imgs" / f"img{i}.png")
Image.new("L", (64, 64), 0).save(work / "black_mask.png")
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
src = work / "odd"
src.mkdir()
Image.fromarray(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)).save(src / "a.png")
os.symlink(work / "imgs", src / "linked_dir")
os.symlink(work / "missing.png", src / "broken.png")
os.mkfifo(src / "pipe")
os.symlink("/dev/null", src / "devnull.png")
EOF

W=$WORK
echo afile >"$W/afile"
# a folder that refuses new entries: sysfs for root (permissions do not stop root), a read-only folder otherwise
if [ "$(id -u)" = 0 ]; then RO=/sys/stylemapgan_probe; else mkdir "$W/ro"; chmod 555 "$W/ro"; RO=$W/ro/out; fi

printf '%-40s %4s %7s  %s\n' probe exit "RSS MB" "first stderr line"
probe() {
    local name=$1
    shift
    "$TIME" -v -o "$W/time.txt" "$@" >"$W/out.txt" 2>"$W/err.txt" && code=0 || code=$?
    local rss
    rss=$(awk '/Maximum resident set size/ {print int($6 / 1024)}' "$W/time.txt")
    printf '%-40s %4s %7s  %s\n' "$name" "$code" "$rss" "$(grep -v '^Command exited' "$W/err.txt" | head -n 1 \
        | sed "s#$W/##g" | cut -c 1-160)"
}
smg() { local name=$1; shift; probe "$name" "$PY" -m stylemapgan "$@"; }
left() { printf '%-40s %s\n' "  left: $1" "$(cd "$2" 2>/dev/null && find . -mindepth 1 | sort | tr '\n' ' ' || echo '(no folder)')"; }
GOOD=$W/good.safetensors
IMG0=$W/imgs/img0.png
IMG1=$W/imgs/img1.png
EDIT=(edit --ckpt "$GOOD" --source "$IMG0" --reference "$IMG1" --quiet)

"$PY" -m stylemapgan prepare "$W/imgs" "$W/ds" --size 16 --test 2 --no-progress >/dev/null

# ---- memory without bounds -----------------------------------------------------------------------------------
for ck in mapping_layers_1e6 channel_base_81920 latent_channels_1e6 channel_base_2e40; do
    smg "info $ck" info "$W/$ck.safetensors"
    smg "generate $ck" generate --ckpt "$W/$ck.safetensors" --seeds 0 --outdir "$W/gen"
    probe "load_checkpoint $ck" "$PY" -c "import sys
from stylemapgan.checkpoint import load_checkpoint
try: load_checkpoint(sys.argv[1])
except Exception as e: sys.exit(f'{type(e).__name__}: {e}')" "$W/$ck.safetensors"
done
smg "prepare 2GB zip member" prepare "$W/bomb.zip" "$W/ds1" --size 64 --no-progress
smg "prepare --size 100000 --upscale-small" prepare "$W/bomb.zip" "$W/ds2" --size 100000 --upscale-small --no-progress
smg "edit --frames 100000" "${EDIT[@]}" --mask 0,0,32,32 --frames 100000 --outdir "$W/e2"
smg "generate --seeds 0-999999999" generate --ckpt "$GOOD" --seeds 0-999999999 --outdir "$W/g2"
if [ "$BENCH" = 1 ]; then smg "bench (defaults)" bench --no-progress; fi

# ---- wrong output with exit 0 ---------------------------------------------------------------------------------
smg "edit --frames 1" "${EDIT[@]}" --mask 0,0,32,64 --frames 1 --outdir "$W/f1"
"$PY" -m stylemapgan "${EDIT[@]}" --mask 0,0,32,64 --alpha 1 --outdir "$W/a1" >/dev/null 2>&1
cmp -s "$W/f1/img0_edit.png" "$W/a1/img0_edit.png" && same=yes || same=no
printf '%-40s %s\n' "  check: --frames 1 == --alpha 1" "$same"
for ck in weights_int64 weights_float16 weights_bool weights_nan; do
    smg "generate $ck" generate --ckpt "$W/$ck.safetensors" --seeds 0 --outdir "$W/gen"
done
smg "generate --trunc nan" generate --ckpt "$GOOD" --seeds 0 --trunc nan --outdir "$W/g3"
smg "edit --shift off the image" "${EDIT[@]}" --mask 0,0,32,32 --shift=200,0 --outdir "$W/s1"
printf '%-40s %s\n' "  check: warning in edit.json" "$(grep -c 'pastes nothing' "$W/s1/edit.json" || true)"
smg "edit all-zero mask" "${EDIT[@]}" --mask "$W/black_mask.png" --outdir "$W/z1"
printf '%-40s %s\n' "  check: warning in edit.json" "$(grep -c 'is empty' "$W/z1/edit.json" || true)"

# ---- one-line errors instead of tracebacks ------------------------------------------------------------------
smg "prepare outdir unwritable" prepare "$W/imgs" "$RO" --size 16 --no-progress
smg "generate outdir unwritable" generate --ckpt "$GOOD" --seeds 0 --outdir "$RO"
smg "edit outdir unwritable" "${EDIT[@]}" --mask 0,0,8,8 --outdir "$RO"
smg "train outdir unwritable" train --data "$W/ds" --preset tiny --iters 2 --outdir "$RO"
smg "prepare outdir parent is a file" prepare "$W/imgs" "$W/afile/ds" --size 16 --no-progress
smg "generate outdir parent is a file" generate --ckpt "$GOOD" --seeds 0 --outdir "$W/afile/g"
smg "edit outdir parent is a file" "${EDIT[@]}" --mask 0,0,8,8 --outdir "$W/afile/e"
smg "train outdir parent is a file" train --data "$W/ds" --preset tiny --iters 2 --outdir "$W/afile/run"
smg "train outdir is a file" train --data "$W/ds" --preset tiny --iters 2 --outdir "$W/afile"
smg "edit 20000x20000 source" edit --ckpt "$GOOD" --source "$W/bomb.png" --reference "$IMG1" --mask 0,0,32,32 \
    --outdir "$W/e1"
smg "generate --seeds 99999999999999999999" generate --ckpt "$GOOD" --seeds 99999999999999999999 --outdir "$W/g5"
smg "edit --feather nan" "${EDIT[@]}" --mask 0,0,8,8 --feather nan --outdir "$W/e3"
smg "train --batch > dataset" train --data "$W/ds" --preset tiny --iters 2 --batch 100 --outdir "$W/run1"
for ck in header_array header_deep tensor_entry_list provenance_list latent_channels_64.5 paper256_config; do
    smg "info $ck" info "$W/$ck.safetensors"
done

# ---- outputs: a file where a folder is expected (or the reverse), a parent that is a file, unwritable ------------
mkdir -p "$W/adir" "$W/card.md"
smg "init --out is a folder" init --preset tiny --out "$W/adir"
smg "convert OUT parent is a file" convert "$GOOD" "$W/afile/c.safetensors"
smg "release --out is a folder" release "$GOOD" --out "$W/adir" --name x
smg "release card .md is a folder" release "$GOOD" --out "$W/card.safetensors" --name x
smg "release --out unwritable" release "$GOOD" --out "$RO/r.safetensors" --name x
smg "directions --out is a folder" directions --ckpt "$GOOD" --pca 2 --samples 10 --out "$W/adir"
smg "directions --out parent is a file" directions --ckpt "$GOOD" --pca 2 --samples 10 --out "$W/afile/d.st"
smg "export-onnx --outdir is a file" export-onnx --ckpt "$GOOD" --outdir "$W/afile"
smg "export-onnx --outdir unwritable" export-onnx --ckpt "$GOOD" --outdir "$RO"
smg "eval --out parent is a file" eval --ckpt "$GOOD" --data "$W/ds" --out "$W/afile/report.json"
smg "bench --out is a folder" bench --config tiny --out "$W/adir"
smg "datasets build OUT is a file" datasets build emoji "$W/afile"
smg "interpolate --video is a folder" interpolate "$IMG0" "$IMG1" --ckpt "$GOOD" --outdir "$W/i1" --video "$W/adir"

# ---- left behind ---------------------------------------------------------------------------------------------
mkdir -p "$W/e4/img0_edit.png"
echo mine >"$W/e4/mine.txt"
smg "edit failing mid-run" "${EDIT[@]}" --mask 0,0,8,8 --outdir "$W/e4"
left "edit failing mid-run" "$W/e4"
smg "train failing (batch > dataset)" train --data "$W/ds" --preset tiny --iters 2 --batch 100 --outdir "$W/run2"
left "train failing" "$W/run2"
"$PY" -m stylemapgan train --data "$W/ds" --preset tiny --iters 1 --checkpoint-every 1 --perceptual none \
    --no-progress --outdir "$W/run3" >/dev/null 2>&1
echo half >"$W/run3/checkpoints/.ckpt-0000002.safetensors.x1y2.tmp"
smg "train resume, stale .tmp" train --data "$W/ds" --iters 2 --no-progress --resume "$W/run3" --outdir "$W/run3"
printf '%-40s %s\n' "  check: stale .tmp files left" "$(find "$W/run3" -name '*.tmp' | wc -l)"

# ---- smaller --------------------------------------------------------------------------------------------------
smg "generate pickled checkpoint" generate --ckpt "$W/pickled.pt" --seeds 0 --outdir "$W/g6"
smg "prepare links, fifo, device" prepare "$W/odd" "$W/ds3" --size 16 --no-progress
printf '%-40s %s\n' "  check: skipped listed" "$(grep -A8 skipped "$W/out.txt" | tr -s ' \n' ' ' | cut -c 1-160)"
smg "prepare --workers -3" prepare "$W/imgs" "$W/ds4" --size 16 --workers -3
smg "edit --feather -5" "${EDIT[@]}" --mask 0,0,8,8 --feather=-5 --outdir "$W/e5"
smg "train --iters -5" train --data "$W/ds" --preset tiny --iters -5 --outdir "$W/run4"
