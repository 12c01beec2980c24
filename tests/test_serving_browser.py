"""End to end in a real headless Chromium (Debian's `chromium`, driven by Playwright's Python package): start
`stylemapgan serve` as a subprocess on a free port, pick a source and a reference from the gallery, paint a
stroke with the mouse, see the result change, apply a one-click part mask, download the result PNG, refine the
source's stylemap, get an upload of the wrong type refused with a message in the page, upload a JPEG (with
its domain warning) and edit it; the page's labels, mask overlay and caption; the picker first on a phone; and
under overload (a tiny queue, a flood of cookie-less requests) the page retries until the last stroke's result
arrives, its messages never moving the canvases. On a SemanticStyleGAN model (a random semantic-tiny with named
parts, no gallery) the same page shows the part controls: samples as sources, a part swapped from a reference
(the result changes), the segmentation overlay, a painted mask choosing the parts it covers, part interpolation,
a part's PCA sliders, and an upload encoded by the model's encoder and edited as the source.

Screenshots (before / after the edit) go to $STYLEMAPGAN_SCREENSHOTS when set, else to the test's tmp folder.
With CI=true a browser that cannot start fails the test instead of skipping it.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from face_fixtures import write_face_dataset
from photo_fixtures import mediapipe_or_skip, photo_path
from stylemapgan.checkpoint import build_network, fresh_checkpoint, save_checkpoint
from stylemapgan.config import get_preset
from stylemapgan.editing import Direction, save_directions
from stylemapgan.editing.clusters import EXTRA_KEY, fit_clusters
from stylemapgan.semantic.config import SEMANTIC_PRESETS
from stylemapgan.semantic.encoder import SemanticEncoder

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() == "true"
MAX_QUEUE = 6  # the server's queue: room for the page's own requests, easily filled by a flood
TYPICAL_MSE = 1e-4  # the checkpoint card's reconstruction error: every upload to the random model is far off


def unavailable(reason: str) -> None:
    """Skip locally; fail in CI, where the browser is a declared system dependency."""
    if IN_CI:
        pytest.fail(f"browser test cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`stylemapgan serve --port 0 --max-queue 6` in a subprocess (random cpu-32 model whose card claims a tiny
    reconstruction error, drawn gallery, one labelled and two PCA directions); yields the printed URL."""
    root = tmp_path_factory.mktemp("serve")
    ckpt = root / "cpu-32.safetensors"
    checkpoint = fresh_checkpoint(get_preset("cpu-32").model, 0, "test")
    checkpoint.provenance["card"] = {"name": "test", "metrics": {"recon.mse": TYPICAL_MSE}}
    generator = build_network(checkpoint, "g_ema", "cpu").eval()  # part clusters: one-click parts of any image
    checkpoint.extra[EXTRA_KEY] = fit_clusters(generator, 3, samples=2).renamed({1: "hair"}).to_extra()
    save_checkpoint(ckpt, checkpoint)
    gallery = write_face_dataset(root / "faces", count=5, train_count=0, seed=1)
    directions = root / "directions.safetensors"
    rng = torch.Generator().manual_seed(0)
    vectors = [torch.randn(get_preset("cpu-32").model.stylemap_shape, generator=rng) for _ in range(3)]
    save_directions(directions, [Direction("pca_1", vectors[2] / vectors[2].norm(), {"kind": "pca", "component": 1}),
                                 Direction("smile", vectors[0] / vectors[0].norm()),
                                 Direction("pca_0", vectors[1] / vectors[1].norm(), {"kind": "pca", "component": 0})],
                    {"kind": "test"})
    yield from serve_process(["--ckpt", str(ckpt), "--gallery", str(gallery), "--directions", str(directions),
                              "--max-queue", str(MAX_QUEUE)])


def serve_process(args: list[str]) -> Iterator[str]:
    """`stylemapgan serve ARGS --port 0 --threads 1` in a subprocess; yields the URL it prints, stops it after."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stylemapgan", "serve", *args, "--port", "0", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    url = None
    lines = []
    deadline = time.monotonic() + 90
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
        if found:
            url = found.group(1)
            break
    try:
        assert url, "server did not print its URL:\n" + "".join(lines)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


SEMANTIC_PARTS = ["background", "skin", "hair", "glasses", "mouth"]


@pytest.fixture(scope="module")
def semantic_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`stylemapgan serve` on a random semantic-tiny model (32 px, five named parts, an untrained encoder whose
    offsets are scaled up so that images encode apart) with no gallery."""
    ckpt = tmp_path_factory.mktemp("serve-semantic") / "semantic-tiny.safetensors"
    config = SEMANTIC_PRESETS["semantic-tiny"].model
    checkpoint = fresh_checkpoint(config, 1, "test")
    checkpoint.extra["class_names"] = SEMANTIC_PARTS
    encoder = SemanticEncoder(config)
    with torch.no_grad():
        encoder.to_latents.weight.normal_(generator=torch.Generator().manual_seed(2))
        encoder.set_mean_latent(build_network(checkpoint, "g_ema", "cpu").mean_latent())
    checkpoint.networks["e_ema"] = encoder.state_dict()
    save_checkpoint(ckpt, checkpoint)
    yield from serve_process(["--ckpt", str(ckpt)])


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install playwright)")
    if not Path(CHROMIUM).is_file():
        unavailable(f"{CHROMIUM} not found (apt-get install chromium)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        try:
            context = pw.chromium.launch_persistent_context(
                str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 900}, accept_downloads=True,
            )
        except Exception as exc:  # Playwright raises its own Error type for launch failures
            unavailable(f"chromium did not start: {str(exc).splitlines()[0]}")
        try:
            page = context.new_page()
            yield page
        finally:
            context.close()


def screenshots_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("STYLEMAPGAN_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def canvas_url(page: Any, selector: str) -> str:
    return page.eval_on_selector(selector, "c => c.toDataURL('image/png')")


def canvas_pixels(data_url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"))


def wait_idle(page: Any) -> None:
    """No request in flight or waiting to be retried (the page's busy marker hidden) for a moment."""
    for _ in range(3):
        page.wait_for_selector("#busy", state="hidden", timeout=30_000)
        page.wait_for_timeout(150)


def open_editor(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    page.wait_for_selector("#gallery .thumb >> nth=3")


def pick_source_and_reference(page: Any, source: int = 0, reference: int = 3) -> None:
    page.click("#slot-source")
    page.click(f"#gallery .thumb >> nth={source}")
    page.wait_for_function("() => Number(document.getElementById('result-canvas').dataset.updates) >= 1",
                           timeout=30_000)
    page.click("#slot-ref-0")
    page.click(f"#gallery .thumb >> nth={reference}")
    page.wait_for_function("() => Number(document.getElementById('result-canvas').dataset.updates) >= 2",
                           timeout=30_000)
    wait_idle(page)


def box_of(page: Any, selector: str) -> tuple[float, float, float, float]:
    box = page.locator(selector).bounding_box()
    assert box is not None, selector
    return box["x"], box["y"], box["width"], box["height"]


def post_json(url: str, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    """A cookie-less request, as a script sends it."""
    host, port = url.split("//", 1)[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_paint_edit_and_download_in_chromium(server_url: str, browser_page: Any, tmp_path: Path) -> None:
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    open_editor(page, server_url)
    # the gallery caption: a short name (no path of the server's disk), cut with an ellipsis inside its panel
    caption = page.text_content("#gallery-source") or ""
    assert caption == "faces (test split)" and "/" not in caption
    assert page.eval_on_selector("#gallery-source", "e => getComputedStyle(e).textOverflow") == "ellipsis"
    px, _, pw, _ = box_of(page, "#picker")
    cx, _, cw, _ = box_of(page, "#gallery-source")
    assert cx + cw <= px + pw

    pick_source_and_reference(page)
    # nothing painted yet: the result is the reconstruction, and says so
    assert page.text_content("#result-label") == "Reconstruction (no edit yet)"
    assert page.eval_on_selector("#result-canvas", "c => c.dataset.kind") == "reconstruction"
    assert page.locator("#domain-warning").is_hidden()  # a gallery image: no warning
    before = canvas_url(page, "#result-canvas")
    shots = screenshots_dir(tmp_path)
    page.screenshot(path=str(shots / "serving-before-edit.png"), full_page=True)

    box = page.locator("#mask-canvas").bounding_box()
    assert box is not None
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x0 + 0.2 * w, y0 + 0.3 * h)
    page.mouse.down()
    for i in range(1, 13):
        page.mouse.move(x0 + (0.2 + 0.05 * i) * w, y0 + (0.3 + 0.03 * i) * h)
        page.wait_for_timeout(15)
    page.mouse.up()
    page.wait_for_function(
        "before => document.getElementById('result-canvas').toDataURL('image/png') !== before", arg=before,
        timeout=30_000,
    )
    wait_idle(page)
    after = canvas_url(page, "#result-canvas")
    assert np.abs(canvas_pixels(after).astype(int) - canvas_pixels(before).astype(int)).max() > 0
    assert page.text_content("#result-label") == "Result"
    # the painted region over the reference: a see-through fill (the image shows through) with an opaque outline
    overlay = page.eval_on_selector("#mask-canvas", """c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const at = (x, y) => d[4 * (Math.floor(y * c.height) * c.width + Math.floor(x * c.width)) + 3];
        let opaque = 0, painted = 0;
        for (let i = 3; i < d.length; i += 4) { if (d[i] === 255) opaque++; if (d[i] > 0) painted++; }
        return {centre: at(0.5, 0.48), opaque, painted, opacity: Number(getComputedStyle(c).opacity)};
    }""")
    assert 40 <= overlay["centre"] * overlay["opacity"] <= 128, overlay  # ~30% over the stroke's middle
    assert 0 < overlay["opaque"] < 0.5 * overlay["painted"], overlay  # the outline: a thin opaque ring
    assert re.search(r"server [\d.]+ ms \(model [\d.]+", page.text_content("#latency") or "")
    page.screenshot(path=str(shots / "serving-after-edit.png"), full_page=True)
    assert (shots / "serving-after-edit.png").stat().st_size > 0

    with page.expect_download() as download_info:
        page.click("#download-png")
    download = download_info.value
    saved = tmp_path / "result.png"
    download.save_as(str(saved))
    with Image.open(saved) as image:
        assert image.format == "PNG" and image.size == (32, 32)
        downloaded = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(downloaded, canvas_pixels(canvas_url(page, "#result-canvas")))

    page.click("#undo")  # back to the empty mask: the result returns to the first one
    page.wait_for_function(
        "before => document.getElementById('result-canvas').toDataURL('image/png') === before", arg=before,
        timeout=30_000,
    )
    assert page.text_content("#result-label") == "Reconstruction (no edit yet)"
    page.click("#parts button[data-part='hair']")  # one-click part mask on the reference
    page.wait_for_function(
        "before => document.getElementById('result-canvas').toDataURL('image/png') !== before", arg=before,
        timeout=30_000,
    )
    # the model's part clusters: named first, and a click fetches the reference's own cluster mask
    labels = page.eval_on_selector_all("#clusters button", "els => els.map(e => e.textContent)")
    assert labels == ["hair", "cluster 0", "cluster 2"]
    with page.expect_response(lambda r: "/clusters?ids=1" in r.url) as response:
        page.click("#clusters button[data-cluster='1']")
    assert response.value.status == 200 and response.value.headers["content-type"] == "image/png"

    # refine the source: a new upload becomes the source, with the MSE before and after in the page
    wait_idle(page)
    page.fill("#refine-steps", "20")
    page.click("#refine")
    page.wait_for_function("() => document.getElementById('refine-info').textContent.includes('→')", timeout=30_000)
    found = re.search(r"MSE ([\d.]+) → ([\d.]+) \((\d+) steps", page.text_content("#refine-info") or "")
    assert found and float(found[2]) < float(found[1]) and found[3] == "20"
    assert page.locator("#uploads .thumb").count() == 1

    # the other tools: samples, interpolation, attribute sliders, and a result used as the next source
    page.click("#extras summary:has-text('Random samples')")
    page.click("#generate")
    page.wait_for_selector("#samples .thumb >> nth=3", timeout=30_000)
    page.click("#extras summary:has-text('Interpolation')")
    page.click("#interpolate")
    page.wait_for_selector("#interp-t:not([disabled])", timeout=30_000)
    first_frame = canvas_url(page, "#interp-canvas")
    page.fill("#interp-t", "8")
    assert page.text_content("#interp-out") == "1.00" and canvas_url(page, "#interp-canvas") != first_frame
    page.click("#extras summary:has-text('Attributes')")
    labels = page.eval_on_selector_all("#attributes .attribute-label", "els => els.map(e => e.textContent)")
    assert labels == ["smile", "PCA 1 (unsupervised)", "PCA 2 (unsupervised)"]  # labelled first, then in order
    page.wait_for_function("() => document.getElementById('attr-latency').textContent.includes('server')",
                           timeout=30_000)
    neutral = canvas_url(page, "#attr-canvas")
    page.fill("#attributes input[data-name='smile']", "8")
    page.wait_for_function(
        "old => document.getElementById('attr-canvas').toDataURL('image/png') !== old", arg=neutral, timeout=30_000
    )
    page.click("#use-result")
    page.wait_for_function("() => document.querySelectorAll('#uploads .thumb').length >= 2", timeout=30_000)
    page.click("#slot-source")
    page.click("#samples .thumb >> nth=0")  # a sample as the source: kept as an upload
    page.wait_for_function("() => document.querySelectorAll('#uploads .thumb').length >= 3", timeout=30_000)
    wait_idle(page)
    page.screenshot(path=str(shots / "serving-tools.png"), full_page=True)

    page.set_input_files("#upload-input", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                                  "buffer": b"not an image"}])
    page.wait_for_selector("#message:not([hidden])", timeout=30_000)
    assert "unsupported file type" in (page.text_content("#message-text") or "")

    # a real JPEG photo-sized upload: it appears among the uploads at once, becomes the source, and is edited
    rng = np.random.default_rng(3)
    photo = Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).resize((480, 360))
    jpeg = io.BytesIO()
    photo.save(jpeg, format="JPEG", quality=90)
    uploads_before = page.locator("#uploads .thumb").count()
    updates_before = int(page.eval_on_selector("#result-canvas", "c => Number(c.dataset.updates)"))
    page.click("#slot-source")
    page.set_input_files("#upload-input", files=[{"name": "photo.jpg", "mimeType": "image/jpeg",
                                                  "buffer": jpeg.getvalue()}])
    page.wait_for_function(f"() => document.querySelectorAll('#uploads .thumb').length > {uploads_before}",
                           timeout=30_000)
    page.wait_for_function(
        f"() => Number(document.getElementById('result-canvas').dataset.updates) > {updates_before}", timeout=30_000
    )
    wait_idle(page)
    assert "upload failed" not in (page.text_content("#message-text") or "")
    # noise reconstructs far worse than the (claimed) typical error: the page says so and suggests Refine
    warning = page.text_content("#domain-warning") or ""
    assert page.locator("#domain-warning").is_visible()
    assert "unlike what the model was trained on" in warning and "Refine in the web editor" in warning
    assert not errors, errors


def test_align_face_upload_downloads_the_whole_photo(server_url: str, browser_page: Any) -> None:
    """"align face": a real portrait's face is aligned to the model's size and becomes the source; the result
    downloads as the whole photo at its own resolution, the face pasted back and the rest exactly the photo."""
    mediapipe_or_skip()
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    open_editor(page, server_url)
    align = page.locator("#upload-align")
    assert align.is_enabled() and not align.is_checked()  # a model named "test" is not a face model: off
    jpeg = Path(photo_path("grace_hopper")).read_bytes()
    align.check()
    updates_before = int(page.eval_on_selector("#result-canvas", "c => Number(c.dataset.updates)"))
    page.click("#slot-source")
    page.set_input_files("#upload-input", files=[{"name": "hopper.jpg", "mimeType": "image/jpeg", "buffer": jpeg}])
    page.wait_for_function(
        f"() => Number(document.getElementById('result-canvas').dataset.updates) > {updates_before}", timeout=60_000
    )
    wait_idle(page)
    assert "no face" not in (page.text_content("#message-text") or "")
    link = page.locator("#download-photo")
    assert link.is_visible() and "/photo" in (link.get_attribute("href") or "")
    with page.expect_download() as info:
        link.click()
    whole = np.asarray(Image.open(info.value.path()).convert("RGB"))
    original = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    assert whole.shape == original.shape == (600, 512, 3)
    assert np.array_equal(whole[:, :40], original[:, :40])  # far from the face: the photo's own pixels
    assert np.abs(whole[200:300, 200:300].astype(int) - original[200:300, 200:300]).mean() > 5  # the face: pasted
    # a landscape with "align face": a message that says so, and nothing else changes
    page.set_input_files("#upload-input", files=[{"name": "china.jpg", "mimeType": "image/jpeg",
                                                  "buffer": Path(photo_path("china")).read_bytes()}])
    page.wait_for_selector("#message:not([hidden])", timeout=60_000)
    assert "no face found in china.jpg" in (page.text_content("#message-text") or "")
    align.uncheck()
    assert not errors, errors


def test_picker_comes_first_on_a_phone(server_url: str, browser_page: Any) -> None:
    page = browser_page.context.new_page()
    try:
        page.set_viewport_size({"width": 390, "height": 844})
        open_editor(page, server_url)
        _, picker_y, _, picker_h = box_of(page, "#picker")
        _, workspace_y, _, _ = box_of(page, "#workspace")
        assert picker_y + picker_h <= workspace_y  # the gallery above the (still empty) canvases
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
        caption_x, _, caption_w, _ = box_of(page, "#gallery-source")
        assert caption_x + caption_w <= 390
    finally:
        page.close()


def test_overload_retries_until_the_last_stroke_shows(server_url: str, browser_page: Any) -> None:
    """A flood of cookie-less requests fills the server's tiny queue while the user paints: the page's edits get
    503, it says so in a toast that leaves the canvases where they were, retries with backoff, and once the
    flood stops shows exactly the edit of the final mask."""
    page = browser_page
    busy_answers: list[str] = []
    page.on("response", lambda r: busy_answers.append(r.url) if r.status == 503 else None)
    open_editor(page, server_url)
    pick_source_and_reference(page, source=1, reference=2)
    mask_box = box_of(page, "#mask-canvas")
    result_box = box_of(page, "#result-canvas")

    stop = threading.Event()

    def flood(seed: int) -> None:
        while not stop.is_set():
            status, _ = post_json(server_url, "/api/samples", {"seed": seed, "count": 8})
            if status == 503:
                time.sleep(0.01)

    flooders = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(2 * MAX_QUEUE)]
    for t in flooders:
        t.start()
    layout = """() => {
        const r = (id) => { const b = document.getElementById(id).getBoundingClientRect(); return [b.x, b.y]; };
        return {shown: !document.getElementById('message').hidden, mask: r('mask-canvas'), result: r('result-canvas')};
    }"""
    seen_with_banner = 0
    try:
        x0, y0, w, h = mask_box
        for stroke in range(4):  # a burst of strokes
            page.mouse.move(x0 + 0.15 * w, y0 + (0.2 + 0.2 * stroke) * h)
            page.mouse.down()
            for i in range(1, 11):
                page.mouse.move(x0 + (0.15 + 0.07 * i) * w, y0 + (0.2 + 0.2 * stroke + 0.01 * i) * h)
                page.wait_for_timeout(40)
                now = page.evaluate(layout)
                assert now["mask"] == list(mask_box[:2]) and now["result"] == list(result_box[:2]), now
                seen_with_banner += now["shown"]
            page.mouse.up()
            page.wait_for_timeout(150)
    finally:
        stop.set()
        for t in flooders:
            t.join(timeout=30)
    print(f"503 answers to the page: {len(busy_answers)}, samples with the banner shown: {seen_with_banner}")
    assert any("/api/edit" in u for u in busy_answers), busy_answers[:5]  # the page really was turned away
    assert seen_with_banner > 0  # ...said so, and the canvases stayed put meanwhile (checked above)
    assert "busy" in (page.text_content("#message-text") or "")

    wait_idle(page)  # the retries ran out once the flood stopped
    final = page.evaluate("""() => { const r = state.refs[0];
        return {source: state.source.id, ref: r.id, mask: maskPng(r), shift: r.shift, mode: state.mode,
                alpha: state.alpha, feather: state.feather}; }""")
    assert page.eval_on_selector("#result-canvas", "c => c.dataset.kind") == "edit"
    status, png = post_json(server_url, "/api/edit", {
        "source": final["source"], "references": [{"id": final["ref"], "mask": final["mask"],
                                                   "shift": final["shift"]}],
        "mode": final["mode"], "alpha": final["alpha"], "feather": final["feather"]})
    assert status == 200
    direct = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    np.testing.assert_array_equal(canvas_pixels(canvas_url(page, "#result-canvas")), direct)


def changed_from(page: Any, selector: str, before: str) -> None:
    page.wait_for_function("([s, before]) => document.querySelector(s).toDataURL('image/png') !== before",
                           arg=[selector, before], timeout=30_000)


def test_semantic_model_swaps_a_part_in_chromium(semantic_url: str, browser_page: Any, tmp_path: Path) -> None:
    page = browser_page.context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(semantic_url)
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        # the controls of a model with parts, asked from /api/info: no paste modes, shifts or refine
        assert page.text_content("#workspace-title") == "2 · Swap parts"
        rows = page.eval_on_selector_all("#part-list tr", "rows => rows.map(r => r.dataset.part)")
        assert rows == SEMANTIC_PARTS
        for hidden in ("#mode-row", "#feather-row", "#reset-shift", "#refine-row", "#parts-box"):
            assert page.locator(hidden).is_hidden(), hidden
        assert page.locator("#seg-toggle").is_visible()
        assert "SemanticStyleGAN" in (page.text_content("#model-info") or "")

        # no gallery: samples are the images to start from
        assert page.eval_on_selector("#samples-box", "d => d.open")
        page.click("#generate")
        page.wait_for_selector("#samples .thumb >> nth=2", timeout=30_000)
        page.click("#slot-source")
        page.click("#samples .thumb >> nth=0")
        page.wait_for_function("() => Number(document.getElementById('result-canvas').dataset.updates) >= 1",
                               timeout=30_000)
        page.click("#slot-ref-0")
        page.click("#samples .thumb >> nth=1")
        page.wait_for_function("() => Number(document.getElementById('result-canvas').dataset.updates) >= 2",
                               timeout=30_000)
        wait_idle(page)
        assert page.text_content("#result-label") == "Reconstruction (no edit yet)"
        before = canvas_url(page, "#result-canvas")

        # swap the hair's texture from the reference: the result changes, and is labelled an edit
        page.check("#part-list input[data-part='hair'][data-what='texture']")
        changed_from(page, "#result-canvas", before)
        wait_idle(page)
        swapped = canvas_url(page, "#result-canvas")
        assert np.abs(canvas_pixels(swapped).astype(int) - canvas_pixels(before).astype(int)).max() > 0
        assert page.text_content("#result-label") == "Result"
        assert page.eval_on_selector("#result-canvas", "c => c.dataset.kind") == "edit"
        assert page.eval_on_selector("#part-list tr[data-part='hair']", "r => r.classList.contains('selected')")

        # the segmentation overlay: the result's own, in the part colours /api/info gives
        page.check("#seg-toggle")
        page.wait_for_function("""() => { const c = document.getElementById('result-seg');
            return !c.hidden && c.dataset.shown && c.dataset.shown === c.dataset.id && c.width === 32; }""",
                               timeout=30_000)
        result_id = page.evaluate("() => state.resultId")
        assert page.eval_on_selector("#result-seg", "c => c.dataset.shown") == result_id
        assert page.locator("#source-seg").is_visible() and page.locator("#ref-seg").is_visible()
        overlay = canvas_pixels(canvas_url(page, "#result-seg"))
        colors = page.evaluate("() => state.info.part_colors")
        palette = {tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in colors}
        assert {tuple(p) for p in overlay.reshape(-1, 3)} <= palette and len(palette) == len(SEMANTIC_PARTS)
        assert float(page.eval_on_selector("#result-seg", "c => getComputedStyle(c).opacity")) < 1
        page.screenshot(path=str(screenshots_dir(tmp_path) / "serving-semantic-swap.png"), full_page=True)

        # paint over the whole reference: every part it shows is chosen (shape and texture), the result follows
        page.fill("#brush-size", page.eval_on_selector("#brush-size", "e => e.max"))
        page.dispatch_event("#brush-size", "input")
        page.locator("#mask-canvas").scroll_into_view_if_needed()
        x0, y0, w, h = box_of(page, "#mask-canvas")
        for row in range(8):
            y = y0 + (0.02 + row * 0.135) * h
            page.mouse.move(x0 + 0.01 * w, y)
            page.mouse.down()
            page.mouse.move(x0 + 0.99 * w, y, steps=6)
            page.mouse.up()
        page.wait_for_function("() => document.querySelectorAll('#part-list tr.selected').length >= 2",
                               timeout=30_000)
        changed_from(page, "#result-canvas", swapped)
        wait_idle(page)
        hair = page.eval_on_selector_all("#part-list input[data-part='hair']", "els => els.map(e => e.checked)")
        assert hair[:2] == [False, True]  # ticked by hand (texture only): the mask does not override it

        # part interpolation between the source and the reference, only the chosen parts moving
        page.click("#extras summary:has-text('Interpolation')")
        assert "hair" in (page.text_content("#interp-parts") or "")
        with page.expect_response(lambda r: "/api/parts/interpolate" in r.url) as response:
            page.click("#interpolate")
        assert response.value.status == 200
        page.wait_for_selector("#interp-t:not([disabled])", timeout=30_000)
        first = canvas_url(page, "#interp-canvas")
        page.fill("#interp-t", "8")
        assert canvas_url(page, "#interp-canvas") != first

        # a part's sliders: PCA in the part's rows, computed on demand
        page.click("#extras summary:has-text('Attributes')")
        page.select_option("#attr-part", "hair")
        page.wait_for_selector("#part-attributes input[data-name='hair.pca_0']", timeout=30_000)
        page.wait_for_function("() => document.getElementById('attr-latency').textContent.includes('server')",
                               timeout=30_000)
        neutral = canvas_url(page, "#attr-canvas")
        page.fill("#part-attributes input[data-name='hair.pca_0']", "8")
        changed_from(page, "#attr-canvas", neutral)

        # an upload goes through the model's encoder and becomes the source: the hair swap applies to it
        rng = np.random.default_rng(5)
        photo = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(photo, format="JPEG")
        uploads = page.locator("#uploads .thumb").count()
        updates = int(page.eval_on_selector("#result-canvas", "c => Number(c.dataset.updates)"))
        page.click("#slot-source")
        page.set_input_files("#upload-input", files=[{"name": "photo.jpg", "mimeType": "image/jpeg",
                                                      "buffer": photo.getvalue()}])
        page.wait_for_function(f"() => document.querySelectorAll('#uploads .thumb').length > {uploads}",
                               timeout=30_000)
        page.wait_for_function(
            f"() => Number(document.getElementById('result-canvas').dataset.updates) > {updates}", timeout=30_000
        )
        wait_idle(page)
        assert page.evaluate("() => state.source.id") == page.eval_on_selector("#uploads .thumb", "b => b.dataset.id")
        assert page.eval_on_selector("#result-canvas", "c => c.dataset.kind") == "edit"
        page.wait_for_function("""() => { const c = document.getElementById('source-seg');
            return !c.hidden && c.dataset.shown === state.source.id; }""", timeout=30_000)
        assert "upload failed" not in (page.text_content("#message-text") or "")
        assert not errors, errors
    finally:
        page.close()
