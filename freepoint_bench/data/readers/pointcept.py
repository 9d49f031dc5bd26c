"""Pointcept's preprocessed layouts → Scene: one folder of ``.npy`` arrays per scene, read as Pointcept wrote them.

ScanNet (``pointcept-scannet``)::

    <root>/{train,val,test}/sceneXXXX_YY/coord.npy, color.npy, normal.npy, segment20.npy, segment200.npy,
                                          instance.npy

S3DIS (``pointcept-s3dis``)::

    <root>/Area_N/<room>/coord.npy, color.npy, normal.npy, segment.npy, instance.npy

Conventions, as Pointcept's preprocessing writes them (github.com/Pointcept/Pointcept, paths in that repository;
ScanNet: ``pointcept/datasets/preprocessing/scannet/preprocess_scannet.py``, its class table
``pointcept/datasets/preprocessing/scannet/meta_data/scannet200_constants.py``; S3DIS:
``pointcept/datasets/preprocessing/s3dis/preprocess_s3dis.py``; how Pointcept loads them:
``pointcept/datasets/defaults.py`` (``DefaultDataset.get_data``) and ``pointcept/datasets/scannet.py``):

- ``coord`` (N, 3) float32 metres; ``color`` (N, 3) uint8 0..255 (here / 255, as every reader of the suite);
  ``normal`` (N, 3) float32, read into ``Scene.normals`` only with ``normals=True`` (off by default: the raw
  layouts carry none, and FreePoint's features use given normals instead of estimating them, so the default
  keeps a scene the same whichever layout it is read from).
- The ignore index is -1, the Scene's own convention for unlabelled points.
- ScanNet: ``segment20`` is the position of a vertex's NYU40 id in ``VALID_CLASS_IDS_20`` (1, 2, 3, ..., 36, 39),
  -1 for every other class and for vertices in no segment group; it is mapped back to the NYU40 id here
  (``SCANNET_SEMANTIC_IDS``, the same 20 ids in the same order), so the ScanNet vocabulary and evaluator apply
  unchanged. Compared with the raw reader, NYU40 classes outside the 20 (ceiling, otherprop, ...) read as -1:
  void to the ScanNet vocabulary either way. ``segment200`` (ScanNet200 ids) is not read: no vocabulary of the
  suite uses it. ``instance`` is the aggregation's segGroup ``id`` (equal to its ``objectId``, what the raw reader
  reads), -1 for vertices in no group. Coordinates are the mesh's, NOT axis-aligned (the alignment block of the
  preprocessing is commented out): the raw reader with ``axis_align=False``. Test scans have no label files.
- S3DIS: ``segment`` is the index of the annotation file's class (its name before the first ``_``) in the same 13
  classes as ``S3DIS_CLASSES``, unknown names (``stairs``) clutter; ``instance`` is the file's index among the
  room's ``Annotations/*.txt`` in sorted order, so every point has one (no -1). Both are saved (N, 1) int16. The
  raw reader numbers instances the same way (sorted file names) except where it repairs the release (an
  identical ``(1)`` copy skipped, an empty file dropped), so ids may shift after such a file. Coordinates are the
  release's, not shifted; with ``--align_angle`` each room is rotated about z around its bounding-box centre by
  its ``Area_N_alignmentAngle.txt`` angle, which the layout does not record, so it cannot be undone here.
  Instance names (``chair_3``: the file names masks protocols select by) are not in the layout; an instance's
  name is its id.
"""

from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path

import numpy as np

from freepoint_bench.data.classes import S3DIS_CLASSES, SCANNET_SEMANTIC_IDS
from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import DataError

logger = logging.getLogger(__name__)

SCANNET_SPLITS = ("train", "val", "test")  # the folders preprocess_scannet.py writes scans into
_AREA_RE = re.compile(r"^Area_(\d+)$")
_RERUN = "re-run Pointcept's preprocessing for this scene"


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path} is missing; {_RERUN} (or copy the file back)")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: corrupt or not a .npy file ({exc}); {_RERUN}") from exc


def _points(path: Path, n: int | None) -> np.ndarray:
    """Returns an (N, 3) float array of `path`; DataError naming the file on another shape or non-finite values."""
    arr = _load(path)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.dtype.kind not in "fiu":
        raise DataError(f"{path}: shape {arr.shape} dtype {arr.dtype}; expected (N, 3) numbers; {_RERUN}")
    if n is not None and len(arr) != n:
        raise DataError(f"{path}: {len(arr)} points but coord.npy has {n}; the files are of different scenes: {_RERUN}")
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        raise DataError(f"{path}: {int((~finite).sum())} points with NaN/inf values; {_RERUN}")
    return arr


def _labels(path: Path, n: int, low: int, high: int) -> np.ndarray:
    """Returns (N,) int64 labels of `path` (Pointcept saves (N,) or (N, 1)); DataError outside low..high."""
    arr = _load(path)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise DataError(f"{path}: shape {arr.shape} dtype {arr.dtype}; expected (N,) or (N, 1) integers; {_RERUN}")
    if len(arr) != n:
        raise DataError(f"{path}: {len(arr)} labels but coord.npy has {n} points; {_RERUN}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < low or arr.max() > high):
        raise DataError(f"{path}: labels {arr.min()}..{arr.max()} outside {low}..{high} (-1 = ignore); {_RERUN}")
    return arr


def read_scene_folder(folder: Path, name: str, dataset: str, segment_file: str, segment_ids: tuple[int, ...],
                      normals: bool = False) -> Scene:
    """Returns the Scene of one Pointcept scene folder.

    segment_file: the semantic file (``segment20.npy``, ``segment.npy``); its label k becomes semantic id
    segment_ids[k], -1 stays -1. Without segment and instance files the scene is unlabelled; with only one of
    them, DataError.
    """
    if not folder.is_dir():
        raise DataError(f"{folder} is missing; list the scenes with `bench.py data list --dataset {dataset}`")
    coord_path = folder / "coord.npy"
    xyz = _points(coord_path, None)
    n = len(xyz)
    if n == 0:
        raise DataError(f"{coord_path}: no points; {_RERUN} or delete the folder")
    color_path = folder / "color.npy"
    rgb = _points(color_path, n).astype(np.float32)
    if rgb.size and (rgb.min() < 0 or rgb.max() > 255):
        raise DataError(f"{color_path}: colours {rgb.min():g}..{rgb.max():g} outside 0..255; {_RERUN}")
    meta: dict = {"dataset": dataset, "source": str(folder), "layout": "pointcept"}
    normal = None
    if normals and (folder / "normal.npy").is_file():
        normal = _points(folder / "normal.npy", n).astype(np.float32)
        meta["normals"] = "normal.npy"
    seg_path, inst_path = folder / segment_file, folder / "instance.npy"
    semantic = instance = None
    if seg_path.is_file() or inst_path.is_file():
        segment = _labels(seg_path, n, -1, len(segment_ids) - 1)
        instance = _labels(inst_path, n, -1, np.iinfo(np.int64).max)
        table = np.asarray((-1, *segment_ids), dtype=np.int64)  # table[k + 1]: the id of label k, -1 → -1
        semantic = table[segment + 1]
    else:
        logger.info("%s: no %s / instance.npy; scene loaded without labels", name, segment_file)
    return Scene(
        name=name,
        xyz=xyz.astype(np.float32),
        rgb=rgb / 255.0,  # explicit: Pointcept stores uint8, and a dark room must not look like 0..1 input
        normals=normal,
        semantic=semantic,
        instance=instance,
        meta=meta,
    )


def _has_coord(folder: Path) -> bool:
    return (folder / "coord.npy").is_file()


class PointceptScanNetReader:
    """Reads Pointcept's ScanNet layout; scene names are the scan folders' (``sceneXXXX_YY``); semantic ids NYU40."""

    name = "pointcept-scannet"
    LAYOUT = "<root>/{train,val,test}/sceneXXXX_YY/coord.npy (+ color.npy, segment20.npy, instance.npy)"

    def __init__(self, normals: bool = False) -> None:
        self.normals = normals

    def holds(self, root: Path | None) -> bool:
        """Returns True when `root` holds at least one scan folder of this layout."""
        return root is not None and any(_has_coord(p) for split in SCANNET_SPLITS
                                        if (Path(root) / split).is_dir() for p in (Path(root) / split).iterdir())

    def _folders(self, root: Path) -> dict[str, Path]:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"Pointcept ScanNet root {root} does not exist or is not a folder; expected {self.LAYOUT}")
        found: dict[str, Path] = {}
        skipped = []
        for split in SCANNET_SPLITS:
            if not (root / split).is_dir():
                continue
            for folder in sorted((root / split).iterdir()):
                if not folder.is_dir():
                    continue
                if not _has_coord(folder):
                    skipped.append(folder)
                    continue
                if folder.name in found:
                    raise DataError(f"scan {folder.name} is in both {found[folder.name].parent} and {root / split}; "
                                    "delete one copy")
                found[folder.name] = folder
        if not found:
            hint = " (raw ScanNet? use dataset 'scannet')" if (root / "scans").is_dir() else ""
            raise DataError(f"{root} holds no scans in Pointcept's layout; expected {self.LAYOUT}{hint}")
        for folder in skipped:
            logger.warning("%s has no coord.npy; skipped (re-run Pointcept's preprocessing for it)", folder)
        return found

    def list_scenes(self, root: Path) -> list[str]:
        """Returns the sorted scan names of every split folder."""
        return sorted(self._folders(root))

    def read_scene(self, root: Path, name: str) -> Scene:
        """Returns scan `name` with NYU40 semantic ids (-1: outside ScanNet's 20 classes) and segGroup instances."""
        folders = self._folders(root)
        if name not in folders:
            raise DataError(f"no scan {name} in {root}; expected {self.LAYOUT}")
        scene = read_scene_folder(folders[name], name, self.name, "segment20.npy", SCANNET_SEMANTIC_IDS, self.normals)
        scene.meta.update({"axis_aligned": False, "split_folder": folders[name].parent.name})
        return scene


class PointceptS3DISReader:
    """Reads Pointcept's S3DIS layout; scene names ``Area_N/<room>`` as the raw reader's; semantic ids S3DIS's."""

    name = "pointcept-s3dis"
    LAYOUT = "<root>/Area_N/<room>/coord.npy (+ color.npy, segment.npy, instance.npy)"

    def __init__(self, normals: bool = False) -> None:
        self.normals = normals

    def _areas(self, root: Path) -> list[Path]:
        return sorted(p for p in Path(root).iterdir() if p.is_dir() and _AREA_RE.match(p.name))

    def holds(self, root: Path | None) -> bool:
        """Returns True when `root` holds at least one room folder of this layout."""
        return root is not None and Path(root).is_dir() and any(
            _has_coord(room) for area in self._areas(root) for room in area.iterdir())

    def list_scenes(self, root: Path) -> list[str]:
        """Returns ``Area_N/<room>`` of every room folder holding coord.npy (others: a warning)."""
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"Pointcept S3DIS root {root} does not exist or is not a folder; expected {self.LAYOUT}")
        names, skipped = [], []
        for area in self._areas(root):
            for room in sorted(p for p in area.iterdir() if p.is_dir()):
                if _has_coord(room):
                    names.append(f"{area.name}/{room.name}")
                else:
                    skipped.append(room)
        if names:
            for room in skipped:
                logger.warning("%s has no coord.npy; skipped (re-run Pointcept's preprocessing for it)", room)
        else:
            if any(any(area.glob("*.pth")) for area in self._areas(root)):
                raise DataError(f"{root} holds Pointcept's older Area_N/<room>.pth files; re-run a current Pointcept's "
                                f"preprocess_s3dis.py to get {self.LAYOUT}")
            hint = " (raw S3DIS? use dataset 's3dis')" if any(root.glob("Area_*/*/Annotations")) else ""
            raise DataError(f"{root} holds no rooms in Pointcept's layout; expected {self.LAYOUT}{hint}")
        return names

    def read_scene(self, root: Path, name: str) -> Scene:
        """Returns room `name` (``Area_N/<room>``) with S3DIS semantic ids and one instance per annotation file."""
        parts = name.split("/")
        if len(parts) != 2 or not _AREA_RE.match(parts[0]):
            raise DataError(f"S3DIS scene name {name!r} is not of the form Area_N/<room> (e.g. Area_5/office_1)")
        # segment.npy indexes the 13 classes in S3DIS_CLASSES' order: its labels are the ids
        scene = read_scene_folder(Path(root) / parts[0] / parts[1], name, self.name, "segment.npy",
                                  tuple(range(len(S3DIS_CLASSES))), self.normals)
        scene.meta.update({"area": int(_AREA_RE.match(parts[0])[1]), "room": parts[1]})
        return scene
