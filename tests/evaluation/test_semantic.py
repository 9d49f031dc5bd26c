"""Semantic metrics: oracles, a brute-force confusion matrix, the ignore label and absent classes."""

import math

import numpy as np
import pytest

from freepoint_bench.evaluation.semantic import confusion, miou, per_class, semantic_scores


def brute_confusion(truth, pred, k):
    conf = [[0] * k for _ in range(k)]
    for t, p in zip(truth.tolist(), pred.tolist(), strict=True):
        if t == -1:
            continue
        conf[t][p] += 1
    return np.array(conf, dtype=np.int64)


def test_perfect_prediction_scores_one_exactly():
    truth = np.array([0, 1, 2, 2, 1, 0, 0, -1, 2])
    pred = np.where(truth < 0, 1, truth)
    scores = semantic_scores(confusion(truth, pred, 3))
    assert scores["miou"] == 1.0 and scores["macc"] == 1.0 and scores["all_acc"] == 1.0
    assert per_class(scores["iou"]) == [1.0, 1.0, 1.0] and per_class(scores["acc"]) == [1.0, 1.0, 1.0]


def test_constant_prediction_hand_computed():
    # truth: 4 points of class 0, 3 of class 1, 1 of class 2, 2 ignored; every point predicted 0
    truth = np.array([0, 0, 0, 0, 1, 1, 1, 2, -1, -1])
    scores = semantic_scores(confusion(truth, np.zeros(10, np.int64), 3))
    # class 0: TP 4, FP 4 (the 3 + 1 others), FN 0 → IoU 4/8; the others TP 0 → IoU 0; accuracy 1, 0, 0
    assert per_class(scores["iou"]) == [0.5, 0.0, 0.0]
    assert per_class(scores["acc"]) == [1.0, 0.0, 0.0]
    assert scores["miou"] == pytest.approx(0.5 / 3)
    assert scores["macc"] == pytest.approx(1 / 3)
    assert scores["all_acc"] == pytest.approx(4 / 8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    k, n = 5, 2000
    truth = rng.integers(-1, k, n)
    pred = rng.integers(0, k, n)
    conf = confusion(truth, pred, k)
    np.testing.assert_array_equal(conf, brute_confusion(truth, pred, k))
    scores = semantic_scores(conf)
    ious, accs = [], []
    for c in range(k):
        tp = sum(1 for t, p in zip(truth, pred, strict=True) if t == c and p == c)
        fp = sum(1 for t, p in zip(truth, pred, strict=True) if t not in (c, -1) and p == c)
        fn = sum(1 for t, p in zip(truth, pred, strict=True) if t == c and p != c)
        ious.append(tp / (tp + fp + fn))
        accs.append(tp / (tp + fn))
    np.testing.assert_allclose(scores["iou"], ious)
    np.testing.assert_allclose(scores["acc"], accs)
    assert scores["miou"] == pytest.approx(np.mean(ious)) and scores["macc"] == pytest.approx(np.mean(accs))
    labelled = truth >= 0
    assert scores["all_acc"] == pytest.approx(np.mean(truth[labelled] == pred[labelled]))


def test_ignore_label_is_left_out_of_every_count():
    truth = np.array([0, 1, -1, -1, -1])
    pred = np.array([0, 1, 0, 0, 0])  # wrong-looking predictions on ignored points must not count as FP
    conf = confusion(truth, pred, 2)
    assert conf.sum() == 2
    assert semantic_scores(conf)["miou"] == 1.0


def test_class_absent_from_truth_is_nan_and_left_out_of_the_means():
    truth = np.array([0, 0, 1, 1])
    pred = np.array([0, 2, 1, 1])  # class 2 predicted once, never in the truth
    scores = semantic_scores(confusion(truth, pred, 3))
    assert per_class(scores["iou"]) == [0.5, 1.0, None]
    assert per_class(scores["acc"]) == [0.5, 1.0, None]
    assert scores["miou"] == pytest.approx(0.75) and scores["macc"] == pytest.approx(0.75)
    assert miou(confusion(truth, pred, 3))[0] == pytest.approx(0.75)


def test_no_labelled_point_gives_nan():
    scores = semantic_scores(confusion(np.array([-1, -1]), np.array([0, 1]), 2))
    assert math.isnan(scores["miou"]) and math.isnan(scores["macc"]) and math.isnan(scores["all_acc"])


def test_out_of_range_class_is_one_clear_error():
    with pytest.raises(ValueError, match="outside 0..2"):
        confusion(np.array([0, 3]), np.array([0, 0]), 3)
    with pytest.raises(ValueError, match="prediction holds class 5"):
        confusion(np.array([0, 1]), np.array([0, 5]), 3)
