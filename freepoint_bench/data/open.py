"""Opening a dataset: its scene cache folder and the scenes prepared into it (what every command starts with)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from freepoint_bench.atomic import stable_hash
from freepoint_bench.data.store import SceneStore, prepare
from freepoint_bench.errors import ConfigError, DataError


def store_dir(cache: str | Path, dataset: str, root: str | Path | None) -> Path:
    """Returns the cache folder of (dataset, root); synthetic rooms are keyed by their settings too."""
    parts: list = [None if root is None else str(Path(root).resolve())]
    if dataset == "synthetic":
        from freepoint_bench.data.synthetic import read_dataset_settings

        num_scenes, seed, config = read_dataset_settings(None if root is None else Path(root))
        parts = [num_scenes, seed, config.model_dump()]  # an edited synthetic.toml means new scenes
    return Path(cache) / f"{dataset}-{stable_hash(*parts, length=8)}"


def _reader(dataset: str):
    # The readers (and their format libraries: pandas, plyfile) only when scenes must be listed or converted:
    # opening named, cached scenes (`bench.py evaluate`) needs none of them.
    from freepoint_bench.data.readers import get_reader

    return get_reader(dataset)


def open_dataset(dataset: str, root: str | Path | None, cache: str | Path,
                 names: Sequence[str] | None = None,
                 progress: Callable[[int, int, str], None] | None = None) -> tuple[SceneStore, list[str]]:
    """Returns (store, names) for (dataset, root): `names` (default: every scene the reader lists), each
    prepared into the cache when missing (progress(done, total, name) per scene)."""
    reader = None if names else _reader(dataset)
    if root is None and dataset != "synthetic":
        raise ConfigError(f"--root is required for dataset {dataset!r}; point it at your copy of the data")
    if root is not None and dataset != "synthetic" and not Path(root).exists():
        raise DataError(f"{root}: dataset root does not exist; check --root")
    root_path = None if root is None else Path(root)
    store = SceneStore(store_dir(cache, dataset, root_path))
    wanted = list(names) if names else reader.list_scenes(root_path)
    missing = [n for n in wanted if n not in store]
    if missing:
        prepare(reader or _reader(dataset), root_path, store, names=missing, progress=progress)
    return store, wanted
