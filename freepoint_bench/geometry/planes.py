"""Background removal: iterative RANSAC plane segmentation (open3d) of large planar surfaces.

Floors, walls, ceilings and large table tops are the planes with the most inliers in an indoor scan
(FreePoint §3.1). Each round fits one plane by RANSAC on a random subset of the still-foreground points
(for speed), then classifies *all* still-foreground points by their distance to that plane; rounds stop
when the next plane would be smaller than the minimum size. open3d is imported only inside this module's
functions so that training code imports without it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from freepoint_bench.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlaneSegmentation:
    """Result of `remove_planes`.

    foreground: (N,) bool, True for points on no removed plane.
    planes: (K, 4) float64 plane models a, b, c, d with a x + b y + c z + d = 0 and unit (a, b, c).
    inlier_counts: (K,) int64 number of points removed with each plane (of all N points).
    """

    foreground: np.ndarray
    planes: np.ndarray
    inlier_counts: np.ndarray


def remove_planes(
    xyz: np.ndarray,
    *,
    distance_threshold: float = 0.02,
    min_plane_points: int = 500,
    min_plane_fraction: float = 0.05,
    max_planes: int = 8,
    num_iterations: int = 300,
    fit_points: int = 5000,
    grid_size: float | None = 0.2,
    seed: int = 0,
) -> PlaneSegmentation:
    """Returns the foreground mask after removing up to `max_planes` large RANSAC planes.

    xyz: (N, 3) float, metres. A plane is removed while its inliers (points within `distance_threshold`
    metres, counted over all points) number at least max(min_plane_points, min_plane_fraction * N).
    RANSAC runs `num_iterations` iterations on at most `fit_points` random still-foreground points.
    grid_size: an infinite plane also passes through objects elsewhere in the room (a table top at the
    height of a window sill, a box touching a wall's extension), so only the plane's inliers in large
    connected patches are removed: inliers are binned on a 2D grid of `grid_size`-metre cells in the plane,
    8-connected cells form patches, and patches with fewer than the minimum size are kept as foreground.
    None or 0 removes every inlier (plain RANSAC).
    A scene made only of planes yields an all-False foreground (no segments), not an error.
    """
    bad_grid = grid_size is not None and grid_size < 0
    if bad_grid or distance_threshold <= 0 or max_planes < 0 or num_iterations < 1 or fit_points < 3:
        raise ConfigError(
            "plane removal needs distance_threshold > 0, max_planes >= 0, num_iterations >= 1, "
            f"fit_points >= 3; got {distance_threshold}, {max_planes}, {num_iterations}, {fit_points}"
        )
    import open3d as o3d  # local: training must import without open3d

    xyz = np.asarray(xyz, dtype=np.float64)
    n = len(xyz)
    foreground = np.ones(n, dtype=bool)
    min_size = max(int(min_plane_points), int(np.ceil(min_plane_fraction * n)))
    rng = np.random.default_rng(seed)
    planes: list[np.ndarray] = []
    counts: list[int] = []
    for round_ in range(max_planes):
        remaining = np.flatnonzero(foreground)
        if len(remaining) < max(3, min_size):
            break
        fit = remaining if len(remaining) <= fit_points else rng.choice(remaining, fit_points, replace=False)
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz[fit]))
        o3d.utility.random.seed(int(seed) + round_)
        model, _ = cloud.segment_plane(
            distance_threshold=float(distance_threshold), ransac_n=3, num_iterations=int(num_iterations)
        )
        model = np.asarray(model, dtype=np.float64)
        norm = np.linalg.norm(model[:3])
        if not np.isfinite(model).all() or norm < 1e-12:
            break
        model = model / norm
        dist = np.abs(xyz[remaining] @ model[:3] + model[3])
        inliers = remaining[dist <= distance_threshold]
        if grid_size and len(inliers) >= min_size:
            inliers = inliers[_large_patches(xyz[inliers], model[:3], grid_size, min_size)]
        if len(inliers) < min_size:
            break
        foreground[inliers] = False
        planes.append(model)
        counts.append(len(inliers))
        logger.debug("plane %d: %s with %d inliers", round_, np.round(model, 3), len(inliers))
    return PlaneSegmentation(
        foreground=foreground,
        planes=np.asarray(planes, dtype=np.float64).reshape(-1, 4),
        inlier_counts=np.asarray(counts, dtype=np.int64),
    )


def _large_patches(points: np.ndarray, normal: np.ndarray, grid_size: float, min_size: int) -> np.ndarray:
    """Returns (P,) bool: points (P, 3) in 8-connected in-plane grid patches of >= min_size points."""
    from scipy import ndimage

    # Orthonormal in-plane axes.
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(normal, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(normal, e1)
    uv = np.stack([points @ e1, points @ e2], axis=1)
    cells = np.floor((uv - uv.min(axis=0)) / grid_size).astype(np.int64)
    shape = tuple(cells.max(axis=0) + 1)
    occupied = np.zeros(shape, dtype=bool)
    occupied[cells[:, 0], cells[:, 1]] = True
    patch, count = ndimage.label(occupied, structure=np.ones((3, 3), dtype=bool))
    point_patch = patch[cells[:, 0], cells[:, 1]]
    sizes = np.bincount(point_patch, minlength=count + 1)
    return sizes[point_patch] >= min_size
