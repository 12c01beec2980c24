"""A whole training run: checkpoints (atomic, last K kept), resume, signals, logs, samples, validation.

The run directory holds `checkpoints/ckpt-NNNNNNN.safetensors`, `log.jsonl` (every logged loss),
`samples/` (fixed-z samples and reconstructions of fixed held-out images, as PNG grids), `val.jsonl`
(validation MSE / LPIPS of the EMA networks) and TensorBoard event files when `tensorboard` is installed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from stylemapgan.checkpoint.io import (
    Checkpoint,
    CheckpointError,
    default_provenance,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
)
from stylemapgan.checkpoint.models import check_state_dicts
from stylemapgan.config import ModelConfig
from stylemapgan.data.dataset import DataMismatchError, check_fits, collate_images, fit_to_model
from stylemapgan.models import CHECKPOINT_GLOB
from stylemapgan.semantic import SemanticConfig
from stylemapgan.training.config import RunConfig
from stylemapgan.training.distributed import DistInfo, all_mean, barrier, init_from_env, shutdown
from stylemapgan.training.families import TrainingFamily, build_trainer, training_family
from stylemapgan.training.trainer import TrainingDiverged
from stylemapgan.utils.images import save_png
from stylemapgan.utils.precision import set_tf32

# What `utils.files.atomic_write_bytes` leaves when killed mid-write (kill -9, power loss): `.NAME.XXXX.tmp`
STALE_TEMP_GLOB = ".*.tmp"


def checkpoint_path(run_dir: Path, iteration: int) -> Path:
    return run_dir / "checkpoints" / f"ckpt-{iteration:07d}.safetensors"


def latest_checkpoint(run_or_ckpt: str | Path) -> Path:
    """A checkpoint file, or the newest one in a run directory."""
    path = Path(run_or_ckpt)
    if path.is_file():
        return path
    found = sorted((path / "checkpoints").glob(CHECKPOINT_GLOB)) if path.is_dir() else []
    if not found:
        raise CheckpointError(f"{path}: no checkpoint to resume from (expected {path}/checkpoints/{CHECKPOINT_GLOB})")
    return found[-1]


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporary files an interrupted atomic write left in a run's checkpoints/ and samples/ (never
    read by anything: the write they belonged to did not happen). Returns what was removed."""
    removed = []
    for folder in (run_dir / "checkpoints", run_dir / "samples"):
        for path in sorted(folder.glob(STALE_TEMP_GLOB)) if folder.is_dir() else []:
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def discard_failed_run_dir(run_dir: Path) -> bool:
    """Remove a run directory that holds no checkpoint (a run that failed before its first save): it cannot be
    resumed or released, and a leftover would look like a run. Returns whether it was removed."""
    if run_dir.is_dir() and not any((run_dir / "checkpoints").glob(CHECKPOINT_GLOB)):
        shutil.rmtree(run_dir, ignore_errors=True)
        return True
    return False


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag checked between iterations, so the run saves and exits cleanly."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class RunLogger:
    """JSONL (always) and TensorBoard (when installed) on rank 0; silent elsewhere."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.run_dir = run_dir
        self.tb = None
        if enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                self.tb = None

    def scalars(self, file: str, iteration: int, values: dict[str, float], prefix: str) -> None:
        if not self.enabled:
            return
        with open(self.run_dir / file, "a") as f:
            f.write(json.dumps({"iteration": iteration, "time": round(time.time(), 3), **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"{prefix}/{k}", v, iteration)

    def event(self, iteration: int, **fields: Any) -> None:
        """A one-off record (e.g. settings changed on resume) in events.jsonl, so a run's history is complete."""
        if self.enabled:
            with open(self.run_dir / "events.jsonl", "a") as f:
                f.write(json.dumps({"iteration": iteration, "time": round(time.time(), 3), **fields}) + "\n")

    def image(self, tag: str, iteration: int, grid: Any) -> None:
        if not self.enabled:
            return
        save_png(self.run_dir / "samples" / f"{tag}-{iteration:07d}.png", grid)
        if self.tb is not None:
            self.tb.add_image(tag, grid, iteration, dataformats="HWC")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


@dataclass
class RunResult:
    iteration: int
    stopped_by_signal: bool
    last_checkpoint: Path | None


class TrainingRun:
    """A run of any model family: the family's trainer (`training.families`) does the iterations; the run keeps
    checkpoints, resume, signals, logs, samples and validation."""

    def __init__(
        self,
        model_config: ModelConfig | SemanticConfig,
        train_config: RunConfig,
        train_data: Dataset,
        run_dir: str | Path,
        *,
        val_data: Dataset | None = None,
        device: str | torch.device | None = None,
        resume: str | Path | None = None,
        resume_changes: dict[str, Any] | None = None,
        model_changes: dict[str, Any] | None = None,
        dist_info: DistInfo | None = None,
        data_description: dict[str, Any] | None = None,
        progress: bool = True,
        init_from: str | Path | None = None,
        fresh_discriminator: bool = False,
        training: TrainingFamily | None = None,
        adopt_from: str | Path | None = None,
    ) -> None:
        """resume: continue a run exactly. init_from: fine-tune, i.e. a new run (iteration 0, fresh optimizers)
        whose networks and model config come from a trained checkpoint (ours, released, or official);
        fresh_discriminator: a newly initialised D even when the checkpoint has one. training: what to train
        (default: the model family's GAN training; e.g. `training.semantic_encoder.SEMANTIC_ENCODER`).
        adopt_from: with init_from, a second checkpoint of the same model config whose networks named by the
        training's `adoptable` (e.g. an encoder fitted to an earlier snapshot of the generator) replace init_from's,
        so a long fit goes on against a generator trained further instead of starting again."""
        self.training = training
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dist = dist_info or init_from_env(device.type)
        if device.type == "cuda" and self.dist.enabled:
            device = torch.device("cuda", self.dist.local_rank)
        if device.type == "cuda" and device.index is not None:
            torch.cuda.set_device(device)  # else helpers that use "the current device" (pin_memory) open cuda:0
        self.run_dir = Path(run_dir)
        self.created_run_dir = not self.run_dir.exists()  # a failure before the first save removes it again
        self.ranks_stopped_together = False  # set where every rank ends the loop at the same point (see close)
        self.val_data = val_data
        self.progress = progress and self.dist.is_main
        self.data_description = data_description or {}
        if resume is not None and init_from is not None:
            raise ValueError("--resume and --init-from: give one (resume continues a run, init-from starts a new one)")
        resume_ckpt = init_ckpt = None
        widen_encoder = False
        self.history: list[dict[str, Any]] = []  # settings changed on resume, saved in every checkpoint
        self.resume_record: dict[str, Any] | None = None  # this resume's entry in the history, if any
        if resume is not None:
            resume_path = latest_checkpoint(resume)
            resume_ckpt = load_checkpoint(resume_path)
            if resume_ckpt.training is None:
                raise CheckpointError(f"{resume_path}: has no training state (a released, inference-only model); "
                                      "fine-tune it on your data with --init-from instead")
            saved_command = resume_ckpt.training.get("command", "train")
            if saved_command != self._training(resume_ckpt.config).command:
                raise ValueError(f"{resume_path}: written by `stylemapgan {saved_command}`; resume it with "
                                 f"`stylemapgan {saved_command} --resume`")
            model_config = self._resumed_model(resume_path, resume_ckpt.config, model_changes or {}, self.training)
            train_config = self._resumed_config(resume_path, resume_ckpt.training, train_config, resume_changes,
                                                model_was=resume_ckpt.config, model_now=model_config,
                                                data_was=resume_ckpt.provenance.get("data"))
            widen_encoder = model_config != resume_ckpt.config
        elif init_from is not None:
            init_path = latest_checkpoint(init_from).resolve()  # recorded: a release from any folder finds it
            init_ckpt = load_checkpoint(init_path)
            training_entry = self._training(init_ckpt.config)
            known = {f.name for f in dataclasses.fields(init_ckpt.config)}
            changes = {k: v for k, v in (model_changes or {}).items()
                       if k not in known or getattr(init_ckpt.config, k) != v}
            fixed = sorted(set(changes) - set(training_entry.init_model_fields))
            if fixed:
                raise ValueError(f"{init_path}: the model config comes from the checkpoint; "
                                 f"{', '.join(fixed)} cannot change when fine-tuning")
            model_config = init_ckpt.config.replace(**changes)
            restarted = [name for name in training_entry.adoptable if changes and name in init_ckpt.networks]
            for name in restarted:  # a changed layout of these networks: they start new
                init_ckpt.networks.pop(name)
            check_state_dicts(model_config, init_ckpt.networks, str(init_path))
            if not {"generator", "g_ema"} & set(init_ckpt.networks):
                raise CheckpointError(f"{init_path}: has no generator to fine-tune")
            if fresh_discriminator or "discriminator" not in init_ckpt.networks:
                init_ckpt.networks.pop("discriminator", None)
            self.history = [{"iteration": 0, "initialised_from": {
                "path": str(init_path), "sha256": file_sha256(init_path),
                "iterations": init_ckpt.provenance.get("iterations"),
                "discriminator": "checkpoint" if "discriminator" in init_ckpt.networks else "fresh",
                **({"model_changes": changes, "started_new": restarted} if changes else {})}}]
            if adopt_from is not None:
                self.history[0]["networks_from"] = self._adopt(adopt_from, init_ckpt, model_config,
                                                                 self._training(model_config))
        else:
            model_config = model_config.replace(**(model_changes or {}))
        if adopt_from is not None and init_ckpt is None:
            raise ValueError("adopt_from: takes networks into a new run; give init_from too (not resume)")
        if resume is None and init_ckpt is None and getattr(train_config, "freeze_generator", False):
            raise ValueError("freeze_generator: needs a trained generator (--resume or --init-from); "
                             "a new run's is random")
        if len(train_data) == 0:
            raise DataMismatchError("no training images")
        check_fits(collate_images([train_data[0]]).shape[-1], model_config.size)  # before anything is written
        self._training(model_config).trainer.check_data(model_config, train_data)
        if len(train_data) < train_config.batch:
            raise DataMismatchError(f"the dataset has {len(train_data)} training images, fewer than one batch of "
                                    f"{train_config.batch} (--batch)")
        set_tf32(train_config.tf32)  # both ways: PyTorch's default leaves cuDNN's TF32 on
        self.trainer = build_trainer(model_config, train_config, train_data, device=device, dist_info=self.dist,
                                     family=self._training(model_config))
        if resume_ckpt is not None:
            self.trainer.load_state(resume_ckpt.networks, resume_ckpt.training, widen_encoder=widen_encoder)
            self.trainer.set_lr(train_config.lr)  # the optimizer states carry the saved lr
        if init_ckpt is not None:
            self.trainer.load_weights(init_ckpt.networks)
        self.cfg = train_config
        if self.dist.is_main:
            for path in remove_stale_temporaries(self.run_dir):
                print(f"removed {path}, left by an interrupted write", file=sys.stderr)
        self.logger = RunLogger(self.run_dir, self.dist.is_main)
        if self.resume_record is not None:
            self.logger.event(**self.resume_record)
        if init_ckpt is not None:
            self.logger.event(**self.history[0])
        fixed = torch.Generator().manual_seed(train_config.seed + 12345)
        self.fixed_z = self.trainer.fixed_noise(16, fixed)
        self.fixed_real = self._fixed_validation_images(8)

    @staticmethod
    def _adopt(source: str | Path, init_ckpt: Any, model_config: Any, training: TrainingFamily) -> dict[str, Any]:
        """Replace init_ckpt's networks named by `training.adoptable` with those of checkpoint `source` (same model
        config, checked before anything is built); returns the history record of what was taken."""
        path = latest_checkpoint(source).resolve()  # recorded in the history, like init_from
        other = load_checkpoint(path)
        if other.config != model_config:
            differ = [f.name for f in dataclasses.fields(model_config)
                      if getattr(other.config, f.name) != getattr(model_config, f.name)]
            values = ", ".join(f"{n} {getattr(other.config, n)!r} vs {getattr(model_config, n)!r}" for n in differ)
            raise ValueError(f"{path}: its model config differs from the generator's ({values}); networks can only "
                             "be taken from a checkpoint of the same model (e.g. the same --expanded-rank)")
        taken = [name for name in training.adoptable if name in other.networks]
        if not taken:
            raise CheckpointError(f"{path}: has none of {', '.join(training.adoptable) or '(nothing adoptable)'}")
        check_state_dicts(other.config, {name: other.networks[name] for name in taken}, str(path))
        for name in training.adoptable:  # all from one file (a released model has only the EMA encoder)
            init_ckpt.networks.pop(name, None)
        init_ckpt.networks.update({name: other.networks[name] for name in taken})
        return {"path": str(path), "sha256": file_sha256(path), "networks": taken,
                "iterations": other.provenance.get("iterations")}

    def _training(self, model_config: Any) -> TrainingFamily:
        """What this run trains: the given entry, else the model family's GAN training."""
        return self.training or training_family(model_config)

    @staticmethod
    def _resumed_model(path: Path, saved: Any, changes: dict[str, Any], training: TrainingFamily | None = None) -> Any:
        """The saved model config; only what the family allows may change (StyleMapGAN: the encoder, and only
        grow: it is widened, see `widen_into`). A value that leaves every encoder width as it is (e.g. capped by
        channel_max) is no change."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(type(saved))})
        if unknown:
            raise ValueError(f"unknown model config field(s): {', '.join(unknown)}")
        differ = sorted(k for k, v in changes.items() if getattr(saved, k) != v)
        changeable = (training or training_family(saved)).train_config.RESUME_CHANGEABLE_MODEL
        fixed = [k for k in differ if k not in changeable]
        if fixed:
            raise ValueError(f"{path}: cannot change {', '.join(fixed)} when resuming (the saved weights fix it)")
        if not differ:
            return saved
        resumed = saved.replace(**changes)
        was = [saved.encoder_channels(r) for r in saved.style_resolutions]
        now = [resumed.encoder_channels(r) for r in saved.style_resolutions]
        if now == was:
            return saved
        if any(n < w for n, w in zip(now, was, strict=True)):
            raise ValueError(f"{path}: encoder_channel_base can only grow when resuming (the encoder is widened); "
                             f"{resumed.encoder_channel_base} gives widths {now}, narrower than the saved {was}")
        return resumed

    def _resumed_config(self, path: Path, training: dict[str, Any], given: RunConfig,
                        changes: dict[str, Any] | None, *, model_was: Any,
                        model_now: Any, data_was: dict[str, Any] | None = None) -> RunConfig:
        """The saved config with `changes` applied (default: only `iters` from `given`); the history grows by one
        record when something other than `iters` changes (model config changes included, and other training
        data: the batches then differ from an uninterrupted run's, which the card should say)."""
        kind = self._training(model_was).train_config
        saved = kind.from_dict(training["train_config"])
        self.history = list(training.get("history", []))
        changes = {"iters": given.iters} if changes is None else changes
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(kind)})
        if unknown:
            raise ValueError(f"{path}: {', '.join(unknown)}: not a setting of this model's training")
        differ = {k: v for k, v in changes.items() if getattr(saved, k) != v}
        fixed = sorted(set(differ) - kind.RESUME_CHANGEABLE)
        if fixed:
            raise ValueError(f"{path}: cannot change {', '.join(fixed)} when resuming (fixed when the run started)")
        recorded = {k: {"was": getattr(saved, k), "now": v} for k, v in differ.items() if k != "iters"}
        recorded.update({k: {"was": getattr(model_was, k), "now": getattr(model_now, k)}
                         for k in sorted(kind.RESUME_CHANGEABLE_MODEL)
                         if getattr(model_was, k) != getattr(model_now, k)})
        if data_was and self.data_description and data_was != self.data_description:
            recorded["data"] = {"was": data_was, "now": self.data_description}
            if self.dist.is_main:
                print(f"warning: {path} was trained on {json.dumps(data_was)}; resuming on "
                      f"{json.dumps(self.data_description)}", file=sys.stderr)
        # recorded only if training will run; replaces a record left at the same iteration by an attempt that
        # saved nothing since
        if recorded and int(training["iteration"]) < changes.get("iters", saved.iters):
            self.resume_record = {"iteration": int(training["iteration"]), "resumed_with_changes": recorded}
            self.history = [r for r in self.history if r["iteration"] < self.resume_record["iteration"]]
            self.history.append(self.resume_record)
        return saved.replace(**changes)

    def _fixed_validation_images(self, count: int) -> torch.Tensor | None:
        if self.val_data is None or len(self.val_data) == 0:
            return None
        n = min(count, len(self.val_data))
        images = collate_images([self.val_data[i] for i in range(n)])
        return fit_to_model(images, self.trainer.model_config.size).to(self.trainer.device)

    # ----- checkpoints ---------------------------------------------------------------------------------
    def save(self) -> Path | None:
        if not self.dist.is_main:
            return None
        t = self.trainer
        provenance = default_provenance("train")
        provenance.update({"iterations": t.iteration, "images_seen": t.iteration * self.cfg.batch,
                           "data": self.data_description, "world_size": self.dist.world_size,
                           "device": str(t.device)})
        path = checkpoint_path(self.run_dir, t.iteration)
        training = {**t.training_state(), "history": self.history}
        save_checkpoint(path, Checkpoint(t.model_config, t.networks_state(), training, provenance,
                                         t.checkpoint_extra()))
        existing = sorted((self.run_dir / "checkpoints").glob(CHECKPOINT_GLOB))
        for old in existing[: -self.cfg.keep_checkpoints]:
            old.unlink(missing_ok=True)
        return path

    # ----- periodic outputs ----------------------------------------------------------------------------
    @torch.no_grad()
    def write_samples(self) -> None:
        """The family's sample grids (StyleMapGAN: samples and reconstructions; SemanticStyleGAN: samples beside
        their segmentations)."""
        t = self.trainer
        for tag, grid in t.sample_grids(self.fixed_z, self.fixed_real).items():
            self.logger.image(tag, t.iteration, grid)

    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        """The family's validation figures (StyleMapGAN: reconstruction MSE / LPIPS of held-out images;
        SemanticStyleGAN: mask consistency and class coverage of fixed samples), logged to val.jsonl."""
        if not self.dist.is_main:
            return None
        values = self.trainer.validation_metrics(self.val_data, self.cfg.val_count)
        if values is not None:
            self.logger.scalars("val.jsonl", self.trainer.iteration, values, "val")
        return values

    # ----- the loop ------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        t, cfg = self.trainer, self.cfg
        existing = sorted((self.run_dir / "checkpoints").glob(CHECKPOINT_GLOB))
        last: Path | None = existing[-1] if existing else None  # what a run with nothing left to do reports
        stopped = False
        start_iter, start_time = t.iteration, time.time()
        if start_iter >= cfg.iters and self.dist.is_main:  # e.g. a recipe step the run has already passed
            print(f"nothing to train: {self.run_dir} is at iteration {start_iter}, the total is {cfg.iters}; "
                  "settings given with --resume were not applied", file=sys.stderr)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.iters, initial=t.iteration, dynamic_ncols=True, mininterval=1.0,
                       file=sys.stderr, unit="it")
        try:
            with StopRequest() as stop:
                while t.iteration < cfg.iters:
                    losses = t.train_step()
                    i = t.iteration
                    if i % cfg.log_every == 0 or i == 1:
                        elapsed = max(time.time() - start_time, 1e-9)
                        rate = (i - start_iter) / elapsed
                        self.logger.scalars("log.jsonl", i, {**losses, "it_per_s": rate,
                                                              "img_per_s": rate * cfg.batch}, "train")
                    if bar is not None:
                        bar.update(1)
                        rate = bar.format_dict.get("rate") or 0.0
                        bar.set_postfix(img_s=f"{rate * cfg.batch:.1f}", **t.progress_fields(losses), refresh=False)
                    if i % cfg.sample_every == 0:
                        self.write_samples()
                    if i % cfg.val_every == 0:
                        self.validate()
                    if i % cfg.checkpoint_every == 0 or i == cfg.iters:
                        last = self.save() or last
                        barrier(self.dist)
                    flag = torch.tensor([1.0 if stop.requested else 0.0], device=self.trainer.device)
                    if all_mean(flag, self.dist).item() > 0:
                        stopped = True
                        if i % cfg.checkpoint_every != 0:
                            last = self.save() or last
                        barrier(self.dist)
                        break
        except TrainingDiverged as exc:  # every rank raises it at the same iteration (`finite_losses`)
            self.ranks_stopped_together = True
            self.logger.close()
            if self.dist.is_main:
                keep = latest_checkpoint(self.run_dir) if list((self.run_dir / "checkpoints").glob(
                    CHECKPOINT_GLOB)) else None
                self.discard_if_failed()
                raise TrainingDiverged(f"{exc}; stopped without saving; last good checkpoint: {keep}") from None
            raise
        except BaseException:
            self.logger.close()
            self.discard_if_failed()
            raise
        finally:
            t.close()  # the data loader's workers exit now, not whenever the interpreter gets to them
            if bar is not None:
                bar.close()
            self.logger.close()
        self.ranks_stopped_together = True
        if self.dist.is_main:
            self.write_samples()
        return RunResult(t.iteration, stopped, last)

    def discard_if_failed(self) -> None:
        """After a failure: the run directory goes if this run created it and saved no checkpoint into it."""
        if self.created_run_dir and self.dist.is_main:
            self.logger.close()
            discard_failed_run_dir(self.run_dir)

    def close(self) -> None:
        """Leave the process group; call it after reporting how the run ended. Where the ranks stopped together,
        each waits here for the others, so no rank exits (and has torchrun stop the rest) before all have
        reported."""
        shutdown(self.dist, wait_for_others=self.ranks_stopped_together)
