"""diagnose_labels on a hand-worked scene, its oracles and edge rules; diagnose over scenes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import DataError
from freepoint_bench.evaluation import EvalSpec
from freepoint_bench.tuning.diagnose import Diagnosis, diagnose, diagnose_labels

# 20 points: A = 0-9 and B = 10-15 (class 5), C = 16-17 (class 5, below min_region_size 3), a wall 18-19.
SEMANTIC = np.array([5] * 18 + [1] * 2)
INSTANCE = np.array([1] * 10 + [2] * 6 + [3] * 2 + [4] * 2)
#                   A: 0-5 seg 0, 6-9 seg 1 | B: 10-12 seg 2, 13-14 seg 1, 15 none | C: seg 2 | wall: seg 3
LABELS = np.array([0] * 6 + [1] * 4 + [2] * 3 + [1] * 2 + [-1] + [2] * 2 + [3] * 2)


def test_hand_worked_scene():
    d = diagnose_labels(SEMANTIC, INSTANCE, LABELS, (5,), min_region_size=3)
    # Objects: A (10 points) and B (6); C is too small, the wall is not an evaluated class.
    assert d.objects == 2 and d.object_points == 16
    # IoU seg0-A = 6/10 = 0.6; seg1-A = 4/12; seg1-B = 2/10; seg2-B = 3/(5+6-3) = 0.375 (seg2 also holds C).
    assert (d.recovered25, d.recovered50) == (2, 1)
    assert d.segments == 4 and d.segments_per_scene == 4
    assert d.covered_points == 15 and d.coverage == pytest.approx(15 / 16)  # point 15 of B is in no segment
    # Parts (>= 20 % of an object): A in seg0 (60 %) and seg1 (40 %); B in seg1 (33 %) and seg2 (50 %).
    assert d.over_segmented == 2
    assert (d.under_segmented, d.merged_objects) == (1, 2)  # seg1 holds parts of A and of B
    assert d.scenes == 1


def test_oracles():
    perfect = np.where(INSTANCE <= 2, INSTANCE - 1, -1)
    d = diagnose_labels(SEMANTIC, INSTANCE, perfect, (5,), min_region_size=3)
    assert (d.recovered25, d.recovered50, d.covered_points) == (2, 2, 16)
    assert (d.over_segmented, d.under_segmented, d.merged_objects) == (0, 0, 0)
    none = diagnose_labels(SEMANTIC, INSTANCE, np.full(20, -1), (5,), min_region_size=3)
    assert (none.recovered25, none.recovered50, none.covered_points, none.segments) == (0, 0, 0, 0)
    assert none.coverage == 0.0 and none.objects == 2


def test_iou_is_strict_and_small_segments_do_not_match():
    semantic, instance = np.full(8, 5), np.array([0] * 4 + [-1] * 4)
    half = np.array([0, 0, -1, -1, -1, -1, -1, -1])  # IoU exactly 0.5: not recovered at 0.5
    assert diagnose_labels(semantic, instance, half, (5,), min_region_size=1).recovered50 == 0
    three = np.array([0, 0, 0, -1, -1, -1, -1, -1])  # IoU 0.75, but 3 points < min_region_size 4
    assert diagnose_labels(semantic, instance, three, (5,), min_region_size=1).recovered50 == 1
    assert diagnose_labels(semantic, instance, three, (5,), min_region_size=4).recovered50 == 0


def test_diagnose_sums_scenes_and_refuses_unlabelled():
    xyz = np.zeros((20, 3), np.float32)
    scenes = [
        Scene(name=n, xyz=xyz, rgb=xyz, semantic=SEMANTIC, instance=INSTANCE) for n in ("a", "b")
    ]
    spec = EvalSpec((5,), ("thing",), class_agnostic=True, min_region_size=3)
    total = diagnose(scenes, {"a": LABELS, "b": np.full(20, -1)}, spec)
    assert (total.objects, total.recovered25, total.segments, total.scenes) == (4, 2, 4, 2)
    assert total.segments_per_scene == 2 and total.coverage == pytest.approx(15 / 32)
    assert total.to_dict()["coverage"] == total.coverage
    assert math.isnan(Diagnosis().coverage)
    with pytest.raises(DataError, match="no pseudo labels"):
        diagnose(scenes, {"a": LABELS}, spec)
    with pytest.raises(DataError, match="no ground truth"):
        diagnose([Scene(name="u", xyz=xyz, rgb=xyz)], {"u": LABELS}, spec)
    with pytest.raises(DataError, match="must all be"):
        diagnose_labels(SEMANTIC, INSTANCE, LABELS[:5], (5,))
