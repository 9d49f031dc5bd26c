"""The trainer factory: Lightning owns devices, DDP, SLURM, precision, checkpointing and progress."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, RichProgressBar
from pytorch_lightning.loggers import CSVLogger, Logger

from freepoint_bench.engine.presets import TrainPreset
from freepoint_bench.errors import ConfigError
from freepoint_bench.models.checkpoint import RESUME_SHA256_KEY, STATE_SHA256_KEY, resume_sha256, weights_sha256

log = logging.getLogger(__name__)

LAST_CKPT = "last.ckpt"


def last_checkpoint(out_dir: str | Path) -> Path | None:
    """Returns the Lightning checkpoint a run in `out_dir` left behind to resume from, or None.

    The newest complete file of `last.ckpt` (a link to the newest epoch file) and `epoch=*.ckpt`: a kill inside
    Lightning's epoch-end save leaves either both epoch files with `last.ckpt` still linking to the older one, or
    the link dangling beside the newer one. A damaged file (unreadable, or any part of it, weights, optimiser and
    scheduler state, loop counters, other than the sha256 recorded when it was saved) is moved aside to
    `<file>.damaged` with a warning and the next newest is tried; None: the stage trains from its first epoch."""
    folder = Path(out_dir) / "lightning"
    if not folder.is_dir():
        return None
    last = folder / LAST_CKPT
    found: dict[Path, Path] = {}  # resolved -> as named (last.ckpt first, so a link is moved aside with its file)
    for path in [last, *folder.glob("epoch=*.ckpt")]:
        if path.is_file():
            found.setdefault(path.resolve(), path)
    newest_first = sorted(found.values(), key=lambda p: (p.stat().st_mtime_ns, p.resolve().name), reverse=True)
    for path in newest_first:
        if not path.is_file():  # the file last.ckpt linked to, already moved aside
            continue
        problem = _damage(path)
        if problem is None:
            return path
        log.warning("%s: damaged resume checkpoint (%s); moved aside", path, problem)
        for item in {path.resolve(), path}:  # last.ckpt links to the epoch file
            if item.exists() or item.is_symlink():
                item.rename(item.with_name(item.name + ".damaged"))
    if last.is_symlink() or found:
        log.warning("%s: no readable resume checkpoint; training this stage again from its first epoch", folder)
    return None


def _damage(path: Path) -> str | None:
    """Returns what is wrong with a Lightning checkpoint file, None when it loads and every part matches the
    sha256 recorded when it was saved (older files: their weights, the one part they recorded)."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a damaged file
        return f"unreadable ({str(e).splitlines()[0][:120]})"
    if not isinstance(blob, dict) or "state_dict" not in blob:
        return "not a Lightning checkpoint"
    recorded = blob.get(RESUME_SHA256_KEY)
    if recorded is not None:
        if not isinstance(recorded, dict):
            return "its sha256 record is malformed"
        now = resume_sha256(blob)
        if recorded.keys() != now.keys():
            odd = ", ".join(sorted(map(str, recorded.keys() ^ now.keys())))
            return f"its parts differ from those recorded when it was saved ({odd})"
        changed = sorted(k for k in now if now[k] != recorded[k])
        return f"its {', '.join(changed)} differ from the sha256 recorded when it was saved" if changed else None
    legacy = blob.get(STATE_SHA256_KEY)
    if legacy is None:  # every module of this project records one: the record's own bytes were damaged
        return "it carries no sha256 record"
    if legacy != weights_sha256(blob["state_dict"]):
        return "its weights differ from the sha256 recorded when it was saved"
    return None


def resolve_accelerator(preset: TrainPreset) -> str:
    """Returns "cpu" or "gpu": the preset's accelerator; "auto"/"gpu" fall back to cpu without CUDA."""
    if preset.accelerator == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "gpu"
    if preset.accelerator == "gpu":
        log.warning("preset %r asks for a GPU but CUDA is not available; training on the CPU", preset.name)
    return "cpu"


def check_devices(devices: int | str, nodes: int = 1) -> int | str:
    """Returns devices as Lightning takes them: an int >= 1, -1 (all), "auto" or GPU ids "0,1"; ConfigError for
    any other devices or for nodes < 1."""
    if nodes < 1:
        raise ConfigError(f"nodes must be >= 1; got {nodes}")
    if isinstance(devices, str):
        text = devices.strip()
        if text.lstrip("-").isdigit():
            devices = int(text)
        elif text == "auto":
            return text
        elif all(part.strip().isdigit() for part in text.split(",")):
            return text  # explicit GPU indices
        else:
            raise ConfigError(
                f"devices must be a count (1, 4), -1 or auto for all, or GPU ids such as 0,1; got {devices!r}")
    if devices == 0 or devices < -1:
        raise ConfigError(f"devices must be >= 1 (or -1 / auto for all); got {devices}")
    return devices


def make_trainer(
    preset: TrainPreset,
    out_dir: str | Path,
    max_epochs: int,
    devices: int | str = 1,
    nodes: int = 1,
    enable_progress_bar: bool = True,
    callbacks: Sequence[Callback] = (),
    log_every_n_steps: int = 10,
    logger: Logger | None = None,
    max_steps: int | None = None,
    checkpoint_every_n_epochs: int = 1,
) -> pl.Trainer:
    """Returns a Lightning Trainer writing `lightning/last.ckpt` (every checkpoint_every_n_epochs epochs) and CSV
    logs under `out_dir`.

    logger: an experiment tracker's logger (engine.loggers) that gets every metric too, besides the CSV log.
    max_steps: the budget in optimiser steps, counted across resumes (Lightning's global step, in last.ckpt); the
    run stops there, inside an epoch if need be, and max_epochs is not read (an epoch-based schedule's total, the
    trainer's estimated_stepping_batches, is then max_steps). None: max_epochs epochs.

    CPU: accelerator cpu, full precision. GPU: the preset's precision (mixed by default) and Lightning's
    DDP strategy when devices * nodes > 1; under SLURM Lightning detects the cluster environment itself.
    Resume by passing `last_checkpoint(out_dir)` as `ckpt_path` to `trainer.fit`.
    """
    if max_epochs < 1:
        raise ConfigError(f"max_epochs must be >= 1; got {max_epochs}")
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"max_steps must be >= 1; got {max_steps}")
    if checkpoint_every_n_epochs < 1:
        raise ConfigError(f"checkpoint_every_n_epochs must be >= 1; got {checkpoint_every_n_epochs}")
    devices = check_devices(devices, nodes)
    out_dir = Path(out_dir)
    accelerator = resolve_accelerator(preset)
    precision = preset.precision if accelerator == "gpu" else "32-true"
    if accelerator == "cpu" and (not isinstance(devices, int) or devices == -1):
        devices = 1  # "auto", "all" and GPU ids mean one process on a CPU-only machine
    many = nodes > 1 or (isinstance(devices, int) and devices > 1) or devices == -1 or (
        isinstance(devices, str) and "," in devices.strip(","))
    strategy = "ddp" if many else "auto"
    checkpoint = ModelCheckpoint(
        dirpath=out_dir / "lightning",
        filename="{epoch:03d}",
        # the newest epoch's checkpoint (older ones are deleted) and last.ckpt, a link to it, from which
        # a killed run resumes; Lightning writes `last` only when it saved a top-k file that epoch
        save_last="link",
        save_top_k=1,
        every_n_epochs=checkpoint_every_n_epochs,
        save_on_train_epoch_end=True,
    )
    all_callbacks: list[Callback] = [checkpoint, *callbacks]
    csv = CSVLogger(out_dir, name="logs")  # one version_<n> folder per (re)start
    if enable_progress_bar:
        all_callbacks.append(RichProgressBar(leave=True))
    return pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=nodes,
        strategy=strategy,
        precision=precision,
        max_epochs=max_epochs if max_steps is None else -1,
        max_steps=-1 if max_steps is None else max_steps,
        default_root_dir=out_dir,
        logger=csv if logger is None else [csv, logger],
        callbacks=all_callbacks,
        enable_progress_bar=enable_progress_bar,
        enable_model_summary=False,
        gradient_clip_val=preset.grad_clip,
        log_every_n_steps=log_every_n_steps,
        num_sanity_val_steps=0,
        deterministic=False,
        use_distributed_sampler=True,
    )


def fit(trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule,
        ckpt_path: str | Path | None = None) -> None:
    """Runs `trainer.fit` (resuming from `ckpt_path` when given), muting Lightning's worker-count hint."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        trainer.fit(module, datamodule=datamodule, ckpt_path=None if ckpt_path is None else str(ckpt_path))
