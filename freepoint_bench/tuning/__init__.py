"""Optuna studies over FreePoint's pseudo-label config; objective = class-agnostic pseudo-mask AP."""

from freepoint_bench.tuning.crossval import CVResult, cross_validate, room_folds, write_cv_config
from freepoint_bench.tuning.diagnose import Diagnosis, diagnose
from freepoint_bench.tuning.graph import GraphCache, SceneGraph, build_scene_graph, labels_from_graph
from freepoint_bench.tuning.objective import METRIC_NAMES, evaluation_spec_for, score_pseudo_masks
from freepoint_bench.tuning.study import TuneConfig, TuneResult, run_study, save_plots, write_best_config

__all__ = [
    "METRIC_NAMES",
    "CVResult",
    "Diagnosis",
    "GraphCache",
    "SceneGraph",
    "TuneConfig",
    "TuneResult",
    "build_scene_graph",
    "cross_validate",
    "diagnose",
    "evaluation_spec_for",
    "labels_from_graph",
    "room_folds",
    "run_study",
    "save_plots",
    "score_pseudo_masks",
    "write_cv_config",
    "write_best_config",
]
