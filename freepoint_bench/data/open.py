"""Opening a dataset: its scene cache folder and the scenes prepared into it (what every command starts with)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from freepoint_bench.atomic import stable_hash
from freepoint_bench.data import catalogue
from freepoint_bench.data.store import SceneStore, prepare
from freepoint_bench.errors import ConfigError, DataError


def store_dir(cache: str | Path, dataset: str, root: str | Path | None) -> Path:
    """Returns the cache folder of (dataset, root), keyed by the catalogue entry's cache_key (the resolved root;
    generated rooms: their settings)."""
    parts = catalogue.get(dataset).cache_key(None if root is None else Path(root))
    return Path(cache) / f"{dataset}-{stable_hash(*parts, length=8)}"


def open_dataset(dataset: str, root: str | Path | None, cache: str | Path,
                 names: Sequence[str] | None = None,
                 progress: Callable[[int, int, str], None] | None = None) -> tuple[SceneStore, list[str]]:
    """Returns (store, names) for (dataset, root): `names` (default: every scene the reader lists), each
    prepared into the cache when missing (progress(done, total, name) per scene)."""
    entry = catalogue.get(dataset)
    # The reader (and its format library: pandas, plyfile) only when scenes must be listed or converted: opening
    # named, cached scenes (`bench.py evaluate`) needs none of them.
    reader = None if names else entry.open_reader()
    if root is None and entry.needs_root:
        raise ConfigError(f"--root is required for dataset {dataset!r}; point it at your copy of the data")
    if root is not None and entry.needs_root and not Path(root).exists():
        raise DataError(f"{root}: dataset root does not exist; check --root")
    root_path = None if root is None else Path(root)
    store = SceneStore(store_dir(cache, dataset, root_path))
    wanted = list(names) if names else reader.list_scenes(root_path)
    missing = [n for n in wanted if n not in store]
    if missing:
        prepare(reader or entry.open_reader(), root_path, store, names=missing, progress=progress)
    return store, wanted
