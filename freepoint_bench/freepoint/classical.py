"""The paper's classical clustering baselines (Table S1) on FreePoint's foreground points (scikit-learn).

DBSCAN (eps 0.05 m as in the paper; min_samples = 10, ours: sklearn's default 5 leaves chains of noise
points joining objects), K-Means and Birch with 10 clusters (paper), and HDBSCAN (ours, min_cluster_size
50). Clustering runs on xyz of the foreground left by the same plane removal as FreePoint's; background
and noise points are -1.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np

from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import ConfigError
from freepoint_bench.freepoint.config import PseudoLabelConfig
from freepoint_bench.freepoint.pipeline import drop_small_segments, remove_background
from freepoint_bench.geometry.labels import relabel_contiguous

ClassicalMethod = Literal["dbscan", "kmeans", "birch", "hdbscan"]
CLASSICAL_METHODS: tuple[str, ...] = ("dbscan", "kmeans", "birch", "hdbscan")

DBSCAN_EPS = 0.05  # Table S1: DBSCAN eps, metres
DBSCAN_MIN_SAMPLES = 10  # ours (not in the paper)
NUM_CLUSTERS = 10  # Table S1: K-Means and Birch with 10 clusters
HDBSCAN_MIN_CLUSTER_SIZE = 50  # ours (HDBSCAN is not in the paper)


def foreground_mask(scene: Scene, config: PseudoLabelConfig) -> np.ndarray:
    """Returns the (N,) bool foreground of `scene` by FreePoint's plane removal with `config`."""
    return remove_background(scene, config).foreground


def classical_segments(
    scene: Scene,
    method: str,
    config: PseudoLabelConfig,
    foreground: np.ndarray | None = None,
) -> np.ndarray:
    """Returns labels (N,) int64 of `method` on the scene's foreground xyz (-1 = background or noise).

    foreground: optional precomputed (N,) bool mask (else plane removal runs here). Segments smaller than
    config.min_segment_size are dropped as in FreePoint.
    """
    from sklearn.cluster import DBSCAN, HDBSCAN, Birch, KMeans
    from sklearn.exceptions import ConvergenceWarning

    key = str(method).lower()
    if key not in CLASSICAL_METHODS:
        raise ConfigError(f"unknown classical method {method!r}; choose one of {CLASSICAL_METHODS}")
    fg = foreground_mask(scene, config) if foreground is None else np.asarray(foreground, dtype=bool)
    labels = np.full(scene.num_points, -1, dtype=np.int64)
    pts = scene.xyz[fg].astype(np.float64)
    if len(pts) == 0:
        return labels
    if key == "dbscan":
        fg_labels = DBSCAN(eps=DBSCAN_EPS, min_samples=DBSCAN_MIN_SAMPLES, n_jobs=-1).fit_predict(pts)
    elif key == "hdbscan":
        if len(pts) < 2:
            fg_labels = np.zeros(len(pts), dtype=np.int64)
        else:
            size = min(HDBSCAN_MIN_CLUSTER_SIZE, len(pts))
            fg_labels = HDBSCAN(min_cluster_size=max(2, size), copy=True).fit_predict(pts)
    else:
        k = min(NUM_CLUSTERS, len(pts))
        if key == "kmeans":
            fg_labels = KMeans(n_clusters=k, n_init=1, random_state=config.seed).fit_predict(pts)
        else:
            with warnings.catch_warnings():  # fewer subclusters than k is a result here, not a problem
                warnings.simplefilter("ignore", ConvergenceWarning)
                fg_labels = Birch(n_clusters=k).fit_predict(pts)
    labels[fg] = relabel_contiguous(np.asarray(fg_labels, dtype=np.int64))
    return drop_small_segments(labels, config.min_segment_size)
