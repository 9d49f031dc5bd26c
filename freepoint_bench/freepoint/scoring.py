"""Confidence of each segment when exported as an instance prediction (no labels: a geometric heuristic).

score = size term × extent term, in (0, 1]:
- size term 1 - exp(-n / size_scale): tiny fragments are rarely whole objects;
- extent term exp(-max(0, e - max_extent) / extent_decay) with e the largest side of the segment's
  axis-aligned box (metres): segments much larger than furniture are usually merged objects or leftover
  background.
Ranking matters for AP, not absolute values. Checked on the 13 ScanNet dev scans with the default
σ_low masks (class-agnostic AP/AP50/AP25): this score 6.3/14.8/36.7, point count alone 3.5/10.3/37.0,
a constant 1.7/5.6/22.6; max_extent 1.5 or 3 m and size_scale 200 or 1000 moved AP50 by at most 2.
"""

from __future__ import annotations

import numpy as np

from freepoint_bench.errors import ConfigError


def segment_scores(
    xyz: np.ndarray,
    labels: np.ndarray,
    *,
    size_scale: float = 500.0,
    max_extent: float = 2.0,
    extent_decay: float = 1.0,
) -> np.ndarray:
    """Returns scores (K,) float64 in (0, 1] for segments 0..K-1 of labels (N,) int64 (-1 ignored).

    xyz: (N, 3) metres. K = labels.max() + 1; an id without points scores 0.
    """
    labels = np.asarray(labels, dtype=np.int64)
    valid = labels >= 0
    k = int(labels.max()) + 1 if valid.any() else 0
    if k == 0:
        return np.zeros(0, dtype=np.float64)
    lab = labels[valid]
    pts = np.asarray(xyz, dtype=np.float64)[valid]
    sizes = np.bincount(lab, minlength=k).astype(np.float64)
    lo = np.full((k, 3), np.inf)
    hi = np.full((k, 3), -np.inf)
    for axis in range(3):
        np.minimum.at(lo[:, axis], lab, pts[:, axis])
        np.maximum.at(hi[:, axis], lab, pts[:, axis])
    extent = np.where(sizes > 0, (hi - lo).max(axis=1), 0.0)
    size_term = 1.0 - np.exp(-sizes / size_scale)
    extent_term = np.exp(-np.maximum(0.0, extent - max_extent) / extent_decay)
    return np.where(sizes > 0, size_term * extent_term, 0.0)


def mask_scores(xyz: np.ndarray, labels: np.ndarray, method: str = "size-extent") -> np.ndarray:
    """Returns scores (K,) in (0, 1] of segments 0..K-1 by `method`: "size-extent" (`segment_scores`) or
    "size" (its size term alone, so larger segments rank first whatever their extent)."""
    if method == "size-extent":
        return segment_scores(xyz, labels)
    if method == "size":
        return segment_scores(xyz, labels, max_extent=np.inf)
    raise ConfigError(f"unknown mask score {method!r}; use size-extent or size")
