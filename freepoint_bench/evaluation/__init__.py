"""ScanNet-style instance AP (semantic, class-agnostic, S3DIS) and the benchmark submission format."""

from freepoint_bench.evaluation.benchmark_io import list_prediction_scenes, read_predictions, write_predictions
from freepoint_bench.evaluation.instance_ap import OVERLAPS, EvalResult, EvalSpec, evaluate, s3dis_spec, scannet_spec
from freepoint_bench.evaluation.predictions import Predictions, predictions_from_labels

__all__ = [
    "OVERLAPS",
    "EvalResult",
    "EvalSpec",
    "Predictions",
    "evaluate",
    "list_prediction_scenes",
    "predictions_from_labels",
    "read_predictions",
    "s3dis_spec",
    "scannet_spec",
    "write_predictions",
]
