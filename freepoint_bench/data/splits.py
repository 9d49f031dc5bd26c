"""Train / val / test membership of scenes; rooms, not scans, are the unit of a split.

Which rule a dataset follows is its catalogue entry's (`freepoint_bench.data.catalogue`); the rules are here:

- `s3dis_split`: Area 5 is val (the paper's evaluation area), every other area train.
- `scannet_split` (scannet, scannet-npy): a user's split file ``scene_splits.txt`` (lines
  ``<scene> <train|val|test>``) in the data root or its parent when there is one; else the official
  ``scannetv2_train.txt`` / ``scannetv2_val.txt`` lists, searched in the data root, its parent, then the copy
  shipped in ``freepoint_bench/data/splits/``. ScanNet scans (``sceneXXXX_YY``) in no list follow the other scans
  of their room, else are test scans (ScanNet's hidden test set); scans with other names (a user's own exports
  in the VoteNet layout) in no list are test scans too, with one warning per data root. Lists that overlap (a
  scan or room in both) are reported and replaced by the packaged official lists, so a held-out room never leaks
  into training; a user split file that puts one room in two splits is an error.
- synthetic: ``freepoint_bench.data.synthetic.split_of_synthetic``; ply: every scene train (users' own scans
  carry no benchmark split).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from freepoint_bench.data import catalogue
from freepoint_bench.data.catalogue import room_of
from freepoint_bench.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

__all__ = [
    "SPLITS",
    "find_scannet_lists",
    "find_user_split_file",
    "room_of",
    "s3dis_split",
    "scannet_split",
    "scenes_in_split",
    "split_of",
]

SPLITS = ("train", "val", "test")
S3DIS_VAL_AREA = 5  # §4: S3DIS Area 5 is the evaluation area
SCANNET_LISTS = {"train": "scannetv2_train.txt", "val": "scannetv2_val.txt"}
USER_SPLIT_FILE = "scene_splits.txt"  # a user's own split: one "<scene> <train|val|test>" per line
PACKAGED_LISTS = Path(__file__).with_name("splits")


def split_of(dataset: str, scene_name: str, root: Path | None = None) -> str:
    """Returns "train", "val" or "test" for `scene_name` of `dataset` (root: where split lists may be)."""
    return catalogue.get(dataset).split_of(scene_name, root)


def s3dis_split(scene_name: str, root: Path | None = None) -> str:
    """Returns "val" for the rooms of S3DIS Area 5, "train" for the others; DataError for a name not Area_N/..."""
    del root  # the areas are the split
    match = catalogue.S3DIS_AREA.match(scene_name)
    if match is None:
        raise DataError(f"S3DIS scene name {scene_name!r} does not start with Area_N; expected Area_N/<room>")
    return "val" if int(match[2]) == S3DIS_VAL_AREA else "train"


def scenes_in_split(dataset: str, names: list[str], split: str, root: Path | None = None) -> list[str]:
    """Returns the names (in their given order) whose split_of is `split`."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return [name for name in names if split_of(dataset, name, root) == split]


def find_scannet_lists(root: Path | None) -> tuple[Path, Path]:
    """Returns (train, val) list paths from the first of root, root's parent, the package holding both."""
    folders = [] if root is None else [Path(root), Path(root).parent]
    for folder in [*folders, PACKAGED_LISTS]:
        train, val = folder / SCANNET_LISTS["train"], folder / SCANNET_LISTS["val"]
        if train.is_file() and val.is_file():
            return train, val
    raise DataError(f"ScanNet split lists missing from {PACKAGED_LISTS}; reinstall freepoint-bench")


def find_user_split_file(root: Path | None) -> Path | None:
    """Returns the user's ``scene_splits.txt`` in root or root's parent, or None when there is none."""
    if root is None:
        return None
    for folder in (Path(root), Path(root).parent):
        if (folder / USER_SPLIT_FILE).is_file():
            return folder / USER_SPLIT_FILE
    return None


def scannet_split(scene_name: str, root: Path | None = None) -> str:
    """Returns the split of a ScanNet scan (or a user's export in a ScanNet layout); see the module's docstring."""
    user = find_user_split_file(root)
    if user is not None:
        membership = _load_user_split(str(user), user.stat().st_mtime)
        where = str(user)
    else:
        membership, where = _official_membership(root)
    if scene_name in membership:
        return membership[scene_name]
    # A scan missing from the lists follows the other scans of its room.
    room = room_of(scene_name)
    if room in membership:
        return membership[room]
    if room == scene_name:  # not a ScanNet scan name
        _warn_unlisted(str(root), scene_name, where)
    return "test"


def _official_membership(root: Path | None) -> tuple[dict[str, str], str]:
    train, val = find_scannet_lists(root)
    try:
        membership = _load_lists(str(train), str(val), train.stat().st_mtime, val.stat().st_mtime)
    except DataError as exc:
        if train.parent == PACKAGED_LISTS:
            raise
        # Inconsistent lists beside the data (e.g. val lines appended that are also train scans) must not
        # leak held-out rooms into training, nor make the data unusable: fall back to the official lists.
        _warn_once(f"{exc}. Using the official ScanNet v2 lists shipped in {PACKAGED_LISTS} instead.")
        train, val = PACKAGED_LISTS / SCANNET_LISTS["train"], PACKAGED_LISTS / SCANNET_LISTS["val"]
        membership = _load_lists(str(train), str(val), train.stat().st_mtime, val.stat().st_mtime)
    return membership, f"{train} / {val.name}"


_WARNED_ROOTS: set[str] = set()


def _warn_unlisted(root: str, scene_name: str, where: str) -> None:
    """Logs once per data root that scans with non-ScanNet names in no split list go to the test split."""
    if root in _WARNED_ROOTS:
        return
    _WARNED_ROOTS.add(root)
    logger.warning(
        "%s: scenes whose names are not ScanNet's (sceneXXXX_YY) and that %s does not list, such as %r, go to "
        "the test split; to choose their splits, write %s beside the data with one '<scene> <train|val|test>' "
        "per line",
        root,
        where,
        scene_name,
        USER_SPLIT_FILE,
    )


@functools.lru_cache(maxsize=8)
def _load_user_split(path: str, mtime: float) -> dict[str, str]:
    """Returns scan → split and room → split of a user's split file, after checking no room is in two."""
    del mtime  # cache key only: an edited file is read again
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the split file ({exc}); fix or delete it") from exc
    membership: dict[str, str] = {}
    room_split: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2 or words[1] not in SPLITS:
            raise DataError(
                f"{path}:{number}: {line.strip()!r} is not '<scene> <train|val|test>'; fix the line"
            )
        name, split = words
        if membership.get(name, split) != split:
            raise DataError(f"{path}:{number}: {name} is listed as {membership[name]} and {split}; keep one")
        room = room_of(name)
        first = room_split.setdefault(room, (split, name))
        if first[0] != split:
            raise DataError(
                f"{path}:{number}: {name} is {split} but {first[1]} of the same room {room} is {first[0]}; "
                "scans of one room must share a split (a held-out room would leak into training)"
            )
        membership[name] = split
        membership[room] = split
    if not membership:
        raise DataError(f"{path}: the split file lists no scene; add '<scene> <train|val|test>' lines or delete it")
    return membership


@functools.lru_cache(maxsize=32)
def _warn_once(message: str) -> None:
    logger.warning(message)


@functools.lru_cache(maxsize=8)
def _load_lists(train: str, val: str, train_mtime: float, val_mtime: float) -> dict[str, str]:
    """Returns scan → split and room → split, after checking that no room is in both lists."""
    del train_mtime, val_mtime  # cache key only: edited lists are read again
    scans = {split: _read_list(Path(path)) for split, path in (("train", train), ("val", val))}
    both = sorted(set(scans["train"]) & set(scans["val"]))
    rooms = {split: {room_of(s) for s in names} for split, names in scans.items()}
    shared_rooms = sorted(rooms["train"] & rooms["val"])
    if both or shared_rooms:
        what = (
            f"scans in both lists: {both[:6]}"
            if both
            else f"rooms split across the lists: {shared_rooms[:6]}"
        )
        raise DataError(
            f"{train} and {val} overlap ({what}{' ...' if max(len(both), len(shared_rooms)) > 6 else ''}); "
            "a room must be in one split only: remove those lines from one list, or delete both lists "
            "to use the official ScanNet v2 lists shipped with freepoint-bench"
        )
    membership: dict[str, str] = {}
    for split, names in scans.items():
        for name in names:
            membership[name] = split
            membership[room_of(name)] = split
    return membership


def _read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read split list ({exc}); restore it or delete it") from exc
    return [line.strip() for line in lines if line.strip()]
