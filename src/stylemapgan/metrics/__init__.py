"""Evaluation: the paper's metrics (FID, KID, FID-lerp, reconstruction MSE/LPIPS, local-editing MSE_src/MSE_ref).

    from stylemapgan.metrics import EvalOptions, evaluate, open_editor, write_report
    editor = open_editor("model.safetensors", device="cpu")
    report = evaluate(editor, "data/cartoon-faces-64", EvalOptions(metrics=("fid", "recon"), num=1000))
    write_report(report, "eval/report.json")        # + eval/report.md

The pieces are usable alone: `InceptionFeatures` (features), `frechet_distance` / `kernel_inception_distance`
(on features), `real_features` (cached real statistics), `score_reconstructions`, the local-editing
pairing and scoring. The CLI (`stylemapgan eval`) is a thin layer over `evaluate`.
"""

from stylemapgan.metrics.errors import MetricsError
from stylemapgan.metrics.evaluate import ALL_METRICS, EvalOptions, evaluate, open_editor
from stylemapgan.metrics.fid import (
    FeatureStats,
    KIDResult,
    fid_from_features,
    frechet_distance,
    kernel_inception_distance,
    mmd2_unbiased,
    polynomial_kernel,
)
from stylemapgan.metrics.inception import InceptionFeatures, default_inception_path, tf1_bilinear_resize
from stylemapgan.metrics.local_editing import iou_matrix, masked_mse, match_pairs
from stylemapgan.metrics.real_stats import default_stats_dir, real_features
from stylemapgan.metrics.reconstruction import score_reconstructions
from stylemapgan.metrics.report import render_markdown, write_report

__all__ = [
    "ALL_METRICS",
    "EvalOptions",
    "FeatureStats",
    "InceptionFeatures",
    "KIDResult",
    "MetricsError",
    "default_inception_path",
    "default_stats_dir",
    "evaluate",
    "fid_from_features",
    "frechet_distance",
    "iou_matrix",
    "kernel_inception_distance",
    "masked_mse",
    "match_pairs",
    "mmd2_unbiased",
    "open_editor",
    "polynomial_kernel",
    "real_features",
    "render_markdown",
    "score_reconstructions",
    "tf1_bilinear_resize",
    "write_report",
]
