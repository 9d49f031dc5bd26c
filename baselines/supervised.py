"""The `supervised` baseline: semantic-segmentation pretraining of the backbone on labelled scans.

    method = get_method("supervised")
    config = method.default_config("cpu-small", epochs=20)
    result = method.pretrain(store, config, Path("runs/supervised"), names=train_names)
    result.backbone                  # checkpoints/supervised-<dataset>-<hash>-backbone.ckpt (+ index.json)
    result.metadata["data"]["scenes"]  # every scene it trained on: the harness's leakage guard reads it

The paper's "supervised" row (Tables 2 and 3) is fully supervised pretraining on ScanNet, fine-tuned on S3DIS.
Here a linear (or two-layer) head on the backbone's per-voxel output features is trained with cross-entropy
over the dataset's semantic classes (ScanNet: the 20 NYU40 classes of its semantic benchmark; S3DIS and the
synthetic rooms: the 13 S3DIS classes; points of other ids and unlabelled points, -1, are ignored). The input
is FreePoint's (engine.data.make_sample: rgb - 0.5 and normalised xyz per voxel, cropped and augmented as the
preset says), so the backbone loads into the same fine-tuning model as every other method's.

A run directory holds:

    out_dir/run.json                    the config and scene list (a resume must match them)
    out_dir/train/lightning/last.ckpt   Lightning's resume point of an interrupted run
    out_dir/train/logs/                 CSV loss logs
    out_dir/train/segmentation.ckpt     backbone + head (for semantic_probe), out_dir/train/done.json its losses
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_only
from torch import nn
from torch.utils.data import DataLoader, Dataset

from freepoint_bench.atomic import stable_hash, write_json
from freepoint_bench.data.classes import S3DIS_CLASSES
from freepoint_bench.engine.checkpoints import (
    code_version,
    data_description,
    environment,
    input_metadata,
    input_preset,
    register_checkpoint,
    save_model_checkpoint,
)
from freepoint_bench.engine.data import EpochSampler, batch_to_device, collate, make_sample
from freepoint_bench.engine.module import segmenter_config
from freepoint_bench.engine.presets import TrainPreset, get_preset
from freepoint_bench.engine.trainer import check_devices, fit, last_checkpoint, make_trainer
from freepoint_bench.errors import CheckpointError, ConfigError, DataError
from freepoint_bench.models.backbone import BackboneConfig, Res16UNet
from freepoint_bench.models.checkpoint import load_checkpoint, load_into, save_checkpoint
from freepoint_bench.pretext.base import PretrainResult, ProgressFn

log = logging.getLogger(__name__)

IGNORE = -1  # the Scene convention for unlabelled points; also the ignore index of the loss
RUN_FILE = "run.json"
HISTORY_KEY = "supervised_loss_history"

# NYU40 ids of the 20 classes of ScanNet's semantic-segmentation benchmark (wall, floor, cabinet, bed, chair, sofa,
# table, door, window, bookshelf, picture, counter, desk, curtain, refrigerator, shower curtain, toilet, sink,
# bathtub, otherfurniture): what ScanNet semantic segmentation (and the PointContrast / CSC fine-tuning) trains on.
SCANNET_SEMANTIC_IDS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
DATASET_CLASSES: dict[str, tuple[int, ...]] = {
    "scannet": SCANNET_SEMANTIC_IDS,
    "scannet-npy": SCANNET_SEMANTIC_IDS,
    "s3dis": tuple(range(len(S3DIS_CLASSES))),
    "synthetic": tuple(range(len(S3DIS_CLASSES))),  # the synthetic rooms are labelled like S3DIS
}


class SupervisedConfig(BaseModel):
    """Everything that defines a supervised pretraining run (the resume check compares all of it).

    Of the preset (`train`), the backbone, voxels, crops, augmentation, batch size, workers, accelerator and
    seed are used; its AdamW fields (lr, weight_decay, schedule, epochs1/2) are not: this method has its own
    SGD recipe below.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    train: TrainPreset = get_preset("cpu-small")
    epochs: int = Field(30, ge=1)  # passes over the training scans
    lr: float = Field(0.1, gt=0)  # SGD learning rate (PointContrast / CSC semantic segmentation: 0.1 per ~6 scans)
    momentum: float = Field(0.9, ge=0, lt=1)  # SGD momentum (PointContrast / CSC fine-tuning: 0.9)
    weight_decay: float = Field(1e-4, ge=0)  # (PointContrast / CSC: 1e-4)
    # per-step LR decay: poly (1 - t/T)^poly_power (CSC's semantic segmentation, PolyLR), cosine to 0,
    # exponential lr * gamma^epoch, or constant
    schedule: Literal["poly", "cosine", "exponential", "constant"] = "cosine"
    poly_power: float = Field(0.9, gt=0)  # PolyLR power (CSC: 0.9)
    gamma: float = Field(0.99, gt=0, le=1)  # exponential decay per epoch (PointContrast's ExponentialLR: 0.99)
    head: Literal["linear", "mlp"] = "linear"  # classifier on the backbone's per-voxel features
    head_hidden: int = Field(64, ge=1)  # hidden width of the mlp head (Linear-BN-ReLU-Linear)
    # semantic ids trained on, in class order; None: the dataset's (DATASET_CLASSES), else every id in the scans
    classes: tuple[int, ...] | None = None


PRESETS: dict[str, dict[str, Any]] = {
    # A CPU run in minutes: FreePoint's cpu-small backbone and input, SGD with a cosine decay.
    "cpu-small": {"epochs": 30, "schedule": "cosine"},
    # CSC's ScanNet semantic segmentation (downstream/semseg/scripts/train_scannet.sh): 20k iterations of 48
    # scans (~800 passes over the 1201 training scans), lr 0.8 for 48 scans (0.1 for ~6 by linear scaling),
    # PolyLR; the paper preset's batch is 5 scans per device.
    "paper": {"epochs": 800, "schedule": "poly"},
}


def supervised_config(preset: str = "cpu-small", **overrides: Any) -> SupervisedConfig:
    """Returns a SupervisedConfig on training preset `preset`; overrides are fields of SupervisedConfig (epochs, lr,
    head, classes, ...) or of the preset (`train.<field>`, or a bare preset field such as batch_size)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown training preset {preset!r}; choose one of {sorted(PRESETS)}")
    own, train = dict(PRESETS[preset]), {}
    for key, value in overrides.items():
        head, _, tail = key.partition(".")
        if head == "train" and tail:
            train[tail] = value
        elif key in SupervisedConfig.model_fields and key != "train":
            own[key] = value
        elif key in ("epochs1", "epochs2"):
            raise ConfigError(f"supervised pretraining has one stage; set epochs=N (--set epochs=N), not {key}")
        else:
            train[key] = value
    try:
        return SupervisedConfig(train=get_preset(preset, **train), **own)
    except ConfigError:
        raise
    except Exception as e:  # pydantic's ValidationError → one line
        errors = getattr(e, "errors", None)
        text = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in errors()) if callable(errors) else e
        raise ConfigError(f"invalid supervised config: {text}") from None


# ---------------------------------------------------------------------------------------------- labels


def resolve_classes(config: SupervisedConfig, dataset: str, store: Any, names: Sequence[str]) -> tuple[int, ...]:
    """Returns the semantic ids trained on: config.classes, the dataset's classes, or every id in the scans."""
    if config.classes is not None:
        classes = tuple(int(c) for c in config.classes)
    elif dataset in DATASET_CLASSES:
        classes = DATASET_CLASSES[dataset]
    else:
        found: set[int] = set()
        for name in names:
            sem = store.load(name).semantic
            if sem is not None:
                found.update(int(c) for c in np.unique(sem[sem >= 0]))
        classes = tuple(sorted(found))
    if not classes:
        raise DataError(f"no semantic classes to train on in the {len(names)} scenes; they carry no semantic labels")
    if len(set(classes)) != len(classes) or min(classes) < 0:
        raise ConfigError(f"classes must be distinct semantic ids >= 0; got {list(classes)}")
    return classes


def class_lookup(classes: Sequence[int]) -> np.ndarray:
    """Returns (max id + 2,) int64: lookup[semantic + 1] is the class index of a semantic id (-1 → -1, others -1)."""
    lookup = np.full(max(classes) + 2, IGNORE, dtype=np.int64)
    lookup[np.asarray(classes, dtype=np.int64) + 1] = np.arange(len(classes))
    return lookup


def point_classes(semantic: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """Returns (N,) int64 class indices of semantic ids (-1 and ids outside the classes → -1)."""
    semantic = np.asarray(semantic, dtype=np.int64)
    out = np.full(len(semantic), IGNORE, dtype=np.int64)
    inside = (semantic >= 0) & (semantic + 1 < len(lookup))
    out[inside] = lookup[semantic[inside] + 1]
    return out


def voxel_labels(labels: np.ndarray, inverse: np.ndarray, num_voxels: int) -> np.ndarray:
    """Returns (M,) int64 the most frequent label of each voxel's labelled points (ties: the smallest label),
    -1 for voxels holding no labelled point. labels: (N,) int64, -1 = ignore; inverse: (N,) voxel per point."""
    out = np.full(num_voxels, IGNORE, dtype=np.int64)
    keep = labels >= 0
    if not keep.any():
        return out
    width = int(labels[keep].max()) + 1
    counts = np.bincount(inverse[keep] * width + labels[keep], minlength=num_voxels * width).reshape(num_voxels, width)
    has = counts.sum(axis=1) > 0
    out[has] = counts[has].argmax(axis=1)  # argmax returns the first (smallest) label among ties
    return out


# ---------------------------------------------------------------------------------------------- data


class SemanticDataset(Dataset):
    """Voxelised samples of `names` with per-voxel class labels (keys of engine.data.make_sample + "labels" (M,)).

    Indexing with an int uses epoch 0; with (epoch, index) keys from EpochSampler (seeds crops and augmentation).
    """

    def __init__(self, store: Any, names: Sequence[str], preset: TrainPreset, classes: Sequence[int],
                 train: bool = True) -> None:
        self.store, self.names, self.preset, self.train = store, list(names), preset, train
        self.lookup = class_lookup(classes)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = (0, key) if isinstance(key, int | np.integer) else key
        scene = self.store.load(self.names[index])
        if scene.semantic is None:
            raise DataError(f"scene {scene.name}: no semantic labels; supervised pretraining needs labelled scans")
        rng = np.random.default_rng([self.preset.seed, int(epoch), int(index)])
        sample = make_sample(scene, self.preset, None, rng=rng, train=self.train)
        labels = point_classes(scene.semantic[sample["point_index"]], self.lookup)
        sample["labels"] = voxel_labels(labels, sample["inverse"], len(sample["coords"]))
        return sample


def collate_semantic(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Returns engine.data.collate's batch plus "labels": (M,) int64 class per voxel of the whole batch."""
    batch = collate(samples)
    batch["labels"] = torch.cat([torch.from_numpy(s["labels"]) for s in samples])
    return batch


def labelled_scenes(store: Any, names: Sequence[str], classes: Sequence[int]) -> list[str]:
    """Returns the names holding at least one point of the classes (warns per skipped scene); DataError when a
    scene has no semantic labels at all or when none is left."""
    lookup, kept = class_lookup(classes), []
    for name in names:
        scene = store.load(name)
        if scene.semantic is None:
            raise DataError(f"scene {name}: no semantic labels; supervised pretraining needs labelled scans "
                            "(ScanNet with its label files, S3DIS, synthetic), or leave the scene out")
        if (point_classes(scene.semantic, lookup) >= 0).any():
            kept.append(name)
        else:
            log.warning("scene %s: no point of the %d training classes; skipping it", name, len(classes))
    if not kept:
        raise DataError(f"none of the {len(names)} scenes has a point of the classes {list(classes)}; "
                        "check the dataset or set classes")
    return kept


class SemanticDataModule(pl.LightningDataModule):
    """The shuffled, epoch-seeded training loader of labelled scenes."""

    def __init__(self, store: Any, names: Sequence[str], preset: TrainPreset, classes: Sequence[int]) -> None:
        super().__init__()
        self.train_set = SemanticDataset(store, names, preset, classes, train=True)
        self.preset = preset

    def transfer_batch_to_device(self, batch: dict[str, Any], device: torch.device,
                                 dataloader_idx: int) -> dict[str, Any]:
        """Returns the batch with its SparseBatch and labels on `device`."""
        out = batch_to_device(batch, device)
        out["labels"] = batch["labels"].to(device)
        return out

    def train_dataloader(self) -> DataLoader:
        """Returns the training loader (EpochSampler: a resumed run sees the same crops)."""
        workers = self.preset.num_workers
        return DataLoader(self.train_set, batch_size=self.preset.batch_size,
                          sampler=EpochSampler(len(self.train_set), seed=self.preset.seed, shuffle=True),
                          collate_fn=collate_semantic, num_workers=workers, persistent_workers=workers > 0)


# ---------------------------------------------------------------------------------------------- model


class SemanticSegmenter(nn.Module):
    """Res16UNet backbone + per-voxel classifier: forward(coords, feats) → (M, num_classes) logits."""

    def __init__(self, backbone: BackboneConfig, num_classes: int, head: str = "linear", head_hidden: int = 64) -> None:
        super().__init__()
        self.backbone = Res16UNet(backbone)
        self.num_classes, self.head_kind, self.head_hidden = int(num_classes), head, int(head_hidden)
        width = self.backbone.out_channels
        if head == "linear":
            self.head: nn.Module = nn.Linear(width, num_classes)
        elif head == "mlp":
            self.head = nn.Sequential(nn.Linear(width, head_hidden), nn.BatchNorm1d(head_hidden), nn.ReLU(),
                                      nn.Linear(head_hidden, num_classes))
        else:
            raise ConfigError(f"unknown head {head!r}; choose linear or mlp")

    def forward(self, coords: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """Returns (M, num_classes) logits for unique coords (M, 4) int32 [batch, x, y, z] and feats (M, C)."""
        return self.head(self.backbone(coords, feats).feats)

    def architecture(self) -> dict[str, Any]:
        """Returns a JSON-able description (recorded in checkpoints)."""
        return {"name": "SemanticSegmenter", "backbone": self.backbone.architecture(), "head": self.head_kind,
                "head_hidden": self.head_hidden, "num_classes": self.num_classes}


class SupervisedModule(pl.LightningModule):
    """Cross-entropy training of a SemanticSegmenter with SGD and the config's per-step schedule."""

    def __init__(self, config: SupervisedConfig | dict, classes: Sequence[int]) -> None:
        super().__init__()
        config = config if isinstance(config, SupervisedConfig) else SupervisedConfig(**config)
        self.save_hyperparameters({"config": config.model_dump(mode="json"), "classes": [int(c) for c in classes]})
        self.config, self.classes = config, tuple(int(c) for c in classes)
        # seeded before the backbone is built: the same initial backbone as FreePoint's and scratch's
        torch.manual_seed(config.train.seed)
        self.model = SemanticSegmenter(segmenter_config(config.train).backbone, len(self.classes), config.head,
                                       config.head_hidden)
        self.loss_history: list[dict[str, float]] = []  # per epoch: {"epoch", "loss", "accuracy"}
        self._sums = torch.zeros(3)  # loss * voxels, correct voxels, labelled voxels of the running epoch

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Returns the mean cross-entropy over the batch's labelled voxels (0 with a graph when it has none)."""
        logits = self.model(batch["batch"].coords, batch["batch"].feats)
        labels = batch["labels"]
        labelled = labels >= 0
        count = labelled.sum()
        if int(count) == 0:  # a crop without labelled voxels: no signal, but every rank must step
            loss = logits.sum() * 0.0
        else:
            loss = F.cross_entropy(logits, labels, ignore_index=IGNORE)
        correct = (logits.detach().argmax(dim=1) == labels)[labelled].sum()
        self.log("train/loss", loss, batch_size=len(batch["names"]), prog_bar=True, on_step=True, on_epoch=True,
                 sync_dist=True)
        sums = torch.stack([loss.detach().float() * count, correct.float(), count.float()])
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        self._sums += sums.cpu()
        entry = {"epoch": float(self.current_epoch), **self.epoch_losses()}
        if self.loss_history and self.loss_history[-1]["epoch"] == entry["epoch"]:
            self.loss_history[-1] = entry
        else:
            self.loss_history.append(entry)
        return loss

    def epoch_losses(self) -> dict[str, float]:
        """Returns {"loss": mean cross-entropy per labelled voxel, "accuracy"} of the running epoch (all ranks)."""
        loss, correct, count = self._sums.tolist()
        return {"loss": loss / count if count else math.nan, "accuracy": correct / count if count else math.nan}

    def on_train_epoch_start(self) -> None:
        self._sums = torch.zeros(3)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[HISTORY_KEY] = [dict(h) for h in self.loss_history]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.loss_history = [dict(h) for h in checkpoint.get(HISTORY_KEY, [])]

    def configure_optimizers(self) -> Any:
        """Returns SGD and the config's schedule, stepped every optimiser step."""
        c = self.config
        optimizer = torch.optim.SGD(self.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        if c.schedule == "constant":
            return optimizer
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        per_epoch = max(total / c.epochs, 1.0)
        if c.schedule == "poly":
            decay = lambda step: max(1.0 - step / total, 0.0) ** c.poly_power  # noqa: E731
        elif c.schedule == "cosine":
            decay = lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step / total, 1.0)))  # noqa: E731
        else:
            decay = lambda step: c.gamma ** (step / per_epoch)  # noqa: E731
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def loss_summary(self) -> dict[str, Any]:
        """Returns {"loss_first_epoch", "loss_last_epoch", "accuracy_last_epoch", "loss_history"} of the run."""
        if not self.loss_history:
            return {"loss_first_epoch": math.nan, "loss_last_epoch": math.nan, "accuracy_last_epoch": math.nan,
                    "loss_history": []}
        return {"loss_first_epoch": self.loss_history[0]["loss"], "loss_last_epoch": self.loss_history[-1]["loss"],
                "accuracy_last_epoch": self.loss_history[-1]["accuracy"],
                "loss_history": [h["loss"] for h in self.loss_history]}


class _EpochProgress(Callback):
    def __init__(self, progress: ProgressFn, epochs: int) -> None:
        self.progress, self.epochs = progress, epochs

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and isinstance(pl_module, SupervisedModule):
            losses = pl_module.epoch_losses()
            self.progress("train", trainer.current_epoch + 1, self.epochs,
                          f"loss {losses['loss']:.4f}, accuracy {losses['accuracy']:.3f}")


# ---------------------------------------------------------------------------------------------- method


class SupervisedPretext:
    """The `supervised` pretext method: semantic segmentation on labelled scans, the backbone as the checkpoint."""

    name = "supervised"

    def default_config(self, preset: str = "cpu-small", **overrides: Any) -> SupervisedConfig:
        """Returns supervised_config(preset, **overrides)."""
        return supervised_config(preset, **overrides)

    def pretrain(
        self,
        store: Any,
        config: SupervisedConfig,
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
        callbacks: list | None = None,
        **kwargs: Any,
    ) -> PretrainResult:
        """Returns the backbone checkpoint after semantic-segmentation training on `names` (default: the store's
        train split). resume=True continues an interrupted run (same config and scenes, else ConfigError); a run
        directory holding another run needs resume or overwrite. Other keyword arguments (label_workers, ...) are
        accepted and unused."""
        out_dir, checkpoints_dir = Path(out_dir), Path(checkpoints_dir)
        names = sorted(names if names is not None else store.names("train"))
        if not names:
            raise ConfigError("no scenes to pretrain on; check the split or the --scene selection")
        devices = check_devices(devices, nodes)
        dataset = data_description(store, names)["dataset"]
        classes = resolve_classes(config, dataset, store, names)
        kept = labelled_scenes(store, names, classes)
        run = {"method": self.name, "config": config.model_dump(mode="json"), "scenes": names}
        is_zero = rank_zero_only.rank == 0
        if is_zero:
            versions = _check_run_dir(out_dir, run, resume, overwrite)
            write_json(out_dir / RUN_FILE, {**run, "code_versions": [*versions, {**code_version(),
                                                                                "environment": environment()}]})
        train_dir = out_dir / "train"
        weights, done_file = train_dir / "segmentation.ckpt", train_dir / "done.json"
        meta_base = {"method": self.name, "config": run["config"], "classes": list(classes),
                     "data": data_description(store, kept), "backend": config.train.backend,
                     "input": input_metadata(config.train)}
        if resume and weights.is_file() and done_file.is_file():
            log.info("%s already finished; publishing its weights", train_dir)
            module = SupervisedModule(config, classes)
            state, meta = load_checkpoint(weights)
            load_into(module.model, state, meta, path=weights)
            metrics = json.loads(done_file.read_text())
        else:
            module = SupervisedModule(config, classes)
            datamodule = SemanticDataModule(store, kept, config.train, classes)
            ckpt = last_checkpoint(train_dir) if resume else None
            extra = list(callbacks or [])
            if progress is not None:
                extra.append(_EpochProgress(progress, config.epochs))
            trainer = make_trainer(config.train, train_dir, config.epochs, devices=devices, nodes=nodes,
                                   enable_progress_bar=enable_progress_bar, callbacks=extra)
            fit(trainer, module, datamodule, ckpt_path=ckpt)
            metrics = {"epochs": config.epochs, "scenes": len(kept), "classes": len(classes), **module.loss_summary()}
            if trainer.is_global_zero:
                save_checkpoint(weights, module.model, {**meta_base, "metrics": {"train": metrics},
                                                        "backbone_config": segmenter_config(config.train)
                                                        .backbone.model_dump(mode="json"),
                                                        "code_version": code_version()})
                write_json(done_file, metrics)
        meta = {**meta_base, "architecture": module.model.backbone.architecture(), "metrics": {"train": metrics},
                "skipped_scenes": sorted(set(names) - set(kept)), "segmentation_checkpoint": str(weights),
                "code_version": code_version(), "environment": environment()}
        run_id = f"{self.name}-{meta['data']['dataset']}-{stable_hash(meta['config'], meta['data'], length=10)}"
        meta["id"] = run_id
        backbone = checkpoints_dir / f"{run_id}-backbone.ckpt"
        if is_zero:
            save_model_checkpoint(backbone, module.model.backbone, meta)
            register_checkpoint(checkpoints_dir / "index.json", run_id, meta, {"backbone": backbone})
            log.info("wrote %s", backbone)
        return PretrainResult(method=self.name, backbone=backbone, metadata=meta)


def _check_run_dir(out_dir: Path, run: dict, resume: bool, overwrite: bool) -> list[dict]:
    """Returns the code versions of the earlier starts of the run being resumed ([] for a new run); ConfigError when
    out_dir holds another run (or a resume's settings differ), unless overwrite, which deletes it."""
    run_file = out_dir / RUN_FILE
    if not run_file.is_file():
        return []
    try:
        old = json.loads(run_file.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{run_file}: unreadable run record ({e}); delete the run dir to restart") from None
    if resume:
        versions = list(old.pop("code_versions", []))
        diffs = [key for key in ("method", "config", "scenes") if old.get(key) != run[key]]
        if diffs:
            raise ConfigError(f"{run_file}: cannot resume, the run was started with another {', '.join(diffs)}; "
                              "use the original settings, or overwrite / another out dir")
        return versions
    if not overwrite:
        raise ConfigError(f"{out_dir} already holds a pretraining run; pass resume (--resume) to continue it, "
                          "overwrite (--overwrite) to start again, or choose another out dir")
    shutil.rmtree(out_dir / "train", ignore_errors=True)
    run_file.unlink()
    return []


# ---------------------------------------------------------------------------------------------- probe


def load_segmentation(path: str | Path, device: str | torch.device = "cpu") -> tuple[SemanticSegmenter, dict]:
    """Returns (SemanticSegmenter in eval mode, metadata) of a run's train/segmentation.ckpt, loaded strictly."""
    path = Path(path)
    state, meta = load_checkpoint(path)
    arch, spec = meta.get("architecture") or {}, meta.get("backbone_config")
    if arch.get("name") != "SemanticSegmenter" or not isinstance(spec, dict):
        raise CheckpointError(f"{path}: not a supervised segmentation checkpoint (train/segmentation.ckpt of a "
                              "supervised run)")
    model = SemanticSegmenter(BackboneConfig(**spec), arch["num_classes"], arch["head"], arch["head_hidden"])
    load_into(model, state, meta, path=path)
    return model.to(device).eval(), meta


def confusion(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Returns the (K, K) int64 confusion matrix [truth, prediction] over points with truth >= 0."""
    keep = truth >= 0
    return np.bincount(truth[keep] * num_classes + pred[keep], minlength=num_classes**2).reshape(num_classes,
                                                                                              num_classes)


def miou(conf: np.ndarray) -> tuple[float, np.ndarray]:
    """Returns (mean IoU over the classes present in the truth, (K,) IoU per class, NaN where absent).

    IoU_c = TP / (TP + FP + FN) from a [truth, prediction] confusion matrix."""
    tp = np.diag(conf).astype(np.float64)
    present = conf.sum(axis=1) > 0
    union = conf.sum(axis=1) + conf.sum(axis=0) - tp
    iou = np.full(len(conf), np.nan)
    iou[present] = tp[present] / union[present]
    return (float(np.nanmean(iou)) if present.any() else math.nan), iou


@torch.no_grad()
def semantic_probe(segmentation_ckpt: str | Path, store: Any, names: Sequence[str],
                   device: str | torch.device = "cpu") -> dict[str, Any]:
    """Returns the held-out semantic segmentation quality of a supervised run against a constant predictor.

    segmentation_ckpt: a supervised run's train/segmentation.ckpt. names: held-out labelled scenes. Every point
    takes its voxel's predicted class (whole scenes, no crop or augmentation). The constant predictor gives every
    point the class most frequent among the held-out points' own labels: the best any constant can score there.
    Returns {"miou", "accuracy", "per_class_iou": {semantic id: IoU or None}, "constant_miou", "constant_class",
    "constant_accuracy", "points", "scenes"}.
    """
    model, meta = load_segmentation(segmentation_ckpt, device)
    classes = [int(c) for c in meta["classes"]]
    preset, lookup, k = input_preset(meta, Path(segmentation_ckpt)), class_lookup(classes), len(classes)
    conf = np.zeros((k, k), dtype=np.int64)
    truths = []
    for name in names:
        scene = store.load(name)
        if scene.semantic is None:
            raise DataError(f"scene {name}: no semantic labels; the probe needs labelled held-out scans")
        sample = make_sample(scene, preset, None, train=False)
        voxels = collate([sample])["batch"].to(device)
        pred = model(voxels.coords, voxels.feats).argmax(dim=1).cpu().numpy()[sample["inverse"]]
        truth = point_classes(scene.semantic[sample["point_index"]], lookup)
        conf += confusion(truth, pred, k)
        truths.append(truth[truth >= 0])
    truth_all = np.concatenate(truths) if truths else np.zeros(0, np.int64)
    if not len(truth_all):
        raise DataError(f"none of the {len(names)} held-out scenes has a point of the classes {classes}")
    score, iou = miou(conf)
    constant = int(np.bincount(truth_all, minlength=k).argmax())
    const_score, _ = miou(confusion(truth_all, np.full_like(truth_all, constant), k))
    return {
        "miou": score,
        "accuracy": float(np.trace(conf) / conf.sum()),
        "per_class_iou": {classes[c]: (None if np.isnan(v) else float(v)) for c, v in enumerate(iou)},
        "constant_miou": const_score,
        "constant_class": classes[constant],
        "constant_accuracy": float(np.mean(truth_all == constant)),
        "points": int(len(truth_all)),
        "scenes": len(names),
    }
