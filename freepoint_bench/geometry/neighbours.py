"""k-nearest-neighbour queries and kNN graphs (scipy cKDTree), as edge lists, never dense N x N."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from freepoint_bench.parallel import thread_budget


def knn(points: np.ndarray, k: int, queries: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Returns (distances (Q, k) float64, indices (Q, k) int64) of each query's k nearest points.

    Nearest first.

    points: (N, D). queries: (Q, D), default `points` itself; then each point's own index is excluded
    (even when exact duplicates make the query ambiguous). k is clipped to the number of candidates.
    """
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    self_query = queries is None
    available = n - 1 if self_query else n
    k = int(min(k, available))
    q = points if self_query else np.asarray(queries, dtype=np.float64)
    if k <= 0 or len(q) == 0:
        return np.zeros((len(q), max(k, 0))), np.zeros((len(q), max(k, 0)), dtype=np.int64)
    tree = cKDTree(points)
    dist, idx = tree.query(q, k=k + 1 if self_query else k, workers=thread_budget())
    dist = np.asarray(dist).reshape(len(q), -1)
    idx = np.asarray(idx, dtype=np.int64).reshape(len(q), -1)
    if not self_query:
        return dist, idx
    # Drop each row's own index; with duplicates it need not be in column 0 (or present at all, then the
    # last column goes). A stable sort pushes the self column to the end.
    is_self = idx == np.arange(len(q))[:, None]
    if not is_self.any(axis=1).all():
        is_self[~is_self.any(axis=1), -1] = True
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(idx, order, axis=1)


def knn_graph(points: np.ndarray, k: int) -> np.ndarray:
    """Returns the undirected kNN graph edges (E, 2) int64, u < v, lexicographically sorted, no duplicates.

    Each point is joined to its k nearest other points (FreePoint §3.2, k = k1); an edge found from both
    ends appears once.
    """
    n = len(points)
    _, idx = knn(points, k)
    if idx.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    src = np.repeat(np.arange(n, dtype=np.int64), idx.shape[1])
    dst = idx.ravel()
    u = np.minimum(src, dst)
    v = np.maximum(src, dst)
    keep = u != v
    key = np.unique(u[keep] * n + v[keep])
    return np.stack([key // n, key % n], axis=1).astype(np.int64)
