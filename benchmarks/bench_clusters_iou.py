"""How well unsupervised part clusters (spherical k-means of generator features, `stylemapgan clusters fit`) match
a dataset's labelled part masks: per part, the IoU of the best cluster and of the best union of clusters.

Clusters are fitted on random samples of the model; the labelled images (a prepared dataset's test split with part
masks) are encoded by the model's encoder and each pixel is given its most similar cluster, as `--mask cluster:N`
does. Honest split: the cluster (or union, grown greedily while the IoU rises) that stands for a part is chosen on
the first half of the images and scored on the second half; IoU is pooled over that half's pixels. A part absent
from the scoring half shows n/a.

Reproduces the report's table (about 2 min on 2 cores; any cartoon-faces dataset with a 100-image test split,
e.g. `stylemapgan datasets build cartoon-faces DIR --size 64 --count 2000 --test-count 100`):
python benchmarks/bench_clusters_iou.py --ckpt cartoon-faces --data DIR --k 8,12,16
Measured (default layers 16+32, 200 samples, seed 0; mean best-union IoU over the 13 parts): K=8 0.237, K=12 0.259,
K=16 0.277. At K=16: background 0.92, face 0.62, hair 0.63, clothes 0.48, body 0.45, eyes 0.17, mouth 0.08,
ears 0.07, accessories 0.07, eyebrows 0.05, facial_hair 0.04, nose 0.02, glasses 0.01.
Layers at K=16: 16 0.246, 16+32 0.277, 16+32+64 0.263, 32+64 0.238 (K=12: 8 0.12, 32 0.22, 64 0.21).
Sweep: --k 8,12,16 --layer 16,32,64 (a layer "16+32" concatenates two layers).
"""

from __future__ import annotations

import argparse
import time

import torch

from stylemapgan.checkpoint.models import load_editing_model
from stylemapgan.data import PreparedDataset
from stylemapgan.editing.clusters import (
    check_resolutions,
    cluster_map,
    cluster_scores,
    default_resolutions,
    fit_clusters,
)
from stylemapgan.models import bundled_samples, resolve_checkpoint


def confusion(cluster_ids: torch.Tensor, labels: torch.Tensor, k: int, parts: int) -> torch.Tensor:
    """[K, P] pixel counts: cluster c and labelled part p at the same pixel."""
    return torch.bincount(cluster_ids.flatten() * parts + labels.flatten(), minlength=k * parts).view(k, parts)


def union_iou(table: torch.Tensor, part: int, chosen: list[int]) -> float:
    inter = float(table[chosen, part].sum())
    union = float(table[:, part].sum()) + float(table[chosen].sum()) - inter
    return inter / union if union > 0 else float("nan")


def best_clusters(table: torch.Tensor, part: int) -> tuple[int, list[int]]:
    """The single best cluster, and a union grown greedily from it while the IoU rises."""
    k = table.shape[0]
    single = max(range(k), key=lambda c: union_iou(table, part, [c]))
    chosen = [single]
    while True:
        rest = [c for c in range(k) if c not in chosen]
        if not rest:
            break
        nxt = max(rest, key=lambda c: union_iou(table, part, [*chosen, c]))
        if union_iou(table, part, [*chosen, nxt]) <= union_iou(table, part, chosen):
            break
        chosen.append(nxt)
    return single, sorted(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="cartoon-faces")
    parser.add_argument("--data", default=None, help="prepared dataset with part masks (default: the bundled samples)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=100, help="labelled images used (half choose, half score)")
    parser.add_argument("--k", default="12", help="cluster counts, comma-separated")
    parser.add_argument("--layer", default=None,
                        help="layers, comma-separated; '16+32' concatenates (default: the library's, 16+32 at 64 px)")
    parser.add_argument("--samples", type=int, default=200, help="random samples the clusters are fitted on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = resolve_checkpoint(args.ckpt)
    model = load_editing_model(path)
    generator, encoder = model.generator.eval(), model.encoder.eval()
    data = args.data or str(bundled_samples(path))
    ds = PreparedDataset(data, model.config.size, args.split, masks=True)
    n = min(args.limit, len(ds))
    records = [ds[i] for i in range(n)]
    images = torch.stack([r["image"] for r in records]).float()
    labels = torch.stack([r["mask"].long() for r in records])
    names = ds.part_names
    with torch.no_grad():
        styles = generator.resizer(torch.cat([encoder(images[i : i + 16]) for i in range(0, n, 16)]))
    half = n // 2
    print(f"model {args.ckpt}; {n} labelled images of {data} ({args.split}): clusters chosen on {half}, "
          f"scored on {n - half}; fitted on {args.samples} samples, seed {args.seed}\n")
    summary = []
    layers = args.layer or "+".join(map(str, default_resolutions(model.config)))
    for layer_text in layers.split(","):
        resolutions = check_resolutions(model.config, [int(r) for r in layer_text.split("+")])
        for k in (int(v) for v in args.k.split(",")):
            start = time.perf_counter()
            with torch.no_grad():
                clusters = fit_clusters(generator, k, resolutions=resolutions, samples=args.samples, seed=args.seed)
                ids = torch.cat([cluster_map(cluster_scores(generator, [s[i : i + 16] for s in styles], clusters))
                                 for i in range(0, n, 16)])
            choose = confusion(ids[:half], labels[:half], k, len(names))
            score = confusion(ids[half:], labels[half:], k, len(names))
            print(f"layer {layer_text}, K={k} ({time.perf_counter() - start:.0f} s)")
            print("| part | best cluster | IoU | best union | IoU |")
            print("|---|---|---|---|---|")
            unions = []
            for p, name in enumerate(names):
                if int(score[:, p].sum()) == 0 or int(choose[:, p].sum()) == 0:
                    print(f"| {name} | - | n/a | - | n/a |")
                    continue
                single, chosen = best_clusters(choose, p)
                u = union_iou(score, p, chosen)
                unions.append(u)
                print(f"| {name} | {single} | {union_iou(score, p, [single]):.3f} | "
                      f"{'+'.join(map(str, chosen))} | {u:.3f} |")
            mean = sum(unions) / len(unions)
            summary.append((layer_text, k, mean))
            print(f"mean union IoU over {len(unions)} parts: {mean:.3f}\n")
    if len(summary) > 1:
        print("| layer | K | mean union IoU |\n|---|---|---|")
        for layer_text, k, mean in summary:
            print(f"| {layer_text} | {k} | {mean:.3f} |")


if __name__ == "__main__":
    main()
