"""Fine-tuning a pretrained backbone under a protocol: targets with dropped masks ignored, training, evaluation.

    config = finetune_config("cpu-small", epochs=5)
    module, device = train_fold(store, train_names, targets, config, init_backbone=ckpt, seed=0, work_dir=...)
    preds = predict_scenes(module.segmenter, store, eval_names, config, class_ids, device=device)
    result = score(store, preds, eval_spec(rules))

    # the semantic tasks (linear, semseg): per-point class labels, a per-voxel classifier, mIoU
    module, device = train_fold(store, names, SemanticTargets(rules, kept), config, task="linear", ...)
    preds = predict_semantic_scenes(module.segmenter, store, eval_names, config, device=device)
    metrics = score_semantic(store, preds, rules)

The task (a protocol's, harness.protocol.TASKS) says what trains. insseg: the segmenter is the Mask3D-style model
of `models/` with a class head (13 S3DIS classes or ScanNet's 18 instance classes, plus "no object"); its backbone
is loaded strictly from any method's backbone checkpoint and its decoder starts fresh. insseg-frozen: the same with
the backbone frozen (no gradient, kept in eval mode so BatchNorm statistics stay). semseg: the backbone and one
linear per-voxel classifier over the vocabulary's segmentation classes, cross-entropy over labelled voxels, end to
end. linear: the same with the backbone frozen (the linear probe). Masks a protocol drops are IGNORED by default:
their points take no part in matching, the mask losses or the class loss (`engine.data.Targets.ignore`), they never
become background; a protocol with ``dropped = "background"`` (harness.protocol.DroppedMasks) makes them plain
background instead (loss points of no target, negatives of every mask, as Mask3D's loader may have had them). For the
semantic tasks a masks protocol labels only the points of its kept instances.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_serializer

from freepoint_bench.config import apply_overrides, omit_at_default, route_bare, validated
from freepoint_bench.data import catalogue
from freepoint_bench.data.classes import NYU40_FLOOR, NYU40_WALL
from freepoint_bench.data.scene import Scene
from freepoint_bench.engine.checkpoints import load_model
from freepoint_bench.engine.data import SceneDataModule, Targets, recorded_input_features
from freepoint_bench.engine.module import SegmenterModule
from freepoint_bench.engine.predict import predict_scene
from freepoint_bench.engine.presets import TrainPreset, preset_values
from freepoint_bench.engine.semantic import (
    FrozenSegmenterModule,
    LabelledDataModule,
    LabelledDataset,
    SemanticModule,
    class_lookup,
    point_classes,
    predict_semantic,
)
from freepoint_bench.engine.trainer import fit, last_checkpoint, make_trainer
from freepoint_bench.errors import CheckpointError, ConfigError, DataError
from freepoint_bench.evaluation import EvalResult, EvalSpec, Predictions, evaluate
from freepoint_bench.evaluation.instance_ap import vocabulary_spec
from freepoint_bench.evaluation.semantic import confusion, per_class, semantic_scores
from freepoint_bench.harness.protocol import (
    DEFAULT_DROPPED,
    DEFAULT_TASK,
    FROZEN_TASKS,
    SEMANTIC_TASKS,
    TASKS,
    DroppedMasks,
    EvalRules,
    instance_name,
)
from freepoint_bench.models.inference import InferenceConfig
from freepoint_bench.models.losses import LossConfig
from freepoint_bench.models.segmenter import InstanceSegmenter

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int, str], None]


class FinetuneConfig(BaseModel):
    """The fine-tuning recipe: training preset, budget (epochs, or max_steps), loss weights and inference.

    The budget: max_steps optimiser steps when set (the paper's "90k iterations", supplement A.2; the OneCycle
    schedule then spans exactly max_steps, and epochs is not read), else epochs passes over the protocol's labelled
    training scenes. One optimiser step takes train.batch_size scenes: fine-tuning trains on one device."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    train: TrainPreset
    epochs: int = Field(20, ge=1)  # fine-tuning epochs over the protocol's labelled training scenes
    loss: LossConfig = LossConfig()  # Mask3D's weights; the weak Lmean / Lbox terms are pretraining-only
    inference: InferenceConfig = InferenceConfig()
    # optimiser steps of the whole run (None: the epochs rule). Left out of the record at None, so the configs
    # that result.json files hold, and the recipe hashes the report compares, stay those of epoch budgets.
    max_steps: int | None = Field(None, ge=1)

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        return omit_at_default(self, handler(self), ("max_steps",))

    def steps_per_epoch(self, scenes: int) -> int:
        """Returns the optimiser steps of one epoch over `scenes` training scenes (every batch steps, the last one
        may be short)."""
        return math.ceil(max(scenes, 1) / self.train.batch_size)

    def steps(self, scenes: int) -> int:
        """Returns the optimiser steps of fine-tuning on `scenes` training scenes: max_steps, or epochs × steps per
        epoch; 0 without scenes."""
        if scenes <= 0:
            return 0
        return self.max_steps if self.max_steps is not None else self.epochs * self.steps_per_epoch(scenes)

    def epochs_for(self, scenes: int) -> int:
        """Returns the epochs the budget takes over `scenes` training scenes: epochs, or the passes max_steps makes
        (the last one cut short where max_steps ends inside it)."""
        return self.epochs if self.max_steps is None else math.ceil(self.max_steps / self.steps_per_epoch(scenes))


FINETUNE_PRESETS: dict[str, dict[str, Any]] = {
    # The dev stand-ins and tests on 2 CPU cores: the cpu-small model of pretraining, a few minutes per run.
    "cpu-small": {"preset": "cpu-small", "epochs": 20, "train": {}},
    # Mask3D's S3DIS recipe: AdamW + OneCycle at lr 1e-4, batch 4, 2 cm voxels, 100 queries, 34C backbone.
    # Budget: the FreePoint supplement (A.2): "The model is trained for 90k iterations when fine-tuning on S3DIS",
    # on a Mask3D base whose S3DIS scripts train at data.batch_size=4 (scripts/s3dis/s3dis_pretrained.sh,
    # s3dis_from_scratch.sh), the batch here and the one iterations are counted at: 90k steps of 4 scenes whatever a
    # protocol's number of training rooms (600 epochs of 10% scenes were 3,000 steps). Not scaled by the batch: a
    # --set batch_size=N is another recipe (its hash says so). epochs: not read while max_steps is set.
    "paper": {"preset": "paper", "epochs": 600, "max_steps": 90_000,
              # Mask3D's S3DIS crop: RandomCuboid 6 m, at least 20,000 points (conf/data/indoor.yaml crop_length,
              # crop_min_size; datasets/random_cuboid.py), no point cap
              "train": {"batch_size": 4, "lr": 1e-4, "schedule": "onecycle", "voxel_size_m": 0.02,
                        "num_queries": 100, "crop": "cuboid", "crop_length_m": 6.0, "crop_min_points": 20_000,
                        "max_points": None},
              # Mask3D's S3DIS evaluation (scripts/s3dis/s3dis_from_scratch.sh, s3dis_pretrained.sh): top-k over
              # (mask, class) pairs with topk_per_image=-1 (as many pairs as masks), masks split by DBSCAN at
              # dbscan_eps=0.6 m with dbscan_min_points 1 (conf/config_base_instance_segmentation.yaml)
              "inference": {"mode": "mask3d", "topk": None, "dbscan_eps": 0.6, "dbscan_min_points": 1}},
}
# Pretraining-only loss terms (eq. 5/6 are FreePoint's weak supervision); fine-tuning has real masks.
_FINETUNE_LOSS = {"mean": 0.0, "box": 0.0}


def finetune_config(preset: str = "cpu-small", **overrides: Any) -> FinetuneConfig:
    """Returns the fine-tuning config of `preset` (cpu-small, paper) with overrides applied.

    Overrides: ``epochs``, ``max_steps`` (``none``: the epochs rule), ``loss.<field>``, ``inference.<field>``,
    ``train.<field>`` or a bare training field (``lr=1e-3``, ``augment.rotate_z=false``). Naming ``epochs`` without
    ``max_steps`` makes the budget those epochs: a preset's max_steps (paper: 90k) would otherwise make them unread.
    """
    if preset not in FINETUNE_PRESETS:
        raise ConfigError(f"unknown fine-tuning preset {preset!r}; choose one of {sorted(FINETUNE_PRESETS)}")
    base = FINETUNE_PRESETS[preset]
    train = {**preset_values(base["preset"]), **base["train"]}
    max_steps = None if "epochs" in overrides and "max_steps" not in overrides else base.get("max_steps")
    data = {"train": train, "epochs": base["epochs"], "max_steps": max_steps,
            "loss": dict(_FINETUNE_LOSS), "inference": dict(base.get("inference", {}))}
    what = "fine-tuning config"
    return validated(FinetuneConfig, apply_overrides(data, route_bare(overrides, FinetuneConfig, "train"),
                                                     FinetuneConfig, what), what)


# ---------------------------------------------------------------------------------------------- classes


def class_vocabulary(rules: EvalRules) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Returns (dataset semantic ids, names) of the classes a protocol trains and scores, in class-index order (the
    catalogue's vocabulary the rules name)."""
    vocab = catalogue.vocabulary(rules.classes)
    return vocab.class_ids, vocab.class_names


def segmentation_vocabulary(rules: EvalRules) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Returns (dataset semantic ids, names) of the classes the semantic tasks train and score, in class-index order:
    the vocabulary's segmentation ids (ScanNet: its semantic benchmark's 20, with wall and floor; S3DIS: its 13)."""
    vocab = catalogue.vocabulary(rules.classes)
    known = dict(zip(vocab.class_ids, vocab.class_names, strict=True))
    if vocab.semantic_names is not None:
        known.update(enumerate(vocab.semantic_names))
    else:  # NYU40 ids (ScanNet): its semantic benchmark adds wall and floor to the instance classes
        known = {NYU40_WALL: "wall", NYU40_FLOOR: "floor", **known}
    ids = tuple(vocab.segmentation_ids)
    return ids, tuple(known.get(i, str(i)) for i in ids)


def eval_spec(rules: EvalRules) -> EvalSpec:
    """Returns the evaluator spec of a protocol's rules (semantic mode, every class of the vocabulary)."""
    return vocabulary_spec(catalogue.vocabulary(rules.classes), min_region_size=rules.min_region_size)


# what becomes of an instance of a room under a protocol
_TARGET, _NO_TARGET, _IGNORED = 0, 1, 2  # a training target; background (no evaluated class); dropped: ignored
_DENSE_IDS = 1 << 16  # instance ids below this are looked up in a table (64 KiB per room at most)


def labelled_points(scene: Scene, points: Mapping[str, np.ndarray]) -> np.ndarray:
    """Returns (N,) bool: the points of `scene` a points protocol labels (points: scene → vertex indices, ScanNet's
    limited annotations); DataError when the scene is not listed or an index is past its points."""
    if scene.name not in points:
        raise DataError(f"scene {scene.name} has no labelled points in the protocol's official points file; it is "
                        "not a training scene of this protocol")
    idx = points[scene.name]
    if len(idx) and int(idx.max()) >= scene.num_points:
        raise DataError(f"scene {scene.name}: the official points file names vertex {int(idx.max())} of "
                        f"{scene.num_points}; it indexes the vertices of ScanNet's _vh_clean_2.ply: read an "
                        "unchanged copy of the scans")
    mask = np.zeros(scene.num_points, dtype=bool)
    mask[idx] = True
    return mask


class ProtocolTargets:
    """Ground-truth targets of a protocol: instances of the vocabulary's classes (class index labels), with the
    instances a masks protocol dropped marked ignored (dropped "ignore") or made background (dropped "background":
    no target, yet loss points, as the points of no instance are).

    kept: scene → instance names kept (masks unit); None keeps every instance (scenes / full units).
    points: scene → labelled vertex indices (points unit, ScanNet's limited annotations): every other point is
    ignored (no target, no background, no loss point, no class), so an instance is a target through its labelled
    points alone; None labels every point.

    What becomes of each instance of a room (a target, no target, ignored) is decided once per room and kept
    (O(instances) per room, keyed by scene name and a checksum of its labels); each call then spends O(points):
    a sample no longer redoes one pass over the room's points per instance every epoch.
    """

    def __init__(self, rules: EvalRules, kept: Mapping[str, Sequence[str]] | None = None,
                 points: Mapping[str, np.ndarray] | None = None, dropped: DroppedMasks = DEFAULT_DROPPED) -> None:
        if dropped not in get_args(DroppedMasks):
            raise ConfigError(f"dropped {dropped!r}: choose one of {', '.join(get_args(DroppedMasks))}")
        self.rules = rules
        self.points = points
        self.dropped = dropped
        ids, _ = class_vocabulary(rules)
        self.lookup = {int(sem): k for k, sem in enumerate(ids)}
        self.kept = None if kept is None else {k: frozenset(v) for k, v in kept.items()}
        # (scene name, label checksum) → the fate of each instance id: a table over id + 1 (-1 → 0) when the ids
        # are small (as in S3DIS and ScanNet), else the sorted ids (K,) and their fates (K,)
        self._fates: dict[tuple[str, int], np.ndarray | tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, scene: Scene) -> Targets:
        """Returns the scene's targets; DataError when it has no labels (or a masks protocol does not list it)."""
        if scene.instance is None or scene.semantic is None:
            raise DataError(f"scene {scene.name}: no instance / semantic labels; fine-tuning needs labelled scenes")
        sem = self.classes(scene.semantic)
        key = (scene.name, zlib.crc32(np.ascontiguousarray(scene.semantic),
                                      zlib.crc32(np.ascontiguousarray(scene.instance))))
        if key not in self._fates:
            ids, fates = self.instance_fates(scene, sem)
            if not len(ids) or ids[-1] < _DENSE_IDS:
                table = np.full((ids[-1] if len(ids) else 0) + 2, _NO_TARGET, dtype=np.int8)
                table[ids + 1] = fates
                self._fates[key] = table
            else:
                self._fates[key] = ids, fates
        found = self._fates[key]
        if isinstance(found, np.ndarray):
            fate = found[np.maximum(scene.instance, -1) + 1]
        else:
            ids, fates = found
            labelled = scene.instance >= 0
            fate = np.full(scene.num_points, _NO_TARGET, dtype=np.int8)
            fate[labelled] = fates[np.searchsorted(ids, scene.instance[labelled])]
        instance = np.where(fate == _TARGET, scene.instance, -1)
        ignore = fate == _IGNORED
        if self.points is not None:
            labelled = labelled_points(scene, self.points)
            instance, sem, ignore = np.where(labelled, instance, -1), np.where(labelled, sem, -1), ignore | ~labelled
        return Targets(instance=instance, semantic=sem, ignore=ignore)

    def classes(self, semantic: np.ndarray) -> np.ndarray:
        """Returns (N,) int64 class indices of dataset semantic ids (-1: unlabelled or outside the vocabulary)."""
        width = max(int(semantic.max(initial=0)) + 1, max(self.lookup) + 1)
        table = np.full(width + 1, -1, dtype=np.int64)
        for sem, k in self.lookup.items():
            table[sem] = k
        return np.where(semantic >= 0, table[np.clip(semantic, 0, width)], -1)

    def instance_fates(self, scene: Scene, sem: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns (the scene's sorted instance ids (K,), (K,) int8 what each becomes: _TARGET, _NO_TARGET or
        _IGNORED); DataError when a masks protocol does not list the scene or names instances it lacks."""
        labelled = scene.instance >= 0
        ids, rows = np.unique(scene.instance[labelled], return_inverse=True)
        # an instance whose points all lie outside the vocabulary is no target (ScanNet: walls, floors)
        voted = np.bincount(rows[sem[labelled] >= 0], minlength=len(ids)) > 0
        fates = np.where(voted, _TARGET, _NO_TARGET).astype(np.int8)
        if self.kept is not None:
            if scene.name not in self.kept:
                raise DataError(f"scene {scene.name} is not in the protocol's frozen mask selection; "
                                "it is not a training scene of this protocol")
            kept = self.kept[scene.name]
            names = scene.meta.get("instance_names")
            present = [instance_name(scene, int(inst), names) for inst in ids]
            if not kept <= set(present):
                raise DataError(f"scene {scene.name}: the frozen mask selection names instances it does not have "
                                f"({sorted(kept - set(present))[:3]}); the split was frozen from another copy of the "
                                "data: freeze it again from this one (bench.py protocols freeze) or use the original "
                                "copy")
            # only instances of evaluated classes are candidates; the rest are background anyway
            dropped = np.array([name not in kept for name in present], dtype=bool)
            fates[dropped & voted] = _IGNORED if self.dropped == "ignore" else _NO_TARGET
        return ids, fates

    def describe(self) -> dict:
        """Returns {"kind": "protocol", "classes", "masks_unit"} (+ "points_unit" for a points protocol, "dropped"
        where dropped masks are not ignored)."""
        out = {"kind": "protocol", "classes": self.rules.classes, "masks_unit": self.kept is not None}
        if self.dropped != DEFAULT_DROPPED:
            out["dropped"] = self.dropped
        return out if self.points is None else {**out, "points_unit": True}


class SemanticTargets:
    """Per-point class labels of a protocol's semantic task (linear, semseg): class indices of the vocabulary's
    segmentation classes (segmentation_vocabulary), -1 ignored.

    kept: scene → instance names kept (masks unit): only the points of kept instances are labelled, the rest is
    ignored; None labels every point (scenes / full units). points: scene → labelled vertex indices (points unit):
    only those points are labelled."""

    def __init__(self, rules: EvalRules, kept: Mapping[str, Sequence[str]] | None = None,
                 points: Mapping[str, np.ndarray] | None = None) -> None:
        self.rules = rules
        self.lookup = class_lookup(segmentation_vocabulary(rules)[0])
        self.instances = None if kept is None else ProtocolTargets(rules, kept)
        self.points = points

    def __call__(self, scene: Scene) -> np.ndarray:
        """Returns (N,) int64 class index per point; DataError when the scene has no semantic labels."""
        if scene.semantic is None:
            raise DataError(f"scene {scene.name}: no semantic labels; semantic tasks need labelled scenes")
        labels = point_classes(scene.semantic, self.lookup)
        if self.instances is not None:
            labels = np.where(self.instances(scene).instance >= 0, labels, -1)
        if self.points is not None:
            labels = np.where(labelled_points(scene, self.points), labels, -1)
        return labels

    def describe(self) -> dict:
        """Returns {"kind": "semantic", "classes", "masks_unit"} (+ "points_unit" for a points protocol)."""
        out = {"kind": "semantic", "classes": self.rules.classes, "masks_unit": self.instances is not None}
        return out if self.points is None else {**out, "points_unit": True}


# ---------------------------------------------------------------------------------------------- backbones


# the TrainPreset field that sets each field of a backbone's recorded architecture (models.backbone.architecture_of;
# in_channels follows use_xyz_features / input_features, init_dim, layers and planes follow the preset)
_ARCHITECTURE_SETTINGS = {"preset": ("backbone", "34C"), "stem_kernel_size": ("stem_kernel_size", 5),
                          "widen": ("widen", "block")}


def _settings_that_fit(recorded: Mapping[str, Any], model: Mapping[str, Any]) -> list[str]:
    """Returns the --set key=value that give the fine-tuning model the recorded architecture's fields."""
    out = []
    for key, (field, default) in _ARCHITECTURE_SETTINGS.items():
        if recorded.get(key) != model.get(key):
            out.append(f"{field}={recorded.get(key, default)}")
    if recorded.get("in_channels") != model.get("in_channels") and recorded.get("in_channels") in (3, 6):
        out.append(f"use_xyz_features={str(recorded['in_channels'] == 6).lower()}")
    return out


def settings_that_fit(architecture: Mapping[str, Any], input_spec: Mapping[str, Any], model: Mapping[str, Any],
                      preset: TrainPreset) -> list[str]:
    """Returns the --set key=value that make a fine-tuning model (its backbone `model` architecture, its `preset`)
    take a checkpoint recording `architecture` and the input entry `input_spec`: input_features first, then the
    architecture's fields ([] when it fits). ConfigError when no input_features setting feeds the recorded inputs."""
    features = recorded_input_features(dict(input_spec))
    if features is None:
        fed = input_spec.get("features")
        raise ConfigError(f"its weights were trained on the input features {', '.join(fed or [])}, which no "
                          "input_features setting feeds (rgb+xyz, rgb+normal, rgb)")
    fits = _settings_that_fit(architecture, model)
    if features in ("rgb+normal", "rgb"):  # 6 and 3 channels whatever use_xyz_features says
        fits = [f for f in fits if not f.startswith("use_xyz_features=")]
    return ([f"input_features={features}"] if features != preset.input_features else []) + fits


def load_backbone(segmenter: torch.nn.Module, checkpoint: str | Path,
                  preset: TrainPreset | None = None) -> dict[str, Any]:
    """Loads a backbone checkpoint (or a segmenter checkpoint's backbone) strictly into `segmenter.backbone`;
    returns the checkpoint's metadata. preset: the fine-tuning model's (default TrainPreset()), whose input features
    must be the ones the checkpoint records (engine.data.recorded_input_features; a Pointcept import's colour and
    normals load into no colour + xyz model, though both take 6 channels). CheckpointError (one line) names the
    --set that fix an input or architecture mismatch."""
    checkpoint, preset = Path(checkpoint), preset or TrainPreset()
    recorded: dict[str, Any] = {}

    def target(meta: dict[str, Any]) -> torch.nn.Module:  # called with the metadata before any weight loads
        recorded.update(meta.get("architecture") or {})
        spec = meta.get("input") or {}
        if recorded_input_features(spec) != preset.input_features:
            try:
                fits = settings_that_fit(recorded, spec, segmenter.backbone.architecture(), preset)
            except ConfigError as e:
                raise CheckpointError(f"{checkpoint}: {e}") from None
            fed = spec.get("features") or (["rgb", "xyz"] if spec.get("use_xyz_features", True) else ["rgb"])
            raise CheckpointError(
                f"{checkpoint}: its weights were trained on the input features {', '.join(fed)} and the fine-tuning "
                f"model feeds {preset.input_features}; pass {' '.join(f'--set {f}' for f in fits)}")
        return segmenter.backbone

    try:
        _, meta = load_model(checkpoint, "backbone", into=target, allow_backend_change=True)
    except CheckpointError as e:
        if "architecture" not in str(e):  # a missing or damaged file, an input mismatch: its message says the fix
            raise
        fits = _settings_that_fit(recorded, segmenter.backbone.architecture())
        fix = " ".join(f"--set {f}" for f in fits) if fits else "--set for the fields that differ"
        raise CheckpointError(f"{e}; the fine-tuning backbone is {segmenter.backbone.architecture()} — pass "
                              f"{fix}") from None
    return meta


def check_leakage(meta: Mapping[str, Any], eval_names: Sequence[str], checkpoint: str | Path) -> None:
    """Refuses (CheckpointError) a checkpoint whose recorded pretraining scenes include evaluation scenes."""
    data = meta.get("data") or {}
    if data.get("scenes_known") is False:  # e.g. imported official weights without --scenes-file
        log.warning("%s does not record the scenes it was pretrained on; the leakage guard cannot check it "
                    "(re-import it with --scenes-file)", checkpoint)
    seen = set(data.get("scenes") or [])
    overlap = sorted(seen & set(eval_names))
    if overlap:
        raise CheckpointError(
            f"{checkpoint}: pretrained ({meta.get('method')}) on {len(overlap)} of the protocol's evaluation scenes "
            f"(e.g. {overlap[0]}); pretrain without them (e.g. on the fold's training scenes) and fine-tune again")


# ---------------------------------------------------------------------------------------------- train / evaluate


def task_module(store: Any, names: Sequence[str], targets: ProtocolTargets | SemanticTargets, config: FinetuneConfig,
                preset: TrainPreset, *, num_classes: int,
                task: str = DEFAULT_TASK) -> tuple[SegmenterModule | SemanticModule, Any]:
    """Returns (the untrained module, its data module) of `task` on `names` at `preset`: what train_fold trains and
    what benchmarks/bench_throughput.py times, so a throughput row is the step a cell of that task takes."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    semantic = task in SEMANTIC_TASKS
    if semantic != isinstance(targets, SemanticTargets):
        raise ConfigError(f"task {task!r} trains on {'SemanticTargets' if semantic else 'ProtocolTargets'}, "
                          f"not {type(targets).__name__}")
    frozen = task in FROZEN_TASKS
    if semantic:
        return (SemanticModule(preset, num_classes, frozen_backbone=frozen),
                LabelledDataModule(LabelledDataset(store, list(names), preset, targets), preset))
    module = (FrozenSegmenterModule if frozen else SegmenterModule)(preset, config.loss, num_classes=num_classes)
    return module, SceneDataModule(store, list(names), targets, preset)


# Steps between resume checkpoints of a max_steps run. An epoch of 10% S3DIS scenes (20 rooms) is 5 steps at batch 4:
# a checkpoint every epoch would write 18,000 of the paper model's ~450 MB files (34C and its AdamW state) in 90k
# steps, ~8 TB; every 500 steps it is 180 files, and a kill loses at most 500 steps.
CHECKPOINT_STEPS = 500


def train_fold(store: Any, names: Sequence[str], targets: ProtocolTargets | SemanticTargets, config: FinetuneConfig,
               *, num_classes: int, init_backbone: str | Path | None, seed: int, work_dir: str | Path,
               progress: ProgressFn | None = None, stage: str = "finetune", task: str = DEFAULT_TASK,
               logger: Any = None) -> tuple[SegmenterModule | SemanticModule, torch.device]:
    """Returns (the module after fine-tuning on `names`, resuming from work_dir's last.ckpt when present; the
    device it trained on, where its evaluation belongs).

    task: insseg / insseg-frozen take ProtocolTargets and give a SegmenterModule; semseg / linear take
    SemanticTargets and give a SemanticModule (num_classes: the segmentation classes). The backbone is loaded from
    init_backbone before it is frozen (insseg-frozen, linear). logger: an experiment tracker's Lightning logger
    (engine.loggers) beside work_dir's CSV log.
    The device is the trainer's, not the module's: Lightning's teardown moves the module back to the CPU."""
    preset = config.train.with_(seed=seed)
    module, datamodule = task_module(store, names, targets, config, preset, num_classes=num_classes, task=task)
    if init_backbone is not None:
        load_backbone(module.segmenter, init_backbone, preset)
    work_dir = Path(work_dir)
    ckpt = last_checkpoint(work_dir)
    if ckpt is not None:
        log.info("%s: resuming fine-tuning from %s", work_dir, ckpt)
    epochs = config.epochs_for(len(names))
    every = 1
    if config.max_steps is not None:  # a resume point about every CHECKPOINT_STEPS steps, always at an epoch's end
        every = max(1, CHECKPOINT_STEPS // config.steps_per_epoch(len(names)))
    callbacks = [module.progress_callback(progress, stage, epochs)] if progress is not None else []
    trainer = make_trainer(preset, work_dir, epochs, enable_progress_bar=False, callbacks=callbacks,
                           logger=logger, max_steps=config.max_steps, checkpoint_every_n_epochs=every)
    fit(trainer, module, datamodule, ckpt_path=ckpt)
    return module, trainer.strategy.root_device


@torch.no_grad()
def predict_scenes(segmenter: InstanceSegmenter, store: Any, names: Sequence[str], config: FinetuneConfig,
                   class_ids: Sequence[int], progress: ProgressFn | None = None,
                   stage: str = "evaluate", *, device: str | torch.device) -> dict[str, Predictions]:
    """Returns per-scene predictions on every point (voxel masks mapped back), labels as dataset semantic ids,
    computed on `device` (the segmenter is moved there) by engine.predict.predict_scene, as `bench.py predict`
    (so config.inference.superpoints applies here too)."""
    segmenter.to(device).eval()
    ids = np.asarray(class_ids, dtype=np.int64)
    out = {}
    for i, name in enumerate(names):
        found = predict_scene(segmenter, store.load(name), config.train, config.inference, device)
        out[name] = Predictions(masks=found.masks, labels=ids[found.labels], scores=found.scores)
        if progress is not None:
            progress(stage, i + 1, len(names), name)
    return out


@torch.no_grad()
def predict_semantic_scenes(segmenter: torch.nn.Module, store: Any, names: Sequence[str], config: FinetuneConfig,
                            progress: ProgressFn | None = None, stage: str = "evaluate", *,
                            device: str | torch.device) -> dict[str, np.ndarray]:
    """Returns per-scene (N,) int64 predicted class indices on every point (voxel predictions mapped back),
    computed on `device` (the segmenter is moved there)."""
    segmenter.to(device).eval()
    out = {}
    for i, name in enumerate(names):
        out[name] = predict_semantic(segmenter, store.load(name), config.train, device)
        if progress is not None:
            progress(stage, i + 1, len(names), name)
    return out


def score_semantic(store: Any, predictions: Mapping[str, np.ndarray], rules: EvalRules) -> dict[str, Any]:
    """Returns {"miou", "macc", "all_acc", "per_class": {class name: {"iou", "acc"}}} of per-point class-index
    predictions against every labelled point of the store's scenes (evaluation.semantic; None where a class is
    absent from the truth or nothing is labelled)."""
    ids, names = segmentation_vocabulary(rules)
    lookup, k = class_lookup(ids), len(ids)
    conf = np.zeros((k, k), dtype=np.int64)
    for name, pred in predictions.items():
        scene = store.load(name)
        if scene.semantic is None:
            raise DataError(f"scene {name}: no semantic labels; evaluation scenes must be labelled")
        if len(pred) != scene.num_points:
            raise DataError(f"scene {name}: {len(pred)} predictions for {scene.num_points} points; score it again")
        conf += confusion(point_classes(scene.semantic, lookup), pred, k)
    scores = semantic_scores(conf)
    iou, acc = per_class(scores["iou"]), per_class(scores["acc"])
    return {**{m: None if np.isnan(scores[m]) else scores[m] for m in ("miou", "macc", "all_acc")},
            "per_class": {c: {"iou": iou[i], "acc": acc[i]} for i, c in enumerate(names)}}


def pack_semantic(preds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Returns arrays for np.savez of per-scene class-index predictions."""
    return {"names": np.array(list(preds), dtype=str),
            **{f"p{i}": np.asarray(p, dtype=np.int16) for i, p in enumerate(preds.values())}}


def unpack_semantic(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Returns the predictions pack_semantic stored."""
    return {str(name): arrays[f"p{i}"].astype(np.int64) for i, name in enumerate(arrays["names"].tolist())}


def score(store: Any, predictions: Mapping[str, Predictions], spec: EvalSpec) -> EvalResult:
    """Returns the evaluator's result of `predictions` against the store's ground truth."""
    gts = []
    for name in predictions:
        scene = store.load(name)
        if scene.semantic is None or scene.instance is None:
            raise DataError(f"scene {name}: no ground-truth labels; evaluation scenes must be labelled")
        gts.append((name, scene.semantic, scene.instance))
    return evaluate(gts, predictions, spec)


def pack_predictions(preds: Mapping[str, Predictions]) -> dict[str, np.ndarray]:
    """Returns arrays for np.savez of per-scene predictions (masks bit-packed)."""
    arrays: dict[str, np.ndarray] = {"names": np.array(list(preds), dtype=str)}
    for i, p in enumerate(preds.values()):
        arrays[f"m{i}"] = np.packbits(p.masks, axis=1)
        arrays[f"n{i}"] = np.array(p.masks.shape, dtype=np.int64)
        arrays[f"l{i}"] = p.labels
        arrays[f"s{i}"] = p.scores
    return arrays


def unpack_predictions(arrays: Mapping[str, np.ndarray]) -> dict[str, Predictions]:
    """Returns the predictions pack_predictions stored."""
    out = {}
    for i, name in enumerate(arrays["names"].tolist()):
        k, n = (int(v) for v in arrays[f"n{i}"])
        masks = np.unpackbits(arrays[f"m{i}"], axis=1, count=n).astype(bool).reshape(k, n)
        out[str(name)] = Predictions(masks=masks, labels=arrays[f"l{i}"], scores=arrays[f"s{i}"])
    return out
