"""The editing engine: projection, generation, local editing, interpolation, style mixing, transplantation
and attribute directions, all through one editor per model family (model + encoding cache) behind one interface,
`BaseEditor` (`editing.base`). The CLI (`stylemapgan.cli.edit`), a web editor and the metrics are thin layers over
this package, and ask `editor.capabilities` what a model can do.

StyleMapGAN (`Editor`):

    editor = Editor.from_checkpoint("model.safetensors", device="cpu")
    src = editor.encode(load_image("a.jpg", editor.size))          # handle; encoded once
    ref = editor.encode(load_image("b.png", editor.size))
    frames = editor.local_edit(src, [ref], [rectangle_mask(RectangleMask(0, 0, 32, 32), editor.size)],
                               mode="w_plus", alphas=frame_alphas(16))

SemanticStyleGAN (`SemanticEditor`; the same `from_checkpoint` returns it for such a file):

    editor = Editor.from_checkpoint("semantic.safetensors")
    out = editor.swap_parts(src, [PartSwap(ref, ("hair",), "shape")])  # .images, .segmentation, .latents
"""

from stylemapgan.editing.base import BaseEditor, EditorCapabilities, Samples, editor_class
from stylemapgan.editing.blend import Paste, blend_layers, render_w, render_w_plus
from stylemapgan.editing.clusters import ClusterError, PartClusters, fit_clusters, spherical_kmeans
from stylemapgan.editing.directions import (
    Direction,
    LinearClassifier,
    fit_linear_classifier,
    load_directions,
    pca_directions,
    sample_stylemaps,
    save_directions,
    sefa_directions,
    supervised_direction,
)
from stylemapgan.editing.domain import DOMAIN_FACTOR, DomainCheck, domain_warning
from stylemapgan.editing.editor import (
    EDIT_MODES,
    CacheInfo,
    EditMode,
    Editor,
    Refinement,
    frame_alphas,
    mean_stylemap,
    parse_seeds,
)
from stylemapgan.editing.errors import EditingError
from stylemapgan.editing.images import load_image, load_stylemap, save_image, save_stylemap
from stylemapgan.editing.masks import (
    POOLINGS,
    ClusterMask,
    FileMask,
    PartMask,
    RectangleMask,
    mask_from_file,
    mask_from_parts,
    parse_mask,
    parse_rectangle,
    parse_shift,
    rectangle_mask,
)
from stylemapgan.editing.part_directions import part_pca_directions, part_sefa_directions, part_supervised_direction
from stylemapgan.editing.parts import (
    PART_SUBSPACES,
    composition_mask,
    interpolate_parts,
    part_coverage,
    parts_under_mask,
)
from stylemapgan.editing.projection import PROJECTION_METHODS, ProjectionOptions, ProjectionResult, project
from stylemapgan.editing.semantic import PartSwap, SemanticEditor, SemanticResult

__all__ = [
    "DOMAIN_FACTOR",
    "EDIT_MODES",
    "PART_SUBSPACES",
    "POOLINGS",
    "PROJECTION_METHODS",
    "BaseEditor",
    "CacheInfo",
    "ClusterError",
    "ClusterMask",
    "Direction",
    "DomainCheck",
    "EditMode",
    "EditingError",
    "Editor",
    "EditorCapabilities",
    "FileMask",
    "LinearClassifier",
    "PartClusters",
    "PartMask",
    "PartSwap",
    "Paste",
    "ProjectionOptions",
    "ProjectionResult",
    "RectangleMask",
    "Refinement",
    "Samples",
    "SemanticEditor",
    "SemanticResult",
    "blend_layers",
    "composition_mask",
    "domain_warning",
    "editor_class",
    "fit_clusters",
    "fit_linear_classifier",
    "frame_alphas",
    "interpolate_parts",
    "load_directions",
    "load_image",
    "load_stylemap",
    "mask_from_file",
    "mask_from_parts",
    "mean_stylemap",
    "parse_mask",
    "parse_rectangle",
    "parse_seeds",
    "parse_shift",
    "part_coverage",
    "part_pca_directions",
    "part_sefa_directions",
    "part_supervised_direction",
    "parts_under_mask",
    "pca_directions",
    "project",
    "rectangle_mask",
    "render_w",
    "render_w_plus",
    "sample_stylemaps",
    "save_directions",
    "save_image",
    "save_stylemap",
    "sefa_directions",
    "spherical_kmeans",
    "supervised_direction",
]
