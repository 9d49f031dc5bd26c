"""FreePoint's pseudo-label pipeline split at the affinities, so tuning reuses the per-scene graph.

`generate_pseudo_labels` runs planes → FPS → features → kNN graph → affinities → multicut → vote in one
call. While only α (eq. 3) and σ (eq. 4) change between trials, everything up to the raw, un-weighted edge
affinities stays the same, and the plane removal alone is ~2/3 of a scene's time. Here the first half is
`build_scene_graph` (cached per scene and per value of the fields in `GRAPH_FIELDS`) and the second half
`labels_from_graph`; both call the public stage functions of `freepoint` and `geometry`, and a parity test
keeps their result identical to `generate_pseudo_labels`.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from freepoint_bench.data.scene import Scene
from freepoint_bench.freepoint.affinities import combine_affinities, multicut_costs, raw_affinities
from freepoint_bench.freepoint.config import PseudoLabelConfig
from freepoint_bench.freepoint.features import check_deep_features, point_features
from freepoint_bench.freepoint.multicut import get_solver
from freepoint_bench.freepoint.pipeline import (
    drop_small_segments,
    majority_vote,
    remove_background,
    sample_superpoints,
    snap_to_superpoints,
)
from freepoint_bench.geometry.neighbours import knn, knn_graph
from freepoint_bench.geometry.sampling import farthest_point_sample, fps_count

logger = logging.getLogger(__name__)

# Config fields the graph (planes, FPS, normals, kNN edges and votes, raw affinities) depends on. The
# others (alpha_*, sigma_*, solver, min_segment_size) only act in `labels_from_graph`.
GRAPH_FIELDS: tuple[str, ...] = (
    "k1",
    "k2",
    "fps_ratio",
    "plane_distance_threshold",
    "plane_min_fraction",
    "plane_min_points",
    "plane_max_count",
    "plane_ransac_iterations",
    "plane_fit_points",
    "plane_grid_size",
    "plane_rules",
    "normal_k",
    "normal_affinity",
    "superpoints",
    "superpoint_threshold",
    "superpoint_min_size",
    "seed",
)


@dataclass(frozen=True)
class SceneGraph:
    """The α/σ-independent part of one scene's pseudo labelling.

    num_points: N of the scene; foreground: (N,) bool, off the removed planes; fg_idx: (F,) int64 indices
    of the foreground points; num_sampled: M FPS samples (graph nodes); edges: (E, 2) int64 node pairs;
    vote_idx: (F, min(k2, M)) the nearest samples of each foreground point, nearest first; raw: name →
    (E,) float64 un-normalised affinities (eq. 1-2; "emb" only with deep features, "rgb" only with colours).
    """

    num_points: int
    foreground: np.ndarray
    fg_idx: np.ndarray
    num_sampled: int
    edges: np.ndarray
    vote_idx: np.ndarray
    raw: dict[str, np.ndarray]
    superpoints: np.ndarray | None = None  # (M,) superpoint ids of the samples when config.superpoints


# Fields that act after the graph on the σ_low labels (mask_score only ranks them).
LABEL_FIELDS: tuple[str, ...] = ("alpha_emb", "alpha_norm", "alpha_xyz", "alpha_rgb", "sigma_low", "solver",
                                 "min_segment_size")


def graph_key(config: PseudoLabelConfig) -> tuple:
    """Returns the values of `GRAPH_FIELDS` in `config`: equal keys give equal graphs of a scene."""
    return tuple(getattr(config, name) for name in GRAPH_FIELDS)


def build_scene_graph(scene: Scene, config: PseudoLabelConfig, features: np.ndarray | None = None) -> SceneGraph:
    """Returns the SceneGraph of `scene`: the steps of `generate_pseudo_labels` before the α weighting.

    features: optional deep per-point features (N, D), as in `generate_pseudo_labels`. Colours are used
    unless scene.meta["no_rgb"]; whether α4 is 0 only matters later.
    """
    deep = check_deep_features(scene, features)
    n = scene.num_points
    planes = remove_background(scene, config)
    foreground = planes.foreground
    fg_idx = np.flatnonzero(foreground)
    if len(fg_idx) == 0:
        logger.warning("%s: every point lies on a removed plane; no segments", scene.name)
        empty = np.zeros((0, 2), dtype=np.int64)
        return SceneGraph(n, foreground, fg_idx, 0, empty, np.zeros((0, 1), dtype=np.int64), {})
    sampled_local = farthest_point_sample(scene.xyz[fg_idx], fps_count(len(fg_idx), config.fps_ratio), seed=config.seed)
    sampled = fg_idx[sampled_local]
    use_rgb = not scene.meta.get("no_rgb", False)
    feats = point_features(scene, fg_idx, sampled, normal_k=config.normal_k, deep=deep, use_rgb=use_rgb)
    m = len(sampled)
    edges = knn_graph(feats.xyz, config.k1)
    _, vote_idx = knn(feats.xyz, min(config.k2, m), queries=scene.xyz[fg_idx])
    raw = raw_affinities(edges, feats, config.normal_affinity) if len(edges) else {}
    return SceneGraph(n, foreground, fg_idx, m, edges, np.asarray(vote_idx), raw,
                      sample_superpoints(feats, edges, config))


def affinity_weights(config: PseudoLabelConfig) -> dict[str, float]:
    """Returns the eq. 3 weights by affinity name (α1..α4 = emb, norm, xyz, rgb) of `config`."""
    return {
        "emb": config.alpha_emb,
        "norm": config.alpha_norm,
        "xyz": config.alpha_xyz,
        "rgb": config.alpha_rgb,
    }


def labels_from_graph(
    graph: SceneGraph, config: PseudoLabelConfig, sigmas: Sequence[float] | None = None
) -> dict[float, np.ndarray]:
    """Returns σ → (N,) int64 labels (-1 = background), as `generate_pseudo_labels` gives for the same config.

    Uses config's α weights, solver and min_segment_size; sigmas default to (σ_low, σ_high).
    """
    sigmas = tuple(float(s) for s in (config.sigmas if sigmas is None else sigmas))
    n = graph.num_points
    if graph.num_sampled == 0:
        return {s: np.full(n, -1, dtype=np.int64) for s in sigmas}
    if len(graph.edges):
        affinity = combine_affinities(graph.raw, affinity_weights(config))
    else:
        affinity = np.zeros(0)
    solver = get_solver(config.solver)
    labels: dict[float, np.ndarray] = {}
    for sigma in sigmas:
        result = solver.solve(graph.num_sampled, graph.edges, multicut_costs(affinity, sigma))
        full = np.full(n, -1, dtype=np.int64)
        nodes = result.labels if graph.superpoints is None else snap_to_superpoints(result.labels, graph.superpoints)
        full[graph.fg_idx] = majority_vote(nodes[graph.vote_idx])
        labels[sigma] = drop_small_segments(full, config.min_segment_size)
    return labels


class GraphCache:
    """Per-scene SceneGraphs keyed by (scene name, graph_key(config)), least recently used dropped first.

    max_entries bounds memory when graph fields are tuned too (each distinct plane threshold or k1 gives
    new graphs); deep features from features_fn are computed once per scene and kept.
    """

    def __init__(
        self,
        max_entries: int = 64,
        features_fn: Callable[[Scene], np.ndarray] | None = None,
        max_labels: int = 0,
    ) -> None:
        self.max_entries = max(1, int(max_entries))
        self.features_fn = features_fn
        self.max_labels = max(0, int(max_labels))
        self._graphs: OrderedDict[tuple, SceneGraph] = OrderedDict()
        self._labels: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._features: dict[str, np.ndarray] = {}
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()  # studies with jobs > 1 run trials in threads

    def get(self, scene: Scene, config: PseudoLabelConfig) -> SceneGraph:
        """Returns the SceneGraph of `scene` under `config`, built on first use."""
        with self._lock:
            return self._get(scene, config)

    def labels(self, scene: Scene, config: PseudoLabelConfig) -> np.ndarray:
        """Returns the σ_low labels (N,) int64 of `scene` under `config`, kept for reuse when max_labels > 0
        (the last max_labels label arrays; studies that revisit configs, such as grid folds, skip the solve)."""
        key = (scene.name, graph_key(config), *(getattr(config, f) for f in LABEL_FIELDS))
        with self._lock:
            cached = self._labels.get(key)
            if cached is not None:
                self._labels.move_to_end(key)
                return cached
            graph = self._get(scene, config)
        labels = labels_from_graph(graph, config, (config.sigma_low,))[config.sigma_low]
        if self.max_labels:
            with self._lock:
                self._labels[key] = labels
                while len(self._labels) > self.max_labels:
                    self._labels.popitem(last=False)
        return labels

    def _get(self, scene: Scene, config: PseudoLabelConfig) -> SceneGraph:
        key = (scene.name, graph_key(config))
        graph = self._graphs.get(key)
        if graph is not None:
            self.hits += 1
            self._graphs.move_to_end(key)
            return graph
        self.misses += 1
        features = None
        if self.features_fn is not None:
            if scene.name not in self._features:
                self._features[scene.name] = check_deep_features(scene, self.features_fn(scene))
            features = self._features[scene.name]
        graph = build_scene_graph(scene, config, features)
        self._graphs[key] = graph
        while len(self._graphs) > self.max_entries:
            self._graphs.popitem(last=False)
        return graph
