"""Per-scene SceneGraphs kept across tuning trials, so each trial reruns only the α/σ half of the pipeline.

`generate_pseudo_labels` is `build_scene_graph` (planes → FPS → features → kNN graph → raw affinities) followed
by `segment_graph` (α weighting → multicut → vote), both in `freepoint.pipeline`. While only α (eq. 3) and σ
(eq. 4) change between trials, the graph stays the same, and the plane removal alone is ~2/3 of a scene's time.
`GraphCache` keeps the graphs per scene and per value of the fields in `GRAPH_FIELDS`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from freepoint_bench.data.scene import Scene
from freepoint_bench.freepoint.config import PseudoLabelConfig
from freepoint_bench.freepoint.features import check_deep_features
from freepoint_bench.freepoint.pipeline import SceneGraph, build_scene_graph, labels_from_graph

__all__ = ["GRAPH_FIELDS", "LABEL_FIELDS", "GraphCache", "SceneGraph", "build_scene_graph", "graph_key",
           "labels_from_graph"]

# Config fields the graph (planes, FPS, normals, kNN edges and votes, raw affinities) depends on. The
# others (alpha_*, sigma_*, solver, min_segment_size) only act in `segment_graph`.
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

# Fields that act after the graph on the σ_low labels (mask_score only ranks them).
LABEL_FIELDS: tuple[str, ...] = ("alpha_emb", "alpha_norm", "alpha_xyz", "alpha_rgb", "sigma_low", "solver",
                                 "min_segment_size")


def graph_key(config: PseudoLabelConfig) -> tuple:
    """Returns the values of `GRAPH_FIELDS` in `config`: equal keys give equal graphs of a scene."""
    return tuple(getattr(config, name) for name in GRAPH_FIELDS)


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
