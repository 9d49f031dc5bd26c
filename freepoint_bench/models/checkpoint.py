"""Checkpoints: plain tensors plus JSON-able metadata, written atomically, loaded strictly with weights_only."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from freepoint_bench.atomic import atomic_path, write_error
from freepoint_bench.errors import CheckpointError

FORMAT_VERSION = 1
# metadata["integrity"]: sha256 of the tensors and of the rest of the metadata, taken at save time. torch's zip
# format checks no CRC, so a flipped byte in a tensor would otherwise load as if valid.
INTEGRITY = "integrity"
# Lightning's resume checkpoints (engine.trainer): the sha256 of each top-level part (state_dict, optimizer_states,
# lr_schedulers, loops, callbacks, loss history, ...), taken when the module saves it; older resume checkpoints
# recorded the state dict's weights_sha256 alone, under STATE_SHA256_KEY
RESUME_SHA256_KEY = "freepoint_bench_resume_sha256"
STATE_SHA256_KEY = "freepoint_bench_state_sha256"


def _feed_tensor(h: Any, tensor: torch.Tensor) -> None:
    tensor = tensor.detach().cpu().contiguous()
    h.update(f"{tuple(tensor.shape)}\0{tensor.dtype}\0".encode())
    h.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """Returns the hex sha256 of a state dict's tensors (names, shapes, dtypes and bytes, in sorted key order)."""
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(f"{key}\0".encode())
        _feed_tensor(h, state[key])
    return h.hexdigest()


def _feed_tree(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        h.update(b"T")
        _feed_tensor(h, value)
    elif isinstance(value, dict):
        h.update(f"D{len(value)}\0".encode())
        for key in sorted(value, key=repr):
            _feed_tree(h, key)
            _feed_tree(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}\0".encode())
        for item in value:
            _feed_tree(h, item)
    else:  # str, int, float, bool, None, bytes (all a weights_only load returns besides the above)
        h.update(f"{type(value).__name__}:{value!r}\0".encode())


def tree_sha256(value: Any) -> str:
    """Returns the hex sha256 of a nested checkpoint value: dicts (in sorted key order), lists and tuples, tensors
    (shape, dtype and bytes, as weights_sha256) and plain scalars (type and repr)."""
    h = hashlib.sha256()
    _feed_tree(h, value)
    return h.hexdigest()


def resume_sha256(checkpoint: dict[str, Any]) -> dict[str, str]:
    """Returns {part: tree_sha256} for every top-level part of a Lightning checkpoint but its own records."""
    return {str(k): tree_sha256(v) for k, v in checkpoint.items() if k not in (RESUME_SHA256_KEY, STATE_SHA256_KEY)}


def _metadata_sha256(metadata: dict[str, Any]) -> str:
    rest = {k: v for k, v in metadata.items() if k != INTEGRITY}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def save_checkpoint(path: str | os.PathLike, model: nn.Module, metadata: dict[str, Any]) -> Path:
    """Writes {"state_dict", "metadata"} to `path` atomically and returns the path.

    metadata must be JSON-serialisable; the model's `architecture()` (when it has one) is recorded
    under "architecture". Conv weights are in the backend-neutral canonical layout.
    """
    meta = dict(metadata)
    if hasattr(model, "architecture"):
        meta.setdefault("architecture", model.architecture())
    meta["format_version"] = FORMAT_VERSION
    try:
        meta = json.loads(json.dumps(meta))
    except TypeError as exc:
        raise CheckpointError(f"checkpoint metadata for {path} is not JSON-serialisable: {exc}") from exc
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    meta[INTEGRITY] = {"weights_sha256": weights_sha256(state), "metadata_sha256": _metadata_sha256(meta)}
    with atomic_path(path) as tmp:
        try:
            torch.save({"state_dict": state, "metadata": meta}, tmp)
        except RuntimeError as e:  # torch's zip writer reports a full disk as RuntimeError("... file write failed")
            raise write_error(path, e) from None
    return Path(path)


def load_failure(exc: BaseException) -> str:
    """Returns one line saying why torch.load refused a file (its messages run over several lines)."""
    text = str(exc).strip()
    if "Weights only load failed" in text:
        # torch's advice (weights_only=False) is what a checkpoint loader must never do; keep only the cause
        cause = next((ln.strip() for ln in text.splitlines()[1:] if "Unsupported" in ln), "")
        cause = cause.removeprefix("WeightsUnpickler error: ").split(". ")[0][:160]
        return f"not a tensors-only torch file{': ' + cause if cause else ''}"
    return (text.splitlines() or [type(exc).__name__])[0][:200]


def load_checkpoint(
    path: str | os.PathLike, expected_architecture: dict[str, Any] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Returns (state_dict, metadata) of a checkpoint; CheckpointError when missing, corrupt or mismatched."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train or download it first")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(f"checkpoint {path} cannot be read ({load_failure(exc)}); delete it and re-create "
                              "it") from exc
    if not isinstance(blob, dict) or "state_dict" not in blob or "metadata" not in blob:
        raise CheckpointError(f"checkpoint {path} is not a freepoint-bench checkpoint (no state_dict/metadata)")
    metadata = blob["metadata"]
    _check_integrity(path, blob["state_dict"], metadata)
    if expected_architecture is not None:
        _check_architecture(path, metadata.get("architecture"), expected_architecture)
    return blob["state_dict"], metadata


def _check_integrity(path: Path, state: Any, metadata: Any) -> None:
    """CheckpointError when the tensors or the metadata differ from the sha256 recorded at save time (checkpoints
    written before integrity records existed carry none and are accepted as they are)."""
    if not isinstance(metadata, dict) or not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} is not a freepoint-bench checkpoint (no state_dict/metadata)")
    record = metadata.get(INTEGRITY)
    if record is None:
        return
    fix = "it was damaged after it was written; delete it and re-create it (or restore a copy)"
    if not isinstance(record, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise CheckpointError(f"checkpoint {path}: malformed integrity record or tensors; {fix}")
    if record.get("weights_sha256") != weights_sha256(state):
        raise CheckpointError(f"checkpoint {path}: its weights do not match the sha256 recorded at save time; {fix}")
    if record.get("metadata_sha256") != _metadata_sha256(metadata):
        raise CheckpointError(f"checkpoint {path}: its metadata do not match the sha256 recorded at save time; {fix}")


def _check_architecture(path, recorded: dict | None, expected: dict, ignore: tuple[str, ...] = ()) -> None:
    if recorded is None:
        raise CheckpointError(f"checkpoint {path} records no architecture; expected {expected}")
    diffs = _diff(recorded, expected, ignore)
    if diffs:
        raise CheckpointError(
            f"checkpoint {path} was saved for another architecture: {'; '.join(diffs)} "
            f"(recorded architecture: {recorded}); build the model with the recorded settings"
        )


def _diff(recorded: dict, expected: dict, ignore: tuple[str, ...], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(recorded) | set(expected)):
        if key in ignore:
            continue
        a, b = recorded.get(key), expected.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, ignore, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}={a!r} in the checkpoint, {b!r} expected")
    return out


def load_into(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    metadata: dict[str, Any],
    allow_backend_change: bool = False,
    path: str | os.PathLike = "<checkpoint>",
) -> nn.Module:
    """Returns `model` with `state` loaded strictly; CheckpointError names missing/unexpected keys.

    The recorded architecture must equal `model.architecture()`. State dicts hold conv weights in the
    canonical layout, so a checkpoint saved on one sparse backend loads into the other when
    `allow_backend_change` is set.
    """
    recorded = metadata.get("architecture")
    if hasattr(model, "architecture"):
        ignore = ("backend",) if allow_backend_change else ()
        _check_architecture(path, recorded, model.architecture(), ignore)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not fit the model: missing keys {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}, unexpected keys {unexpected[:10]}"
            f"{' ...' if len(unexpected) > 10 else ''} (recorded architecture: {recorded})"
        )
    wrong = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if state[k].shape != v.shape
    ]
    if wrong:
        raise CheckpointError(
            f"checkpoint {path} has tensors of other shapes: {wrong[:5]} (recorded architecture: {recorded})"
        )
    model.load_state_dict(state, strict=True)
    return model
