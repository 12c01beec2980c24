"""Running the models: the runners the `Editor` and the CLI call the networks through (eager PyTorch, bf16
autocast, torch.compile, onnxruntime), and the ONNX export they run (both model families: `export_model_onnx`)."""

from stylemapgan.runtime.backends import BACKENDS, make_runner
from stylemapgan.runtime.onnx import (
    DEFAULT_OPSET,
    ONNX_FILES,
    SEMANTIC_ONNX_FILE,
    OnnxExportError,
    OnnxModels,
    OnnxRunner,
    check_model_onnx,
    export_model_onnx,
    export_onnx,
    export_semantic_onnx,
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
    "SEMANTIC_ONNX_FILE",
    "OnnxExportError",
    "OnnxModels",
    "OnnxRunner",
    "TorchRunner",
    "check_model_onnx",
    "export_model_onnx",
    "export_onnx",
    "export_semantic_onnx",
    "make_runner",
    "mean_stylemap",
    "modulation_shapes",
    "onnxruntime_available",
    "parse_dtype",
]
