"""The process-wide TF32 switches, set in one place.

PyTorch ships with cuDNN's TF32 on (convolutions on Ampere and newer GPUs round inputs to 10 mantissa bits) and
matmul TF32 off, so "fp32" on CUDA silently means TF32 convolutions. The command line sets both explicitly:
off everywhere (metrics, benchmarks, the editor's exactness checks read plain fp32), on only for
`stylemapgan train --tf32`, as NVlabs' StyleGAN2-ADA does. No effect on the CPU.
"""

from __future__ import annotations

import torch


def set_tf32(enabled: bool) -> None:
    """Allow (or forbid) TF32 in both CUDA matmuls and cuDNN convolutions."""
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)
