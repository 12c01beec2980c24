"""Export of the inference networks (ONNX) and runners for the exported files."""

from stylemapgan.export.onnx import ONNX_FILES, OnnxModels, export_onnx, onnxruntime_available

__all__ = ["ONNX_FILES", "OnnxModels", "export_onnx", "onnxruntime_available"]
