"""The editing library (`stylemapgan.editing`): local-edit edge cases in both modes, the encode cache, masks,
shifts, feathering, mixing, interpolation, generation, projection and direction files, on real checkpoints."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from stylemapgan.checkpoint import fresh_checkpoint, save_checkpoint
from stylemapgan.config import get_preset
from stylemapgan.editing import (
    Direction,
    EditingError,
    Editor,
    ProjectionOptions,
    RectangleMask,
    frame_alphas,
    load_directions,
    parse_mask,
    parse_seeds,
    parse_shift,
    pca_directions,
    rectangle_mask,
    sample_stylemaps,
    save_directions,
    sefa_directions,
)
from stylemapgan.editing.directions import apply_direction
from stylemapgan.editing.masks import FileMask, PartMask, feather, pool_avg_threshold, pool_max, shift_and_zero
from stylemapgan.networks import Encoder, Generator
from stylemapgan.runtime import MEAN_STYLEMAP_COUNT, TorchRunner

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _checkpoint(tmp_path_factory: pytest.TempPathFactory, preset: str) -> Path:
    path = tmp_path_factory.mktemp(preset) / f"{preset}.safetensors"
    save_checkpoint(path, fresh_checkpoint(get_preset(preset).model, 7, "test"))
    return path


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory, "tiny")


@pytest.fixture(scope="module")
def cpu32_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory, "cpu-32")


@pytest.fixture()
def tiny(tiny_path: Path) -> Editor:
    return Editor.from_checkpoint(tiny_path)


def _images(n: int, size: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("preset", ["tiny", "cpu-32"])
@pytest.mark.parametrize("mode", ["w", "w_plus"])
def test_empty_mask_is_source_and_full_mask_is_reference(
    preset: str, mode: str, tiny_path: Path, cpu32_path: Path
) -> None:
    editor = Editor.from_checkpoint(tiny_path if preset == "tiny" else cpu32_path)
    size = editor.size
    source, reference = _images(2, size, 1)
    src, ref = editor.encode(source), editor.encode(reference)
    recon_src, recon_ref = editor.reconstruct(src), editor.reconstruct(ref)
    assert (recon_src - recon_ref).abs().max() > 0.01  # the test can tell them apart
    empty, full = torch.zeros(size, size), torch.ones(size, size)
    for feather_px in (0.0, 3.0):
        out = editor.local_edit(src, [ref], [empty], mode=mode, feather_px=feather_px)
        assert torch.equal(out, recon_src)
        out = editor.local_edit(src, [ref], [full], mode=mode, feather_px=feather_px)
        torch.testing.assert_close(out, recon_ref, atol=1e-5, rtol=0)
    # strength 0 with a full mask is the source; frames run from source to reference
    assert torch.equal(editor.local_edit(src, [ref], [full], mode=mode, alphas=0.0), recon_src)
    frames = editor.local_edit(src, [ref], [full], mode=mode, alphas=frame_alphas(3))
    assert frames.shape == (3, 3, size, size)
    torch.testing.assert_close(frames[0], recon_src[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(frames[-1], recon_ref[0], atol=1e-5, rtol=0)


def test_partial_mask_changes_inside_more_than_outside(cpu32_path: Path) -> None:
    editor = Editor.from_checkpoint(cpu32_path)
    source, reference = _images(2, 32, 2)
    src, ref = editor.encode(source), editor.encode(reference)
    mask = rectangle_mask(RectangleMask(0, 0, 16, 32), 32)  # left half
    for mode in ("w", "w_plus"):
        diff = (editor.local_edit(src, [ref], [mask], mode=mode) - editor.reconstruct(src)).abs().mean(1)[0]
        assert diff[:, :8].mean() > 2 * diff[:, 24:].mean(), mode


def test_encoder_runs_once_per_distinct_image(tiny: Editor) -> None:
    calls: list[int] = []
    tiny.encoder.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    a, b, c = _images(3, 16, 3)
    mask = torch.ones(16, 16)
    tiny.local_edit(a, [b], [mask])  # encodes a and b
    tiny.local_edit(a, [b, c], [mask, mask], mode="w_plus")  # only c is new
    tiny.local_edit(a.clone(), [b], [mask], alphas=[0.0, 0.5, 1.0])  # same content, new tensor: cached
    tiny.reconstruct(c)
    assert sum(calls) == 3
    info = tiny.cache_info()
    assert (info.misses, info.encoder_images) == (3, 3)
    assert tiny.encode(a) == tiny.encode(a.clone()) != tiny.encode(b)
    assert sum(calls) == 3
    tiny.encode_many(torch.stack([a, b, c, a]))  # a batch of cached images: no encoder call
    assert sum(calls) == 3


def test_cache_evicts_least_recent_and_handles_fail_clearly(tiny_path: Path) -> None:
    editor = Editor.from_checkpoint(tiny_path, cache_size=2)
    a, b, c = _images(3, 16, 4)
    ka, kb = editor.encode(a), editor.encode(b)
    editor.stylemap(ka)  # a is now the most recent
    editor.encode(c)  # evicts b
    editor.stylemap(ka)
    with pytest.raises(EditingError, match="evicted"):
        editor.stylemap(kb)
    assert editor.encode(b) == kb  # encoding again restores it


def test_masks_pool_shift_and_feather() -> None:
    dot = torch.zeros(1, 1, 32, 32)
    dot[..., 5, 5] = 1
    assert pool_max(dot, 8)[0, 0, 1, 1] == 1  # any pixel reaches the cell
    assert pool_avg_threshold(dot, 8).sum() == 0  # the demo's average + 0.5 threshold drops it
    x = torch.arange(16.0).view(1, 1, 4, 4)
    shifted = shift_and_zero(x, 1, -1)
    assert torch.equal(shifted[0, 0, :3, 1:], x[0, 0, 1:, :3])
    assert shifted[0, 0, :, 0].abs().sum() == 0 and shifted[0, 0, 3].abs().sum() == 0  # wrapped part zeroed
    half = torch.zeros(1, 1, 32, 32)
    half[..., :16] = 1
    soft = feather(half, 6)
    assert 0 < soft[0, 0, 0, 15] < 1 and soft[0, 0, 0, 0] == 1 and soft[0, 0, 0, 31] == 0
    assert torch.equal(feather(torch.ones(1, 1, 8, 8), 10), torch.ones(1, 1, 8, 8))


def test_blend_weights_shift_per_resolution(cpu32_path: Path) -> None:
    editor = Editor.from_checkpoint(cpu32_path)
    mask = rectangle_mask(RectangleMask(0, 0, 8, 8), 32)
    weights = editor.blend_weights(mask, "w_plus", shift=(8, 4))
    assert [w.shape[-1] for w in weights] == editor.config.style_resolutions
    top = weights[-1][0, 0]
    assert top.sum() == 64 and top[4:12, 8:16].sum() == 64  # moved by (8, 4) pixels at 32 x 32
    coarse = editor.blend_weights(mask, "w", shift=(8, 4))[0][0, 0]  # 8 x 8 stylemap: 4-pixel cells
    assert coarse.sum() == 4 and coarse[1:3, 2:4].sum() == 4


def test_references_paste_in_order_with_own_masks(tiny: Editor) -> None:
    images = _images(4, 16, 5)
    src, *refs = [tiny.encode(img) for img in images]
    full = torch.ones(16, 16)
    out = tiny.local_edit(src, refs, [full, full, full], mode="w_plus")
    torch.testing.assert_close(out, tiny.reconstruct(refs[-1]), atol=1e-5, rtol=0)
    empty = torch.zeros(16, 16)
    out = tiny.local_edit(src, refs, [full, empty, empty], mode="w")
    torch.testing.assert_close(out, tiny.reconstruct(refs[0]), atol=1e-5, rtol=0)
    with pytest.raises(EditingError, match="2 mask"):
        tiny.local_edit(src, refs, [full, full])
    with pytest.raises(EditingError, match="shift"):
        tiny.local_edit(src, refs, [full] * 3, shifts=[(0, 0)])
    with pytest.raises(EditingError, match="mode"):
        tiny.local_edit(src, refs, [full] * 3, mode="wplus")
    with pytest.raises(EditingError, match=r"\[0, 1\]"):
        tiny.local_edit(src, refs, [full] * 3, alphas=1.5)


def test_transplant_mix_interpolate(tiny: Editor) -> None:
    a, b = (tiny.encode(img) for img in _images(2, 16, 6))
    count = len(tiny.config.style_resolutions)
    assert torch.equal(tiny.mix(a, b, 0), tiny.reconstruct(b))
    assert torch.equal(tiny.mix(a, b, count), tiny.reconstruct(a))
    assert not torch.equal(tiny.mix(a, b, 2), tiny.reconstruct(b))
    frames = tiny.interpolate(a, b, 4)
    torch.testing.assert_close(frames[0], tiny.reconstruct(a)[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(frames[-1], tiny.reconstruct(b)[0], atol=1e-5, rtol=0)
    moved = tiny.transplant(a, b, RectangleMask(0, 0, 8, 8), (8, 8))
    expected = tiny.local_edit(a, [b], [rectangle_mask(RectangleMask(0, 0, 8, 8), 16)], shifts=[(8, 8)])
    assert torch.equal(moved, expected)


def test_generate_seeds_and_truncation(tiny: Editor) -> None:
    images, stylemaps = tiny.generate([3, 1], trunc=1.0)
    _, alone = tiny.generate([1])
    assert images.shape == (2, 3, 16, 16)
    torch.testing.assert_close(stylemaps[1:], alone)  # a seed's image does not depend on its batch
    _, centred = tiny.generate([3, 1], trunc=0.0)
    torch.testing.assert_close(centred, tiny.mean_stylemap().expand(2, -1, -1, -1))
    assert tiny.mean_stylemap() is tiny.mean_stylemap()  # cached per model object
    assert parse_seeds("0-3,12, 2") == [0, 1, 2, 3, 12]
    for bad in ("3-1", "a", "1,,2"):
        with pytest.raises(EditingError, match="seeds"):
            parse_seeds(bad)


def test_projection_methods(tiny: Editor) -> None:
    targets = _images(2, 16, 8)
    encoded, _ = tiny.project(targets, "encoder")
    options = ProjectionOptions(steps=15, lr=0.05)
    optimised, _ = tiny.project(targets, "optimize", options)
    hybrid, keys = tiny.project(targets, "hybrid", options)
    assert optimised.history[-1] < optimised.history[0]
    assert (hybrid.mse <= encoded.mse + 1e-6).all()
    torch.testing.assert_close(tiny.stylemap(keys[1])[0], hybrid.stylemaps[1])
    tuned, _ = tiny.project(targets[:1], "hybrid", ProjectionOptions(steps=5, pti_steps=10, pti_lr=1e-2))
    assert tuned.tuned_generators is not None and float(tuned.mse[0]) < float(hybrid.mse[0])
    with pytest.raises(EditingError, match="method"):
        tiny.project(targets, "sgd")


def test_refine_continues_from_the_current_stylemap(tiny: Editor) -> None:
    target = _images(1, 16, 11)
    handle = tiny.encode(target)
    encoder_mse = float((tiny.reconstruct(handle).clamp(-1, 1) - target).square().mean())
    refined = tiny.refine(handle, target, ProjectionOptions(steps=20, lr=0.05, perceptual_weight=0.0))
    assert refined.steps == 20
    assert refined.mse_before == pytest.approx(encoder_mse, abs=1e-5)
    assert refined.mse_after < 0.9 * refined.mse_before
    rendered = tiny.decode(tiny.stylemap(refined.handle)).clamp(-1, 1)
    assert float((rendered - target).square().mean()) == pytest.approx(refined.mse_after, abs=1e-5)
    # from the refined handle it starts where the last one ended (the hybrid projection from E would not)
    again = tiny.refine(refined.handle, target, ProjectionOptions(steps=5, lr=0.05, perceptual_weight=0.0))
    assert again.mse_before == pytest.approx(refined.mse_after, abs=1e-6) and again.mse_after <= again.mse_before
    # a time limit stops after the first step; the stylemap kept is still the best seen
    quick = tiny.refine(handle, target, ProjectionOptions(steps=50, lr=0.05, perceptual_weight=0.0, time_limit_s=0.0))
    assert quick.steps == 1 and quick.mse_after <= quick.mse_before
    assert refined.improved
    # a step that only makes it worse: the start is kept, and says so
    worse = tiny.refine(handle, target, ProjectionOptions(steps=2, lr=1e4, perceptual_weight=0.0))
    assert not worse.improved and worse.mse_after == worse.mse_before == pytest.approx(encoder_mse, abs=1e-5)
    assert torch.equal(tiny.stylemap(worse.handle), tiny.stylemap(handle))
    with pytest.raises(EditingError, match="image"):
        tiny.refine(handle, _images(1, 8, 0), ProjectionOptions(steps=1))


def test_projection_with_lpips(cpu32_path: Path) -> None:
    from stylemapgan.losses import build_perceptual

    try:
        perceptual = build_perceptual("stlpips-alex")
    except (FileNotFoundError, ImportError) as exc:
        pytest.skip(f"LPIPS weights unavailable: {exc}")
    editor = Editor.from_checkpoint(cpu32_path)
    result, _ = editor.project(_images(1, 32, 9), "hybrid", ProjectionOptions(steps=2), perceptual)
    assert result.perceptual is not None and torch.isfinite(result.perceptual).all()


def test_directions_unit_norm_roundtrip_and_masked_apply(tiny: Editor, tmp_path: Path) -> None:
    shape = tiny.config.stylemap_shape
    sefa = sefa_directions(tiny.generator, 3)
    pca = pca_directions(sample_stylemaps(tiny.generator, 300), 2)
    for d in [*sefa, *pca]:
        assert d.vector.shape == shape
        assert abs(float(d.vector.norm()) - 1) < 1e-5
    # SeFa directions are constant over the stylemap and orthogonal
    assert torch.allclose(sefa[0].vector, sefa[0].vector[:, :1, :1].expand(shape))
    assert abs(float((sefa[0].vector * sefa[1].vector).sum())) < 1e-5
    path = tmp_path / "d.safetensors"
    save_directions(path, [*sefa, *pca, Direction("custom", sefa[0].vector, {"kind": "test"})], {"model": "x"})
    loaded = load_directions(path, shape)
    assert set(loaded) == {"sefa_0", "sefa_1", "sefa_2", "pca_0", "pca_1", "custom"}
    torch.testing.assert_close(loaded["pca_1"].vector, pca[1].vector)
    with pytest.raises(EditingError, match="shape"):
        load_directions(path, (3, 4, 4))
    stylemap = torch.zeros(1, *shape)
    cells = torch.zeros(1, 1, 4, 4)
    cells[..., :2, :] = 1
    moved = apply_direction(stylemap, sefa[0].vector, torch.tensor([2.0]), cells)
    assert moved[..., 2:, :].abs().sum() == 0 and moved[..., :2, :].abs().sum() > 0
    image = tiny.encode(_images(1, 16, 10)[0])
    outs = tiny.apply_direction(image, sefa[0].vector, [0.0, 3.0])
    torch.testing.assert_close(outs[:1], tiny.decode(tiny.stylemap(image)), atol=1e-5, rtol=0)
    assert not torch.equal(outs[0], outs[1])


def test_parse_masks_and_shifts(tmp_path: Path) -> None:
    assert parse_mask("1,2,3,4") == RectangleMask(1, 2, 3, 4)
    assert parse_mask("hair") == PartMask(("hair",))
    assert parse_mask("part:hair+eyes") == PartMask(("hair", "eyes"))
    f = tmp_path / "m.png"
    f.write_bytes(b"x")
    assert parse_mask(str(f)) == FileMask(f)
    with pytest.raises(EditingError, match="four integers"):
        parse_mask("1,2,3")
    with pytest.raises(EditingError, match="x0 < x1"):
        parse_mask("5,0,1,4")
    with pytest.raises(EditingError, match="no such file"):
        parse_mask(str(tmp_path / "missing.png"))
    with pytest.raises(EditingError, match="inside"):
        rectangle_mask(RectangleMask(0, 0, 40, 4), 32)
    assert parse_shift("-8,4") == (-8, 4)
    with pytest.raises(EditingError, match="shift"):
        parse_shift("8")


class RecordingRunner(TorchRunner):
    """Our eager fp32 runner, recording which of its methods ran, and every network module whose forward ran
    while none of them was running: a path that bypasses the runner."""

    def __init__(self, generator: Generator, encoder: Encoder) -> None:
        super().__init__(generator, encoder)
        self.calls: set[str] = set()
        self.bypasses: list[str] = []
        self._depth = 0
        for prefix, net in (("generator", generator), ("encoder", encoder)):
            for name, module in net.named_modules():
                module.register_forward_pre_hook(self._outside_check(f"{prefix}.{name}".rstrip(".")))

    def _outside_check(self, name: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any) -> None:
            if self._depth == 0:
                self.bypasses.append(name)
        return hook

    @contextlib.contextmanager
    def _inside(self, method: str) -> Iterator[None]:
        self.calls.add(method)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    def take(self) -> tuple[set[str], list[str]]:
        """The methods called and the bypasses since the last take."""
        out = (self.calls, self.bypasses)
        self.calls, self.bypasses = set(), []
        return out

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        with self._inside("encode"):
            return super().encode(images)

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        with self._inside("mapping"):
            return super().mapping(z)

    def decode(self, stylemaps: torch.Tensor) -> torch.Tensor:
        with self._inside("decode"):
            return super().decode(stylemaps)

    def resize(self, stylemaps: torch.Tensor) -> list[torch.Tensor]:
        with self._inside("resize"):
            return super().resize(stylemaps)

    def modulations(self, styles: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        with self._inside("modulations"):
            return super().modulations(styles)

    def synthesize(self, mods: Sequence[torch.Tensor]) -> torch.Tensor:
        with self._inside("synthesize"):
            return super().synthesize(mods)

    def synthesize_styles(self, styles: Sequence[torch.Tensor]) -> torch.Tensor:
        with self._inside("synthesize_styles"):
            return super().synthesize_styles(styles)

    def mean_stylemap(self, count: int = MEAN_STYLEMAP_COUNT, seed: int = 0) -> torch.Tensor:
        with self._inside("mean_stylemap"):
            return super().mean_stylemap(count, seed)

    @contextlib.contextmanager
    def eager_fp32(self) -> Iterator[Generator]:
        with self._inside("eager_fp32"), super().eager_fp32() as generator:
            yield generator

    def run_torch(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        with self._inside("run_torch"):
            return super().run_torch(fn, *args, **kwargs)


def test_every_editor_operation_goes_through_the_runner(tiny_path: Path) -> None:
    editor = Editor.from_checkpoint(tiny_path)
    runner = editor.runner = RecordingRunner(editor.generator, editor.encoder)
    assert editor.mean_stylemap_source != "checkpoint"  # the truncation centre is computed, through the runner
    size = editor.size
    images = _images(2, size, 21)
    mask = rectangle_mask(RectangleMask(3, 2, 11, 13), size)
    handles: list[str] = []
    direction = sefa_directions(editor.generator, 1)[0].vector  # weights only: no forward
    options = ProjectionOptions(steps=2, perceptual_weight=0.0)
    operations: list[tuple[str, Callable[[], object], set[str]]] = [
        ("encode", lambda: handles.extend(editor.encode(image) for image in images), {"encode"}),
        ("reconstruct", lambda: editor.reconstruct(handles[0]), {"resize", "synthesize_styles"}),
        ("decode", lambda: editor.decode(editor.stylemap(handles[1])), {"decode"}),
        ("w edit", lambda: editor.local_edit(handles[0], [handles[1]], [mask], mode="w"), {"decode"}),
        ("w_plus reference edit", lambda: editor.local_edit(handles[0], [handles[1]], [mask], mode="w_plus",
                                                            fast=False), {"resize", "synthesize_styles"}),
        ("w_plus fast edit", lambda: editor.local_edit(handles[0], [handles[1]], [mask], mode="w_plus", fast=True),
         {"modulations", "run_torch", "synthesize"}),
        ("mix", lambda: editor.mix(handles[0], handles[1], 1), {"synthesize_styles"}),
        ("interpolate", lambda: editor.interpolate(handles[0], handles[1], 3), {"decode"}),
        ("transplant", lambda: editor.transplant(handles[0], handles[1], RectangleMask(0, 0, 8, 8), (4, 4)),
         {"decode"}),
        ("direction", lambda: editor.apply_direction(handles[0], direction, [1.0, 2.0]), {"decode"}),
        ("generate", lambda: editor.generate([0, 4], trunc=0.5), {"mapping", "mean_stylemap", "eager_fp32", "decode"}),
        ("project encoder", lambda: editor.project(images, "encoder"), {"eager_fp32", "decode"}),
        ("project hybrid", lambda: editor.project(images, "hybrid", options), {"eager_fp32", "decode"}),
        ("refine", lambda: editor.refine(handles[0], images[0], options), {"eager_fp32", "decode"}),
    ]
    for name, operation, expected in operations:
        operation()
        calls, bypasses = runner.take()
        assert not bypasses, f"{name}: networks ran outside the runner: {sorted(set(bypasses))[:5]}"
        assert calls == expected, name
    editor.generator.decode(editor.stylemap(handles[0]))  # the check can fail: a direct call is seen
    assert "generator.resizer" in runner.take()[1]


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """dB, images in [-1, 1] (peak-to-peak 2)."""
    return 10 * math.log10(4 / float((a - b).square().mean()))


def test_bf16_editor_applies_to_generate_projection_and_refine_renders(cpu32_path: Path) -> None:
    """bf16 reaches the mapping of `generate`, the w-mode reference edit and the renders of `project` and
    `refine` (they differ from fp32, closely); refine's optimisation stays fp32 (the same stylemap results)."""
    fp32 = Editor.from_checkpoint(cpu32_path)
    bf16 = Editor(fp32.generator, fp32.encoder, dtype="bf16")
    (fp_images, fp_maps), (bf_images, bf_maps) = fp32.generate([0, 3], trunc=0.7), bf16.generate([0, 3], trunc=0.7)
    assert bf_maps.dtype == bf_images.dtype == torch.float32
    relative = float((bf_maps - fp_maps).abs().max() / fp_maps.abs().max())
    assert 0 < relative < 0.03  # the mapping ran in bf16
    assert not torch.equal(bf_images, fp_images) and _psnr(bf_images, fp_images) > 33
    size = fp32.size
    images = _images(2, size, 22)
    src, ref = fp32.encode(images[0]), fp32.encode(images[1])
    same = [bf16.add_stylemap(fp32.stylemap(h)) for h in (src, ref)]  # the same stylemaps: only rendering differs
    mask = rectangle_mask(RectangleMask(8, 8, 24, 31), size)
    for mode in ("w", "w_plus"):
        a = fp32.local_edit(src, [ref], [mask], mode=mode, fast=False)
        b = bf16.local_edit(same[0], [same[1]], [mask], mode=mode, fast=False)
        assert not torch.equal(a, b) and _psnr(a, b) > 35, mode
    fp_projected, bf_projected = fp32.project(images, "encoder")[0], bf16.project(images, "encoder")[0]
    assert not torch.equal(fp_projected.images, bf_projected.images)
    assert _psnr(fp_projected.images, bf_projected.images) > 35
    options = ProjectionOptions(steps=10, perceptual_weight=0.0)
    fp_refined, bf_refined = fp32.refine(src, images[0], options), bf16.refine(same[0], images[0], options)
    assert fp_refined.improved and bf_refined.improved
    assert 0 < abs(fp_refined.mse_before - bf_refined.mse_before) < 0.01 * fp_refined.mse_before  # bf16 renders
    assert torch.equal(fp32.stylemap(fp_refined.handle), bf16.stylemap(bf_refined.handle))  # fp32 optimisation
