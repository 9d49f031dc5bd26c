"""Affinities (eq. 1-4): hand-worked values, z-normalisation, sign convention."""

from __future__ import annotations

import numpy as np
import pytest

from freepoint_bench.errors import ConfigError
from freepoint_bench.freepoint.affinities import (
    combine_affinities,
    cosine_similarity,
    multicut_costs,
    raw_affinities,
    z_normalise,
)
from freepoint_bench.freepoint.features import PointFeatures


def _feats(deep=True, rgb=True):
    xyz = np.array([[0.0, 0, 0], [3.0, 4, 0], [0, 0, 1]])
    return PointFeatures(
        xyz=xyz,
        rgb=np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0]]) if rgb else None,
        normals=np.array([[0.0, 0, 1], [0, 1.0, 0], [0, 0, -1]]),
        deep=np.array([[1.0, 1], [2.0, 2], [1.0, -1]]) if deep else None,
    )


def test_raw_affinities_hand_worked():
    edges = np.array([[0, 1], [0, 2]])
    raw = raw_affinities(edges, _feats())
    assert np.allclose(raw["emb"], [1.0, 0.0])
    assert np.allclose(raw["norm"], [0.0, -1.0])
    assert np.allclose(raw["xyz"], [-5.0, -1.0])
    assert np.allclose(raw["rgb"], [0.0, -np.sqrt(2)])
    assert set(raw_affinities(edges, _feats(deep=False, rgb=False))) == {"norm", "xyz"}


def test_abs_normal_affinity_ignores_the_sign():
    edges = np.array([[0, 1], [0, 2]])
    raw = raw_affinities(edges, _feats(), "abs")
    assert np.allclose(raw["norm"], [0.0, 1.0])  # antiparallel normals (0, 0, ±1): |cos| = 1
    assert np.allclose(raw["xyz"], [-5.0, -1.0])  # the others unchanged
    with pytest.raises(ConfigError, match="normal affinity"):
        raw_affinities(edges, _feats(), "dot")


def test_cosine_zero_vector_is_zero_not_nan():
    assert cosine_similarity(np.zeros((1, 3)), np.ones((1, 3)))[0] == 0.0


def test_z_normalise():
    rng = np.random.default_rng(0)
    z = z_normalise(rng.normal(5, 3, 1000))
    assert abs(z.mean()) < 1e-12 and abs(z.var() - 1) < 1e-12
    assert np.array_equal(z_normalise(np.full(7, 2.5)), np.zeros(7))
    assert z_normalise(np.zeros(0)).size == 0


def test_combine_weights_and_missing_terms():
    raw = {"xyz": np.array([-1.0, -3.0]), "norm": np.array([1.0, 0.0])}
    out = combine_affinities(raw, {"xyz": 2.0, "norm": 0.5, "rgb": 7.0})  # rgb absent: ignored
    assert np.allclose(out, 2.0 * np.array([1, -1]) + 0.5 * np.array([1, -1]))
    with pytest.raises(ConfigError):
        combine_affinities(raw, {"rgb": 1.0})


def test_sign_convention_similar_points_attract():
    # The closer pair gets the larger affinity and so the larger (more attractive) cost; σ shifts up.
    raw = {"xyz": np.array([-0.01, -1.0])}
    a = combine_affinities(raw, {"xyz": 1.0})
    assert a[0] > 0 > a[1]
    assert np.allclose(multicut_costs(a, 0.9), a + 0.9)
