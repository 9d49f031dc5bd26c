"""The dataset catalogue: one entry per dataset, the one place that knows datasets by name.

    entry = get("s3dis")                      # ConfigError listing names() for an unknown name
    reader = entry.open_reader()              # its Reader (imported on first use; options build a new one)
    entry.split_of("Area_5/office_1", root)   # "val"
    entry.group_of("Area_5/office_1")         # "Area_5": the scene group protocols name
    entry.classes                             # its Vocabulary (classes, evaluation rules), None: no ground truth
    get("pointcept-s3dis").layout_of          # "s3dis": the same scenes in another layout; a protocol naming s3dis
                                              # reads a root in that layout with that entry's reader

Every other module asks the catalogue (the reader, whether a root is needed, the splits, the scene groups, the
class vocabulary and what evaluation treats as void) instead of testing a dataset's name. Adding a dataset is
one reader (``list_scenes(root)`` / ``read_scene(root, name)``, see `Reader`) and one `register(Dataset(...))`.

Names are compared canonically: ``ScanNet_NPY`` is ``scannet-npy``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from freepoint_bench.data.classes import (
    S3DIS_CLASSES,
    S3DIS_STRUCTURE,
    SCANNET_INSTANCE_IDS,
    SCANNET_INSTANCE_NAMES,
    SCANNET_SEMANTIC_IDS,
)
from freepoint_bench.errors import ConfigError

if TYPE_CHECKING:
    from freepoint_bench.data.scene import Scene

__all__ = [
    "Dataset",
    "LayoutReader",
    "Reader",
    "S3DIS_AREA",
    "S3DIS_VOCABULARY",
    "SCANNET_SCAN",
    "SCANNET_VOCABULARY",
    "Vocabulary",
    "canonical",
    "evaluable",
    "find",
    "get",
    "group_of",
    "lazy",
    "names",
    "or_list",
    "register",
    "room_of",
    "unregister",
    "vocabulary",
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


@dataclass(frozen=True)
class Vocabulary:
    """A class vocabulary: the classes a dataset's instances are trained and scored as, and how evaluation treats
    the others. Protocols name it (``[eval] classes = "<name>"``).

    class_ids: the dataset's semantic ids of the classes (every other id is void), class_names: one per id.
    agnostic_void: classes void when class-agnostic masks are scored (S3DIS: structure and clutter, so every other
    instance is one "object" to find). semantic_names: the name of every semantic id the scenes carry, indexed by
    id, when the vocabulary covers them all (picture legends); None when it does not (ScanNet's NYU40 ids).
    segmentation_ids: the semantic ids semantic segmentation trains on, in class order (ScanNet's benchmark: the
    instance classes, wall and floor); default: class_ids."""

    name: str
    class_ids: tuple[int, ...]
    class_names: tuple[str, ...]
    agnostic_void: tuple[str, ...] = ()
    semantic_names: tuple[str, ...] | None = None
    segmentation_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.segmentation_ids:
            object.__setattr__(self, "segmentation_ids", tuple(self.class_ids))
        if len(self.class_ids) != len(self.class_names) or not self.class_ids:
            raise ConfigError(f"vocabulary {self.name!r} needs one name per class id and at least one class")
        unknown = sorted(set(self.agnostic_void) - set(self.class_names))
        if unknown:
            raise ConfigError(f"vocabulary {self.name!r}: agnostic_void names {unknown}, which are not its classes")

    def evaluated(self, class_agnostic: bool = False) -> tuple[tuple[int, ...], tuple[str, ...]]:
        """Returns (ids, names) of the classes evaluation scores: all, less agnostic_void when class-agnostic."""
        kept = [
            (i, c)
            for i, c in zip(self.class_ids, self.class_names, strict=True)
            if not (class_agnostic and c in self.agnostic_void)
        ]
        return tuple(i for i, _ in kept), tuple(c for _, c in kept)


S3DIS_VOCABULARY = Vocabulary(
    "s3dis",
    tuple(range(len(S3DIS_CLASSES))),
    S3DIS_CLASSES,
    agnostic_void=(*S3DIS_STRUCTURE, "clutter"),
    semantic_names=S3DIS_CLASSES,
)
SCANNET_VOCABULARY = Vocabulary(
    "scannet", SCANNET_INSTANCE_IDS, SCANNET_INSTANCE_NAMES, segmentation_ids=SCANNET_SEMANTIC_IDS
)


def lazy(target: str) -> Callable[..., Any]:
    """Returns a callable that imports ``module:attr`` on its first call (readers pull in pandas, plyfile)."""
    module, _, attr = target.partition(":")
    resolved: list[Callable[..., Any]] = []

    def call(*args: Any, **kwargs: Any) -> Any:
        if not resolved:
            try:
                resolved.append(getattr(importlib.import_module(module), attr))
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"{target} failed to import ({exc}); reinstall freepoint-bench") from exc
        return resolved[0](*args, **kwargs)

    call.__qualname__ = call.__name__ = attr
    return call


def _every_scene_train(scene_name: str, root: Path | None) -> str:
    del scene_name, root  # users' own scans carry no benchmark split
    return "train"


def _root_key(root: Path | None) -> list[Any]:
    return [None if root is None else str(Path(root).resolve())]


@dataclass(frozen=True)
class Dataset:
    """One catalogue entry.

    name: what ``--dataset`` and protocols call it (canonical: lower case, ``-`` not ``_``).
    reader: a Reader factory (its class), called with the reader's options (``axis_align=False``).
    description: one line for the CLI's help.
    needs_root: False when the dataset can be opened without a data folder (generated on read).
    classes: the class vocabulary of its labels; None: unlabelled, nothing to evaluate.
    split: (scene name, data root or None) → "train" | "val" | "test"; default: every scene train.
    group: a regex whose first group is a scene's group (what protocols' train_groups / eval_groups name);
        a name it does not match is its own group. None: every scene is its own group.
    group_is_room: a group is one room scanned several times (ScanNet's ``sceneXXXX`` of ``sceneXXXX_YY``): the
        scans of a room share a split and a cross-validation fold.
    instance_names: its reader records ``meta["instance_names"]`` (stable names masks protocols select by), so a
        cached scene without them is from an older version.
    cache_key: data root → the values the scene cache folder is keyed by; default: the resolved root.
    layout_of: the dataset whose scenes this entry reads from another layout on disk (the same scene names,
        classes, splits and groups): that dataset's reader reads a root its reader ``holds(root)`` with it, so
        protocols naming that dataset run on a root in this layout. None: a dataset of its own."""

    name: str
    reader: Callable[..., Reader]
    description: str
    needs_root: bool = True
    classes: Vocabulary | None = None
    split: Callable[[str, Path | None], str] = _every_scene_train
    group: re.Pattern[str] | None = None
    group_is_room: bool = False
    instance_names: bool = False
    cache_key: Callable[[Path | None], list[Any]] = _root_key
    layout_of: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", canonical(self.name))
        if self.layout_of is not None:
            object.__setattr__(self, "layout_of", canonical(self.layout_of))
        if self.group is not None and self.group.groups < 1:
            raise ConfigError(f"dataset {self.name}: group pattern {self.group.pattern!r} needs a capture group")

    def open_reader(self, **options: Any) -> Reader:
        """Returns the dataset's reader (one shared instance); with options, a new one built with them."""
        if not options and _ENTRIES.get(self.name) is self and self.name in _READERS:
            return _READERS[self.name]
        try:
            reader = self.reader(**options)
        except TypeError as exc:
            if not options:
                raise
            raise ConfigError(f"dataset {self.name!r}: bad reader options {sorted(options)} ({exc})") from exc
        if not isinstance(reader, Reader):
            raise TypeError(f"{reader!r} is not a Reader: it needs .name, .list_scenes(root), .read_scene(root, name)")
        if any(entry.layout_of == self.name for entry in _ENTRIES.values()):
            reader = LayoutReader(reader, self.name)
        if not options and _ENTRIES.get(self.name) is self:
            _READERS[self.name] = reader
        return reader

    def split_of(self, scene_name: str, root: Path | None = None) -> str:
        """Returns "train", "val" or "test" for one of the dataset's scenes (root: where split lists may be)."""
        return self.split(scene_name, None if root is None else Path(root))

    def group_of(self, scene_name: str) -> str:
        """Returns the scene group of a name (``Area_5`` of ``Area_5/office_1``), else the name itself."""
        match = None if self.group is None else self.group.match(scene_name)
        return match[1] if match else scene_name


_ENTRIES: dict[str, Dataset] = {}
_READERS: dict[str, Reader] = {}  # each registered entry's shared reader, made on first use


class LayoutReader:
    """A dataset's reader that reads a root held in another layout with that layout's entry (``layout_of``).

    Per root, the first entry laid out as `dataset` whose reader ``holds(root)`` reads it (its scenes keep that
    entry's ``meta["dataset"]``); every other root goes to `reader`, whose attributes (``axis_align``) this one
    shows. Scene names, splits, groups and classes are the dataset's whichever layout is read."""

    def __init__(self, reader: Reader, dataset: str) -> None:
        self.primary = reader
        self.dataset = dataset
        self.name = reader.name

    def __getattr__(self, attr: str) -> Any:
        primary = self.__dict__.get("primary")  # absent while unpickling: no recursion
        if primary is None:
            raise AttributeError(attr)
        return getattr(primary, attr)

    def reader_for(self, root: Path | None) -> Reader:
        """Returns the reader of the layout `root` holds: an entry laid out as the dataset's, else the primary."""
        for entry in _ENTRIES.values():
            if entry.layout_of == self.dataset:
                reader = entry.open_reader()
                if getattr(reader, "holds", None) is not None and reader.holds(root):
                    return reader
        return self.primary

    def list_scenes(self, root: Path) -> list[str]:
        """Returns the sorted scene names under `root`, read in the layout it holds."""
        return self.reader_for(root).list_scenes(root)

    def read_scene(self, root: Path, name: str) -> Scene:
        """Returns the Scene called `name` under `root`, read in the layout it holds."""
        return self.reader_for(root).read_scene(root, name)


def canonical(name: str) -> str:
    """Returns the catalogue's spelling of a dataset name: stripped, lower case, ``_`` as ``-``."""
    return str(name).strip().lower().replace("_", "-")


def register(entry: Dataset, replace: bool = False) -> Dataset:
    """Adds `entry` to the catalogue and returns it; ConfigError when the name is taken (unless replace)."""
    if entry.name in _ENTRIES and not replace:
        raise ConfigError(f"dataset {entry.name!r} is already in the catalogue; pick another name")
    _ENTRIES[entry.name] = entry
    _READERS.pop(entry.name, None)
    return entry


def unregister(name: str) -> None:
    """Removes a dataset from the catalogue (tests; nothing else needs to)."""
    _ENTRIES.pop(canonical(name), None)
    _READERS.pop(canonical(name), None)


def names() -> list[str]:
    """Returns the catalogue's dataset names in registration order."""
    return list(_ENTRIES)


def or_list(items: list[str]) -> str:
    """Returns "a, b or c"."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def find(name: str | None) -> Dataset | None:
    """Returns the entry called `name`, None when there is none (a scene's ``meta["dataset"]`` may be anything)."""
    return None if name is None else _ENTRIES.get(canonical(name))


def get(name: str) -> Dataset:
    """Returns the entry called `name`; ConfigError listing the catalogue when there is none."""
    entry = find(name)
    if entry is None:
        raise ConfigError(f"unknown dataset {name!r}; known datasets: {', '.join(names())}")
    return entry


def evaluable() -> list[str]:
    """Returns the names of the datasets with ground truth to evaluate (a class vocabulary)."""
    return [entry.name for entry in _ENTRIES.values() if entry.classes is not None]


def vocabulary(name: str) -> Vocabulary:
    """Returns the class vocabulary called `name` (one of the catalogue's datasets' vocabularies)."""
    known = {entry.classes.name: entry.classes for entry in _ENTRIES.values() if entry.classes is not None}
    if name not in known:
        raise ConfigError(f"unknown class vocabulary {name!r}; use {or_list(sorted(known))}")
    return known[name]


def group_of(scene_name: str, dataset: str | None = None) -> str:
    """Returns the scene group of a name under `dataset`'s rule; without a dataset, under the rule of the first
    entry whose group pattern matches the name (names are self-describing: ``Area_N/<room>``, ``sceneXXXX_YY``),
    else the name itself."""
    if dataset is not None:
        return get(dataset).group_of(scene_name)
    for entry in _ENTRIES.values():
        if entry.group is not None and entry.group.match(scene_name):
            return entry.group_of(scene_name)
    return scene_name


def room_of(scene_name: str) -> str:
    """Returns the room of a scan (``scene0000_01`` → ``scene0000``: the group of a dataset whose groups are
    rooms); any other name is its own room."""
    for entry in _ENTRIES.values():
        if entry.group_is_room and entry.group is not None and entry.group.match(scene_name):
            return entry.group_of(scene_name)
    return scene_name


# ---------------------------------------------------------------------------------------------- the entries

S3DIS_AREA = re.compile(r"^(Area_(\d+))(?:/|$)")  # S3DIS: Area_N/<room>; the area is the group (N: group 2)
SCANNET_SCAN = re.compile(r"^(scene\d{4})_\d{2}$")  # ScanNet: sceneXXXX_YY is scan YY of room sceneXXXX
_SPLITS = "freepoint_bench.data.splits"
_SYNTHETIC = "freepoint_bench.data.synthetic"

# ScanNet's rules, whatever the layout its scans come in
_SCANNET_RULES: dict[str, Any] = {
    "classes": SCANNET_VOCABULARY,
    "split": lazy(f"{_SPLITS}:scannet_split"),
    "group": SCANNET_SCAN,
    "group_is_room": True,
}
# S3DIS's rules, whatever the layout its rooms come in
_S3DIS_RULES: dict[str, Any] = {
    "classes": S3DIS_VOCABULARY,
    "split": lazy(f"{_SPLITS}:s3dis_split"),
    "group": S3DIS_AREA,
}
_POINTCEPT = "freepoint_bench.data.readers.pointcept"

# Registration order is the order help texts and error messages list them in.
for _entry in (
    Dataset("scannet", lazy("freepoint_bench.data.readers.scannet:ScanNetReader"),
            "ScanNet v2 raw scans (sceneXXXX_YY folders)", **_SCANNET_RULES),
    Dataset("scannet-npy", lazy("freepoint_bench.data.readers.scannet_npy:ScanNetNpyReader"),
            "ScanNet exported as VoteNet-style npy files", **_SCANNET_RULES),
    Dataset("s3dis", lazy("freepoint_bench.data.readers.s3dis:S3DISReader"),
            "raw Stanford3dDataset_v1.2 (Area_N/<room>)", instance_names=True, **_S3DIS_RULES),
    Dataset("synthetic", lazy(f"{_SYNTHETIC}:SyntheticReader"),
            "generated rooms labelled like S3DIS (--root: optional folder with synthetic.toml)",
            needs_root=False, classes=S3DIS_VOCABULARY, split=lazy(f"{_SYNTHETIC}:split_of_synthetic"),
            cache_key=lazy(f"{_SYNTHETIC}:cache_key")),
    Dataset("ply", lazy("freepoint_bench.data.readers.ply:PlyReader"),
            "folders of .ply / .npz point clouds without labels"),
    Dataset("pointcept-scannet", lazy(f"{_POINTCEPT}:PointceptScanNetReader"),
            "ScanNet v2 as Pointcept preprocessed it ({train,val,test}/<scan>/*.npy)", layout_of="scannet",
            **_SCANNET_RULES),
    Dataset("pointcept-s3dis", lazy(f"{_POINTCEPT}:PointceptS3DISReader"),
            "S3DIS as Pointcept preprocessed it (Area_N/<room>/*.npy)", layout_of="s3dis", **_S3DIS_RULES),
):  # fmt: skip
    register(_entry)
