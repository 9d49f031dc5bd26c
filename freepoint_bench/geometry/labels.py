"""Per-point label arrays: renumbering segment ids."""

from __future__ import annotations

import numpy as np


def relabel_contiguous(labels: np.ndarray) -> np.ndarray:
    """Returns labels (V,) int64 renumbered 0..K-1 in order of first appearance; -1 stays -1."""
    labels = np.asarray(labels)
    out = np.full(len(labels), -1, dtype=np.int64)
    keep = labels >= 0
    if keep.any():
        values, first, inverse = np.unique(labels[keep], return_index=True, return_inverse=True)
        rank = np.empty(len(values), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(values))
        out[keep] = rank[inverse]
    return out
