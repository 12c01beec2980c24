"""Running the models: the runners the `Editor` and the CLI call the networks through (eager PyTorch, bf16
autocast, torch.compile, onnxruntime), the automatic precision that picks fp32 or bf16 (`runtime.precision`),
and the ONNX export they run (both model families: `export_model_onnx`)."""

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
from stylemapgan.runtime.precision import (
    AUTO,
    DTYPE_CHOICES,
    ISA_FEATURES,
    auto_dtype,
    bf16_speedup_cpu,
    cpu_features,
    cpu_has_bf16_units,
    precision_report,
    resolve_dtype,
)
from stylemapgan.runtime.runner import DTYPES, MEAN_STYLEMAP_COUNT, TorchRunner, mean_stylemap, parse_dtype

__all__ = [
    "AUTO",
    "BACKENDS",
    "DEFAULT_OPSET",
    "DTYPES",
    "DTYPE_CHOICES",
    "ISA_FEATURES",
    "MEAN_STYLEMAP_COUNT",
    "ONNX_FILES",
    "SEMANTIC_ONNX_FILE",
    "OnnxExportError",
    "OnnxModels",
    "OnnxRunner",
    "TorchRunner",
    "auto_dtype",
    "bf16_speedup_cpu",
    "check_model_onnx",
    "cpu_features",
    "cpu_has_bf16_units",
    "export_model_onnx",
    "export_onnx",
    "export_semantic_onnx",
    "make_runner",
    "mean_stylemap",
    "modulation_shapes",
    "onnxruntime_available",
    "parse_dtype",
    "precision_report",
    "resolve_dtype",
]
