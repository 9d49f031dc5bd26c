"""Superpoints: FH graph segmentation against hand-worked graphs and a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from freepoint_bench.geometry.superpoints import SuperpointConfig, felzenszwalb, superpoints


def _reference_fh(n: int, edges: np.ndarray, weights: np.ndarray, t: float, min_size: int) -> np.ndarray:
    """FH with explicit member sets and spanning-tree edge lists (no union-find), for comparison."""
    comp = {i: {i} for i in range(n)}
    owner = list(range(n))
    tree_max = {i: 0.0 for i in range(n)}
    order = np.argsort(weights, kind="stable")
    for e in order:
        u, v, w = int(edges[e, 0]), int(edges[e, 1]), float(weights[e])
        a, b = owner[u], owner[v]
        if a == b:
            continue
        if w <= min(tree_max[a] + t / len(comp[a]), tree_max[b] + t / len(comp[b])):
            keep, gone = (a, b) if len(comp[a]) >= len(comp[b]) else (b, a)
            comp[keep] |= comp.pop(gone)
            tree_max[keep] = max(tree_max[keep], tree_max.pop(gone), w)
            for i in comp[keep]:
                owner[i] = keep
    for e in order:
        u, v = int(edges[e, 0]), int(edges[e, 1])
        a, b = owner[u], owner[v]
        if a != b and min(len(comp[a]), len(comp[b])) < min_size:
            keep, gone = (a, b) if len(comp[a]) >= len(comp[b]) else (b, a)
            comp[keep] |= comp.pop(gone)
            for i in comp[keep]:
                owner[i] = keep
    return np.array(owner)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(((a[:, None] == a[None]) == (b[:, None] == b[None])).all())


def test_hand_worked_path():
    # path 0 -0- 1 -1- 2 -0- 3: the heavy middle edge separates two pairs unless t is large
    edges = np.array([[0, 1], [1, 2], [2, 3]])
    weights = np.array([0.0, 1.0, 0.0])
    assert felzenszwalb(4, edges, weights, threshold=0.5).tolist() == [0, 0, 1, 1]  # 1 > 0 + 0.5 / 2
    assert felzenszwalb(4, edges, weights, threshold=4.0).tolist() == [0, 0, 0, 0]  # 1 <= 0 + 4 / 2
    assert felzenszwalb(4, edges, weights, threshold=0.5, min_size=3).tolist() == [0, 0, 0, 0]
    assert felzenszwalb(5, edges, weights, threshold=0.5).tolist() == [0, 0, 1, 1, 2]  # node 4 has no edge


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    n = 40
    edges = rng.integers(0, n, size=(120, 2))
    edges = edges[edges[:, 0] != edges[:, 1]]
    weights = rng.random(len(edges)).round(2)  # ties included
    for t, min_size in ((0.3, 1), (1.0, 1), (0.3, 4)):
        got = felzenszwalb(n, edges, weights, t, min_size)
        assert _same_partition(got, _reference_fh(n, edges, weights, t, min_size))
        assert got[0] == 0 and set(np.unique(got)) == set(range(got.max() + 1))  # numbered by first node


def test_bad_graphs_raise():
    with pytest.raises(ValueError, match="weights"):
        felzenszwalb(3, np.array([[0, 1]]), np.array([0.1, 0.2]), 0.5)
    with pytest.raises(ValueError, match="endpoints"):
        felzenszwalb(2, np.array([[0, 2]]), np.array([0.1]), 0.5)
    with pytest.raises(ValueError, match="finite"):
        felzenszwalb(2, np.array([[0, 1]]), np.array([np.nan]), 0.5)


def test_floor_and_wall_do_not_share_superpoints():
    g = np.arange(0, 1.0, 0.02)
    u, v = (a.ravel() for a in np.meshgrid(g, g))
    floor = np.stack([u, v, np.zeros_like(u)], 1)
    wall = np.stack([u, np.full_like(u, 1.0), v + 0.02], 1)  # the plane y = 1 standing on the floor's edge
    xyz = np.concatenate([floor, wall])
    side = np.repeat([0, 1], [len(floor), len(wall)])
    seg = superpoints(xyz, SuperpointConfig(threshold=0.05, min_size=30))
    assert seg.shape == (len(xyz),)
    impure = 0
    for s in np.unique(seg):
        counts = np.bincount(side[seg == s], minlength=2)
        impure += counts.min()
    assert impure <= 0.02 * len(xyz)  # only points at the crease may go either way
    assert len(np.unique(seg)) <= 10  # two flat planes: a few large pieces, not noise


def test_superpoint_input_checks():
    assert superpoints(np.zeros((0, 3))).shape == (0,)
    with pytest.raises(ValueError, match="NaN"):
        superpoints(np.array([[0.0, 0.0, np.nan]] * 5))
    with pytest.raises(ValueError, match="shape"):
        superpoints(np.zeros((4, 2)))
