"""Training losses that need more than a line of code (currently the LPIPS perceptual distance)."""

from stylemapgan.losses.perceptual import KINDS, PerceptualLoss, build_perceptual

__all__ = ["KINDS", "PerceptualLoss", "build_perceptual"]
