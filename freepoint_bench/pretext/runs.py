"""A pretraining run's folder, provenance and publishing, the same for every pretext method.

    prepare_run(out_dir, run_record(name, config, names), resume=..., overwrite=..., stages=("train",))
    meta = checkpoint_metadata(name, store, names, config, config.train, module.backbone)   # provenance
    ... train each stage (pretext.training.train_stage) ...
    result = publish({**meta, "metrics": metrics}, {"backbone": module.backbone}, checkpoints_dir)   # the one door

publish goes through engine.checkpoints (publish_checkpoints: save_model_checkpoint each part, then the index).

A run folder holds out_dir/run.json: the method, its config and the scene list (a resume must match them), plus
the code version and environment of every start and resume (CODE_VERSIONS); each stage of the method writes its
own subfolder. A published checkpoint follows the checkpoint contract (engine.checkpoints): the metadata of
checkpoint_metadata plus "metrics" and "id" = <method>-<dataset>-<hash of config and data>, written to
checkpoints_dir/<id>-<part>.ckpt and listed in checkpoints_dir/index.json.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pytorch_lightning.utilities import rank_zero_only
from torch import nn

from freepoint_bench.atomic import stable_hash, write_json
from freepoint_bench.engine.checkpoints import (
    code_version,
    data_description,
    environment,
    input_metadata,
    publish_checkpoints,
)
from freepoint_bench.engine.presets import TrainPreset
from freepoint_bench.errors import ConfigError
from freepoint_bench.pretext.base import PretrainResult

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
CODE_VERSIONS = "code_versions"  # run.json: the code version of every start and resume of the run


# ---------------------------------------------------------------------------------------------- run folder


def run_record(method: str, config: BaseModel, names: Sequence[str]) -> dict[str, Any]:
    """Returns the run.json content that a resume must match: method, config (model_dump) and scenes."""
    return {"method": method, "config": config.model_dump(mode="json"), "scenes": sorted(names)}


def prepare_run(
    out_dir: Path, run: dict[str, Any], resume: bool, overwrite: bool, stages: Sequence[str] = ("train",)
) -> None:
    """Checks `out_dir` against `run` and (re)writes its run.json with this start's code version and environment.

    A folder with another run's run.json needs resume=True (and then the same method, config and scenes:
    ConfigError naming the differing fields; other code or another environment is warned about and recorded,
    since finished stages keep the weights trained there) or overwrite=True (which deletes the old run's
    `stages` subfolders). Only rank 0 touches the folder (DDP runs this on every rank).
    """
    if rank_zero_only.rank != 0:
        return
    run_file = Path(out_dir) / RUN_FILE
    versions: list[dict] = []
    if run_file.is_file():
        if resume:
            old = read_json(run_file)
            versions = list(old.pop(CODE_VERSIONS, []))
            diffs = differences(old, run)
            if diffs:
                raise ConfigError(
                    f"{run_file}: cannot resume, the run was started with different settings: "
                    + "; ".join(diffs)
                    + ". Use the original settings, or overwrite / another out dir"
                )
            _warn_code_change(run_file, versions)
            changed = environment_changes([v["environment"] for v in versions if "environment" in v], environment())
            if changed:
                log.warning(
                    "%s: resuming in another environment (%s); finished stages keep the weights trained "
                    "there, and runs reproduce bit for bit only in one environment",
                    run_file,
                    changed,
                )
        elif overwrite:
            for stage in stages:
                shutil.rmtree(Path(out_dir) / stage, ignore_errors=True)
            run_file.unlink()
        else:
            raise ConfigError(
                f"{out_dir} already holds a pretraining run; pass resume (--resume) to continue it, "
                "overwrite (--overwrite) to start again, or choose another out dir"
            )
    write_json(run_file, {**run, CODE_VERSIONS: [*versions, {**code_version(), "environment": environment()}]})


def _warn_code_change(run_file: Path, versions: list[dict]) -> None:
    """Warns when the run being resumed was started (or resumed) with other code than this, or this is dirty."""
    now = code_version()
    earlier = {(v.get("git_commit"), v.get("git_dirty")) for v in versions}
    if versions and (earlier != {(now["git_commit"], now["git_dirty"])} or now["git_dirty"]):
        shown = ", ".join(f"{(c or 'unknown')[:10]}{' (dirty)' if d else ''}" for c, d in sorted(earlier, key=str))
        log.warning(
            "%s: resuming a run started with code %s using code %s%s; its finished stages keep the weights "
            "the earlier code trained (overwrite to train everything with this code)",
            run_file,
            shown,
            (now["git_commit"] or "unknown")[:10],
            " (dirty)" if now["git_dirty"] else "",
        )


def read_json(path: Path) -> dict:
    """Returns a run record (run.json, a stage's done.json); ConfigError naming the file when it is unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable run record ({e}); delete the run dir to restart") from None


def environment_changes(earlier: list[dict], now: dict) -> str:
    """Returns "key: old -> new, ..." of what differs between the last of the earlier environments and now
    (the platform string aside: a kernel update does not change floating point); "" when nothing does."""
    if not earlier:
        return ""

    def flat(env: dict) -> dict:
        return {**{k: v for k, v in env.items() if k not in ("packages", "platform")}, **env.get("packages", {})}

    old, new = flat(earlier[-1]), flat(now)
    return ", ".join(
        f"{k}: {old.get(k)} -> {new.get(k)}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
    )


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def differences(old: dict, new: dict) -> list[str]:
    """Returns "field: old → new" for every differing dotted field of two run records (scene lists summarised)."""
    diffs = []
    if old.get("scenes") != new.get("scenes"):
        a, b = set(old.get("scenes", [])), set(new.get("scenes", []))
        diffs.append(f"scenes: {len(a - b)} removed, {len(b - a)} added")
    fo = _flatten({k: v for k, v in old.items() if k != "scenes"})
    fn = _flatten({k: v for k, v in new.items() if k != "scenes"})
    for key in sorted(set(fo) | set(fn)):
        if fo.get(key, "<unset>") != fn.get(key, "<unset>"):
            diffs.append(f"{key}: {fo.get(key, '<unset>')!r} → {fn.get(key, '<unset>')!r}")
    return diffs


# ---------------------------------------------------------------------------------------------- provenance


def checkpoint_metadata(
    method: str,
    store: Any,
    names: Sequence[str],
    config: BaseModel,
    preset: TrainPreset,
    model: nn.Module,
    input_extra: dict[str, Any] | None = None,
    data_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Returns the contract's checkpoint metadata (all but "metrics" and "id") of `model` (anything with an
    architecture()) trained on `names`. input_extra: what the method feeds differently from engine.data.make_sample
    (e.g. {"rgb": "zeroed"}); data_extra: what else describes its data (FreePoint: its pseudo-label folder)."""
    return {
        "method": method,
        "config": config.model_dump(mode="json"),
        "data": {**data_description(store, sorted(names)), **(data_extra or {})},
        "architecture": model.architecture(),
        "backend": preset.backend,
        "input": {**input_metadata(preset), **(input_extra or {})},
        "code_version": code_version(),
        "environment": environment(),
    }


# ---------------------------------------------------------------------------------------------- publishing


def checkpoint_id(meta: dict[str, Any]) -> str:
    """Returns the id a pretraining with this metadata is published under: <method>-<dataset>-<hash of its config
    and data description>."""
    return f"{meta['method']}-{meta['data']['dataset']}-{stable_hash(meta['config'], meta['data'], length=10)}"


def publish(
    meta: dict[str, Any], parts: dict[str, nn.Module], checkpoints_dir: str | Path, write: bool = True
) -> PretrainResult:
    """Returns the PretrainResult of `parts` ({"backbone": ..., optionally "segmenter": ...}) with `meta` (from
    checkpoint_metadata, plus "metrics"), each written (write=True; DDP: rank 0 only) to
    checkpoints_dir/<id>-<part>.ckpt and registered in checkpoints_dir/index.json under its checkpoint_id
    (engine.checkpoints.publish_checkpoints; a rerun of a finished pretraining keeps its files)."""
    run_id = checkpoint_id(meta)
    meta = {**meta, "id": run_id}
    paths = {part: Path(checkpoints_dir) / f"{run_id}-{part}.ckpt" for part in parts}
    if write:
        meta, written = publish_checkpoints(
            checkpoints_dir, run_id, meta, {part: (paths[part], model) for part, model in parts.items()}
        )
        log.info("%s %s", "wrote" if written else "kept", " and ".join(str(p) for p in paths.values()))
    return PretrainResult(
        method=meta["method"], backbone=paths["backbone"], segmenter=paths.get("segmenter"), metadata=meta
    )

