"""The `bench.py` commands: parse, call the library, print. Nothing else lives here."""

from __future__ import annotations

import errno
import logging
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from freepoint_bench.data import catalogue
from freepoint_bench.errors import ConfigError, DataError, FreePointError
from freepoint_bench.parallel import parse_shard, take_shard

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="bench.py",
    help="freepoint-bench: label-free 3D instance segmentation pretraining (FreePoint) and its benchmark.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
data_app = typer.Typer(help="Prepare, list and render datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

DEFAULT_CACHE = Path("cache")

DatasetOpt = Annotated[
    str, typer.Option("--dataset", "-d", help=f"Dataset: {catalogue.or_list(catalogue.names())}.")
]
RootOpt = Annotated[
    Path | None,
    typer.Option("--root", "-r", help="Dataset root folder (synthetic: optional folder holding synthetic.toml)."),
]
CacheOpt = Annotated[Path, typer.Option("--cache", help="Scene cache folder; one sub-folder per dataset and root.")]
ScenesOpt = Annotated[list[str] | None, typer.Option("--scene", "-s", help="Only these scenes (repeatable).")]
SplitOpt = Annotated[str | None, typer.Option("--split", help="Only scenes of this split: train, val or test.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (cuda when there is a GPU, else cpu), cpu, cuda or "
                                                         "cuda:<index>.")]
FeaturesDeviceOpt = Annotated[str, typer.Option(
    "--device", help="Device of the --features backbone: auto (cuda when there is a GPU, else cpu), cpu, cuda or "
                     "cuda:<index>.")]


# ---------------------------------------------------------------------------------------------- helpers


def _progress(disable: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[item]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=disable,
    )


def _fmt_pct(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _open_store(dataset: str, root: Path | None, cache: Path, names: list[str] | None = None):
    """Returns (store, names) for (dataset, root), preparing missing scenes into the cache with a progress bar."""
    from freepoint_bench.data.open import open_dataset

    with _progress() as progress:
        return open_dataset(dataset, root, cache, names, progress=_lazy_bar(progress, f"prepare {dataset}"))


def _lazy_bar(progress: Progress, label: str):
    """Returns a progress(done, total, name) callback whose bar appears with its first call (none when no work)."""
    task = None

    def cb(done: int, total: int, name: str) -> None:
        nonlocal task
        if task is None:
            task = progress.add_task(label, total=total, item="")
        progress.update(task, completed=done, total=total, item=name)

    return cb


def _device(name: str) -> str:
    """Returns the torch device `--device name` means (auto: cuda when torch sees a GPU); ConfigError for a GPU
    this machine lacks."""
    from freepoint_bench.engine.devices import resolve_device

    return str(resolve_device(name))


def _select(store, wanted: list[str], split: str | None) -> list[str]:
    if split is None:
        return wanted
    chosen = [n for n in wanted if n in set(store.names(split=split))]
    if not chosen:
        raise DataError(f"no scenes of split {split!r} among the {len(wanted)} selected; check --split/--scene")
    return chosen


# ---------------------------------------------------------------------------------------------- data


@data_app.command("prepare")
def data_prepare(
    dataset: DatasetOpt,
    root: RootOpt = None,
    cache: CacheOpt = DEFAULT_CACHE,
    scene: ScenesOpt = None,
) -> None:
    """Convert a dataset once into the scene cache (one compressed file per scene, resumable)."""
    t0 = time.perf_counter()
    store, names = _open_store(dataset, root, cache, scene)
    table = Table(title=f"{dataset} → {store.root}")
    for col in ("split", "scenes", "points (mean)", "instances (mean)"):
        table.add_column(col, justify="right")
    by_split: dict[str, list] = {}
    for name in names:
        info = store.info(name)
        by_split.setdefault(info.get("split", "?"), []).append(info)
    for split, infos in sorted(by_split.items()):
        table.add_row(
            split,
            str(len(infos)),
            f"{sum(i.get('num_points', 0) for i in infos) / len(infos):,.0f}",
            f"{sum(i.get('num_instances', 0) for i in infos) / len(infos):.1f}",
        )
    console.print(table)
    console.print(f"{len(names)} scenes ready in {time.perf_counter() - t0:.1f} s")


@data_app.command("list")
def data_list(dataset: DatasetOpt, root: RootOpt = None, cache: CacheOpt = DEFAULT_CACHE) -> None:
    """List the scenes of a dataset with their split and size (prepares the cache if needed)."""
    store, names = _open_store(dataset, root, cache)
    table = Table(title=f"{dataset}: {len(names)} scenes")
    for col in ("scene", "split", "points", "instances"):
        table.add_column(col)
    for name in names:
        info = store.info(name)
        table.add_row(
            name, info.get("split", "?"), f"{info.get('num_points', 0):,}", str(info.get("num_instances", ""))
        )
    console.print(table)


@data_app.command("show")
def data_show(
    dataset: DatasetOpt,
    scene: Annotated[str, typer.Option("--scene", "-s", help="Scene name to render.")],
    root: RootOpt = None,
    cache: CacheOpt = DEFAULT_CACHE,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")] = Path("scene.png"),
    color_by: Annotated[str, typer.Option("--color-by", help="instance, semantic or rgb.")] = "instance",
    ply: Annotated[Path | None, typer.Option("--ply", help="Also write a coloured PLY here.")] = None,
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="Pseudo-label folder: render its masks beside the ground truth, one per σ."),
    ] = None,
) -> None:
    """Render a scene to PNG coloured by instance, semantic or rgb (and pseudo masks with --labels)."""
    from freepoint_bench.data.render import label_colors, render_panels, render_scene, write_colored_ply

    if color_by not in ("instance", "semantic", "rgb"):
        raise ConfigError(f"--color-by {color_by!r}: choose instance, semantic or rgb")
    store, _ = _open_store(dataset, root, cache, [scene])
    s = store.load(scene)
    if labels is not None:
        from freepoint_bench.freepoint.pipeline import available_sigmas, load_pseudo_labels

        sigmas = available_sigmas(labels, scene)
        if not sigmas:
            raise DataError(f"{labels}: no pseudo labels for scene {scene!r}; run `bench.py pseudo-labels` first")
        panels: dict = {"ground truth": "instance" if s.instance is not None else "rgb"}
        for sigma in sigmas:
            panels[f"σ = {sigma:g}"] = load_pseudo_labels(labels, scene, sigma)
        render_panels(s, panels, out)
    else:
        render_scene(s, out, color_by=color_by, title=f"{dataset}: {scene} ({color_by})")
    console.print(f"wrote {out}")
    if ply is not None:
        if color_by == "rgb" or (color_by == "instance" and s.instance is None):
            colors = s.rgb
        else:
            colors = label_colors(s.instance if color_by == "instance" else s.semantic)
        write_colored_ply(s, colors, ply)
        console.print(f"wrote {ply}")


@data_app.command("synth-s3dis")
def data_synth_s3dis(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write Area_N/<room>/Annotations/ into.")],
    rooms: Annotated[int, typer.Option("--rooms", help="Number of rooms (spread over Areas 1-6).")] = 12,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the room generator.")] = 0,
    points: Annotated[int, typer.Option("--points", help="Points per room.")] = 20000,
) -> None:
    """Write synthetic rooms in S3DIS's raw layout (13 classes), for running protocols end to end."""
    from freepoint_bench.data.synthetic import SyntheticConfig, write_synthetic_s3dis

    if rooms < 1 or points < 100:
        raise ConfigError(f"--rooms {rooms} --points {points}: need at least 1 room of at least 100 points")
    with _progress() as progress:
        task = progress.add_task("synth-s3dis", total=rooms, item="")
        names = write_synthetic_s3dis(out, rooms, seed=seed, config=SyntheticConfig(num_points=points),
                                      progress=lambda done, name: progress.update(task, completed=done, item=name))
    areas = sorted({n.split("/")[0] for n in names})
    console.print(f"wrote {len(names)} rooms to {out} ({', '.join(areas)}); use it as --root with --dataset s3dis")


# ---------------------------------------------------------------------------------------------- evaluate


def _print_eval(result, title: str) -> None:
    table = Table(title=title)
    table.add_column("class")
    for col in ("AP", "AP50", "AP25"):
        table.add_column(col, justify="right")
    for name, row in result.per_class.items():
        table.add_row(name, _fmt_pct(row["ap"]), _fmt_pct(row["ap50"]), _fmt_pct(row["ap25"]))
    table.add_section()
    table.add_row("[bold]mean", _fmt_pct(result.ap), _fmt_pct(result.ap50), _fmt_pct(result.ap25))
    console.print(table)


@app.command("evaluate")
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
    store, names = _open_store(dataset, root, cache, pred_scenes)
    t0 = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task("evaluate", total=len(names), item="")
        result = evaluate_submission(
            predictions,
            names,
            store.load_labels,
            spec,
            progress=lambda done, total, name: progress.update(task, completed=done, item=name),
        )
    mode = "class-agnostic" if class_agnostic else "semantic"
    _print_eval(result, f"{dataset} instance AP ({mode}, {len(names)} scenes, {time.perf_counter() - t0:.1f} s)")
    if json_out is not None:
        from freepoint_bench.atomic import write_json

        write_json(json_out, result.to_dict())
        console.print(f"wrote {json_out}")


# ---------------------------------------------------------------------------------------------- pseudo labels


def _floats(values: list[str] | None, what: str) -> list[float] | None:
    if not values:
        return None
    out = []
    for v in values:
        for part in v.replace(",", " ").split():
            try:
                value = float(part)
            except ValueError:
                raise ConfigError(f"{what} {part!r} is not a number") from None
            if not math.isfinite(value):
                raise ConfigError(f"{what} {part!r}: give a finite number")
            out.append(value)
    return out


def _words(values: list[str] | None) -> list[str]:
    return [w for v in values or [] for w in v.replace(",", " ").split()]


def _pseudo_config(config: Path | None, overrides: list[str] | None, preset: str | None = None):
    from freepoint_bench.freepoint.config import PseudoLabelConfig

    if config is not None and preset is not None:
        raise ConfigError(f"--config {config} and --config-preset {preset}: give one (a TOML holds every field)")
    if config is not None:
        cfg = PseudoLabelConfig.from_toml(config)
    else:
        cfg = PseudoLabelConfig.preset(preset or "default")
    return cfg.with_overrides(overrides) if overrides else cfg


PresetOpt = Annotated[
    str | None,
    typer.Option("--config-preset", help="Named baseline config: default or plain (a plain reading of §3)."),
]


@app.command("pseudo-labels")
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

    cfg = _pseudo_config(config, overrides, config_preset)
    sigmas = _floats(sigma, "--sigma") or list(cfg.sigmas)
    methods = _words(compare)
    device = _device(device)  # before any data is read: a GPU the machine lacks is one line
    store, names = _open_store(dataset, root, cache, scene)
    names = _select(store, names, split)
    features_fn = None
    if features is not None:
        from freepoint_bench.engine.features import BackboneFeatures

        features_fn = BackboneFeatures(features, device=device)
    shard_t = parse_shard(shard)
    t0 = time.perf_counter()
    with _progress() as progress:
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
        with _progress() as progress:
            task = progress.add_task("compare", total=len(mine), item="")
            rows = compare_methods(
                store,
                mine,
                out,
                sigmas,
                methods,
                cfg,
                dataset,
                freepoint_seconds=seconds,
                progress=lambda done, total, name: progress.update(task, completed=done, item=name),
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
            f"{d.recovered25} ({_fmt_pct(d.recovered25 / max(d.objects, 1))}%)",
            f"{d.recovered50} ({_fmt_pct(d.recovered50 / max(d.objects, 1))}%)",
            f"{d.segments_per_scene:.1f}",
            f"{_fmt_pct(d.coverage)}%",
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
            _fmt_pct(r["ap"]),
            _fmt_pct(r["ap50"]),
            _fmt_pct(r["ap25"]),
            f"{r['segments_per_scene']:.1f}",
            f"{r['seconds_per_scene']:.2f}",
        )
    console.print(table)


# ---------------------------------------------------------------------------------------------- pretrain


@app.command("pretrain")
def pretrain_cmd(
    method: Annotated[str, typer.Option("--method", "-m", help="Pretext method (see the registry): freepoint.")],
    dataset: DatasetOpt,
    root: RootOpt = None,
    cache: CacheOpt = DEFAULT_CACHE,
    scene: ScenesOpt = None,
    split: Annotated[str, typer.Option("--split", help="Scenes of this split are trained on.")] = "train",
    preset: Annotated[str, typer.Option("--preset", help="Training preset: cpu-small or paper.")] = "cpu-small",
    epochs: Annotated[int | None, typer.Option(
        "--epochs", help="Epochs of a one-stage method (pointcontrast, csc, depthcontrast, supervised).")] = None,
    epochs1: Annotated[int | None, typer.Option(
        "--epochs1", help="FreePoint: step 1 epochs on σ_low masks (paper: 100).")] = None,
    epochs2: Annotated[int | None, typer.Option(
        "--epochs2", help="FreePoint: step 2 epochs on σ_high masks (paper: 10).")] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config field: key=value (train.lr=…, pseudo.sigma_low=…, loss.box=…)."),
    ] = None,
    devices: Annotated[str, typer.Option("--devices", help="Devices per node (Lightning), e.g. 1, 4 or auto.")] = "1",
    nodes: Annotated[int, typer.Option("--nodes", help="Nodes (Lightning DDP; SLURM is detected).")] = 1,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory (default runs/pretrain/<method>).")
    ] = None,
    checkpoints: Annotated[
        Path, typer.Option("--checkpoints", help="Where the final .ckpt files and index.json go.")
    ] = Path("checkpoints"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run (same config).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Discard a previous run in --out.")] = False,
    label_workers: Annotated[int | None, typer.Option(
        "--workers", "-j", help="Processes for what a method derives before training: FreePoint's pseudo labels, "
        "the frame-pair index of views.source=frames (default: the cores available).")] = None,
) -> None:
    """Pretrain a backbone with a pretext method (FreePoint: pseudo masks, then two-step training)."""
    from freepoint_bench.engine.trainer import check_devices
    from freepoint_bench.freepoint.config import parse_overrides
    from freepoint_bench.pretext.base import get_method

    if resume and overwrite:
        raise ConfigError("--resume and --overwrite: give one (continue the run in --out, or discard it)")
    check_devices(devices, nodes)  # also for methods that do not train (scratch), so a typo is never ignored
    impl = get_method(method)
    fields = parse_overrides(overrides or [])
    if epochs is not None:
        fields["epochs"] = epochs
    if epochs1 is not None:
        fields["epochs1"] = epochs1
    if epochs2 is not None:
        fields["epochs2"] = epochs2
    cfg = impl.default_config(preset, **fields)
    store, names = _open_store(dataset, root, cache, scene)
    names = _select(store, names, None if scene else split)
    run_dir = out or Path("runs") / "pretrain" / f"{method}-{dataset}"
    from pytorch_lightning.utilities import rank_zero_only

    # under DDP Lightning starts this command again for every other rank: only rank 0 reports
    is_zero = rank_zero_only.rank == 0
    t0 = time.perf_counter()
    with _progress(disable=not is_zero) as progress:
        cb = _stage_bars(progress)
        result = impl.pretrain(
            store,
            cfg,
            run_dir,
            names=names,
            resume=resume,
            overwrite=overwrite,
            progress=cb,
            checkpoints_dir=checkpoints,
            label_workers=label_workers,
            devices=devices,
            nodes=nodes,
        )
    if not is_zero:
        return
    table = Table(title=f"pretrain {method} on {dataset}: {len(names)} scenes, {time.perf_counter() - t0:.0f} s")
    table.add_column("")
    table.add_column("value")
    table.add_row("backbone", str(result.backbone))
    if result.segmenter is not None:
        table.add_row("segmenter", str(result.segmenter))
    for step, losses in (result.metadata.get("metrics") or {}).items():
        if isinstance(losses, dict):
            keys = ("sigma", "epochs", "scenes", "loss_first_epoch", "loss_last_epoch")
            shown = [(k, losses[k]) for k in keys if isinstance(losses.get(k), int | float)]
            table.add_row(step, ", ".join(f"{k} {v}" if isinstance(v, int) else f"{k} {v:.3f}" for k, v in shown))
    console.print(table)


@app.command("predict")
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
) -> None:
    """Run a trained segmenter on scenes and write its instance masks in ScanNet benchmark format."""
    from freepoint_bench.engine.predict import predict
    from freepoint_bench.geometry.superpoints import SuperpointConfig
    from freepoint_bench.models.inference import InferenceConfig

    device = _device(device)  # before any data is read: a GPU the machine lacks is one line
    store, names = _open_store(dataset, root, cache, scene)
    names = _select(store, names, split)
    with _progress() as progress:
        task = progress.add_task("predict", total=len(names), item="")
        written = predict(
            checkpoint,
            store,
            names,
            export_benchmark,
            device=device,
            progress=lambda done, total, name: progress.update(task, completed=done, item=name),
            inference=InferenceConfig(superpoints=SuperpointConfig() if superpoints else None),
        )
    console.print(f"wrote {len(written)} scenes to {export_benchmark}; score them with `bench.py evaluate`")


# ---------------------------------------------------------------------------------------------- tune


@app.command("tune")
def tune_cmd(
    ctx: typer.Context,
    dataset: DatasetOpt,
    root: RootOpt = None,
    cache: CacheOpt = DEFAULT_CACHE,
    scene: ScenesOpt = None,
    split: SplitOpt = None,
    trials: Annotated[int, typer.Option("--trials", "-n", help="Trials to add to the study.")] = 40,
    objective: Annotated[str, typer.Option("--objective", help="Metric maximised: ap, ap50 or ap25.")] = "ap50",
    storage: Annotated[
        str | None, typer.Option("--storage", help="Optuna storage URL, e.g. sqlite:///runs/optuna.db (resumable).")
    ] = None,
    study: Annotated[str, typer.Option("--study", help="Study name (same storage + name continues it).")] = (
        "freepoint-pseudo-labels"
    ),
    jobs: Annotated[int, typer.Option("--jobs", help="Parallel trials (threads).")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="TPE sampler seed.")] = 0,
    tune_sigma: Annotated[bool, typer.Option("--tune-sigma", help="Also tune σ_low.")] = False,
    tune_k1: Annotated[bool, typer.Option("--tune-k1", help="Also tune k1 (4, 6, 8).")] = False,
    tune_plane: Annotated[bool, typer.Option("--tune-plane", help="Also tune the plane distance threshold.")] = False,
    tune_config: Annotated[
        Path | None, typer.Option("--tune-config", help="TOML with any TuneConfig field (search ranges...).")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Base PseudoLabelConfig TOML.")] = None,
    config_preset: PresetOpt = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a base config field: key=value.")
    ] = None,
    features: Annotated[
        Path | None, typer.Option("--features", help="Backbone checkpoint: deep features join (and α_emb is tuned).")
    ] = None,
    device: FeaturesDeviceOpt = "auto",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for best.toml and plots.")] = Path("runs/tune"),
    cv: Annotated[
        str | None,
        typer.Option("--cv", help="rooms: cross-validate by room (leave one room out, or --folds k) before choosing."),
    ] = None,
    folds: Annotated[int | None, typer.Option("--folds", help="With --cv rooms: k folds of whole rooms.")] = None,
    sigma_grid: Annotated[
        list[str] | None,
        typer.Option("--sigma-grid", help="Tune σ_low alone over these values (grid search, α fixed): 0.5,0.7,0.9."),
    ] = None,
) -> None:
    """Tune FreePoint's affinity weights α (and optionally σ, k1, plane threshold) with Optuna on labelled scenes."""
    from freepoint_bench.atomic import ensure_dir
    from freepoint_bench.tuning import TuneConfig, run_study, save_plots, write_best_config

    base = _pseudo_config(config, overrides, config_preset)
    device = _device(device)  # before any data is read: a GPU the machine lacks is one line
    fields = dict(
        trials=trials,
        objective=objective,
        storage=storage,
        study_name=study,
        jobs=jobs,
        seed=seed,
        tune_sigma_low=tune_sigma,
        tune_k1=tune_k1,
        tune_plane_distance=tune_plane,
    )
    if tune_config is not None:
        # the TOML's fields, then only the flags typed on the command line (a flag's default never overrides the
        # file, and a typed value always does, --seed 0 and --trials 1 included)
        params = {"study_name": "study", "tune_sigma_low": "tune_sigma", "tune_plane_distance": "tune_plane"}
        # by name: typer ships its own copy of click's ParameterSource enum
        typed = {k: v for k, v in fields.items()
                 if getattr(ctx.get_parameter_source(params.get(k, k)), "name", None) == "COMMANDLINE"}
        fields = {**TuneConfig.from_toml(tune_config).model_dump(), **typed}
    grid = _floats(sigma_grid, "--sigma-grid")
    if grid:
        fields.update(tune_sigma_low=True, sigma_low_grid=tuple(grid), sampler="grid", alphas=(), prune=False)
    tcfg = TuneConfig(**fields)
    ensure_dir(out)  # before the study: a study's trials must not be lost to an --out that cannot be written
    store, names = _open_store(dataset, root, cache, scene)
    names = _select(store, names, split)
    scenes = [store.load(n) for n in names]
    features_fn = None
    if features is not None:
        from freepoint_bench.engine.features import BackboneFeatures

        features_fn = BackboneFeatures(features, device=device)
    from freepoint_bench.tuning.objective import evaluation_spec_for

    if cv is not None or folds is not None:
        _tune_cv(cv, folds, scenes, base, tcfg, features_fn, evaluation_spec_for(dataset), out, dataset)
        return
    with _progress() as progress:
        task = progress.add_task(f"tune ({objective})", total=trials, item="")

        def cb(rec: dict) -> None:
            best = rec.get("best_value")
            progress.update(
                task, advance=1, item=f"#{rec['trial']} {rec['state']}" + (f", best {100 * best:.1f}" if best else "")
            )

        result = run_study(
            scenes, base, tcfg, features_fn=features_fn, progress=cb, evaluation_spec=evaluation_spec_for(dataset)
        )
    best_path = write_best_config(result, out / "best.toml")
    plots = save_plots(result.study, out / "plots")
    table = Table(title=f"Optuna study {study!r}: {result.n_trials} trials, {len(scenes)} scenes")
    table.add_column("parameter")
    table.add_column("best", justify="right")
    table.add_column("base", justify="right")
    for key, value in result.best_params.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value), str(getattr(base, key, "")))
    table.add_section()
    for key, value in result.best_metrics.items():
        table.add_row(f"{key} (class-agnostic)", _fmt_pct(value), "")
    console.print(table)
    console.print(f"best config: {best_path}  (use: bench.py pseudo-labels --config {best_path})")
    for p in plots:
        console.print(f"plot: {p}")


# ---------------------------------------------------------------------------------- protocols, finetune, run

protocols_app = typer.Typer(help="List, show and freeze the fine-tuning protocols (protocols/*.toml).",
                            no_args_is_help=True)
app.add_typer(protocols_app, name="protocols")
ProtocolsDirOpt = Annotated[
    Path | None, typer.Option("--protocols-dir", help="Protocols folder (default: the repository's protocols/).")
]
ResultsOpt = Annotated[Path, typer.Option("--results", help="Results store: <results>/<protocol>/<method>/seed-<k>/.")]
SplitsOpt = Annotated[Path | None, typer.Option(
    "--splits", help="Folder of the splits frozen from your data, <protocol>.json (default: <results>/splits; "
    "the shipped, pinned splits are read from the protocols folder).")]
DEFAULT_SPLITS = Path("results") / "splits"  # beside the default results store


@protocols_app.command("list")
def protocols_list(protocols_dir: ProtocolsDirOpt = None, splits: SplitsOpt = None) -> None:
    """Table of the protocols: dataset, unit, fraction, folds, preset, split state."""
    from freepoint_bench.harness.protocol import available_protocols, load_protocol, split_path

    table = Table(title="fine-tuning protocols")
    table.add_column("protocol", no_wrap=True)
    for col in ("dataset", "unit", "fraction", "train / eval", "preset", "split"):
        table.add_column(col)
    for name in available_protocols(protocols_dir):
        spec = load_protocol(name, protocols_dir)
        path = split_path(spec, protocols_dir, splits or DEFAULT_SPLITS)
        state = "-" if path is None else ("pinned" if spec.split_sha256 else "frozen") if path.is_file() else \
            "not frozen"
        groups = f"{spec.num_folds}-fold" if spec.folds else \
            f"{len(spec.train_groups)} groups / {','.join(spec.eval_groups)}"
        table.add_row(name, spec.dataset, spec.unit, f"{spec.fraction:g}", groups, spec.preset, state)
    console.print(table)


@protocols_app.command("show")
def protocols_show(name: Annotated[str, typer.Argument(help="Protocol name.")],
                   protocols_dir: ProtocolsDirOpt = None, splits: SplitsOpt = None) -> None:
    """Every field of a protocol, its hash, and its split file's state."""
    import json as _json

    from freepoint_bench.harness.protocol import load_protocol, load_split, split_path

    spec = load_protocol(name, protocols_dir)
    console.print(_json.dumps(spec.model_dump(mode="json"), indent=2))
    console.print(f"protocol hash {spec.content_hash()}")
    path = split_path(spec, protocols_dir, splits or DEFAULT_SPLITS)
    if path is not None and path.is_file():
        doc, sha = load_split(spec, protocols_dir, splits or DEFAULT_SPLITS)
        kept = len(doc.get("train_scenes", [])) or doc.get("num_masks")
        console.print(f"split {path}: sha256 {sha}, {kept} of {doc.get('candidates')} {spec.unit} kept")
    elif path is not None:
        console.print(f"split {path}: not frozen yet (`bench.py protocols freeze {name}`)")


@protocols_app.command("freeze")
def protocols_freeze(
    name: Annotated[str, typer.Argument(help="Protocol name.")],
    root: RootOpt = None,
    cache: CacheOpt = DEFAULT_CACHE,
    protocols_dir: ProtocolsDirOpt = None,
    splits: SplitsOpt = None,
) -> None:
    """Write a protocol's split file once (masks: from your copy of the data) into --splits and print its sha256
    (a pinned split is checked against the shipped file, which is never written)."""
    from freepoint_bench.harness.finetune import class_vocabulary
    from freepoint_bench.harness.protocol import freeze_split, load_protocol
    from freepoint_bench.harness.run import RunOptions

    spec = load_protocol(name, protocols_dir)
    if spec.unit == "scenes" and root is None and spec.room_list is not None:
        path, sha = freeze_split(spec, protocols_dir=protocols_dir, splits_dir=splits or DEFAULT_SPLITS)
    else:
        store, names = _open_protocol(spec, RunOptions(root=root, cache=cache))
        ids, vocab = class_vocabulary(spec.eval)
        with _progress() as progress:
            task = progress.add_task(f"freeze {name}", total=None, item="")
            path, sha = freeze_split(
                spec, names=names, store=store, class_names=dict(zip(ids, vocab, strict=True)),
                protocols_dir=protocols_dir, splits_dir=splits or DEFAULT_SPLITS,
                progress=lambda done, total, scene: progress.update(task, completed=done, total=total, item=scene))
    console.print(f"{'matches the shipped' if spec.split_sha256 else 'wrote'} {path}\nsha256 {sha}")


def _open_protocol(spec, opts):
    from freepoint_bench.harness.run import open_protocol_data

    with _progress() as progress:
        return open_protocol_data(spec, opts, progress=_lazy_bar(progress, f"prepare {spec.dataset}"))


def _stage_bars(progress: Progress) -> Callable[[str, int, int, str], None]:
    """Returns a progress(stage, done, total, info) callback with one bar per stage."""
    tasks: dict[str, int] = {}

    def cb(stage: str, done: int, total: int, info: str) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total, item="")
        progress.update(tasks[stage], completed=done, total=total, item=info)

    return cb


def _print_cells(rows: list[tuple], title: str) -> None:
    from freepoint_bench.results import read_result

    table = Table(title=title)
    for col in ("protocol", "method", "seed", "status", "AP", "AP50", "AP25", "result"):
        table.add_column(col, justify="right" if col in ("AP", "AP50", "AP25", "seed") else "left")
    for task, status, path in rows:
        if status in ("done", "skipped"):
            m = read_result(path).metrics
            cells = [_fmt_pct(m["ap"]), _fmt_pct(m["ap50"]), _fmt_pct(m["ap25"])]
        else:
            cells = ["-", "-", "-"]
        table.add_row(task.protocol, task.method, str(task.seed), status, *cells, str(path))
    console.print(table)


def _run_options(results, checkpoints, cache, protocols_dir, root, preset, overrides, pretrain_preset,
                 pretrain_overrides, pretrain_dataset, pretrain_root, force, given=None, runs=Path("runs"),
                 eval_device=None, splits=None):
    from freepoint_bench.engine.devices import resolve_device
    from freepoint_bench.freepoint.config import parse_overrides
    from freepoint_bench.harness.run import RunOptions

    if eval_device is not None:
        resolve_device(eval_device, "--eval-device")  # refused before any cell trains; each cell resolves it again
    return RunOptions(results=results, checkpoints=checkpoints, cache=cache, protocols_dir=protocols_dir, root=root,
                      preset=preset, overrides=parse_overrides(overrides or []), pretrain_preset=pretrain_preset,
                      pretrain_overrides=parse_overrides(pretrain_overrides or []),
                      pretrain_dataset=pretrain_dataset, pretrain_root=pretrain_root, given=given or {}, force=force,
                      runs=runs, eval_device=eval_device, splits=splits)


SLURM_CPUS_PER_GPU = 8  # data-loading workers and pseudo-labelling processes per GPU job


def _gigabytes(text: str) -> int:
    """Returns the whole GB of a --mem value ("64", "64G", "64GB")."""
    digits = text.strip().upper().removesuffix("B").removesuffix("G")
    if not digits.isdigit() or int(digits) < 1:
        raise ConfigError(f"--mem {text!r}: give whole gigabytes, e.g. 64 or 64G")
    return int(digits)


def _print_plan(tasks, opts, throughput: Path | None, elsewhere: bool) -> None:
    """Prints the plan of `tasks` (harness.plan); typer.Exit(1) when a cell cannot run."""
    from dataclasses import replace

    from rich.markup import escape

    from freepoint_bench.harness import plan as planning

    machine = planning.detect_machine()
    if elsewhere:
        machine = replace(machine, checked=False)
    if throughput is None and planning.DEFAULT_THROUGHPUT.is_file():
        throughput = planning.DEFAULT_THROUGHPUT
    table = planning.load_throughput(throughput) if throughput is not None else None
    plan = planning.make_plan(tasks, opts, machine=machine, throughput=table)

    def hours(h: float | None, steps: int) -> str:
        return "-" if not steps else "?" if h is None else f"{h:.2f}"

    cells = Table(title=f"plan: {len(plan.rows)} cells")
    for col in ("protocol", "method", "seed", "starts from", "fine-tuning", "steps", "GPU-h", "status"):
        cells.add_column(col, justify="right" if col in ("seed", "steps", "GPU-h") else "left")
    for row in plan.rows:
        status = "[red]can not run[/]" if row.problems else "finished" if row.finished else "ready"
        cells.add_row(row.task.protocol, row.task.method, str(row.task.seed), row.start, row.finetune,
                      str(row.steps or "-"), hours(row.gpu_hours, row.steps), status)
    console.print(cells)
    if plan.pretrainings:
        pre = Table(title=f"pretraining runs: {len(plan.pretrainings)} (shared by the cells above)")
        for col in ("method", "preset", "data", "scenes", "epochs", "batch", "steps", "GPU-h", "run folder"):
            pre.add_column(col, justify="right" if col in ("scenes", "epochs", "batch", "steps", "GPU-h") else "left")
        for p in plan.pretrainings:
            state = "exists: resumed or reused" if p.exists else "new"
            pre.add_row(p.method, p.preset, p.dataset, str(p.scenes), str(p.epochs), str(p.batch_size), str(p.steps),
                        hours(p.gpu_hours, p.steps), f"{p.run_dir} ({state})")
        console.print(pre)
    for kind, lines in (("can not run", [(r, m) for r in plan.rows for m in r.problems]),
                        ("note", [(r, m) for r in plan.rows for m in r.notes if not r.finished])):
        by_line: dict[str, list[str]] = {}
        for row, line in lines:
            by_line.setdefault(line, []).append(f"{row.task.protocol}/{row.task.method}/{row.task.seed}")
        for line, where in by_line.items():
            cells_of = where[0] if len(where) == 1 else f"{len(where)} cells, e.g. {where[0]}"
            head = f"[red]{kind}[/]" if kind == "can not run" else kind
            console.print(f"{head} ({cells_of}): {escape(line)}", highlight=False, soft_wrap=True)
    if elsewhere:
        console.print("--launcher slurm: the compute nodes' CUDA, precision and sparse backends are not checked from "
                      "here")
    if table is None:
        console.print("no throughput measured; GPU-hours unknown (the device check writes "
                      f"{planning.DEFAULT_THROUGHPUT}; --throughput FILE reads another)")
    else:
        total, unknown = plan.total_gpu_hours()
        console.print(f"estimate from {table.path} ({table.device}, measured {table.measured}): {total:.1f} GPU-hours"
                      + (f" in all, {unknown} cell or pretraining steps not measured" if unknown else " in all"))
    blocked = sum(bool(r.problems) for r in plan.rows)
    if blocked:
        console.print(f"[red]{blocked} of {len(plan.rows)} cells can not run[/]")
        raise typer.Exit(1)


FtPresetOpt = Annotated[str | None, typer.Option("--preset", help="Fine-tuning preset (default: the protocol's): "
                                                                   "cpu-small or paper.")]
FtSetOpt = Annotated[list[str] | None, typer.Option("--set", help="Fine-tuning field: key=value (epochs=5, lr=…).")]
SeedsOpt = Annotated[list[int] | None, typer.Option("--seeds", help="Training seeds (repeatable or space-separated).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Recompute finished cells (discards their results).")]
CheckpointsDirOpt = Annotated[Path, typer.Option("--checkpoints", help="Checkpoints folder with index.json.")]
RunsOpt = Annotated[Path, typer.Option("--runs", help="Work folder of pretraining runs (runs/pretrain/...).")]
EvalDeviceOpt = Annotated[str | None, typer.Option(
    "--eval-device", help="Device the evaluation scenes are predicted on: auto, cpu, cuda, cuda:<i> (default: the "
    "one fine-tuning trained on).")]


def _seeds(seeds: list[int] | None, extra: list[str] | None = None) -> list[int]:
    values = list(seeds or [])
    for word in extra or []:
        try:
            values.append(int(word))
        except ValueError:
            raise ConfigError(f"unexpected argument {word!r}; seeds are integers (--seeds 0 1 2)") from None
    negative = [v for v in values if v < 0]
    if negative:
        raise ConfigError(f"--seeds {negative[0]}: seeds are integers >= 0 (--seeds 0 1 2)")
    return values or [0]


@app.command("finetune", context_settings={"allow_extra_args": True})
def finetune_cmd(
    ctx: typer.Context,
    protocol: Annotated[str, typer.Option("--protocol", "-p", help="Protocol name (bench.py protocols list).")],
    checkpoint: Annotated[list[Path] | None, typer.Option(
        "--checkpoint", "-c", help="Backbone (or segmenter) checkpoint; repeat once per fold for k-fold protocols.")
    ] = None,
    method: Annotated[str | None, typer.Option(
        "--method", "-m", help="Method name (default: the checkpoint's); scratch needs no checkpoint.")] = None,
    seeds: SeedsOpt = None,
    root: RootOpt = None,
    cache: CacheOpt = DEFAULT_CACHE,
    results: ResultsOpt = Path("results"),
    checkpoints: CheckpointsDirOpt = Path("checkpoints"),
    preset: FtPresetOpt = None,
    overrides: FtSetOpt = None,
    protocols_dir: ProtocolsDirOpt = None,
    splits: SplitsOpt = None,
    runs: RunsOpt = Path("runs"),
    force: ForceOpt = False,
    eval_device: EvalDeviceOpt = None,
) -> None:
    """Fine-tune a pretrained backbone under a protocol, evaluate it, write result.json per seed."""
    from freepoint_bench.harness.run import Task, run_task
    from freepoint_bench.models.checkpoint import load_checkpoint

    seed_list = _seeds(seeds, ctx.args)
    given: dict[str, list[Path]] = {}
    if checkpoint:
        recorded = {load_checkpoint(c)[1].get("method") or "unknown" for c in checkpoint}
        if method is None:
            if len(recorded) != 1:
                raise ConfigError(f"the checkpoints come from several methods {sorted(recorded)}; pass --method")
            method = recorded.pop()
        given[method] = list(checkpoint)
    elif method is None:
        raise ConfigError("give --checkpoint (a pretrained backbone) or --method scratch")
    elif method != "scratch":
        raise ConfigError(f"--method {method} needs --checkpoint (pretrain it with `bench.py pretrain --method "
                          f"{method}`), or use `bench.py run`, which pretrains what is missing")
    # scratch is built from the fine-tuning model's preset (harness.run.pretrain_config), never another one
    opts = _run_options(results, checkpoints, cache, protocols_dir, root, preset, overrides, None, None, None,
                        None, force, given, runs, eval_device, splits)
    rows = []
    with _progress() as progress:
        cb = _stage_bars(progress)
        for seed in seed_list:
            task = Task(protocol, method, seed)
            rows.append((task, *run_task(task, opts, progress=cb)))
    _print_cells(rows, f"finetune {method} under {protocol}")


@app.command("run", context_settings={"allow_extra_args": True})
def run_cmd(
    ctx: typer.Context,
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated methods (freepoint,scratch,...).")],
    protocols: Annotated[str, typer.Option("--protocols", help="Comma-separated protocol names.")],
    seeds: SeedsOpt = None,
    root: RootOpt = None,
    cache: CacheOpt = DEFAULT_CACHE,
    results: ResultsOpt = Path("results"),
    checkpoints: CheckpointsDirOpt = Path("checkpoints"),
    checkpoint: Annotated[list[str] | None, typer.Option(
        "--checkpoint", help="method=PATH or method=ID (an id of checkpoints/index.json): use this checkpoint "
                             "instead of pretraining (repeatable; per fold: repeat the method).")] = None,
    preset: FtPresetOpt = None,
    overrides: FtSetOpt = None,
    pretrain_preset: Annotated[str | None, typer.Option(
        "--pretrain-preset", help="Pretraining preset (default: the protocol's, the one its fine-tuning preset goes "
                                  "with): cpu-small or paper.")] = None,
    pretrain_overrides: Annotated[list[str] | None, typer.Option(
        "--pretrain-set", help="Pretraining field: key=value (epochs1=3, ...).")] = None,
    pretrain_dataset: Annotated[str | None, typer.Option(
        "--pretrain-dataset", help="Pretrain on this dataset (default: the protocol's, scannet for the S3DIS ones; "
                                   "train-scenes: each protocol fold's own training scenes).")
    ] = None,
    pretrain_root: Annotated[Path | None, typer.Option(
        "--pretrain-root", help="Root folder of the pretraining dataset.")] = None,
    launcher: Annotated[str, typer.Option("--launcher", help="local (one after another) or slurm (submitit).")
                        ] = "local",
    shard_arg: Annotated[str | None, typer.Option("--shard", help="i/n: run only shard i of n (job arrays).")] = None,
    partition: Annotated[str | None, typer.Option("--partition", help="SLURM partition.")] = None,
    time_min: Annotated[int, typer.Option("--time", help="SLURM time limit per cell, minutes.")] = 24 * 60,
    gpus: Annotated[int, typer.Option("--gpus", help="SLURM GPUs per cell.")] = 1,
    cpus_per_task: Annotated[int | None, typer.Option(
        "--cpus-per-task", min=1, help="SLURM CPUs per job (default: 8 per GPU, for data loading and pseudo "
                                       "labels).")] = None,
    mem: Annotated[str, typer.Option("--mem", help="SLURM memory per job, in GB (64 or 64G).")] = "64G",
    protocols_dir: ProtocolsDirOpt = None,
    splits: SplitsOpt = None,
    runs: RunsOpt = Path("runs"),
    force: ForceOpt = False,
    eval_device: EvalDeviceOpt = None,
    plan_only: Annotated[bool, typer.Option(
        "--plan", help="Print every cell, what it loads or pretrains, its budget and what would stop it; train and "
                       "prepare nothing (exit 1 when a cell cannot run).")] = False,
    throughput: Annotated[Path | None, typer.Option(
        "--throughput", help="Measured throughput table (JSON) for --plan's GPU-hours (default: "
                             "benchmarks/device/throughput.json when present).")] = None,
) -> None:
    """The benchmark matrix: methods × protocols × seeds, pretraining what is missing, into the results store."""
    from freepoint_bench.harness.run import check_tasks, expand, resolve_checkpoint, run_task, submit_slurm

    given: dict[str, list[Path]] = {}
    for item in checkpoint or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--checkpoint {item!r}: expected method=PATH")
        given.setdefault(name.strip(), []).append(resolve_checkpoint(path.strip(), checkpoints))
    unused = sorted(set(given) - set(_words([methods])))
    if unused:
        raise ConfigError(f"--checkpoint {unused[0]}=...: {unused[0]} is not in --methods {methods}; add it there "
                          "or drop the checkpoint")
    tasks = expand(_words([methods]), _words([protocols]), _seeds(seeds, ctx.args))
    if shard_arg is not None:
        tasks = take_shard(tasks, *parse_shard(shard_arg))
    opts = _run_options(results, checkpoints, cache, protocols_dir, root, preset, overrides, pretrain_preset,
                        pretrain_overrides, pretrain_dataset, pretrain_root, force, given, runs, eval_device, splits)
    if plan_only:
        _print_plan(tasks, opts, throughput, elsewhere=launcher == "slurm")
        return
    check_tasks(tasks, opts)  # a cell that could not fine-tune is refused before the first one trains
    if launcher == "slurm":
        slurm = {"slurm_partition": partition, "timeout_min": time_min, "gpus_per_node": gpus,
                 "cpus_per_task": cpus_per_task or SLURM_CPUS_PER_GPU * max(gpus, 1), "mem_gb": _gigabytes(mem)}
        pre_jobs, cell_jobs = submit_slurm(tasks, opts, results / "slurm", slurm)
        ids = [job.job_id for job in cell_jobs]
        console.print(f"submitted {len(pre_jobs)} pretraining jobs and {len(ids)} cell jobs "
                      f"({', '.join(ids[:5])}{' …' if len(ids) > 5 else ''}; a cell waits for its method's "
                      f"pretraining: afterok); logs in {results / 'slurm'}; rerun `bench.py report` when they finish")
        return
    if launcher != "local":
        raise ConfigError(f"unknown launcher {launcher!r}; use local or slurm")
    rows = []
    with _progress() as progress:
        overall = progress.add_task("cells", total=len(tasks), item="")
        cb = _stage_bars(progress)
        for i, task in enumerate(tasks):
            progress.update(overall, item=f"{task.protocol} {task.method} seed {task.seed}")
            rows.append((task, *run_task(task, opts, progress=cb)))
            progress.update(overall, completed=i + 1)
    _print_cells(rows, f"benchmark run: {len(tasks)} cells")


# ---------------------------------------------------------------------------------------------- report


@app.command("report")
def report_cmd(
    results: Annotated[Path, typer.Option("--results", help="The results store that `bench.py run` fills.")] = Path(
        "results"
    ),
    formats: Annotated[
        str, typer.Option("--format", "-f", help="Comma-separated: terminal, md, csv, html, latex.")
    ] = "terminal,md,csv,html,latex",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the report's files.")] = Path("report"),
    evaluations: Annotated[
        list[Path] | None,
        typer.Option(
            "--evaluations",
            help="Class-agnostic evaluation JSONs (or folders of them) from `evaluate --json` / `--compare-json`.",
        ),
    ] = None,
) -> None:
    """The leaderboard over the results store: mean ± sd over seeds, Δ vs scratch (paired t-test), the paper quoted."""
    from freepoint_bench import report as rp

    chosen = rp.parse_formats(formats)
    rows = rp.read_evaluations(evaluations) if evaluations else []
    report = rp.build_report(rp.build_leaderboard(rp.load_results(results)), rows, source=str(results))
    if "terminal" in chosen:
        console.print(rp.to_terminal(report))
    for path in rp.write_report(report, chosen, out):
        console.print(f"wrote {path}")


def _tune_cv(cv, folds, scenes, base, tcfg, features_fn, spec, out: Path, dataset: str) -> None:
    from freepoint_bench.tuning.crossval import cross_validate, paired_gain, room_folds, write_cv_config

    if cv not in (None, "rooms"):
        raise ConfigError(f"--cv {cv!r}: the only cross-validation is by room (--cv rooms)")
    fold_list = room_folds([s.name for s in scenes], folds)
    with _progress() as progress:
        task = progress.add_task("cross-validate", total=len(fold_list), item="")

        def cb(rec: dict) -> None:
            progress.update(task, completed=rec["fold"], item="+".join(rec["held_out"]))

        result = cross_validate(
            scenes, base, tcfg, fold_list, evaluation_spec=spec, features_fn=features_fn, progress=cb
        )
    best_path = write_cv_config(result, out / "best.toml")
    metric = result.objective.upper()
    table = Table(title=f"held-out {metric} by fold on {dataset}: {len(fold_list)} folds of whole rooms")
    for col in ("fold", "held-out rooms", "scans", f"base {metric}", f"tuned {metric}", "tuned on training rooms"):
        table.add_column(col, justify="left" if col in ("held-out rooms", "tuned on training rooms") else "right")
    for i, (_, held) in enumerate(result.folds):
        params = result.fold_params[i] if result.fold_params else {}
        tuned = "-" if result.tuned is None else _fmt_pct(result.tuned.per_fold[i])
        shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())
        table.add_row(str(i + 1), "+".join(result.rooms[i]), str(len(held)), _fmt_pct(result.fixed.per_fold[i]),
                      tuned, shown)
    table.add_section()
    for name, fn in (("mean", "mean"), ("sd", "sd"), ("min", "min"), ("max", "max")):
        tuned = "-" if result.tuned is None else _fmt_pct(getattr(result.tuned, fn))
        table.add_row(name, "", "", _fmt_pct(getattr(result.fixed, fn)), tuned, "")
    pooled_tuned = "-" if result.tuned is None else _fmt_pct(result.tuned.pooled[result.objective])
    table.add_row("pooled", "all scans", str(len(scenes)), _fmt_pct(result.fixed.pooled[result.objective]),
                  pooled_tuned, "")
    console.print(table)
    gain = ""
    if result.tuned is not None:
        mean, se = paired_gain(result.fixed, result.tuned)
        gain = f"; tuned - base {100 * mean:+.1f} ± {100 * se:.1f} (se over folds)"
    console.print(f"chosen: {result.chosen} (tuned only when it gains more than one se{gain}); config: {best_path}")
    console.print(f"({result.seconds_per_scene:.1f} s per scan; use: bench.py pseudo-labels --config {best_path})")


# ---------------------------------------------------------------------------------------------- checkpoints


checkpoints_app = typer.Typer(help="Import backbone checkpoints from other codebases.", no_args_is_help=True)
app.add_typer(checkpoints_app, name="checkpoints")


@checkpoints_app.command("import")
def checkpoints_import_cmd(
    file: Annotated[Path, typer.Argument(help="The checkpoint file to import (e.g. a released PointContrast .pth).")],
    source: Annotated[str, typer.Option("--from", help="Its format: minkowski (a MinkowskiEngine Res16UNet).")],
    stem_kernel_size: Annotated[
        int, typer.Option("--stem-kernel-size", help="First conv's kernel (PointContrast / CSC: 3; Mask3D: 5).")
    ] = 3,
    preset: Annotated[str | None, typer.Option("--preset", help="Expected Res16UNet preset (default: any).")] = None,
    prefix: Annotated[str, typer.Option("--prefix", help="Key prefix of the backbone in the file, stripped.")] = "",
    voxel_size: Annotated[float, typer.Option("--voxel-size", help="Voxel edge the weights expect, metres.")] = 0.025,
    method: Annotated[
        str, typer.Option("--method", "-m", help="Method name to record (e.g. pointcontrast, csc).")
    ] = "minkowski-import",
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Its pretraining data, to record.")] = "unknown",
    scenes_file: Annotated[
        Path | None, typer.Option("--scenes-file", help="Text file of its pretraining scenes (leakage guard).")
    ] = None,
    backend: Annotated[str, typer.Option("--backend", help="Sparse backend: spconv or minkowski.")] = "spconv",
    trust_pickle: Annotated[
        bool, typer.Option("--trust-pickle", help="Allow pickled objects besides tensors (trusted files only).")
    ] = False,
    checkpoints: Annotated[
        Path, typer.Option("--checkpoints", help="Checkpoints folder (index.json, default file location).")
    ] = Path("checkpoints"),
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the backbone here instead.")] = None,
) -> None:
    """Map another codebase's backbone weights onto ours (kernel layouts converted, mismatches refused)."""
    from freepoint_bench.engine.minkowski_import import import_config, import_minkowski, read_scene_list

    if source != "minkowski":
        raise ConfigError(f"unknown checkpoint format {source!r}; supported: minkowski")
    config = import_config(stem_kernel_size=stem_kernel_size, preset=preset, prefix=prefix, voxel_size_m=voxel_size,
                           method=method, dataset=dataset, backend=backend, trust_pickle=trust_pickle,
                           scenes=read_scene_list(scenes_file) if scenes_file is not None else ())
    path, meta = import_minkowski(file, config, checkpoints, out=out)
    arch = meta["architecture"]
    table = Table(title=f"imported {file}")
    table.add_column("")
    table.add_column("value")
    table.add_row("backbone", str(path))
    table.add_row("id", meta["id"])
    table.add_row("architecture", f"Res16UNet {arch['preset']}, stem kernel {arch['stem_kernel_size']}, "
                  f"{arch['in_channels']} input channels")
    table.add_row("dropped", ", ".join(meta["source"]["dropped_keys"]) or "-")
    table.add_row("pretraining scenes", str(meta["data"]["num_scenes"]) if meta["data"]["scenes_known"] else
                  "unknown (pass --scenes-file for the leakage guard)")
    console.print(table)


# ---------------------------------------------------------------------------------------------- entry


def _quiet_lightning(record: logging.LogRecord) -> bool:
    """Returns False for Lightning's records below WARNING."""
    lightning = record.name.split(".")[0] in ("lightning", "pytorch_lightning", "lightning_fabric")
    return not lightning or record.levelno >= logging.WARNING


def main(argv: list[str] | None = None) -> None:
    """Runs the CLI; user errors print one line and exit with status 2."""
    handler = RichHandler(console=err_console, show_path=False, show_time=False)
    # Lightning logs its own INFO banners (tips, device summaries): keep the terminal for our progress bars.
    # A filter on the handler, because importing pytorch_lightning (lazily, inside commands) resets its
    # loggers' levels to INFO.
    handler.addFilter(_quiet_lightning)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler])
    # torch's MultiheadAttention asks is_fx_tracing() and torch then logs an advice for tracer authors, once
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    try:
        app(args=argv, prog_name="bench.py")  # usage errors: typer prints them and exits 2
    except FreePointError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as e:  # a write outside atomic.py (e.g. Lightning's checkpoints) on a full or read-only disk
        if e.errno not in _WRITE_ERRNOS:
            raise
        err_console.print(f"[bold red]error:[/] {e.filename or 'output'}: cannot write it ({e.strerror}); free disk "
                          "space or point the output at a writable folder", highlight=False, soft_wrap=True)
        sys.exit(2)


_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EFBIG}
