"""The contrastive view generators: correspondences survive the recorded transforms, seeded, frame mode."""

from __future__ import annotations

import math

import numpy as np
import pytest

from freepoint_bench.data.scene import Scene
from freepoint_bench.data.views import (
    Frame,
    ViewConfig,
    backproject_depth,
    frame_overlap,
    frame_pairs,
    frame_view_pair,
    grid_sample,
    match_points,
    same_view_pair,
    scene_view_pair,
    sphere_crop,
)
from freepoint_bench.errors import DataError


def room(seed: int = 0, n: int = 4000) -> Scene:
    """Returns a 3 m x 2 m floor with a box on it (random points, random colours)."""
    rng = np.random.default_rng(seed)
    floor = np.c_[rng.uniform(0, 3, (n // 2, 2)) * [1, 2 / 3], np.zeros(n // 2)]
    box = [1.0, 0.5, 0.0] + rng.uniform(0, 1, (n - n // 2, 3)) * [0.8, 0.6, 0.9]
    return Scene(name=f"room{seed}", xyz=np.concatenate([floor, box]), rgb=rng.uniform(0, 1, (n, 3)))


def back(view) -> np.ndarray:
    """Returns the view's points mapped back through the inverse of its recorded transform."""
    inv = np.linalg.inv(view.transform)
    return view.xyz.astype(np.float64) @ inv[:3, :3].T + inv[:3, 3]


def brute_matches(a: np.ndarray, b: np.ndarray, radius: float) -> set[tuple[int, int]]:
    d = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    j = d.argmin(axis=1)
    return {(i, int(j[i])) for i in range(len(a)) if d[i, j[i]] <= radius}


NO_JITTER = ViewConfig(jitter_sigma_m=0.0)


@pytest.mark.parametrize("make", [scene_view_pair, same_view_pair])
def test_correspondences_correspond_after_undoing_the_transforms(make):
    scene = room()
    pair = make(scene, NO_JITTER, np.random.default_rng(3))
    i, j = pair.matches.T
    assert len(pair.matches) > 50
    # the recorded transforms undo the augmentation exactly: view points land on their scene rows
    np.testing.assert_allclose(back(pair.a), scene.xyz[pair.a.index], atol=1e-5)
    np.testing.assert_allclose(back(pair.b), scene.xyz[pair.b.index], atol=1e-5)
    # matched points are within the radius of each other in the scene's frame
    gap = np.linalg.norm(back(pair.a)[i] - back(pair.b)[j], axis=1)
    assert gap.max() <= NO_JITTER.match_radius_m + 1e-5
    # and the matches are exactly the brute-force nearest neighbours within the radius
    assert set(map(tuple, pair.matches.tolist())) == brute_matches(pair.a.origin, pair.b.origin, 0.03)


def test_jitter_stays_within_its_clip():
    scene = room()
    cfg = ViewConfig(jitter_sigma_m=0.01, jitter_clip_m=0.015)
    pair = scene_view_pair(scene, cfg, np.random.default_rng(5))
    # the inverse of a linear map scaled by >= scale_min grows errors by <= 1 / scale_min
    bound = math.sqrt(3) * cfg.jitter_clip_m / cfg.scale_min + 1e-5
    i, j = pair.matches.T
    assert np.linalg.norm(back(pair.a) - scene.xyz[pair.a.index], axis=1).max() <= bound
    gap = np.linalg.norm(back(pair.a)[i] - back(pair.b)[j], axis=1)
    assert gap.max() <= cfg.match_radius_m + 2 * bound
    assert np.linalg.norm(back(pair.a) - scene.xyz[pair.a.index], axis=1).max() > 1e-3  # jitter was applied


def test_views_are_partial_rotated_and_overlap():
    scene = room()
    cfg = ViewConfig(grid_size_m=0.01)
    pair = scene_view_pair(scene, cfg, np.random.default_rng(1))
    sampled = len(grid_sample(scene.xyz, 0.01, np.random.default_rng(0)))
    for view in (pair.a, pair.b):
        assert abs(view.num_points - math.ceil(0.6 * sampled)) <= 0.05 * sampled
        assert len(np.unique(view.index)) == view.num_points
        linear = view.transform[:3, :3]
        scale = abs(np.linalg.det(linear)) ** (1 / 3)
        assert 0.9 - 1e-9 <= scale <= 1.1 + 1e-9
        # z stays nearly up: tilts of at most π/64 about x and y
        up = linear[:, 2] / np.linalg.norm(linear[:, 2])
        assert up[2] >= math.cos(math.sqrt(2) * math.pi / 64) - 1e-6
    assert not np.allclose(pair.a.transform, pair.b.transform)
    assert len(np.intersect1d(pair.a.index, pair.b.index)) > 0  # two 60% crops share points


def test_same_seed_same_views_and_other_seed_other_views():
    scene = room()
    cfg = ViewConfig()
    one = scene_view_pair(scene, cfg, np.random.default_rng([7, 0, 1]))
    two = scene_view_pair(scene, cfg, np.random.default_rng([7, 0, 1]))
    other = scene_view_pair(scene, cfg, np.random.default_rng([7, 1, 1]))
    for x, y in ((one.a, two.a), (one.b, two.b)):
        np.testing.assert_array_equal(x.xyz, y.xyz)
        np.testing.assert_array_equal(x.rgb, y.rgb)
        np.testing.assert_array_equal(x.index, y.index)
    np.testing.assert_array_equal(one.matches, two.matches)
    assert not np.array_equal(one.a.transform, other.a.transform)
    assert one.a.num_points != other.a.num_points or not np.array_equal(one.a.index, other.a.index)


def test_grid_sample_keeps_one_point_per_cell():
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0, 1, (3000, 3))
    rows = grid_sample(xyz, 0.25, np.random.default_rng(1))
    cells = np.floor(xyz / 0.25).astype(int)
    assert len(rows) == len(np.unique(cells, axis=0)) == 64
    assert len(np.unique(cells[rows], axis=0)) == 64
    assert not np.array_equal(rows, grid_sample(xyz, 0.25, np.random.default_rng(2)))  # a random point per cell


def test_sphere_crop_keeps_the_nearest_points():
    xyz = np.c_[np.arange(10.0), np.zeros(10), np.zeros(10)]
    rows = sphere_crop(xyz, 0.3, np.random.default_rng(0))
    assert len(rows) == 3 and np.all(np.diff(xyz[rows, 0]) == 1.0)  # three consecutive points
    assert len(sphere_crop(xyz, 0.9, np.random.default_rng(0), max_points=4)) == 4


def test_match_points_on_a_hand_example():
    a = np.array([[0.0, 0, 0], [1, 0, 0], [5, 5, 5]])
    b = np.array([[0.02, 0, 0], [1.0, 0.01, 0], [0.01, 0, 0]])
    np.testing.assert_array_equal(match_points(a, b, 0.03), [[0, 2], [1, 1]])


def _camera(angle: float, position) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    pose = np.eye(4)
    pose[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]])
    pose[:3, 3] = position
    return pose


def synthetic_frames(count: int = 3) -> tuple[list[Frame], np.ndarray]:
    """Returns frames of a wall 3 m in front of a turning camera (depth rendered from the poses), and K."""
    k = np.array([[40.0, 0, 32], [0, 40.0, 24], [0, 0, 1]])
    frames = []
    for f in range(count):
        pose = _camera(0.15 * f, [0.2 * f, 0, 1.5])
        # ray-cast the plane y = 3 (world) for every pixel of a 64 x 48 image
        v, u = np.mgrid[0:48, 0:64]
        rays = np.stack([(u - 32) / 40.0, (v - 24) / 40.0, np.ones_like(u, dtype=float)], axis=-1)
        world_dirs = rays @ pose[:3, :3].T
        t = (3.0 - pose[1, 3]) / world_dirs[..., 1]
        depth = np.where(t > 0, t, 0.0)  # camera z of the hit (rays have z = 1 in camera coordinates)
        xyz, rgb = backproject_depth(depth, k)
        frames.append(Frame(xyz=xyz, rgb=rgb, pose=pose, name=f"frame{f}"))
    return frames, k


def test_backprojected_frames_land_on_the_world_plane():
    frames, _ = synthetic_frames()
    for frame in frames:
        np.testing.assert_allclose(frame.world()[:, 1], 3.0, atol=1e-4)


def test_frame_pairs_correspond_in_world_coordinates():
    frames, _ = synthetic_frames()
    cfg = ViewConfig(jitter_sigma_m=0.0, grid_size_m=0.02, match_radius_m=0.05)
    pair = frame_view_pair(frames[0], frames[1], cfg, np.random.default_rng(0))
    assert len(pair.matches) > 20
    np.testing.assert_allclose(back(pair.a), frames[0].world()[pair.a.index], atol=1e-4)
    np.testing.assert_allclose(back(pair.b), frames[1].world()[pair.b.index], atol=1e-4)
    i, j = pair.matches.T
    assert np.linalg.norm(back(pair.a)[i] - back(pair.b)[j], axis=1).max() <= 0.05 + 1e-4
    # the views are in their own augmented frames: far from world coordinates
    assert np.abs(pair.a.xyz - frames[0].world()[pair.a.index]).max() > 0.5


def test_frame_pair_selection_uses_the_overlap():
    frames, _ = synthetic_frames(3)
    near = frame_overlap(frames[0], frames[1], 0.05)
    far = frame_overlap(frames[0], frames[2], 0.05)
    assert 0 < far < near <= 1
    assert frame_pairs(frames, gap=1, min_overlap=0.0) == [(0, 1), (0, 2), (1, 2)]
    assert frame_pairs(frames, gap=1, min_overlap=(near + far) / 2) == [
        p for p in [(0, 1), (0, 2), (1, 2)] if frame_overlap(frames[p[0]], frames[p[1]], 0.05) >= (near + far) / 2
    ]
    assert frame_pairs(frames, gap=2, min_overlap=0.0) == [(0, 2)]


def test_bad_frames_and_depth_are_data_errors():
    with pytest.raises(DataError, match="pose"):
        Frame(xyz=np.zeros((3, 3)), rgb=np.zeros((3, 3)), pose=np.eye(3))
    with pytest.raises(DataError, match="intrinsics"):
        backproject_depth(np.ones((4, 4)), np.eye(2))
