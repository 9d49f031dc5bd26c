"""FreePoint pseudo masks against the paper's classical baselines, scored on the same scenes."""

from __future__ import annotations

import math
import os
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from freepoint_bench.errors import DataError
from freepoint_bench.freepoint.classical import classical_segments, foreground_mask
from freepoint_bench.freepoint.config import PseudoLabelConfig
from freepoint_bench.freepoint.pipeline import label_path
from freepoint_bench.tuning.objective import evaluation_spec_for, score_pseudo_masks


def _load_labels_and_foreground(labels_dir: Path, name: str, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    path = label_path(labels_dir, name, sigma)
    try:
        with np.load(path, allow_pickle=False) as data:
            return np.asarray(data["labels"], np.int64), np.asarray(data["foreground"], bool)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        raise DataError(f"{path}: missing or unreadable pseudo labels; rerun `bench.py pseudo-labels`") from None


def compare_methods(
    scenes: Any,
    names: Sequence[str],
    labels_dir: str | os.PathLike,
    sigmas: Sequence[float],
    methods: Sequence[str],
    config: PseudoLabelConfig,
    dataset: str,
    freepoint_seconds: Mapping[str, float] | None = None,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """Returns one row per method {method, ap, ap50, ap25, segments_per_scene, seconds_per_scene}.

    scenes: anything with .load(name) -> Scene (labelled). FreePoint rows (one per σ) read the cached
    pseudo labels in labels_dir; the classical methods cluster the same foreground points (plane removal
    shared, so their seconds exclude it). freepoint_seconds: per-scene pipeline time, when known.
    progress(done, total, name) is called per scene.
    """
    spec = evaluation_spec_for(dataset, class_agnostic=True)
    labels_dir = Path(labels_dir)
    loaded = [scenes.load(n) for n in names]
    if any(not s.has_labels for s in loaded):
        bad = next(s.name for s in loaded if not s.has_labels)
        raise DataError(f"scene {bad} has no ground truth; --compare needs a labelled dataset")
    per_method: dict[str, dict[str, np.ndarray]] = {}
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    for i, scene in enumerate(loaded):
        fg = None
        for sigma in sigmas:
            labels, fg = _load_labels_and_foreground(labels_dir, scene.name, sigma)
            per_method.setdefault(f"FreePoint σ={sigma:g}", {})[scene.name] = labels
        if fg is None:
            fg = foreground_mask(scene, config)
        for method in methods:
            t0 = time.perf_counter()
            per_method.setdefault(method, {})[scene.name] = classical_segments(scene, method, config, foreground=fg)
            seconds[method].append(time.perf_counter() - t0)
        if progress is not None:
            progress(i + 1, len(loaded), scene.name)
    fp_secs = [freepoint_seconds[n] for n in names if freepoint_seconds and n in freepoint_seconds]
    rows = []
    for method, labels in per_method.items():
        result = score_pseudo_masks(loaded, labels, spec, config.mask_score)
        segs = [int(np.unique(lab[lab >= 0]).size) for lab in labels.values()]
        secs = fp_secs if method.startswith("FreePoint") else seconds.get(method, [])
        rows.append(
            {
                "method": method,
                "ap": result.ap,
                "ap50": result.ap50,
                "ap25": result.ap25,
                "segments_per_scene": float(np.mean(segs)) if segs else 0.0,
                "seconds_per_scene": float(np.mean(secs)) if secs else math.nan,
            }
        )
    return rows
