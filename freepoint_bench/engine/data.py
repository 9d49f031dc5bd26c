"""Training data: scenes + per-point targets → augmented, voxelised samples and variable-size batches.

    provider = PseudoLabelTargets(label_dir, sigma=0.9)
    dm = SceneDataModule(store, names, provider, preset)
    dm.setup("fit")                       # drops scenes without targets (warning), DataError if none left
    batch = next(iter(dm.train_dataloader()))
    batch["batch"]    # models.voxels.SparseBatch: coords (M, 4) int32 [scene, x, y, z], feats (M, C)
                      # (rgb - 0.5, then normalised xyz; or Pointcept's colour and normals: voxel_features),
                      # per-scene loss points (point_to_voxel, point_xyz)
    batch["targets"]  # per scene models.criterion.InstanceTargets over those points (eq. 7 on points)

Augmentation is seeded by (preset.seed, epoch, scene index), so a resumed run sees the same data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from freepoint_bench.data.scene import Scene
from freepoint_bench.data.transforms import augment, normalize_xyz, voxel_majority, voxel_mean, voxelize
from freepoint_bench.engine.presets import AugmentConfig, TrainPreset
from freepoint_bench.errors import DataError
from freepoint_bench.freepoint.pipeline import load_pseudo_labels
from freepoint_bench.geometry.normals import estimate_normals
from freepoint_bench.models.criterion import InstanceTargets
from freepoint_bench.models.voxels import SparseBatch
from freepoint_bench.parallel import loader_workers

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Targets:
    """Per-point training targets of one scene.

    instance: (N,) int64 instance ids, -1 = no instance (background / unlabelled).
    semantic: optional (N,) int64 class ids used to give each instance a class (majority vote);
              None = class-agnostic (every instance is class 0).
    ignore: optional (N,) bool, True = the point takes no part in training: not in any target, not
            background, not a loss point (a protocol's dropped masks: a dropped chair must not become a
            negative). None = every point counts.
    """

    instance: np.ndarray
    semantic: np.ndarray | None = None
    ignore: np.ndarray | None = None


class TargetProvider(Protocol):
    """Returns the training targets of a scene (pseudo labels at one σ, ground truth, ...)."""

    def __call__(self, scene: Scene) -> Targets:
        """Returns the targets of `scene`; DataError when they cannot be produced."""
        ...

    def describe(self) -> dict:
        """Returns a JSON-able description (recorded in checkpoint metadata)."""
        ...


class PseudoLabelTargets:
    """Targets from cached FreePoint pseudo labels at one σ (class-agnostic)."""

    def __init__(self, label_dir: str | Path, sigma: float) -> None:
        self.label_dir = Path(label_dir)
        self.sigma = float(sigma)

    def __call__(self, scene: Scene) -> Targets:
        """Returns the scene's pseudo labels at σ; DataError when missing or of the wrong length."""
        labels = load_pseudo_labels(self.label_dir, scene.name, self.sigma)
        if len(labels) != scene.num_points:
            raise DataError(
                f"{self.label_dir}: pseudo labels of {scene.name} at sigma={self.sigma} have {len(labels)} "
                f"points but the scene has {scene.num_points}; regenerate the pseudo labels"
            )
        return Targets(instance=labels)

    def describe(self) -> dict:
        """Returns {"kind": "pseudo-labels", "label_dir", "sigma"}."""
        return {"kind": "pseudo-labels", "label_dir": str(self.label_dir), "sigma": self.sigma}


class GroundTruthTargets:
    """Targets from the scene's own instance labels (supervised fine-tuning).

    ignore_semantic: semantic ids whose points are not instances (e.g. wall, floor); their instance
    ids are set to -1. class_agnostic: give every instance class 0 instead of its majority semantic id.
    """

    def __init__(self, ignore_semantic: Sequence[int] = (), class_agnostic: bool = True) -> None:
        self.ignore_semantic = tuple(int(c) for c in ignore_semantic)
        self.class_agnostic = bool(class_agnostic)

    def __call__(self, scene: Scene) -> Targets:
        """Returns the scene's ground-truth instances; DataError when the scene has none."""
        if scene.instance is None:
            raise DataError(
                f"scene {scene.name}: no ground-truth instance labels; use labelled data or pseudo labels"
            )
        instance = scene.instance.copy()
        if self.ignore_semantic and scene.semantic is not None:
            instance[np.isin(scene.semantic, self.ignore_semantic)] = -1
        semantic = None if self.class_agnostic or scene.semantic is None else scene.semantic
        return Targets(instance=instance, semantic=semantic)

    def describe(self) -> dict:
        """Returns {"kind": "ground-truth", ...}."""
        return {
            "kind": "ground-truth",
            "ignore_semantic": list(self.ignore_semantic),
            "class_agnostic": self.class_agnostic,
        }


# ---------------------------------------------------------------------------------------------- one sample


def crop_points(xyz: np.ndarray, max_points: int, rng: np.random.Generator) -> np.ndarray:
    """Returns (max_points,) sorted indices of the points nearest (in xy) to a random point's column."""
    if len(xyz) <= max_points:
        return np.arange(len(xyz))
    centre = xyz[rng.integers(len(xyz)), :2]
    d2 = ((xyz[:, :2] - centre) ** 2).sum(axis=1)
    return np.sort(np.argpartition(d2, max_points - 1)[:max_points])


CUBOID_TRIES = 100  # draws of a cuboid before the whole room is kept (Mask3D datasets/random_cuboid.py)


def cuboid_crop(xyz: np.ndarray, length: float, min_points: int, rng: np.random.Generator) -> np.ndarray:
    """Returns the sorted indices of the points of a random `length` x `length` square in xy, full height: Mask3D's
    RandomCuboid with cropping_v1 (datasets/random_cuboid.py). The square's centre is the room's xy box centre moved
    by offsets uniform in ±1/4 of the box's extent along x and y, bounds inclusive; a square holding fewer than
    `min_points` points is drawn again, up to CUBOID_TRIES times, then the whole room is kept, as it is when the room
    itself holds fewer than `min_points` points."""
    if len(xyz) < min_points:
        return np.arange(len(xyz))
    lo, hi = xyz[:, :2].min(axis=0), xyz[:, :2].max(axis=0)
    extent = hi - lo
    for _ in range(CUBOID_TRIES):
        centre = lo + extent / 2 + rng.uniform(-extent / 4, extent / 4)
        inside = np.flatnonzero(((xyz[:, :2] >= centre - length / 2) & (xyz[:, :2] <= centre + length / 2)).all(1))
        if len(inside) >= min_points:
            return inside
    return np.arange(len(xyz))


def train_crop(xyz: np.ndarray, preset: TrainPreset, rng: np.random.Generator) -> np.ndarray:
    """Returns the sorted rows of xyz (N, 3) a training sample keeps: preset.crop's cuboid (crop="cuboid"), then at
    most preset.max_points of them by crop_points (both crops: a memory guard on a cuboid's points)."""
    rows = np.arange(len(xyz))
    if preset.crop == "cuboid":
        rows = cuboid_crop(xyz, preset.crop_length_m, preset.crop_min_points, rng)
    if preset.max_points is not None:
        rows = rows[crop_points(xyz[rows], preset.max_points, rng)]
    return rows


def augment_points(
    xyz: np.ndarray, rgb: np.ndarray, config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (xyz (N, 3) float32 metres, rgb (N, 3) float32 0..1) augmented as `config` says."""
    return augment(
        xyz, rgb, rng,
        rotate_z=config.rotate_z,
        flip=config.flip_xy,
        scale=(config.scale_min, config.scale_max),
        jitter=config.jitter_sigma_m,
        color_jitter=config.color_jitter,
        elastic=config.elastic,
        elastic_p=config.elastic_p,
        scale_per_axis=config.scale_per_axis,
        tilt_max_rad=config.tilt_max_rad,
        brightness=config.brightness,
        contrast=config.contrast,
        rgb_shift=config.rgb_shift,
    )


# Pointcept's feat_keys and colour range of each input_features setting that feeds them (rgb+xyz: none, our own input)
POINTCEPT_INPUT = {"rgb+normal": (["color", "normal"], [-1.0, 1.0])}
# Neighbours of a voxel's PCA normal: a 2 cm grid's 16 nearest voxel centres lie within ~5 cm, the scale of
# Pointcept's ScanNet mesh normals (vertex spacing ~1-2 cm) while smoothing a voxel's jitter.
NORMAL_NEIGHBOURS = 16


def feature_channels(preset: TrainPreset) -> int:
    """Returns C, the number of input feature channels a preset produces (3 rgb + 3 xyz if enabled; 3 colour + 3
    normals for rgb+normal; 3 normalised colours for rgb)."""
    if preset.input_features == "rgb":
        return 3
    return 6 if preset.use_xyz_features or preset.input_features == "rgb+normal" else 3


def voxel_features(xyz: np.ndarray, rgb: np.ndarray, inverse: np.ndarray, num_voxels: int,
                   preset: TrainPreset) -> np.ndarray:
    """Returns the (M, C) float32 input features of the voxels of points xyz (N, 3) metres, rgb (N, 3) 0..1 with
    `inverse` (N,) their voxel: training (make_sample) and prediction (engine.predict, through make_sample) both
    take them from here.

    rgb+xyz: the voxel's mean rgb - 0.5, then its mean normalised xyz (data.transforms.normalize_xyz) when
    preset.use_xyz_features. rgb+normal (Pointcept's ScanNet / S3DIS input, feat_keys color, normal): the mean
    colour scaled as Pointcept's color / 127.5 - 1, in [-1, 1], then the voxel's unit normal by PCA over the
    NORMAL_NEIGHBOURS nearest voxel centres (geometry.normals.estimate_normals), oriented towards the centroid of the
    sample's voxels (in a room: walls, floor and ceiling face into it, as a scan's mesh normals do). The normals
    come from the geometry as fed (after augmentation), so a rotation or flip turns them with the points. rgb
    (Mask3D's input): the mean colour normalised as (rgb - preset.color_mean) / preset.color_std alone (Mask3D's
    A.Normalize normalises each point's colour; the mean of an affine map is the map of the mean).
    """
    rgb_mean = voxel_mean(rgb, inverse, num_voxels)
    if preset.input_features == "rgb":
        mean, std = np.asarray(preset.color_mean), np.asarray(preset.color_std)
        return ((rgb_mean - mean) / std).astype(np.float32)
    if preset.input_features == "rgb+normal":
        centres = voxel_mean(xyz, inverse, num_voxels)
        normals = estimate_normals(centres, k=NORMAL_NEIGHBOURS)
        return np.concatenate([rgb_mean * 2.0 - 1.0, normals], axis=1).astype(np.float32)
    feats = [rgb_mean - 0.5]
    if preset.use_xyz_features:
        # (N, 3) the xyz input features, [-0.5, 0.5] per box
        feats.append(voxel_mean(normalize_xyz(xyz, preset.position_scale_m), inverse, num_voxels))
    return np.concatenate(feats, axis=1).astype(np.float32)


# what a checkpoint's "input" entry records as its features for input_features=rgb (Mask3D's normalised colour)
MASK3D_INPUT = ["rgb"]


def input_record(preset: TrainPreset) -> dict[str, Any]:
    """Returns what a checkpoint's "input" entry records of `preset`'s input features beyond voxel size and
    use_xyz_features: {} for rgb+xyz (records as they were); for rgb, features ["rgb"], no xyz and the colour mean and
    std; Pointcept's feat_keys and colour range otherwise (the form engine.pointcept_import records)."""
    if preset.input_features == "rgb":
        return {"features": list(MASK3D_INPUT), "use_xyz_features": False, "color_mean": list(preset.color_mean),
                "color_std": list(preset.color_std)}
    if preset.input_features not in POINTCEPT_INPUT:
        return {}
    features, color_range = POINTCEPT_INPUT[preset.input_features]
    return {"features": list(features), "color_range": list(color_range),
            "normals": {"neighbours": NORMAL_NEIGHBOURS, "orientation": "towards the centroid of the voxels"}}


def recorded_input_settings(spec: dict[str, Any]) -> dict[str, Any] | None:
    """Returns the TrainPreset fields that feed what a checkpoint's "input" entry records beyond voxel size and
    use_xyz_features: {"input_features": ...}, with the recorded color_mean and color_std for rgb; None when no
    setting does (recorded_input_features)."""
    if "features" not in spec:
        return {"input_features": "rgb+xyz"}
    if list(spec["features"]) == MASK3D_INPUT and "color_mean" in spec and "color_std" in spec:
        return {"input_features": "rgb", "color_mean": tuple(spec["color_mean"]), "color_std": tuple(spec["color_std"])}
    for setting, (features, color_range) in POINTCEPT_INPUT.items():
        if list(spec["features"]) == features and list(spec.get("color_range", color_range)) == color_range:
            return {"input_features": setting}
    return None


def recorded_input_features(spec: dict[str, Any]) -> str | None:
    """Returns the input_features setting that feeds what a checkpoint's "input" entry records (rgb+xyz when it names
    no Pointcept features; rgb for Mask3D's normalised colour), or None when no setting does (e.g. Pointcept's color
    alone, or coord). The colour mean and std of an rgb record are not compared: Mask3D fine-tunes its ScanNet weights
    on S3DIS under S3DIS's own (scripts/s3dis/s3dis_pretrained.sh with conf/data/datasets/s3dis.yaml)."""
    settings = recorded_input_settings(spec)
    return None if settings is None else settings["input_features"]


def make_sample(
    scene: Scene,
    preset: TrainPreset,
    targets: Targets | None = None,
    rng: np.random.Generator | None = None,
    train: bool = True,
) -> dict[str, Any]:
    """Returns one voxelised sample of `scene` as a dict of numpy arrays (see SceneDataset for the keys).

    train=True crops (train_crop), augments and subsamples loss points with `rng`; train=False
    keeps every point and the original geometry (prediction and feature extraction).
    """
    rng = rng if rng is not None else np.random.default_rng(preset.seed)
    point_index = train_crop(scene.xyz, preset, rng) if train else np.arange(scene.num_points)
    xyz, rgb = scene.xyz[point_index], scene.rgb[point_index]
    if train:
        xyz, rgb = augment_points(xyz, rgb, preset.augment, rng)
    xyz = xyz - xyz.min(axis=0)  # non-negative voxel coordinates
    coords, _, inverse = voxelize(xyz, preset.voxel_size_m)
    num_voxels = len(coords)
    sample: dict[str, Any] = {
        "name": scene.name,
        "coords": coords.astype(np.int32),
        "feats": voxel_features(xyz, rgb, inverse, num_voxels, preset),
        "point_index": point_index.astype(np.int64),  # (N',) rows of the scene kept (crop)
        "inverse": inverse.astype(np.int64),  # (N',) voxel of each kept point
        "xyz": xyz.astype(np.float32),  # (N', 3) metres, augmented, shifted to >= 0
    }
    if targets is None:
        return sample

    inst = targets.instance[point_index]
    ignored = None if targets.ignore is None else targets.ignore[point_index]
    if ignored is not None:
        inst = np.where(ignored, -1, inst)
    vox_label = voxel_majority(inst, inverse, num_voxels)
    ids, sizes = np.unique(vox_label[vox_label >= 0], return_counts=True)
    ids = ids[sizes >= preset.min_instance_voxels]
    masks = vox_label[None, :] == ids[:, None]  # (K, M) bool
    classes = np.zeros(len(ids), dtype=np.int64)  # class-agnostic: every instance is class 0
    if targets.semantic is not None:
        sem = targets.semantic[point_index]
        for k, i in enumerate(ids):
            votes = sem[(inst == i) & (sem >= 0)]
            if len(votes):
                classes[k] = np.bincount(votes).argmax()
    # target index of every point (-1: none), on a subsample of points: the losses (eq. 7, Lmean and
    # Lbox in particular) are computed on points, not voxels (§3.3)
    lookup = np.full(int(inst.max()) + 2 if len(inst) else 1, -1, dtype=np.int64)
    lookup[ids + 1] = np.arange(len(ids))
    point_target = lookup[inst + 1]
    loss_rows = np.arange(len(point_index)) if ignored is None else np.flatnonzero(~ignored)
    if train and preset.max_loss_points is not None and len(loss_rows) > preset.max_loss_points:
        # draw positions in the counted rows, then take those rows (the draws themselves used as rows let ignored
        # points back in); without ignored points positions are rows, so the same rng draws the same points
        loss_rows = loss_rows[np.sort(rng.choice(len(loss_rows), preset.max_loss_points, replace=False))]
    sample.update(
        masks=masks,
        classes=classes,
        loss_inverse=inverse[loss_rows].astype(np.int64),  # (L,) voxel of each loss point
        loss_xyz=xyz[loss_rows].astype(np.float32),  # (L, 3) metres; the criterion normalises them
        loss_target=point_target[loss_rows],  # (L,) target index of each loss point, -1 = none
    )
    return sample


# ---------------------------------------------------------------------------------------------- dataset


class EpochSampler(Sampler):
    """Yields (epoch, index) keys shuffled per epoch from `seed`; Lightning calls set_epoch (DDP too)."""

    def __init__(self, num_items: int, seed: int = 0, shuffle: bool = True) -> None:
        self.num_items = int(num_items)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that seeds the next iteration's order and augmentations."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = np.arange(self.num_items)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_items)
        return iter([(self.epoch, int(i)) for i in order])

    def __len__(self) -> int:
        return self.num_items


class SceneDataset(Dataset):
    """Voxelised training samples of `names` in `store`, targets from `provider`.

    Item keys (numpy): name; coords (M, 3) int32 voxel coordinates; feats (M, C) float32; point_index
    (N',) int64 kept scene rows; inverse (N',) int64 voxel of each kept point; masks (K, M) bool voxel
    target masks; classes (K,) int64; xyz (N', 3) float32 metres (augmented); loss_inverse (L,) int64,
    loss_xyz (L, 3) float32 metres, loss_target (L,) int64 target index per loss point (-1 = none).
    Indexing with an int uses epoch 0; with (epoch, index) keys from EpochSampler.
    """

    def __init__(self, store: Any, names: Sequence[str], provider: TargetProvider, preset: TrainPreset,
                 train: bool = True) -> None:
        self.store = store
        self.names = list(names)
        self.provider = provider
        self.preset = preset
        self.train = train

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = (0, key) if isinstance(key, int | np.integer) else key
        scene = self.store.load(self.names[index])
        rng = np.random.default_rng([self.preset.seed, int(epoch), int(index)])
        return make_sample(scene, self.preset, self.provider(scene), rng=rng, train=self.train)


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Returns a batch of variable-size samples for the segmenter and its criterion.

    batch: models' SparseBatch — coords (M, 4) int32 [scene, x, y, z], feats (M, C), and per scene the
        points the losses/predictions are computed on (point_to_voxel (L_b,), point_xyz (L_b, 3) metres):
        the loss points of training samples, every kept point of target-less (prediction) samples.
    targets: per scene InstanceTargets (masks (T_b, L_b) bool over those points, labels (T_b,)), or None
        when the samples carry no targets.
    voxel_masks: per scene (T_b, M_b) bool target masks over the scene's voxels (None without targets).
    names, voxel_counts (B,), point_index / inverse: per scene the kept scene rows and their voxels.
    """
    coords, feats, p2v, pxyz, targets, voxel_masks = [], [], [], [], [], []
    with_targets = all("masks" in s for s in samples)
    for b, s in enumerate(samples):
        c = torch.from_numpy(s["coords"])
        coords.append(torch.cat([torch.full((len(c), 1), b, dtype=torch.int32), c], dim=1))
        feats.append(torch.from_numpy(s["feats"]))
        if with_targets:
            p2v.append(torch.from_numpy(s["loss_inverse"]))
            pxyz.append(torch.from_numpy(s["loss_xyz"]))
            target = torch.from_numpy(s["loss_target"])
            masks = target[None, :] == torch.arange(len(s["classes"]))[:, None]
            targets.append(InstanceTargets(masks=masks, labels=torch.from_numpy(s["classes"])))
            voxel_masks.append(torch.from_numpy(s["masks"]))
        else:
            p2v.append(torch.from_numpy(s["inverse"]))
            pxyz.append(torch.from_numpy(s["xyz"]))
    return {
        "names": [s["name"] for s in samples],
        "batch": SparseBatch(torch.cat(coords), torch.cat(feats), p2v, pxyz),
        "targets": targets if with_targets else None,
        "voxel_masks": voxel_masks if with_targets else None,
        "voxel_counts": torch.tensor([len(s["coords"]) for s in samples], dtype=torch.int64),
        "point_index": [torch.from_numpy(s["point_index"]) for s in samples],
        "inverse": [torch.from_numpy(s["inverse"]) for s in samples],
    }


def batch_to_device(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """Returns a collated batch with its SparseBatch and InstanceTargets moved to `device`."""
    out = dict(batch)
    out["batch"] = batch["batch"].to(device)
    if batch.get("targets") is not None:
        out["targets"] = [t.to(device) for t in batch["targets"]]
    return out


def scenes_with_targets(store: Any, names: Sequence[str], provider: TargetProvider) -> list[str]:
    """Returns the names whose targets hold at least one instance (warns per skipped scene).

    DataError when none is left: training on empty targets would learn nothing."""
    kept = []
    for name in names:
        targets = provider(store.load(name))
        if (targets.instance >= 0).any():
            kept.append(name)
        else:
            log.warning("scene %s: no instances in its targets (%s); skipping it", name, provider.describe())
    if not kept:
        raise DataError(
            f"none of the {len(names)} scenes has any instance in its targets ({provider.describe()}); "
            "check the pseudo-label settings (e.g. plane removal, min_segment_size) or the labels"
        )
    return kept


class SceneDataModule(pl.LightningDataModule):
    """Lightning DataModule over a scene store: the train loader of `names` with `provider`'s targets."""

    def __init__(
        self, store: Any, names: Sequence[str], provider: TargetProvider, preset: TrainPreset
    ) -> None:
        super().__init__()
        if not names:
            raise DataError("no scenes to train on; check the split / --scene selection")
        self.store = store
        self.names = list(names)
        self.provider = provider
        self.preset = preset
        self.train_set: SceneDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        """Builds the training set from the scenes that have targets."""
        if self.train_set is None:
            kept = scenes_with_targets(self.store, self.names, self.provider)
            self.train_set = SceneDataset(self.store, kept, self.provider, self.preset, train=True)

    def transfer_batch_to_device(self, batch: dict[str, Any], device: torch.device,
                                 dataloader_idx: int) -> dict[str, Any]:
        """Returns the batch with its SparseBatch and targets on `device` (names and maps stay put)."""
        return batch_to_device(batch, device)

    def train_dataloader(self) -> DataLoader:
        """Returns the shuffled, epoch-seeded training loader."""
        self.setup("fit")
        assert self.train_set is not None
        workers = loader_workers(self.preset.num_workers)
        return DataLoader(
            self.train_set,
            batch_size=self.preset.batch_size,
            sampler=EpochSampler(len(self.train_set), seed=self.preset.seed, shuffle=True),
            collate_fn=collate,
            num_workers=workers,
            persistent_workers=workers > 0,
            drop_last=False,
        )
