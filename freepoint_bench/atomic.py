"""Atomic file writes and content hashing: everything written lands whole or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from freepoint_bench.errors import DataError


def write_error(path: str | os.PathLike, exc: BaseException) -> DataError:
    """Returns the one-line DataError of a failed write of `path` (full disk, read-only folder, quota)."""
    reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0][:200]
    return DataError(f"{path}: cannot write it ({reason}); free disk space or point the output at a writable "
                     f"folder (any earlier {Path(path).name} is unchanged)")


def ensure_dir(path: str | os.PathLike) -> Path:
    """Returns `path` after creating it (and its parents) if missing; write_error's DataError when it cannot be
    created (a file in the way, a read-only or full disk)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(path, e) from None
    return path


def open_lock(path: str | os.PathLike) -> io.TextIOWrapper:
    """Returns `path` opened for writing (created with its folder), to hold an flock on; write_error's DataError
    when it cannot be."""
    ensure_dir(Path(path).parent)
    try:
        return open(path, "w")  # noqa: SIM115 - the caller holds it open as long as its lock
    except OSError as e:
        raise write_error(path, e) from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it onto `path` only if the block succeeds.

    An OSError while writing (ENOSPC, EROFS, EACCES, ...) becomes write_error's DataError; `path` is untouched."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise write_error(path, e) from None
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            os.replace(tmp_path, path)
        except OSError as e:
            raise write_error(path, e) from None
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes `data` to `path` atomically and returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes `text` (UTF-8) to `path` atomically and returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Writes `obj` as indented JSON to `path` atomically and returns the path."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


CHECKSUM_KEY = "content_sha256"


def json_checksum(obj: dict[str, Any]) -> str:
    """Returns the hex sha256 of a JSON object's content (sorted keys) without its CHECKSUM_KEY entry."""
    rest = {k: v for k, v in obj.items() if k != CHECKSUM_KEY}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, default=_json_default).encode()).hexdigest()


def with_checksum(obj: dict[str, Any]) -> dict[str, Any]:
    """Returns a copy of a JSON object with its content's sha256 under CHECKSUM_KEY (so a flipped byte that still
    parses as JSON, e.g. one digit of a metric, is detected on reading)."""
    plain = json.loads(json.dumps(obj, default=_json_default))  # what reading the file back gives
    return {**plain, CHECKSUM_KEY: json_checksum(plain)}


def checksum_ok(obj: Any) -> bool:
    """Returns False when a JSON object carries a CHECKSUM_KEY its content does not match (True without one)."""
    return not isinstance(obj, dict) or CHECKSUM_KEY not in obj or obj[CHECKSUM_KEY] == json_checksum(obj)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Writes a compressed .npz atomically (the exact `path`, no suffix added) and returns it."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return write_bytes(path, buf.getvalue())


def stable_hash(*parts: Any, length: int = 16) -> str:
    """Returns a hex digest of JSON-serialisable parts (dicts sorted), stable across runs."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str(part.dtype).encode())
            h.update(str(part.shape).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, bytes):
            h.update(part)
        else:
            h.update(json.dumps(part, sort_keys=True, default=_json_default).encode())
        h.update(b"\x00")
    return h.hexdigest()[:length]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
