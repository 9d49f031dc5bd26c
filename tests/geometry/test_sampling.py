"""Farthest point sampling: counts, determinism, spread, duplicates."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from freepoint_bench.errors import ConfigError
from freepoint_bench.geometry.sampling import farthest_point_sample, fps_count


def test_fps_count():
    assert fps_count(10, 0.5) == 5 and fps_count(11, 0.5) == 6 and fps_count(1, 0.5) == 1
    assert fps_count(0, 0.5) == 0
    with pytest.raises(ConfigError):
        fps_count(10, 0.0)


def test_fps_is_seeded_unique_and_spread():
    rng = np.random.default_rng(0)
    xyz = rng.random((5000, 3)).astype(np.float32)
    a = farthest_point_sample(xyz, 500, seed=1)
    assert np.array_equal(a, farthest_point_sample(xyz, 500, seed=1))
    assert len(a) == 500 and len(np.unique(a)) == 500 and a.dtype == np.int64
    # FPS covers space better than a random subset: smaller largest gap to the nearest sample.
    gap_fps = cKDTree(xyz[a]).query(xyz)[0].max()
    gap_rand = cKDTree(xyz[rng.choice(5000, 500, replace=False)]).query(xyz)[0].max()
    assert gap_fps < 0.8 * gap_rand


def test_fps_all_and_small_inputs():
    xyz = np.random.default_rng(0).random((10, 3))
    assert np.array_equal(farthest_point_sample(xyz, 20), np.arange(10))
    assert len(farthest_point_sample(xyz, 3)) == 3


def test_fps_duplicates_collapse():
    xyz = np.random.default_rng(0).random((300, 3))
    doubled = np.concatenate([xyz, xyz])
    idx = farthest_point_sample(doubled, 450)
    assert len(np.unique(doubled[idx], axis=0)) == len(idx) <= 300
