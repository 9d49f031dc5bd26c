"""The `supervised` baseline: semantic-segmentation pretraining of the backbone on labelled scans.

    method = get_method("supervised")
    config = method.default_config("cpu-small", epochs=20)   # optim.lr=..., head="mlp", classes=(1, 2, ...)
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

    out_dir/run.json                    the config (with the resolved classes) and the labelled scenes trained on
    out_dir/train/lightning/last.ckpt   Lightning's resume point of an interrupted run
    out_dir/train/logs/                 CSV loss logs
    out_dir/train/backbone.ckpt         the trained backbone, out_dir/train/done.json its losses (pretext.training)
    out_dir/train/segmentation.ckpt     backbone + head (what semantic_probe reads)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from pydantic import BaseModel, ConfigDict, Field, model_serializer
from pytorch_lightning.callbacks import Callback

from freepoint_bench.config import omit_at_default
from freepoint_bench.data import catalogue
from freepoint_bench.engine.checkpoints import (
    code_version,
    data_description,
    input_metadata,
    input_preset,
    load_model,
    save_model_checkpoint,
)
from freepoint_bench.engine.module import segmenter_config
from freepoint_bench.engine.presets import TrainPreset, get_preset
from freepoint_bench.engine.semantic import (
    LabelledDataModule,
    LabelledDataset,
    class_lookup,
    point_classes,
    predict_semantic,
    semantic_terms,
)
from freepoint_bench.errors import CheckpointError, ConfigError, DataError
from freepoint_bench.evaluation.semantic import confusion, miou
from freepoint_bench.models.backbone import BackboneConfig, Res16UNet
from freepoint_bench.models.semantic import SemanticSegmenter, make_head
from freepoint_bench.pretext.base import PretrainResult
from freepoint_bench.pretext.training import STAGE, BackboneModule, OptimConfig, SampleBudget, TrainedPretext

log = logging.getLogger(__name__)

SEGMENTATION_FILE = "segmentation.ckpt"  # in the run's train/ folder: backbone + head

class SupervisedConfig(BaseModel):
    """Everything that defines a supervised pretraining run (the resume check compares all of it).

    Of the preset (`train`), the backbone, voxels, crops, augmentation, batch size, workers, accelerator and
    seed are used; its AdamW fields (lr, weight_decay, schedule, epochs1/2) are not: `optim` is this method's.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    train: TrainPreset = get_preset("cpu-small")
    epochs: int = Field(30, ge=1)  # passes over the training scans
    # SGD as CSC's semantic segmentation (downstream/semseg/config/default.yaml: momentum 0.9, dampening 0.1,
    # weight decay 1e-4; lr 0.1 per ~6 scans, see PRESETS); cosine decay (the paper preset: CSC's PolyLR)
    optim: OptimConfig = OptimConfig(lr=0.1, momentum=0.9, dampening=0.1, schedule="cosine")
    head: Literal["linear", "mlp"] = "linear"  # classifier on the backbone's per-voxel features
    head_hidden: int = Field(64, ge=1)  # hidden width of the mlp head (Linear-BN-ReLU-Linear)
    # semantic ids trained on, in class order; None: the dataset's (its catalogue vocabulary's segmentation_ids:
    # ScanNet's 20 benchmark classes, S3DIS's 13), else every id in the scans
    # (pretrain records the resolved ids here)
    classes: tuple[int, ...] | None = None
    # a budget in samples seen (PAPER_BUDGET); when set, the run trains the epochs it derives from the labelled
    # scenes and `epochs` is not read. Left out of the record at None (configs keep their ids).
    budget: SampleBudget | None = None

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        return omit_at_default(self, handler(self), ("budget",))


# CSC's ScanNet semantic segmentation: optimizer.max_iter=20000 of data.batch_size=48 over misc.num_gpus=8
# (facebookresearch/ContrastiveSceneContexts downstream/semseg/scripts/train_scannet.sh).
PAPER_BUDGET = SampleBudget(iterations=20_000, batch=48)

PRESETS: dict[str, dict[str, Any]] = {
    # A CPU run in minutes: FreePoint's cpu-small backbone and input.
    "cpu-small": {"epochs": 30},
    # CSC's ScanNet semantic segmentation (facebookresearch/ContrastiveSceneContexts downstream/semseg/scripts/
    # train_scannet.sh and the code it runs; tests/baselines/test_paper_recipes.py holds each value with its file):
    "paper": {
        # its budget in samples (PAPER_BUDGET: 20k iterations of 48 scans): 800 passes over the 1201 training scans.
        # Its batch per GPU, 48 // 8 = 6 (lib/ddp_trainer.py), and optimizer.lr=0.8 for the 48 linearly scaled to
        # one device's 6: 0.1. BatchNorm momentum 0.02 (config/default.yaml optimizer.bn_momentum) is the preset's.
        # PolyLR of power 0.9 over its max_iter, stepped every iteration (scripts/train_scannet.sh
        # optimizer.scheduler=PolyLR; config/default.yaml optimizer.poly_power; lib/solvers.py): counted in steps of
        # its global batch 48, so a run of the budget's samples ends on its last rate, lr * (2 / 20001) ** 0.9, on any
        # batch and device count (up to 48 scans a step; whole epochs over a dataset's scans round the budget up).
        "budget": PAPER_BUDGET.model_dump(),
        "optim": {"lr": 0.1, "schedule": "poly", "power": 0.9, "reference_batch": PAPER_BUDGET.batch},
        # Whole scans at 2 cm (ScannetVoxelization2cmDataset, no clip bound) and its augmentations
        # (datasets/scannet.py, datasets/dataset.py initialize_data_loader, datasets/transforms.py): elastic
        # distortion ((0.2, 0.4), (0.8, 1.6)) with p 0.95, rotation about z in ±π and about x and y in ±π/64, one
        # isotropic scale in [0.9, 1.1] (augmentation.data_aug_scale_min / max), x and y flips p 0.5 each,
        # ChromaticTranslation ±0.1 per channel and ChromaticJitter std 0.05 (of 255); no brightness / contrast,
        # no position noise
        "train": {"batch_size": 6, "augment.tilt_max_rad": math.pi / 64, "augment.scale_per_axis": False,
                  "augment.brightness": 0.0, "augment.contrast": 0.0, "augment.rgb_shift": 0.1,
                  "augment.color_jitter": 0.05},
    },
}


# ---------------------------------------------------------------------------------------------- labels


def resolve_classes(config: SupervisedConfig, dataset: str, store: Any, names: Sequence[str]) -> tuple[int, ...]:
    """Returns the semantic ids trained on: config.classes, the dataset's classes, or every id in the scans."""
    if config.classes is not None:
        classes = tuple(int(c) for c in config.classes)
    elif (entry := catalogue.find(dataset)) is not None and entry.classes is not None:
        classes = entry.classes.segmentation_ids
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


# ---------------------------------------------------------------------------------------------- data


class SemanticDataset(LabelledDataset):
    """Voxelised samples of `names` with per-voxel class labels (keys of engine.data.make_sample + "labels" (M,)).

    Indexing with an int uses epoch 0; with (epoch, index) keys from EpochSampler (seeds crops and augmentation).
    """

    def __init__(self, store: Any, names: Sequence[str], preset: TrainPreset, classes: Sequence[int],
                 train: bool = True) -> None:
        self.lookup = class_lookup(classes)
        super().__init__(store, names, preset, self.labels, train)

    def labels(self, scene: Any) -> np.ndarray:
        """Returns (N,) the class index of every point of `scene` (-1: unlabelled or another id)."""
        if scene.semantic is None:
            raise DataError(f"scene {scene.name}: no semantic labels; supervised pretraining needs labelled scans")
        return point_classes(scene.semantic, self.lookup)


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


class SemanticDataModule(LabelledDataModule):
    """The shuffled, epoch-seeded training loader of labelled scenes."""

    def __init__(self, store: Any, names: Sequence[str], preset: TrainPreset, classes: Sequence[int]) -> None:
        super().__init__(SemanticDataset(store, names, preset, classes, train=True), preset)


# ---------------------------------------------------------------------------------------------- model


class SupervisedModule(BackboneModule):
    """Cross-entropy over the labelled voxels of a batch, through the backbone and a classifier head."""

    def __init__(self, config: SupervisedConfig) -> None:
        if not config.classes:
            raise ConfigError("SupervisedModule needs the resolved classes (config.classes)")
        super().__init__(config.train, config.optim, {"config": config.model_dump(mode="json")})
        self.config = config
        self.head = make_head(self.backbone.out_channels, len(config.classes), config.head, config.head_hidden)

    def segmenter(self) -> SemanticSegmenter:
        """Returns this module's backbone and head (shared, not copied) as one SemanticSegmenter."""
        c = self.config
        return SemanticSegmenter(self.backbone, self.head, len(c.classes), c.head, c.head_hidden)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Returns the mean cross-entropy over the batch's labelled voxels (0 with a graph when it has none)."""
        logits = self.head(self.backbone(batch["batch"].coords, batch["batch"].feats).feats)
        return self.record(semantic_terms(logits, batch["labels"]), len(batch["names"]))


class _SaveSegmentation(Callback):
    """Writes the trained backbone + head (for semantic_probe) when training ends (rank 0)."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path, self.meta = path, meta

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and isinstance(pl_module, SupervisedModule):
            save_model_checkpoint(self.path, pl_module.segmenter(), {**self.meta, "metrics": pl_module.loss_summary()})


# ---------------------------------------------------------------------------------------------- method


class SupervisedPretext(TrainedPretext):
    """The `supervised` pretext method: semantic segmentation on labelled scans, the backbone as the checkpoint."""

    name = "supervised"
    config_cls = SupervisedConfig
    presets = PRESETS

    def build_module(self, config: SupervisedConfig) -> SupervisedModule:
        """Returns a freshly initialised SupervisedModule (backbone seeded as FreePoint's)."""
        return SupervisedModule(config)

    def build_data(self, store: Any, names: list[str], config: SupervisedConfig) -> SemanticDataModule:
        """Returns the datamodule of the labelled scenes `names`."""
        return SemanticDataModule(store, names, config.train, config.classes)

    def pretrain(self, store: Any, config: SupervisedConfig, out_dir: str | Path, *, names: list[str] | None = None,
                 callbacks: Sequence[Callback] | None = None, **kwargs: Any) -> PretrainResult:
        """Returns the backbone checkpoint after semantic-segmentation training on the labelled scenes among `names`
        (default: the store's train split); see TrainedPretext.pretrain for resume, overwrite, devices and nodes.

        The classes are resolved first (config.classes, else the dataset's, else the ids in the scans) and recorded
        in the config; scenes without a point of them are skipped with a warning, the rest are data.scenes.
        out_dir/train/segmentation.ckpt receives the backbone with its head (semantic_probe reads it)."""
        if not isinstance(config, SupervisedConfig):
            raise ConfigError(f"{self.name}: expected a SupervisedConfig, got {type(config).__name__}")
        names = sorted(names if names is not None else store.names("train"))
        if not names:
            raise ConfigError("no scenes to pretrain on; check the split or the --scene selection")
        classes = resolve_classes(config, data_description(store, names)["dataset"], store, names)
        kept = labelled_scenes(store, names, classes)
        config = config.model_copy(update={"classes": classes})
        meta = {"method": self.name, "config": config.model_dump(mode="json"),
                "data": data_description(store, kept), "input": input_metadata(config.train),
                "backbone_config": segmenter_config(config.train).backbone.model_dump(mode="json"),
                "code_version": code_version()}
        saver = _SaveSegmentation(Path(out_dir) / STAGE / SEGMENTATION_FILE, meta)
        return super().pretrain(store, config, out_dir, names=kept, callbacks=[*(callbacks or []), saver], **kwargs)


# ---------------------------------------------------------------------------------------------- probe


def load_segmentation(path: str | Path, device: str | torch.device = "cpu") -> tuple[SemanticSegmenter, dict]:
    """Returns (SemanticSegmenter in eval mode, metadata) of a run's train/segmentation.ckpt, loaded strictly."""
    path = Path(path)

    def build(meta: dict[str, Any]) -> SemanticSegmenter:
        arch, spec = meta.get("architecture") or {}, meta.get("backbone_config")
        if arch.get("name") != "SemanticSegmenter" or not isinstance(spec, dict):
            raise CheckpointError(f"{path}: not a supervised segmentation checkpoint (train/segmentation.ckpt of a "
                                  "supervised run)")
        backbone = Res16UNet(BackboneConfig(**spec))
        head = make_head(backbone.out_channels, arch["num_classes"], arch["head"], arch["head_hidden"])
        return SemanticSegmenter(backbone, head, arch["num_classes"], arch["head"], arch["head_hidden"])

    model, meta = load_model(path, into=build)
    return model.to(device).eval(), meta


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
    classes = [int(c) for c in meta["config"]["classes"]]
    preset, lookup, k = input_preset(meta, Path(segmentation_ckpt)), class_lookup(classes), len(classes)
    conf = np.zeros((k, k), dtype=np.int64)
    truths = []
    for name in names:
        scene = store.load(name)
        if scene.semantic is None:
            raise DataError(f"scene {name}: no semantic labels; the probe needs labelled held-out scans")
        pred = predict_semantic(model, scene, preset, device)  # every point, in order
        truth = point_classes(scene.semantic, lookup)
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
