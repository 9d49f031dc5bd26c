"""Cross-validation by room: how well a pseudo-label config, or a tuning procedure, does on unseen rooms.

    folds = room_folds(names)                        # leave one room out (sceneXXXX of sceneXXXX_YY)
    cv = cross_validate(scenes, PseudoLabelConfig(), TuneConfig(trials=20), folds)
    cv.tuned.mean, cv.tuned.sd, cv.fixed.per_fold    # held-out objective of each fold, both candidates
    cv.chosen_config                                 # the candidate with the larger mean held-out objective

Two candidates are scored on every fold's held-out rooms, never seen while choosing anything for that
fold: the *fixed* base config as it is, and the *tuned* procedure (an Optuna study on the fold's training
rooms, its best config then labels the held-out rooms). The held-out objective of each fold is the AP of
its held-out scans alone; the mean over folds and its spread (sd, min, max) say how a candidate does on a
new room, and `pooled` is the AP over every scan, each labelled by its own fold's config. The tuned
candidate is chosen (its study re-run on all rooms gives the config to ship) only when its mean held-out
objective beats the base config's by more than one standard error of the paired per-fold differences:
rooms differ so much that a smaller gain is noise; otherwise the base config is kept.
Scans of one room are always in the same fold (rooms are the unit, as in `data.splits`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from freepoint_bench.atomic import write_text
from freepoint_bench.data.scene import Scene
from freepoint_bench.data.splits import room_of
from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.evaluation import EvalSpec
from freepoint_bench.freepoint.config import PseudoLabelConfig
from freepoint_bench.tuning.graph import GraphCache
from freepoint_bench.tuning.objective import METRIC_NAMES, evaluation_spec_for, score_pseudo_masks
from freepoint_bench.tuning.study import TuneConfig, TuneResult, graph_variants, run_study

logger = logging.getLogger(__name__)

Fold = tuple[list[str], list[str]]  # (training scan names, held-out scan names)


def room_folds(names: Sequence[str], folds: int | None = None) -> list[Fold]:
    """Returns the (train, held-out) scan names of each fold, grouping scans by room.

    folds None: leave one room out (one fold per room); k: the sorted rooms dealt round-robin into k folds.
    Every scan is held out exactly once, and no room has scans on both sides of a fold.
    """
    names = sorted(dict.fromkeys(names))
    rooms = sorted({room_of(n) for n in names})
    if len(rooms) < 2:
        raise DataError(f"cross-validation by room needs scans of at least 2 rooms; got {rooms}")
    k = len(rooms) if folds is None else int(folds)
    if not 2 <= k <= len(rooms):
        raise ConfigError(f"--folds {k}: need 2 <= k <= the number of rooms ({len(rooms)})")
    groups = [set(rooms[i::k]) for i in range(k)]
    return [([n for n in names if room_of(n) not in g], [n for n in names if room_of(n) in g]) for g in groups]


@dataclass(frozen=True)
class CandidateScores:
    """One candidate's held-out objective per fold (NaN where a fold's held-out scans hold no object),
    the held-out metrics ("ap", "ap50", "ap25") per fold, and the pooled metrics over every scan."""

    per_fold: list[float]
    metrics: list[dict[str, float]]
    pooled: dict[str, float]

    @property
    def mean(self) -> float:
        """Returns the mean held-out objective over the folds that have objects."""
        vals = [v for v in self.per_fold if not math.isnan(v)]
        return float(np.mean(vals)) if vals else math.nan

    @property
    def sd(self) -> float:
        """Returns the sample standard deviation of the per-fold objective (0 for one fold)."""
        vals = [v for v in self.per_fold if not math.isnan(v)]
        return float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0

    @property
    def min(self) -> float:
        return float(np.nanmin(self.per_fold)) if self.per_fold else math.nan

    @property
    def max(self) -> float:
        return float(np.nanmax(self.per_fold)) if self.per_fold else math.nan


@dataclass(frozen=True)
class CVResult:
    """folds: the (train, held-out) names; rooms: the held-out rooms of each fold; fixed / tuned: the
    candidates' scores (tuned is None without a search); fold_params: each fold's tuned params; train_values:
    each fold study's best (training) objective; chosen: "fixed" or "tuned" (see the module docstring);
    chosen_config: the config to
    ship; final: the study re-run on every scan (when tuned was chosen); objective: the metric name."""

    folds: list[Fold]
    rooms: list[list[str]]
    fixed: CandidateScores
    tuned: CandidateScores | None
    fold_params: list[dict[str, Any]]
    train_values: list[float]
    chosen: str
    chosen_config: PseudoLabelConfig
    final: TuneResult | None
    objective: str
    seconds_per_scene: float = field(default=math.nan)


def _score(
    scenes: Sequence[Scene], labels: dict[str, np.ndarray], spec: EvalSpec, config: PseudoLabelConfig
) -> dict[str, float]:
    result = score_pseudo_masks(scenes, labels, spec, config.mask_score)
    return {name: float(getattr(result, name)) for name in METRIC_NAMES}


def cross_validate(
    scenes: Sequence[Scene],
    base_config: PseudoLabelConfig,
    tune_config: TuneConfig | None,
    folds: Sequence[Fold],
    *,
    evaluation_spec: EvalSpec | None = None,
    features_fn: Callable[[Scene], np.ndarray] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    refit: bool = True,
) -> CVResult:
    """Returns the CVResult of the base config and (with tune_config) of tuning it, fold by fold.

    scenes: labelled scans (names as in folds); tune_config: the search run on each fold's training scans
    (None: only the fixed config is scored); its storage is ignored (fold studies live in memory).
    refit: re-run the study on all scans when the tuned candidate wins (its config is chosen_config).
    progress receives {"fold", "folds", "held_out", "fixed", "tuned"} after each fold.
    """
    by_name = {s.name: s for s in scenes}
    missing = sorted({n for tr, te in folds for n in (*tr, *te)} - set(by_name))
    if missing:
        raise DataError(f"cross_validate: folds name scans that were not given: {missing[:5]}")
    spec = evaluation_spec or evaluation_spec_for(str(scenes[0].meta.get("dataset", "scannet")))
    objective = tune_config.objective if tune_config is not None else "ap50"
    variants = 1 if tune_config is None else graph_variants(tune_config)
    grid = tune_config is not None and tune_config.sampler == "grid"
    cache = GraphCache(
        max_entries=min(len(scenes) * variants, 256),
        features_fn=features_fn,
        max_labels=len(scenes) * (len(tune_config.grid().get("sigma_low", [1])) * variants if grid else 1) + 1,
    )
    t0 = time.perf_counter()
    fixed_labels: dict[str, np.ndarray] = {}
    tuned_labels: dict[str, np.ndarray] = {}
    fixed_vals, tuned_vals, fixed_metrics, tuned_metrics = [], [], [], []
    fold_params: list[dict[str, Any]] = []
    train_values: list[float] = []
    rooms = [sorted({room_of(n) for n in held}) for _, held in folds]
    for i, (train, held) in enumerate(folds):
        held_scenes = [by_name[n] for n in held]
        labels = {s.name: cache.labels(s, base_config) for s in held_scenes}
        fixed_labels.update(labels)
        metrics = _score(held_scenes, labels, spec, base_config)
        fixed_metrics.append(metrics)
        fixed_vals.append(metrics[objective])
        tuned_value = None
        if tune_config is not None:
            fold_tune = tune_config.model_copy(update={"storage": None, "study_name": f"cv-fold-{i}"})
            result = run_study(
                [by_name[n] for n in train], base_config, fold_tune, features_fn,
                evaluation_spec=spec, cache=cache,
            )
            fold_params.append(result.best_params)
            train_values.append(result.best_value)
            config = result.best_config
            labels = {s.name: cache.labels(s, config) for s in held_scenes}
            tuned_labels.update(labels)
            metrics = _score(held_scenes, labels, spec, config)
            tuned_metrics.append(metrics)
            tuned_vals.append(metrics[objective])
            tuned_value = metrics[objective]
        logger.info("fold %d (%s): fixed %.4f tuned %s", i, rooms[i], fixed_vals[-1], tuned_value)
        if progress is not None:
            progress({"fold": i + 1, "folds": len(folds), "held_out": rooms[i], "fixed": fixed_vals[-1],
                      "tuned": tuned_value})
    ordered = [by_name[n] for n in sorted(fixed_labels)]
    fixed = CandidateScores(fixed_vals, fixed_metrics, _score(ordered, fixed_labels, spec, base_config))
    tuned = None
    if tune_config is not None:
        # Pooled over folds: each scan scored by its own fold's config (mask_score: the base's, not tuned).
        tuned = CandidateScores(tuned_vals, tuned_metrics, _score(ordered, tuned_labels, spec, base_config))
    seconds = (time.perf_counter() - t0) / max(len(scenes), 1)
    chosen, config, final = "fixed", base_config, None
    if tuned is not None and paired_gain(fixed, tuned)[0] > paired_gain(fixed, tuned)[1]:
        chosen = "tuned"
        if refit:
            final_tune = tune_config.model_copy(update={"storage": None, "study_name": "cv-final"})
            final = run_study(list(scenes), base_config, final_tune, features_fn, evaluation_spec=spec, cache=cache)
            config = final.best_config
    return CVResult(
        folds=[(list(tr), list(te)) for tr, te in folds],
        rooms=rooms,
        fixed=fixed,
        tuned=tuned,
        fold_params=fold_params,
        train_values=train_values,
        chosen=chosen,
        chosen_config=config,
        final=final,
        objective=objective,
        seconds_per_scene=seconds,
    )


def paired_gain(fixed: CandidateScores, tuned: CandidateScores) -> tuple[float, float]:
    """Returns (mean, standard error) of tuned - fixed over the folds where both are defined."""
    diffs = [t - f for f, t in zip(fixed.per_fold, tuned.per_fold, strict=True) if not (math.isnan(f) or math.isnan(t))]
    if not diffs:
        return math.nan, math.nan
    se = float(np.std(diffs, ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else math.inf
    return float(np.mean(diffs)), se


def write_cv_config(cv: CVResult, path: str | os.PathLike) -> Path:
    """Writes cv.chosen_config as [pseudo_labels] TOML with the per-fold evidence as comments; returns path."""
    path = Path(path)
    cv.chosen_config.to_toml(path)

    def line(name: str, c: CandidateScores) -> str:
        folds = ", ".join("-" if math.isnan(v) else f"{100 * v:.1f}" for v in c.per_fold)
        return f"# {name}: mean {100 * c.mean:.2f} sd {100 * c.sd:.2f} [{folds}]"

    header = [f"# Cross-validated by room ({len(cv.folds)} folds, held-out {cv.objective}, per fold in order of "
              f"rooms {', '.join('+'.join(r) for r in cv.rooms)}); chosen: {cv.chosen}", line("fixed", cv.fixed)]
    if cv.tuned is not None:
        gain, se = paired_gain(cv.fixed, cv.tuned)
        header.append(line("tuned", cv.tuned) + f"; gain {100 * gain:+.2f} ± {100 * se:.2f} (se)")
    return write_text(path, "\n".join(header) + "\n" + path.read_text())
