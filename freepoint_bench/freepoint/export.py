"""Pseudo masks as ScanNet benchmark-format predictions (one prediction per segment)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from freepoint_bench.data.classes import OBJECT_LABEL_ID
from freepoint_bench.evaluation import predictions_from_labels, write_predictions
from freepoint_bench.freepoint.pipeline import load_pseudo_labels
from freepoint_bench.freepoint.scoring import mask_scores


def pseudo_predictions(xyz: np.ndarray, labels: np.ndarray, mask_score: str = "size-extent"):
    """Returns Predictions with one "object" mask per segment, scored by `mask_scores` (size × extent or size)."""
    return predictions_from_labels(labels, scores=mask_scores(xyz, labels, mask_score), label_id=OBJECT_LABEL_ID)


def export_dirs(export_dir: str | os.PathLike, sigmas: Sequence[float]) -> dict[float, Path]:
    """Returns the submission folder per σ: export_dir itself for one σ, export_dir/sigma-<σ> for several."""
    root = Path(export_dir)
    if len(sigmas) == 1:
        return {float(sigmas[0]): root}
    return {float(s): root / f"sigma-{float(s):g}" for s in sigmas}


def export_pseudo_labels(
    scenes: Any,
    names: Sequence[str],
    labels_dir: str | os.PathLike,
    sigmas: Sequence[float],
    export_dir: str | os.PathLike,
    mask_score: str = "size-extent",
) -> list[Path]:
    """Returns the submission folders written from cached pseudo labels (scenes: anything with .load(name));
    mask_score: the confidence of each mask (a PseudoLabelConfig.mask_score)."""
    dirs = export_dirs(export_dir, sigmas)
    for name in names:
        xyz = scenes.load(name).xyz
        for sigma, folder in dirs.items():
            labels = load_pseudo_labels(labels_dir, name, sigma)
            write_predictions(folder, name, pseudo_predictions(xyz, labels, mask_score))
    return list(dirs.values())
