"""ScanNet-style instance AP (semantic, class-agnostic, S3DIS) and the benchmark submission format."""

from freepoint_bench.evaluation.benchmark_io import (
    evaluate_submission,
    list_prediction_scenes,
    read_mask,
    read_predictions,
    write_predictions,
)
from freepoint_bench.evaluation.instance_ap import (
    OVERLAPS,
    APAccumulator,
    EvalResult,
    EvalSpec,
    dataset_spec,
    evaluate,
    s3dis_spec,
    scannet_spec,
)
from freepoint_bench.evaluation.predictions import Predictions, predictions_from_labels

__all__ = [
    "OVERLAPS",
    "APAccumulator",
    "EvalResult",
    "EvalSpec",
    "Predictions",
    "dataset_spec",
    "evaluate",
    "evaluate_submission",
    "list_prediction_scenes",
    "predictions_from_labels",
    "read_mask",
    "read_predictions",
    "s3dis_spec",
    "scannet_spec",
    "write_predictions",
]
