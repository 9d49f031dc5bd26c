"""FreePoint pseudo-label generation (§3.1-3.2): planes → FPS → kNN graph → affinities → multicut (→ superpoint
snap, off by default) → kNN vote.

    result = generate_pseudo_labels(scene, PseudoLabelConfig(), sigmas=(0.9, 1.2))
    result.labels[0.9]   # (N,) int64 base masks, -1 = background / dropped

The graph and its affinities are computed once per scene (`build_scene_graph`); only the σ offset, the
multicut and the vote repeat per σ (`segment_graph`). Tuning keeps the SceneGraphs and reruns only the second
half per trial (`tuning.graph.GraphCache`).

`run_pseudo_labels` does this over many scenes with an atomic, hash-keyed npz cache.
"""

from __future__ import annotations

import logging
import os
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from freepoint_bench.atomic import save_npz, stable_hash, write_json
from freepoint_bench.data.names import encode_name_underscored
from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.freepoint.affinities import combine_affinities, multicut_costs, raw_affinities
from freepoint_bench.freepoint.config import PseudoLabelConfig
from freepoint_bench.freepoint.features import PointFeatures, check_deep_features, point_features
from freepoint_bench.freepoint.multicut import get_solver
from freepoint_bench.geometry.labels import relabel_contiguous
from freepoint_bench.geometry.neighbours import knn, knn_graph
from freepoint_bench.geometry.planes import remove_planes
from freepoint_bench.geometry.sampling import farthest_point_sample, fps_count
from freepoint_bench.geometry.superpoints import felzenszwalb, normal_weights
from freepoint_bench.parallel import map_unordered, take_shard

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the meaning of the cached labels changes


@dataclass(frozen=True)
class PseudoLabelResult:
    """labels: σ → (N,) int64 segment ids (contiguous from 0, -1 = background or too small);
    foreground: (N,) bool (off the removed planes); timings: seconds per stage (multicut and vote summed
    over σ); num_segments: σ → number of segments; objectives: σ → multicut objective (lower is better);
    num_sampled / num_edges: size of the multicut graph."""

    labels: dict[float, np.ndarray]
    foreground: np.ndarray
    timings: dict[str, float]
    num_segments: dict[float, int]
    objectives: dict[float, float] = field(default_factory=dict)
    num_sampled: int = 0
    num_edges: int = 0


def majority_vote(neighbour_labels: np.ndarray) -> np.ndarray:
    """Returns (Q,) the most frequent label of each row of neighbour_labels (Q, k), nearest first;
    ties go to the tied label whose first occurrence is nearest."""
    nl = np.asarray(neighbour_labels)
    if nl.ndim != 2 or nl.shape[1] == 0:
        raise ValueError(f"neighbour_labels must be (Q, k>=1); got {nl.shape}")
    counts = (nl[:, :, None] == nl[:, None, :]).sum(axis=2)  # (Q, k): votes for each column's label
    return nl[np.arange(len(nl)), np.argmax(counts, axis=1)]  # argmax: first (nearest) of the maxima


def sample_superpoints(feats: PointFeatures, edges: np.ndarray, config: PseudoLabelConfig) -> np.ndarray | None:
    """Returns (M,) int64 superpoint ids of the M sampled points (Felzenszwalb-Huttenlocher on the k1 graph
    `edges`, weights 1 - |n_i . n_j|), or None when config.superpoints is off."""
    if not config.superpoints:
        return None
    weights = normal_weights(feats.normals, edges)
    return felzenszwalb(len(feats.xyz), edges, weights, config.superpoint_threshold, config.superpoint_min_size)


def snap_to_superpoints(labels: np.ndarray, superpoint_ids: np.ndarray) -> np.ndarray:
    """Returns labels (M,) int64 with every point of a superpoint given the superpoint's majority label.

    labels: (M,) int64 (-1 = none: does not vote, and a superpoint of only -1 stays -1); superpoint_ids:
    (M,) int64 >= 0. Ties go to the smallest tied label.
    """
    labels = np.asarray(labels, dtype=np.int64)
    sp = np.asarray(superpoint_ids, dtype=np.int64)
    if labels.shape != sp.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and superpoint_ids {sp.shape} must both be (M,)")
    if labels.size == 0:
        return labels.copy()
    voting = labels >= 0
    pairs, counts = np.unique(np.stack([sp[voting], labels[voting]], axis=1), axis=0, return_counts=True)
    order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))  # per superpoint: most votes, then smallest label
    pairs = pairs[order]
    first = np.r_[True, pairs[1:, 0] != pairs[:-1, 0]]
    winner = np.full(int(sp.max()) + 1, -1, dtype=np.int64)
    winner[pairs[first, 0]] = pairs[first, 1]
    return winner[sp]


def drop_small_segments(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Returns labels (N,) with segments of fewer than min_size points set to -1, renumbered from 0."""
    labels = np.asarray(labels, dtype=np.int64)
    out = labels.copy()
    valid = labels >= 0
    if valid.any():
        sizes = np.bincount(labels[valid])
        out[valid & (sizes[np.clip(labels, 0, None)] < min_size)] = -1
    return relabel_contiguous(out)


def _weights(config: PseudoLabelConfig, scene: Scene, has_deep: bool) -> tuple[dict[str, float], bool]:
    use_rgb = config.alpha_rgb > 0 and not scene.meta.get("no_rgb", False)
    if config.alpha_rgb > 0 and not use_rgb:
        logger.warning("%s: scene has no colours (meta['no_rgb']); colour affinity switched off", scene.name)
    weights = {
        "emb": config.alpha_emb if has_deep else 0.0,
        "norm": config.alpha_norm,
        "xyz": config.alpha_xyz,
        "rgb": config.alpha_rgb if use_rgb else 0.0,
    }
    return weights, use_rgb


def remove_background(scene: Scene, config: PseudoLabelConfig):
    """Returns the plane-removal result (foreground (N,) bool, plane models) of `scene` under `config` (§3.1)."""
    return remove_planes(
        scene.xyz,
        distance_threshold=config.plane_distance_threshold,
        min_plane_points=config.plane_min_points,
        min_plane_fraction=config.plane_min_fraction,
        max_planes=config.plane_max_count,
        num_iterations=config.plane_ransac_iterations,
        fit_points=config.plane_fit_points,
        grid_size=config.plane_grid_size,
        seed=config.seed,
        rules=config.plane_rules,
    )


@dataclass(frozen=True)
class SceneGraph:
    """The α/σ-independent part of one scene's pseudo labelling (§3.1 and eq. 1-2), built once per scene.

    num_points: N of the scene; foreground: (N,) bool, off the removed planes; fg_idx: (F,) int64 indices
    of the foreground points; num_sampled: M FPS samples (graph nodes); edges: (E, 2) int64 node pairs;
    vote_idx: (F, min(k2, M)) the nearest samples of each foreground point, nearest first; raw: name →
    (E,) float64 un-normalised affinities (eq. 1-2; "emb" only with deep features, "rgb" only with colours);
    superpoints: (M,) superpoint ids of the samples when config.superpoints, else None.
    """

    num_points: int
    foreground: np.ndarray
    fg_idx: np.ndarray
    num_sampled: int
    edges: np.ndarray
    vote_idx: np.ndarray
    raw: dict[str, np.ndarray]
    superpoints: np.ndarray | None = None


def _lap(timings: dict[str, float] | None, stage: str, since: float) -> float:
    """Adds the seconds since `since` to timings[stage] (when timings is given); returns now."""
    now = time.perf_counter()
    if timings is not None:
        timings[stage] = timings.get(stage, 0.0) + now - since
    return now


def build_scene_graph(
    scene: Scene,
    config: PseudoLabelConfig,
    features: np.ndarray | None = None,
    *,
    use_rgb: bool | None = None,
    timings: dict[str, float] | None = None,
) -> SceneGraph:
    """Returns the SceneGraph of `scene`: planes → FPS → features → kNN graph and votes → raw affinities
    (→ superpoints), everything before the α weighting.

    features: optional deep per-point features (N, D). use_rgb: whether the colour affinity is computed
    (default: unless scene.meta["no_rgb"]). timings: when given, receives seconds per stage (planes, fps,
    features, graph, affinities, superpoints). No foreground (all planes) → a graph of 0 samples (logged);
    fewer samples than k1 + 1 → each joined to all the others (logged).
    """
    deep = check_deep_features(scene, features)
    if use_rgb is None:
        use_rgb = not scene.meta.get("no_rgb", False)
    n = scene.num_points
    t = time.perf_counter()
    foreground = remove_background(scene, config).foreground
    fg_idx = np.flatnonzero(foreground)
    t = _lap(timings, "planes", t)
    if len(fg_idx) == 0:
        logger.warning("%s: every point lies on a removed plane; no segments", scene.name)
        empty = np.zeros((0, 2), dtype=np.int64)
        return SceneGraph(n, foreground, fg_idx, 0, empty, np.zeros((0, 1), dtype=np.int64), {})

    sampled = fg_idx[farthest_point_sample(scene.xyz[fg_idx], fps_count(len(fg_idx), config.fps_ratio),
                                           seed=config.seed)]
    t = _lap(timings, "fps", t)
    feats = point_features(scene, fg_idx, sampled, normal_k=config.normal_k, deep=deep, use_rgb=use_rgb)
    t = _lap(timings, "features", t)

    m = len(sampled)
    if m < config.k1 + 1:
        logger.warning(
            "%s: only %d sampled foreground points (< k1 + 1 = %d); each is joined to all others",
            scene.name,
            m,
            config.k1 + 1,
        )
    edges = knn_graph(feats.xyz, config.k1)
    # Each foreground point's k2 nearest samples, found once and reused for every σ.
    _, vote_idx = knn(feats.xyz, min(config.k2, m), queries=scene.xyz[fg_idx])
    t = _lap(timings, "graph", t)
    raw = raw_affinities(edges, feats, config.normal_affinity) if len(edges) else {}
    t = _lap(timings, "affinities", t)
    superpoint_ids = sample_superpoints(feats, edges, config)
    if superpoint_ids is not None:
        _lap(timings, "superpoints", t)
    return SceneGraph(n, foreground, fg_idx, m, edges, np.asarray(vote_idx), raw, superpoint_ids)


def affinity_weights(config: PseudoLabelConfig) -> dict[str, float]:
    """Returns the eq. 3 weights by affinity name (α1..α4 = emb, norm, xyz, rgb) of `config`."""
    return {"emb": config.alpha_emb, "norm": config.alpha_norm, "xyz": config.alpha_xyz, "rgb": config.alpha_rgb}


def segment_graph(
    graph: SceneGraph,
    weights: Mapping[str, float],
    sigmas: Sequence[float],
    solver_name: str,
    min_segment_size: int,
    timings: dict[str, float] | None = None,
) -> dict[float, tuple[np.ndarray, float]]:
    """Returns σ → ((N,) int64 labels, multicut objective): eq. 3 weighting of the graph's affinities, then per σ
    the multicut (eq. 4), the superpoint snap (when the graph has superpoints), the kNN vote and the size drop.

    timings: when given, receives the seconds of the weighting (added to "affinities"), the multicut and the
    vote (summed over σ). A graph of 0 samples gives every label -1 and objective 0.
    """
    n = graph.num_points
    if graph.num_sampled == 0:
        return {float(s): (np.full(n, -1, dtype=np.int64), 0.0) for s in sigmas}
    t = time.perf_counter()
    affinity = combine_affinities(graph.raw, weights) if len(graph.edges) else np.zeros(0)
    _lap(timings, "affinities", t)
    solver = get_solver(solver_name)
    if timings is not None:
        timings.setdefault("multicut", 0.0)
        timings.setdefault("vote", 0.0)
    out: dict[float, tuple[np.ndarray, float]] = {}
    for sigma in sigmas:
        t = time.perf_counter()
        result = solver.solve(graph.num_sampled, graph.edges, multicut_costs(affinity, sigma))
        t = _lap(timings, "multicut", t)
        full = np.full(n, -1, dtype=np.int64)
        nodes = result.labels if graph.superpoints is None else snap_to_superpoints(result.labels, graph.superpoints)
        full[graph.fg_idx] = majority_vote(nodes[graph.vote_idx])
        out[float(sigma)] = (drop_small_segments(full, min_segment_size), result.objective)
        _lap(timings, "vote", t)
    return out


def labels_from_graph(
    graph: SceneGraph, config: PseudoLabelConfig, sigmas: Sequence[float] | None = None
) -> dict[float, np.ndarray]:
    """Returns σ → (N,) int64 labels (-1 = background), as `generate_pseudo_labels` gives for the same config.

    Uses config's α weights, solver and min_segment_size; sigmas default to (σ_low, σ_high).
    """
    sigmas = tuple(float(s) for s in (config.sigmas if sigmas is None else sigmas))
    solved = segment_graph(graph, affinity_weights(config), sigmas, config.solver, config.min_segment_size)
    return {s: labels for s, (labels, _) in solved.items()}


def generate_pseudo_labels(
    scene: Scene,
    config: PseudoLabelConfig,
    sigmas: Sequence[float] | None = None,
    features: np.ndarray | None = None,
) -> PseudoLabelResult:
    """Returns the pseudo labels of `scene` for each σ in `sigmas` (default (σ_low, σ_high)).

    features: optional deep per-point features (N, D); without them the α1 term is dropped (the paper's
    "Traditional" row). Fallbacks (never crashes): no foreground (all planes) → every label -1; fewer
    sampled points than k1 + 1 → each joined to all the others (logged); duplicate points are sampled once.
    """
    sigmas = tuple(float(s) for s in (config.sigmas if sigmas is None else sigmas))
    if not sigmas:
        raise ConfigError("generate_pseudo_labels needs at least one sigma")
    weights, use_rgb = _weights(config, scene, features is not None)
    get_solver(config.solver)  # an unknown solver fails before the plane removal, not after it
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    graph = build_scene_graph(scene, config, features, use_rgb=use_rgb, timings=timings)
    if graph.num_sampled == 0:
        timings["total"] = time.perf_counter() - t0
        empty = {s: np.full(scene.num_points, -1, dtype=np.int64) for s in sigmas}
        return PseudoLabelResult(empty, graph.foreground, timings, {s: 0 for s in sigmas}, {s: 0.0 for s in sigmas})
    solved = segment_graph(graph, weights, sigmas, config.solver, config.min_segment_size, timings)
    timings["total"] = time.perf_counter() - t0
    labels = {s: lab for s, (lab, _) in solved.items()}
    return PseudoLabelResult(
        labels,
        graph.foreground,
        timings,
        {s: int(lab.max() + 1) for s, lab in labels.items()},
        {s: obj for s, (_, obj) in solved.items()},
        graph.num_sampled,
        len(graph.edges),
    )


# ----------------------------------------------------------------------------------------------------------
# Many scenes: cache, resume, workers, shards.
# ----------------------------------------------------------------------------------------------------------

SceneSource = Mapping[str, Scene] | Sequence[Scene] | Callable[[str], Scene] | Any


def label_path(out_dir: str | os.PathLike, scene_name: str, sigma: float) -> Path:
    """Returns the npz path of scene `scene_name`'s labels at `sigma` under out_dir (one folder a scene)."""
    return Path(out_dir) / encode_name_underscored(scene_name) / f"sigma_{float(sigma):.4f}.npz"


def _old_folder(out_dir: Path, scene_name: str) -> Path:
    """Returns the folder labels of `scene_name` had before folder names were lossless (``a b`` → ``a_b``)."""
    return out_dir / "".join(c if c.isalnum() or c in "-_." else "_" for c in scene_name.replace("/", "__"))


def _scene_of(path: Path) -> str | None:
    """Returns the scene name a label file records, None when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return str(data["scene"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return None


def _old_files(out_dir: Path, scene_name: str) -> list[Path]:
    """Returns the label files of `scene_name` still in its old folder (only names with characters that
    collided changed folder: ``a b``, ``a~b``, ``a__b``; every S3DIS and ScanNet name kept its own)."""
    old = _old_folder(out_dir, scene_name)
    if old == label_path(out_dir, scene_name, 0.0).parent or not old.is_dir():
        return []
    # the old folder may be another scene's (`a_b`'s folder held `a b` too): each file records its scene
    return [p for p in sorted(old.glob("sigma_*.npz")) if _scene_of(p) == scene_name]


def _move_old_files(out_dir: Path, scene_name: str) -> None:
    """Moves `scene_name`'s label files from its old folder into its own, so a cache written before keeps them."""
    for path in _old_files(out_dir, scene_name):
        new = label_path(out_dir, scene_name, 0.0).parent / path.name
        if not new.exists():
            new.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, new)
            logger.info("%s: moved to %s (scene folders are named losslessly now)", path, new)


def cache_key(scene: Scene, config: PseudoLabelConfig, sigma: float, features_key: str | None) -> str:
    """Returns the hash identifying one scene's labels: scene name + points + config + σ + feature source."""
    return stable_hash(
        FORMAT_VERSION,
        scene.name,
        stable_hash(scene.xyz, scene.rgb, b"" if scene.normals is None else scene.normals),
        config.model_dump(),
        float(sigma),
        features_key,
    )


def _cached(path: Path, key: str) -> bool:
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}  # every member read: zip's CRC checks each one
        return str(arrays["key"]) == key and arrays["labels"].ndim == 1
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        logger.warning("%s: unreadable or partial pseudo-label file; recomputing it", path)
        return False


def _features_key(features_fn: Callable[[Scene], np.ndarray] | None) -> str | None:
    if features_fn is None:
        return None
    key = getattr(features_fn, "cache_key", None)
    if key is None:
        module = getattr(features_fn, "__module__", "")
        key = f"{module}.{getattr(features_fn, '__qualname__', repr(features_fn))}"
    return str(key)


def _process_scene(
    item: tuple[Scene, tuple[float, ...]],
    config: PseudoLabelConfig,
    out_dir: str,
    features_fn: Callable[[Scene], np.ndarray] | None,
) -> dict[str, Any]:
    """Returns the record of one scene after writing its labels at each of its σ (a pool worker's task)."""
    scene, sigmas = item
    fkey = _features_key(features_fn)
    features = None if features_fn is None else features_fn(scene)
    result = generate_pseudo_labels(scene, config, sigmas, features)
    for sigma in sigmas:
        save_npz(
            label_path(out_dir, scene.name, sigma),
            labels=result.labels[sigma],
            foreground=result.foreground,
            key=np.array(cache_key(scene, config, sigma, fkey)),
            sigma=np.array(sigma),
            scene=np.array(scene.name),
        )
    return {
        "scene": scene.name,
        "status": "done",
        "num_points": scene.num_points,
        "num_foreground": int(result.foreground.sum()),
        "num_segments": {str(s): c for s, c in result.num_segments.items()},
        "seconds": result.timings["total"],
        "timings": result.timings,
    }


def _loader(source: SceneSource) -> tuple[Callable[[str], Scene], list[str]]:
    if isinstance(source, Mapping):
        return source.__getitem__, list(source)
    if isinstance(source, Sequence) and not isinstance(source, str):
        by_name = {s.name: s for s in source}
        return by_name.__getitem__, list(by_name)
    for attr in ("load", "get", "read_scene"):
        fn = getattr(source, attr, None)
        if callable(fn):
            names = source.list_scenes() if callable(getattr(source, "list_scenes", None)) else []
            return fn, list(names)
    if callable(source):
        return source, []
    raise ConfigError(
        "run_pseudo_labels: scenes must be a mapping name → Scene, a list of Scenes, a callable name → Scene "
        "or a store with .load(name)"
    )


def run_pseudo_labels(
    store_or_scenes: SceneSource,
    names: Iterable[str] | None,
    config: PseudoLabelConfig,
    sigmas: Sequence[float] | None,
    out_dir: str | os.PathLike,
    workers: int | None = 1,
    shard: tuple[int, int] = (0, 1),
    features_fn: Callable[[Scene], np.ndarray] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Returns a summary dict after writing every scene's labels per σ to out_dir (atomic npz, cached).

    store_or_scenes: mapping name → Scene, list of Scenes, callable name → Scene, or a store with
    .load(name) (and .list_scenes() when names is None). A scene whose files for every σ exist with the
    same cache key (scene name + points hash + config + σ + features_fn.cache_key) is skipped, so reruns
    and interrupted runs resume (only the σ a scene lacks are computed); unreadable files are recomputed.
    shard (i, n) takes every n-th scene starting at i (of the sorted names). workers > 1 uses a process
    pool (scenes are loaded in this process; None: one worker per available core; never more workers than
    cores, each limited to its share of the threads). progress receives each scene's record. A summary.json
    per shard is written to out_dir.
    """
    sigmas_t = tuple(float(s) for s in (config.sigmas if sigmas is None else sigmas))
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1; got {workers}")
    load, known = _loader(store_or_scenes)
    all_names = sorted(known if names is None else names)
    if not all_names:
        raise DataError("run_pseudo_labels: no scene names given and the source lists none")
    mine = take_shard(all_names, *shard)
    index, count = shard
    out = Path(out_dir)
    fkey = _features_key(features_fn)
    records: list[dict[str, Any]] = []

    def report(record: dict[str, Any]) -> None:
        records.append(record)
        if progress is not None:
            progress(record)

    todo: list[tuple[Scene, tuple[float, ...]]] = []  # scenes and the σ not yet cached (a kill can leave some)
    for name in mine:
        scene = load(name)
        _move_old_files(out, scene.name)
        missing = tuple(s for s in sigmas_t if not _cached(label_path(out, scene.name, s),
                                                           cache_key(scene, config, s, fkey)))
        if not missing:
            report({"scene": scene.name, "status": "cached"})
        else:
            todo.append((scene, missing))

    work = partial(_process_scene, config=config, out_dir=str(out), features_fn=features_fn)
    for record in map_unordered(work, todo, workers, label=lambda item: f"scene {item[0].name!r}"):
        report(record)
    summary = {
        "shard": [index, count],
        "sigmas": list(sigmas_t),
        "config": config.model_dump(),
        "computed": sum(r["status"] == "done" for r in records),
        "cached": sum(r["status"] == "cached" for r in records),
        "scenes": records,
    }
    write_json(out / f"summary_{index}_of_{count}.json", summary)
    return summary


def available_sigmas(out_dir: str | os.PathLike, scene_name: str) -> list[float]:
    """Returns the σ values (sorted) for which out_dir holds labels of scene_name."""
    folder = label_path(out_dir, scene_name, 0.0).parent
    return sorted(float(p.stem.removeprefix("sigma_")) for p in folder.glob("sigma_*.npz"))


def load_pseudo_labels(out_dir: str | os.PathLike, scene_name: str, sigma: float) -> np.ndarray:
    """Returns the cached labels (N,) int64 of scene_name at sigma; DataError when missing or corrupt."""
    path = label_path(out_dir, scene_name, sigma)
    if not path.is_file():
        if any(p.name == path.name for p in _old_files(Path(out_dir), scene_name)):
            raise DataError(f"{path}: the labels of {scene_name} at sigma={sigma} are in the folder named before "
                            "scene folders were lossless; rerun pseudo-labelling on this folder: it moves them")
        raise DataError(f"{path}: no pseudo labels for {scene_name} at sigma={sigma}; run pseudo-labelling first")
    try:
        with np.load(path, allow_pickle=False) as data:
            labels, scene = np.asarray(data["labels"], dtype=np.int64), str(data["scene"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        msg = f"{path}: corrupt pseudo-label file ({exc}); delete it and rerun pseudo-labelling"
        raise DataError(msg) from None
    if scene != scene_name:  # written when two names shared a folder (`a b` and `a_b`): another scene's labels
        raise DataError(f"{path}: holds the labels of scene {scene!r}, not {scene_name!r}; rerun pseudo-labelling")
    return labels
