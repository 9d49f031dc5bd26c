"""`bench.py evaluate` (score benchmark-format predictions) and `bench.py predict` (write them)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from freepoint_bench.cli.common import (
    DEFAULT_CACHE,
    CacheOpt,
    DatasetOpt,
    DeviceOpt,
    RootOpt,
    ScenesOpt,
    SplitOpt,
    console,
    count_bar,
    fmt_pct,
    open_store,
    parse_device,
    progress_bars,
    select_split,
)
from freepoint_bench.errors import DataError


def _print_eval(result, title: str) -> None:
    table = Table(title=title)
    table.add_column("class")
    for col in ("AP", "AP50", "AP25"):
        table.add_column(col, justify="right")
    for name, row in result.per_class.items():
        table.add_row(name, fmt_pct(row["ap"]), fmt_pct(row["ap50"]), fmt_pct(row["ap25"]))
    table.add_section()
    table.add_row("[bold]mean", fmt_pct(result.ap), fmt_pct(result.ap50), fmt_pct(result.ap25))
    console.print(table)


def evaluate_cmd(
    dataset: DatasetOpt,
    predictions: Annotated[Path, typer.Option("--predictions", "-p", help="ScanNet benchmark-format folder.")],
    root: RootOpt = None,
    cache: CacheOpt = DEFAULT_CACHE,
    class_agnostic: Annotated[bool, typer.Option("--class-agnostic", help="Merge all valid classes into one.")] = False,
    min_region_size: Annotated[int, typer.Option("--min-region-size", help="Drop GT/predictions smaller.")] = 100,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result as JSON here.")] = None,
    scene: ScenesOpt = None,
) -> None:
    """Score benchmark-format predictions against a dataset's ground truth (ScanNet-style AP, in percent)."""
    # Only what scoring needs (no readers unless scenes must be converted, no tuning, no scene points):
    # researchers run this after every fine-tune, so start-up is part of its speed.
    from freepoint_bench.evaluation import dataset_spec, evaluate_submission, list_prediction_scenes

    if not predictions.is_dir():
        raise DataError(f"{predictions}: predictions folder not found; pass the folder holding <scene>.txt files")
    pred_scenes = scene or list_prediction_scenes(predictions)
    if not pred_scenes:
        raise DataError(f"{predictions}: no <scene>.txt prediction files found")
    spec = dataset_spec(dataset, class_agnostic, min_region_size)
    store, names = open_store(dataset, root, cache, pred_scenes)
    t0 = time.perf_counter()
    with progress_bars() as progress:
        result = evaluate_submission(
            predictions,
            names,
            store.load_labels,
            spec,
            progress=count_bar(progress, "evaluate", len(names)),
        )
    mode = "class-agnostic" if class_agnostic else "semantic"
    _print_eval(result, f"{dataset} instance AP ({mode}, {len(names)} scenes, {time.perf_counter() - t0:.1f} s)")
    if json_out is not None:
        from freepoint_bench.atomic import write_json

        write_json(json_out, result.to_dict())
        console.print(f"wrote {json_out}")


def predict_cmd(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="A *-segmenter.ckpt from pretrain.")],
    dataset: DatasetOpt,
    export_benchmark: Annotated[
        Path, typer.Option("--export-benchmark", help="Write ScanNet benchmark-format predictions here.")
    ],
    root: RootOpt = None,
    cache: CacheOpt = DEFAULT_CACHE,
    scene: ScenesOpt = None,
    split: SplitOpt = None,
    device: DeviceOpt = "auto",
    superpoints: Annotated[
        bool,
        typer.Option(
            "--superpoints/--no-superpoints",
            help="Average each mask within label-free superpoints (Mask3D's segment pooling) before thresholding.",
        ),
    ] = False,
    inference_set: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="An inference field as key=value, repeatable: mode=mask3d (Mask3D's S3DIS rule, the paper "
            "preset's), dbscan_eps=0.6, topk=none, mask_threshold, min_points, score_threshold.",
        ),
    ] = None,
) -> None:
    """Run a trained segmenter on scenes and write its instance masks in ScanNet benchmark format."""
    from freepoint_bench.config import apply_overrides, parse_overrides, validated
    from freepoint_bench.engine.predict import predict
    from freepoint_bench.geometry.superpoints import SuperpointConfig
    from freepoint_bench.models.inference import InferenceConfig

    base = {"superpoints": SuperpointConfig() if superpoints else None}
    what = "inference config (--set)"  # checked before any data is read or model loaded
    inference = validated(InferenceConfig, apply_overrides(base, parse_overrides(inference_set or []),
                                                           InferenceConfig, what), what)
    device = parse_device(device)  # before any data is read: a GPU the machine lacks is one line
    store, names = open_store(dataset, root, cache, scene)
    names = select_split(store, names, split)
    with progress_bars() as progress:
        written = predict(
            checkpoint,
            store,
            names,
            export_benchmark,
            device=device,
            progress=count_bar(progress, "predict", len(names)),
            inference=inference,
        )
    console.print(f"wrote {len(written)} scenes to {export_benchmark}; score them with `bench.py evaluate`")
