"""Point-cloud transforms over numpy arrays: voxelisation, augmentation, normalisation, contrastive views.

Everything is pure: inputs are never modified, randomness comes only from the `np.random.Generator` passed in.
"""

from __future__ import annotations

import numpy as np

from freepoint_bench.errors import ConfigError, DataError

__all__ = ["augment", "normalize_xyz", "random_view_pair", "voxel_majority", "voxel_mean", "voxelize"]


def voxelize(xyz: np.ndarray, voxel_size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (coords, index, inverse): the occupied voxels of `xyz` and the point ↔ voxel maps.

    xyz: (N, 3) metres. voxel_size: edge of a cubic voxel, metres (> 0).
    coords: (M, 3) int32, ``floor(xyz / voxel_size)`` of each occupied voxel (not shifted: shift xyz to be
        non-negative first if a backend needs non-negative coordinates), sorted lexicographically (x, y, z).
    index: (M,) int64, one representative point per voxel (the lowest point index inside it).
    inverse: (N,) int64, the voxel (row of coords) of every point, so ``coords[inverse]`` is per point.
    """
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise DataError(f"voxelize: xyz has shape {xyz.shape}; expected (N, 3)")
    if not (np.isfinite(voxel_size) and voxel_size > 0):
        raise ConfigError(f"voxelize: voxel_size must be a positive number of metres, got {voxel_size!r}")
    if len(xyz) == 0:
        return np.zeros((0, 3), np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not np.isfinite(xyz).all():
        raise DataError("voxelize: xyz has non-finite values; clean the scene before voxelising")
    grid = np.floor(xyz.astype(np.float64) / float(voxel_size)).astype(np.int64)
    if np.abs(grid).max() >= 2**31 - 1:
        raise ConfigError(
            f"voxelize: coordinates / voxel_size {voxel_size} overflow int32; use metres and a larger voxel"
        )
    low = grid.min(axis=0)
    shifted = grid - low
    dims = shifted.max(axis=0) + 1
    if float(dims[0]) * float(dims[1]) * float(dims[2]) < 2**62:
        # One int64 key per voxel, ordered like (x, y, z): a 1-D unique is much faster than unique(axis=0).
        key = (shifted[:, 0] * dims[1] + shifted[:, 1]) * dims[2] + shifted[:, 2]
        _, index, inverse = np.unique(key, return_index=True, return_inverse=True)
    else:
        _, index, inverse = np.unique(shifted, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    coords = grid[index].astype(np.int32)
    return coords, index.astype(np.int64), inverse.astype(np.int64)



def voxel_mean(values: np.ndarray, inverse: np.ndarray, num_voxels: int) -> np.ndarray:
    """Returns (M, C) float32: the mean of `values` (N, C) over the points of each voxel (`inverse` (N,) from
    `voxelize`); 0 for a voxel with no point. Sums in float64, so the mean does not depend on point order."""
    values = np.asarray(values)
    counts = np.bincount(inverse, minlength=num_voxels).astype(np.float64)
    out = np.empty((num_voxels, values.shape[1]), dtype=np.float64)
    for j in range(values.shape[1]):
        out[:, j] = np.bincount(inverse, weights=values[:, j], minlength=num_voxels)
    return (out / np.maximum(counts, 1.0)[:, None]).astype(np.float32)


def voxel_majority(
    labels: np.ndarray, inverse: np.ndarray, num_voxels: int, count_unlabelled: bool = True
) -> np.ndarray:
    """Returns (M,) int64, the most frequent label of each voxel's points (ties: the smallest label).

    labels: (N,) int64, -1 = unlabelled; inverse: (N,) voxel per point (from `voxelize`). With count_unlabelled
    (instance targets) -1 competes like any label, so a voxel mostly of unlabelled points is unlabelled; without
    (semantic targets) only labelled points vote and a voxel is -1 only when none of its points is labelled."""
    labels = np.asarray(labels, dtype=np.int64)
    inverse = np.asarray(inverse, dtype=np.int64)
    if not count_unlabelled:  # only labelled points vote (no copy on the instance path, once per training sample)
        keep = labels >= 0
        labels, inverse = labels[keep], inverse[keep]
    out = np.full(num_voxels, -1, dtype=np.int64)
    if not len(labels):
        return out
    shifted = labels + 1  # -1 → 0
    width = int(shifted.max()) + 1
    uniq, counts = np.unique(inverse * width + shifted, return_counts=True)
    vox, lab = uniq // width, uniq % width
    order = np.lexsort((lab, -counts, vox))  # per voxel: most votes first, then the smallest label
    vox, lab = vox[order], lab[order]
    first = np.ones(len(vox), dtype=bool)
    first[1:] = vox[1:] != vox[:-1]
    out[vox[first]] = lab[first] - 1
    return out


def rotation_z(angle: float) -> np.ndarray:
    """Returns the (3, 3) float64 matrix of a rotation by `angle` radians about the z axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def augment(
    xyz: np.ndarray,
    rgb: np.ndarray,
    rng: np.random.Generator,
    rotate_z: bool = True,
    flip: bool = True,
    scale: tuple[float, float] | None = (0.9, 1.1),
    jitter: float = 0.005,
    color_jitter: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (xyz, rgb): new, randomly augmented copies (float32) of the points.

    xyz: (N, 3) metres; rgb: (N, 3) in 0..1. In this order, about the centre of the xy bounding box:
    rotate_z: a uniform rotation about the vertical axis; flip: mirror x and y, each with probability 0.5;
    scale: one isotropic factor drawn uniformly from the range (None: no scaling); jitter: Gaussian noise
    of this std (metres) on every coordinate; color_jitter: Gaussian noise of this std on rgb, clipped
    to 0..1.
    The same `rng` state gives the same result.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    rgb = np.asarray(rgb, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or rgb.shape != xyz.shape:
        raise DataError(f"augment: xyz {xyz.shape} and rgb {rgb.shape} must both be (N, 3)")
    if len(xyz) == 0:
        return xyz.astype(np.float32), rgb.astype(np.float32)
    centre = np.zeros(3)
    centre[:2] = (xyz[:, :2].min(axis=0) + xyz[:, :2].max(axis=0)) / 2.0
    out = xyz - centre
    if rotate_z:
        out = out @ rotation_z(rng.uniform(0.0, 2.0 * np.pi)).T
    if flip:
        signs = np.where(rng.random(2) < 0.5, -1.0, 1.0)
        out[:, :2] *= signs
    if scale is not None:
        lo, hi = scale
        if not 0 < lo <= hi:
            raise ConfigError(f"augment: scale range {scale} must satisfy 0 < low <= high")
        out *= rng.uniform(lo, hi)
    if jitter > 0:
        out += rng.normal(0.0, jitter, size=out.shape)
    out += centre
    colours = rgb.copy()
    if color_jitter > 0:
        colours = np.clip(colours + rng.normal(0.0, color_jitter, size=colours.shape), 0.0, 1.0)
    return out.astype(np.float32), colours.astype(np.float32)


def normalize_xyz(xyz: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Returns (N, 3) float32 coordinates in [-0.5, 0.5]: centred on the bounding-box centre, divided by
    the largest bounding-box extent (so the longest side spans exactly 1; aspect ratio is kept).

    scale: divide by this fixed length instead (same units as xyz), so a crop and a whole scene keep one
    scale; the result is then in [-0.5, 0.5] only where the extent is <= scale.
    A single point (or all points equal) maps to the origin.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise DataError(f"normalize_xyz: xyz has shape {xyz.shape}; expected (N, 3)")
    if len(xyz) == 0:
        return xyz.astype(np.float32)
    if scale is not None and not scale > 0:
        raise DataError(f"normalize_xyz: scale must be > 0, got {scale}")
    low, high = xyz.min(axis=0), xyz.max(axis=0)
    extent = float((high - low).max()) if scale is None else float(scale)
    return ((xyz - (low + high) / 2.0) / (extent if extent > 0 else 1.0)).astype(np.float32)


def random_view_pair(
    xyz: np.ndarray,
    rgb: np.ndarray,
    rng: np.random.Generator,
    rotate_z: bool = True,
    flip: bool = True,
    scale: tuple[float, float] | None = (0.9, 1.1),
    jitter: float = 0.005,
    color_jitter: float = 0.05,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Returns ((xyz_a, rgb_a), (xyz_b, rgb_b)): two independently augmented copies of the same points.

    Row i of view a and row i of view b are the same physical point (the correspondence is the identity),
    which is what point-level contrastive pretext tasks (PointContrast, CSC) need. Arguments as `augment`.
    """
    kwargs = dict(rotate_z=rotate_z, flip=flip, scale=scale, jitter=jitter, color_jitter=color_jitter)
    view_a = augment(xyz, rgb, rng, **kwargs)
    view_b = augment(xyz, rgb, rng, **kwargs)
    return view_a, view_b
