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
    source: Annotated[str, typer.Option(
        "--from", help="Its format: minkowski (a MinkowskiEngine Res16UNet) or pointcept (a Pointcept SpUNet-v1m1).")],
    stem_kernel_size: Annotated[int | None, typer.Option(
        "--stem-kernel-size", help="minkowski: first conv's kernel (PointContrast / CSC: 3, the default; Mask3D: 5).")
    ] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="Expected Res16UNet preset (default: any).")] = None,
    prefix: Annotated[str, typer.Option(
        "--prefix", help="Key prefix of the backbone in the file, stripped (pointcept: found when not given).")] = "",
    voxel_size: Annotated[float | None, typer.Option(
        "--voxel-size", help="Voxel edge the weights expect, metres (minkowski: 0.025; pointcept: 0.02).")] = None,
    method: Annotated[str | None, typer.Option(
        "--method", "-m", help="Method name to record (e.g. pointcontrast, csc, msc; default <format>-import).")
    ] = None,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Its pretraining data, to record.")] = "unknown",
    scenes_file: Annotated[
        Path | None, typer.Option("--scenes-file", help="Text file of its pretraining scenes (leakage guard).")
    ] = None,
    input_features: Annotated[str | None, typer.Option(
        "--input-features", help="pointcept: the feat_keys its config fed, comma-separated (default color,normal).")
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
    from freepoint_bench.engine.pointcept_import import import_pointcept, pointcept_import_config

    fields = {"preset": preset, "prefix": prefix, "dataset": dataset, "backend": backend, "trust_pickle": trust_pickle,
              "scenes": read_scene_list(scenes_file) if scenes_file is not None else ()}
    fields.update({k: v for k, v in (("voxel_size_m", voxel_size), ("method", method)) if v is not None})
    if source == "minkowski":
        if input_features is not None:
            raise ConfigError("--input-features is for --from pointcept; a MinkowskiEngine import takes rgb (3 "
                              "channels) or rgb and xyz (6)")
        path, meta = import_minkowski(file, import_config(stem_kernel_size=stem_kernel_size or 3, **fields),
                                      checkpoints, out=out)
    elif source == "pointcept":
        if stem_kernel_size is not None:
            raise ConfigError("--stem-kernel-size is read from a Pointcept file (conv_input.0.weight); leave it out")
        if input_features is not None:
            fields["input_features"] = tuple(f.strip() for f in input_features.split(",") if f.strip())
        path, meta = import_pointcept(file, pointcept_import_config(**fields), checkpoints, out=out)
    else:
        raise ConfigError(f"unknown checkpoint format {source!r}; supported: minkowski, pointcept")
    arch = meta["architecture"]
    table = Table(title=f"imported {file}")
    table.add_column("")
    table.add_column("value")
    table.add_row("backbone", str(path))
    table.add_row("id", meta["id"])
    table.add_row("architecture", f"Res16UNet {arch['preset']}, stem kernel {arch['stem_kernel_size']}, "
                  f"{arch['in_channels']} input channels")
    if "features" in meta["input"]:
        table.add_row("input features", ", ".join(meta["input"]["features"]))
    table.add_row("dropped", ", ".join(meta["source"]["dropped_keys"]) or "-")
    table.add_row("pretraining scenes", str(meta["data"]["num_scenes"]) if meta["data"]["scenes_known"] else
                  "unknown (pass --scenes-file for the leakage guard)")
    console.print(table)
