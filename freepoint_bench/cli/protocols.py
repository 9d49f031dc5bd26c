"""`bench.py protocols`: list, show and freeze the fine-tuning protocols."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from freepoint_bench.cli.common import (
    DEFAULT_CACHE,
    CacheOpt,
    ProtocolsDirOpt,
    RootOpt,
    SplitRootOpt,
    SplitsOpt,
    console,
    lazy_bar,
    progress_bars,
)

app = typer.Typer(help="List, show and freeze the fine-tuning protocols (protocols/*.toml).", no_args_is_help=True)


@app.command("list")
def protocols_list(protocols_dir: ProtocolsDirOpt = None, splits: SplitsOpt = None,
                   split_root: SplitRootOpt = None) -> None:
    """Table of the protocols: task, dataset, unit, fraction, folds, preset, split state."""
    from freepoint_bench.harness.protocol import available_protocols, frozen_splits_dir, load_protocol, split_state

    splits_dir = frozen_splits_dir(splits=splits)
    table = Table(title="fine-tuning protocols")
    table.add_column("protocol", no_wrap=True)
    for col in ("task", "dataset", "unit", "fraction", "train / eval", "preset", "split"):
        table.add_column(col)
    for name in available_protocols(protocols_dir):
        spec = load_protocol(name, protocols_dir)
        groups = f"{spec.num_folds}-fold" if spec.folds else \
            f"{len(spec.train_groups)} groups / " + (  # ScanNet val: 142 rooms
                ','.join(spec.eval_groups) if len(spec.eval_groups) <= 3 else f"{len(spec.eval_groups)} groups")
        table.add_row(name, spec.task, spec.dataset, spec.unit, f"{spec.fraction:g}", groups, spec.preset,
                      split_state(spec, protocols_dir, splits_dir, split_root))
    console.print(table)


@app.command("show")
def protocols_show(name: Annotated[str, typer.Argument(help="Protocol name.")],
                   protocols_dir: ProtocolsDirOpt = None, splits: SplitsOpt = None,
                   split_root: SplitRootOpt = None) -> None:
    """Every field of a protocol, its hash, and its split file's state."""
    from freepoint_bench.harness.protocol import frozen_splits_dir, load_protocol, load_split, split_path

    spec, splits_dir = load_protocol(name, protocols_dir), frozen_splits_dir(splits=splits)
    console.print(json.dumps(spec.model_dump(mode="json"), indent=2))
    console.print(f"protocol hash {spec.content_hash()}")
    if spec.official_file is not None and split_root is None:
        console.print(f"split: ScanNet's official {spec.official_file}, read as published (--split-root <folder>)")
        return
    path = split_path(spec, protocols_dir, splits_dir, split_root)
    if path is not None and path.is_file():
        doc, sha = load_split(spec, protocols_dir, splits_dir, split_root)
        kept = len(doc.get("train_scenes", [])) or doc.get("num_masks") or len(doc.get("points", {}))
        if spec.official_file is not None:  # the file lists what is kept, not what it was chosen from
            console.print(f"split {path}: sha256 {sha}, {kept} scenes listed")
        else:
            console.print(f"split {path}: sha256 {sha}, {kept} of {doc.get('candidates')} {spec.unit} kept")
    elif path is not None:
        console.print(f"split {path}: not frozen yet (`bench.py protocols freeze {name}`)")


@app.command("freeze")
def protocols_freeze(
    name: Annotated[str, typer.Argument(help="Protocol name.")],
    root: RootOpt = None,
    cache: CacheOpt = DEFAULT_CACHE,
    protocols_dir: ProtocolsDirOpt = None,
    splits: SplitsOpt = None,
) -> None:
    """Write a protocol's split file once (masks: from your copy of the data) into --splits and print its sha256
    (a pinned split is checked against the shipped file, which is never written)."""
    from freepoint_bench.harness.protocol import freeze_split, frozen_splits_dir, load_protocol
    from freepoint_bench.harness.run import RunOptions, freeze_from_data

    spec, splits_dir = load_protocol(name, protocols_dir), frozen_splits_dir(splits=splits)
    if spec.unit == "scenes" and root is None and spec.room_list is not None:
        path, sha = freeze_split(spec, protocols_dir=protocols_dir, splits_dir=splits_dir)
    else:
        store, names = _open_protocol(spec, RunOptions(root=root, cache=cache))
        with progress_bars() as progress:
            task = progress.add_task(f"freeze {name}", total=None, item="")
            path, sha = freeze_from_data(
                spec, store, names, protocols_dir, splits_dir,
                progress=lambda done, total, scene: progress.update(task, completed=done, total=total, item=scene))
    console.print(f"{'matches the shipped' if spec.split_sha256 else 'wrote'} {path}\nsha256 {sha}")


def _open_protocol(spec, opts):
    from freepoint_bench.harness.run import open_protocol_data

    with progress_bars() as progress:
        return open_protocol_data(spec, opts, progress=lazy_bar(progress, f"prepare {spec.dataset}"))
