"""The web editor's Refine source on a model: reconstruction MSE before / after and seconds per image, with
the page's settings (`stylemapgan.serving.routes.edits.refine_options`), one image at a time as the server runs it.

Reproduces the README's Refine figures:
python benchmarks/bench_refine.py --data data/cartoon-faces-64   (bundled model, 16 test faces, ~1 min on 2 cores)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from stylemapgan.data import PreparedDataset
from stylemapgan.editing import Editor
from stylemapgan.models import resolve_checkpoint
from stylemapgan.serving.routes.edits import DEFAULT_REFINE_STEPS, refine_options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--data", default="data/cartoon-faces-64")
    parser.add_argument("--num", type=int, default=16, help="first N test images")
    parser.add_argument("--steps", type=int, default=DEFAULT_REFINE_STEPS)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    editor = Editor.from_checkpoint(resolve_checkpoint(args.ckpt))
    data = PreparedDataset(args.data, size=editor.size, split="test")
    before, after, seconds = [], [], []
    for i in range(min(args.num, len(data))):
        image = data[i][None]
        handle = editor.encode(image)
        started = time.perf_counter()
        refined = editor.refine(handle, image, refine_options(args.steps))
        seconds.append(time.perf_counter() - started)
        before.append(refined.mse_before)
        after.append(refined.mse_after)
    print(f"{len(before)} test images, {args.steps} steps, {args.threads} threads: reconstruction MSE "
          f"{statistics.mean(before):.4f} -> {statistics.mean(after):.4f} (mean), "
          f"{statistics.median(seconds):.2f} s per image (median)")


if __name__ == "__main__":
    main()
