"""Every command in the README's bash blocks runs, in README order, in a fresh folder with the inputs it names.

The README is parsed, not copied: `RUNS` maps each README command (comments stripped, continuation lines joined)
to how it runs here. `AS_WRITTEN` runs it verbatim; a string is the same command with only its sizes made small
(iterations, counts, presets of multi-GB models), so a README edit that adds or changes a command fails this test
until the table says how it runs. Inputs the README assumes (`a.jpg`, `~/photos`, an official `001000.pt`, a
`DATASET`, ...) are made first; outputs of earlier commands feed later ones as in the README.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from face_fixtures import write_face_dataset
from official_reference import official_channel_table, official_layout, random_official_state
from photo_fixtures import photo_path, two_faces

README = Path(__file__).resolve().parents[1] / "README.md"
AS_WRITTEN = ""
NOT_RUN = None  # documented why below; only `make` targets that this very suite is run by or wraps

RUNS: dict[str, str | None] = {
    "make demo": NOT_RUN,  # = make install, then `stylemapgan serve` (run below)
    "make test": NOT_RUN,  # this suite
    "stylemapgan info --preset paper-256": AS_WRITTEN,
    "stylemapgan init --preset paper-256 out.safetensors --seed 0":
        "stylemapgan init --preset tiny out.safetensors --seed 0",  # paper-256 with EMAs and D is ~900 MB
    "stylemapgan convert 001000.pt celeba_hq.safetensors": AS_WRITTEN,
    "stylemapgan info celeba_hq.safetensors": AS_WRITTEN,
    "stylemapgan prepare ~/photos data/photos --size 256 --test 500":
        "stylemapgan prepare ~/photos data/photos --size 256 --test 2",
    "stylemapgan datasets build cartoon-faces data/cartoon-faces-64 --size 64":
        "stylemapgan datasets build cartoon-faces data/cartoon-faces-64 --size 64 --count 24 --test-count 8",
    "stylemapgan datasets build emoji data/emoji": "stylemapgan datasets build emoji data/emoji --count 8",
    "stylemapgan datasets build fashion-mnist data/fmnist":
        "stylemapgan datasets build fashion-mnist data/fmnist --count 20 --test-count 10",
    "stylemapgan datasets info data/cartoon-faces-64": AS_WRITTEN,
    "stylemapgan project photos/ --outdir out/proj --method hybrid --steps 100":
        "stylemapgan project photos/ --outdir out/proj --method hybrid --steps 3",
    "stylemapgan generate --seeds 0-7,12 --trunc 0.7 --outdir out/gen": AS_WRITTEN,
    "stylemapgan edit --source test:0 --reference test:5 --mask hair --outdir out/hair": AS_WRITTEN,
    "stylemapgan edit --source a.jpg --reference b.png --mask m.png --shift=-8,4 --reference c.png --mask 0,0,32,32 "
    "--shift=0,0 --mode w_plus --frames 16 --feather 4 --outdir out/edit": AS_WRITTEN,
    "stylemapgan clusters fit --ckpt cartoon-faces --k 12 --out cartoon-clusters.safetensors":
        "stylemapgan clusters fit --ckpt cartoon-faces --k 12 --out cartoon-clusters.safetensors --samples 4",
    "stylemapgan clusters show --ckpt cartoon-clusters.safetensors --outdir out/clusters": AS_WRITTEN,
    "stylemapgan clusters name --ckpt cartoon-clusters.safetensors 10=hair 1=eyes": AS_WRITTEN,
    "stylemapgan edit --ckpt cartoon-clusters.safetensors --source a.jpg --reference b.png --mask cluster:hair "
    "--mode w_plus --outdir out/edit-cluster": AS_WRITTEN,
    "python benchmarks/bench_clusters_iou.py --ckpt cartoon-faces --data data/cartoon-faces-64 --k 12":
        "python benchmarks/bench_clusters_iou.py --ckpt cartoon-faces --data data/cartoon-faces-64 --k 4 "
        "--samples 4",
    "stylemapgan interpolate a.jpg b.jpg --frames 8 --video out/ab.gif --outdir out/lerp": AS_WRITTEN,
    "stylemapgan mix a.jpg b.jpg --split coarse --outdir out/mix": AS_WRITTEN,
    "stylemapgan transplant --source a.jpg --reference b.png --rect 0,0,32,32 --to 16,8 --outdir out/tp": AS_WRITTEN,
    "stylemapgan directions --data data/cartoon-faces-64 --attribute has_glasses --pca 5 --sefa 5 "
    "--out dirs.safetensors": AS_WRITTEN,
    "stylemapgan attribute a.jpg --directions dirs.safetensors --attribute has_glasses --strength=-3,0,3 "
    "--outdir out/attr": AS_WRITTEN,
    "stylemapgan train --data data/cartoon-faces-64 --outdir runs/sem --preset semantic-cpu-64 --iters 20000 "
    "--batch 16": "stylemapgan train --data data/cartoon-faces-64 --outdir runs/sem --preset semantic-cpu-64 "
    "--iters 1 --batch 2",
    "stylemapgan train-encoder --ckpt runs/sem --data data/cartoon-faces-64 --outdir runs/sem-enc --iters 20000":
        "stylemapgan train-encoder --ckpt runs/sem --data data/cartoon-faces-64 --outdir runs/sem-enc --iters 1 "
        "--batch 2 --perceptual none",
    "stylemapgan project test:0 test:1 --ckpt runs/sem-enc --data data/cartoon-faces-64 --method hybrid --steps 400 "
    "--pti-steps 100 --outdir out/sem-proj": "stylemapgan project test:0 test:1 --ckpt runs/sem-enc --data "
    "data/cartoon-faces-64 --method hybrid --steps 2 --pti-steps 1 --lpips none --outdir out/sem-proj",
    "stylemapgan edit --ckpt runs/sem-enc --data data/cartoon-faces-64 --source test:0 --reference test:1 --part hair "
    "--shape-only --reference test:2 --part eyes --part mouth --texture-only --outdir out/sem-edit": AS_WRITTEN,
    "stylemapgan edit --ckpt runs/sem-enc --source out/sem-proj/test0.npy --remove-part glasses "
    "--outdir out/sem-remove": AS_WRITTEN,
    "stylemapgan interpolate test:0 test:1 --ckpt runs/sem-enc --data data/cartoon-faces-64 --part hair --frames 8 "
    "--outdir out/sem-lerp": AS_WRITTEN,
    "stylemapgan mix test:0 test:1 --ckpt runs/sem-enc --data data/cartoon-faces-64 --split shape "
    "--outdir out/sem-mix": AS_WRITTEN,
    "stylemapgan directions --ckpt runs/sem-enc --data data/cartoon-faces-64 --attribute has_glasses --part glasses "
    "--pca 3 --sefa 3 --out sem-dirs.safetensors": AS_WRITTEN,
    "stylemapgan attribute test:0 --ckpt runs/sem-enc --data data/cartoon-faces-64 --directions sem-dirs.safetensors "
    "--attribute has_glasses --part glasses --strength=-3,0,3 --outdir out/sem-attr": AS_WRITTEN,
    "stylemapgan train --data DATASET --outdir runs/faces --preset cpu-64 --iters 20000 --batch 16":
        "stylemapgan train --data DATASET --outdir runs/faces --preset cpu-64 --iters 2 --batch 2 --perceptual none",
    "stylemapgan train --data DATASET --resume runs/faces": AS_WRITTEN,
    "torchrun --nproc_per_node=8 -m stylemapgan train --data DATASET --outdir runs/ffhq --preset paper-256 "
    "--batch 16": "torchrun --nproc_per_node=2 -m stylemapgan train --data DATASET --outdir runs/ffhq --preset tiny "
    "--batch 2 --iters 1 --perceptual none",
    "stylemapgan train --data DATASET --outdir runs/mine --init-from cartoon-faces --iters 100 --batch 8":
        "stylemapgan train --data DATASET --outdir runs/mine --init-from cartoon-faces --iters 1 --batch 2 "
        "--perceptual none",
    "stylemapgan serve": AS_WRITTEN,
    "stylemapgan serve --ckpt my.safetensors --gallery data/my-dataset --directions dirs.safetensors": AS_WRITTEN,
    "stylemapgan eval --data data/cartoon-faces-64 --metrics fid,kid,fid_lerp,recon,local_edit --num 1000 "
    "--out eval/report.json": "stylemapgan eval --data data/cartoon-faces-64 --metrics fid,kid,fid_lerp,recon,"
    "local_edit --num 8 --out eval/report.json",
    "stylemapgan compare --ckpt cartoon-faces --ckpt cartoon-faces-semantic --data data/cartoon-faces-64 --num 200 "
    "--steps 20 --threads 2 --outdir docs/compare": "stylemapgan compare --ckpt cartoon-faces --ckpt "
    "cartoon-faces-semantic --data data/cartoon-faces-64 --num 4 --steps 1 --repeats 2 --threads 1 "
    "--outdir docs/compare",  # 1 thread: 2 stall on a busy CPU
    "stylemapgan edit --ckpt cartoon-faces-semantic --source test:0 --reference test:5 --part eyes "
    "--outdir out/sem-eyes": AS_WRITTEN,
    "stylemapgan project test:0 test:1 test:2 test:3 test:4 test:5 --outdir out/proj": AS_WRITTEN,
    "stylemapgan project test:0 test:1 test:2 test:3 test:4 test:5 --method hybrid --steps 100 --lpips none "
    "--outdir out/refined": "stylemapgan project test:0 test:1 test:2 test:3 test:4 test:5 --method hybrid "
    "--steps 3 --lpips none --outdir out/refined",
    "stylemapgan edit --source test:0 --reference test:1 --mask hair --mode w_plus --outdir out/edit-hair":
        AS_WRITTEN,
    "stylemapgan edit --source test:0 --reference test:5 --mask eyes --mode w_plus --outdir out/edit-eyes":
        AS_WRITTEN,
    "stylemapgan edit --source test:0 --reference test:1 --mask mouth --mode w_plus --outdir out/edit-mouth":
        AS_WRITTEN,
    "stylemapgan interpolate test:0 test:5 --frames 8 --outdir out/lerp": AS_WRITTEN,
    "stylemapgan attribute test:0 --directions src/stylemapgan/assets/models/cartoon-faces-directions.safetensors "
    "--attribute has_glasses --strength=-5,0,10,20 --outdir out/attr": AS_WRITTEN,
    "stylemapgan align group.jpg --outdir faces --size 256": AS_WRITTEN,
    "stylemapgan edit --ckpt celeba_hq.safetensors --source group.jpg --reference portrait.jpg "
    "--mask landmarks:eyes+mouth --align --outdir out/photo": AS_WRITTEN,
    "stylemapgan project group.jpg --align --outdir out/photo-proj": AS_WRITTEN,
    "stylemapgan paste group.jpg --face faces/group_face0.png faces/group_face0.json --out group-back.png":
        AS_WRITTEN,
    "stylemapgan bench --out bench.json": "stylemapgan bench --out bench.json --config shipped --no-throughput "
    "--no-training --repeats 1",  # every default config with training peaks at several GB and takes minutes
    "stylemapgan export-onnx --ckpt M --outdir onnx/": AS_WRITTEN,
    "python benchmarks/bench_networks.py": "python benchmarks/bench_networks.py --presets tiny --repeats 1",
}


def readme_commands(text: str) -> list[str]:
    """Commands of every ```bash block: continuation lines joined, trailing comments dropped."""
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        pending = ""
        for raw in block.splitlines():
            line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
            if pending:
                line = pending + " " + line.strip()
                pending = ""
            if line.endswith("\\"):
                pending = line[:-1].rstrip()
                continue
            if line.strip():
                commands.append(" ".join(line.split()))
    return commands


def test_every_readme_command_is_in_the_table() -> None:
    commands = readme_commands(README.read_text())
    assert len(commands) == len(set(commands)), "a README command appears twice"
    assert set(commands) == set(RUNS), (
        f"README commands without a row: {sorted(set(commands) - set(RUNS))}; "
        f"rows no longer in the README: {sorted(set(RUNS) - set(commands))}"
    )
    for written, run in RUNS.items():
        if run:  # a variant may change only sizes: the same program and subcommand
            words = [w for w in shlex.split(written) if not w.startswith("-")][:2]
            assert [w for w in shlex.split(run) if not w.startswith("-")][:2] == words, written


def _inputs(root: Path) -> None:
    """What the README's commands assume the user has."""
    rng = np.random.default_rng(0)
    for name, size in (("a.jpg", (300, 220)), ("b.jpg", (90, 120)), ("b.png", (64, 64)), ("c.png", (128, 96))):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / name)
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[10:40, 20:50] = 255
    Image.fromarray(mask).save(root / "m.png")
    for folder, (h, w) in (("photos", (80, 100)), ("home/photos", (270, 320))):
        (root / folder).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / folder / f"p{i}.jpg")
    two_faces(root / "group.jpg")  # real photos that ship in PyPI packages (tests/photo_fixtures.py)
    Image.open(photo_path("grace_hopper")).save(root / "portrait.jpg")
    write_face_dataset(root / "DATASET", size=64, count=6, train_count=4, seed=1)
    write_face_dataset(root / "data/my-dataset", size=64, count=5, train_count=0, seed=2)
    layout = official_layout(8, 4, official_channel_table(2), 16, 2, small_generator=True)  # the official
    gen = torch.Generator().manual_seed(0)  # channel table at 8 px: a small file in the official layout
    states = {net: random_official_state(net, layout[net], gen) for net in ("g_ema", "e_ema")}
    args = argparse.Namespace(size=8, latent_spatial_size=4, latent_channel_size=16, mapping_layer_num=2,
                              lr_mul=0.01, channel_multiplier=2, normalize_mode="LayerNorm", small_generator=True)
    torch.save({**states, "train_args": args}, root / "001000.pt")
    src = Path(__file__).resolve().parents[1] / "src"
    (root / "src").symlink_to(src)  # the README names the bundled directions by their path in the repo


def _env(root: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    cache = os.environ.get("STYLEMAPGAN_CACHE") or str(Path.home() / ".cache" / "stylemapgan")
    return {**os.environ, "HOME": str(root / "home"), "STYLEMAPGAN_CACHE": cache, "OMP_NUM_THREADS": "1",
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}


def _serve(argv: list[str], root: Path, env: dict[str, str]) -> None:
    """A server command: started on a free port, stopped once it prints its URL (and answers it)."""
    proc = subprocess.Popen([*argv, "--port", "0"], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if re.search(r"open http://127\.0\.0\.1:\d+/", line):
                return
        raise AssertionError("server did not start:\n" + "".join(lines))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_readme_commands_run_in_order(tmp_path: Path) -> None:
    if shutil.which("npm") is None and os.environ.get("CI", "").lower() != "true":
        pytest.skip("npm is not installed (the cartoon-faces and emoji builders need it)")
    _inputs(tmp_path)
    env = _env(tmp_path)
    (tmp_path / "M").symlink_to(tmp_path / "out.safetensors")  # `--ckpt M`: the model made by `init`
    from stylemapgan.models import resolve_checkpoint

    # `serve --ckpt my.safetensors ... --directions dirs.safetensors`: the model the directions were made for
    (tmp_path / "my.safetensors").symlink_to(resolve_checkpoint(None))
    for written in readme_commands(README.read_text()):
        run = RUNS[written]
        if run is NOT_RUN:
            continue
        command = run or written
        argv = shlex.split(command.replace("~/", f"{tmp_path / 'home'}/"))
        if argv[0] == "python":
            argv[0] = sys.executable
            argv[1] = str(Path(__file__).resolve().parents[1] / argv[1])
        if argv[:2] == ["stylemapgan", "serve"]:
            _serve(argv, tmp_path, env)
            continue
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{command}\nexit {proc.returncode}\n{proc.stderr[-3000:]}"
