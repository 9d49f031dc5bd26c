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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from freepoint_bench.data.classes import (
    S3DIS_CLASS_ID,
    S3DIS_CLASSES,
    S3DIS_STRUCTURE,
    SCANNET_INSTANCE_IDS,
    SCANNET_INSTANCE_NAMES,
)
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


def scannet_spec(class_agnostic: bool = False, min_region_size: int = 100) -> EvalSpec:
    """Returns the ScanNet v2 benchmark spec: the 18 NYU40 instance classes, the rest void."""
    return EvalSpec(SCANNET_INSTANCE_IDS, SCANNET_INSTANCE_NAMES, class_agnostic, min_region_size, "scannet")


def s3dis_spec(
    class_agnostic: bool = False,
    clutter_void: bool = False,
    structure_void: bool = False,
    min_region_size: int = 100,
) -> EvalSpec:
    """Returns the S3DIS spec: the 13 classes (ids 0..12); clutter and/or structure
    (ceiling, floor, wall, beam, column) optionally void, e.g. to score class-agnostic object masks."""
    names = [
        c
        for c in S3DIS_CLASSES
        if not (clutter_void and c == "clutter") and not (structure_void and c in S3DIS_STRUCTURE)
    ]
    return EvalSpec(tuple(S3DIS_CLASS_ID[c] for c in names), tuple(names), class_agnostic, min_region_size, "s3dis")


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
    pred_conf: np.ndarray  # (P,)
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
    return str(name), semantic.astype(np.int64), instance.astype(np.int64)


def _gt_instances(semantic: np.ndarray, instance: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (point → instance index or -1, class id of each instance, size of each instance).

    Instances are numbered in increasing id order; an instance's class is the majority semantic id of its
    annotated points (ties → the smallest id; -1 when none of its points is annotated).
    """
    has_inst = instance >= 0
    ids, inv = np.unique(instance[has_inst], return_inverse=True)
    index = np.full(len(instance), -1, np.int64)
    index[has_inst] = inv
    sizes = np.bincount(inv, minlength=len(ids))
    cls = np.full(len(ids), -1, np.int64)
    annotated = semantic[has_inst] >= 0
    if annotated.any():
        sem_vals, sem_inv = np.unique(semantic[has_inst][annotated], return_inverse=True)
        counts = sp.coo_matrix(
            (np.ones(len(sem_inv)), (inv[annotated], sem_inv)), shape=(len(ids), len(sem_vals))
        ).toarray()
        cls = np.where(counts.max(axis=1) > 0, sem_vals[counts.argmax(axis=1)], -1)
    return index, cls, sizes


def _match_scene(name: str, semantic: np.ndarray, instance: np.ndarray, preds: Predictions, spec: EvalSpec):
    n = len(semantic)
    if preds.num_points != n and (len(preds) or preds.num_points):
        raise DataError(
            f"scene {name}: predictions cover {preds.num_points} points but the scene has {n}; "
            "masks must follow the scene's point order"
        )
    class_of_id = {cid: i for i, cid in enumerate(spec.class_ids)}
    inst_index, inst_cls, sizes = _gt_instances(semantic, instance)
    # GT instances of evaluated classes (small ones included: they matter for the ignore rule). As in the
    # benchmark's label*1000+id encoding, every point takes its instance's class: void = in no such instance
    # (unannotated, no instance, or an instance of a class that is not evaluated).
    keep = np.isin(inst_cls, spec.class_ids)
    compact = np.where(keep, np.cumsum(keep) - 1, -1)
    gt_index = np.where(inst_index >= 0, compact[np.maximum(inst_index, 0)], -1)
    void = gt_index < 0
    if spec.class_agnostic:
        gt_cls = np.zeros(int(keep.sum()), np.int64)
    else:
        gt_cls = np.array([class_of_id[int(c)] for c in inst_cls[keep]], np.int64)
    gt_size = sizes[keep]
    # Predictions: label outside the evaluated classes skipped (semantic mode), then small ones.
    if spec.class_agnostic:
        pcls = np.zeros(len(preds), np.int64)
        known = np.ones(len(preds), bool)
    else:
        pcls = np.array([class_of_id.get(int(lab), -1) for lab in preds.labels], np.int64)
        known = pcls >= 0
    # (pred, point) pairs: cheaper than dense products at 50k points; flatnonzero is ~4x faster than nonzero
    rows, cols = np.divmod(np.flatnonzero(preds.masks), max(n, 1))
    psize = np.bincount(rows, minlength=len(preds))
    sel = np.flatnonzero(known & (psize >= spec.min_region_size))
    remap = np.full(len(preds), -1, np.int64)
    remap[sel] = np.arange(len(sel))
    r = remap[rows]
    keep_pair = r >= 0
    r, c = r[keep_pair], cols[keep_pair]
    g = len(gt_size)
    gi = gt_index[c]
    on_gt = gi >= 0
    inter = np.bincount(r[on_gt] * g + gi[on_gt], minlength=len(sel) * g).reshape(len(sel), g)
    pvoid = np.bincount(r[void[c]], minlength=len(sel))
    return _SceneMatches(gt_cls, gt_size, pcls[sel], psize[sel], preds.scores[sel].astype(np.float64), pvoid, inter)


def _ap_from_curve(y_true: np.ndarray, y_score: np.ndarray, hard_fn: int) -> float:
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


@dataclass
class _ClassScene:
    """One scene's view of one class, computed once for all thresholds."""

    candidates: list[list[tuple[int, float, float]]]  # per big GT (id order): (pred, iou, conf) in pred order
    best_iou: np.ndarray  # (p,) best IoU of each prediction with any same-class GT (small ones included)
    ignore_share: np.ndarray  # (p,) share of the prediction on void or small same-class GT
    conf: np.ndarray  # (p,)


def _class_scene(s: _SceneMatches, cls: int, min_size: int) -> tuple[_ClassScene, bool, bool]:
    gsel = np.flatnonzero(s.gt_class == cls)
    psel = np.flatnonzero(s.pred_class == cls)
    big = s.gt_size[gsel] >= min_size
    inter = s.inter[np.ix_(psel, gsel)]  # (p, g) same-class pairs
    union = s.gt_size[gsel][None, :] + s.pred_size[psel][:, None] - inter
    iou = np.where(inter > 0, inter / np.maximum(union, 1), 0.0)
    conf = s.pred_conf[psel]
    candidates = []
    for col in np.flatnonzero(big):
        ps = np.flatnonzero(inter[:, col] > 0)  # submission order
        candidates.append(list(zip(ps.tolist(), iou[ps, col].tolist(), conf[ps].tolist(), strict=True)))
    best = iou.max(axis=1) if iou.shape[1] else np.zeros(len(psel))
    ignore = (s.pred_void[psel] + inter[:, ~big].sum(axis=1)) / np.maximum(s.pred_size[psel], 1)
    return _ClassScene(candidates, best, ignore, conf), bool(big.any()), len(psel) > 0


def _class_ap(scenes: list[_SceneMatches], cls: int, min_size: int) -> np.ndarray:
    """Returns the AP of class `cls` at every threshold of OVERLAPS."""
    views = [_class_scene(s, cls, min_size) for s in scenes]
    has_gt = any(v[1] for v in views)
    has_pred = any(v[2] for v in views)
    if not has_gt:
        return np.full(len(OVERLAPS), math.nan)
    if not has_pred:
        return np.zeros(len(OVERLAPS))
    out = np.zeros(len(OVERLAPS))
    for oi, th in enumerate(OVERLAPS.tolist()):
        y_true: list[float] = []
        y_score: list[float] = []
        hard_fn = 0
        for view, _, _ in views:
            visited: set[int] = set()
            for cands in view.candidates:
                matched, score = False, -math.inf
                for p, iou, conf in cands:
                    if p in visited or not iou > th:
                        continue
                    if matched:  # a duplicate: the lower score becomes a false positive
                        y_true.append(0.0)
                        y_score.append(min(score, conf))
                        score = max(score, conf)
                    else:
                        matched, score = True, conf
                        visited.add(p)
                if matched:
                    y_true.append(1.0)
                    y_score.append(score)
                else:
                    hard_fn += 1
            fp = (view.best_iou <= th) & (view.ignore_share <= th)
            y_true.extend([0.0] * int(fp.sum()))
            y_score.extend(view.conf[fp].tolist())
        out[oi] = _ap_from_curve(np.array(y_true), np.array(y_score), hard_fn)
    return out


def evaluate(
    gt: Sequence[Any], predictions: Mapping[str, Predictions], spec: EvalSpec
) -> EvalResult:
    """Returns ScanNet-style AP of `predictions` (scene name → Predictions) against `gt`.

    gt: Scenes (name, semantic, instance) or (name, semantic (N,), instance (N,)) tuples; instance -1 = none.
    A scene without an entry in `predictions` counts as predicting nothing.
    """
    scenes = []
    seen: set[str] = set()
    for item in gt:
        name, semantic, instance = _gt_arrays(item)
        if name in seen:
            raise DataError(f"scene {name} is given twice in the ground truth; give each scene once")
        seen.add(name)
        preds = predictions.get(name)
        if preds is None:
            preds = Predictions.empty(len(semantic))
        scenes.append(_match_scene(name, semantic, instance, preds, spec))
    unknown = sorted(set(predictions) - seen)
    if unknown:
        raise DataError(
            f"predictions for {len(unknown)} scene(s) without ground truth (e.g. {unknown[0]}); "
            "evaluate against the split the predictions were made on"
        )
    labels = spec.labels
    table = np.full((len(labels), len(OVERLAPS)), math.nan)
    for ci in range(len(labels)):
        table[ci] = _class_ap(scenes, ci, spec.min_region_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN means are NaN, as intended
        ap = float(np.nanmean(table[:, _OALL])) if table.size else math.nan
        ap50 = float(np.nanmean(table[:, _O50]))
        ap25 = float(np.nanmean(table[:, _O25]))
    per_class = {
        name: {"ap": float(np.mean(table[i, _OALL])), "ap50": float(table[i, _O50]), "ap25": float(table[i, _O25])}
        for i, name in enumerate(labels)
    }
    return EvalResult(ap, ap50, ap25, per_class, table, len(scenes), spec)
