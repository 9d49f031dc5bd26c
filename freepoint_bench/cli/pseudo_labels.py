"""`bench.py pseudo-labels`: FreePoint's pseudo masks, with classical baselines and a diagnosis beside them."""

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
    FeaturesDeviceOpt,
    PresetOpt,
    RootOpt,
    ScenesOpt,
    SplitOpt,
    console,
    count_bar,
    floats,
    fmt_pct,
    open_store,
    parse_device,
    progress_bars,
    pseudo_config,
    select_split,
    words,
)
from freepoint_bench.parallel import parse_shard, take_shard


def pseudo_labels_cmd(
    dataset: DatasetOpt,
    root: RootOpt = None,
    cache: CacheOpt = DEFAULT_CACHE,
    scene: ScenesOpt = None,
    split: SplitOpt = None,
    sigma: Annotated[
        list[str] | None,
        typer.Option("--sigma", help="σ offsets (repeatable or comma-separated); default σ_low, σ_high."),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="PseudoLabelConfig TOML (e.g. from `tune`).")] = None,
    config_preset: PresetOpt = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a config field: key=value.")] = None,
    features: Annotated[
        Path | None,
        typer.Option("--features", help="Backbone checkpoint whose per-point features join the affinities."),
    ] = None,
    device: FeaturesDeviceOpt = "auto",
    workers: Annotated[int | None, typer.Option(
        "--workers", "-j", help="Scenes processed in parallel (default: the cores available).")] = None,
    shard: Annotated[str, typer.Option("--shard", help="Process shard i of n (job arrays): i/n.")] = "0/1",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (per scene, per σ).")] = Path(
        "runs/pseudo-labels"
    ),
    export_benchmark: Annotated[
        Path | None, typer.Option("--export-benchmark", help="Also write ScanNet benchmark-format predictions here.")
    ] = None,
    compare: Annotated[
        list[str] | None,
        typer.Option("--compare", help="Also run classical baselines and evaluate all: dbscan,kmeans,birch,hdbscan."),
    ] = None,
    compare_json: Annotated[
        Path | None,
        typer.Option("--compare-json", help="Write the --compare rows as JSON here (`bench.py report --evaluations`)."),
    ] = None,
    diagnose: Annotated[
        bool,
        typer.Option(
            "--diagnose",
            help="Labelled data: objects recovered at IoU 0.25 / 0.5, segments, coverage, over-/under-segmentation.",
        ),
    ] = False,
) -> None:
    """FreePoint pseudo masks: plane removal, FPS, kNN affinity graph, multicut, kNN vote (cached, resumable)."""
    from freepoint_bench.freepoint.pipeline import run_pseudo_labels

    cfg = pseudo_config(config, overrides, config_preset)
    sigmas = floats(sigma, "--sigma") or list(cfg.sigmas)
    methods = words(compare)
    device = parse_device(device)  # before any data is read: a GPU the machine lacks is one line
    store, names = open_store(dataset, root, cache, scene)
    names = select_split(store, names, split)
    features_fn = None
    if features is not None:
        from freepoint_bench.engine.features import BackboneFeatures

        features_fn = BackboneFeatures(features, device=device)
    shard_t = parse_shard(shard)
    t0 = time.perf_counter()
    with progress_bars() as progress:
        task = progress.add_task("pseudo labels", total=len(take_shard(names, *shard_t)), item="")

        def cb(record: dict) -> None:
            progress.update(task, advance=1, item=f"{record['scene']} ({record['status']})")

        summary = run_pseudo_labels(
            store, names, cfg, sigmas, out, workers=workers, shard=shard_t, features_fn=features_fn, progress=cb
        )
    _print_pseudo_summary(summary, time.perf_counter() - t0, out)
    mine = [r["scene"] for r in summary["scenes"]]
    if export_benchmark is not None:
        from freepoint_bench.freepoint.export import export_pseudo_labels

        dirs = export_pseudo_labels(store, mine, out, sigmas, export_benchmark, mask_score=cfg.mask_score)
        console.print("benchmark-format predictions: " + ", ".join(str(d) for d in dirs))
    if methods:
        from freepoint_bench.tuning.compare import compare_methods

        seconds = {r["scene"]: r["seconds"] for r in summary["scenes"] if "seconds" in r}
        with progress_bars() as progress:
            rows = compare_methods(
                store,
                mine,
                out,
                sigmas,
                methods,
                cfg,
                dataset,
                freepoint_seconds=seconds,
                progress=count_bar(progress, "compare", len(mine)),
            )
        _print_compare(rows, dataset, len(mine))
        if compare_json is not None:
            from freepoint_bench.results import write_compare

            write_compare(compare_json, rows, dataset, len(mine))
            console.print(f"wrote {compare_json}")
    if diagnose:
        from freepoint_bench.tuning.diagnose import diagnose_run

        _print_diagnosis(diagnose_run(store, mine, out, sigmas, dataset), dataset)


def _print_diagnosis(by_sigma: dict, dataset: str) -> None:
    first = next(iter(by_sigma.values()))
    table = Table(title=f"pseudo-mask diagnosis on {dataset} ({first.scenes} scenes, {first.objects} objects)")
    for col in ("σ", "found IoU>.25", "found IoU>.5", "segs/scene", "covered", "over-seg", "merging (objs)"):
        table.add_column(col, justify="right")
    for sigma, d in by_sigma.items():
        table.add_row(
            f"{sigma:g}",
            f"{d.recovered25} ({fmt_pct(d.recovered25 / max(d.objects, 1))}%)",
            f"{d.recovered50} ({fmt_pct(d.recovered50 / max(d.objects, 1))}%)",
            f"{d.segments_per_scene:.1f}",
            f"{fmt_pct(d.coverage)}%",
            str(d.over_segmented),
            f"{d.under_segmented} ({d.merged_objects})",
        )
    console.print(table)
    console.print(
        "found: objects (GT instances of evaluated classes, >= min region size) matched by a segment; covered: "
        "object points in a segment; a part is >= 20 % of an object: over-seg = objects in 2+ parts, merging = "
        "segments holding parts of 2+ objects"
    )


def _print_pseudo_summary(summary: dict, seconds: float, out: Path) -> None:
    done = [r for r in summary["scenes"] if r["status"] == "done"]
    table = Table(title=f"pseudo labels → {out}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("scenes computed / cached", f"{summary['computed']} / {summary['cached']}")
    for sigma in summary["sigmas"]:
        counts = [r["num_segments"][str(sigma)] for r in done if str(sigma) in r["num_segments"]]
        if counts:
            table.add_row(f"segments per scene at σ={sigma:g}", f"{sum(counts) / len(counts):.1f}")
    if done:
        stages = sorted({k for r in done for k in r["timings"]})
        for stage in stages:
            mean = sum(r["timings"].get(stage, 0.0) for r in done) / len(done)
            table.add_row(f"s/scene: {stage}", f"{mean:.3f}")
    table.add_row("wall time", f"{seconds:.1f} s")
    console.print(table)


def _print_compare(rows: list[dict], dataset: str, n: int) -> None:
    table = Table(title=f"class-agnostic pseudo-mask AP on {dataset} ({n} scenes)")
    for col in ("method", "AP", "AP50", "AP25", "segments/scene", "s/scene"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        table.add_row(
            r["method"],
            fmt_pct(r["ap"]),
            fmt_pct(r["ap50"]),
            fmt_pct(r["ap25"]),
            f"{r['segments_per_scene']:.1f}",
            f"{r['seconds_per_scene']:.2f}",
        )
    console.print(table)
