"""Optuna studies over FreePoint's pseudo-label config; objective = class-agnostic pseudo-mask AP."""

from freepoint_bench.tuning.graph import GraphCache, SceneGraph, build_scene_graph, labels_from_graph
from freepoint_bench.tuning.objective import METRIC_NAMES, evaluation_spec_for, score_pseudo_masks
from freepoint_bench.tuning.study import TuneConfig, TuneResult, run_study, save_plots, write_best_config

__all__ = [
    "METRIC_NAMES",
    "GraphCache",
    "SceneGraph",
    "TuneConfig",
    "TuneResult",
    "build_scene_graph",
    "evaluation_spec_for",
    "labels_from_graph",
    "run_study",
    "save_plots",
    "score_pseudo_masks",
    "write_best_config",
]
