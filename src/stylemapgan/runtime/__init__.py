"""Running the models: the runners the `Editor` and the CLI call the networks through (eager PyTorch, bf16
autocast, torch.compile, onnxruntime), and the ONNX export they run. Imports only config and networks."""

from stylemapgan.runtime.backends import BACKENDS, make_runner
from stylemapgan.runtime.onnx import (
    DEFAULT_OPSET,
    ONNX_FILES,
    OnnxModels,
    OnnxRunner,
    export_onnx,
    modulation_shapes,
    onnxruntime_available,
)
from stylemapgan.runtime.runner import DTYPES, MEAN_STYLEMAP_COUNT, TorchRunner, mean_stylemap, parse_dtype

__all__ = [
    "BACKENDS",
    "DEFAULT_OPSET",
    "DTYPES",
    "MEAN_STYLEMAP_COUNT",
    "ONNX_FILES",
    "OnnxModels",
    "OnnxRunner",
    "TorchRunner",
    "export_onnx",
    "make_runner",
    "mean_stylemap",
    "modulation_shapes",
    "onnxruntime_available",
    "parse_dtype",
]
