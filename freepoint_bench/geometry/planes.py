"""Background removal: iterative RANSAC plane segmentation (open3d) of large planar surfaces.

Floors, walls, ceilings and large table tops are the planes with the most inliers in an indoor scan
(FreePoint §3.1). Each round fits one plane by RANSAC on a random subset of the still-foreground points
(for speed), then classifies *all* still-foreground points by their distance to that plane; rounds stop
when the next plane would be smaller than the minimum size. open3d is imported only inside this module's
functions so that training code imports without it.

With `rules`, each large patch of a plane is classified before it is removed (z is up, metres):
- floor: horizontal, within `floor_band` of the scene's floor height (its 1st z percentile) → removed;
- ceiling: horizontal, within `floor_band` of the top (99th percentile) of a scan >= 2 m tall → removed;
- wall: vertical, at least `wall_min_height` tall, and a boundary of the scan: of the points whose position
  along the wall lies within the patch (any height), at most `wall_outside` lie more than `margin` behind it
  (a cabinet or box face has the room on one side and the wall, or the rest of the room, on the other);
- support: any other horizontal patch on which objects stand (at least `support_points` points within
  `support_height` above it, over its footprint) → removed, so a table top no longer joins what is on it;
- everything else stays foreground (box, cabinet and shelf faces, empty table tops, slanted planes) and
  is left out of later RANSAC rounds. Without rules every large patch is removed (plain plane removal).
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
    removed_by: (N,) int8 index into RULES of what removed each point (0 = kept).
    """

    foreground: np.ndarray
    planes: np.ndarray
    inlier_counts: np.ndarray
    removed_by: np.ndarray | None = None


DEFAULT_CELL = 0.1  # ours: patch grid (metres) of the rules when grid_size is 0
RULES = ("kept", "plane", "floor", "ceiling", "wall", "support")  # removed_by codes; "plane": rules off
HORIZONTAL_COS = np.cos(np.deg2rad(15))  # ours: a normal within 15° of z is a horizontal plane
VERTICAL_SIN = np.sin(np.deg2rad(15))  # ours: ... within 15° of the horizontal, a vertical one


def import_open3d():
    """Returns the open3d module; ConfigError naming the install when it is missing (it is imported only where used,
    so that training and inference import without it)."""
    try:
        import open3d
    except ImportError as exc:
        raise ConfigError(f"open3d is not importable ({exc}); plane removal and normals need it: "
                          "pip install -e '.[cpu]' (open3d-cpu) or '.[cuda]' (open3d)") from None
    return open3d


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
    rules: bool = False,
    floor_band: float = 0.2,
    wall_min_height: float = 0.8,
    wall_outside: float = 0.05,
    margin: float = 0.1,
    support_points: int = 20,
    support_height: float = 0.5,
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
    rules: classify each patch as floor, ceiling, wall or support (removed) or keep it (module docstring);
    up to max_planes planes are removed, in at most 3 * max_planes RANSAC rounds.
    A scene made only of planes yields an all-False foreground (no segments), not an error.
    """
    bad_grid = grid_size is not None and grid_size < 0
    if bad_grid or distance_threshold <= 0 or max_planes < 0 or num_iterations < 1 or fit_points < 3:
        raise ConfigError(
            "plane removal needs distance_threshold > 0, max_planes >= 0, num_iterations >= 1, "
            f"fit_points >= 3; got {distance_threshold}, {max_planes}, {num_iterations}, {fit_points}"
        )
    o3d = import_open3d()
    xyz = np.asarray(xyz, dtype=np.float64)
    n = len(xyz)
    foreground = np.ones(n, dtype=bool)
    fit_pool = np.ones(n, dtype=bool)  # RANSAC fits on points neither removed nor on a kept patch
    removed_by = np.zeros(n, dtype=np.int8)
    min_size = max(int(min_plane_points), int(np.ceil(min_plane_fraction * n)))
    rng = np.random.default_rng(seed)
    planes: list[np.ndarray] = []
    counts: list[int] = []
    scene = _SceneFrame(xyz, floor_band) if rules and n else None
    for round_ in range(3 * max_planes if rules else max_planes):
        if len(planes) >= max_planes:
            break
        pool = np.flatnonzero(fit_pool)
        if len(pool) < max(3, min_size):
            break
        fit = pool if len(pool) <= fit_points else rng.choice(pool, fit_points, replace=False)
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
        # Inliers among all foreground points: a kept patch (a sliver of wall at a table's height) can still
        # go with a later plane (that wall), classified again there.
        remaining = np.flatnonzero(foreground)
        dist = np.abs(xyz[remaining] @ model[:3] + model[3])
        inliers = remaining[dist <= distance_threshold]
        if len(inliers) < min_size:
            break
        if grid_size or scene is not None:
            patch = _patches(xyz[inliers], model[:3], grid_size or DEFAULT_CELL)
            sizes = np.bincount(patch)
            large = sizes[patch] >= min_size
        else:
            patch = np.zeros(len(inliers), np.int64)
            sizes, large = np.array([len(inliers)]), np.ones(len(inliers), bool)
        if not large.any():
            break
        if scene is None:
            gone = inliers[large]
            removed_by[gone] = RULES.index("plane")
        else:
            gone_parts = []
            for pid in np.flatnonzero(sizes >= min_size):
                members = inliers[patch == pid]
                rule = scene.classify(members, model, foreground, wall_min_height, wall_outside, margin,
                                      support_points, support_height, grid_size or DEFAULT_CELL)
                if rule == "kept":
                    fit_pool[members] = False  # stays foreground, out of later fits
                else:
                    removed_by[members] = RULES.index(rule)
                    gone_parts.append(members)
                logger.debug("plane %d patch %d: %s (%d points)", round_, pid, rule, len(members))
            gone = np.concatenate(gone_parts) if gone_parts else np.zeros(0, np.int64)
        if len(gone) == 0:
            continue
        foreground[gone] = False
        fit_pool[gone] = False
        planes.append(model)
        counts.append(len(gone))
        logger.debug("plane %d: %s with %d inliers", round_, np.round(model, 3), len(gone))
    return PlaneSegmentation(
        foreground=foreground,
        planes=np.asarray(planes, dtype=np.float64).reshape(-1, 4),
        inlier_counts=np.asarray(counts, dtype=np.int64),
        removed_by=removed_by,
    )


class _SceneFrame:
    """The scan's floor and top heights (z percentiles) and the rules of `remove_planes` for one patch."""

    def __init__(self, xyz: np.ndarray, floor_band: float) -> None:
        self.xyz = xyz
        self.floor_z, self.top_z = np.percentile(xyz[:, 2], [1, 99])
        self.band = floor_band

    def classify(
        self,
        members: np.ndarray,
        model: np.ndarray,
        foreground: np.ndarray,
        wall_min_height: float,
        wall_outside: float,
        margin: float,
        support_points: int,
        support_height: float,
        cell: float,
    ) -> str:
        """Returns the rule ("floor", "ceiling", "wall", "support" or "kept") for the patch `members`."""
        normal = model[:3]
        pts = self.xyz[members]
        if abs(normal[2]) >= HORIZONTAL_COS:
            z = float(np.median(pts[:, 2]))
            if z <= self.floor_z + self.band:
                return "floor"
            if self.top_z - self.floor_z >= 2.0 and z >= self.top_z - self.band:
                return "ceiling"
            standing = self._supports(members, z, foreground, support_height, cell)
            return "support" if standing >= support_points else "kept"
        if abs(normal[2]) <= VERTICAL_SIN:
            height = float(np.ptp(pts[:, 2]))
            if height >= wall_min_height and self._outside_share(pts, model, margin) <= wall_outside:
                return "wall"
        return "kept"

    def _supports(self, members: np.ndarray, z: float, foreground: np.ndarray, height: float, cell: float) -> int:
        """Returns how many foreground points off the patch lie up to `height` above it, over the inside of its
        footprint (cells whose 8 neighbours are on the patch too: a wall rising from the patch's edge, or a
        sliver of wall cut at the patch's height, does not count as standing on it)."""
        from scipy import ndimage

        origin = self.xyz[members, :2].min(axis=0)
        cells = np.floor((self.xyz[members, :2] - origin) / cell).astype(np.int64)
        shape = tuple(cells.max(axis=0) + 1)
        occupied = np.zeros(shape, dtype=bool)
        occupied[cells[:, 0], cells[:, 1]] = True
        occupied = ndimage.binary_erosion(occupied, structure=np.ones((3, 3), dtype=bool))
        on_patch = np.zeros(len(self.xyz), dtype=bool)
        on_patch[members] = True
        above = foreground & ~on_patch & (self.xyz[:, 2] > z + 0.02) & (self.xyz[:, 2] <= z + height)
        idx = np.floor((self.xyz[above, :2] - origin) / cell).astype(np.int64)
        inside = (idx >= 0).all(axis=1) & (idx < np.asarray(shape)).all(axis=1)
        return int(occupied[idx[inside, 0], idx[inside, 1]].sum())

    def _outside_share(self, pts: np.ndarray, model: np.ndarray, margin: float) -> float:
        """Returns the share of the scan's points along the patch (any height) lying > margin on its far side."""
        normal = model[:3]
        along = np.cross(normal, [0.0, 0.0, 1.0])
        along /= max(np.linalg.norm(along), 1e-12)
        span = pts @ along
        pos = self.xyz @ along
        near = (pos >= span.min()) & (pos <= span.max())
        dist = self.xyz[near] @ normal + model[3]
        front, back = int((dist > margin).sum()), int((dist < -margin).sum())
        return min(front, back) / max(front + back, 1)


def _patches(points: np.ndarray, normal: np.ndarray, grid_size: float) -> np.ndarray:
    """Returns (P,) int64 patch ids (from 0) of points (P, 3): 8-connected cells of an in-plane grid."""
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
    patch, _ = ndimage.label(occupied, structure=np.ones((3, 3), dtype=bool))
    return patch[cells[:, 0], cells[:, 1]].astype(np.int64) - 1
