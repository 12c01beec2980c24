"""`train` and `train-encoder` as commands: --resume RUN goes on in RUN, --outdir checked by the same rules for
both, and a stop signal sent to every process of a run (`pkill -f`, Ctrl-C to the process group) with data loader
workers still ends in a saved checkpoint, exit status 143 and no process left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from face_fixtures import write_face_dataset
from semantic_train_script import TINY as SEMANTIC_TINY
from stylemapgan.checkpoint import load_checkpoint, save_checkpoint
from stylemapgan.checkpoint.build import fresh_checkpoint
from stylemapgan.cli import main
from stylemapgan.cli.train import STOPPED_EXIT
from stylemapgan.config import get_preset
from stylemapgan.training.batches import RealBatches
from stylemapgan.training.distributed import DistInfo
from stylemapgan.training.run import latest_checkpoint

COMMANDS = ("train", "train-encoder")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Data for the tiny StyleMapGAN preset (16 px) and for the tiny SemanticStyleGAN one (32 px), and a
    SemanticStyleGAN generator for train-encoder."""
    root = tmp_path_factory.mktemp("inputs")
    generator = root / "generator.safetensors"
    save_checkpoint(generator, fresh_checkpoint(SEMANTIC_TINY, 0, "test"))
    return {"train": write_face_dataset(root / "faces16", size=16, count=8, train_count=6),
            "train-encoder": write_face_dataset(root / "faces32", size=32, count=6, train_count=4),
            "generator": generator}


def new_run(command: str, inputs: dict[str, Path], *outdir: str | Path) -> list[str]:
    """The arguments of a new two-image-batch run of `command` (the --outdir given, if any)."""
    model = ["--preset", "tiny"] if command == "train" else ["--ckpt", str(inputs["generator"])]
    where = ["--outdir", str(outdir[0])] if outdir else []
    return [command, "--data", str(inputs[command]), *model, *where, "--batch", "2", "--perceptual", "none",
            "--num-workers", "0", "--no-progress"]


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, list[str]]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines()


def iteration_of(run: Path) -> int:
    ckpt = load_checkpoint(latest_checkpoint(run))
    assert ckpt.training is not None
    return int(ckpt.training["iteration"])


@pytest.mark.parametrize("command", COMMANDS)
def test_resume_of_a_run_directory_goes_on_in_it(command: str, inputs: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    code, err = cli(capsys, *new_run(command, inputs, run), "--iters", "2")
    assert code == 0 and iteration_of(run) == 2, err
    resume = [command, "--data", inputs[command], "--no-progress", "--num-workers", "0"]

    code, err = cli(capsys, *resume, "--resume", run, "--iters", "3")
    assert code == 0 and iteration_of(run) == 3, err
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # nothing written anywhere else

    # a checkpoint file names no run directory: --outdir is required, and nothing is written
    ckpt = latest_checkpoint(run)
    before = sorted((p, p.stat().st_mtime_ns) for p in run.rglob("*"))
    code, err = cli(capsys, *resume, "--resume", ckpt, "--iters", "4")
    assert code == 2 and err == [f"stylemapgan {command}: error: --outdir: required when --resume names a checkpoint "
                                 f"file ({ckpt}); give the run directory to write into"]
    assert sorted((p, p.stat().st_mtime_ns) for p in run.rglob("*")) == before
    code, err = cli(capsys, *resume, "--resume", ckpt, "--iters", "4", "--outdir", tmp_path / "other")
    assert code == 0 and iteration_of(tmp_path / "other") == 4 and iteration_of(run) == 3, err

    # a new run names its directory
    code, err = cli(capsys, *new_run(command, inputs), "--iters", "1")
    assert code == 2 and err == [f"stylemapgan {command}: error: --outdir: required (the run directory)"]


def _outdir_cases(root: Path) -> dict[str, tuple[Path, str]]:
    afile = root / "afile"
    return {
        "outdir_is_file": (afile, f"{afile}: exists and is not a folder (--outdir)"),
        "parent_is_file": (afile / "run", f"{afile / 'run'}: cannot be created, {afile} is a file (--outdir)"),
    }


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", list(_outdir_cases(Path("x"))))
def test_an_outdir_that_cannot_be_a_run_directory_is_refused_before_any_work(
        command: str, case: str, inputs: dict[str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_bytes(b"x")
    outdir, message = _outdir_cases(tmp_path)[case]
    code, err = cli(capsys, *new_run(command, inputs, outdir), "--iters", "1")
    assert code == 2 and err == [f"stylemapgan {command}: error: {message}"]
    assert [p.name for p in tmp_path.iterdir()] == ["afile"] and (tmp_path / "afile").read_bytes() == b"x"


@pytest.mark.parametrize("command", COMMANDS)
def test_an_outdir_in_a_folder_that_refuses_entries_is_refused(command: str, inputs: dict[str, Path],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """sysfs refuses new entries even to root (file permissions alone do not tell)."""
    target = Path("/sys/stylemapgan_probe")
    try:
        target.mkdir()
    except OSError:
        pass
    else:
        target.rmdir()
        pytest.skip("/sys accepts new folders here")
    code, err = cli(capsys, *new_run(command, inputs, target), "--iters", "1")
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"stylemapgan {command}: error: {target}: cannot write into /sys (")
    assert err[0].endswith("(--outdir)")


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("existed", [False, True])
def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_run_directory(
        command: str, existed: bool, inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk in the first iteration: one line naming the file, exit 2; a run directory the command created
    goes again, one that was there stays (with what was in it)."""
    from stylemapgan.training.semantic_encoder import SemanticEncoderTrainer
    from stylemapgan.training.trainer import Trainer

    def full_disk(self: object) -> None:
        raise OSError(28, "No space left on device", str(tmp_path / "run" / "log.jsonl"))

    monkeypatch.setattr(Trainer if command == "train" else SemanticEncoderTrainer, "train_step", full_disk)
    run = tmp_path / "run"
    if existed:
        run.mkdir()
        (run / "notes.txt").write_text("mine")
    code, err = cli(capsys, *new_run(command, inputs, run), "--iters", "1")
    assert code == 2 and err == [f"stylemapgan {command}: error: {run / 'log.jsonl'}: No space left on device"]
    assert sorted(p.name for p in tmp_path.iterdir()) == (["run"] if existed else [])
    if existed:
        assert (run / "notes.txt").read_text() == "mine"


# ----- stop signals with data loader workers ---------------------------------------------------------------------


def processes_naming(text: str) -> list[int]:
    """The processes whose command line contains `text` (what `pkill -f TEXT` matches), this one excepted."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:  # gone meanwhile
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_for(condition: object, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return bool(condition())  # type: ignore[operator]


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads processes from /proc")
@pytest.mark.parametrize("how", ["pkill", "process_group"])
def test_a_stop_signal_to_every_process_of_a_run_saves_and_exits_cleanly(how: str, inputs: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    """`pkill -f` (SIGTERM to the main process and to its data loader workers, which share its command line) or
    Ctrl-C (SIGINT to the process group): the run saves the last completed iteration, exits with 143, and no
    worker is left. Before the fix the workers died of the signal and the main process crashed on them mid-step,
    saving nothing."""
    run = tmp_path / f"run-{how}"  # the unique text `pkill -f` matches: only this run's processes
    proc = subprocess.Popen(
        [sys.executable, "-m", "stylemapgan", "train", "--data", str(inputs["train"]), "--outdir", str(run),
         "--preset", "tiny", "--batch", "2", "--perceptual", "none", "--iters", "100000", "--num-workers", "1",
         "--checkpoint-every", "1000", "--log-every", "1", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        start_new_session=True,  # its own process group, as a shell job
    )
    try:
        log = run / "log.jsonl"
        started = wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 3, 180)
        assert started and children_of(proc.pid), "the run did not start its data loader worker"
        if how == "pkill":
            targets = processes_naming(str(run))
            assert proc.pid in targets and len(targets) >= 2  # the main process and its worker
            for pid in targets:
                os.kill(pid, signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == STOPPED_EXIT, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    stopped_at = int(out.split("stopped by signal at iteration ")[1].split(";")[0])
    logged = [line for line in log.read_text().splitlines() if line.strip()]
    assert stopped_at == len(logged) >= 3  # every completed iteration logged, none after the stop
    ckpt = load_checkpoint(latest_checkpoint(run))
    assert latest_checkpoint(run).name == f"ckpt-{stopped_at:07d}.safetensors"
    assert ckpt.training is not None and ckpt.training["iteration"] == stopped_at
    assert ckpt.provenance["images_seen"] == 2 * stopped_at
    assert processes_naming(str(run)) == []  # no orphaned worker


def test_loader_workers_leave_stop_signals_to_the_main_process_until_closed() -> None:
    """A worker survives a SIGTERM and SIGINT of its own while its stream is open (the stream goes on with the
    same batches as one without workers); `close()` stops it; the stream then restarts where it was."""
    size = get_preset("tiny").model.size
    data = torch.linspace(-1, 1, 12 * 3 * size * size).reshape(12, 3, size, size)

    def stream(workers: int) -> RealBatches:
        return RealBatches(data, 4, size=size, seed=3, rng=torch.Generator().manual_seed(5), hflip=True,
                           num_workers=workers, device=torch.device("cpu"), dist=DistInfo())

    plain = stream(0)
    expected = [plain.next() for _ in range(5)]
    others = set(children_of(os.getpid()))
    with_worker = stream(1)
    got = [with_worker.next()]
    workers = sorted(set(children_of(os.getpid())) - others)
    assert len(workers) == 1
    for sig in (signal.SIGTERM, signal.SIGINT):
        os.kill(workers[0], sig)
    time.sleep(0.5)
    got.append(with_worker.next())
    assert sorted(set(children_of(os.getpid())) - others) == workers  # still there, still serving
    with_worker.close()
    assert wait_for(lambda: not set(children_of(os.getpid())) - others, 10)
    assert with_worker.position == 2
    got += [with_worker.next() for _ in range(3)]  # a new worker, at batch 2
    with_worker.close()
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


SLOW_WORKER_SCRIPT = """
import sys, time, torch
from stylemapgan.training.batches import RealBatches
from stylemapgan.training.distributed import DistInfo

class Slow(torch.utils.data.Dataset):  # the first batch comes at once; the worker then sleeps in the next one
    def __len__(self):
        return 8
    def __getitem__(self, index):
        if self.calls.get(0, 0) >= 2:
            time.sleep(600)
        self.calls[0] = self.calls.get(0, 0) + 1
        return torch.zeros(3, 4, 4)
Slow.calls = {}

stream = RealBatches(Slow(), 2, size=4, seed=0, rng=torch.Generator(), hflip=False, num_workers=1,
                     device=torch.device("cpu"), dist=DistInfo())
stream.next()
print("drawn", flush=True)
"""  # and exits without closing the stream


def test_a_process_that_exits_without_closing_its_stream_does_not_wait_for_a_busy_worker(tmp_path: Path) -> None:
    """A worker that ignores SIGTERM must not hold up the exit: at exit the stream lets its workers be terminated
    (PyTorch gives a worker 5 s to finish before it terminates it)."""
    script = tmp_path / "slow_worker.py"
    script.write_text(SLOW_WORKER_SCRIPT)
    start = time.time()
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the process waited for its busy worker")
    assert proc.returncode == 0 and out.strip() == "drawn", err[-2000:]
    assert time.time() - start < 60
    assert processes_naming(str(tmp_path)) == []
