"""ScanNet-benchmark instance-segmentation AP (AP, AP50, AP25), semantic or class-agnostic.

The rules are those of the ScanNet benchmark's `evaluate_semantic_instance.py`, re-implemented here
(vectorised intersections, the greedy matching kept sequential because it is order dependent):

- IoU thresholds 0.50, 0.55, ..., 0.90 (nine values, 0.95 excluded) and 0.25; a match needs IoU > threshold.
- A GT instance's class is the majority semantic id of its points (-1 not voting); as in the benchmark's
  `label * 1000 + id` encoding every point takes its instance's class, so a point is void when it is in no
  instance of an evaluated class (walls, floors, unannotated, no instance). (The ScanNet repository's
  script compares the encoded ids themselves with the class ids, `np.in1d(gt_ids, VALID_CLASS_IDS)`,
  which finds no void point in benchmark GT files, whose ids are 0 or >= 1000; we apply the corrected
  `not in1d(gt_ids // 1000, ...)` rule of the widely used forks, the rule the script's comment names.)
- GT instances and predictions with fewer than `min_region_size` points are dropped.
- For each class and threshold, GT instances (in id order) each take the first not-yet-used prediction
  (in submission order) of their class above the threshold; a further prediction above the threshold for
  an already matched GT is a false positive carrying the lower of the two scores (the GT keeps the higher).
- A prediction that matches no GT (of its class, small ones included) is a false positive unless the
  share of its points that are void or in small GT instances of its class exceeds the threshold.
- AP integrates the precision/recall curve (with the artificial precision 1 / recall 0 end point) with
  the benchmark's step widths. A class with GT but no prediction scores 0; with neither, NaN (excluded).
- AP is the mean over classes and the nine thresholds; AP50 and AP25 are means over classes.
- Class-agnostic: every evaluated class is one "object" class (GT in instance-id order, as if the GT
  labels were merged before encoding) and prediction labels are ignored; the void rule is unchanged.
- Where the script would crash (GT and predictions of a class, but every GT missed and every prediction
  ignored: an empty curve), the class scores 0.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from freepoint_bench.data import catalogue
from freepoint_bench.data.catalogue import S3DIS_VOCABULARY, SCANNET_VOCABULARY, Vocabulary
from freepoint_bench.data.classes import S3DIS_STRUCTURE
from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.evaluation.predictions import Predictions

# Exactly the benchmark's thresholds: np.arange(0.5, 0.95, 0.05) then 0.25 (floats as the script has them).
OVERLAPS: np.ndarray = np.append(np.arange(0.5, 0.95, 0.05), 0.25)
_O50 = int(np.flatnonzero(np.isclose(OVERLAPS, 0.5))[0])
_O25 = int(np.flatnonzero(np.isclose(OVERLAPS, 0.25))[0])
_OALL = np.flatnonzero(~np.isclose(OVERLAPS, 0.25))


@dataclass(frozen=True)
class EvalSpec:
    """Which classes are evaluated and how.

    class_ids: dataset semantic ids of the evaluated classes (every other id is void).
    class_names: one name per id. class_agnostic: all evaluated classes merged into one "object" class and
    prediction labels ignored. min_region_size: GT instances and predictions below it are dropped.
    """

    class_ids: tuple[int, ...]
    class_names: tuple[str, ...]
    class_agnostic: bool = False
    min_region_size: int = 100  # ScanNet benchmark: `opt.min_region_sizes = [100]` vertices
    name: str = "custom"

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_ids", tuple(int(c) for c in self.class_ids))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if len(self.class_ids) != len(self.class_names) or not self.class_ids:
            raise ConfigError("EvalSpec needs one name per class id and at least one class")
        if len(set(self.class_ids)) != len(self.class_ids) or min(self.class_ids) < 0:
            raise ConfigError(f"EvalSpec class ids {self.class_ids} must be distinct and >= 0 (-1 is unlabelled)")
        if self.min_region_size < 1:
            raise ConfigError(f"min_region_size={self.min_region_size}; it must be at least 1 point")

    @property
    def labels(self) -> tuple[str, ...]:
        """Returns the names of the classes AP is reported for ("object" when class-agnostic)."""
        return ("object",) if self.class_agnostic else self.class_names


def vocabulary_spec(vocab: Vocabulary, class_agnostic: bool = False, min_region_size: int = 100) -> EvalSpec:
    """Returns the spec of a class vocabulary: its classes, less its agnostic_void ones when class-agnostic."""
    ids, names = vocab.evaluated(class_agnostic)
    return EvalSpec(ids, names, class_agnostic, min_region_size, vocab.name)


def scannet_spec(class_agnostic: bool = False, min_region_size: int = 100) -> EvalSpec:
    """Returns the ScanNet v2 benchmark spec: the 18 NYU40 instance classes, the rest void."""
    return vocabulary_spec(SCANNET_VOCABULARY, class_agnostic, min_region_size)


def s3dis_spec(
    class_agnostic: bool = False,
    clutter_void: bool = False,
    structure_void: bool = False,
    min_region_size: int = 100,
) -> EvalSpec:
    """Returns the S3DIS spec: the 13 classes (ids 0..12); clutter and/or structure
    (ceiling, floor, wall, beam, column) optionally void, e.g. to score class-agnostic object masks."""
    vocab = S3DIS_VOCABULARY
    kept = [
        (i, c)
        for i, c in zip(vocab.class_ids, vocab.class_names, strict=True)
        if not (clutter_void and c == "clutter") and not (structure_void and c in S3DIS_STRUCTURE)
    ]
    return EvalSpec(tuple(i for i, _ in kept), tuple(c for _, c in kept), class_agnostic, min_region_size,
                    vocab.name)


def dataset_spec(dataset: str, class_agnostic: bool = False, min_region_size: int = 100) -> EvalSpec:
    """Returns the spec the scenes of `dataset` are scored with: its catalogue entry's class vocabulary.

    ScanNet: the benchmark's 18 instance classes, the rest void. S3DIS and the synthetic rooms (labelled
    like S3DIS): the 13 classes; class-agnostic, structure (ceiling, floor, wall, beam, column) and clutter
    are void, so every other instance is one "object" to find.
    """
    entry = catalogue.find(dataset)
    if entry is None or entry.classes is None:
        what = "unknown dataset" if entry is None else "dataset"
        usable = catalogue.or_list(catalogue.evaluable())
        raise ConfigError(f"{what} {dataset!r} has no ground truth to evaluate; use {usable}")
    return vocabulary_spec(entry.classes, class_agnostic, min_region_size)


@dataclass
class EvalResult:
    """AP / AP50 / AP25 as fractions in 0..1 (NaN when no class has GT), per class and per threshold."""

    ap: float
    ap50: float
    ap25: float
    per_class: dict[str, dict[str, float]]
    ap_table: np.ndarray  # (classes, len(OVERLAPS)); NaN where a class has neither GT nor predictions
    num_scenes: int
    spec: EvalSpec = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-ready dict (NaN written as null)."""

        def f(x: float) -> float | None:
            return None if x is None or math.isnan(x) else float(x)

        return {
            "ap": f(self.ap),
            "ap50": f(self.ap50),
            "ap25": f(self.ap25),
            "per_class": {k: {m: f(v) for m, v in row.items()} for k, row in self.per_class.items()},
            "num_scenes": self.num_scenes,
            "class_agnostic": self.spec.class_agnostic,
            "min_region_size": self.spec.min_region_size,
            "spec": self.spec.name,
            "overlaps": [float(o) for o in OVERLAPS],
        }


@dataclass
class _SceneMatches:
    """Per scene, after filtering: GT (id order) and predictions (submission order) with intersections."""

    gt_class: np.ndarray  # (G,) class index
    gt_size: np.ndarray  # (G,) points
    pred_class: np.ndarray  # (P,) class index
    pred_size: np.ndarray  # (P,)
    pred_conf: np.ndarray  # (P,) float64
    pred_void: np.ndarray  # (P,) points on void
    inter: np.ndarray  # (P, G) intersections; only same-class pairs are used


def _gt_arrays(gt: Any) -> tuple[str, np.ndarray, np.ndarray]:
    if isinstance(gt, tuple):
        if len(gt) != 3:
            raise DataError(f"ground truth entry of {len(gt)} items; give Scenes or (name, semantic, instance)")
        name, semantic, instance = gt
    else:
        name, semantic, instance = gt.name, gt.semantic, gt.instance
    if semantic is None or instance is None:
        raise DataError(f"scene {name}: no ground-truth labels to evaluate against; use a labelled split")
    semantic, instance = np.asarray(semantic), np.asarray(instance)
    if semantic.ndim != 1 or semantic.shape != instance.shape:
        raise DataError(
            f"scene {name}: semantic {semantic.shape} and instance {instance.shape} labels must be (N,) each"
        )
    for what, a in (("semantic", semantic), ("instance", instance)):
        if a.size and not np.issubdtype(a.dtype, np.integer):
            if not np.array_equal(a, np.round(a)):
                raise DataError(f"scene {name}: {what} labels are not integers; give class / instance ids")
    return str(name), semantic.astype(np.int64, copy=False), instance.astype(np.int64, copy=False)


def _small_table(size: int, n: int) -> bool:
    """Returns True when a counting table of `size` entries is cheaper than sorting n values."""
    return size <= 4 * n + 4096


def _instance_index(instance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns (point → instance index in increasing id order, -1 for ids < 0; points of each instance)."""
    n = len(instance)
    if n and instance.min() >= -1 and _small_table(int(instance.max()) + 2, n):  # count instead of sorting
        counts = np.bincount(instance + 1)
        ids = np.flatnonzero(counts[1:])
        lookup = np.full(len(counts), -1, np.int64)
        lookup[ids + 1] = np.arange(len(ids))
        return lookup[instance + 1], counts[1:][ids]
    has_inst = instance >= 0
    _, inv = np.unique(instance[has_inst], return_inverse=True)
    index = np.full(n, -1, np.int64)
    index[has_inst] = inv
    return index, np.bincount(inv)


def _majority(index: np.ndarray, groups: int, semantic: np.ndarray) -> np.ndarray:
    """Returns, per group 0..groups-1 of index (-1 = none), the most frequent semantic id >= 0 of its points
    (ties → the smallest id; -1 when none is annotated)."""
    n = len(index)
    top = int(semantic.max()) if n else -1
    if not groups or top < 0:
        return np.full(groups, -1, np.int64)
    if semantic.min() >= -1 and _small_table((groups + 1) * (top + 2), n):  # one (group, id) table, no sort
        votes = np.bincount((index + 1) * (top + 2) + semantic + 1, minlength=(groups + 1) * (top + 2))
        votes = votes.reshape(groups + 1, top + 2)[1:, 1:]  # rows: groups, columns: ids 0..top
        return np.where(votes.max(axis=1) > 0, votes.argmax(axis=1), -1)
    use = (index >= 0) & (semantic >= 0)
    sem_vals, sem_inv = np.unique(semantic[use], return_inverse=True)
    votes = np.bincount(index[use] * len(sem_vals) + sem_inv, minlength=groups * len(sem_vals))
    votes = votes.reshape(groups, len(sem_vals))
    return np.where(votes.max(axis=1) > 0, sem_vals[votes.argmax(axis=1)], -1)


def gt_instances(semantic: np.ndarray, instance: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (point → instance index or -1, class id of each instance, size of each instance).

    Instances are numbered in increasing id order; an instance's class is the majority semantic id of its
    annotated points (ties → the smallest id; -1 when none of its points is annotated).
    """
    index, sizes = _instance_index(instance)
    return index, _majority(index, len(sizes), semantic), sizes


def _match_scene(
    name: str,
    semantic: np.ndarray,
    instance: np.ndarray,
    masks: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    spec: EvalSpec,
) -> _SceneMatches:
    n = len(semantic)
    if masks.shape[1] != n and (len(masks) or masks.shape[1]):
        raise DataError(
            f"scene {name}: predictions cover {masks.shape[1]} points but the scene has {n}; "
            "masks must follow the scene's point order"
        )
    inst_index, inst_cls, sizes = gt_instances(semantic, instance)
    # GT instances of evaluated classes (small ones included: they matter for the ignore rule). As in the
    # benchmark's label*1000+id encoding, every point takes its instance's class: void = in no such instance
    # (unannotated, no instance, or an instance of a class that is not evaluated).
    class_ids = np.array(spec.class_ids)
    keep = np.isin(inst_cls, class_ids)
    g = int(keep.sum())
    code_of = np.concatenate([[0], np.where(keep, np.cumsum(keep), 0)])  # instance index + 1 → GT + 1, 0 = void
    code = code_of[inst_index + 1]  # per point
    order = np.argsort(class_ids)
    if spec.class_agnostic:
        gt_cls = np.zeros(g, np.int64)
        pcls = np.zeros(len(masks), np.int64)
    else:
        gt_cls = order[np.searchsorted(class_ids[order], inst_cls[keep])]
        at = np.minimum(np.searchsorted(class_ids[order], labels), len(order) - 1)
        pcls = np.where(class_ids[order][at] == labels, order[at], -1)  # label outside the classes: skipped
    # (pred, point) pairs: cheaper than dense products at 50k points; flatnonzero is ~4x faster than nonzero
    rows, cols = np.divmod(np.flatnonzero(masks), max(n, 1))
    psize = np.bincount(rows, minlength=len(masks))
    sel = np.flatnonzero((pcls >= 0) & (psize >= spec.min_region_size))
    remap = np.full(len(masks), len(sel), np.int64)  # dropped predictions count into a last row, cut below
    remap[sel] = np.arange(len(sel))
    # One count per (prediction, GT + 1): column 0 holds the points on void, the rest the intersections.
    counts = np.bincount(remap[rows] * (g + 1) + code[cols], minlength=(len(sel) + 1) * (g + 1))
    counts = counts.reshape(len(sel) + 1, g + 1)[:-1]
    conf = np.asarray(scores, np.float64)[sel]
    return _SceneMatches(gt_cls, sizes[keep], pcls[sel], psize[sel], conf, counts[:, 0], counts[:, 1:])


@dataclass
class _SceneCurves:
    """One scene's entries of every (class, threshold) precision/recall curve, and its missed GT."""

    threshold: np.ndarray  # (E,) index into OVERLAPS
    cls: np.ndarray  # (E,) class index
    true: np.ndarray  # (E,) bool: a matched GT (its score) or a false positive
    score: np.ndarray  # (E,) float64
    hard_fn: np.ndarray  # (classes, thresholds) big GT instances matched by nothing
    has_gt: np.ndarray  # (classes,) bool: a big GT instance of the class
    has_pred: np.ndarray  # (classes,) bool: a prediction of the class (after filtering)


def _scene_curves(s: _SceneMatches, num_classes: int, min_size: int) -> _SceneCurves:
    """Returns the curve entries of one scene at every threshold, all classes at once (they never interact:
    a prediction only matches GT of its own class)."""
    same = s.pred_class[:, None] == s.gt_class[None, :]
    inter = np.where(same, s.inter, 0)  # (p, g) same-class pairs only
    union = s.gt_size[None, :] + s.pred_size[:, None] - inter
    iou = np.where(inter > 0, inter / np.maximum(union, 1), 0.0)
    big = s.gt_size >= min_size
    # A prediction is a false positive at a threshold when no same-class GT (small ones included) is above it
    # and the share of its points on void or small same-class GT does not exceed it.
    best = iou.max(axis=1) if iou.shape[1] else np.zeros(len(iou))
    ignore = (s.pred_void + inter[:, ~big].sum(axis=1)) / np.maximum(s.pred_size, 1)
    fp_t, fp_p = np.nonzero((best[None, :] <= OVERLAPS[:, None]) & (ignore[None, :] <= OVERLAPS[:, None]))
    # Greedy matching, GT in id order, each taking its candidates (IoU > 0) in submission order.
    big_ids = np.flatnonzero(big)
    # A pair at or below the lowest threshold never matches: only the others enter the Python loop.
    cand_g, cand_p = np.nonzero(iou[:, big_ids].T > OVERLAPS.min())  # sorted by GT, then prediction
    cand_iou, cand_conf = iou[cand_p, big_ids[cand_g]].tolist(), s.pred_conf[cand_p].tolist()
    bounds = np.searchsorted(cand_g, np.arange(len(big_ids) + 1)).tolist()
    gt_cls = s.gt_class[big_ids].tolist()
    cand_p_list = cand_p.tolist()
    rows_t: list[int] = []  # one entry a matched GT or duplicate: threshold, class, is_tp, score
    rows_c: list[int] = []
    rows_true: list[bool] = []
    rows_score: list[float] = []
    missed: list[int] = []  # class * thresholds + threshold of every GT matched by nothing
    t_n = len(OVERLAPS)
    for ti, th in enumerate(OVERLAPS.tolist()):
        visited: set[int] = set()
        for gi, c in enumerate(gt_cls):
            matched, score = False, -math.inf
            for k in range(bounds[gi], bounds[gi + 1]):
                p, conf = cand_p_list[k], cand_conf[k]
                if p in visited or not cand_iou[k] > th:
                    continue
                if matched:  # a duplicate: the lower score becomes a false positive, the GT keeps the higher
                    rows_t.append(ti)
                    rows_c.append(c)
                    rows_true.append(False)
                    rows_score.append(min(score, conf))
                    score = max(score, conf)
                else:
                    matched, score = True, conf
                    visited.add(p)
            if matched:
                rows_t.append(ti)
                rows_c.append(c)
                rows_true.append(True)
                rows_score.append(score)
            else:
                missed.append(c * t_n + ti)
    hard_fn = np.bincount(np.array(missed, np.int64), minlength=num_classes * t_n)
    return _SceneCurves(
        threshold=np.concatenate([fp_t, np.array(rows_t, np.int64)]),
        cls=np.concatenate([s.pred_class[fp_p], np.array(rows_c, np.int64)]),
        true=np.concatenate([np.zeros(len(fp_t), bool), np.array(rows_true, bool)]),
        score=np.concatenate([s.pred_conf[fp_p], np.array(rows_score, np.float64)]),
        hard_fn=hard_fn.reshape(num_classes, t_n),
        has_gt=np.bincount(s.gt_class[big], minlength=num_classes) > 0,
        has_pred=np.bincount(s.pred_class, minlength=num_classes) > 0,
    )


def _ap_from_curve(y_true: np.ndarray, y_score: np.ndarray, hard_fn: int) -> float:
    """Returns the benchmark's AP of one curve; depends on the entries as a multiset, not on their order."""
    order = np.argsort(y_score, kind="quicksort")
    y_score_sorted = y_score[order]
    cumsum = np.cumsum(y_true[order])
    _, unique_idx = np.unique(y_score_sorted, return_index=True)
    num_examples = len(y_score_sorted)
    num_true = cumsum[-1] if len(cumsum) else 0
    cumsum = np.append(cumsum, 0)  # index -1 reads 0: the first unique threshold
    prev = cumsum[unique_idx - 1]
    tp = num_true - prev
    fp = num_examples - unique_idx - tp
    # Recall is tp / (num_true + hard_fn) at every point, one denominator: integrating the benchmark's step
    # widths 0.5 * (r[i-1] - r[i+1]) on the integer tp counts and dividing once gives the script's value
    # without its rounding (a perfect prediction scores exactly 1.0, not 0.9999999999999998).
    precision = np.append(tp / (tp + fp), 1.0)  # the artificial end point: precision 1 at recall 0
    tp_curve = np.append(tp, 0)
    widths = np.convolve(np.concatenate([[tp_curve[0]], tp_curve, [0]]), [-1, 0, 1], "valid")
    return float(0.5 * np.dot(precision, widths) / (num_true + hard_fn))


class APAccumulator:
    """ScanNet-style AP over scenes given one at a time, keeping only each scene's curve entries.

        acc = APAccumulator(scannet_spec())
        for name, semantic, instance, preds in scenes:   # e.g. read from disk one scene at a time
            acc.add(name, semantic, instance, preds)
        result = acc.result()

    Memory: per scene, a few numbers per mask and GT instance and threshold; the points and masks of a
    scene can be dropped as soon as `add` returns.
    """

    def __init__(self, spec: EvalSpec) -> None:
        self.spec = spec
        self._curves: list[_SceneCurves] = []
        self._names: set[str] = set()

    @property
    def names(self) -> frozenset[str]:
        """Returns the names of the scenes added so far."""
        return frozenset(self._names)

    def add(self, name: str, semantic: np.ndarray, instance: np.ndarray, preds: Predictions | None) -> None:
        """Matches one scene: semantic, instance (N,) int ids (-1 = none); preds None = predicts nothing.

        DataError when the scene was added before or preds cover another number of points.
        """
        if preds is None:
            preds = Predictions.empty(len(np.asarray(semantic)))
        self.add_masks(name, semantic, instance, preds.masks, preds.labels, preds.scores)

    def add_masks(
        self,
        name: str,
        semantic: np.ndarray,
        instance: np.ndarray,
        masks: np.ndarray,
        labels: np.ndarray,
        scores: np.ndarray,
    ) -> None:
        """`add` from arrays: masks (K, N) bool, labels (K,) int class ids, scores (K,) finite confidences
        (float64 kept as given, e.g. read from a submission: the benchmark compares them at that precision)."""
        name, semantic, instance = _gt_arrays((name, semantic, instance))
        if name in self._names:
            raise DataError(f"scene {name} is given twice in the ground truth; give each scene once")
        masks = np.asarray(masks, dtype=bool)
        labels, scores = np.asarray(labels, np.int64).reshape(-1), np.asarray(scores, np.float64).reshape(-1)
        if masks.ndim != 2 or not len(masks) == len(labels) == len(scores):
            raise DataError(f"scene {name}: masks {masks.shape}, {len(labels)} labels, {len(scores)} scores")
        self._names.add(name)
        matches = _match_scene(name, semantic, instance, masks, labels, scores, self.spec)
        self._curves.append(_scene_curves(matches, len(self.spec.labels), self.spec.min_region_size))

    def result(self) -> EvalResult:
        """Returns the EvalResult over the scenes added so far."""
        spec = self.spec
        labels = spec.labels
        t_n = len(OVERLAPS)
        num = len(labels)
        table = np.full((num, t_n), math.nan)
        if self._curves:
            has_gt = np.any([c.has_gt for c in self._curves], axis=0)
            has_pred = np.any([c.has_pred for c in self._curves], axis=0)
            hard_fn = np.sum([c.hard_fn for c in self._curves], axis=0)
            key = np.concatenate([c.cls * t_n + c.threshold for c in self._curves])
            true = np.concatenate([c.true for c in self._curves]).astype(np.float64)
            score = np.concatenate([c.score for c in self._curves])
            order = np.argsort(key, kind="stable")
            bounds = np.searchsorted(key[order], np.arange(num * t_n + 1))
            for ci in range(num):
                if not has_gt[ci]:
                    continue  # NaN: excluded from the means
                for ti in range(t_n):
                    if not has_pred[ci]:
                        table[ci, ti] = 0.0
                        continue
                    part = order[bounds[ci * t_n + ti] : bounds[ci * t_n + ti + 1]]
                    table[ci, ti] = _ap_from_curve(true[part], score[part], int(hard_fn[ci, ti]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN means are NaN, as intended
            ap = float(np.nanmean(table[:, _OALL])) if table.size else math.nan
            ap50 = float(np.nanmean(table[:, _O50]))
            ap25 = float(np.nanmean(table[:, _O25]))
        per_class = {
            name: {"ap": float(np.mean(table[i, _OALL])), "ap50": float(table[i, _O50]), "ap25": float(table[i, _O25])}
            for i, name in enumerate(labels)
        }
        return EvalResult(ap, ap50, ap25, per_class, table, len(self._curves), spec)


def evaluate(gt: Iterable[Any], predictions: Mapping[str, Predictions], spec: EvalSpec) -> EvalResult:
    """Returns ScanNet-style AP of `predictions` (scene name → Predictions) against `gt`.

    gt: Scenes (name, semantic, instance) or (name, semantic (N,), instance (N,)) tuples; instance -1 = none.
    A scene without an entry in `predictions` counts as predicting nothing. Only `predictions.get(name)`
    is called for the scenes of gt, so both may be lazy (one scene in memory at a time; see APAccumulator).
    """
    acc = APAccumulator(spec)
    for item in gt:
        name, semantic, instance = _gt_arrays(item)
        acc.add(name, semantic, instance, predictions.get(name))
    unknown = sorted(set(predictions) - acc.names)
    if unknown:
        raise DataError(
            f"predictions for {len(unknown)} scene(s) without ground truth (e.g. {unknown[0]}); "
            "evaluate against the split the predictions were made on"
        )
    return acc.result()
