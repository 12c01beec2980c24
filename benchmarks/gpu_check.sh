#!/usr/bin/env bash
# GPU check for a short lent GPU slot (under 8 minutes): the CUDA-marked tests and the paper-256 GPU timings
# (fp32, TF32, bf16; decoder, encoder, cached edit, training step), written as one JSON.
#   bash benchmarks/gpu_check.sh [OUT.json]      (default: $OUT/gpu_check.json, or ./gpu_check.json without $OUT)
# Without a CUDA GPU it says so plainly, writes a JSON with "gpu": null and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-.}/gpu_check.json}"
python="${PYTHON:-python}"
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then python=.venv/bin/python; fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 470 "$python" benchmarks/gpu_check.py --out "$out" --budget-s 420
