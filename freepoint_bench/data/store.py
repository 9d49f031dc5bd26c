"""The scene cache: a dataset converted once into one compressed .npz per scene plus an index.

    store = SceneStore(Path("cache/s3dis-1a2b3c4d"))
    prepare(get_reader("s3dis"), root, store, progress=callback)   # resumable: cached scenes are skipped
    for name in store.names(split="train"):
        scene = store.load(name)

Layout of `cache_dir`:
    index.json                 dataset, root, and per scene: file, split, num_points, num_instances
    scenes/<encoded name>.npz  xyz, rgb, [normals, semantic, instance], name, meta (JSON)
Scene names are percent-encoded into file names (``Area_5/office_1`` → ``Area_5%2Foffice_1.npz``; data/names.py).
Every file is written atomically, and the index after every scene, so an interrupted prepare resumes.
"""

from __future__ import annotations

import json
import logging
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from freepoint_bench.atomic import CHECKSUM_KEY, checksum_ok, save_npz, with_checksum, write_json
from freepoint_bench.data.names import decode_name, encode_name
from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

__all__ = ["INDEX_FILE", "SCENES_DIR", "SceneStore", "decode_name", "encode_name", "prepare"]

INDEX_FILE = "index.json"
SCENES_DIR = "scenes"
INDEX_VERSION = 1
_FLUSH_SECONDS = 2.0  # index writes during prepare: at most this often (a crash re-converts < 2 s of work)
_FIX = "delete it and rerun `bench.py data prepare`"

Progress = Callable[[int, int, str], None]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    return repr(obj)  # meta is provenance: keep something readable rather than failing the conversion


class SceneStore:
    """Cached scenes of one dataset in `cache_dir` (see the module docstring for the layout)."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.root = Path(cache_dir)
        self._index: dict[str, Any] | None = None

    # ------------------------------------------------------------------ index
    @property
    def index_path(self) -> Path:
        return self.root / INDEX_FILE

    def _load_index(self) -> dict[str, Any]:
        if self._index is None:
            if self.index_path.is_file():
                try:
                    index = json.loads(self.index_path.read_text(encoding="utf-8"))
                    if not isinstance(index, dict) or not isinstance(index.get("scenes"), dict):
                        raise ValueError("no 'scenes' table")
                    if not checksum_ok(index):
                        raise ValueError(f"content differs from its {CHECKSUM_KEY}")
                    index.pop(CHECKSUM_KEY, None)
                except (OSError, UnicodeDecodeError, ValueError) as exc:
                    raise DataError(f"{self.index_path}: corrupt scene cache index ({exc}); {_FIX}") from exc
                self._index = index
            else:
                self._index = {"version": INDEX_VERSION, "dataset": None, "root": None, "scenes": {}}
        return self._index

    def flush(self) -> None:
        """Writes the index (atomically)."""
        write_json(self.index_path, with_checksum(self._load_index()))

    @property
    def dataset(self) -> str | None:
        """Returns the dataset name the store holds (None while empty)."""
        return self._load_index().get("dataset")

    @property
    def data_root(self) -> str | None:
        """Returns the dataset root the scenes were converted from (None while empty)."""
        return self._load_index().get("root")

    def path_of(self, name: str) -> Path:
        """Returns the .npz path of scene `name` (whether or not it exists)."""
        return self.root / SCENES_DIR / f"{encode_name(name)}.npz"

    def names(self, split: str | None = None) -> list[str]:
        """Returns the sorted names of the cached scenes, only those of `split` when given."""
        scenes = self._load_index()["scenes"]
        return sorted(n for n, info in scenes.items() if split is None or info.get("split") == split)

    def info(self, name: str) -> dict[str, Any]:
        """Returns the index entry of `name`: file, split, num_points, num_instances, has_labels."""
        scenes = self._load_index()["scenes"]
        if name not in scenes:
            raise DataError(
                f"scene {name!r} is not in the scene cache {self.root}; run `bench.py data prepare` "
                "for its dataset (or check the scene name)"
            )
        return dict(scenes[name])

    def __contains__(self, name: object) -> bool:
        return (
            isinstance(name, str) and name in self._load_index()["scenes"] and self.path_of(name).is_file()
        )

    def __len__(self) -> int:
        return len(self._load_index()["scenes"])

    # ------------------------------------------------------------------ scenes
    def save(self, scene: Scene, split: str | None = None, write_index: bool = True) -> Path:
        """Returns the path after writing `scene` (atomically) and recording it in the index.

        write_index=False defers the index write to `flush()` (batch conversions).
        """
        arrays: dict[str, np.ndarray] = {
            "xyz": scene.xyz,
            "rgb": scene.rgb,
            "name": np.array(scene.name),
            "meta": np.array(json.dumps(scene.meta, default=_json_default)),
        }
        for key in ("normals", "semantic", "instance"):
            value = getattr(scene, key)
            if value is not None:
                arrays[key] = value
        path = save_npz(self.path_of(scene.name), **arrays)
        instances = scene.instance
        self._load_index()["scenes"][scene.name] = {
            "file": str(path.relative_to(self.root)),
            "split": split,
            "num_points": scene.num_points,
            "num_instances": int(len(np.unique(instances[instances >= 0]))) if instances is not None else 0,
            "has_labels": scene.has_labels,
        }
        if write_index:
            self.flush()
        return path

    def _read(self, name: str, keys: tuple[str, ...] | None = None) -> tuple[Path, dict[str, np.ndarray]]:
        """Returns (path, arrays) of scene `name`: the arrays named in keys that the file has (None: all), only
        those decompressed; DataError naming the file when it is missing, corrupt or holds another scene."""
        path = self.path_of(name)
        if not path.is_file():
            raise DataError(
                f"scene {name!r} is not in the scene cache {self.root} ({path} missing); "
                "run `bench.py data prepare` for its dataset"
            )
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files if keys is None or key in keys or key == "name"}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise DataError(f"{path}: corrupt scene cache file ({exc}); {_FIX}") from exc
        stored = str(arrays.pop("name")) if "name" in arrays else name
        if stored != name:
            raise DataError(f"{path}: holds scene {stored!r}, not {name!r}; {_FIX}")
        return path, arrays

    def load(self, name: str) -> Scene:
        """Returns the cached Scene `name`; DataError naming the file when it is missing or corrupt."""
        path, arrays = self._read(name)
        try:
            meta = json.loads(str(arrays.pop("meta"))) if "meta" in arrays else {}
            if "xyz" not in arrays or "rgb" not in arrays:
                raise ValueError("xyz or rgb missing")
        except ValueError as exc:
            raise DataError(f"{path}: corrupt scene cache file ({exc}); {_FIX}") from exc
        meta.setdefault("source", str(path))
        try:
            return Scene(
                name=name,
                xyz=arrays["xyz"],
                rgb=arrays["rgb"],
                normals=arrays.get("normals"),
                semantic=arrays.get("semantic"),
                instance=arrays.get("instance"),
                meta=meta,
            )
        except DataError as exc:
            raise DataError(f"{path}: corrupt scene cache file ({exc}); {_FIX}") from exc

    def load_labels(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Returns (semantic, instance), (N,) int64 each (-1 = unlabelled), of cached scene `name`, reading
        only those two arrays of its file (what evaluation needs; no points, colours or normals).

        DataError naming the file when it is missing or corrupt, or when the scene has no labels.
        """
        path, arrays = self._read(name, ("semantic", "instance"))
        if "semantic" not in arrays or "instance" not in arrays:
            raise DataError(f"{path}: scene {name} has no ground-truth labels; evaluate on a labelled dataset")
        semantic, instance = arrays["semantic"], arrays["instance"]
        integers = semantic.dtype.kind in "iu" and instance.dtype.kind in "iu"
        if semantic.ndim != 1 or semantic.shape != instance.shape or not integers:
            raise DataError(
                f"{path}: corrupt scene cache file (labels {semantic.dtype}{semantic.shape}, "
                f"{instance.dtype}{instance.shape}); {_FIX}"
            )
        return semantic.astype(np.int64, copy=False), instance.astype(np.int64, copy=False)

    def bind(self, dataset: str, root: str | Path | None) -> None:
        """Records the dataset and root the store holds; DataError if it already holds another dataset."""
        index = self._load_index()
        if index.get("dataset") not in (None, dataset):
            raise DataError(
                f"{self.root} caches dataset {index['dataset']!r}, not {dataset!r}; use another cache "
                "folder or delete this one"
            )
        index["dataset"] = dataset
        index["root"] = None if root is None else str(Path(root).resolve())
        self.flush()


def prepare(
    reader: Any,
    root: str | Path | None,
    store: SceneStore,
    names: Sequence[str] | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> list[str]:
    """Returns the names prepared (all of `names`, default every scene the reader lists), converting each
    scene not yet cached (or every one with overwrite) into `store`.

    reader: a dataset reader (``.name``, ``.list_scenes(root)``, ``.read_scene(root, name)``).
    progress(done, total, name) is called after each scene, cached or converted.
    The split of each scene comes from ``freepoint_bench.data.splits.split_of(reader.name, name, root)``.
    """
    from freepoint_bench.data.splits import split_of

    root = None if root is None else Path(root)  # None: a generated dataset with default settings
    wanted = list(reader.list_scenes(root) if names is None else names)
    store.bind(reader.name, root)
    total = len(wanted)
    last_flush = time.monotonic()
    try:
        for done, name in enumerate(wanted, start=1):
            if overwrite or name not in store:
                scene = reader.read_scene(root, name)
                if scene.name != name:
                    scene = scene.with_(name=name)
                try:
                    split = split_of(reader.name, name, root)
                except ConfigError:  # a reader of no catalogue entry (no split rule)
                    split = None
                store.save(scene, split=split, write_index=False)
                logger.debug("cached %s (%d points)", name, scene.num_points)
                if time.monotonic() - last_flush > _FLUSH_SECONDS:
                    store.flush()
                    last_flush = time.monotonic()
            if progress is not None:
                progress(done, total, name)
    finally:
        store.flush()  # an interrupted run keeps what it converted: the next one resumes from there
    return wanted
