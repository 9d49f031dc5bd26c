"""Semantic segmentation metrics over points: a confusion matrix, and mIoU / mAcc / allAcc from it.

    conf = confusion(truth, pred, num_classes)      # (K, K) int64 [truth, prediction]; truth -1 ignored
    scores = semantic_scores(conf)                  # {"miou", "macc", "all_acc", "iou", "acc"}

Class indices are 0..K-1 (a dataset's semantic ids mapped to indices by the caller); truth -1 is the ignore
label (unlabelled points, points of other classes, points a protocol dropped) and is left out of every count.
Predictions are per point, full resolution: a voxel model's predictions are mapped back to the points first.

Per class c, from the summed confusion matrix of every evaluated point:
    IoU_c = TP / (TP + FP + FN)          accuracy_c = TP / (TP + FN)       (recall of the class)
    mIoU, mAcc = the means over the classes present in the truth;  allAcc = trace / labelled points.

Classes absent from the truth: IoU and accuracy are NaN (None in JSON) and left out of the means. The field
differs here only when the evaluation set misses a class: the ScanNet benchmark's evaluate_semantic_label.py
returns NaN only where TP + FP + FN = 0 (a class absent from the truth but predicted scores 0), and Pointcept
(SemSegEvaluator, SemSegTester) divides with a 1e-10 epsilon and averages over all K classes (absent ones
count as 0). On the full validation sets (ScanNet val, S3DIS Area 5) every class is present and the three
agree; on a small held-out subset a class the subset lacks would pull the mean down by 1/K under Pointcept's
rule without saying anything about the model, so it is excluded here (as baselines/supervised.py always did).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

IGNORE = -1  # the ignore label of truths (the Scene convention for unlabelled points)


def confusion(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Returns the (K, K) int64 confusion matrix [truth, prediction] over the points with truth >= 0.

    truth: (N,) int class indices in 0..K-1 or -1 (ignored); pred: (N,) int class indices in 0..K-1.
    ValueError when the lengths differ or a labelled point's truth or prediction is outside 0..K-1."""
    truth, pred = np.asarray(truth, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    if truth.shape != pred.shape or truth.ndim != 1:
        raise ValueError(f"truth and prediction must be (N,) arrays of one length; got {truth.shape} and {pred.shape}")
    keep = truth != IGNORE
    truth, pred = truth[keep], pred[keep]
    for what, values in (("truth", truth), ("prediction", pred)):
        if len(values) and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{what} holds class {int(values.min() if values.min() < 0 else values.max())} "
                             f"outside 0..{num_classes - 1} (the ignore label is {IGNORE})")
    return np.bincount(truth * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def class_iou(conf: np.ndarray) -> np.ndarray:
    """Returns (K,) float64 IoU per class, NaN for classes absent from the truth (row sum 0)."""
    tp = np.diag(conf).astype(np.float64)
    target = conf.sum(axis=1)
    present = target > 0
    union = target + conf.sum(axis=0) - tp
    iou = np.full(len(conf), np.nan)
    iou[present] = tp[present] / union[present]
    return iou


def class_accuracy(conf: np.ndarray) -> np.ndarray:
    """Returns (K,) float64 accuracy (recall) per class, NaN for classes absent from the truth."""
    tp = np.diag(conf).astype(np.float64)
    target = conf.sum(axis=1)
    present = target > 0
    acc = np.full(len(conf), np.nan)
    acc[present] = tp[present] / target[present]
    return acc


def _present_mean(values: np.ndarray) -> float:
    """Returns the mean of the non-NaN values (np.nanmean), NaN when there are none."""
    return float(np.nanmean(values)) if (~np.isnan(values)).any() else math.nan


def miou(conf: np.ndarray) -> tuple[float, np.ndarray]:
    """Returns (mean IoU over the classes present in the truth, (K,) IoU per class with NaN where absent)."""
    iou = class_iou(conf)
    return _present_mean(iou), iou


def semantic_scores(conf: np.ndarray) -> dict[str, Any]:
    """Returns {"miou", "macc", "all_acc": float (NaN without labelled points), "iou", "acc": (K,) float64 arrays
    with NaN for classes absent from the truth} of a [truth, prediction] confusion matrix."""
    conf = np.asarray(conf, dtype=np.int64)
    iou, acc = class_iou(conf), class_accuracy(conf)
    total = int(conf.sum())
    return {"miou": _present_mean(iou), "macc": _present_mean(acc),
            "all_acc": float(np.trace(conf) / total) if total else math.nan, "iou": iou, "acc": acc}


def per_class(values: np.ndarray) -> list[float | None]:
    """Returns the values as a JSON-able list: float per class, None where NaN (absent from the truth)."""
    return [None if np.isnan(v) else float(v) for v in values]
