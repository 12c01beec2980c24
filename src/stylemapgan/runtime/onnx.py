"""ONNX export of encoder, decoder and synthesis-from-modulations, onnxruntime sessions for them (`OnnxModels`)
and the editor's ONNX backend (`OnnxRunner`).

Three graphs, each with a dynamic batch axis:
- encoder.onnx:   image [N, 3, size, size] -> stylemap [N, C, s, s]
- decoder.onnx:   stylemap -> image (resizer + synthesis)
- synthesis.onnx: the [gamma | beta] of every modulated layer (inputs mod0 ... modK) -> image; what a cached
  local edit runs after blending modulations (see `editing.fast_edit`).
plus manifest.json (model config, input names and shapes, opset) so a runner needs no PyTorch model.

SemanticStyleGAN (`export_semantic_onnx`): one graph, semantic.onnx: W+ latents [N, n_latent, D] -> image
[N, 3, size, size] and segmentation [N, K, size, size], rendered with the stored noise maps (deterministic), plus
manifest.json. `export_model_onnx` picks the export of a model's family (`FAMILY_EXPORTS`).

Export uses torch.export (`dynamo=True`, which needs onnxscript); the fast layers skip their caches and in-place
shortcuts while exporting, so the graph is the plain math. `onnx` / `onnxruntime` / `onnxscript` are the
optional extra `stylemapgan[onnx]`.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stylemapgan.checkpoint.families import SEMANTICSTYLEGAN, STYLEMAPGAN
from stylemapgan.checkpoint.models import InferenceModel
from stylemapgan.config import ModelConfig
from stylemapgan.networks import Encoder, Generator
from stylemapgan.runtime.runner import TorchRunner
from stylemapgan.semantic import SemanticGenerator

ONNX_FILES = {"encoder": "encoder.onnx", "decoder": "decoder.onnx", "synthesis": "synthesis.onnx"}
SEMANTIC_ONNX_FILE = "semantic.onnx"
DEFAULT_OPSET = 18


class OnnxExportError(RuntimeError):
    """torch.onnx could not export a graph; the message is one line naming the graph and torch's reason."""


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


class _Decoder(nn.Module):
    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, stylemap: torch.Tensor) -> torch.Tensor:
        return self.generator.decode(stylemap)


class _Synthesis(nn.Module):
    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.synthesis = generator.synthesis

    def forward(self, *mods: torch.Tensor) -> torch.Tensor:
        return self.synthesis.forward_modulated(list(mods))


def modulation_shapes(generator: Generator) -> list[tuple[int, int, int]]:
    """[2 Cin, r, r] of every modulated layer's [gamma | beta]."""
    config = generator.config
    layers = generator.synthesis.modulated_layers()
    return [(2 * m.in_channels, r, r) for m, r in zip(layers, config.style_resolutions, strict=True)]


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: list[str], output: str | list[str],
            opset: int, varargs: bool = False) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    shapes: tuple[Any, ...] = tuple({0: batch} for _ in args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(path), input_names=inputs, output_names=[output] if isinstance(output, str) else output,
            dynamic_shapes=(shapes,) if varargs else shapes, opset_version=opset, dynamo=True,
            external_data=False, verbose=False,
        )


class _SemanticRender(nn.Module):
    """W+ latents -> (image, segmentation) with the stored noise maps."""

    def __init__(self, generator: SemanticGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.generator.synthesize(latents, randomize_noise=False)
        return out.image, out.segmentation


@torch.no_grad()
def export_semantic_onnx(
    generator: SemanticGenerator, outdir: str | os.PathLike[str], *, opset: int = DEFAULT_OPSET
) -> dict[str, Path]:
    """Write semantic.onnx (W+ latents -> image, segmentation; fp32, CPU) and manifest.json into `outdir`.

    Raises OnnxExportError (one line) when torch.onnx cannot export the graph."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    g = copy.deepcopy(generator).cpu().float().eval().requires_grad_(False)
    config = g.config
    path = out / SEMANTIC_ONNX_FILE
    latents = torch.randn(2, config.n_latent, config.style_dim)
    try:
        _export(_SemanticRender(g), (latents,), path, ["latents"], ["image", "segmentation"], opset)
    except Exception as exc:  # torch.export / onnxscript raise many types; the first line says what failed
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OnnxExportError(f"{path.name}: torch.onnx could not export the SemanticStyleGAN generator ({first})") \
            from None
    manifest = {
        "format": "stylemapgan-onnx/1",
        "config": config.to_dict(),
        "opset": opset,
        "files": {"semantic": path.name},
        "inputs": {"latents": ["N", config.n_latent, config.style_dim]},
        "outputs": {"image": ["N", 3, config.size, config.size],
                    "segmentation": ["N", config.seg_dim, config.size, config.size]},
        "noise": "the stored noise maps (deterministic)",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return {"semantic": path}


def _export_stylemapgan(model: InferenceModel, outdir: Path, opset: int) -> dict[str, Path]:
    return export_onnx(model.networks["generator"], model.networks["encoder"], outdir, opset=opset)


def _export_semantic(model: InferenceModel, outdir: Path, opset: int) -> dict[str, Path]:
    generator = model.networks["generator"]
    assert isinstance(generator, SemanticGenerator)
    return export_semantic_onnx(generator, outdir, opset=opset)


def _check_stylemapgan(model: InferenceModel, folder: Path) -> dict[str, float]:
    generator, encoder = model.networks["generator"], model.networks["encoder"]
    assert isinstance(generator, Generator) and isinstance(encoder, Encoder)
    models = OnnxModels(folder)
    gen = torch.Generator().manual_seed(0)
    size = generator.config.size
    images = torch.rand(2, 3, size, size, generator=gen) * 2 - 1
    eager = TorchRunner(generator, encoder)  # the reference: eager fp32 PyTorch
    sm = eager.encode(images)
    return {"encoder": (models.encode(images) - sm).abs().max().item(),
            "decoder": (models.decode(sm) - eager.decode(sm)).abs().max().item()}


@torch.no_grad()
def _check_semantic(model: InferenceModel, folder: Path) -> dict[str, float]:
    import onnxruntime as ort

    generator = model.networks["generator"]
    assert isinstance(generator, SemanticGenerator)
    g = copy.deepcopy(generator).cpu().float().eval()
    session = ort.InferenceSession(str(folder / SEMANTIC_ONNX_FILE), providers=["CPUExecutionProvider"])
    latents = torch.randn(3, g.config.n_latent, g.config.style_dim, generator=torch.Generator().manual_seed(0))
    image, segmentation = session.run(None, {"latents": latents.numpy()})
    eager = g.synthesize(latents, randomize_noise=False)
    return {"image": (torch.from_numpy(image) - eager.image).abs().max().item(),
            "segmentation": (torch.from_numpy(segmentation) - eager.segmentation).abs().max().item()}


# family name (from the registry) -> (export, check against eager PyTorch) of a model of that family
FAMILY_EXPORTS = {
    STYLEMAPGAN.name: (_export_stylemapgan, _check_stylemapgan),
    SEMANTICSTYLEGAN.name: (_export_semantic, _check_semantic),
}


def export_model_onnx(
    model: InferenceModel, outdir: str | os.PathLike[str], *, opset: int = DEFAULT_OPSET
) -> dict[str, Path]:
    """The ONNX graphs of a model of any family (see the module docstring); returns name -> path."""
    export, _ = FAMILY_EXPORTS[model.family.name]
    return export(model, Path(outdir), opset)


def check_model_onnx(model: InferenceModel, outdir: str | os.PathLike[str]) -> dict[str, float]:
    """Run the exported graphs in onnxruntime on fixed random inputs: max abs difference from eager fp32 PyTorch,
    per output (StyleMapGAN: encoder, decoder; SemanticStyleGAN: image, segmentation)."""
    _, check = FAMILY_EXPORTS[model.family.name]
    return check(model, Path(outdir))


@torch.no_grad()
def export_onnx(
    generator: Generator, encoder: Encoder, outdir: str | os.PathLike[str], *, opset: int = DEFAULT_OPSET,
    parts: tuple[str, ...] = ("encoder", "decoder", "synthesis"),
) -> dict[str, Path]:
    """Write the ONNX graphs (fp32, CPU) and manifest.json into `outdir`; returns name -> path."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    g = copy.deepcopy(generator).cpu().float().eval().requires_grad_(False)
    e = copy.deepcopy(encoder).cpu().float().eval().requires_grad_(False)
    config: ModelConfig = g.config
    stylemap = torch.randn(2, *config.stylemap_shape)
    paths: dict[str, Path] = {}
    if "encoder" in parts:
        paths["encoder"] = out / ONNX_FILES["encoder"]
        _export(e, (torch.randn(2, 3, config.size, config.size),), paths["encoder"], ["image"], "stylemap", opset)
    if "decoder" in parts:
        paths["decoder"] = out / ONNX_FILES["decoder"]
        _export(_Decoder(g), (stylemap,), paths["decoder"], ["stylemap"], "image", opset)
    if "synthesis" in parts:
        mods = [m.modulation_params(t) for m, t in zip(g.synthesis.modulated_layers(), g.resizer(stylemap),
                                                      strict=True)]
        names = [f"mod{i}" for i in range(len(mods))]
        paths["synthesis"] = out / ONNX_FILES["synthesis"]
        _export(_Synthesis(g), tuple(m.contiguous() for m in mods), paths["synthesis"], names, "image", opset,
                varargs=True)
    manifest = {
        "format": "stylemapgan-onnx/1",
        "config": config.to_dict(),
        "opset": opset,
        "files": {k: p.name for k, p in paths.items()},
        "modulation_shapes": modulation_shapes(g),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return paths


class OnnxModels:
    """onnxruntime sessions for an exported folder; call with torch tensors, get torch tensors back (CPU)."""

    def __init__(self, folder: str | os.PathLike[str], *, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        self.manifest: dict[str, Any] = json.loads((self.folder / "manifest.json").read_text())
        self.config = ModelConfig.from_dict(self.manifest["config"])
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = threads
        self.sessions = {
            name: ort.InferenceSession(str(self.folder / file), options, providers=["CPUExecutionProvider"])
            for name, file in self.manifest["files"].items()
        }

    def _run(self, name: str, inputs: list[torch.Tensor]) -> torch.Tensor:
        session = self.sessions[name]
        feed = {
            arg.name: np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())
            for arg, t in zip(session.get_inputs(), inputs, strict=True)
        }
        return torch.from_numpy(session.run(None, feed)[0])

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self._run("encoder", [images])

    def decode(self, stylemaps: torch.Tensor) -> torch.Tensor:
        return self._run("decoder", [stylemaps])

    def synthesize(self, mods: list[torch.Tensor]) -> torch.Tensor:
        return self._run("synthesis", [m.expand(max(x.shape[0] for x in mods), *m.shape[1:]) for m in mods])


class OnnxRunner(TorchRunner):
    """Encoder, decoder and synthesis-from-modulations in onnxruntime (CPU, fp32). The mapping network, the
    resizer and the modulations have no graph and fall back to eager fp32 PyTorch, each in its own method below
    (they run once per seed or image and are cached). Exports to `onnx_dir` (or a temporary folder) if needed."""

    backend = "onnx"

    def __init__(
        self, generator: Generator, encoder: Encoder, *, onnx_dir: str | os.PathLike[str] | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__(generator, encoder)
        folder = onnx_dir if onnx_dir is not None else tempfile.mkdtemp(prefix="stylemapgan-onnx-")
        if not os.path.exists(os.path.join(folder, "manifest.json")):
            export_onnx(generator, encoder, folder)
        self.models = OnnxModels(folder, threads=threads if threads is not None else torch.get_num_threads())
        if self.models.config != generator.config:
            raise ValueError(f"{folder}: exported for {self.models.config}, editor model is {generator.config}")
        self.device = generator.const_device

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.models.encode(images).to(self.device)

    def decode(self, stylemaps: torch.Tensor) -> torch.Tensor:
        return self.models.decode(stylemaps).to(self.device)

    def synthesize(self, mods: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.models.synthesize(list(mods)).to(self.device)

    def synthesize_styles(self, styles: Sequence[torch.Tensor]) -> torch.Tensor:
        """Modulations in PyTorch (see `modulations`), then the ONNX synthesis."""
        return self.synthesize(self.modulations(styles))

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """Fallback to eager fp32 PyTorch: no mapping graph is exported (it runs once per seed, a few small
        linear layers)."""
        return super().mapping(z)

    def resize(self, stylemaps: torch.Tensor) -> list[torch.Tensor]:
        """Fallback to eager fp32 PyTorch: the style tensors are computed once per image and cached."""
        return super().resize(stylemaps)

    def modulations(self, styles: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Fallback to eager fp32 PyTorch: computed once per image and cached by the editor."""
        return super().modulations(styles)
