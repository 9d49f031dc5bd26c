"""The tuning objective: class-agnostic AP of pseudo masks against labelled scenes.

    spec = evaluation_spec_for("scannet-npy")
    result = score_pseudo_masks(scenes, {scene.name: labels}, spec)   # result.ap, .ap50, .ap25 in 0..1

Each segment of a scene's labels becomes one predicted mask, ranked by `mask_scores` (the config's mask_score:
size x extent by default).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import DataError
from freepoint_bench.evaluation import EvalResult, EvalSpec, dataset_spec, evaluate, predictions_from_labels
from freepoint_bench.freepoint.scoring import mask_scores

METRIC_NAMES: tuple[str, ...] = ("ap", "ap50", "ap25")  # attributes of EvalResult a study can maximise

def evaluation_spec_for(dataset: str, class_agnostic: bool = True) -> EvalSpec:
    """Returns the evaluation spec for scenes of `dataset`, class-agnostic by default (evaluation.dataset_spec:
    ScanNet's 18 instance classes; S3DIS / synthetic: 13 classes, structure and clutter void when agnostic)."""
    return dataset_spec(dataset, class_agnostic)


def score_pseudo_masks(
    scenes: Sequence[Scene],
    labels_per_scene: Mapping[str, np.ndarray],
    spec: EvalSpec,
    mask_score: str = "size-extent",
) -> EvalResult:
    """Returns the EvalResult (ap, ap50, ap25 in 0..1; NaN without GT) of per-scene segment labels.

    Evaluated class-agnostically: a spec with class_agnostic=False is used as its class-agnostic copy,
    since pseudo masks carry no class.
    labels_per_scene: scene name → (N,) int64 segment ids, -1 = background; each segment is one mask
    with confidence `mask_scores(scene.xyz, labels, mask_score)` (size x extent, or size). DataError when
    a scene has no labels or labels of the wrong length.
    """
    predictions = {}
    for scene in scenes:
        if scene.name not in labels_per_scene:
            raise DataError(f"{scene.name}: no pseudo labels given for this scene; label it first")
        labels = np.asarray(labels_per_scene[scene.name])
        if labels.shape != (scene.num_points,):
            raise DataError(
                f"{scene.name}: pseudo labels have shape {labels.shape}, expected ({scene.num_points},); "
                "they belong to another version of the scene, relabel it"
            )
        labels = labels.astype(np.int64, copy=False)
        predictions[scene.name] = predictions_from_labels(labels, mask_scores(scene.xyz, labels, mask_score))
    if not spec.class_agnostic:
        spec = dataclasses.replace(spec, class_agnostic=True)
    return evaluate(list(scenes), predictions, spec)
