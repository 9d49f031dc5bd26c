"""Dataset readers: raw files on disk → `Scene`, found by dataset name through a small registry.

    reader = get_reader("s3dis")
    for name in reader.list_scenes(root):
        scene = reader.read_scene(root, name)

Built-in readers: "s3dis" (raw Stanford3dDataset_v1.2 Annotations), "scannet" (ScanNet v2 raw scans),
"scannet-npy" (VoteNet-style npy exports), "ply" (folders of .ply/.npz point clouds without labels).
"synthetic" lives in `freepoint_bench.data.synthetic`, imported on first request, and registers itself.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Protocol, runtime_checkable

from freepoint_bench.data.readers.ply import PlyReader, read_point_file, write_ply
from freepoint_bench.data.readers.s3dis import S3DISReader, parse_s3dis_txt, write_s3dis_room
from freepoint_bench.data.readers.scannet import ScanNetReader, load_nyu40_map
from freepoint_bench.data.readers.scannet_npy import ScanNetNpyReader
from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "PlyReader",
    "Reader",
    "S3DISReader",
    "ScanNetNpyReader",
    "ScanNetReader",
    "get_reader",
    "known_datasets",
    "load_nyu40_map",
    "parse_s3dis_txt",
    "read_point_file",
    "register_reader",
    "write_ply",
    "write_s3dis_room",
]


@runtime_checkable
class Reader(Protocol):
    """Turns one dataset layout on disk into Scenes."""

    name: str

    def list_scenes(self, root: Path) -> list[str]:
        """Returns the sorted scene names under `root`; DataError if root is missing or of another layout."""
        ...

    def read_scene(self, root: Path, name: str) -> Scene:
        """Returns the Scene called `name` under `root`; DataError naming the file on bad input."""
        ...


_READERS: dict[str, Reader] = {}

# Modules that register readers on import, imported only when their dataset is asked for.
_LAZY_MODULES: dict[str, str] = {"synthetic": "freepoint_bench.data.synthetic"}


def _canonical(dataset: str) -> str:
    return dataset.strip().lower().replace("_", "-")


def register_reader(reader: Reader) -> None:
    """Registers `reader` under `reader.name` (a later registration of the same name replaces it)."""
    if not isinstance(reader, Reader):
        raise TypeError(
            f"{reader!r} is not a Reader: it needs .name, .list_scenes(root), .read_scene(root, name)"
        )
    key = _canonical(reader.name)
    if key in _READERS and _READERS[key] is not reader:
        logger.debug("reader %r replaced by %r", _READERS[key], reader)
    _READERS[key] = reader


def known_datasets() -> list[str]:
    """Returns the sorted names get_reader accepts (registered and lazily importable ones)."""
    return sorted(set(_READERS) | set(_LAZY_MODULES))


def get_reader(dataset: str, **options) -> Reader:
    """Returns the reader registered for `dataset`; with options, a new reader of that type built with them.

    Options are the reader's constructor arguments, e.g. ``get_reader("scannet", axis_align=False)``.
    """
    key = _canonical(dataset)
    if key not in _READERS and key in _LAZY_MODULES:
        try:
            importlib.import_module(_LAZY_MODULES[key])
        except ImportError as exc:
            raise ConfigError(
                f"dataset {dataset!r} needs module {_LAZY_MODULES[key]}, which failed to import ({exc}); "
                "reinstall freepoint-bench"
            ) from exc
    if key not in _READERS:
        raise ConfigError(f"unknown dataset {dataset!r}; known datasets: {', '.join(known_datasets())}")
    reader = _READERS[key]
    if not options:
        return reader
    try:
        return type(reader)(**options)
    except TypeError as exc:
        raise ConfigError(f"dataset {dataset!r}: bad reader options {sorted(options)} ({exc})") from exc


for _reader in (S3DISReader(), ScanNetReader(), ScanNetNpyReader(), PlyReader()):
    register_reader(_reader)
