"""`bench.py checkpoints import`: backbone weights from other codebases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from freepoint_bench.cli.common import console
from freepoint_bench.errors import ConfigError

app = typer.Typer(help="Import backbone checkpoints from other codebases.", no_args_is_help=True)


@app.command("import")
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
