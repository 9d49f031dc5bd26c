"""kNN and kNN graphs against brute force."""

from __future__ import annotations

import numpy as np

from freepoint_bench.geometry.neighbours import knn, knn_graph


def _brute(points, queries, k, exclude_self):
    d = np.linalg.norm(queries[:, None] - points[None], axis=2)
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    idx = np.argsort(d, axis=1)[:, :k]
    return np.take_along_axis(d, idx, axis=1), idx


def test_knn_matches_brute_force():
    rng = np.random.default_rng(0)
    pts, q = rng.random((200, 3)), rng.random((50, 3))
    d, i = knn(pts, 5, queries=q)
    bd, bi = _brute(pts, q, 5, False)
    assert np.array_equal(i, bi) and np.allclose(d, bd)
    d, i = knn(pts, 4)
    bd, bi = _brute(pts, pts, 4, True)
    assert np.array_equal(i, bi) and np.allclose(d, bd)


def test_knn_excludes_self_with_duplicates():
    pts = np.repeat(np.random.default_rng(1).random((20, 3)), 3, axis=0)  # every point three times
    _, i = knn(pts, 2)
    assert not (i == np.arange(len(pts))[:, None]).any()
    assert np.allclose(pts[i[:, 0]], pts)  # the nearest other point is a duplicate


def test_knn_clips_k():
    d, i = knn(np.random.default_rng(0).random((3, 3)), 10)
    assert i.shape == (3, 2)
    assert knn(np.zeros((1, 3)), 4)[1].shape == (1, 0)


def test_knn_graph_is_undirected_unique_and_complete():
    rng = np.random.default_rng(2)
    pts = rng.random((100, 3))
    edges = knn_graph(pts, 4)
    assert edges.dtype == np.int64 and (edges[:, 0] < edges[:, 1]).all()
    assert len(np.unique(edges, axis=0)) == len(edges)
    assert np.array_equal(edges, np.unique(edges, axis=0))  # lexicographically sorted
    _, bi = _brute(pts, pts, 4, True)
    expected = {(min(a, b), max(a, b)) for a in range(100) for b in bi[a]}
    assert set(map(tuple, edges.tolist())) == expected
