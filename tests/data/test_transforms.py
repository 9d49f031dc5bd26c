"""Transforms: voxelize against a dict-based brute force, augmentation determinism and geometry, views."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from freepoint_bench.data.transforms import (
    augment,
    normalize_xyz,
    random_view_pair,
    voxel_majority,
    voxel_mean,
    voxelize,
)
from freepoint_bench.errors import ConfigError, DataError


def brute_voxelize(xyz: np.ndarray, size: float) -> dict[tuple[int, int, int], list[int]]:
    voxels: dict[tuple[int, int, int], list[int]] = {}
    for i, p in enumerate(xyz.tolist()):
        key = tuple(int(math.floor(c / size)) for c in p)
        voxels.setdefault(key, []).append(i)
    return voxels


@pytest.mark.parametrize("size", [0.05, 0.2, 1.0])
def test_voxelize_matches_brute_force(size):
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-1.0, 2.0, size=(500, 3))
    xyz[:50] = xyz[50:100]  # duplicates share a voxel
    coords, index, inverse = voxelize(xyz, size)
    expected = brute_voxelize(xyz, size)
    assert coords.dtype == np.int32 and index.dtype == np.int64 and inverse.dtype == np.int64
    assert len(coords) == len(expected) == len(index)
    got = {tuple(c): np.flatnonzero(inverse == m).tolist() for m, c in enumerate(coords.tolist())}
    assert got == expected
    # representative: the lowest point index of its voxel, and it lies in that voxel
    for m, c in enumerate(coords.tolist()):
        assert index[m] == expected[tuple(c)][0]
        assert inverse[index[m]] == m
    # sorted lexicographically
    assert [tuple(c) for c in coords.tolist()] == sorted(expected)


def test_voxelize_hand_worked_case():
    xyz = np.array([[0.01, 0.01, 0.01], [0.09, 0.02, 0.0], [0.11, 0.0, 0.0], [-0.01, 0.0, 0.0]])
    coords, index, inverse = voxelize(xyz, 0.1)
    assert coords.tolist() == [[-1, 0, 0], [0, 0, 0], [1, 0, 0]]
    assert index.tolist() == [3, 0, 2]
    assert inverse.tolist() == [1, 1, 2, 0]


def test_voxelize_empty_and_bad_input():
    coords, index, inverse = voxelize(np.zeros((0, 3)), 0.1)
    assert coords.shape == (0, 3) and index.shape == (0,) and inverse.shape == (0,)
    with pytest.raises(ConfigError, match="voxel_size"):
        voxelize(np.zeros((3, 3)), 0.0)
    with pytest.raises(DataError, match="shape"):
        voxelize(np.zeros((3, 2)), 0.1)


def _cloud(n=200, seed=1):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(0, 3, size=(n, 3)).astype(np.float32)
    return xyz, rng.uniform(0, 1, size=(n, 3)).astype(np.float32)


def test_augment_is_deterministic_by_seed_and_pure():
    xyz, rgb = _cloud()
    xyz0, rgb0 = xyz.copy(), rgb.copy()
    a = augment(xyz, rgb, np.random.default_rng(7))
    b = augment(xyz, rgb, np.random.default_rng(7))
    c = augment(xyz, rgb, np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.allclose(a[0], c[0])
    np.testing.assert_array_equal(xyz, xyz0)  # inputs untouched
    np.testing.assert_array_equal(rgb, rgb0)
    assert a[0].dtype == np.float32 and a[1].dtype == np.float32
    assert a[1].min() >= 0.0 and a[1].max() <= 1.0


def test_rotation_and_flip_preserve_pairwise_distances():
    xyz, rgb = _cloud()
    out, colours = augment(xyz, rgb, np.random.default_rng(3), scale=None, jitter=0.0, color_jitter=0.0)
    np.testing.assert_allclose(pdist(out), pdist(xyz), atol=1e-5)
    np.testing.assert_array_equal(colours, rgb)
    np.testing.assert_allclose(out[:, 2], xyz[:, 2], atol=1e-6)  # rotation about z keeps heights
    assert not np.allclose(out, xyz)


def test_scale_multiplies_distances_within_range():
    xyz, rgb = _cloud()
    out, _ = augment(xyz, rgb, np.random.default_rng(4), rotate_z=False, flip=False, scale=(0.5, 0.6),
                     jitter=0.0, color_jitter=0.0)
    ratio = pdist(out) / pdist(xyz)
    assert np.allclose(ratio, ratio[0], atol=1e-4) and 0.5 <= ratio[0] <= 0.6


def test_jitter_magnitude():
    xyz, rgb = _cloud(n=5000)
    out, _ = augment(xyz, rgb, np.random.default_rng(5), rotate_z=False, flip=False, scale=None,
                     jitter=0.01, color_jitter=0.0)
    assert abs(np.std(out - xyz) - 0.01) < 0.001


def test_normalize_xyz_unit_cube():
    xyz = np.array([[0.0, 0.0, 0.0], [4.0, 2.0, 1.0], [2.0, 1.0, 0.5]])
    out = normalize_xyz(xyz)
    np.testing.assert_allclose(out, [[-0.5, -0.25, -0.125], [0.5, 0.25, 0.125], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(normalize_xyz(np.ones((3, 3))), np.zeros((3, 3)))


def test_random_view_pair_identity_correspondence():
    xyz, rgb = _cloud()
    (xa, ca), (xb, cb) = random_view_pair(xyz, rgb, np.random.default_rng(9), scale=None, jitter=0.0)
    assert xa.shape == xb.shape == xyz.shape
    assert not np.allclose(xa, xb)  # independent augmentations
    # same physical points row by row: rigid motions keep every pairwise distance
    np.testing.assert_allclose(pdist(xa), pdist(xb), atol=1e-5)
    (xa2, _), (xb2, _) = random_view_pair(xyz, rgb, np.random.default_rng(9), scale=None, jitter=0.0)
    np.testing.assert_array_equal(xa, xa2)
    np.testing.assert_array_equal(xb, xb2)


def test_normalize_xyz_fixed_scale():
    xyz = np.array([[0.0, 0.0, 0.0], [2.0, 1.0, 0.5]])
    np.testing.assert_allclose(normalize_xyz(xyz, 4.0), [[-0.25, -0.125, -0.0625], [0.25, 0.125, 0.0625]])
    with pytest.raises(DataError, match="scale"):
        normalize_xyz(xyz, 0.0)


@pytest.mark.parametrize("count_unlabelled", [True, False])
def test_voxel_majority_brute_force(count_unlabelled):
    rng = np.random.default_rng(3)
    inverse = rng.integers(0, 20, 500)
    labels = rng.integers(-1, 4, 500)
    labels[inverse == 7] = -1  # a voxel of unlabelled points only
    got = voxel_majority(labels, inverse, 21, count_unlabelled=count_unlabelled)
    assert got[20] == -1 and got[7] == -1  # an empty voxel, an all-unlabelled one
    for v in range(20):
        sel = labels[inverse == v]
        sel = sel if count_unlabelled else sel[sel >= 0]
        if len(sel) == 0:
            continue
        values, counts = np.unique(sel, return_counts=True)
        assert got[v] == values[counts == counts.max()].min()


def test_voxel_mean_brute_force_and_empty_voxels():
    rng = np.random.default_rng(4)
    inverse = rng.integers(0, 10, 200)
    values = rng.normal(size=(200, 3))
    got = voxel_mean(values, inverse, 11)
    assert got.dtype == np.float32 and got[10].tolist() == [0.0, 0.0, 0.0]
    for v in range(10):
        np.testing.assert_allclose(got[v], values[inverse == v].mean(axis=0), rtol=1e-5)


def test_voxelize_refuses_non_finite_coordinates():
    with pytest.raises(DataError, match="non-finite"):
        voxelize(np.array([[0.0, 0.0, np.nan]]), 0.1)
