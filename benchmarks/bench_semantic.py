"""Seconds per adversarial step of a SemanticStyleGAN preset at batch 16, beside StyleMapGAN's cpu-64-small.

Measured units, each the median of --iters after two warm-ups (wall seconds, and process CPU seconds), fp32,
in-memory random data:
- "G+D fwd+bwd": z -> G -> D(image, segmentation) -> backward into every G and D parameter (StyleMapGAN: z -> G
  -> D(image));
- "adv. step": a D step (G without grad, D on real and fake, softplus losses, backward, Adam) plus a G step
  (G, D, non-saturating loss, backward, Adam). No regularisers (R1, path length, mask loss), no EMA, no encoder
  or perceptual loss, so it is a lower bound of a full training iteration of either family;
- "G forward": generator inference alone, and its local-generator share (SemanticStyleGAN).

Usage: python benchmarks/bench_semantic.py [--presets semantic-cpu-64] [--batch 16] [--iters 5] [--threads 2]
Run it on a quiet machine: shared cores skew it badly.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from stylemapgan.config import get_preset
from stylemapgan.networks import Discriminator, Generator
from stylemapgan.semantic import DualBranchDiscriminator, SemanticGenerator, get_semantic_preset, parameter_counts


class Timing:
    """Median wall-clock and process CPU seconds of a callable; CPU time stays meaningful on a shared machine,
    where other processes inflate wall time (it counts every thread of this process)."""

    def __init__(self, fn: Callable[[], object], iters: int, warmup: int = 2) -> None:
        for _ in range(warmup):
            fn()
        wall, cpu = [], []
        for _ in range(iters):
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
        self.wall, self.cpu = statistics.median(wall), statistics.median(cpu)

    def __str__(self) -> str:
        return f"{self.wall:6.3f} s ({self.cpu:6.3f} cpu-s)"


class Pair:
    """A generator / discriminator pair behind one interface: sample fakes, score images."""

    def __init__(self, preset: str, batch: int) -> None:
        self.batch = batch
        torch.manual_seed(0)
        if preset.startswith("semantic-"):
            cfg = get_semantic_preset(preset).model
            self.g, self.d = SemanticGenerator(cfg), DualBranchDiscriminator(cfg)
            self.z_dim, self.size, self.classes = cfg.style_dim, cfg.size, cfg.seg_dim
            counts = parameter_counts(cfg)
        else:
            cfg = get_preset(preset).model
            self.g, self.d = Generator(cfg), Discriminator(cfg)
            self.z_dim, self.size, self.classes = cfg.latent_channels, cfg.size, 0
            counts = {"generator": sum(p.numel() for p in self.g.parameters()),
                      "discriminator": sum(p.numel() for p in self.d.parameters())}
        self.counts = counts
        self.g_opt = torch.optim.Adam(self.g.parameters(), lr=0.002, betas=(0.0, 0.99))
        self.d_opt = torch.optim.Adam(self.d.parameters(), lr=0.002, betas=(0.0, 0.99))
        self.real = torch.randn(batch, 3, self.size, self.size)
        labels = torch.randint(0, max(1, self.classes), (batch, self.size, self.size))
        self.real_seg = F.one_hot(labels, self.classes).permute(0, 3, 1, 2).float() * 2 - 1 if self.classes else None

    def fake(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = torch.randn(self.batch, self.z_dim)
        if isinstance(self.g, SemanticGenerator):
            out = self.g(z)
            return out.image, out.segmentation
        return self.g(z), None

    def score(self, image: torch.Tensor, seg: torch.Tensor | None) -> torch.Tensor:
        return self.d(image, seg) if seg is not None else self.d(image)

    def fwd_bwd(self) -> None:
        self.score(*self.fake()).sum().backward()
        self._zero(self.g, self.d)

    def adversarial_step(self) -> None:
        with torch.no_grad():
            fake = self.fake()
        loss = F.softplus(-self.score(self.real, self.real_seg)).mean() + F.softplus(self.score(*fake)).mean()
        loss.backward()
        self.d_opt.step()
        self._zero(self.g, self.d)
        F.softplus(-self.score(*self.fake())).mean().backward()
        self.g_opt.step()
        self._zero(self.g, self.d)

    @torch.no_grad()
    def g_forward(self) -> None:
        self.fake()

    @torch.no_grad()
    def local_forward(self) -> None:
        assert isinstance(self.g, SemanticGenerator)
        cfg = self.g.config
        latents = torch.randn(self.batch, cfg.n_latent_expanded, cfg.style_dim)
        self.g.local(latents)

    @staticmethod
    def _zero(*nets: nn.Module) -> None:
        for net in nets:
            net.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="semantic-cpu-64,cpu-64-small")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, batch {args.batch}, "
          f"median of {args.iters}")
    for preset in args.presets.split(","):
        pair = Pair(preset, args.batch)
        g_m, d_m = pair.counts["generator"] / 1e6, pair.counts["discriminator"] / 1e6
        line = (f"{preset:<16} G {g_m:5.2f}M D {d_m:5.2f}M\n"
                f"  G+D fwd+bwd {Timing(pair.fwd_bwd, args.iters)}\n"
                f"  adv. step   {Timing(pair.adversarial_step, args.iters)}\n"
                f"  G forward   {Timing(pair.g_forward, args.iters)}")
        if isinstance(pair.g, SemanticGenerator):
            line += f"\n  of which the local generators {Timing(pair.local_forward, args.iters)}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
