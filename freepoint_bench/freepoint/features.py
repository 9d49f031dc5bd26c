"""Point features of the sampled foreground points: xyz, rgb, normals and optional deep features (§3.1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import DataError
from freepoint_bench.geometry.normals import estimate_normals, orient_normals


@dataclass(frozen=True)
class PointFeatures:
    """Features of M points: xyz (M, 3) metres, rgb (M, 3) 0..1 or None (scene without colours),
    normals (M, 3) unit, oriented towards the scene centre, deep (M, D) or None."""

    xyz: np.ndarray
    rgb: np.ndarray | None
    normals: np.ndarray
    deep: np.ndarray | None


def check_deep_features(scene: Scene, features: np.ndarray | None) -> np.ndarray | None:
    """Returns deep features as (N, D) float32 after checking them against the scene, or None."""
    if features is None:
        return None
    arr = np.asarray(features)
    if arr.ndim != 2 or len(arr) != scene.num_points or arr.shape[1] == 0:
        raise DataError(
            f"{scene.name}: deep features have shape {arr.shape}; expected ({scene.num_points}, D), "
            "one row per point of the scene"
        )
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise DataError(f"{scene.name}: deep features contain NaN/inf; check the backbone's output")
    return arr


def point_features(
    scene: Scene,
    foreground_idx: np.ndarray,
    sampled_idx: np.ndarray,
    *,
    normal_k: int = 16,
    deep: np.ndarray | None = None,
    use_rgb: bool = True,
) -> PointFeatures:
    """Returns the PointFeatures of scene points sampled_idx (subset of foreground_idx, both sorted int64).

    Normals: the scene's own when present (re-oriented towards the scene centroid), otherwise PCA over the
    `normal_k` nearest foreground points, oriented the same way. deep: optional (N, D) per-point features.
    """
    centre = scene.xyz.mean(axis=0).astype(np.float64)
    xyz = scene.xyz[sampled_idx].astype(np.float64)
    if scene.normals is not None:
        normals = orient_normals(xyz, scene.normals[sampled_idx], viewpoint=centre)
    else:
        position = np.searchsorted(foreground_idx, sampled_idx)  # both sorted ascending
        # Neighbourhoods from the denser foreground, normals only where needed (the samples).
        normals = estimate_normals(scene.xyz[foreground_idx], k=normal_k, viewpoint=centre, at=position)
        normals = normals.astype(np.float64)
    return PointFeatures(
        xyz=xyz,
        rgb=scene.rgb[sampled_idx].astype(np.float64) if use_rgb else None,
        normals=normals,
        deep=None if deep is None else deep[sampled_idx],
    )
