"""Per-point deep features from a trained backbone (the `--features CKPT` input of pseudo-labelling)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from freepoint_bench.data.scene import Scene
from freepoint_bench.engine.checkpoints import input_preset, load_model
from freepoint_bench.engine.data import collate, make_sample


@torch.no_grad()
def backbone_features(
    checkpoint_path: str | Path, scene: Scene, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Returns (N, D) float32 per-point features of `scene` from a backbone (or segmenter) checkpoint.

    Each point takes the feature of its voxel at full resolution. CheckpointError when the checkpoint is
    missing, corrupt, or of an architecture the current code cannot rebuild strictly.
    """
    checkpoint_path = Path(checkpoint_path)
    backbone, meta = load_model(checkpoint_path, "backbone", device)
    preset = input_preset(meta, checkpoint_path)
    sample = make_sample(scene, preset, None, train=False)
    batch = collate([sample])
    voxels = batch["batch"].to(device)
    feats = backbone(voxels.coords, voxels.feats).feats.float().cpu().numpy()  # (M, D), rows = voxels
    return np.ascontiguousarray(feats[sample["inverse"]], dtype=np.float32)
