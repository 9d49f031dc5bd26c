"""PCA normals: planes and spheres, orientation, parity with open3d."""

from __future__ import annotations

import numpy as np
import pytest

from freepoint_bench.geometry.normals import estimate_normals, estimate_normals_open3d, orient_normals


def test_plane_normals_point_to_viewpoint():
    rng = np.random.default_rng(0)
    xyz = np.c_[rng.random((500, 2)), np.zeros(500)]
    n = estimate_normals(xyz, k=10, viewpoint=np.array([0.5, 0.5, 1.0]))
    assert n.shape == (500, 3) and n.dtype == np.float32
    assert np.allclose(n, [0, 0, 1], atol=1e-4)
    n = estimate_normals(xyz, k=10, viewpoint=np.array([0.5, 0.5, -1.0]))
    assert np.allclose(n, [0, 0, -1], atol=1e-4)


def test_sphere_normals_are_radial_towards_centre():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(2000, 3))
    xyz = v / np.linalg.norm(v, axis=1, keepdims=True)
    n = estimate_normals(xyz, k=12)  # viewpoint = centroid = sphere centre
    assert np.median(np.einsum("ij,ij->i", n, -xyz)) > 0.99


def test_orient_flips_only_away_facing():
    xyz = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    n = orient_normals(xyz, np.array([[1.0, 0, 0], [1.0, 0, 0]]), viewpoint=np.array([0.5, 0, 0]))
    assert np.allclose(n, [[1, 0, 0], [-1, 0, 0]])


def test_tiny_inputs():
    assert estimate_normals(np.zeros((2, 3)), k=4).shape == (2, 3)


def test_parity_with_open3d():
    pytest.importorskip("open3d")
    rng = np.random.default_rng(2)
    uv = rng.random((3000, 2)) * 2
    xyz = np.c_[uv, 0.3 * np.sin(uv[:, 0] * 2)]  # smooth curved sheet
    ours = estimate_normals(xyz, k=16)
    ref = estimate_normals_open3d(xyz, k=16)
    agree = np.abs(np.einsum("ij,ij->i", ours, ref))
    assert np.median(agree) > 0.999 and (agree > 0.99).mean() > 0.98
    assert np.median(np.einsum("ij,ij->i", ours, ref)) > 0.999  # same orientation rule


def test_subset_normals_match_full():
    rng = np.random.default_rng(3)
    uv = rng.random((1000, 2))
    xyz = np.c_[uv, 0.2 * uv[:, 0] ** 2]
    at = np.sort(rng.choice(1000, 300, replace=False))
    full = estimate_normals(xyz, k=10)
    sub = estimate_normals(xyz, k=10, at=at)
    assert sub.shape == (300, 3) and np.allclose(sub, full[at], atol=1e-5)
