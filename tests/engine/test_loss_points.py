"""Loss points of a training sample: sampled among the points that take part in training, never ignored ones."""

from __future__ import annotations

import numpy as np
import pytest

from freepoint_bench.engine.data import Targets, make_sample
from freepoint_bench.engine.presets import get_preset

PRESET = get_preset("cpu-small", voxel_size_m=0.1, max_points=None, min_instance_voxels=1)


def loss_rows(sample: dict) -> np.ndarray:
    """Returns the scene rows of a sample's loss points, found by their coordinates among the sample's points."""
    xyz = sample["xyz"]
    order = np.lexsort(xyz.T[::-1])
    keys = xyz[order]
    found = np.searchsorted(np.rec.fromarrays(keys.T), np.rec.fromarrays(sample["loss_xyz"].T))
    assert np.array_equal(keys[found], sample["loss_xyz"]), "a loss point is not one of the sample's points"
    return sample["point_index"][order[found]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_loss_points_are_never_ignored(seed, make_room):
    # the 600 floor points come first and are ignored, the 1200 box points after them count: a sample of 300 by
    # position in the counted list (0..1199) would land on floor rows (0..599) about half the time
    scene = make_room(0)
    ignore = scene.instance == -1
    assert ignore[:600].all() and not ignore[600:].any()
    targets = Targets(instance=scene.instance, ignore=ignore)
    s = make_sample(scene, PRESET.with_(max_loss_points=300), targets, rng=np.random.default_rng(seed), train=True)
    rows = loss_rows(s)
    assert len(rows) == len(np.unique(rows)) == 300
    assert not ignore[rows].any()
    assert (s["loss_target"] >= 0).all()  # every counted point is in a box
    assert np.array_equal(s["loss_target"], scene.instance[rows])  # box k is target k (ids 0, 1, 2 all kept)


def test_without_sampling_every_counted_point_is_a_loss_point(make_room):
    scene = make_room(0)
    ignore = np.zeros(scene.num_points, dtype=bool)
    ignore[::3] = True
    s = make_sample(scene, PRESET.with_(max_loss_points=None), Targets(instance=scene.instance, ignore=ignore),
                    rng=np.random.default_rng(0), train=True)
    assert np.array_equal(np.sort(loss_rows(s)), np.flatnonzero(~ignore))


def test_sampling_without_ignored_points_is_unchanged(make_room):
    # no ignore mask: positions are rows, so the fix draws exactly what the code drew before it
    scene = make_room(0)
    s = make_sample(scene, PRESET.with_(max_loss_points=300), Targets(instance=scene.instance),
                    rng=np.random.default_rng(0), train=True)
    rng = np.random.default_rng(0)
    make_sample(scene, PRESET.with_(max_loss_points=None), None, rng=rng, train=True)  # the same draws before it
    expected = np.sort(rng.choice(scene.num_points, 300, replace=False))
    assert np.array_equal(np.sort(loss_rows(s)), expected)
