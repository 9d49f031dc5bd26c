"""Training a pretext method's backbone: the config, the module, a stage and the method, shared by every method.

    config = make_config(PointContrastConfig, "cpu-small", PRESETS, overrides)   # routed, validated overrides
    prepare_run(out_dir, run_record(name, config, names), resume=..., overwrite=...)   # pretext.runs
    meta = checkpoint_metadata(name, store, names, config, config.train, module.backbone)   # pretext.runs
    metrics = train_stage(module, datamodule, out_dir / "train", run_epochs(config, len(names)), meta, resume=...)
    result = publish({**meta, "metrics": {"train": metrics}}, {"backbone": module.backbone}, checkpoints_dir)

TrainedPretext does all of that for a method that trains a BackboneModule in one stage: a method subclasses it
with its config class, presets, module (build_module) and data (build_data). A run folder holds:

    out_dir/run.json                the method, its config and the scene list (a resume must match them)
    out_dir/train/lightning/        Lightning's last.ckpt (resume point of an interrupted run)
    out_dir/train/logs/             CSV loss logs
    out_dir/train/backbone.ckpt     the trained backbone, out_dir/train/done.json its metrics (a finished run)

A method with more stages (FreePoint's two steps) calls train_stage once per stage, each in its own folder. The
published checkpoint follows the checkpoint contract: the backbone FreePoint builds from the same TrainPreset
(engine.module.segmenter_config(preset).backbone), saved with save_model_checkpoint and listed in
checkpoints_dir/index.json under `<method>-<dataset>-<hash>` (pretext.runs.publish).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pydantic import BaseModel, ConfigDict, Field, model_serializer
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_only

from freepoint_bench.atomic import stable_hash, write_json
from freepoint_bench.config import apply_overrides, check_key, omit_at_default, route_bare, validated
from freepoint_bench.engine.checkpoints import load_model, save_model_checkpoint
from freepoint_bench.engine.loggers import Tracker, stage_logger
from freepoint_bench.engine.module import EpochProgress, LossTrackingModule, segmenter_config
from freepoint_bench.engine.presets import TrainPreset, get_preset
from freepoint_bench.engine.trainer import check_devices, fit, last_checkpoint, make_trainer
from freepoint_bench.errors import CheckpointError, ConfigError
from freepoint_bench.models.backbone import Res16UNet
from freepoint_bench.pretext.base import PretrainResult, ProgressFn
from freepoint_bench.pretext.runs import checkpoint_metadata, prepare_run, publish, read_json, run_record

log = logging.getLogger(__name__)

STAGE = "train"


# ---------------------------------------------------------------------------------------------- config


class OptimConfig(BaseModel):
    """Optimiser and per-step LR schedule of a baseline (SGD as PointContrast / CSC / DepthContrast).

    exponential: lr * gamma ** (k // decay_every) (PointContrast's and CSC's ExponentialLR, stepped every
    lr_update_freq iterations), where k counts optimiser steps, or with reference_batch set, steps of that global
    batch: k = samples seen // reference_batch = step * global batch // reference_batch. The originals' decay is
    calibrated to their global batch of 32; counted in this run's steps, a run at batch 4 on one device (8x the
    steps for the same samples) decays 8x as often. With reference_batch the rate is the original's function of
    samples seen on any batch size, device count and accumulation. cosine: from lr down to final_lr over the run
    (DepthContrast), the same function of the run's fraction whatever the batch; constant: lr throughout.
    poly: lr * (1 - k / (n + 1)) ** power, CSC's PolyLR (facebookresearch/ContrastiveSceneContexts
    downstream/semseg/lib/solvers.py, stepped once per iteration by lib/ddp_trainer.py, max_iter its n) with n the
    run's total optimiser steps and k the steps taken, or with reference_batch set both counted in steps of that
    global batch (k as above, n = total_steps * global batch // reference_batch), so that a run that sees the
    original's samples ends on the original's last rate on any batch and device count.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)  # PointContrast / CSC defaults.yaml opt.lr
    momentum: float = Field(0.8, ge=0, lt=1)  # PointContrast / CSC opt.momentum (DepthContrast: 0.9)
    dampening: float = Field(0.1, ge=0, lt=1)  # PointContrast / CSC opt.sgd_dampening
    weight_decay: float = Field(1e-4, ge=0)  # all three: 1e-4
    schedule: Literal["exponential", "cosine", "constant", "poly"] = "exponential"
    gamma: float = Field(0.99, gt=0, le=1)  # ExpLR factor (PointContrast / CSC opt.exp_gamma)
    decay_every: int = Field(250, ge=1)  # steps between ExpLR factors (their launch scripts' lr_update_freq)
    final_lr: float = Field(0.0, ge=0)  # cosine end point (DepthContrast: base_lr / 1000)
    # global batch (scenes per optimiser step, all devices) that decay_every's (and poly's) steps are counted at;
    # None: this run's own optimiser steps. Left out of the config's record at None (configs keep their ids).
    reference_batch: int | None = Field(None, ge=1)
    # poly's exponent (CSC downstream/semseg config/default.yaml optimizer.poly_power). Left out of the record at
    # its default, so configs without it keep their ids.
    power: float = Field(0.9, gt=0)

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        return omit_at_default(self, handler(self), ("reference_batch", "power"))

    def lr_factor(self, step: int, global_batch: int, total_steps: int) -> float:
        """Returns the factor on lr after `step` optimiser steps of `global_batch` scenes in a run of total_steps."""
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "exponential":
            k = step if self.reference_batch is None else step * global_batch // self.reference_batch
            return self.gamma ** (k // self.decay_every)
        total = max(int(total_steps), 1)
        if self.schedule == "poly":
            k, n = step, total
            if self.reference_batch is not None:
                k, n = step * global_batch // self.reference_batch, max(total * global_batch // self.reference_batch, 1)
            return (1 - min(k, n) / (n + 1)) ** self.power
        floor = self.final_lr / self.lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))

    def build(self, params: Any, total_steps: int, global_batch: int) -> Any:
        """Returns Lightning's optimizer (and per-step scheduler) config over `params` for a run of total_steps
        optimiser steps of `global_batch` scenes each (see global_batch)."""
        if self.optimizer == "sgd":
            optimizer = torch.optim.SGD(
                params, lr=self.lr, momentum=self.momentum, dampening=self.dampening, weight_decay=self.weight_decay
            )
        else:
            optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.schedule == "constant":
            return optimizer
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: self.lr_factor(step, global_batch, total_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class SampleBudget(BaseModel):
    """A pretraining budget in samples seen: `iterations` optimiser steps of `batch` scenes, the global batch (all
    devices) they were counted at, as an original's launch script gives them (PointContrast: 60k iterations of 32).

    A run of it trains epochs(scenes) = ceil(iterations × batch / scenes) passes over its scenes, each scene once a
    pass whatever the run's own batch and device count (DDP shards a pass), so it sees at least the original's
    samples on any dataset size, batch and device count; with OptimConfig.reference_batch = batch its rate falls
    as the original's over them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    iterations: int = Field(ge=1)  # the original's optimiser steps (its launch script's max_iter)
    batch: int = Field(ge=1)  # the original's global batch: scenes (view pairs, frames) per step over all devices

    @property
    def samples(self) -> int:
        """Returns the scenes the budget sees: iterations × batch."""
        return self.iterations * self.batch

    def epochs(self, scenes: int) -> int:
        """Returns the passes over `scenes` scenes that see at least `samples`: ceil(samples / scenes)."""
        if scenes < 1:
            raise ConfigError("a sample budget needs at least one pretraining scene; check the split or --scene")
        return -(-self.samples // scenes)

    def record(self, scenes: int) -> dict[str, int]:
        """Returns the checkpoint's record of the budget on `scenes` scenes: iterations, batch, samples, scenes and
        the epochs they derive."""
        return {"iterations": self.iterations, "batch": self.batch, "samples": self.samples, "scenes": int(scenes),
                "epochs": self.epochs(scenes)}


def run_epochs(config: Any, scenes: int) -> int:
    """Returns the passes over `scenes` scenes a one-stage method's config trains: its budget's epochs where it sets a
    `budget` (SampleBudget), else its `epochs`."""
    budget = getattr(config, "budget", None)
    return int(config.epochs) if budget is None else budget.epochs(scenes)


_DECODER = "it pretrains the backbone only and never builds the query decoder"
# TrainPreset fields a one-stage backbone method (TrainedPretext) never reads. Setting one would change nothing but
# the config's hash, so the checkpoint id of an identical training would differ: make_config refuses them, and a
# run's shared --pretrain-set skips them for such a method (pretext.base.applicable_overrides).
# tests/baselines/test_unread_fields.py trains every such method with all of them changed and gets the same weights.
UNREAD_TRAIN_FIELDS: dict[str, str] = {
    **dict.fromkeys(("num_queries", "decoder_hidden", "decoder_layers", "decoder_heads", "decoder_ffn",
                     "query_features", "spatial_prior", "spatial_scale", "spatial_relative", "voxels_per_query"),
                    _DECODER),
    **dict.fromkeys(("min_instance_voxels", "max_loss_points"), "it trains on no instance masks"),
    **dict.fromkeys(("epochs1", "epochs2"), "it trains in one stage: set epochs"),
    "lr": "its optimiser is the optim group: set optim.lr",
    "weight_decay": "its optimiser is the optim group: set optim.weight_decay",
    "schedule": "its optimiser is the optim group: set optim.schedule",
    "onecycle_pct_start": "its schedule is optim.schedule (exponential, cosine, poly or constant), never OneCycle",
}


def make_config(cls: type[BaseModel], preset: str, presets: dict[str, dict], overrides: dict[str, Any],
                unread: Mapping[str, str] = UNREAD_TRAIN_FIELDS) -> Any:
    """Returns a validated `cls` for training preset `preset` (cpu-small / paper) with `overrides` applied.

    presets[preset] holds the method's own values for that preset: "train" (TrainPreset overrides) and the
    other sub-configs (dicts), plus bare method fields. An override key is `<group>.<field>` for a sub-config
    (train.lr, views.crop_fraction, optim.momentum), a bare method field (temperature, epochs), or a bare
    TrainPreset field (batch_size, seed). A TrainPreset field in `unread` (key → why) is refused, bare or as
    `train.<field>`; so is an unknown key (freepoint_bench.config.apply_overrides names the known ones). Where
    `cls` has a `budget` (SampleBudget), an `epochs` override replaces the preset's budget (`budget=none` does too).
    """
    if preset not in presets:
        raise ConfigError(f"unknown training preset {preset!r}; choose one of {sorted(presets)}")
    groups = {
        k for k, f in cls.model_fields.items() if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
    }
    base = presets[preset]
    # a sub-config starts from the field's own default (e.g. DepthContrast's OptimConfig), train from the preset
    values: dict[str, Any] = {
        g: {**({} if g == "train" else cls.model_fields[g].default.model_dump()), **base.get(g, {})} for g in groups
    }
    values.update({k: v for k, v in base.items() if k not in groups})
    routed = route_bare(overrides, cls, "train")  # a bare TrainPreset field (batch_size, augment.rotate_z) → train.
    if "budget" in cls.model_fields and "epochs" in routed:
        # a sample budget derives the epochs from the scenes: an explicit epochs replaces the preset's budget
        if routed.get("budget") is not None:
            raise ConfigError(f"{cls.__name__}: epochs and budget both given; a budget derives the epochs from the "
                              "pretraining scenes: give one of them")
        values["budget"] = None
    train_overrides = {k[len("train."):]: v for k, v in routed.items() if k.startswith("train.")}
    values = apply_overrides(values, {k: v for k, v in routed.items() if not k.startswith("train.")}, cls, cls.__name__)
    for key in train_overrides:
        field = key.partition(".")[0]
        if field in unread:
            raise ConfigError(f"{cls.__name__} does not read training preset field {field!r}: {unread[field]}")
        check_key(TrainPreset, key, "training preset")
    train = get_preset(preset, **{**values.pop("train"), **train_overrides})
    return validated(cls, {"train": train, **values}, cls.__name__)


# ---------------------------------------------------------------------------------------------- the module


def build_backbone(preset: TrainPreset) -> Res16UNet:
    """Returns the backbone FreePoint's segmenter has for `preset`, initialised from preset.seed."""
    torch.manual_seed(preset.seed)
    return Res16UNet(segmenter_config(preset).backbone)


class BackboneModule(LossTrackingModule):
    """A LossTrackingModule training `self.backbone` (plus any heads a subclass adds) with an OptimConfig.

    Subclasses compute their loss terms in training_step and return `self.record(terms, size)` (logs them and keeps
    the per-scene epoch means over all ranks in `loss_history`, saved in Lightning's checkpoints for resumes).
    """

    def __init__(self, preset: TrainPreset, optim: OptimConfig, hparams: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters(hparams)  # plain types: Lightning's checkpoints load with weights_only
        self.preset, self.optim = preset, optim
        self.backbone = build_backbone(preset)

    def trainable_parameters(self) -> Any:
        """Returns the parameters the optimiser updates (default: all; MoCo leaves its key encoder out)."""
        return self.parameters()

    def configure_optimizers(self) -> Any:
        """Returns the OptimConfig's optimiser and schedule over the run's steps."""
        return self.optim.build(self.trainable_parameters(), int(self.trainer.estimated_stepping_batches),
                                global_batch(self.trainer, self.preset.batch_size))


def global_batch(trainer: pl.Trainer, batch_size: int) -> int:
    """Returns the scenes one optimiser step of `trainer` sees at `batch_size` per device: batch_size x devices x
    nodes x accumulated batches (nominal: an epoch's short last batch counts as a full one)."""
    return int(batch_size) * int(trainer.world_size) * int(trainer.accumulate_grad_batches)


# ---------------------------------------------------------------------------------------------- training


def train_stage(
    module: LossTrackingModule,
    datamodule: pl.LightningDataModule,
    stage_dir: Path,
    epochs: int,
    meta: dict[str, Any],
    *,
    resume: bool = False,
    devices: int | str = 1,
    nodes: int = 1,
    progress: ProgressFn | None = None,
    stage: str = STAGE,
    enable_progress_bar: bool = False,
    callbacks: Sequence[Callback] = (),
    part: str = "backbone",
    stage_metrics: Callable[[pl.Trainer], dict[str, Any]] | None = None,
    tracker: Tracker | None = None,
) -> dict[str, Any]:
    """Returns the metrics of training `module` (with `module.preset`) for `epochs` epochs in `stage_dir`.

    A finished stage (resume=True, <part>.ckpt present: written atomically with the stage's metrics inside, it is
    the commit point) is not trained again: its weights are loaded into `module.<part>` and its recorded metrics
    returned (done.json written again from the checkpoint's metrics when a kill came between the two writes). An
    interrupted one resumes from its last.ckpt. Rank 0 writes stage_dir/<part>.ckpt (module.<part>: "backbone", or
    FreePoint's "segmenter", with `meta` plus {"metrics": {stage: metrics}}), then done.json. The metrics:
    stage_metrics(trainer) (default: epochs and optimiser steps), then the module's loss_summary. tracker: the
    experiment tracker the stage logs to beside its CSV log
    (engine.loggers; run: the run folder's name, version: `stage`).
    """
    devices = check_devices(devices, nodes)
    weights, done_file = stage_dir / f"{part}.ckpt", stage_dir / "done.json"
    if resume and weights.is_file():
        # the stage's weights file (written atomically, its metrics inside) is the finished stage's commit point:
        # done.json is derived from it, so a kill between the two writes does not train (or rewrite) it again
        _, saved = load_model(weights, part, into=getattr(module, part))
        if saved.get("part") != part:
            raise CheckpointError(f"{weights}: holds a {saved.get('part')!r}, not a {part}; delete the run dir")
        log.info("%s already finished; skipping its training", stage_dir)
        if done_file.is_file():
            return read_json(done_file)
        metrics = saved.get("metrics", {}).get(stage)
        if metrics is None:
            raise CheckpointError(
                f"{weights}: records no metrics of stage {stage!r}; delete {stage_dir} to train it again"
            )
        if rank_zero_only.rank == 0:
            write_json(done_file, metrics)
        return metrics
    ckpt = last_checkpoint(stage_dir) if resume else None
    if ckpt is not None:
        log.info("resuming from %s", ckpt)
    extra = list(callbacks)
    if progress is not None:
        extra.append(EpochProgress(progress, stage, epochs))
    trainer = make_trainer(
        module.preset,
        stage_dir,
        epochs,
        devices=devices,
        nodes=nodes,
        enable_progress_bar=enable_progress_bar,
        callbacks=extra,
        logger=stage_logger(tracker, stage_dir, stage_dir.parent.name, stage),
    )
    fit(trainer, module, datamodule, ckpt_path=ckpt)
    first = (
        stage_metrics(trainer) if stage_metrics is not None else {"epochs": epochs, "steps": int(trainer.global_step)}
    )
    metrics = {**first, **module.loss_summary()}
    if trainer.is_global_zero:
        save_model_checkpoint(weights, getattr(module, part), {**meta, "metrics": {stage: metrics}})
        write_json(done_file, metrics)
    return metrics


# ---------------------------------------------------------------------------------------------- the method


class TrainedPretext:
    """A PretextMethod that trains a backbone module on a datamodule in one Lightning stage.

    Subclasses set `name`, `config_cls` (a frozen pydantic model with fields `train: TrainPreset`, `epochs`
    and their own) and `presets` (see make_config), and implement build_module / build_data; input_extra
    says what their input differs in from make_sample's (recorded in the checkpoint's "input"). A config with a
    `budget` (SampleBudget) set trains the epochs it derives from the scenes instead of `epochs`, and its
    checkpoints record the budget (SampleBudget.record) under "budget".
    """

    name: str = ""
    config_cls: type[BaseModel]
    presets: dict[str, dict] = {}
    unread_fields: dict[str, str] = UNREAD_TRAIN_FIELDS  # refused by default_config, skipped in a shared override
    stage_epochs: dict[str, str] = {"epochs1": "epochs"}  # a run's shared first-stage budget is this method's epochs

    def default_config(self, preset: str = "cpu-small", **overrides: Any) -> Any:
        """Returns the method's config for training preset `preset` (cpu-small, paper) with `overrides` (see
        make_config: `train.<field>`, `views.<field>`, `optim.<field>`, a bare method or preset field)."""
        return make_config(self.config_cls, preset, self.presets, overrides, self.unread_fields)

    def build_module(self, config: Any) -> BackboneModule:
        """Returns a freshly initialised module for `config`."""
        raise NotImplementedError

    def build_data(self, store: Any, names: list[str], config: Any) -> pl.LightningDataModule:
        """Returns the datamodule of `names`."""
        raise NotImplementedError

    def build_run_data(
        self,
        store: Any,
        names: list[str],
        config: Any,
        out_dir: Path,
        *,
        workers: int | None = None,
        progress: ProgressFn | None = None,
    ) -> pl.LightningDataModule:
        """Returns the datamodule of `names` for the run in out_dir (default: build_data; a method that derives
        data worth keeping, as the frame-pair index, keeps it under out_dir, computed by `workers` processes
        (None: one per core) and reported to `progress`)."""
        return self.build_data(store, names, config)

    def input_extra(self, config: Any) -> dict[str, Any]:
        """Returns the checkpoint's "input" entries beyond input_metadata(preset) ({} by default)."""
        return {}

    def pretrain(
        self,
        store: Any,
        config: Any,
        out_dir: str | Path,
        *,
        names: list[str] | None = None,
        resume: bool = False,
        overwrite: bool = False,
        progress: ProgressFn | None = None,
        checkpoints_dir: str | Path = "checkpoints",
        devices: int | str = 1,
        nodes: int = 1,
        enable_progress_bar: bool = False,
        callbacks: Sequence[Callback] | None = None,
        **unused: Any,
    ) -> PretrainResult:
        """Returns the backbone checkpoint after training on `store`'s scenes (`names`, default: its train split).

        out_dir: the run directory (this module's docstring); resume / overwrite as FreePoint's
        (a resume needs the recorded config and scenes; a finished run only republishes its backbone).
        checkpoints_dir: where `<id>-backbone.ckpt` and index.json go. devices / nodes: Lightning's (DDP when
        more than one). label_workers: processes for the data a method derives before training (the frame-pair
        index; None: one per core). tracker: the experiment tracker (engine.loggers) the stage logs to. Other keyword
        arguments of the CLI are accepted and unused.
        """
        if not isinstance(config, self.config_cls):
            raise ConfigError(f"{self.name}: expected a {self.config_cls.__name__}, got {type(config).__name__}")
        out_dir = Path(out_dir)
        names = sorted(names if names is not None else store.names("train"))
        if not names:
            raise ConfigError("no scenes to pretrain on; check the split or the --scene selection")
        devices = check_devices(devices, nodes)
        prepare_run(out_dir, run_record(self.name, config, names), resume, overwrite)
        module = self.build_module(config)
        meta = checkpoint_metadata(
            self.name, store, names, config, config.train, module.backbone, self.input_extra(config)
        )
        if getattr(config, "budget", None) is not None:  # the original's budget and the epochs it gives here
            meta["budget"] = config.budget.record(len(names))
        data = self.build_run_data(
            store, names, config, out_dir, workers=unused.get("label_workers"), progress=progress
        )
        metrics = train_stage(
            module,
            data,
            out_dir / STAGE,
            run_epochs(config, len(names)),
            meta,
            resume=resume,
            devices=devices,
            nodes=nodes,
            progress=progress,
            enable_progress_bar=enable_progress_bar,
            callbacks=list(callbacks or []),
            tracker=unused.get("tracker"),
        )
        return publish(
            {**meta, "metrics": {STAGE: metrics}},
            {"backbone": module.backbone},
            Path(checkpoints_dir),
            write=rank_zero_only.rank == 0,
        )


def sample_rows(count: int, limit: int, seed: int, step: int, rank: int, device: torch.device | str) -> torch.Tensor:
    """Returns min(count, limit) distinct random rows of range(count), seeded by (seed, step, rank) so a resumed
    run draws what the uninterrupted one would have."""
    if count <= limit:
        return torch.arange(count, device=device)
    generator = torch.Generator().manual_seed(int(stable_hash(seed, step, rank, length=12), 16))
    return torch.randperm(count, generator=generator)[:limit].to(device)
