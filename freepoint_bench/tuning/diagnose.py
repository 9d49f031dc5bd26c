"""Why pseudo masks score as they do: objects recovered, coverage, over- and under-segmentation.

    d = diagnose(scenes, {scene.name: labels}, scannet_spec(class_agnostic=True))
    d.recovered50, d.objects, d.coverage, d.over_segmented, d.under_segmented

Objects are the ground-truth instances the AP counts: those whose majority semantic id is an evaluated
class of the spec, with at least `spec.min_region_size` points (the evaluator's rule). Segments are the
ids >= 0 of a scene's labels; only those with at least `min_region_size` points are matched, as in the AP.
IoU is taken over all points of the scene (a segment's points on walls or unannotated points count
against it), and an object is recovered at t when some segment has IoU > t (strict, as the benchmark).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import DataError
from freepoint_bench.evaluation import EvalSpec
from freepoint_bench.evaluation.instance_ap import gt_instances
from freepoint_bench.freepoint.pipeline import load_pseudo_labels
from freepoint_bench.tuning.objective import evaluation_spec_for

PART_SHARE = 0.2  # ours: a segment "holds a part" of an object when it has >= 20 % of the object's points


@dataclass(frozen=True)
class Diagnosis:
    """Counts over one or more scenes (summed).

    objects: GT objects counted; recovered25 / recovered50: objects with a segment of IoU > 0.25 / 0.5;
    segments: segment ids in the labels (all sizes); object_points / covered_points: points of the objects,
    and those of them in any segment (not background, not dropped); over_segmented: objects in which two
    or more segments each hold >= part_share of the object's points; under_segmented: segments holding
    >= part_share of each of two or more objects; merged_objects: objects held by such a segment; scenes:
    how many scenes were summed.
    """

    objects: int = 0
    recovered25: int = 0
    recovered50: int = 0
    segments: int = 0
    object_points: int = 0
    covered_points: int = 0
    over_segmented: int = 0
    under_segmented: int = 0
    merged_objects: int = 0
    scenes: int = 0

    def __add__(self, other: Diagnosis) -> Diagnosis:
        return Diagnosis(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @property
    def coverage(self) -> float:
        """Returns the share of object points in some segment (NaN without objects)."""
        return self.covered_points / self.object_points if self.object_points else float("nan")

    @property
    def segments_per_scene(self) -> float:
        """Returns the mean number of segments per scene (NaN without scenes)."""
        return self.segments / self.scenes if self.scenes else float("nan")

    def to_dict(self) -> dict[str, float]:
        """Returns the counts plus coverage and segments_per_scene, JSON-ready."""
        out: dict[str, float] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["coverage"] = self.coverage
        out["segments_per_scene"] = self.segments_per_scene
        return out


def diagnose_labels(
    semantic: np.ndarray,
    instance: np.ndarray,
    labels: np.ndarray,
    class_ids: Sequence[int],
    *,
    min_region_size: int = 100,
    part_share: float = PART_SHARE,
) -> Diagnosis:
    """Returns the Diagnosis of one scene's segment labels against its ground truth.

    semantic, instance: (N,) int GT ids (-1 = none); labels: (N,) int segment ids (-1 = background);
    class_ids: the evaluated semantic ids (objects are instances whose majority id is one of them).
    """
    semantic = np.asarray(semantic, dtype=np.int64)
    instance = np.asarray(instance, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if not semantic.shape == instance.shape == labels.shape or labels.ndim != 1:
        raise DataError(
            f"diagnose: semantic {semantic.shape}, instance {instance.shape} and labels {labels.shape} must "
            "all be (N,) for one scene"
        )
    inst_index, inst_cls, sizes = gt_instances(semantic, instance)
    is_object = np.isin(inst_cls, list(class_ids)) & (sizes >= min_region_size)
    object_of = np.full(len(sizes), -1, np.int64)
    object_of[is_object] = np.arange(int(is_object.sum()))
    obj = np.where(inst_index >= 0, object_of[np.maximum(inst_index, 0)], -1)  # (N,) object index or -1
    g = int(is_object.sum())
    seg_ids, seg = np.unique(labels[labels >= 0], return_inverse=True)
    p = len(seg_ids)
    point_seg = np.full(len(labels), -1, np.int64)
    point_seg[labels >= 0] = seg
    obj_size = np.bincount(obj[obj >= 0], minlength=g)
    seg_size = np.bincount(seg, minlength=p)
    both = (obj >= 0) & (point_seg >= 0)
    inter = np.bincount(point_seg[both] * g + obj[both], minlength=p * g).reshape(p, g)
    if p and g:
        union = seg_size[:, None] + obj_size[None, :] - inter
        iou = np.where(seg_size[:, None] >= min_region_size, inter / np.maximum(union, 1), 0.0)
        best = iou.max(axis=0)
        holds = inter >= part_share * obj_size[None, :]  # (P, G): segment holds a part of the object
        holds &= inter > 0
        parts_per_object = holds.sum(axis=0)
        objects_per_segment = holds.sum(axis=1)
        merging = objects_per_segment >= 2
        merged = holds[merging].any(axis=0)
    else:
        best = np.zeros(g)
        parts_per_object = np.zeros(g, np.int64)
        merging = np.zeros(p, bool)
        merged = np.zeros(g, bool)
    return Diagnosis(
        objects=g,
        recovered25=int((best > 0.25).sum()),
        recovered50=int((best > 0.5).sum()),
        segments=p,
        object_points=int(obj_size.sum()),
        covered_points=int(both.sum()),
        over_segmented=int((parts_per_object >= 2).sum()),
        under_segmented=int(merging.sum()),
        merged_objects=int(merged.sum()),
        scenes=1,
    )


def diagnose(
    scenes: Sequence[Scene],
    labels_per_scene: Mapping[str, np.ndarray],
    spec: EvalSpec,
    part_share: float = PART_SHARE,
) -> Diagnosis:
    """Returns the Diagnosis summed over `scenes` (labelled) of their labels in labels_per_scene.

    The spec gives the evaluated classes and min_region_size (class_agnostic is implied: every evaluated
    class is an object). DataError when a scene has no ground truth or no labels.
    """
    total = Diagnosis()
    for scene in scenes:
        if scene.semantic is None or scene.instance is None:
            raise DataError(f"scene {scene.name}: no ground truth; --diagnose needs a labelled dataset")
        if scene.name not in labels_per_scene:
            raise DataError(f"{scene.name}: no pseudo labels given for this scene; label it first")
        total = total + diagnose_labels(
            scene.semantic,
            scene.instance,
            labels_per_scene[scene.name],
            spec.class_ids,
            min_region_size=spec.min_region_size,
            part_share=part_share,
        )
    return total


def diagnose_run(
    scenes: Any,
    names: Sequence[str],
    labels_dir: str | os.PathLike,
    sigmas: Sequence[float],
    dataset: str,
    part_share: float = PART_SHARE,
) -> dict[float, Diagnosis]:
    """Returns σ → Diagnosis of the cached pseudo labels in labels_dir of scenes `names`.

    scenes: anything with .load(name) -> Scene (labelled); dataset picks the evaluated classes and
    min_region_size through `evaluation_spec_for` (class-agnostic).
    """
    spec = evaluation_spec_for(dataset, class_agnostic=True)
    loaded = [scenes.load(n) for n in names]
    return {
        float(sigma): diagnose(
            loaded, {s.name: load_pseudo_labels(labels_dir, s.name, sigma) for s in loaded}, spec, part_share
        )
        for sigma in sigmas
    }
