"""The checkpoint doors: one to save a model with its metadata, one to load one, one to publish into the index.

    save_model_checkpoint(path, model, metadata)                  # atomic, with part, config and "created"
    model, meta = load_model(path, part="backbone")               # rebuilt from the recorded config, checked
    _, meta = load_model(path, "backbone", into=model)            # or loaded strictly into a model of yours
    meta, written = publish_checkpoints(checkpoints_dir, run_id, metadata, {"backbone": (path, model)})

models.checkpoint is the file format under them (tensors + JSON metadata, integrity sha256s, architecture check).
Besides the doors: the metadata a checkpoint records (code_version, environment, data_description, input_metadata,
and input_preset to read its input back) and the checkpoints index (read_index, rebuild_index, and
register_checkpoint, the index write publish_checkpoints makes).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

import freepoint_bench
from freepoint_bench.atomic import CHECKSUM_KEY, checksum_ok, stable_hash, with_checksum, write_json
from freepoint_bench.engine.data import input_record, recorded_input_settings
from freepoint_bench.engine.presets import TrainPreset
from freepoint_bench.errors import CheckpointError, ConfigError
from freepoint_bench.models.backbone import BackboneConfig, Res16UNet
from freepoint_bench.models.checkpoint import load_checkpoint, load_into, save_checkpoint, weights_sha256
from freepoint_bench.models.segmenter import InstanceSegmenter, SegmenterConfig, build_segmenter

log = logging.getLogger(__name__)

INDEX_VERSION = 1


@lru_cache(maxsize=1)
def code_version() -> dict[str, str | None]:
    """Returns {"version": __version__, "git_commit": HEAD or None, "git_dirty": bool or None}."""
    root = Path(freepoint_bench.__file__).resolve().parent.parent
    commit, dirty = None, None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip() or None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=5, check=True).stdout
        dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return {"version": freepoint_bench.__version__, "git_commit": commit, "git_dirty": dirty}


# Packages whose versions can change a run's numbers (one float operation ordered differently in a
# kernel is enough: training amplifies it, README "Repeat runs").
ENV_PACKAGES = ("torch", "numpy", "scipy", "spconv", "pytorch-lightning", "MinkowskiEngine", "fpsample", "bioimage-cpp")


def environment() -> dict[str, Any]:
    """Returns what besides the code decides a run's floating-point results: {"python", "platform",
    "cpu_capability" (the SIMD level torch's CPU kernels use, e.g. AVX2 / AVX512), "torch_threads", "cuda"
    (torch's CUDA version or None), "gpu" (device 0's name or None), "packages": {name: version or None}}."""
    import importlib.metadata
    import platform

    packages: dict[str, str | None] = {}
    for name in ENV_PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "packages": packages,
    }


def data_description(store: Any, names: list[str]) -> dict[str, Any]:
    """Returns {"dataset", "store", "num_scenes", "scenes_hash", "scenes" (every name, sorted)} of a training set.

    Every name is kept: the harness's leakage guard refuses a checkpoint whose pretraining scenes include a
    protocol's evaluation scenes (the checkpoints index leaves the list out)."""
    dataset = None
    info = getattr(store, "info", None)
    if callable(info) and names:
        with contextlib.suppress(Exception):
            dataset = info(names[0]).get("dataset")
    root = getattr(store, "root", None)
    if dataset is None and root is not None:
        dataset = Path(root).name.split("-")[0] or None
    return {
        "dataset": dataset or "unknown",
        "store": None if root is None else str(root),
        "num_scenes": len(names),
        "scenes_hash": stable_hash(sorted(names)),
        "scenes": sorted(names),
    }


def _model_metadata(model: nn.Module, metadata: dict[str, Any]) -> dict[str, Any]:
    """Returns `metadata` as save_model_checkpoint records it for `model` (part, its config; no "created")."""
    meta = json.loads(json.dumps(metadata, default=str))  # plain JSON types only: weights_only-safe
    meta.pop("architecture", None)  # save_checkpoint records the saved module's own architecture
    if isinstance(model, InstanceSegmenter):
        meta.update(part="segmenter", model_config=model.config.model_dump(mode="json"))
    elif isinstance(model, Res16UNet):
        meta.update(part="backbone", backbone_config=model.config.model_dump(mode="json"))
    elif not hasattr(model, "architecture"):  # another model (supervised's segmentation) describes itself
        raise TypeError(f"save_model_checkpoint: cannot describe a {type(model).__name__} (no architecture())")
    return meta


def save_model_checkpoint(path: str | Path, model: nn.Module, metadata: dict[str, Any]) -> Path:
    """Writes `model`'s state dict + `metadata` to `path` (atomic, weights_only-loadable); returns it.

    Recorded besides `metadata`: "architecture" (the model's own), and for a segmenter or a backbone its "part", its
    config ("model_config" / "backbone_config", from which load_model rebuilds it) and "created" (unless given).
    Another model (supervised's segmentation) is saved with `metadata` as given (its keys are pinned)."""
    meta = _model_metadata(model, metadata)
    if "part" in meta:
        meta.setdefault("created", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    return save_checkpoint(path, model, meta)


# what says when, by which code and on which machine a checkpoint was written, not what it holds
_PROVENANCE_KEYS = ("created", "code_version", "environment", "integrity", "format_version")


def _publish_file(path: Path, model: nn.Module, metadata: dict[str, Any]) -> dict[str, Any] | None:
    """Writes `model` to `path` like save_model_checkpoint and returns None, unless `path` already holds a valid
    checkpoint of these very weights with this metadata (a resumed run publishing its finished pretraining again):
    that file is kept as it is (inode, and the provenance of the run that trained it: "created", code version,
    environment), and its provenance is returned."""
    path = Path(path)
    if path.is_file():
        try:
            _, old = load_checkpoint(path)  # integrity checked: the recorded weights sha256 is the file's
        except CheckpointError as e:
            log.warning("%s; publishing it again", e)
        else:
            new = _model_metadata(model, metadata)
            if hasattr(model, "architecture"):
                new.setdefault("architecture", json.loads(json.dumps(model.architecture())))
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            same_weights = old.get("integrity", {}).get("weights_sha256") == weights_sha256(state)
            strip = lambda m: {k: v for k, v in m.items() if k not in _PROVENANCE_KEYS}  # noqa: E731
            if same_weights and strip(old) == strip(new):
                log.info("%s already holds these weights; kept", path)
                return {k: old[k] for k in ("created", "code_version", "environment") if k in old}
    save_model_checkpoint(path, model, metadata)
    return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(path.suffix + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_index(index_path: str | Path) -> dict[str, Any]:
    """Returns the checkpoints index {"version", "checkpoints": {id: entry}} (empty when absent); CheckpointError
    when it is unreadable or its content differs from its recorded sha256."""
    index_path = Path(index_path)
    if not index_path.is_file():
        return {"version": INDEX_VERSION, "checkpoints": {}}
    fix = "delete it: the next registration rebuilds it from the .ckpt files beside it"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{index_path}: unreadable checkpoints index ({e}); fix or {fix}") from None
    if not isinstance(index, dict) or not isinstance(index.get("checkpoints"), dict):
        raise CheckpointError(f"{index_path}: not a checkpoints index (no 'checkpoints'); fix or {fix}")
    if not checksum_ok(index):
        raise CheckpointError(f"{index_path}: damaged checkpoints index (content differs from its {CHECKSUM_KEY}); "
                              f"{fix}")
    index.pop(CHECKSUM_KEY, None)
    return index


def _relative_files(files: dict[str, Path], base: Path) -> dict[str, str]:
    """Returns {part: path relative to base} as the index records them."""
    return {k: os.path.relpath(Path(v).resolve(), base) for k, v in files.items()}


def _index_entry(metadata: dict[str, Any], files: dict[str, Path], base: Path) -> dict[str, Any]:
    return {
        "method": metadata.get("method"),
        "files": _relative_files(files, base),
        "data": {k: v for k, v in metadata.get("data", {}).items() if k != "scenes"},
        "architecture": metadata.get("architecture"),
        "backend": metadata.get("backend"),
        "metrics": metadata.get("metrics"),
        "code_version": metadata.get("code_version"),
        "environment": metadata.get("environment"),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def rebuild_index(index_path: str | Path) -> dict[str, Any]:
    """Returns the checkpoints index rebuilt from the metadata of the .ckpt files beside `index_path` (each one
    loaded and checked; damaged ones are left out with a warning). Writes nothing."""
    index_path = Path(index_path)
    base = index_path.parent.resolve()
    entries: dict[str, Any] = {}
    for path in sorted(index_path.parent.glob("*.ckpt")):
        try:
            _, meta = load_checkpoint(path)
        except CheckpointError as e:
            log.warning("rebuilding %s: %s; left out", index_path, e)
            continue
        run_id, part = meta.get("id"), meta.get("part")
        if isinstance(run_id, str) and part in ("backbone", "segmenter"):
            files = {**entries.get(run_id, {}).get("files", {}), part: os.path.relpath(path.resolve(), base)}
            entries[run_id] = {**_index_entry(meta, {}, base), "files": files}
    return {"version": INDEX_VERSION, "checkpoints": entries}


def find_backbone(value: str | Path, checkpoints_dir: str | Path, label: str | None = None) -> Path:
    """Returns the checkpoint a user named: a file path, or the id of an entry of checkpoints_dir/index.json (its
    backbone file). ConfigError when it is neither, starting with `label` (default "checkpoint <value>")."""
    path = Path(value)
    if path.is_file():
        return path
    index_path = Path(checkpoints_dir) / "index.json"
    entries = read_index(index_path)["checkpoints"]
    files = entries.get(str(value), {}).get("files", {})
    if "backbone" in files:
        return (index_path.parent / files["backbone"]).resolve()
    raise ConfigError(f"{label or f'checkpoint {value}'}: no such file and no entry of {index_path} with that id; "
                      f"give a backbone .ckpt path or one of the ids there "
                      f"({', '.join(sorted(entries)[:5]) or 'none yet'}; `bench.py checkpoints list`)")


def register_checkpoint(index_path: str | Path, run_id: str, metadata: dict[str, Any],
                        files: dict[str, Path]) -> dict[str, Any]:
    """Returns the index entry written for `run_id` (replacing an older one) into index.json, atomically; a
    damaged index is rebuilt from the checkpoints beside it first (with a warning)."""
    index_path = Path(index_path)
    entry = _index_entry(metadata, files, index_path.parent.resolve())
    with _locked(index_path):
        try:
            index = read_index(index_path)
        except CheckpointError as e:
            log.warning("%s; rebuilding it from the checkpoints in %s", e, index_path.parent)
            index = rebuild_index(index_path)
        index["version"] = INDEX_VERSION
        index["checkpoints"][run_id] = entry
        write_json(index_path, with_checksum(index))
    return entry


def publish_checkpoints(checkpoints_dir: str | Path, run_id: str, metadata: dict[str, Any],
                        parts: dict[str, tuple[Path, nn.Module]]) -> tuple[dict[str, Any], bool]:
    """Publishes a pretraining's checkpoints ({part: (path, model)}, each saved by save_model_checkpoint), registers
    them in checkpoints_dir/index.json under `run_id`; returns (the metadata as published, whether anything was
    written). A rerun of a finished pretraining (every file kept, already indexed) writes nothing, and the metadata
    carries the kept files' provenance (the code version and environment of the run that trained them)."""
    kept = [_publish_file(Path(path), model, metadata) for path, model in parts.values()]
    index_path = Path(checkpoints_dir) / "index.json"
    files = {part: path for part, (path, _) in parts.items()}
    if all(k is not None for k in kept):
        metadata = {**metadata, **{k: v for k, v in kept[0].items() if k != "created"}}
        try:
            entry = read_index(index_path)["checkpoints"].get(run_id)
        except CheckpointError:
            entry = None  # register_checkpoint rebuilds a damaged index
        if entry is not None and entry.get("files") == _relative_files(files, index_path.parent.resolve()):
            return metadata, False
    register_checkpoint(index_path, run_id, metadata, files)
    return metadata, True


def input_metadata(preset: TrainPreset) -> dict[str, Any]:
    """Returns the `input` metadata entry of a checkpoint trained with `preset`."""
    return {"voxel_size_m": preset.voxel_size_m, "use_xyz_features": preset.use_xyz_features,
            "backend": preset.backend, **input_record(preset)}


def input_preset(meta: dict, path: Path) -> TrainPreset:
    """Returns a CPU TrainPreset reproducing the input (voxels, features) a checkpoint was trained on."""
    spec = meta.get("input")
    if not isinstance(spec, dict) or "voxel_size_m" not in spec:
        raise CheckpointError(f"{path}: metadata has no 'input' entry (voxel size, features); "
                              "re-export the checkpoint with freepoint-bench")
    settings = recorded_input_settings(spec)  # input_features, and an rgb record's colour mean and std
    if settings is None:
        raise CheckpointError(f"{path}: records input features {spec['features']}, which no input_features setting "
                              "feeds (rgb+xyz, rgb+normal, rgb)")
    return TrainPreset(voxel_size_m=spec["voxel_size_m"], use_xyz_features=spec.get("use_xyz_features", True),
                       backend=spec.get("backend", "spconv"), accelerator="cpu", precision="32-true", **settings)


def _rebuild(path: Path, meta: dict, key: str, cls: Any) -> Any:
    spec = meta.get(key)
    if not isinstance(spec, dict):
        raise CheckpointError(f"{path}: metadata has no {key!r}; it was not written by freepoint-bench's "
                              "engine (save_model_checkpoint) and cannot be rebuilt")
    try:
        return cls(**spec)
    except Exception as e:  # a config the current code no longer accepts
        raise CheckpointError(f"{path}: recorded {key} does not fit this code version ({e}); "
                              f"recorded code version: {meta.get('code_version')}") from None


def load_model(
    path: str | Path,
    part: str = "segmenter",
    device: str | torch.device = "cpu",
    *,
    into: nn.Module | Callable[[dict[str, Any]], nn.Module] | None = None,
    allow_backend_change: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Returns (model in eval mode on `device`, metadata) of a checkpoint; CheckpointError when missing, corrupt,
    of another part or architecture.

    Without `into` the model is rebuilt from its recorded config: part="segmenter" needs a segmenter checkpoint;
    part="backbone" accepts a backbone or a segmenter checkpoint (its backbone). With `into` (a model, or a function
    building one from the metadata) the weights are loaded strictly into it, its architecture() checked against the
    recorded one (the sparse backend aside with allow_backend_change: weights are stored backend-neutral), and
    returned as it is (device and train / eval mode untouched); a file that records no part is accepted there."""
    path = Path(path)
    if part not in ("segmenter", "backbone"):
        raise ValueError(f"part must be 'segmenter' or 'backbone', not {part!r}")
    state, meta = load_checkpoint(path)
    have = meta.get("part")
    if into is not None:
        model = into if isinstance(into, nn.Module) else into(meta)
        if have in (None, part):
            load_into(model, state, meta, allow_backend_change, path=path)
        else:
            source, _ = load_model(path, part)  # a segmenter checkpoint's backbone, or a refusal
            load_into(model, source.state_dict(), {"architecture": source.architecture()}, allow_backend_change, path)
        return model, meta
    if have == "segmenter":
        model = build_segmenter(_rebuild(path, meta, "model_config", SegmenterConfig))
        load_into(model, state, meta, path=path)
        if part == "backbone":
            model = model.backbone
    elif have == "backbone":
        if part == "segmenter":
            raise CheckpointError(f"{path}: holds a backbone, not a full segmenter; pass a -segmenter.ckpt")
        model = Res16UNet(_rebuild(path, meta, "backbone_config", BackboneConfig))
        load_into(model, state, meta, path=path)
    else:
        raise CheckpointError(f"{path}: metadata does not say whether it holds a segmenter or a backbone "
                              f"(part={have!r}); re-export it with freepoint-bench")
    model.to(device).eval()
    return model, meta
