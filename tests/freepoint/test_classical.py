"""Classical baselines on the synthetic room, and the segment confidence heuristic."""

from __future__ import annotations

import numpy as np
import pytest

from freepoint_bench.errors import ConfigError
from freepoint_bench.freepoint.classical import CLASSICAL_METHODS, classical_segments
from freepoint_bench.freepoint.config import PseudoLabelConfig
from freepoint_bench.freepoint.scoring import segment_scores

CFG = PseudoLabelConfig(plane_distance_threshold=0.02, plane_min_points=300)


@pytest.mark.parametrize("method", CLASSICAL_METHODS)
def test_classical_methods_label_only_foreground(room, method):
    labels = classical_segments(room, method, CFG)
    assert labels.shape == (room.num_points,) and labels.dtype == np.int64
    assert (labels[room.instance < 0] == -1).all()
    assert labels.max() >= 1
    if method in ("dbscan", "hdbscan"):  # density methods find the four separated boxes exactly
        for seg in np.unique(labels[labels >= 0]):
            assert len(np.unique(room.instance[labels == seg])) == 1


def test_classical_unknown_method(room):
    with pytest.raises(ConfigError):
        classical_segments(room, "spectral", CFG)


def test_segment_scores_prefers_object_sized_segments():
    rng = np.random.default_rng(0)
    chair = rng.random((2000, 3)) * 0.5
    crumb = rng.random((20, 3)) * 0.05 + 3
    sprawl = rng.random((2000, 3)) * [6.0, 0.2, 0.2] + [0, 5, 0]
    xyz = np.concatenate([chair, crumb, sprawl])
    labels = np.r_[np.zeros(2000), np.ones(20), np.full(2000, 3)].astype(np.int64)  # id 2 has no points
    s = segment_scores(xyz, labels)
    assert s.shape == (4,) and s[2] == 0.0
    assert s[0] > s[1] and s[0] > s[3] and (s[[0, 1, 3]] > 0).all() and (s <= 1).all()
    assert segment_scores(xyz, np.full(len(xyz), -1)).shape == (0,)


def test_mask_scores_size_ignores_extent():
    from freepoint_bench.freepoint.scoring import mask_scores

    rng = np.random.default_rng(1)
    small = rng.random((100, 3)) * 0.3
    sprawl = rng.random((400, 3)) * [5.0, 0.1, 0.1] + [0, 3, 0]  # 5 m long: the extent term punishes it
    xyz = np.concatenate([small, sprawl])
    labels = np.r_[np.zeros(100), np.ones(400)].astype(np.int64)
    size = mask_scores(xyz, labels, "size")
    assert size == pytest.approx(1 - np.exp(-np.array([100, 400]) / 500.0))  # the size term, by hand
    extent = mask_scores(xyz, labels, "size-extent")
    assert extent[0] == pytest.approx(size[0]) and extent[1] == pytest.approx(size[1] * np.exp(-3.0), rel=0.02)
    assert extent[1] < extent[0] < size[1]  # the ranking flips
    with pytest.raises(ConfigError, match="unknown mask score"):
        mask_scores(xyz, labels, "area")
