"""Instance predictions of one scene: binary masks with a class label and a confidence each."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from freepoint_bench.data.classes import OBJECT_LABEL_ID
from freepoint_bench.errors import DataError


@dataclass(frozen=True, eq=False)
class Predictions:
    """masks: (K, N) bool over the scene's points in reader order; labels: (K,) int64 dataset class ids;
    scores: (K,) float32 confidences. Order matters: it is the order of the benchmark submission file."""

    masks: np.ndarray
    labels: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        masks = np.asarray(self.masks)
        if masks.ndim != 2:
            raise DataError(f"prediction masks have shape {masks.shape}; expected (K, N)")
        labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if len(labels) != len(masks) or len(scores) != len(masks):
            raise DataError(f"{len(masks)} masks but {len(labels)} labels and {len(scores)} scores; one each")
        if not np.isfinite(scores).all():
            raise DataError("prediction confidences contain NaN/inf; give every mask a finite score")
        object.__setattr__(self, "masks", masks.astype(bool, copy=False))
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def num_points(self) -> int:
        """Returns N, the number of scene points each mask covers."""
        return self.masks.shape[1]

    @classmethod
    def empty(cls, num_points: int) -> Predictions:
        """Returns predictions with no masks for a scene of num_points points."""
        return cls(np.zeros((0, num_points), bool), np.zeros(0, np.int64), np.zeros(0, np.float32))


def predictions_from_labels(
    labels: np.ndarray, scores: np.ndarray | None = None, label_id: int = OBJECT_LABEL_ID
) -> Predictions:
    """Returns one mask per segment id 0..K-1 of labels (N,) int (-1 = none), all with class `label_id`.

    scores: (K,) confidences indexed by segment id (default 1.0); ids without points are skipped.
    """
    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
    ids = np.unique(labels[labels >= 0]) if k else np.zeros(0, np.int64)
    masks = labels[None, :] == ids[:, None]
    if scores is None:
        conf = np.ones(len(ids), np.float32)
    else:
        scores = np.asarray(scores, dtype=np.float32)
        if len(scores) < k:
            raise DataError(f"{len(scores)} scores for segment ids up to {k - 1}; give one per segment id")
        conf = scores[ids]
    return Predictions(masks, np.full(len(ids), label_id, np.int64), conf)
