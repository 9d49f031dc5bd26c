"""What the command groups share: the consoles, the options, progress bars, opening a scene store, parsing lists."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from freepoint_bench.data import catalogue
from freepoint_bench.errors import ConfigError, DataError

console = Console()
err_console = Console(stderr=True)

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
PresetOpt = Annotated[
    str | None,
    typer.Option("--config-preset", help="Named baseline config: default or plain (a plain reading of §3)."),
]
ProtocolsDirOpt = Annotated[
    Path | None, typer.Option("--protocols-dir", help="Protocols folder (default: the repository's protocols/).")
]
ResultsOpt = Annotated[Path, typer.Option("--results", help="Results store: <results>/<protocol>/<method>/seed-<k>/.")]
SplitsOpt = Annotated[Path | None, typer.Option(
    "--splits", help="Folder of the splits frozen from your data, <protocol>.json (default: <results>/splits; "
    "the shipped, pinned splits are read from the protocols folder).")]
SplitRootOpt = Annotated[Path | None, typer.Option(
    "--split-root", help="Folder holding the official split files a protocol reads as published (ScanNet's "
    "data-efficient tasks/scenes/*.txt and tasks/points/points*, from download-scannet.py --data_efficient; "
    "default: the data root).")]
LoggerOpt = Annotated[str, typer.Option(
    "--logger", help="Experiment tracker every training stage logs to as well: csv (its CSV log alone, the "
    "default), tensorboard, wandb (offline unless WANDB_MODE says otherwise) or mlflow (a local file store); the "
    "last three need: pip install 'freepoint-bench[trackers]'.")]
LoggerDirOpt = Annotated[Path | None, typer.Option(
    "--logger-dir", help="One folder for every stage's and cell's tracker logs (default: each stage's own, "
    "<stage folder>/logs/<logger>).")]


def tracker_option(kind: str, save_dir: Path | None):
    """Returns the engine.loggers.Tracker of --logger / --logger-dir; ConfigError for an unknown logger or a
    missing package, before anything is prepared or trained."""
    from freepoint_bench.engine.loggers import make_tracker

    return make_tracker(kind, save_dir)


def progress_bars(disable: bool = False) -> Progress:
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


def lazy_bar(progress: Progress, label: str):
    """Returns a progress(done, total, name) callback whose bar appears with its first call (none when no work)."""
    task = None

    def cb(done: int, total: int, name: str) -> None:
        nonlocal task
        if task is None:
            task = progress.add_task(label, total=total, item="")
        progress.update(task, completed=done, total=total, item=name)

    return cb


def count_bar(progress: Progress, label: str, total: int | None):
    """Returns a progress(done, total, name) callback over a bar of `total` items shown from now on."""
    task = progress.add_task(label, total=total, item="")

    def cb(done: int, total: int, name: str) -> None:
        progress.update(task, completed=done, item=name)

    return cb


def stage_bars(progress: Progress) -> Callable[[str, int, int, str], None]:
    """Returns a progress(stage, done, total, info) callback with one bar per stage."""
    tasks: dict[str, int] = {}

    def cb(stage: str, done: int, total: int, info: str) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total, item="")
        progress.update(tasks[stage], completed=done, total=total, item=info)

    return cb


def fmt_pct(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def open_store(dataset: str, root: Path | None, cache: Path, names: list[str] | None = None):
    """Returns (store, names) for (dataset, root), preparing missing scenes into the cache with a progress bar."""
    from freepoint_bench.data.open import open_dataset

    with progress_bars() as progress:
        return open_dataset(dataset, root, cache, names, progress=lazy_bar(progress, f"prepare {dataset}"))


def parse_device(name: str) -> str:
    """Returns the torch device `--device name` means (auto: cuda when torch sees a GPU); ConfigError for a GPU
    this machine lacks."""
    from freepoint_bench.engine.devices import resolve_device

    return str(resolve_device(name))


def select_split(store, wanted: list[str], split: str | None) -> list[str]:
    if split is None:
        return wanted
    chosen = [n for n in wanted if n in set(store.names(split=split))]
    if not chosen:
        raise DataError(f"no scenes of split {split!r} among the {len(wanted)} selected; check --split/--scene")
    return chosen


def floats(values: list[str] | None, what: str) -> list[float] | None:
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


def words(values: list[str] | None) -> list[str]:
    return [w for v in values or [] for w in v.replace(",", " ").split()]


def pseudo_config(config: Path | None, overrides: list[str] | None, preset: str | None = None):
    from freepoint_bench.freepoint.config import PseudoLabelConfig

    if config is not None and preset is not None:
        raise ConfigError(f"--config {config} and --config-preset {preset}: give one (a TOML holds every field)")
    if config is not None:
        cfg = PseudoLabelConfig.from_toml(config)
    else:
        cfg = PseudoLabelConfig.preset(preset or "default")
    return cfg.with_overrides(overrides) if overrides else cfg
