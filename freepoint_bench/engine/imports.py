"""What every import of another codebase's backbone weights shares (engine.minkowski_import, engine.pointcept_import):
the settings each takes, the check of the file's keys against the ones the architecture needs, and the registration
of the converted backbone.

    meta = publish_import(path, config, model, input={...}, source={"format": ...}, checkpoints_dir="checkpoints")

An import converts the file itself; publish_import then records it like any pretraining's checkpoint: the method,
the pretraining data and scenes (the harness's leakage guard reads them), the architecture, the input the weights
expect, the file's sha256, and the id `<method>-<dataset>-<hash of the file and the settings>` in
checkpoints/index.json.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from freepoint_bench.atomic import stable_hash
from freepoint_bench.engine.checkpoints import code_version, environment, publish_checkpoints
from freepoint_bench.errors import CheckpointError, ConfigError
from freepoint_bench.models.backbone import Preset


class ImportConfig(BaseModel):
    """The settings every import takes; a format's config adds its own and sets its defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: Preset | None = None  # the Res16UNet preset the file must be (None: the one its shapes give, e.g. 34C)
    prefix: str = ""  # key prefix of the backbone inside the file, stripped
    voxel_size_m: float = Field(0.02, gt=0)  # voxel edge the weights were trained on, metres
    bn_momentum: float = Field(0.02, gt=0, le=1)  # BatchNorm momentum for further training
    backend: Literal["spconv", "minkowski"] = "spconv"  # sparse backend the imported backbone runs on
    method: str = "import"  # recorded as the checkpoint's method (e.g. pointcontrast, msc)
    dataset: str = "unknown"  # the pretraining data, recorded in the metadata and the id (e.g. scannet)
    scenes: tuple[str, ...] = ()  # the scenes it was pretrained on, if known (the harness's leakage guard reads them)
    trust_pickle: bool = False  # allow files holding pickled objects besides tensors (unsafe for untrusted files)


def check_method(config: ImportConfig, example: str) -> None:
    """ConfigError when config.method cannot name imported weights (empty, or scratch's)."""
    if config.method in ("", "scratch"):
        raise ConfigError(f"method {config.method!r} cannot name imported weights; use e.g. {example}")


def _some(keys: list[str]) -> str:
    return f"{keys[:8]}{' ...' if len(keys) > 8 else ''} ({len(keys)})"


def match_keys(state: Mapping[str, Any], wanted: Iterable[str], head_prefix: str, fits: str,
               hint: str = "") -> list[str]:
    """Returns the sorted keys of `state` under `head_prefix` (heads the backbone drops). CheckpointError, one line
    starting with `fits` (e.g. "<file>: does not fit a Res16UNet 34C") and ending with `hint`, naming the first of
    the `wanted` keys the file lacks and of its other keys the architecture has no place for, with their counts."""
    wanted = set(wanted)
    dropped = sorted(k for k in state if k.startswith(head_prefix))
    missing = sorted(k for k in wanted if k not in state)
    unexpected = sorted(set(state) - wanted - set(dropped))
    if missing or unexpected:
        raise CheckpointError(f"{fits}: missing keys {_some(missing)}, unexpected keys {_some(unexpected)}{hint}")
    return dropped


def publish_import(path: Path, config: ImportConfig, model: nn.Module, *, input: dict[str, Any],
                   source: dict[str, Any], checkpoints_dir: Path,
                   out: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Returns (written backbone checkpoint, its metadata) of `model` converted from the file `path`, published
    (publish_checkpoints) into checkpoints_dir/index.json under `<method>-<dataset>-<hash>` (out: the file, default
    checkpoints_dir/<id>-backbone.ckpt; importing the same file again keeps the one written). input: the metadata's
    "input" entry (what the weights expect); source: the format's entries of "source", after path and sha256."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    meta: dict[str, Any] = {
        "method": config.method,
        "config": config.model_dump(mode="json"),
        "data": {"dataset": config.dataset, "store": None, "num_scenes": len(config.scenes),
                 "scenes_hash": stable_hash(sorted(config.scenes)), "scenes": sorted(config.scenes),
                 "scenes_known": bool(config.scenes)},
        "architecture": model.architecture(),
        "backend": config.backend,
        "input": input,
        "source": {"path": str(path.resolve()), "sha256": digest, **source},
        "metrics": {},
        "code_version": code_version(),
        "environment": environment(),
    }
    run_id = f"{config.method}-{config.dataset}-{stable_hash(digest, meta['config'], length=10)}"
    meta["id"] = run_id
    target = Path(out) if out is not None else checkpoints_dir / f"{run_id}-backbone.ckpt"
    meta, _ = publish_checkpoints(checkpoints_dir, run_id, meta, {"backbone": (target, model)})
    return target, meta
