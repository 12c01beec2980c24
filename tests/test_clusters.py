"""Part clusters without labels (`stylemapgan.editing.clusters`, `stylemapgan clusters`): spherical k-means against
an independent computation, determinism, the clusters' round trip through a checkpoint, crafted files refused, and
`edit --mask cluster:N` editing (mostly) that cluster's region of the bundled cartoon model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylemapgan.checkpoint import CheckpointError, fresh_checkpoint, load_checkpoint, save_checkpoint
from stylemapgan.config import get_preset
from stylemapgan.editing import ClusterError, Editor, fit_clusters, parse_mask, spherical_kmeans
from stylemapgan.editing.clusters import EXTRA_KEY, from_extra, synthesis_resolutions
from stylemapgan.editing.masks import ClusterMask, PartMask
from stylemapgan.models import DEFAULT_MODEL, bundled_models, bundled_samples, resolve_checkpoint
from test_editing_cli import error_line, ok


def separable(seed: int = 0, k: int = 5, per: int = 60, dim: int = 16) -> tuple[torch.Tensor, np.ndarray]:
    """Points near k random unit directions (noise far below their separation), and each point's true group."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(k), per)
    points = centres[truth] + 0.05 * rng.normal(size=(k * per, dim))
    order = rng.permutation(len(truth))
    return torch.from_numpy(points[order]).float(), truth[order]


# ---- k-means -------------------------------------------------------------------------------------------------


def test_spherical_kmeans_matches_independent_computation() -> None:
    x, truth = separable()
    result = spherical_kmeans(x, 5, seed=3)
    labels = result.labels.numpy()
    contingency = np.zeros((5, 5), int)
    np.add.at(contingency, (labels, truth), 1)
    assert ((contingency > 0).sum(axis=1) == 1).all() and ((contingency > 0).sum(axis=0) == 1).all()  # a permutation
    # independently (numpy, float64): each centroid is the normalised mean of its true group's unit vectors
    unit = x.double().numpy() / np.linalg.norm(x.double().numpy(), axis=1, keepdims=True)
    for c in range(5):
        group = contingency[c].argmax()
        mean = unit[truth == group].mean(axis=0)
        np.testing.assert_allclose(result.centroids[c].double().numpy(), mean / np.linalg.norm(mean), atol=1e-5)
    # a fixed point: every point is with its most similar centroid, and the objective is their mean similarity
    sim = unit @ result.centroids.double().numpy().T
    assert (sim.argmax(axis=1) == labels).all()
    assert result.objective == pytest.approx(sim.max(axis=1).mean(), abs=1e-5)


def test_spherical_kmeans_deterministic_and_checks_k() -> None:
    x = torch.randn(400, 8, generator=torch.Generator().manual_seed(1))  # no structure: the seed decides
    a, b = spherical_kmeans(x, 6, seed=7), spherical_kmeans(x, 6, seed=7)
    assert torch.equal(a.centroids, b.centroids) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, spherical_kmeans(x, 6, seed=8).labels)
    best = spherical_kmeans(x, 6, seed=7, restarts=3)
    assert best.objective >= a.objective
    # as many clusters as distinct points: every cluster keeps exactly one (empty clusters are refilled)
    few = torch.eye(4).repeat(3, 1)
    assert sorted(torch.bincount(spherical_kmeans(few, 4, seed=0).labels).tolist()) == [3, 3, 3, 3]
    with pytest.raises(ClusterError, match="--k"):
        spherical_kmeans(x, 1)


def test_fit_on_a_model_is_deterministic_and_names_are_checked() -> None:
    from stylemapgan.checkpoint.build import build_network

    ckpt = fresh_checkpoint(get_preset("tiny").model, 3, "test")
    generator = build_network(ckpt, "g_ema", "cpu").eval()
    a = fit_clusters(generator, 4, samples=6, seed=2, resolutions=[8])
    b = fit_clusters(generator, 4, samples=6, seed=2, resolutions=[8])
    assert torch.equal(a.centroids, b.centroids) and a.resolutions == (8,)
    assert a.centroids.shape == (4, ckpt.config.channels(8))
    named = a.renamed({1: "hair", 3: "eyes"})
    assert named.index("hair") == 1 and named.index("EYES") == 3 and named.index("2") == 2
    with pytest.raises(ClusterError, match="--mask: no cluster named 'nose'"):
        named.index("nose")
    with pytest.raises(ClusterError, match="unique"):
        named.renamed({2: "hair"})
    with pytest.raises(ClusterError, match="a name is"):
        named.renamed({2: "3eyes"})
    with pytest.raises(ClusterError, match="not a synthesis layer"):
        fit_clusters(generator, 4, samples=2, resolutions=[12])


def test_parse_mask_cluster_specs() -> None:
    assert parse_mask("cluster:3") == ClusterMask(("3",))
    assert parse_mask("cluster:3+hair") == ClusterMask(("3", "hair"))
    assert parse_mask("hair") == PartMask(("hair",))  # a bare name: dataset part or named cluster, decided later


# ---- the CLI and the checkpoint ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clusters")
    save_checkpoint(root / "tiny.safetensors", fresh_checkpoint(get_preset("tiny").model, 3, "test"))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "b.png")
    ok("clusters", "fit", "--ckpt", root / "tiny.safetensors", "--k", "4", "--samples", "4", "--layer", "8+16",
       "--out", root / "fitted.safetensors", "--no-progress")
    return root


def test_clusters_round_trip_through_the_checkpoint(tiny: Path, tmp_path: Path) -> None:
    fitted = tiny / "fitted.safetensors"
    named = tmp_path / "named.safetensors"
    proc = ok("clusters", "name", "--ckpt", fitted, "1=hair", "3=eyes", "--out", named)
    assert "1=hair, 3=eyes" in proc.stdout
    editor = Editor.from_checkpoint(named)
    clusters = editor.clusters
    assert clusters is not None and clusters.k == 4 and clusters.resolutions == (8, 16)
    assert clusters.names == {1: "hair", 3: "eyes"}
    again = from_extra(load_checkpoint(fitted).extra, editor.config, "x")
    assert again is not None and torch.equal(again.centroids, clusters.centroids)  # the tensor, bit for bit
    # the networks are the fitted file's, untouched
    a, b = load_checkpoint(tiny / "tiny.safetensors"), load_checkpoint(named)
    assert all(torch.equal(a.networks["g_ema"][k], v) for k, v in b.networks["g_ema"].items())
    # the API: one mask per cluster, a partition of the image
    handle = editor.encode(Image.open(tiny / "a.png"))
    masks = editor.cluster_masks(handle)
    assert masks.shape == (4, 1, 16, 16) and torch.equal(masks.sum(0), torch.ones(1, 16, 16))
    assert torch.equal(editor.cluster_mask([handle], ["hair"]), masks[1:2])
    assert clusters.renamed({1: None, 2: "nose"}).names == {2: "nose", 3: "eyes"}  # 1= removes a name
    ok("clusters", "show", "--ckpt", named, "--outdir", tmp_path / "show", "--seeds", "0-2")
    assert Image.open(tmp_path / "show" / "clusters.png").size[0] > 3 * 16


@pytest.mark.parametrize("change, words", [
    (lambda e: e.update(centroids=torch.nn.functional.normalize(torch.randn(4, e["centroids"].shape[1] + 1), dim=1)),
     "wide"),
    (lambda e: e.update(resolutions=[8, 12]), "not a synthesis layer"),
    (lambda e: e.update(centroids=torch.nn.functional.normalize(torch.randn(65, e["centroids"].shape[1]), dim=1)),
     "65 clusters"),
    (lambda e: e.update(names={"9": "hair"}), "cluster 9"),
    (lambda e: e.update(centroids=e["centroids"] * 3), "unit vectors"),
])
def test_crafted_clusters_refused(tiny: Path, tmp_path: Path, change, words: str) -> None:
    ckpt = load_checkpoint(tiny / "fitted.safetensors")
    change(ckpt.extra[EXTRA_KEY])
    bad = tmp_path / "bad.safetensors"
    save_checkpoint(bad, ckpt)
    with pytest.raises(CheckpointError, match=f"bad.safetensors: part clusters refused.*{words}"):
        Editor.from_checkpoint(bad)


def test_crafted_clusters_refused_by_the_cli(tiny: Path, tmp_path: Path) -> None:
    ckpt = load_checkpoint(tiny / "fitted.safetensors")
    entry = ckpt.extra[EXTRA_KEY]
    entry["centroids"] = torch.nn.functional.normalize(torch.randn(4, entry["centroids"].shape[1] - 1), dim=1)
    bad = tmp_path / "bad.safetensors"
    save_checkpoint(bad, ckpt)
    line = error_line("edit", "--ckpt", bad, "--outdir", tmp_path / "edit", "--source", tiny / "a.png",
                      "--reference", tiny / "b.png", "--mask", "cluster:0")
    assert "bad.safetensors: part clusters refused" in line and "wide" in line
    assert not (tmp_path / "edit").exists()


def test_unknown_clusters_name_the_mask_option(tiny: Path, tmp_path: Path) -> None:
    base = ("edit", "--outdir", tmp_path / "out", "--source", tiny / "a.png", "--reference", tiny / "b.png")
    line = error_line(*base, "--ckpt", tiny / "fitted.safetensors", "--mask", "cluster:nose")
    assert "--mask 'cluster:nose'" in line and "no cluster named 'nose'" in line
    line = error_line(*base, "--ckpt", tiny / "fitted.safetensors", "--mask", "nose")  # no dataset: a cluster name
    assert "--mask 'nose'" in line and "no cluster named" in line
    line = error_line(*base, "--ckpt", tiny / "tiny.safetensors", "--mask", "cluster:1")
    assert "--mask 'cluster:1'" in line and "clusters fit" in line
    assert not (tmp_path / "out").exists()
    line = error_line("clusters", "name", "--ckpt", tiny / "fitted.safetensors", "1=hair", "2=hair", "--out",
                      tmp_path / "x.safetensors")
    assert "unique" in line and not (tmp_path / "x.safetensors").exists()
    clusters = Editor.from_checkpoint(tiny / "fitted.safetensors").clusters
    with pytest.raises(ClusterError, match="--mask: cluster 7 does not exist; this model has clusters 0-3"):
        clusters.index("7")


# ---- the bundled cartoon model ------------------------------------------------------------------------------


@pytest.mark.skipif(DEFAULT_MODEL not in bundled_models(), reason="no bundled model in this checkout")
def test_edit_with_a_cluster_mask_changes_that_region(tmp_path: Path) -> None:
    from stylemapgan.checkpoint.models import load_editing_model
    from stylemapgan.editing.sources import InputResolver

    path = resolve_checkpoint(DEFAULT_MODEL)
    model = load_editing_model(path)
    clusters = fit_clusters(model.generator.eval(), 10, samples=8, seed=0)
    assert clusters.resolutions == tuple(r for r in synthesis_resolutions(model.config) if r in (16, 32))
    model.checkpoint.extra[EXTRA_KEY] = clusters.to_extra()
    ckpt = tmp_path / "cartoon-clusters.safetensors"
    save_checkpoint(ckpt, model.checkpoint)
    data = str(bundled_samples(path))
    # the cluster where source and reference differ most: the edit has something to paste there
    editor = Editor.from_checkpoint(ckpt)
    resolver = InputResolver(editor.config, data=data, editor=editor)
    src, ref = (resolver.handle(editor, resolver.resolve(t)) for t in ("test:0", "test:1"))
    gap = (editor.reconstruct(src) - editor.reconstruct(ref)).abs().mean(1)[0]
    masks = [editor.cluster_mask([src, ref], [str(c)])[0, 0] for c in range(clusters.k)]
    chosen = max(range(clusters.k), key=lambda c: float((gap * masks[c]).sum()))
    out = tmp_path / "edit"
    ok("edit", "--ckpt", ckpt, "--data", data, "--source", "test:0", "--reference", "test:1",
       "--mask", f"cluster:{chosen}", "--mode", "w_plus", "--outdir", out, "--no-progress")

    def read(name: str) -> torch.Tensor:
        return torch.from_numpy(np.asarray(Image.open(out / name).convert("RGB"), dtype=np.float32) / 255)

    mask = read("test0_mask1.png")[..., 0] > 0.5
    assert torch.equal(mask, masks[chosen] > 0.5)
    change = (read("test0_edit.png") - read("test0_recon.png")).abs().mean(-1)
    inside, outside = float(change[mask].mean()), float(change[~mask].mean())
    assert inside > 5 * outside, (chosen, inside, outside)
