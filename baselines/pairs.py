"""Training data of the contrastive baselines: view pairs of each scene, voxelised as fine-tuning sees them.

    dm = PairDataModule(store, names, config.train, config.views, mode="scene", use_rgb=False)
    batch = next(iter(dm.train_dataloader()))
    batch["a_coords"], batch["a_feats"]   # (M_a, 4) int32 [scene, x, y, z], (M_a, C) view a of every scene
    batch["b_coords"], batch["b_feats"]   # the same for view b
    batch["matches"]                      # (K, 2) int64 [row in a, row in b] of corresponding voxels
    batch["match_scene"]                  # (K,) int64 scene of each match
    batch["match_origin"]                 # (K, 3) float32 view a voxel's pre-augmentation centre, voxel units
    batch["match_coords"]                 # (K, 3) float32 view a voxel's coordinates (voxel units)

With views.source = "frames" (PairViewConfig) a scene's pairs are two of its RGB-D frames instead (PointContrast's
and CSC's data): its sequence under views.frames_root (data.readers.scannet_frames: a .sens or SensReader's
export), every frame_gap-th frame, the pairs whose frame_overlap passes PairViewConfig's rule (default: that of
PointContrast's preprocessing, frames thinned to 5 cm voxels, matches within 7.5 cm, the larger direction >= 30%;
selected once per scene and cached as JSON in the run's frames/ folder, checked against the file's size and mtime); each
epoch takes one random pair per scene (seeded like the scene views) through data.views.frame_view_pair.

Each view goes through engine.data.make_sample (train=False: the views are already augmented), so the input
channels are the fine-tuning model's (rgb - 0.5, normalised xyz); use_rgb=False zeroes the rgb channels
(geometry-only input: every scene grey), or, where colour is the whole input (input_features rgb), sets every
channel to 1 (PointContrast's constant input). A voxel of a matches at most one voxel of b and vice versa,
chosen at random among the point matches between them. Views are seeded by (preset.seed, epoch, scene index).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from freepoint_bench.atomic import write_json
from freepoint_bench.data.readers.scannet_frames import (
    FrameRef,
    find_sequence,
    open_sequence,
    select_pairs,
    sequence_fingerprint,
)
from freepoint_bench.data.scene import Scene
from freepoint_bench.data.store import encode_name
from freepoint_bench.data.transforms import voxel_mean
from freepoint_bench.data.views import ViewConfig, ViewPair, frame_view_pair, same_view_pair, scene_view_pair
from freepoint_bench.engine.data import EpochSampler, make_sample
from freepoint_bench.engine.presets import TrainPreset
from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.parallel import loader_workers, map_unordered
from freepoint_bench.pretext.base import ProgressFn
from freepoint_bench.pretext.training import BackboneModule, TrainedPretext

log = logging.getLogger(__name__)

Mode = Literal["scene", "same"]  # scene: two crops (PointContrast, CSC); same: one crop twice (DepthContrast)


def voxel_matches(pair: ViewPair, inverse_a: np.ndarray, inverse_b: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """Returns (K, 2) int64 [voxel of a, voxel of b]: the point matches lifted to voxels, one partner each,
    picked uniformly at random among a voxel's point matches."""
    if len(pair.matches) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.stack([inverse_a[pair.matches[:, 0]], inverse_b[pair.matches[:, 1]]], axis=1)
    pairs = pairs[rng.permutation(len(pairs))]
    for column in (0, 1):
        _, first = np.unique(pairs[:, column], return_index=True)
        pairs = pairs[np.sort(first)]
    return pairs[np.argsort(pairs[:, 0], kind="stable")].astype(np.int64)


def pair_sample(name: str, pair: ViewPair, preset: TrainPreset, rng: np.random.Generator,
                use_rgb: bool = True) -> dict[str, Any]:
    """Returns one training sample (numpy arrays) of a view pair: both views voxelised with make_sample and
    the voxel matches with their pre-augmentation and view-a coordinates (voxel units)."""
    out: dict[str, Any] = {"name": name}
    inverses = []
    for key, view in (("a", pair.a), ("b", pair.b)):
        sample = make_sample(view.scene(name), preset, train=False)
        feats = sample["feats"]
        if not use_rgb:
            feats = feats.copy()
            if preset.input_features == "rgb":
                # colour alone is the input: all-zero features would carry nothing through the sparse convolutions,
                # so geometry-only is PointContrast's constant input, ones (its ScanNetMatchPairDataset's "dummy
                # color": feats np.ones((N, 3)), facebookresearch/PointContrast pretrain/pointcontrast/lib/
                # ddp_data_loaders.py)
                feats[:] = 1.0
            else:
                feats[:, :3] = 0.0  # rgb - 0.5 of a grey scene: the channels stay, the colour is gone
        out[f"{key}_coords"], out[f"{key}_feats"] = sample["coords"], feats
        inverses.append(sample["inverse"])
        if key == "a":
            origin = voxel_mean(view.origin, sample["inverse"], len(sample["coords"])) / preset.voxel_size_m
    matches = voxel_matches(pair, inverses[0], inverses[1], rng)
    out["matches"] = matches
    out["match_origin"] = origin[matches[:, 0]].astype(np.float32)
    out["match_coords"] = out["a_coords"][matches[:, 0]].astype(np.float32)
    return out


class PairDataset(Dataset):
    """View-pair samples of `names` in `store` (keys: (epoch, index) from EpochSampler, or an int: epoch 0)."""

    def __init__(self, store: Any, names: Sequence[str], preset: TrainPreset, views: ViewConfig,
                 mode: Mode = "scene", use_rgb: bool = True) -> None:
        self.store, self.names, self.preset, self.views = store, list(names), preset, views
        self.mode, self.use_rgb = mode, use_rgb

    def __len__(self) -> int:
        return len(self.names)

    def pair(self, scene: Scene, rng: np.random.Generator) -> ViewPair:
        """Returns the view pair of `scene` this dataset's mode makes."""
        make = scene_view_pair if self.mode == "scene" else same_view_pair
        return make(scene, self.views, rng)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = (0, key) if isinstance(key, int | np.integer) else key
        scene = self.store.load(self.names[index])
        rng = np.random.default_rng([self.preset.seed, int(epoch), int(index)])
        return pair_sample(scene.name, self.pair(scene, rng), self.preset, rng, self.use_rgb)


@dataclass(frozen=True)
class SceneFrames:
    """A scene's frame pairs: its sequence (a .sens or an exported folder), the sampled frames and the pairs
    (rows of refs) that overlap enough."""

    name: str
    path: str
    refs: tuple[FrameRef, ...]
    pairs: tuple[tuple[int, int], ...]


def _frame_settings(views: Any) -> dict[str, Any]:
    return {"gap": views.frame_gap, "min_overlap": views.frame_min_overlap, "voxel_m": views.frame_voxel_m,
            "radius_m": views.frame_overlap_m, "reduce": views.frame_overlap_rule}


def _frames_key(name: str, views: Any) -> tuple[Path, dict[str, Any]]:
    path = find_sequence(views.frames_root, name)
    return path, {"path": str(path.resolve()), "fingerprint": sequence_fingerprint(path),
                  "settings": _frame_settings(views)}


def _cache_file(name: str, index_dir: Path | None) -> Path | None:
    return None if index_dir is None else Path(index_dir) / f"{encode_name(name)}.json"


def cached_scene_frames(name: str, views: Any, index_dir: Path | None) -> SceneFrames | None:
    """Returns scene `name`'s frame pairs from index_dir/<name>.json when it was written for the same sequence
    file (size and mtime) and settings, else None (no index_dir, no file, another sequence or settings, damaged)."""
    cache = _cache_file(name, index_dir)
    if cache is None or not cache.is_file():
        return None
    path, key = _frames_key(name, views)
    try:
        saved = json.loads(cache.read_text())
        if not all(saved.get(k) == v for k, v in key.items()):
            return None
        return SceneFrames(name, str(path), tuple(FrameRef(*r) for r in saved["refs"]),
                           tuple((int(i), int(j)) for i, j in saved["pairs"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # damaged: selected again and rewritten


def scene_frames(name: str, views: Any, index_dir: Path | None = None) -> SceneFrames:
    """Returns the frame pairs of scene `name` under views.frames_root: cached_scene_frames when index_dir holds
    them, else selected (select_pairs) and written there (atomically)."""
    cached = cached_scene_frames(name, views, index_dir)
    if cached is not None:
        return cached
    path, key = _frames_key(name, views)
    settings = key["settings"]
    refs, pairs = select_pairs(open_sequence(path), settings["gap"], settings["min_overlap"], settings["voxel_m"],
                               settings["radius_m"], settings["reduce"])
    cache = _cache_file(name, index_dir)
    if cache is not None:
        write_json(cache, {**key, "refs": [[r.number, r.offset] for r in refs], "pairs": [list(p) for p in pairs]})
    log.info("%s: %d sampled frames, %d pairs", path, len(refs), len(pairs))
    return SceneFrames(name, str(path), tuple(refs), tuple(pairs))


def frame_index(names: Sequence[str], views: Any, index_dir: Path | None = None, *, workers: int | None = 1,
                progress: ProgressFn | None = None) -> list[SceneFrames]:
    """Returns scene_frames of every scene with at least one pair, in `names` order (one warning names those
    without); DataError when none has one.

    Scenes whose pairs index_dir does not hold yet are selected by `workers` processes (None: one per available
    core; each scene reads its sequence's depth once, so a ScanNet-sized set takes a while) and written there as
    each finishes, so an interrupted index resumes where it stopped. progress("frame pairs", done, total, scene)
    after each scene."""
    if not Path(views.frames_root).is_dir():
        raise DataError(f"views.frames_root {views.frames_root}: not a folder; point it at the scenes' .sens files "
                        "or SensReader exports")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1; got {workers}")
    found: dict[str, SceneFrames] = {}
    todo: list[str] = []
    for name in names:
        cached = cached_scene_frames(name, views, index_dir)
        if cached is None:
            find_sequence(views.frames_root, name)  # a scene without a sequence fails here, before any work
            todo.append(name)
        else:
            found[name] = cached

    def done(scene: SceneFrames) -> None:
        found[scene.name] = scene
        if progress is not None:
            progress("frame pairs", len(found), len(names), scene.name)

    work = partial(scene_frames, views=views, index_dir=index_dir)
    for scene in map_unordered(work, todo, workers, label=lambda name: f"scene {name!r}"):
        done(scene)
    scenes = [found[name] for name in names]
    empty = [s.name for s in scenes if not s.pairs]
    if len(empty) == len(scenes):
        raise DataError(f"{views.frames_root}: no frame pair of {len(scenes)} scenes has frame_overlap >= "
                        f"{views.frame_min_overlap} at frame_gap {views.frame_gap}; lower views.frame_gap or "
                        "views.frame_min_overlap")
    if empty:
        log.warning("%d of %d scenes have no frame pair and are not trained on: %s", len(empty), len(scenes),
                    ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else ""))
    return [s for s in scenes if s.pairs]


class FramePairDataset(Dataset):
    """Frame-pair samples of `scenes` (keys as PairDataset's): one random pair of the scene per epoch."""

    def __init__(self, scenes: Sequence[SceneFrames], preset: TrainPreset, views: ViewConfig,
                 use_rgb: bool = True) -> None:
        self.scenes, self.preset, self.views, self.use_rgb = list(scenes), preset, views, use_rgb
        self._sequences: dict[str, Any] = {}  # opened once per process (an export's open lists its depth/ folder)

    def __len__(self) -> int:
        return len(self.scenes)

    def pair(self, scene: SceneFrames, rng: np.random.Generator) -> ViewPair:
        """Returns the view pair of a random one of the scene's frame pairs (colour decoded only with use_rgb)."""
        i, j = scene.pairs[int(rng.integers(len(scene.pairs)))]
        if scene.path not in self._sequences:
            self._sequences[scene.path] = open_sequence(scene.path)
        sequence = self._sequences[scene.path]
        a, b = (sequence.frame(scene.refs[k], color=self.use_rgb) for k in (i, j))
        return frame_view_pair(a, b, self.views, rng)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = (0, key) if isinstance(key, int | np.integer) else key
        scene = self.scenes[index]
        rng = np.random.default_rng([self.preset.seed, int(epoch), int(index)])
        return pair_sample(scene.name, self.pair(scene, rng), self.preset, rng, self.use_rgb)


def collate_pairs(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Returns a batch of pair samples (see the module docstring); match rows index the batch's rows."""
    out: dict[str, Any] = {"names": [s["name"] for s in samples]}
    offsets = {"a": 0, "b": 0}
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("a_coords", "a_feats", "b_coords", "b_feats", "matches",
                                                            "match_scene", "match_origin", "match_coords")}
    for b, s in enumerate(samples):
        for key in ("a", "b"):
            coords = torch.from_numpy(s[f"{key}_coords"])
            parts[f"{key}_coords"].append(torch.cat([torch.full((len(coords), 1), b, dtype=torch.int32), coords], 1))
            parts[f"{key}_feats"].append(torch.from_numpy(s[f"{key}_feats"]))
        m = torch.from_numpy(s["matches"])
        parts["matches"].append(m + torch.tensor([offsets["a"], offsets["b"]]))
        parts["match_scene"].append(torch.full((len(m),), b, dtype=torch.long))
        parts["match_origin"].append(torch.from_numpy(s["match_origin"]))
        parts["match_coords"].append(torch.from_numpy(s["match_coords"]))
        offsets["a"] += len(s["a_coords"])
        offsets["b"] += len(s["b_coords"])
    out.update({k: torch.cat(v) for k, v in parts.items()})
    out["num_scenes"] = len(samples)
    return out


class PairDataModule(pl.LightningDataModule):
    """Lightning DataModule of view pairs over a scene store (shuffled and seeded per epoch)."""

    def __init__(self, store: Any, names: Sequence[str], preset: TrainPreset, views: ViewConfig,
                 mode: Mode = "scene", use_rgb: bool = True, index_dir: Path | None = None, *,
                 workers: int | None = 1, progress: ProgressFn | None = None) -> None:
        super().__init__()
        if not names:
            raise DataError("no scenes to train on; check the split / --scene selection")
        self.frames = getattr(views, "source", "scene") == "frames"
        if self.frames and mode != "scene":
            raise ConfigError(f"views.source 'frames' makes two-frame pairs; the {mode!r} views take scenes")
        self.names, self.preset, self.views, self.use_rgb = list(names), preset, views, use_rgb
        self.index_dir, self.workers, self.progress = index_dir, workers, progress
        self.train_set: Dataset | None = None
        if not self.frames:
            self.train_set = PairDataset(store, names, preset, views, mode, use_rgb)

    def prepare_data(self) -> None:
        """Selects and caches the frame pairs of every scene (frames source; once per node, before setup) with
        `workers` processes, reporting to `progress`."""
        if self.frames and self.index_dir is not None:
            frame_index(self.names, self.views, self.index_dir, workers=self.workers, progress=self.progress)

    def setup(self, stage: str | None = None) -> None:
        """Builds the frame-pair dataset from the cached index (frames source)."""
        if self.frames and self.train_set is None:
            scenes = frame_index(self.names, self.views, self.index_dir)
            self.train_set = FramePairDataset(scenes, self.preset, self.views, self.use_rgb)

    def train_dataloader(self) -> DataLoader:
        """Returns the shuffled, epoch-seeded loader of view-pair batches."""
        preset = self.train_set.preset
        workers = loader_workers(preset.num_workers)
        return DataLoader(self.train_set, batch_size=preset.batch_size, collate_fn=collate_pairs,
                          sampler=EpochSampler(len(self.train_set), seed=preset.seed, shuffle=True),
                          num_workers=workers, persistent_workers=workers > 0, drop_last=False)


class PairModule(BackboneModule):
    """A BackboneModule trained on view-pair batches: point_features gives both views' backbone features."""

    def point_features(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the L2-normalised backbone features (M_a, C), (M_b, C) of both views' voxels."""
        fa = self.backbone(batch["a_coords"], batch["a_feats"]).feats
        fb = self.backbone(batch["b_coords"], batch["b_feats"]).feats
        return F.normalize(fa, dim=1), F.normalize(fb, dim=1)


class PairPretext(TrainedPretext):
    """A TrainedPretext on view pairs of mode `mode`; its config has `views` and `use_rgb` fields."""

    mode: Mode = "scene"

    def build_data(self, store: Any, names: list[str], config: Any, index_dir: Path | None = None, *,
                   workers: int | None = 1, progress: ProgressFn | None = None) -> PairDataModule:
        """Returns the view-pair datamodule of `names` (frame pairs selected by `workers` processes and cached in
        index_dir when given)."""
        return PairDataModule(store, names, config.train, config.views, mode=self.mode, use_rgb=config.use_rgb,
                              index_dir=index_dir, workers=workers, progress=progress)

    def build_run_data(self, store: Any, names: list[str], config: Any, out_dir: Path, *,
                       workers: int | None = None, progress: ProgressFn | None = None) -> PairDataModule:
        """Returns build_data with the frame-pair index kept in the run's out_dir/frames/."""
        return self.build_data(store, names, config, index_dir=Path(out_dir) / "frames", workers=workers,
                               progress=progress)

    def input_extra(self, config: Any) -> dict[str, Any]:
        """Returns {"rgb": "used" | "zeroed" | "ones"} (whether the rgb input channels carried the colours; "ones":
        geometry-only on a colour-only input, see pair_sample), plus {"views": "frames"} for RGB-D frame pairs."""
        geometry = "ones" if config.train.input_features == "rgb" else "zeroed"
        extra = {"rgb": "used" if config.use_rgb else geometry}
        if getattr(config.views, "source", "scene") == "frames":
            extra["views"] = "frames"
        return extra
