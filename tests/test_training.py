"""The training objective on a tiny model, resume equality, 2 real processes, SIGTERM and NaN handling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from stylemapgan.checkpoint import load_checkpoint
from stylemapgan.config import get_preset
from stylemapgan.networks import Encoder
from stylemapgan.training.config import TrainConfig
from stylemapgan.training.run import TrainingRun, latest_checkpoint
from stylemapgan.training.trainer import Trainer, TrainingDiverged

sys.path.insert(0, str(Path(__file__).parent))
from train_script import SeededImages

TINY = get_preset("tiny").model
SCRIPT = str(Path(__file__).parent / "train_script.py")


def tiny_trainer(**changes: object) -> Trainer:
    cfg = TrainConfig(batch=4, perceptual="none", num_workers=0, d_reg_every=2).replace(**changes)
    return Trainer(TINY, cfg, SeededImages(16, TINY.size, 0))


def grads_of(module: torch.nn.Module) -> tuple[bool, bool]:
    """(some parameter has a non-zero gradient, every parameter's gradient is None)."""
    grads = [p.grad for p in module.parameters()]
    return any(g is not None and g.abs().sum() > 0 for g in grads), all(g is None for g in grads)


def test_each_step_updates_the_right_networks() -> None:
    t = tiny_trainer()
    real = t.next_batch()
    losses = t.generator_step()
    assert set(losses) == {"g_adv", "e_w_rec"}
    assert grads_of(t.generator)[0] and grads_of(t.encoder)[0] and grads_of(t.discriminator)[1]
    # E's latent loss sees only detached fakes: it must not touch G's mapping network
    assert all(p.grad is None or p.grad.abs().sum() > 0 for p in t.generator.mapping.parameters())

    for net in (t.generator, t.encoder, t.discriminator):
        net.zero_grad(set_to_none=True)
    losses = t.discriminator_step(real)
    assert set(losses) >= {"d_adv", "d_indomain"}
    assert grads_of(t.discriminator)[0] and grads_of(t.generator)[1] and grads_of(t.encoder)[1]

    t.discriminator.zero_grad(set_to_none=True)
    assert t.r1_step(real)["r1"] > 0
    assert grads_of(t.discriminator)[0] and grads_of(t.generator)[1]

    t.discriminator.zero_grad(set_to_none=True)
    losses = t.reconstruction_step(real)
    assert set(losses) == {"x_rec", "e_indomain"}  # this trainer has no LPIPS network
    assert grads_of(t.generator)[0] and grads_of(t.encoder)[0] and grads_of(t.discriminator)[1]
    # the reconstruction path never uses the mapping network
    assert all(p.grad is None for p in t.generator.mapping.parameters())


def test_full_iteration_losses_finite_and_ema_moves() -> None:
    t = tiny_trainer()
    before = [p.clone() for p in t.g_ema.parameters()]
    losses = [t.train_step() for _ in range(3)]
    assert "r1" in losses[0] and "r1" not in losses[1] and "r1" in losses[2]  # lazy R1 at i % 2 == 0
    assert all(torch.isfinite(torch.tensor(list(step.values()))).all() for step in losses)
    moved = [not torch.equal(a, b) for a, b in zip(before, t.g_ema.parameters(), strict=True)]
    assert any(moved)
    live = dict(t.generator.named_parameters())
    for name, p in t.g_ema.named_parameters():  # EMA lags behind the live weights
        if not torch.equal(p, live[name]):
            break
    else:
        pytest.fail("EMA equals the live generator")
    assert t.d_optim.param_groups[0]["lr"] == pytest.approx(0.002 * 2 / 3)
    assert t.d_optim.param_groups[0]["betas"][1] == pytest.approx(0.99 ** (2 / 3))


def test_perceptual_term_used_when_enabled_and_skipped_at_weight_zero() -> None:
    from stylemapgan.losses import build_perceptual

    lpips = build_perceptual("stlpips-alex")
    assert lpips is not None
    t = Trainer(TINY.replace(size=32, latent_spatial_size=8), TrainConfig(batch=2, perceptual="stlpips-alex",
                num_workers=0), SeededImages(8, 32, 0), perceptual=lpips)
    calls: list[int] = []
    lpips.register_forward_hook(lambda *_: calls.append(1))
    assert t.train_step()["perceptual"] > 0 and len(calls) == 1
    t.cfg = t.cfg.replace(lambda_perceptual=0.0)
    assert "perceptual" not in t.train_step() and len(calls) == 1


def test_terms_with_weight_zero_are_neither_computed_nor_logged() -> None:
    """With lambda_indomain_e = 0 the reconstruction step runs no D forward and logs no e_indomain, and E's
    gradient is that of the weighted MSE alone."""
    cfg = TrainConfig(batch=2, perceptual="none", num_workers=0, lambda_indomain_e=0.0, lambda_x_rec=3.0)
    t = Trainer(TINY, cfg, SeededImages(8, TINY.size, 0))
    real = t.next_batch()
    d_calls: list[int] = []
    hook = t.discriminator.register_forward_hook(lambda *_: d_calls.append(1))
    losses = t.reconstruction_step(real)
    assert set(losses) == {"x_rec"} and not d_calls
    t.cfg = TrainConfig(batch=2, perceptual="none", num_workers=0)  # official weight 1: D runs once
    assert set(t.reconstruction_step(real)) == {"x_rec", "e_indomain"} and len(d_calls) == 1
    hook.remove()
    assert "r1" not in tiny_trainer(r1_gamma=0.0, d_reg_every=1).train_step()  # no R1 step at gamma 0

    t, ref = (Trainer(TINY, cfg, SeededImages(8, TINY.size, 0)) for _ in range(2))
    t.reconstruction_step(real)
    (3.0 * F.mse_loss(ref.generator.decode(ref.encoder(real)), real)).backward()
    for got, want in zip(t.encoder.parameters(), ref.encoder.parameters(), strict=True):
        torch.testing.assert_close(got.grad, want.grad)


def run_in_memory(run_dir: Path, iters: int, resume: bool) -> TrainingRun:
    cfg = TrainConfig(batch=4, iters=iters, perceptual="none", num_workers=0, d_reg_every=2, checkpoint_every=3,
                      sample_every=2, val_every=2, log_every=1)
    run = TrainingRun(TINY, cfg, SeededImages(24, TINY.size, 0), run_dir, val_data=SeededImages(4, TINY.size, 1),
                      device="cpu", resume=run_dir if resume else None, progress=False)
    run.run()
    return run


def test_resume_is_bit_exact(tmp_path: Path) -> None:
    straight = run_in_memory(tmp_path / "a", 8, resume=False)
    run_in_memory(tmp_path / "b", 5, resume=False)  # crosses an epoch boundary (24 images / batch 4 = 6)
    resumed = run_in_memory(tmp_path / "b", 8, resume=True)
    a, b = straight.trainer.networks_state(), resumed.trainer.networks_state()
    for net in a:
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key} differs after resume"
    assert resumed.trainer.iteration == 8
    saved = load_checkpoint(latest_checkpoint(tmp_path / "b"))
    assert saved.training is not None and saved.training["iteration"] == 8
    assert saved.provenance["images_seen"] == 32
    assert len(list((tmp_path / "b" / "checkpoints").iterdir())) <= 3
    log_lines = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert len(log_lines) == 8
    assert (tmp_path / "b" / "val.jsonl").exists()
    assert any(p.name.startswith("reconstructions-") for p in (tmp_path / "b" / "samples").iterdir())


def test_resume_with_changes_applies_and_records_them(tmp_path: Path) -> None:
    run_in_memory(tmp_path, 3, resume=False)

    def resume(**changes: object) -> TrainingRun:
        return TrainingRun(TINY, TrainConfig(batch=4, perceptual="none", num_workers=0), SeededImages(24, TINY.size, 0),
                           tmp_path, device="cpu", resume=tmp_path, resume_changes=changes, progress=False)

    # an unchanged value, an unchanged fixed field and a new total are no change to record
    quiet = resume(iters=4, lambda_x_rec=1.0, batch=4)
    assert quiet.cfg.iters == 4 and quiet.resume_record is None and quiet.history == []
    assert not (tmp_path / "events.jsonl").exists()
    assert resume().cfg.iters == 3  # no --iters on resume: the saved total, not the 1.4M default
    assert resume(lambda_x_rec=5.0).resume_record is None  # already at its total: nothing runs, nothing recorded

    run = resume(iters=5, lambda_x_rec=10.0, lr=0.001)
    assert run.cfg.lambda_x_rec == 10.0 and run.cfg.lr == 0.001
    assert run.cfg.d_reg_every == 2 and run.cfg.checkpoint_every == 3  # the rest as saved, not the defaults
    assert run.trainer.g_optim.param_groups[0]["lr"] == 0.001
    assert run.trainer.d_optim.param_groups[0]["lr"] == pytest.approx(0.001 * 2 / 3)
    record = {"iteration": 3, "resumed_with_changes": {"lambda_x_rec": {"was": 1.0, "now": 10.0},
                                                       "lr": {"was": 0.002, "now": 0.001}}}
    event = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[-1])
    assert {k: event[k] for k in record} == record
    run.run()
    saved = load_checkpoint(latest_checkpoint(tmp_path))
    assert saved.training is not None and saved.training["train_config"]["lambda_x_rec"] == 10.0
    assert saved.training["history"] == [record]  # travels with the checkpoints, not only in the run's log
    assert resume(iters=6).history == [record]
    with pytest.raises(ValueError, match=r"ckpt-0000005\.safetensors: cannot change batch, d_reg_every when resuming"):
        resume(d_reg_every=4, batch=8)
    # other training data is a change to record (the batches differ from an uninterrupted run's); a checkpoint
    # that does not say what it was trained on is not a change
    def resume_on(data: dict[str, object], iters: int) -> TrainingRun:
        return TrainingRun(TINY, TrainConfig(batch=4, perceptual="none", num_workers=0), SeededImages(24, TINY.size, 0),
                           tmp_path, device="cpu", resume=tmp_path, resume_changes={"iters": iters}, progress=False,
                           data_description=data)

    first, other = {"path": "a", "train_images": 24}, {"path": "b", "train_images": 24}
    described = resume_on(first, 6)
    assert saved.provenance["data"] == {} and described.resume_record is None
    described.run()
    assert resume_on(first, 7).resume_record is None
    assert resume_on(other, 7).resume_record == {"iteration": 6, "resumed_with_changes": {
        "data": {"was": first, "now": other}}}


def test_frozen_generator_fits_only_the_encoder_to_the_ema_generator() -> None:
    t = tiny_trainer(freeze_generator=True)
    with torch.no_grad():  # make the live G differ from its EMA, so using the wrong one would show
        for p in t.generator.parameters():
            p.add_(0.5)
    frozen = {name: [p.clone() for p in net.parameters()] for name, net in
              (("generator", t.generator), ("g_ema", t.g_ema))}
    e_before = [p.clone() for p in t.encoder.parameters()]
    d_before = [p.clone() for p in t.discriminator.parameters()]

    real = t.next_batch()
    losses = t.generator_step()
    assert set(losses) == {"e_w_rec"}  # no adversarial update of G
    assert grads_of(t.encoder)[0] and grads_of(t.generator)[1] and grads_of(t.g_ema)[1]
    t.reconstruction_step(real)
    assert grads_of(t.generator)[1] and grads_of(t.g_ema)[1]

    for _ in range(2):
        t.train_step()
    for name, net in (("generator", t.generator), ("g_ema", t.g_ema)):
        assert all(torch.equal(a, b) for a, b in zip(frozen[name], net.parameters(), strict=True)), name
    assert not all(torch.equal(a, b) for a, b in zip(e_before, t.encoder.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(d_before, t.discriminator.parameters(), strict=True))


def test_frozen_generator_steps_all_use_the_ema_generator() -> None:
    t = tiny_trainer(freeze_generator=True, lambda_indomain_e=0.0)
    with torch.no_grad():
        for p in t.generator.parameters():
            p.mul_(0.0)  # a live G that draws nothing: its losses would differ from the EMA's by far
    g, e, d, mse = t.g_ema, t.encoder, t.discriminator, torch.nn.functional.mse_loss
    real = t.next_batch()
    rng = t.rng.get_state()
    with torch.no_grad():  # what each step computes when it uses the EMA generator
        stylemap = g.mapping(t.noise())
        w_rec = mse(e(g.decode(stylemap)), stylemap).item()
    t.rng.set_state(rng)
    assert t.generator_step()["e_w_rec"] == pytest.approx(w_rec, rel=1e-5)
    e_now = [p.clone() for p in e.parameters()]
    with torch.no_grad():
        indomain_d = torch.nn.functional.softplus(d(g.decode(e(real)))).mean().item()
    assert t.discriminator_step(real)["d_indomain"] == pytest.approx(indomain_d, rel=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(e_now, e.parameters(), strict=True))
    with torch.no_grad():
        via_ema = mse(g.decode(e(real)), real).item()
    assert t.reconstruction_step(real)["x_rec"] == pytest.approx(via_ema, rel=1e-5)


def test_freezing_a_random_generator_is_refused(tmp_path: Path) -> None:
    cfg = TrainConfig(batch=4, iters=1, perceptual="none", num_workers=0, freeze_generator=True)
    with pytest.raises(ValueError, match="freeze_generator: needs a trained generator"):
        TrainingRun(TINY, cfg, SeededImages(8, TINY.size, 0), tmp_path / "run", device="cpu", progress=False)
    assert not (tmp_path / "run").exists()


def test_resume_with_a_wider_encoder_keeps_g_and_d_and_widens_the_encoder(tmp_path: Path) -> None:
    run_in_memory(tmp_path, 3, resume=False)
    saved = load_checkpoint(latest_checkpoint(tmp_path))
    wide = TINY.channel_base * 2

    def resume(model_changes: dict[str, object], **changes: object) -> TrainingRun:
        return TrainingRun(TINY, TrainConfig(batch=4, perceptual="none", num_workers=0), SeededImages(24, TINY.size, 0),
                           tmp_path, device="cpu", resume=tmp_path, resume_changes=changes,
                           model_changes=model_changes, progress=False)

    run = resume({"encoder_channel_base": wide}, iters=5, freeze_generator=True)
    t = run.trainer
    assert t.model_config.encoder_channel_base == wide
    assert t.encoder.from_rgb.weight.shape[0] == 2 * saved.networks["encoder"]["from_rgb.weight"].shape[0]
    for net in ("generator", "g_ema", "discriminator"):
        state = getattr(t, net).state_dict()
        assert all(torch.equal(state[k], v) for k, v in saved.networks[net].items()), net
    images = torch.stack([SeededImages(4, TINY.size, 1)[i] for i in range(4)])
    for name in ("encoder", "e_ema"):  # the wider encoders compute what the saved ones did
        narrow = Encoder(TINY)
        narrow.load_state_dict(saved.networks[name])
        with torch.no_grad():
            assert torch.allclose(getattr(t, name)(images), narrow(images), atol=1e-5), name
    assert not t.e_optim.state  # the widened encoder starts a new Adam state
    n = saved.networks["encoder"]["from_rgb.weight"].shape[0]  # E and its EMA get the same new channels
    assert torch.equal(t.encoder.from_rgb.weight[n:], t.e_ema.from_rgb.weight[n:])
    record = {"iteration": 3, "resumed_with_changes": {
        "freeze_generator": {"was": False, "now": True}, "encoder_channel_base": {"was": None, "now": wide}}}
    assert run.history == [record]
    run.run()
    last = load_checkpoint(latest_checkpoint(tmp_path))
    assert last.config.encoder_channel_base == wide and last.training["history"] == [record]
    assert all(torch.equal(last.networks["g_ema"][k], v) for k, v in saved.networks["g_ema"].items())
    again = resume({}, iters=6)  # the wider encoder is now the run's own: resumes like any other
    assert again.trainer.model_config.encoder_channel_base == wide and again.history == [record]
    with pytest.raises(ValueError, match=r"ckpt-0000005\.safetensors: cannot change channel_base when resuming"):
        resume({"channel_base": wide})
    with pytest.raises(ValueError, match=r"ckpt-0000005\.safetensors: encoder_channel_base can only grow"):
        resume({"encoder_channel_base": TINY.channel_base})
    capped = last.config.replace(channel_max=4)  # every width capped: a larger base changes nothing
    assert TrainingRun._resumed_model(Path("x"), capped, {"encoder_channel_base": 4 * wide}) == capped


def test_nan_stops_the_run_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    run = run_in_memory(tmp_path, 3, resume=False)
    good = latest_checkpoint(tmp_path)
    good_bytes = good.read_bytes()
    with torch.no_grad():
        run.trainer.generator.synthesis.const[0, 0, 0, 0] = float("nan")
    run.cfg = run.cfg.replace(iters=6)
    run.trainer.cfg = run.cfg
    with pytest.raises(TrainingDiverged, match=r"iteration 3: non-finite loss .*last good checkpoint: .*ckpt-0000003"):
        run.run()
    assert latest_checkpoint(tmp_path) == good and good.read_bytes() == good_bytes


def test_two_processes_match_one(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           SCRIPT, str(tmp_path / "ddp"), "4", "8", "--dump", str(tmp_path / "ddp.st")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = subprocess.run([sys.executable, SCRIPT, str(tmp_path / "one"), "4", "8", "--dump",
                             str(tmp_path / "one.st")], capture_output=True, text=True, env=env, timeout=240)
    assert single.returncode == 0, single.stderr[-3000:]
    r0, r1 = load_file(f"{tmp_path}/ddp.st.rank0"), load_file(f"{tmp_path}/ddp.st.rank1")
    one = load_file(f"{tmp_path}/one.st.rank0")
    for key in r0:
        assert torch.equal(r0[key], r1[key]), f"ranks disagree on {key}"
    # Rounding-level differences only (the mean of two half-batch gradients vs one full-batch gradient). The mapping
    # network stores weights x 1/lr_mul, so compare effective weights (stored x lr_mul there). A parameter with no
    # gradient in a step must stay without one on every rank: a zero gradient is still an Adam step, and drifted
    # this comparison to ~5e-4 before.
    def effective(key: str, value: torch.Tensor) -> torch.Tensor:
        return value * TINY.lr_mul if ".mapping." in f".{key.split('/')[1]}" else value

    worst = max((effective(k, r0[k]) - effective(k, one[k])).abs().max().item() for k in r0)
    assert worst < 1e-5, f"2-process run differs from the single-process run by {worst}"
    # only rank 0 wrote checkpoints and logs
    assert len(list((tmp_path / "ddp" / "checkpoints").iterdir())) >= 1


def test_a_nan_on_one_rank_stops_every_rank(tmp_path: Path) -> None:
    """Rank 1 alone sees a non-finite loss; rank 0 must stop too, not wait in the next all-reduce."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           SCRIPT, str(tmp_path / "run"), "6", "8", "--poison-rank", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "iteration 0: non-finite loss (on another rank); stopped without saving" in out, out[-3000:]  # rank 0
    assert "iteration 0: non-finite loss (" in out.replace("(on another rank)", "")  # rank 1, its own losses
    assert "done iteration" not in out


def test_sigterm_saves_and_exits_cleanly(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, SCRIPT, str(run_dir), "100000", "4"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = run_dir / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "stopped=True" in out
    ckpt = load_checkpoint(latest_checkpoint(run_dir))
    assert ckpt.training is not None
    stopped_at = int(out.split("iteration=")[1].split()[0])
    assert ckpt.training["iteration"] == stopped_at >= 3


def test_cli_refuses_data_smaller_than_the_model_before_creating_the_run(tmp_path: Path) -> None:
    from face_fixtures import write_face_dataset

    data = write_face_dataset(tmp_path / "faces", size=32, count=4)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "stylemapgan", "train", "--data", str(data), "--outdir", str(out),
                           "--preset", "cpu-64-small", "--iters", "1", "--num-workers", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"stylemapgan train: error: {data}: dataset images are 32px; the model needs 64px (or an integer multiple "
        "of it)"]
    assert not out.exists()


def test_cli_encoder_options_reach_the_configs() -> None:
    from stylemapgan.cli import build_parser
    from stylemapgan.cli.train import given_model_options, given_train_options

    parse = build_parser().parse_args
    base = ["train", "--data", "d", "--outdir", "o"]
    args = parse([*base, "--resume", "o", "--encoder-channel-base", "4096", "--freeze-generator"])
    assert given_model_options(args) == {"encoder_channel_base": 4096}
    assert given_train_options(args) == {"freeze_generator": True}
    assert given_train_options(parse([*base, "--no-freeze-generator"])) == {"freeze_generator": False}
    plain = parse(base)
    assert given_model_options(plain) == {} and given_train_options(plain) == {}


def test_cli_freezing_a_new_run_is_refused_before_creating_it(tmp_path: Path) -> None:
    from face_fixtures import write_face_dataset

    data = write_face_dataset(tmp_path / "faces", size=16, count=4)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "stylemapgan", "train", "--data", str(data), "--outdir", str(out),
                           "--preset", "tiny", "--iters", "1", "--num-workers", "0", "--freeze-generator"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("stylemapgan train: error: freeze_generator: needs")
    assert not out.exists()


def test_tf32_is_set_both_ways(tmp_path: Path) -> None:
    """PyTorch's default has cuDNN TF32 on: a run without --tf32 must turn it off, not merely not turn it on;
    every command starts from plain fp32."""
    from stylemapgan.cli import main
    from stylemapgan.utils.precision import set_tf32

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        for wanted in (True, False):
            set_tf32(not wanted)
            cfg = TrainConfig(batch=4, iters=1, perceptual="none", num_workers=0, tf32=wanted)
            TrainingRun(TINY, cfg, SeededImages(8, TINY.size, 0), tmp_path / str(wanted), device="cpu", progress=False)
            assert torch.backends.cudnn.allow_tf32 is wanted and torch.backends.cuda.matmul.allow_tf32 is wanted
        set_tf32(True)
        assert main(["info", "--preset", "tiny"]) == 0
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_init_from_fine_tunes_a_released_or_full_checkpoint(tmp_path: Path) -> None:
    """--init-from: a new run (iteration 0, fresh optimizers) whose G/E (and D, when the file has one) start from
    a trained checkpoint; a released file (EMA networks only) starts live and EMA copies alike."""
    from stylemapgan.checkpoint import Checkpoint, save_checkpoint

    source = run_in_memory(tmp_path / "src", 3, resume=False)
    full = latest_checkpoint(tmp_path / "src")
    nets = source.trainer.networks_state()
    released = tmp_path / "released.safetensors"
    save_checkpoint(released, Checkpoint(TINY, {"g_ema": nets["g_ema"], "e_ema": nets["e_ema"]}, None, {}))
    cfg = TrainConfig(batch=4, iters=2, perceptual="none", num_workers=0, checkpoint_every=2)

    def start(init: Path, out: str, **kw: object) -> TrainingRun:
        return TrainingRun(get_preset("cpu-32").model, cfg, SeededImages(8, TINY.size, 0), tmp_path / out,
                           device="cpu", init_from=init, progress=False, **kw)

    fresh_d = Trainer(TINY, cfg, SeededImages(8, TINY.size, 0)).discriminator.state_dict()
    for init, out, kw, d_from in ((released, "a", {}, "fresh"), (full, "b", {}, "checkpoint"),
                                  (tmp_path / "src", "c", {"fresh_discriminator": True}, "fresh")):
        run = start(init, out, **kw)
        t = run.trainer
        assert t.model_config == TINY and t.iteration == 0  # the checkpoint's config, not the preset given
        for module, name in ((t.generator, "generator"), (t.g_ema, "g_ema"), (t.encoder, "encoder"),
                             (t.e_ema, "e_ema")):
            want = nets[name if init != released else name.split("_")[0][0] + "_ema"]
            assert all(torch.equal(v, want[k]) for k, v in module.state_dict().items()), (out, name)
        expect_d = fresh_d if d_from == "fresh" else nets["discriminator"]
        assert all(torch.equal(v, expect_d[k]) for k, v in t.discriminator.state_dict().items())
        assert not t.g_optim.state  # fresh optimizers
        assert run.history[0]["initialised_from"]["discriminator"] == d_from
        result = run.run()
        assert result.iteration == 2 and result.last_checkpoint is not None
        saved = load_checkpoint(result.last_checkpoint)
        assert saved.training["history"][0]["initialised_from"]["path"] == str(latest_checkpoint(init))
    with pytest.raises(ValueError, match="give one"):
        start(released, "d", resume=tmp_path / "a")
    with pytest.raises(ValueError, match="cannot change when fine-tuning"):
        start(released, "e", model_changes={"encoder_channel_base": 4096})
    with pytest.raises(ValueError, match="fine-tune it on your data with --init-from"):
        TrainingRun(TINY, cfg, SeededImages(8, TINY.size, 0), tmp_path / "f", device="cpu", resume=released)


def test_cli_init_from_a_bundled_model_name_and_its_refusals(tmp_path: Path) -> None:
    from face_fixtures import write_face_dataset
    from stylemapgan.models import DEFAULT_MODEL, bundled_models

    data = write_face_dataset(tmp_path / "faces", size=64, count=4, train_count=1)
    base = [sys.executable, "-m", "stylemapgan", "train", "--data", str(data), "--iters", "1", "--batch", "2",
            "--num-workers", "0", "--perceptual", "none", "--no-progress"]

    def train(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *extra], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})

    bad = train("--outdir", str(tmp_path / "x"), "--preset", "tiny", "--init-from", "nope")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "stylemapgan train: error: --preset: the model config comes from the checkpoint with --resume/--init-from"]
    bad = train("--outdir", str(tmp_path / "x"), "--init-from", str(tmp_path / "missing.safetensors"))
    assert bad.returncode == 2 and bad.stderr.startswith("stylemapgan train: error: --init-from: ")
    bad = train("--outdir", str(tmp_path / "x"), "--preset", "tiny")  # 1 training image, batch 2
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"stylemapgan train: error: {data}: the dataset has 1 training images, fewer than one batch of 2 (--batch)"]
    assert not (tmp_path / "x").exists()
    data = write_face_dataset(tmp_path / "faces2", size=64, count=4, train_count=2)
    base[base.index("--data") + 1] = str(data)
    if DEFAULT_MODEL not in bundled_models():
        return
    out = tmp_path / "tuned"
    ok = train("--outdir", str(out), "--init-from", DEFAULT_MODEL)
    assert ok.returncode == 0, ok.stderr
    saved = load_checkpoint(latest_checkpoint(out))
    assert saved.config.size == 64 and saved.training["iteration"] == 1
    assert saved.training["history"][0]["initialised_from"]["discriminator"] == "fresh"
