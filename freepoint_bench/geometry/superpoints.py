"""Superpoints: a label-free over-segmentation of a point cloud into small, geometrically flat pieces.

Felzenszwalb-Huttenlocher graph segmentation on the kNN graph, the method of ScanNet's mesh segmentator
(whose segments Mask3D pools its masks over on ScanNet), here on points: an edge (i, j) weighs
w = 1 - |n_i . n_j| (normals from `estimate_normals`), edges are visited by increasing weight, and two
components A, B merge when w <= min(Int(A) + t / |A|, Int(B) + t / |B|), Int = the largest weight
inside a component's spanning tree (the last edge that merged it), t = `threshold`. Then every
component under `min_size` points merges into a neighbour across its lightest edge (edges again in
weight order). No labels are used; superpoints only let the segmenter's masks follow surfaces
(`models.inference`: a mask's probability is averaged within each superpoint).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from freepoint_bench.geometry.labels import relabel_contiguous
from freepoint_bench.geometry.neighbours import knn_graph
from freepoint_bench.geometry.normals import estimate_normals


class SuperpointConfig(BaseModel):
    """Parameters of `superpoints`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(8, ge=1)  # kNN graph degree
    normal_k: int = Field(16, ge=3)  # neighbours of each normal estimate
    # FH's t, in units of 1 - |cos|: larger gives fewer, larger pieces (ScanNet's segmentator: 0.01 on
    # meshes). 0.05: 283 pieces per held-out 50k-point dev scan (248-412; docs/studies/learning-curve.md
    # prints the count); chosen over 0.01 by a scratch probe, not a committed measurement.
    threshold: float = Field(0.05, gt=0)
    min_size: int = Field(30, ge=1)  # smaller pieces merge into a neighbour (points)


def _find(parent: list[int], a: int) -> int:
    root = a
    while parent[root] != root:
        root = parent[root]
    while parent[a] != root:  # path compression
        parent[a], a = root, parent[a]
    return root


def felzenszwalb(
    num_nodes: int, edges: np.ndarray, weights: np.ndarray, threshold: float, min_size: int = 1
) -> np.ndarray:
    """Returns (num_nodes,) int64 component ids 0..C-1 (numbered by first node) of FH graph segmentation.

    edges: (E, 2) int64 node pairs; weights: (E,) dissimilarities. Ties in weight keep the edge order.
    """
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(edges) != len(weights):
        raise ValueError(f"{len(edges)} edges but {len(weights)} weights")
    if len(edges) and (edges.min() < 0 or edges.max() >= num_nodes):
        raise ValueError(f"edge endpoints must lie in 0..{num_nodes - 1}")
    if not np.isfinite(weights).all():
        raise ValueError("edge weights must be finite")
    order = np.argsort(weights, kind="stable")
    us, vs, ws = edges[order, 0].tolist(), edges[order, 1].tolist(), weights[order].tolist()
    parent = list(range(num_nodes))
    size = [1] * num_nodes
    internal = [0.0] * num_nodes
    for u, v, w in zip(us, vs, ws, strict=True):
        a, b = _find(parent, u), _find(parent, v)
        if a == b or w > min(internal[a] + threshold / size[a], internal[b] + threshold / size[b]):
            continue
        if size[a] < size[b]:
            a, b = b, a
        parent[b] = a
        size[a] += size[b]
        internal[a] = w  # edges come in increasing order: w is the largest in the merged tree
    if min_size > 1:
        for u, v in zip(us, vs, strict=True):
            a, b = _find(parent, u), _find(parent, v)
            if a != b and (size[a] < min_size or size[b] < min_size):
                if size[a] < size[b]:
                    a, b = b, a
                parent[b] = a
                size[a] += size[b]
    roots = np.fromiter((_find(parent, i) for i in range(num_nodes)), dtype=np.int64, count=num_nodes)
    return relabel_contiguous(roots)


def superpoints(xyz: np.ndarray, config: SuperpointConfig | None = None) -> np.ndarray:
    """Returns (N,) int64 superpoint ids 0..S-1 of points xyz (N, 3) metres (see the module docstring)."""
    cfg = config or SuperpointConfig()
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz has shape {xyz.shape}; expected (N, 3)")
    n = len(xyz)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.isfinite(xyz).all():
        raise ValueError("xyz has NaN or infinite coordinates; drop those points first")
    normals = estimate_normals(xyz, cfg.normal_k)
    edges = knn_graph(xyz, cfg.k)
    return felzenszwalb(n, edges, normal_weights(normals, edges), cfg.threshold, cfg.min_size)


def normal_weights(normals: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Returns (E,) float64 dissimilarities 1 - |n_i . n_j| in [0, 1] of edges (E, 2) between unit normals (N, 3)."""
    normals = np.asarray(normals, dtype=np.float64)
    return np.clip(1.0 - np.abs((normals[edges[:, 0]] * normals[edges[:, 1]]).sum(1)), 0.0, 1.0)
