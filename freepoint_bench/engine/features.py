"""Per-point deep features from a trained backbone (the `--features CKPT` input of pseudo-labelling).

    feats = backbone_features("checkpoints/freepoint-...-backbone.ckpt", scene)   # (N, D) float32
    fn = BackboneFeatures("checkpoints/freepoint-...-backbone.ckpt")             # for run_pseudo_labels
    run_pseudo_labels(store, names, config, None, out_dir, features_fn=fn)       # fn.cache_key keys the cache
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from freepoint_bench.data.scene import Scene
from freepoint_bench.engine.checkpoints import input_preset, load_model
from freepoint_bench.engine.data import collate, make_sample
from freepoint_bench.engine.presets import TrainPreset
from freepoint_bench.errors import CheckpointError


@torch.no_grad()
def _features(backbone: nn.Module, preset: TrainPreset, scene: Scene, device: str | torch.device) -> np.ndarray:
    sample = make_sample(scene, preset, None, train=False)
    voxels = collate([sample])["batch"].to(device)
    feats = backbone(voxels.coords, voxels.feats).feats.float().cpu().numpy()  # (M, D), rows = voxels
    return np.ascontiguousarray(feats[sample["inverse"]], dtype=np.float32)


def backbone_features(
    checkpoint_path: str | Path, scene: Scene, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Returns (N, D) float32 per-point features of `scene` from a backbone (or segmenter) checkpoint.

    Each point takes the feature of its voxel at full resolution. CheckpointError when the checkpoint is
    missing, corrupt, or of an architecture the current code cannot rebuild strictly.
    """
    checkpoint_path = Path(checkpoint_path)
    backbone, meta = load_model(checkpoint_path, "backbone", device)
    return _features(backbone, input_preset(meta, checkpoint_path), scene, device)


class BackboneFeatures:
    """A picklable Scene → (N, D) float32 feature function over one checkpoint (loaded once per process).

    cache_key names the checkpoint by content hash, so pseudo labels computed with other weights are
    never reused (run_pseudo_labels reads it).
    """

    def __init__(self, checkpoint_path: str | Path, device: str = "cpu") -> None:
        self.checkpoint_path = Path(checkpoint_path)
        self.device = device
        try:
            digest = hashlib.sha256(self.checkpoint_path.read_bytes()).hexdigest()[:16]
        except OSError as e:
            raise CheckpointError(f"{self.checkpoint_path}: cannot read the checkpoint ({e}); check the path") from None
        self.cache_key = f"backbone-features:{digest}"
        self._loaded: tuple[nn.Module, TrainPreset] | None = None

    def __call__(self, scene: Scene) -> np.ndarray:
        """Returns (N, D) float32 features of `scene`."""
        if self._loaded is None:
            backbone, meta = load_model(self.checkpoint_path, "backbone", self.device)
            self._loaded = (backbone, input_preset(meta, self.checkpoint_path))
        return _features(*self._loaded, scene, self.device)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_loaded": None}  # workers load the model themselves
