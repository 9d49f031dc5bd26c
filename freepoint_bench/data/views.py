"""Two-view generators for contrastive pretext tasks (PointContrast, CSC, DepthContrast).

    cfg = ViewConfig()                                     # MSC-style defaults (Pointcept's ScanNet pretraining)
    pair = scene_view_pair(scene, cfg, np.random.default_rng([seed, epoch, index]))
    pair.a.xyz, pair.a.rgb           # (N_a, 3) float32 view a (augmented, grid-sampled, cropped)
    pair.a.index                     # (N_a,) rows of the scene each view point came from
    pair.a.transform                 # (4, 4) pre-augmentation coordinates -> view coordinates (before jitter)
    pair.matches                     # (K, 2) int64 [row in a, row in b] of corresponding points

Reconstructed scans (the default, as Pointcept's MSC generator): each view is the whole scene rotated about z
(±180°) and tilted about x and y (±π/64), scaled, flipped, jittered, colour-jittered, grid-sampled (2 cm) and
cropped to the ~60% of its points nearest a random point; two views overlap in at least 20% of the scene.
A point of view a corresponds to the nearest point of view b in the pre-augmentation coordinates when that one
is within `match_radius_m` (3 cm).

RGB-D frames (PointContrast's and CSC's original data): `Frame` holds one frame's points in camera coordinates
with its camera-to-world pose; `frame_view_pair` augments two frames each in its own camera frame and matches
them in world coordinates; `frame_pairs` picks the pairs of frames `gap` apart that overlap enough (PointContrast's
preprocessing: every 25th frame thinned to 5 cm voxels by `downsample_frame`, the larger direction's share of
points within 7.5 cm of the other frame >= 30%); `backproject_depth` turns a
depth image into a Frame's points (data.readers.scannet_frames reads ScanNet's .sens streams and exports).
`PairViewConfig` (PointContrast's and CSC's `views`) adds where the pairs come from: source "scene" (default) or
"frames" with frames_root and the pairing rule (frame_gap, frame_min_overlap, frame_voxel_m, frame_overlap_m,
frame_overlap_rule: by default PointContrast's preprocessing).

Everything is pure and seeded: the same generator state gives the same views.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator
from scipy.spatial import cKDTree

from freepoint_bench.config import omit_at_default
from freepoint_bench.data.scene import Scene
from freepoint_bench.data.transforms import voxelize
from freepoint_bench.errors import DataError

__all__ = [
    "FRAME_FIELDS",
    "Frame",
    "PairViewConfig",
    "View",
    "ViewConfig",
    "ViewPair",
    "augment_view",
    "axis_rotation",
    "backproject_depth",
    "downsample_frame",
    "frame_overlap",
    "frame_pairs",
    "frame_view_pair",
    "grid_sample",
    "match_points",
    "same_view_pair",
    "scene_view_pair",
    "sphere_crop",
]


class ViewConfig(BaseModel):
    """How each view of a pair is cut and augmented (defaults: Pointcept's MSC ScanNet pretraining transforms)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    crop_fraction: float = Field(0.6, gt=0, le=1)  # share of the grid-sampled points a view keeps (SphereCrop 0.6)
    max_points: int | None = Field(None, ge=10)  # cap on a view's points after the crop (None: no cap)
    rotate_z: float = Field(math.pi, ge=0)  # max |rotation| about z, radians (MSC: ±180°)
    tilt: float = Field(math.pi / 64, ge=0)  # max |rotation| about x and about y, radians (MSC: ±π/64)
    scale_min: float = Field(0.9, gt=0)  # isotropic scale range (MSC RandomScale 0.9..1.1)
    scale_max: float = Field(1.1, gt=0)
    flip: float = Field(0.5, ge=0, le=1)  # probability of mirroring x, and independently y (MSC RandomFlip 0.5)
    jitter_sigma_m: float = Field(0.005, ge=0)  # Gaussian position noise, metres (MSC RandomJitter 0.005)
    jitter_clip_m: float = Field(0.02, ge=0)  # |noise| per coordinate clipped here, metres (MSC: 0.02)
    color_shift: float = Field(0.05, ge=0)  # one uniform rgb offset in ±this per view (MSC ChromaticTranslation)
    color_jitter: float = Field(0.05, ge=0)  # per-point Gaussian rgb noise std, 0..1 colours (MSC ChromaticJitter)
    grid_size_m: float = Field(0.02, gt=0)  # grid sampling: one random point per cell of this edge (MSC: 2 cm)
    match_radius_m: float = Field(0.03, gt=0)  # correspondence radius in pre-augmentation coordinates (MSC: 3 cm)
    # True: the rotation is about a random axis instead of z, PointContrast's sample_random_trans
    # (facebookresearch/PointContrast pretrain/pointcontrast/lib/ddp_data_loaders.py): the axis drawn uniformly in
    # the cube [-1/2, 1/2]^3 and normalised, the angle uniform in ±rotate_z (its rotation_range 360: ±π). The
    # tilts still follow. Left out of the record at its default (configs keep their ids)
    free_rotation: bool = False
    # True: the rotation is about one of x, y and z instead of z, DepthContrast's RandomRotateAll
    # (facebookresearch/DepthContrast datasets/transforms/augment3d.py): the angle uniform in ±rotate_z (its ±π),
    # then x when a uniform draw is <= 0.33, else y when a second draw is <= 0.66, else z (so x 0.33, y 0.4422,
    # z 0.2278, not a third each). The tilts still follow. Left out of the record at its default.
    rotate_one_axis: bool = False

    @model_validator(mode="after")
    def _scale_order(self) -> ViewConfig:
        if self.scale_min > self.scale_max:
            raise ValueError(f"scale_min {self.scale_min} > scale_max {self.scale_max}")
        if self.free_rotation and self.rotate_one_axis:
            raise ValueError("free_rotation and rotate_one_axis are two rotation rules: set one of them")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        return omit_at_default(self, handler(self), VIEW_OMITTED_AT_DEFAULT)


# ViewConfig fields added after its records were first written
VIEW_OMITTED_AT_DEFAULT = ("free_rotation", "rotate_one_axis")


OverlapRule = Literal["min", "max"]  # how frame_overlap reduces its two directions
FRAME_FIELDS = ("frames_root", "frame_gap", "frame_min_overlap", "frame_voxel_m", "frame_overlap_m",
                "frame_overlap_rule")


class PairViewConfig(ViewConfig):
    """A ViewConfig plus where the pairs come from: two crops of each reconstructed scan (source "scene", the
    default) or pairs of the scan's RGB-D frames (source "frames", PointContrast's and CSC's original data)."""

    source: Literal["scene", "frames"] = "scene"  # scene: scene_view_pair; frames: frame_view_pair of frame pairs
    frames_root: str | None = None  # folder of <scene>.sens / <scene>/<scene>.sens / SensReader exports <scene>/
    frame_gap: int = Field(25, ge=1)  # frames this far apart are paired (PointContrast: every 25th frame)
    frame_min_overlap: float = Field(0.3, ge=0, le=1)  # a pair's frame_overlap at least this (PointContrast: 30%)
    frame_voxel_m: float = Field(0.05, gt=0)  # frames thinned to this voxel for the overlap (preprocessing: 5 cm)
    frame_overlap_m: float = Field(0.075, gt=0)  # overlap radius, metres (preprocessing: 1.5 voxels)
    frame_overlap_rule: OverlapRule = "max"  # the larger of the two directions' shares (preprocessing), or "min"

    @model_validator(mode="after")
    def _frames_need_a_root(self) -> PairViewConfig:
        if self.source == "frames" and not self.frames_root:
            raise ValueError("source 'frames' needs frames_root (the folder of the scenes' .sens / exported frames)")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # scene views record no frame fields: their configs, run records and checkpoint ids stay the ViewConfig's
        data = omit_at_default(self, handler(self), VIEW_OMITTED_AT_DEFAULT)
        if self.source == "scene":
            for key in ("source", *FRAME_FIELDS):
                data.pop(key, None)
        return data


@dataclass(frozen=True, eq=False)
class View:
    """One augmented view.

    xyz: (N, 3) float32 metres, view coordinates; rgb: (N, 3) float32 0..1.
    index: (N,) int64 rows of the source points (the scene's, or the frame's).
    origin: (N, 3) float64 pre-augmentation coordinates of the points (scene / world frame), metres.
    transform: (4, 4) float64 affine map origin -> xyz before the clipped jitter, so
        ``xyz ≈ origin @ transform[:3, :3].T + transform[:3, 3]`` within jitter_clip_m per coordinate.
    """

    xyz: np.ndarray
    rgb: np.ndarray
    index: np.ndarray
    origin: np.ndarray
    transform: np.ndarray

    @property
    def num_points(self) -> int:
        """Returns N."""
        return len(self.xyz)

    def scene(self, name: str) -> Scene:
        """Returns the view as a Scene (for engine.data.make_sample)."""
        return Scene(name=name, xyz=self.xyz, rgb=self.rgb)


@dataclass(frozen=True, eq=False)
class ViewPair:
    """Two views and their correspondences: matches (K, 2) int64 [row of a, row of b]."""

    a: View
    b: View
    matches: np.ndarray


@dataclass(frozen=True, eq=False)
class Frame:
    """One RGB-D frame: xyz (N, 3) metres in camera coordinates, rgb (N, 3) 0..1, pose (4, 4) camera -> world."""

    xyz: np.ndarray
    rgb: np.ndarray
    pose: np.ndarray
    name: str = "frame"

    def __post_init__(self) -> None:
        xyz, rgb, pose = np.asarray(self.xyz), np.asarray(self.rgb), np.asarray(self.pose, dtype=np.float64)
        if xyz.ndim != 2 or xyz.shape[1] != 3 or len(xyz) == 0 or rgb.shape != xyz.shape:
            raise DataError(f"frame {self.name}: xyz {xyz.shape} and rgb {rgb.shape} must both be (N, 3), N > 0")
        if pose.shape != (4, 4) or not np.isfinite(pose).all():
            raise DataError(f"frame {self.name}: pose must be a finite (4, 4) camera-to-world matrix")
        object.__setattr__(self, "pose", pose)

    def world(self) -> np.ndarray:
        """Returns (N, 3) float64 world coordinates of the frame's points."""
        return _apply(self.pose, self.xyz)


# ---------------------------------------------------------------------------------------------- pieces


def _apply(transform: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    return np.asarray(xyz, dtype=np.float64) @ transform[:3, :3].T + transform[:3, 3]


def _rotation(axis: int, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def axis_rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Returns the (3, 3) rotation by `angle` (right-handed) about `axis` (any non-zero length): Rodrigues'
    formula, equal to PointContrast's expm(cross(I, axis / |axis| * angle))."""
    k = np.asarray(axis, dtype=np.float64)
    norm = float(np.linalg.norm(k))
    if norm == 0.0:
        return np.eye(3)
    x, y, z = k / norm
    skew = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * skew + (1.0 - math.cos(angle)) * (skew @ skew)


def augment_view(
    xyz: np.ndarray, rgb: np.ndarray, config: ViewConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (xyz float64, rgb float32, transform (4, 4)): the points rotated about z (free_rotation: about a
    random axis; rotate_one_axis: about x, y or z), tilted about x and y, scaled and flipped about their
    bounding-box centre (transform), then jittered and colour-jittered."""
    xyz = np.asarray(xyz, dtype=np.float64)
    centre = (xyz.min(axis=0) + xyz.max(axis=0)) / 2.0
    if config.free_rotation:
        axis = rng.random(3) - 0.5
        linear = axis_rotation(axis, rng.uniform(-config.rotate_z, config.rotate_z))
    elif config.rotate_one_axis:
        # RandomRotateAll's draws in its order: the angle, then `random() <= 0.33` for x, a second one `<= 0.66` for
        # y; its rotx / roty / rotz are the right-handed rotations axis_rotation gives
        angle = rng.uniform(-config.rotate_z, config.rotate_z)
        axis = 0 if rng.random() <= 0.33 else 1 if rng.random() <= 0.66 else 2
        linear = axis_rotation(np.eye(3)[axis], angle)
    else:
        linear = _rotation(2, rng.uniform(-config.rotate_z, config.rotate_z))
    linear = _rotation(0, rng.uniform(-config.tilt, config.tilt)) @ linear
    linear = _rotation(1, rng.uniform(-config.tilt, config.tilt)) @ linear
    linear = rng.uniform(config.scale_min, config.scale_max) * linear
    flips = np.where(rng.random(2) < config.flip, -1.0, 1.0)
    linear = np.diag([flips[0], flips[1], 1.0]) @ linear
    transform = np.eye(4)
    transform[:3, :3] = linear
    transform[:3, 3] = centre - linear @ centre
    out = _apply(transform, xyz)
    if config.jitter_sigma_m > 0:
        noise = rng.normal(0.0, config.jitter_sigma_m, size=out.shape)
        out += np.clip(noise, -config.jitter_clip_m, config.jitter_clip_m)
    colours = np.asarray(rgb, dtype=np.float64) + rng.uniform(-config.color_shift, config.color_shift, size=3)
    if config.color_jitter > 0:
        colours = colours + rng.normal(0.0, config.color_jitter, size=colours.shape)
    return out, np.clip(colours, 0.0, 1.0).astype(np.float32), transform


def grid_sample(xyz: np.ndarray, grid_size: float, rng: np.random.Generator) -> np.ndarray:
    """Returns the sorted rows keeping one uniformly random point per occupied cell of edge `grid_size`."""
    _, _, inverse = voxelize(xyz, grid_size)
    order = np.lexsort((rng.random(len(xyz)), inverse))
    first = np.ones(len(order), dtype=bool)
    first[1:] = inverse[order[1:]] != inverse[order[:-1]]
    return np.sort(order[first])


def sphere_crop(xyz: np.ndarray, fraction: float, rng: np.random.Generator,
                max_points: int | None = None) -> np.ndarray:
    """Returns the sorted rows of the ceil(fraction * N) points (at most max_points) nearest a random point."""
    keep = min(len(xyz), max(1, math.ceil(fraction * len(xyz))), max_points or len(xyz))
    if keep >= len(xyz):
        return np.arange(len(xyz))
    centre = xyz[rng.integers(len(xyz))]
    d2 = ((xyz - centre) ** 2).sum(axis=1)
    return np.sort(np.argpartition(d2, keep - 1)[:keep])


def match_points(origin_a: np.ndarray, origin_b: np.ndarray, radius: float) -> np.ndarray:
    """Returns (K, 2) int64 [i, j]: for every point i of a, the nearest point j of b when within `radius`."""
    if len(origin_a) == 0 or len(origin_b) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    dist, j = cKDTree(origin_b).query(origin_a, k=1, distance_upper_bound=radius)
    i = np.flatnonzero(np.isfinite(dist))
    return np.stack([i, j[i]], axis=1).astype(np.int64)


def _make_view(origin: np.ndarray, rgb: np.ndarray, rows: np.ndarray, config: ViewConfig,
               rng: np.random.Generator, crop: bool, pre: np.ndarray | None = None) -> View:
    """Augments `origin` (float64 points), grid-samples and (crop=True) crops them; `pre` is an extra transform
    applied first (frame: world -> camera), recorded in the view's transform."""
    points = origin if pre is None else _apply(pre, origin)
    xyz, colours, transform = augment_view(points, rgb, config, rng)
    if pre is not None:
        transform = transform @ pre
    keep = grid_sample(xyz, config.grid_size_m, rng)
    if crop:
        keep = keep[sphere_crop(xyz[keep], config.crop_fraction, rng, config.max_points)]
    elif config.max_points is not None and len(keep) > config.max_points:
        keep = np.sort(rng.choice(keep, config.max_points, replace=False))
    return View(xyz=xyz[keep].astype(np.float32), rgb=colours[keep], index=rows[keep].astype(np.int64),
                origin=origin[keep], transform=transform)


# ---------------------------------------------------------------------------------------------- generators


def scene_view_pair(scene: Scene, config: ViewConfig, rng: np.random.Generator) -> ViewPair:
    """Returns two overlapping partial views of a reconstructed scene (MSC-style; see the module docstring)."""
    origin = scene.xyz.astype(np.float64)
    rows = np.arange(scene.num_points)
    a = _make_view(origin, scene.rgb, rows, config, rng, crop=True)
    b = _make_view(origin, scene.rgb, rows, config, rng, crop=True)
    return ViewPair(a=a, b=b, matches=match_points(a.origin, b.origin, config.match_radius_m))


def same_view_pair(scene: Scene, config: ViewConfig, rng: np.random.Generator) -> ViewPair:
    """Returns two augmentations of one partial view of `scene` (DepthContrast's single-view instance
    discrimination): one crop of crop_fraction of the points, then two independent augmentations + grid samples."""
    rows = sphere_crop(scene.xyz, config.crop_fraction, rng)
    origin = scene.xyz[rows].astype(np.float64)
    rgb = scene.rgb[rows]
    a = _make_view(origin, rgb, rows, config, rng, crop=False)
    b = _make_view(origin, rgb, rows, config, rng, crop=False)
    return ViewPair(a=a, b=b, matches=match_points(a.origin, b.origin, config.match_radius_m))


def frame_view_pair(frame_a: Frame, frame_b: Frame, config: ViewConfig, rng: np.random.Generator) -> ViewPair:
    """Returns views of two RGB-D frames, each augmented in its own camera frame (no crop: a frame is already
    partial); origin and matches are in world coordinates, each view's transform maps world -> view."""
    views = []
    for frame in (frame_a, frame_b):
        world = frame.world()
        views.append(_make_view(world, np.asarray(frame.rgb, dtype=np.float32), np.arange(len(world)), config, rng,
                                crop=False, pre=np.linalg.inv(frame.pose)))
    a, b = views
    return ViewPair(a=a, b=b, matches=match_points(a.origin, b.origin, config.match_radius_m))


def frame_overlap(frame_a: Frame, frame_b: Frame, radius_m: float = 0.05, reduce: OverlapRule = "min") -> float:
    """Returns the min (or max) over both directions of the share of a frame's points with a point of the other
    within radius_m in world coordinates (PointContrast's preprocessing: the max, at 1.5 x its 5 cm voxel)."""
    wa, wb = frame_a.world(), frame_b.world()
    ab = len(match_points(wa, wb, radius_m)) / len(wa)
    ba = len(match_points(wb, wa, radius_m)) / len(wb)
    return float(min(ab, ba) if reduce == "min" else max(ab, ba))


def downsample_frame(frame: Frame, voxel_m: float) -> Frame:
    """Returns the frame thinned to the centroid (and mean colour) of its points in each occupied world voxel of
    edge voxel_m, voxels aligned at the world origin (PointContrast's preprocessing voxelises frames at 5 cm)."""
    _, _, inverse = voxelize(frame.world(), voxel_m)
    counts = np.bincount(inverse).astype(np.float64)

    def mean(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        return np.stack([np.bincount(inverse, weights=values[:, c]) / counts for c in range(3)], axis=1)

    # the centroid in camera coordinates is the world centroid mapped back: the pose is affine
    return Frame(xyz=mean(frame.xyz).astype(np.float32), rgb=mean(frame.rgb).astype(np.float32), pose=frame.pose,
                 name=frame.name)


def frame_pairs(frames: list[Frame], gap: int = 25, min_overlap: float = 0.3,
                radius_m: float = 0.05, reduce: OverlapRule = "min") -> list[tuple[int, int]]:
    """Returns the pairs (i, j), i < j, of every `gap`-th frame of a sequence whose frame_overlap (radius_m,
    reduce) is at least min_overlap (PointContrast: frames 25 apart, >= 30%)."""
    if gap < 1:
        raise DataError(f"frame_pairs: gap must be >= 1, got {gap}")
    picked = list(range(0, len(frames), gap))
    # frame_overlap per pair, with each frame's world points, kd-tree and bounding box computed once: a pair
    # whose boxes are more than radius_m apart has overlap 0, and the second direction is computed only when
    # the first does not decide (O(F^2) pairs: a ScanNet scan has ~200 frames 25 apart)
    world = {i: frames[i].world() for i in picked}
    trees = {i: cKDTree(world[i]) for i in picked}
    boxes = {i: (world[i].min(axis=0) - radius_m, world[i].max(axis=0) + radius_m) for i in picked}

    def share(i: int, j: int) -> float:
        dist, _ = trees[j].query(world[i], k=1, distance_upper_bound=radius_m)
        return float(np.isfinite(dist).mean())

    out = []
    for n, i in enumerate(picked):
        for j in picked[n + 1:]:
            apart = bool(np.any(boxes[i][0] > boxes[j][1]) or np.any(boxes[j][0] > boxes[i][1]))
            if apart:
                if min_overlap <= 0:
                    out.append((i, j))
                continue
            first = share(i, j) >= min_overlap  # short-circuits: the second direction only when it decides
            if (first or share(j, i) >= min_overlap) if reduce == "max" else (first and share(j, i) >= min_overlap):
                out.append((i, j))
    return out


def backproject_depth(depth_m: np.ndarray, intrinsics: np.ndarray, rgb: np.ndarray | None = None,
                      max_depth_m: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Returns (xyz (N, 3) float32 camera metres, rgb (N, 3) float32 0..1) of the valid pixels of a depth image.

    depth_m: (H, W) metres, 0 = no measurement (ScanNet's depth PNGs are millimetres: divide by 1000).
    intrinsics: (3, 3) pinhole matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] of the depth camera.
    rgb: optional (H, W, 3) colours (0..1 or 0..255) registered to the depth image; grey when None.
    """
    depth = np.asarray(depth_m, dtype=np.float64)
    k = np.asarray(intrinsics, dtype=np.float64)
    if depth.ndim != 2 or k.shape != (3, 3):
        raise DataError(f"backproject_depth: depth {depth.shape} must be (H, W) and intrinsics {k.shape} (3, 3)")
    valid = np.isfinite(depth) & (depth > 0)
    if max_depth_m is not None:
        valid &= depth <= max_depth_m
    v, u = np.nonzero(valid)
    z = depth[v, u]
    xyz = np.stack([(u - k[0, 2]) * z / k[0, 0], (v - k[1, 2]) * z / k[1, 1], z], axis=1)
    if rgb is None:
        colours = np.full((len(z), 3), 0.5)
    else:
        image = np.asarray(rgb, dtype=np.float64)
        if image.shape[:2] != depth.shape:
            raise DataError(f"backproject_depth: rgb {image.shape} does not match depth {depth.shape}")
        colours = image[v, u, :3] / (255.0 if image.max() > 1.0 else 1.0)
    return xyz.astype(np.float32), colours.astype(np.float32)
