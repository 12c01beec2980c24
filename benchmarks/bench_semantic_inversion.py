"""SemanticStyleGAN inversion: encoder vs optimisation (official recipe) vs hybrid, reconstruction MSE / LPIPS and
seconds per image, on held-out real images (the dataset's test split) or on generated ones.

Every method inverts the same images as one batch (the latent loss is per image, so a batch gives each image what it
would get alone); seconds per image = the batch's wall (and process CPU) time / N, after one warm-up pass; on a
shared machine the CPU time is the steadier figure. MSE is of the clamped reconstruction on images in [-1, 1];
LPIPS is scored with --metric (default stlpips-alex, not the optimisation's own loss network, which the
optimisation minimises directly).

python benchmarks/bench_semantic_inversion.py --ckpt RUN/checkpoints/ckpt-N.safetensors --data cf64-small --images 4
(the checkpoint of `stylemapgan train-encoder` holds generator and encoder; without an encoder only "optimize" runs)
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from stylemapgan.checkpoint.models import build_network, load_inference_model
from stylemapgan.data import open_dataset
from stylemapgan.data.dataset import collate_images, fit_to_model
from stylemapgan.losses import build_perceptual
from stylemapgan.losses.perceptual import reconstruction_metrics
from stylemapgan.semantic.inversion import InversionOptions, invert
from stylemapgan.semantic.latents import part_mix


def held_out_images(data: str, count: int, size: int) -> torch.Tensor:
    dataset = open_dataset(data, split="test")
    return fit_to_model(collate_images([dataset[i] for i in range(min(count, len(dataset)))]), size)


@torch.no_grad()
def generated_images(generator: torch.nn.Module, count: int, seed: int) -> torch.Tensor:
    cfg = generator.config
    gen = torch.Generator().manual_seed(seed)
    w = generator.mapping(torch.randn(2, count, cfg.style_dim, generator=gen))
    latents = part_mix(cfg, w[0], w[1], torch.randint(0, 3, (count, cfg.seg_dim), generator=gen))
    return generator.synthesize(latents, randomize_noise=False).image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="SemanticStyleGAN checkpoint (with an encoder: all methods)")
    parser.add_argument("--data", default=None, help="dataset whose test split gives real images (default: generated)")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--steps", type=int, default=400, help="optimisation steps (official 400)")
    parser.add_argument("--hybrid-steps", type=int, default=None, help="steps of hybrid (default: --steps)")
    parser.add_argument("--pti-steps", type=int, default=0)
    parser.add_argument("--perceptual", default="stlpips-vgg", help="the optimisation's LPIPS (official: LPIPS-VGG)")
    parser.add_argument("--metric", default="stlpips-alex", help="LPIPS network of the scores")
    parser.add_argument("--space", default="w+", choices=["w+", "expanded"])
    parser.add_argument("--methods", default="encoder,optimize,hybrid")
    parser.add_argument("--encoder-network", default=None, choices=["e_ema", "encoder"],
                        help="which encoder of the checkpoint (default: e_ema when there, as the tools take it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_inference_model(args.ckpt, args.device)
    generator, encoder = model.generator, model.networks.get("encoder")
    if args.encoder_network is not None:
        encoder = build_network(model.checkpoint, args.encoder_network, args.device)
    size = generator.config.size
    images = (held_out_images(args.data, args.images, size) if args.data
              else generated_images(generator, args.images, args.seed)).to(args.device)
    loss_net = build_perceptual(args.perceptual).to(args.device)
    metric = build_perceptual(args.metric).to(args.device)
    mean = generator.mean_latent()
    with torch.no_grad():  # warm-up: the first call of each network pays one-off allocation and kernel setup
        generator.synthesize(encoder(images) if encoder is not None else mean.expand(images.shape[0], 1, -1)
                             .expand(-1, generator.config.n_latent, -1), randomize_noise=False)
    rows = []
    for method in args.methods.split(","):
        if method != "optimize" and encoder is None:
            print(f"{method}: skipped, {args.ckpt} has no encoder")
            continue
        steps = args.hybrid_steps if method == "hybrid" and args.hybrid_steps is not None else args.steps
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        started, cpu_started = time.perf_counter(), time.process_time()
        result = invert(generator, images, method=method, encoder=encoder, steps=steps, space=args.space,
                        pti_steps=args.pti_steps, options=InversionOptions(),
                        perceptual=loss_net if method != "encoder" or args.pti_steps else None,  # its only loss
                        mean_latent=mean)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        mse, lpips = reconstruction_metrics(result.images, images, metric)
        assert lpips is not None
        rows.append({"method": method, "steps": 0 if method == "encoder" else steps, "pti_steps": args.pti_steps,
                     "mse": round(mse.mean().item(), 5), "lpips": round(lpips.mean().item(), 5),
                     "seconds_per_image": round(seconds / images.shape[0], 4),
                     "cpu_seconds_per_image": round(cpu_seconds / images.shape[0], 4)})
        print(json.dumps(rows[-1]), flush=True)
    source = f"{args.data} test split" if args.data else "generated (part-mixed) images"
    print(f"\n{images.shape[0]} images from {source}, {size} px, space {args.space}, {args.device}, "
          f"{torch.get_num_threads()} thread(s); LPIPS by {args.metric}; optimisation loss LPIPS {args.perceptual}")
    print(f"{'method':<10}{'steps':>7}{'MSE':>10}{'LPIPS':>10}{'s/image':>10}{'CPU s/image':>13}")
    for row in rows:
        print(f"{row['method']:<10}{row['steps']:>7}{row['mse']:>10.4f}{row['lpips']:>10.4f}"
              f"{row['seconds_per_image']:>10.3f}{row['cpu_seconds_per_image']:>13.3f}")


if __name__ == "__main__":
    main()
