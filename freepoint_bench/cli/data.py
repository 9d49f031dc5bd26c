"""`bench.py data`: prepare, list and render datasets, compute their colour statistics, and write synthetic S3DIS
rooms."""

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
    ProtocolsDirOpt,
    RootOpt,
    ScenesOpt,
    console,
    count_bar,
    open_store,
    progress_bars,
)
from freepoint_bench.errors import ConfigError, DataError

app = typer.Typer(help="Prepare, list and render datasets.", no_args_is_help=True)


@app.command("prepare")
def data_prepare(
    dataset: DatasetOpt,
    root: RootOpt = None,
    cache: CacheOpt = DEFAULT_CACHE,
    scene: ScenesOpt = None,
) -> None:
    """Convert a dataset once into the scene cache (one compressed file per scene, resumable)."""
    t0 = time.perf_counter()
    store, names = open_store(dataset, root, cache, scene)
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


@app.command("list")
def data_list(dataset: DatasetOpt, root: RootOpt = None, cache: CacheOpt = DEFAULT_CACHE) -> None:
    """List the scenes of a dataset with their split and size (prepares the cache if needed)."""
    store, names = open_store(dataset, root, cache)
    table = Table(title=f"{dataset}: {len(names)} scenes")
    for col in ("scene", "split", "points", "instances"):
        table.add_column(col)
    for name in names:
        info = store.info(name)
        table.add_row(
            name, info.get("split", "?"), f"{info.get('num_points', 0):,}", str(info.get("num_instances", ""))
        )
    console.print(table)


@app.command("show")
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
    from freepoint_bench.data.render import COLOR_BY, render_panels, render_scene, scene_colors, write_colored_ply

    if color_by not in COLOR_BY:
        raise ConfigError(f"--color-by {color_by!r}: choose {', '.join(COLOR_BY[:-1])} or {COLOR_BY[-1]}")
    store, _ = open_store(dataset, root, cache, [scene])
    s = store.load(scene)
    truth = "instance" if s.instance is not None else "rgb"  # the ground truth as far as the scene has it
    if labels is not None:
        from freepoint_bench.freepoint.pipeline import available_sigmas, load_pseudo_labels

        sigmas = available_sigmas(labels, scene)
        if not sigmas:
            raise DataError(f"{labels}: no pseudo labels for scene {scene!r}; run `bench.py pseudo-labels` first")
        panels: dict = {"ground truth": truth}
        for sigma in sigmas:
            panels[f"σ = {sigma:g}"] = load_pseudo_labels(labels, scene, sigma)
        render_panels(s, panels, out)
    else:
        render_scene(s, out, color_by=color_by, title=f"{dataset}: {scene} ({color_by})")
    console.print(f"wrote {out}")
    if ply is not None:
        write_colored_ply(s, scene_colors(s, truth if color_by == "instance" else color_by, f"--ply {ply}"), ply)
        console.print(f"wrote {ply}")


@app.command("synth-s3dis")
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
    with progress_bars() as progress:
        task = progress.add_task("synth-s3dis", total=rooms, item="")
        names = write_synthetic_s3dis(out, rooms, seed=seed, config=SyntheticConfig(num_points=points),
                                      progress=lambda done, name: progress.update(task, completed=done, item=name))
    areas = sorted({n.split("/")[0] for n in names})
    console.print(f"wrote {len(names)} rooms to {out} ({', '.join(areas)}); use it as --root with --dataset s3dis")


@app.command("color-stats")
def data_color_stats(
    dataset: DatasetOpt,
    root: RootOpt = None,
    cache: CacheOpt = DEFAULT_CACHE,
    group: Annotated[list[str] | None, typer.Option(
        "--group", "-g", help="Only scenes of this group (S3DIS: Area_N; repeatable).")] = None,
    protocol: Annotated[str | None, typer.Option(
        "--protocol", help="Only the training groups of this protocol (its fold --fold).")] = None,
    fold: Annotated[int, typer.Option("--fold", help="With --protocol: the fold whose training groups count.")] = 0,
    protocols_dir: ProtocolsDirOpt = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the statistics as JSON here.")] = None,
) -> None:
    """Colour mean and std of a dataset's scenes by Mask3D's rule, as --set color_mean=... color_std=... for
    input_features=rgb (S3DIS: over the training areas, e.g. --protocol s3dis-10pct-masks)."""
    from freepoint_bench.data.colour_stats import colour_mean_std

    if group and protocol:
        raise ConfigError("--group and --protocol both name the scenes: give one of them")
    groups = list(group or [])
    if protocol is not None:
        from freepoint_bench.harness.protocol import load_protocol

        spec = load_protocol(protocol, protocols_dir)
        if spec.dataset != dataset:
            raise ConfigError(f"--protocol {protocol} is on dataset {spec.dataset!r}, not {dataset!r}; "
                              f"give --dataset {spec.dataset}")
        groups = spec.fold_groups(fold)[0]
    store, names = open_store(dataset, root, cache)
    if groups:
        from freepoint_bench.harness.protocol import scenes_of

        names = scenes_of(names, groups, dataset)
        if not names:
            raise DataError(f"{dataset} at {root}: no scenes of the groups {', '.join(groups)}; check --root and "
                            "the group names (bench.py data list shows the scenes)")
    with progress_bars() as progress:
        bar = count_bar(progress, "color stats", len(names))
        stats = colour_mean_std((store.load(n) for n in names), progress=lambda done, n: bar(done, len(names), n))
    where = f" of {', '.join(groups)}" if groups else ""
    console.print(f"{stats.num_scenes} scenes{where} (Mask3D's rule: per-scene means averaged, colours in 0..1):")
    console.print(f"--set color_mean=[{','.join(map(str, stats.mean))}] "
                  f"--set color_std=[{','.join(map(str, stats.std))}]", soft_wrap=True, highlight=False)
    if json_out is not None:
        from freepoint_bench.atomic import write_json

        write_json(json_out, {"dataset": dataset, "groups": groups, "scenes": stats.num_scenes,
                              "color_mean": list(stats.mean), "color_std": list(stats.std)})
        console.print(f"wrote {json_out}")
