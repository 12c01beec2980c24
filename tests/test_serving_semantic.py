"""The web editor's API on a SemanticStyleGAN checkpoint (a random semantic-tiny model with named parts), on a
real uvicorn server in a thread: what /api/info offers, samples as the way to get images in, part swaps (shape,
texture, both, several references, removal) and part interpolation equal to the library's renders, a painted mask
mapped to the parts it covers, per-part sliders (the directions file's, else PCA computed once), segmentations,
codes, one-line 4xx for bad part names and for routes the model cannot serve, uploads through the same encode
door, sessions kept apart and latest-wins. A StyleMapGAN server answers the part routes with 404."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import test_serving_api as api
from face_fixtures import write_face_dataset
from stylemapgan.checkpoint import build_network, fresh_checkpoint, save_checkpoint
from stylemapgan.config import get_preset
from stylemapgan.editing import Direction, Editor, PartSwap, SemanticEditor
from stylemapgan.semantic.config import SEMANTIC_PRESETS
from stylemapgan.semantic.encoder import SemanticEncoder
from stylemapgan.semantic.io import class_color
from stylemapgan.serving import ServerLimits, load_gallery
from stylemapgan.utils.images import to_uint8

uvicorn = pytest.importorskip("uvicorn")

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = SEMANTIC_PRESETS["semantic-tiny"].model  # 32 px, 5 parts, W+ = 11 vectors of 32
NAMES = ["background", "skin", "hair", "glasses", "mouth"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generator alone (no encoder: uploads cannot be encoded)."""
    path = tmp_path_factory.mktemp("semckpt") / "semantic-tiny.safetensors"
    ckpt = fresh_checkpoint(TINY, seed=1, source="test")
    ckpt.extra["class_names"] = NAMES
    save_checkpoint(path, ckpt)
    return path


@pytest.fixture(scope="module")
def encoder_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same generator with an encoder (random, offsets scaled up so images encode apart): uploads work."""
    path = tmp_path_factory.mktemp("semckpt-enc") / "semantic-tiny-encoder.safetensors"
    ckpt = fresh_checkpoint(TINY, seed=1, source="test")
    ckpt.extra["class_names"] = NAMES
    torch.manual_seed(2)
    encoder = SemanticEncoder(TINY)
    with torch.no_grad():
        encoder.to_latents.weight.normal_()
        encoder.set_mean_latent(build_network(ckpt, "g_ema", "cpu").mean_latent())
    ckpt.networks["e_ema"] = encoder.state_dict()
    save_checkpoint(path, ckpt)
    return path


@pytest.fixture(scope="module")
def library(checkpoint: Path) -> SemanticEditor:
    """The same model in this process: what every answer is compared with."""
    editor = Editor.from_checkpoint(checkpoint, "cpu")
    assert isinstance(editor, SemanticEditor)
    return editor


@pytest.fixture(scope="module")
def gallery_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_face_dataset(tmp_path_factory.mktemp("semdata") / "faces", size=32, count=3, train_count=0)


Running = api.Running
start_server = api.start_server


@pytest.fixture()
def serve(checkpoint: Path, gallery_dataset: Path) -> Iterator[Callable[..., Running]]:
    """A real server over the semantic checkpoint (gallery: drawn faces), with the given limits and options."""
    servers: list[tuple[Any, threading.Thread]] = []

    def start(limits: ServerLimits | None = None, path: Path = checkpoint, **options: Any) -> Running:
        editor = Editor.from_checkpoint(path, "cpu", cache_size=64)
        gallery = load_gallery(str(gallery_dataset), editor.size, None, count=2)
        return start_server(editor, servers, gallery=gallery, limits=limits, **options)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(api.decode_png(data).convert("RGB"))


def library_pixels(images: torch.Tensor) -> np.ndarray:
    return to_uint8(images)


def samples(b: api.Browser, seed: int = 3, count: int = 3) -> list[str]:
    reply = b.post("/api/samples", {"seed": seed, "count": count, "trunc": 0.7})
    assert reply.status == 200, reply.body
    return [image["id"] for image in reply.json()["images"]]


def library_handles(library: SemanticEditor, seed: int = 3, count: int = 3) -> list[str]:
    codes = library.sample(list(range(seed, seed + count)), 0.7).codes
    return [library.add_code(c[None]) for c in codes]


def one_line(reply: api.Reply) -> str:
    message = reply.error
    assert message and "\n" not in message and len(message) < 300, message
    return message


# ---- tests ----------------------------------------------------------------------------------------------------


def test_info_offers_the_models_controls(serve: Callable[..., Running]) -> None:
    b = serve().browser()
    info = b.get("/api/info").json()
    caps = info["capabilities"]
    assert caps["family"] == "SemanticStyleGAN" and caps["parts"] == NAMES
    assert caps["shape_texture"] and caps["composition"] and caps["segmentation"]
    assert not caps["masks"] and not caps["shifts"] and caps["latent_modes"] == [] and info["modes"] == []
    assert caps["code_suffix"] == ".npy"
    assert info["features"] == {"refine": False, "clusters": False, "part_directions": True}
    assert info["model"]["code_shape"] == [TINY.n_latent, TINY.style_dim] and info["model"]["size"] == 32
    assert info["part_colors"] == ["#{:02x}{:02x}{:02x}".format(*class_color(k)) for k in range(len(NAMES))]
    assert info["part_colors"][0] == "#000000" and len(set(info["part_colors"])) == len(NAMES)
    assert info["limits"]["part_direction_components"] == ServerLimits().part_direction_components


def test_samples_and_part_swaps_equal_the_library(serve: Callable[..., Running], library: SemanticEditor) -> None:
    b = serve().browser()
    src, ref, ref2 = samples(b)
    h_src, h_ref, h_ref2 = library_handles(library)
    sample = pixels(b.get(f"/api/images/{src}").body)
    np.testing.assert_array_equal(sample, library_pixels(library.reconstruct(h_src))[0])

    def swap(body: dict[str, Any]) -> tuple[np.ndarray, str]:
        reply = b.post("/api/parts/swap", {"source": src, **body})
        assert reply.status == 200, reply.body
        assert float(reply.headers["x-infer-ms"]) > 0 and reply.headers["x-image-id"].startswith("r_")
        return pixels(reply.body), reply.headers["x-image-id"]

    results = {}
    for what in ("shape", "texture", "both"):
        got, result_id = swap({"references": [{"id": ref, "parts": {"hair": what}}]})
        want = library.swap_parts(h_src, [PartSwap(h_ref, ("hair",), what)])
        np.testing.assert_array_equal(got, library_pixels(want.images)[0])
        results[what] = got
        # the result's segmentation: a palette PNG in the library's part colours, equal to its argmax
        seg = api.decode_png(b.get(f"/api/images/{result_id}/segmentation").body)
        assert seg.mode == "P" and seg.size == (32, 32)
        np.testing.assert_array_equal(np.asarray(seg), want.segmentation[0].argmax(0).numpy())
        assert seg.getpalette()[:3 * len(NAMES)] == [c for k in range(len(NAMES)) for c in class_color(k)]
    assert all(np.abs(results[w].astype(int) - sample.astype(int)).max() > 0 for w in results)
    assert np.abs(results["shape"].astype(int) - results["texture"].astype(int)).max() > 0

    # several references and parts at once, later references on top, blended by alpha
    body = {"references": [{"id": ref, "parts": {"hair": "both", "skin": "texture"}},
                           {"id": ref2, "parts": {"mouth": "shape"}}], "alpha": 0.5}
    got, _ = swap(body)
    want = library.swap_parts(h_src, [PartSwap(h_ref, ("hair",), "both"), PartSwap(h_ref, ("skin",), "texture"),
                                      PartSwap(h_ref2, ("mouth",), "shape")], 0.5)
    np.testing.assert_array_equal(got, library_pixels(want.images)[0])
    got, _ = swap({"references": [{"id": ref, "parts": {"hair": "both"}}], "alpha": 0.0})
    np.testing.assert_array_equal(got, sample)  # alpha 0: the source's own codes exactly

    # composition: remove a part (and add another from a reference)
    got, removed_id = swap({"remove": ["hair"], "references": [{"id": ref, "parts": {"mouth": "both"}}]})
    want = library.compose(h_src, remove=["hair"], add=[PartSwap(h_ref, ("mouth",), "both")])
    np.testing.assert_array_equal(got, library_pixels(want.images)[0])
    assert not (np.asarray(api.decode_png(b.get(f"/api/images/{removed_id}/segmentation").body)) == 2).any()


def test_results_keep_their_codes(serve: Callable[..., Running], library: SemanticEditor, tmp_path: Path) -> None:
    """A swap's result, kept, is a source with the exact code it was rendered from (no encoder needed); its
    code downloads as the official .npy latents; a sample's code is its own."""
    b = serve().browser()
    src, ref, _ = samples(b)
    h_src, h_ref, _ = library_handles(library)
    reply = b.post("/api/parts/swap", {"source": src, "references": [{"id": ref, "parts": {"hair": "texture"}}]})
    kept = b.request("POST", f"/api/images/{reply.headers['x-image-id']}/keep").json()
    assert kept["id"].startswith("u_") and kept["stylemap"] == "exact"
    again = b.post("/api/reconstruct", {"id": kept["id"]})
    assert again.status == 200
    np.testing.assert_array_equal(pixels(again.body), pixels(reply.body))
    code = b.get(f"/api/images/{kept['id']}/code")
    assert code.status == 200 and code.headers["content-disposition"].endswith('.npy"')
    (tmp_path / "kept.npy").write_bytes(code.body)
    latents = library.load_code(tmp_path / "kept.npy")
    want = library.swap_latents(h_src, [PartSwap(h_ref, ("hair",), "texture")])
    torch.testing.assert_close(latents, want, rtol=0, atol=0)
    sample_code = np.load(io.BytesIO(b.get(f"/api/images/{src}/code").body))
    np.testing.assert_array_equal(sample_code, library.code(h_src).numpy())
    stylemap = b.get(f"/api/images/{src}/stylemap.npz")
    assert stylemap.status == 404 and "/code" in one_line(stylemap)


def test_part_interpolation(serve: Callable[..., Running], library: SemanticEditor) -> None:
    b = serve().browser()
    a, c, _ = samples(b)
    h_a, h_c, _ = library_handles(library)
    for parts, what in ((["hair", "mouth"], "shape"), (None, "both")):
        reply = b.post("/api/parts/interpolate", {"a": a, "b": c, "parts": parts, "what": what, "frames": 5})
        assert reply.status == 200 and reply.headers["x-frames"] == "5"
        strip = pixels(reply.body)
        assert strip.shape == (32, 5 * 32, 3)
        want = library.interpolate_parts(h_a, h_c, parts, what, 5).images
        np.testing.assert_array_equal(strip, np.concatenate(list(library_pixels(want)), axis=1))
    np.testing.assert_array_equal(strip[:, :32], pixels(b.get(f"/api/images/{a}").body))  # frame 0: a itself
    np.testing.assert_array_equal(strip[:, -32:], pixels(b.get(f"/api/images/{c}").body))  # whole code: ends at b
    assert b.post("/api/parts/interpolate", {"a": a, "b": c, "frames": 17}).status == 422  # limits apply


def test_painted_mask_selects_the_parts_it_covers(serve: Callable[..., Running], library: SemanticEditor) -> None:
    b = serve().browser()
    src = samples(b, count=1)[0]
    handle = library_handles(library, count=1)[0]
    labels = library.segment(handle)[0].argmax(0)
    present = [NAMES[k] for k in sorted(set(labels.flatten().tolist()))]
    assert len(present) >= 2  # the random model draws several parts

    def under(mask: np.ndarray, threshold: float = 0.5) -> list[str]:
        image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
        alpha = Image.fromarray((mask * 255).astype(np.uint8))
        image.putalpha(alpha)
        buf = io.BytesIO()
        image.save(buf, "PNG")
        body = {"id": src, "mask": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
                "threshold": threshold}
        reply = b.post("/api/parts/under-mask", body)
        assert reply.status == 200, reply.body
        return reply.json()["parts"]

    assert under(np.ones((32, 32))) == present
    assert under(np.zeros((32, 32))) == []
    biggest = int(torch.bincount(labels.flatten(), minlength=len(NAMES)).argmax())
    exact = (labels == biggest).numpy().astype(np.float64)
    assert under(exact) == [NAMES[biggest]]
    assert under(exact) == library.parts_under_mask(handle, torch.from_numpy(exact).float())
    half = exact.copy()
    half.flat[np.flatnonzero(exact)[::2]] = 0  # paint over half the region: covered only at a low threshold
    covered = float(half.sum() / exact.sum())
    assert under(half, threshold=max(0.01, covered - 0.01)) == [NAMES[biggest]]
    assert under(half, threshold=min(1.0, covered + 0.01)) == []


def test_part_sliders_pca_on_demand_and_from_the_file(
    serve: Callable[..., Running], library: SemanticEditor
) -> None:
    vector = torch.zeros(TINY.n_latent, TINY.style_dim)
    vector[3] = 1.0 / TINY.style_dim**0.5
    file_directions = {
        "mouth.open": Direction("mouth.open", vector, {"part": "mouth", "kind": "supervised", "attribute": "open"}),
        "smile": Direction("smile", torch.full((TINY.n_latent, TINY.style_dim), 0.01), {}),
    }
    srv = serve(directions=file_directions)
    b = srv.browser()
    info = b.get("/api/info").json()
    assert [d["name"] for d in info["directions"]] == ["smile"]  # whole-code sliders; part ones per part
    from_file = b.get("/api/parts/directions?part=mouth").json()
    assert from_file["source"] == "file" and [d["label"] for d in from_file["directions"]] == ["open"]

    completed = srv.engine.completed
    hair = b.get("/api/parts/directions?part=hair").json()
    assert hair["source"] == "pca" and srv.engine.completed == completed + 1  # computed on the model worker
    names = [d["name"] for d in hair["directions"]]
    assert names == [f"hair.pca_{i}" for i in range(ServerLimits().part_direction_components)]
    assert [d["label"] for d in hair["directions"]][:2] == ["PCA 1 (unsupervised)", "PCA 2 (unsupervised)"]
    assert b.get("/api/parts/directions?part=hair").json() == hair and srv.engine.completed == completed + 1  # kept
    shape = b.get("/api/parts/directions?part=hair&what=shape").json()
    assert shape["directions"][0]["name"] == "hair.shape.pca_0"

    src = samples(b, count=1)[0]
    handle = library_handles(library, count=1)[0]
    reply = b.post("/api/attributes", {"id": src, "strengths": {"hair.pca_0": 3.0, "mouth.open": -2.0}})
    assert reply.status == 200, reply.body
    pca = library.pca_directions(ServerLimits().part_direction_components, ServerLimits().part_direction_samples, 0,
                                 "hair", "both")[0].vector
    want = library.apply_direction(handle, 3.0 * pca + -2.0 * vector, 1.0)
    np.testing.assert_array_equal(pixels(reply.body), library_pixels(want.images)[0])
    assert np.abs(pixels(reply.body).astype(int) - pixels(b.get(f"/api/images/{src}").body).astype(int)).max() > 0
    unknown = b.post("/api/attributes", {"id": src, "strengths": {"skin.pca_0": 1.0}})  # never computed
    assert unknown.status == 422 and "GET /api/parts/directions" in one_line(unknown)


def test_bad_part_names_and_unsupported_routes_are_one_line_4xx(serve: Callable[..., Running]) -> None:
    b = serve(ServerLimits(max_references=2)).browser()
    src, ref, _ = samples(b)
    cases = [
        ("/api/parts/swap", {"source": src, "references": [{"id": ref, "parts": {"hat": "both"}}]}, 422,
         "references.0.parts: unknown part 'hat' (this model's parts: background, skin, hair, glasses, mouth)"),
        ("/api/parts/swap", {"source": src, "references": [{"id": ref, "parts": {"hair": "sideways"}}]}, 422,
         "references.0.parts.hair"),
        ("/api/parts/swap", {"source": src, "remove": ["hair"], "references": [{"id": ref, "parts": {"hair": "both"}}]},
         422, "remove: part 'hair' is also taken from a reference"),
        ("/api/parts/swap", {"source": src, "remove": NAMES}, 422, "cannot remove every part"),
        ("/api/parts/swap", {"source": src}, 422, "name at least one part"),
        ("/api/parts/swap", {"source": src, "references": [{"id": ref, "parts": {"hair": "both"}}] * 3}, 422,
         "references: at most 2"),
        ("/api/parts/swap", {"source": src, "references": [{"id": "r_nothere", "parts": {"hair": "both"}}]}, 404,
         "image r_nothere"),
        ("/api/parts/interpolate", {"a": src, "b": ref, "parts": ["ears"]}, 422, "parts: unknown part 'ears'"),
        ("/api/parts/under-mask", {"id": src, "mask": "bm90IGEgcG5n"}, 400, "mask: not a PNG"),
        ("/api/edit", api.edit_body(32, source=src, ref=ref), 404, "does not paste painted masks; swap parts instead"),
        ("/api/refine", {"id": src}, 404, "cannot refine"),
    ]
    for path, body, status, message in cases:
        reply = b.post(path, body)
        assert reply.status == status, (path, body, reply.status, reply.body)
        assert message in one_line(reply), (message, reply.error)
    reply = b.get("/api/parts/directions?part=ears")
    assert reply.status == 422 and "unknown part 'ears'" in one_line(reply)


def test_uploads_and_the_gallery_go_through_the_encode_door(
    serve: Callable[..., Running], encoder_checkpoint: Path
) -> None:
    """Images come in through the family's encoder, as for StyleMapGAN: on a checkpoint without one, an upload
    (and a gallery image, which needs the same encoding) gets the library's one-line error as a 400 and is not
    kept, while samples work; on a checkpoint with one, uploads are encoded and edited like samples."""
    b = serve().browser()
    upload = b.upload(api.image_bytes((40, 24)))
    assert upload.status == 400 and "needs an encoder" in one_line(upload)
    assert b.get("/api/info").json()["uploads"] == []  # nothing half-made was kept
    recon = b.post("/api/reconstruct", {"id": "g_0"})
    assert recon.status == 400 and "needs an encoder" in one_line(recon)
    assert b.get("/api/images/g_0").status == 200  # the gallery still shows
    src = samples(b, count=1)[0]
    assert b.post("/api/reconstruct", {"id": src}).status == 200  # a sample's code is known: no encoding

    library = Editor.from_checkpoint(encoder_checkpoint, "cpu")
    assert isinstance(library, SemanticEditor) and library.encoder is not None
    b = serve(path=encoder_checkpoint).browser()
    upload = b.upload(api.image_bytes((40, 24), noise=True))
    assert upload.status == 200, upload.body
    desc = upload.json()
    assert desc["id"].startswith("u_") and desc["reconstruction_mse"] > 0
    assert [u["id"] for u in b.get("/api/info").json()["uploads"]] == [desc["id"]]
    image = library.prepare(Image.open(io.BytesIO(b.get(f"/api/images/{desc['id']}").body)).convert("RGB"))
    h_up, h_gallery = library.encode(image), library.encode(library.prepare(
        Image.open(io.BytesIO(b.get("/api/images/g_0").body)).convert("RGB")))
    recon = b.post("/api/reconstruct", {"id": desc["id"]})
    np.testing.assert_array_equal(pixels(recon.body), library_pixels(library.reconstruct(h_up))[0])
    swap = b.post("/api/parts/swap", {"source": desc["id"], "references": [{"id": "g_0", "parts": {"hair": "both"}}]})
    assert swap.status == 200, swap.body
    want = library.swap_parts(h_up, [PartSwap(h_gallery, ("hair",), "both")])
    np.testing.assert_array_equal(pixels(swap.body), library_pixels(want.images)[0])
    assert np.abs(pixels(swap.body).astype(int) - pixels(recon.body).astype(int)).max() > 0
    seg = np.asarray(api.decode_png(b.get(f"/api/images/{desc['id']}/segmentation").body))
    np.testing.assert_array_equal(seg, library.segment(h_up)[0].argmax(0).numpy())


def test_sessions_are_kept_apart_and_latest_wins(serve: Callable[..., Running]) -> None:
    srv = serve()
    alice, bob = srv.browser(), srv.browser()
    src, ref, _ = samples(alice)
    swap = {"source": src, "references": [{"id": ref, "parts": {"hair": "both"}}]}
    assert alice.post("/api/parts/swap", swap).status == 200
    for path, body in (("/api/parts/swap", swap), ("/api/parts/interpolate", {"a": src, "b": ref}),
                       ("/api/parts/under-mask", {"id": src, "mask": api.mask_url(32)})):
        reply = bob.post(path, body)
        assert reply.status == 404 and "not in this session" in one_line(reply), path
    assert bob.get(f"/api/images/{src}/segmentation").status == 404
    assert alice.get(f"/api/images/{src}/segmentation").status == 200
    assert alice.post("/api/parts/swap", {**swap, "seq": 5, "client": "page"}).status == 200
    stale = alice.post("/api/parts/swap", {**swap, "seq": 4, "client": "page"})
    assert stale.status == 409 and stale.json()["superseded"] is True
    assert alice.post("/api/parts/swap", {**swap, "seq": 4, "client": "other-page"}).status == 200


def test_a_model_without_parts_refuses_the_part_routes(tmp_path: Path) -> None:
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, fresh_checkpoint(get_preset("tiny").model, 3, "test"))
    servers: list[tuple[Any, threading.Thread]] = []
    try:
        srv = start_server(Editor.from_checkpoint(path, "cpu", cache_size=16), servers)
        b = srv.browser()
        info = b.get("/api/info").json()
        assert info["capabilities"]["masks"] and info["capabilities"]["parts"] == [] and info["part_colors"] == []
        assert info["features"]["refine"] and info["modes"] == ["w", "w_plus"]
        src, ref, _ = samples(b)
        for path_, body in (("/api/parts/swap", {"source": src, "references": [{"id": ref, "parts": {"a": "both"}}]}),
                            ("/api/parts/under-mask", {"id": src, "mask": api.mask_url(16)})):
            reply = b.post(path_, body)
            assert reply.status == 404 and "this model has no parts" in one_line(reply), path_
        assert b.get("/api/parts/directions?part=hair").status == 404
        assert b.get(f"/api/images/{src}/segmentation").status == 404
        npz = b.get(f"/api/images/{src}/code")
        assert npz.status == 200 and npz.body == b.get(f"/api/images/{src}/stylemap.npz").body
    finally:
        for server, thread in servers:
            server.should_exit = True
            thread.join(timeout=10)
