"""Point-cloud transforms over numpy arrays: voxelisation, augmentation, normalisation, contrastive views.

Everything is pure: inputs are never modified, randomness comes only from the `np.random.Generator` passed in.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from freepoint_bench.errors import ConfigError, DataError

__all__ = ["augment", "elastic_distortion", "normalize_xyz", "random_view_pair", "voxel_majority", "voxel_mean",
           "voxelize"]


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


def rotation(axis: int, angle: float) -> np.ndarray:
    """Returns the (3, 3) float64 matrix of a right-handed rotation by `angle` radians about axis 0 (x), 1 (y) or
    2 (z)."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = (axis + 1) % 3, (axis + 2) % 3  # the plane it turns, in cyclic order: (y, z), (z, x), (x, y)
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


# Smoothing of elastic_distortion's noise: a 3-tap box along each axis, twice (Mask3D's elastic_distortion in
# datasets/semseg.py, after MinkowskiEngine's example: blurx / blury / blurz = ones(3) / 3, two rounds, zero outside).
ELASTIC_BOX = np.full(3, 1.0 / 3.0)
ELASTIC_ROUNDS = 2


def elastic_distortion(xyz: np.ndarray, granularity: float, magnitude: float,
                       rng: np.random.Generator) -> np.ndarray:
    """Returns (N, 3) float64: `xyz` moved by a smooth random displacement field (Mask3D's elastic distortion).

    xyz: (N, 3) metres; granularity: spacing of the noise grid, metres (> 0); magnitude: the field's multiplier,
    metres (>= 0). The rule, as Mask3D's datasets/semseg.py `elastic_distortion`: a grid of nodes
    ``low - granularity + k * granularity`` per axis (low = xyz.min(0); k = 0 .. n-1 with
    ``n = (max - low) // granularity + 3``, Mask3D's floor division, so every point lies between the second and the
    last node) holds one standard normal 3-vector per node, drawn from `rng` as one (n_x, n_y, n_z, 3) array; the
    field is smoothed ELASTIC_ROUNDS times by ELASTIC_BOX along x, then y, then z, zero beyond the grid (per axis,
    two nodes or more from the grid's faces, the kernel [1, 2, 3, 2, 1] / 9); each point moves by `magnitude` times
    the trilinear interpolation of the smoothed field at its position. The smoothed field's standard deviation at an
    inner node is (19/81)^(3/2) ≈ 0.114 per component, so a point moves ~0.11 x magnitude per axis, and neighbours
    within a fraction of `granularity` move alike.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    if not (np.isfinite(granularity) and granularity > 0):
        raise ConfigError(f"elastic_distortion: granularity must be a positive number of metres, got {granularity!r}")
    if not (np.isfinite(magnitude) and magnitude >= 0):
        raise ConfigError(f"elastic_distortion: magnitude must be >= 0 metres, got {magnitude!r}")
    if len(xyz) == 0:
        return xyz.copy()
    low = xyz.min(axis=0) - granularity  # the first node
    shape = ((xyz.max(axis=0) - xyz.min(axis=0)) // granularity).astype(np.int64) + 3
    field = rng.standard_normal((*shape.tolist(), 3))
    for _ in range(ELASTIC_ROUNDS):
        for axis in range(3):
            field = ndimage.convolve1d(field, ELASTIC_BOX, axis=axis, mode="constant", cval=0.0)
    # Trilinear interpolation: a spline of order 1 on the nodes (no prefilter at that order) is the weighted sum of a
    # point's cell's 8 corners, ~4x faster here than gathering them (250k points: 0.02 s per component)
    position = ((xyz - low) / granularity).T  # (3, N) in node units, within [1, n - 1]
    moved = np.stack([ndimage.map_coordinates(field[..., c], position, order=1, mode="nearest") for c in range(3)],
                     axis=1)
    return xyz + magnitude * moved


def augment(
    xyz: np.ndarray,
    rgb: np.ndarray,
    rng: np.random.Generator,
    rotate_z: bool = True,
    flip: bool = True,
    scale: tuple[float, float] | None = (0.9, 1.1),
    jitter: float = 0.005,
    color_jitter: float = 0.05,
    *,  # Mask3D's further steps, one line a step, each off by default
    elastic: tuple[tuple[float, float], ...] = (), elastic_p: float = 0.95,
    scale_per_axis: bool = False,
    tilt_max_rad: float = 0.0,
    brightness: float = 0.0, contrast: float = 0.0,
    rgb_shift: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (xyz, rgb): new, randomly augmented copies (float32) of the points.

    xyz: (N, 3) metres; rgb: (N, 3) in 0..1. In this order, about the centre of the xy bounding box (z: 0):
    elastic: with probability elastic_p, elastic_distortion by each (granularity, magnitude) pair in turn (metres);
    scale with scale_per_axis: one factor per axis drawn uniformly from the range;
    rotate_z: a uniform rotation about the vertical axis; flip: mirror x and y, each with probability 0.5;
    scale without scale_per_axis: one isotropic factor drawn uniformly from the range (None: no scaling);
    tilt_max_rad: a rotation about y, then one about x, each by an angle uniform in ±tilt_max_rad;
    jitter: Gaussian noise of this std (metres) on every coordinate. Colours (0..1, clipped after each step):
    contrast and brightness: ``alpha * rgb + beta``, alpha uniform in 1 ± contrast, beta uniform in ±brightness;
    rgb_shift: one offset per channel uniform in ±rgb_shift; color_jitter: Gaussian noise of this std.
    A step that is off draws nothing from `rng`: with the keyword-only arguments at their defaults the draws, and
    the result, are those of the rotation / flip / isotropic scale / jitter / colour-noise rule alone.

    Mask3D's S3DIS training (datasets/semseg.py __getitem__) applies: a random translation, x and y flips (p 0.5
    each), elastic distortion ((0.2, 0.4), (0.8, 1.6)) with p 0.95, then conf/augmentation/volumentations_aug.yaml
    (Scale3d 1 ± 0.1 per axis, RotateAroundAxis3d about z in ±π, about y then x in ±π/24, all always applied), then
    conf/augmentation/albumentations_aug.yaml on uint8 colours (RandomBrightnessContrast ±0.2 brightness_by_max,
    then RGBShift ±20 per channel, both always applied). Here the flips come after the elastic distortion, the scale
    and the rotation about z, which keeps the older draws' order; in distribution that is Mask3D's order: a flip
    commutes with an axis-aligned scale, turns a rotation by θ into one by -θ (θ uniform over the circle either
    way) and maps the elastic field to one of the same law, but for the grid's anchor (the lowest node one spacing
    below the lowest point along each axis: in Mask3D after the mirror, here before). The translation is not drawn:
    engine.data.make_sample shifts the points to >= 0 before voxelising, which undoes any translation (in Mask3D it
    also moves the voxel grid's phase against the points; here the lowest point sits on a voxel boundary).
    The same `rng` state gives the same result.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    rgb = np.asarray(rgb, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or rgb.shape != xyz.shape:
        raise DataError(f"augment: xyz {xyz.shape} and rgb {rgb.shape} must both be (N, 3)")
    if len(xyz) == 0:
        return xyz.astype(np.float32), rgb.astype(np.float32)
    if scale is not None and not 0 < scale[0] <= scale[1]:
        raise ConfigError(f"augment: scale range {scale} must satisfy 0 < low <= high")
    centre = np.zeros(3)
    centre[:2] = (xyz[:, :2].min(axis=0) + xyz[:, :2].max(axis=0)) / 2.0
    out = xyz - centre
    if elastic and rng.random() < elastic_p:
        for granularity, magnitude in elastic:
            out = elastic_distortion(out, granularity, magnitude, rng)
    if scale is not None and scale_per_axis:  # before the rotation, as Mask3D's Scale3d: along the scene's own axes
        out = out * rng.uniform(scale[0], scale[1], size=3)
    if rotate_z:
        out = out @ rotation(2, rng.uniform(0.0, 2.0 * np.pi)).T
    if flip:
        signs = np.where(rng.random(2) < 0.5, -1.0, 1.0)
        out[:, :2] *= signs
    if scale is not None and not scale_per_axis:
        out *= rng.uniform(scale[0], scale[1])
    if tilt_max_rad > 0:
        out = out @ rotation(1, rng.uniform(-tilt_max_rad, tilt_max_rad)).T
        out = out @ rotation(0, rng.uniform(-tilt_max_rad, tilt_max_rad)).T
    if jitter > 0:
        out += rng.normal(0.0, jitter, size=out.shape)
    out += centre
    colours = rgb.copy()
    if contrast > 0 or brightness > 0:
        # albumentations' RandomBrightnessContrast (brightness_by_max=True), transcribed to 0..1 colours: alpha =
        # 1 + uniform(contrast_limit), beta = uniform(brightness_limit); out = clip(alpha * img + beta * max_value)
        # with max_value 255 for uint8 (here 1), as a lookup table truncated to uint8 there (not quantised here)
        alpha = 1.0 + rng.uniform(-contrast, contrast)
        beta = rng.uniform(-brightness, brightness)
        colours = np.clip(alpha * colours + beta, 0.0, 1.0)
    if rgb_shift > 0:
        # albumentations' RGBShift: r, g, b shifts each uniform(-limit, limit), out = clip(img + shift) per channel
        # (Mask3D: limit 20 on 0..255 colours, i.e. 20/255 here)
        colours = np.clip(colours + rng.uniform(-rgb_shift, rgb_shift, size=3), 0.0, 1.0)
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
