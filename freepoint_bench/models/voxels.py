"""Voxel batches for the segmenter (voxelised by data.transforms.voxelize), row matching between levels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from freepoint_bench.data.transforms import voxel_mean, voxelize
from freepoint_bench.errors import DataError


@dataclass
class SparseBatch:
    """Voxelised scenes ready for the backbone.

    coords: (M, 4) int32 [scene, x, y, z] voxel indices >= 0, rows of scene b contiguous and in scene order.
    feats: (M, C) float32 per-voxel input features (mean over the voxel's points).
    point_to_voxel: per scene, (N_b,) int64 row of each point among that scene's voxels (0..M_b-1).
    point_xyz: per scene, (N_b, 3) float32 point coordinates in metres.
    """

    coords: torch.Tensor
    feats: torch.Tensor
    point_to_voxel: list[torch.Tensor]
    point_xyz: list[torch.Tensor]

    @property
    def num_scenes(self) -> int:
        return len(self.point_to_voxel)

    def scene_rows(self, b: int) -> torch.Tensor:
        """Returns the (M_b,) bool mask of scene b's rows in coords/feats."""
        return self.coords[:, 0] == b

    def to(self, device: torch.device | str) -> SparseBatch:
        """Returns this batch on `device`."""
        return SparseBatch(
            self.coords.to(device),
            self.feats.to(device),
            [p.to(device) for p in self.point_to_voxel],
            [p.to(device) for p in self.point_xyz],
        )


def collate(xyz: list[np.ndarray], feats: list[np.ndarray], voxel_size: float) -> SparseBatch:
    """Returns a SparseBatch of scenes (xyz (N_b, 3) metres, feats (N_b, C)), features averaged per voxel."""
    if len(xyz) != len(feats) or not xyz:
        raise DataError(f"collate: need as many feature arrays as scenes (got {len(xyz)} and {len(feats)})")
    all_coords, all_feats, p2v, pxyz = [], [], [], []
    for b, (x, f) in enumerate(zip(xyz, feats, strict=True)):
        f = np.asarray(f, dtype=np.float32)
        if f.ndim != 2 or len(f) != len(x):
            raise DataError(f"collate: scene {b} has {len(x)} points but feats of shape {f.shape}")
        coords, _, inverse = voxelize(x, voxel_size)
        if len(coords) == 0:
            raise DataError(f"collate: scene {b} has no points; drop empty scenes before batching")
        coords = coords - coords.min(axis=0)  # backends take non-negative coordinates
        all_coords.append(np.concatenate([np.full((len(coords), 1), b, np.int32), coords], axis=1))
        all_feats.append(voxel_mean(f, inverse, len(coords)))
        p2v.append(torch.from_numpy(inverse))
        pxyz.append(torch.from_numpy(np.asarray(x, dtype=np.float32)))
    return SparseBatch(
        torch.from_numpy(np.concatenate(all_coords)),
        torch.from_numpy(np.concatenate(all_feats)),
        p2v,
        pxyz,
    )


def _linear_keys(coords: torch.Tensor, extent: torch.Tensor) -> torch.Tensor:
    c = coords.long()
    return ((c[:, 0] * extent[1] + c[:, 1]) * extent[2] + c[:, 2]) * extent[3] + c[:, 3]


def match_rows(query: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Returns for each row of query (Q, 4) its row index in table (T, 4), or -1 where absent."""
    extent = torch.maximum(query.long().amax(0), table.long().amax(0)) + 1
    tkeys = _linear_keys(table, extent)
    sorted_keys, order = torch.sort(tkeys)
    qkeys = _linear_keys(query, extent)
    pos = torch.searchsorted(sorted_keys, qkeys).clamp(max=len(sorted_keys) - 1)
    found = sorted_keys[pos] == qkeys
    return torch.where(found, order[pos], torch.full_like(pos, -1))


def parent_rows(fine: torch.Tensor, coarse: torch.Tensor, stride: int) -> torch.Tensor:
    """Returns for each fine voxel (M, 4) [b, x, y, z] its row in the coarse level (M_l, 4) of `stride`."""
    parent = fine.clone()
    parent[:, 1:] = torch.div(fine[:, 1:], stride, rounding_mode="floor")
    idx = match_rows(parent, coarse)
    if bool((idx < 0).any()):
        raise ValueError(f"{int((idx < 0).sum())} voxels have no parent at stride {stride}")
    return idx
