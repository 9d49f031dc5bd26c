"""`bench.py pretrain`: pretrain a backbone with a pretext method."""

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
    LoggerDirOpt,
    LoggerOpt,
    RootOpt,
    ScenesOpt,
    console,
    open_store,
    progress_bars,
    select_split,
    stage_bars,
    tracker_option,
)
from freepoint_bench.errors import ConfigError


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
    logger: LoggerOpt = "csv",
    logger_dir: LoggerDirOpt = None,
) -> None:
    """Pretrain a backbone with a pretext method (FreePoint: pseudo masks, then two-step training)."""
    from freepoint_bench.engine.trainer import check_devices
    from freepoint_bench.freepoint.config import parse_overrides
    from freepoint_bench.harness.run import named_pretrain_run_dir
    from freepoint_bench.pretext.base import get_method

    if resume and overwrite:
        raise ConfigError("--resume and --overwrite: give one (continue the run in --out, or discard it)")
    check_devices(devices, nodes)  # also for methods that do not train (scratch), so a typo is never ignored
    tracker = tracker_option(logger, logger_dir)
    impl = get_method(method)
    fields = parse_overrides(overrides or [])
    if epochs is not None:
        fields["epochs"] = epochs
    if epochs1 is not None:
        fields["epochs1"] = epochs1
    if epochs2 is not None:
        fields["epochs2"] = epochs2
    cfg = impl.default_config(preset, **fields)
    store, names = open_store(dataset, root, cache, scene)
    names = select_split(store, names, None if scene else split)
    run_dir = out or named_pretrain_run_dir(method, dataset)
    from pytorch_lightning.utilities import rank_zero_only

    # under DDP Lightning starts this command again for every other rank: only rank 0 reports
    is_zero = rank_zero_only.rank == 0
    t0 = time.perf_counter()
    with progress_bars(disable=not is_zero) as progress:
        cb = stage_bars(progress)
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
            tracker=tracker,
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
