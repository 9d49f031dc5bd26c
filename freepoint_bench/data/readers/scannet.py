"""ScanNet v2 raw reader: ``scans/<scene>/`` mesh vertices + segments + aggregation → NYU40-labelled Scene.

Per scene folder ``scans/sceneXXXX_YY/``:

    sceneXXXX_YY_vh_clean_2.ply                    vertices x, y, z, red, green, blue
    sceneXXXX_YY_vh_clean_2.0.010000.segs.json     {"segIndices": [segment id per vertex]}
    sceneXXXX_YY.aggregation.json                  {"segGroups": [{"objectId", "label", "segments"}]}
        (or sceneXXXX_YY_vh_clean.aggregation.json, as in some releases)
    sceneXXXX_YY.txt                               "axisAlignment = 16 numbers" (row-major 4x4)

``scannetv2-labels.combined.tsv`` (raw_category → nyu40id) sits in the root or a parent of it.
Semantic ids are NYU40 ids, instance ids the aggregation's objectId; unlabelled points are -1.
Scenes without segments/aggregation (the test split) load without labels.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
from pathlib import Path

import numpy as np
from plyfile import PlyData

from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import DataError

logger = logging.getLogger(__name__)

LABELS_TSV = "scannetv2-labels.combined.tsv"
_LAYOUT = "<root>/scans/sceneXXXX_YY/sceneXXXX_YY_vh_clean_2.ply (+ .segs.json, .aggregation.json)"


def find_scans_folder(root: Path) -> Path:
    """Returns the folder holding the scene folders: ``root/scans`` or root itself."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"ScanNet root {root} does not exist or is not a folder; expected {_LAYOUT}")
    for candidate in (root / "scans", root):
        if candidate.is_dir() and any(
            (p / f"{p.name}_vh_clean_2.ply").is_file() for p in candidate.iterdir()
        ):
            return candidate
    raise DataError(
        f"{root} holds no ScanNet scans; expected {_LAYOUT} (point root at the folder containing scans/, "
        "or use dataset 'scannet-npy' for VoteNet-style *_vert.npy exports)"
    )


def find_labels_tsv(start: Path) -> Path | None:
    """Returns the first scannetv2-labels.combined.tsv in `start` or its two parents, None if absent."""
    start = Path(start).resolve()
    for folder in (start, start.parent, start.parent.parent):
        if (folder / LABELS_TSV).is_file():
            return folder / LABELS_TSV
    return None


@functools.lru_cache(maxsize=8)
def _nyu40_map_cached(path: str, mtime: float) -> dict[str, int]:
    del mtime  # part of the cache key only: an edited file is read again
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read label table ({exc}); download it again from ScanNet") from exc
    if not rows or "raw_category" not in rows[0] or "nyu40id" not in rows[0]:
        raise DataError(f"{path}: missing columns raw_category / nyu40id; use the official {LABELS_TSV}")
    mapping = {}
    for row in rows:
        try:
            mapping[row["raw_category"]] = int(row["nyu40id"])
        except (TypeError, ValueError):
            continue  # rows without an NYU40 id stay unmapped (-1)
    return mapping


def load_nyu40_map(path: Path) -> dict[str, int]:
    """Returns raw_category → NYU40 id from a scannetv2-labels.combined.tsv."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing; download {LABELS_TSV} from the ScanNet repository")
    return _nyu40_map_cached(str(path), path.stat().st_mtime)


def _load_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); re-download this scene") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object; re-download this scene")
    return data


def read_axis_alignment(path: Path) -> np.ndarray | None:
    """Returns the 4x4 axisAlignment matrix of a ``<scene>.txt`` meta file, None if it has none."""
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "axisAlignment":
            try:
                numbers = [float(v) for v in value.split()]
            except ValueError:
                numbers = []
            if len(numbers) != 16:
                raise DataError(f"{path}: axisAlignment needs 16 numbers, got {value.strip()[:80]!r}")
            return np.asarray(numbers, dtype=np.float64).reshape(4, 4)
    return None


class ScanNetReader:
    """Reads ScanNet v2 raw scans; `axis_align` applies the scene's axisAlignment matrix (default on)."""

    name = "scannet"

    def __init__(self, axis_align: bool = True) -> None:
        self.axis_align = axis_align

    def list_scenes(self, root: Path) -> list[str]:
        """Returns the sorted names of scene folders that hold a ``_vh_clean_2.ply`` mesh."""
        scans = find_scans_folder(root)
        return sorted(p.name for p in scans.iterdir() if (p / f"{p.name}_vh_clean_2.ply").is_file())

    def read_scene(self, root: Path, name: str) -> Scene:
        """Returns scan `name` with NYU40 semantic ids and objectId instances (no labels: test scans)."""
        scans = find_scans_folder(root)
        folder = scans / name
        ply_path = folder / f"{name}_vh_clean_2.ply"
        if not ply_path.is_file():
            raise DataError(f"{ply_path} is missing; expected {_LAYOUT}")
        xyz, rgb = _read_mesh_vertices(ply_path)
        meta: dict = {"dataset": "scannet", "source": str(folder), "axis_aligned": False}

        if self.axis_align:
            meta_txt = folder / f"{name}.txt"
            matrix = read_axis_alignment(meta_txt) if meta_txt.is_file() else None
            if matrix is None:
                logger.info("%s: no axisAlignment in %s; coordinates left unaligned", name, meta_txt.name)
            else:
                xyz = (np.c_[xyz.astype(np.float64), np.ones(len(xyz))] @ matrix.T)[:, :3]
                meta["axis_aligned"] = True

        semantic = instance = None
        labels = _read_labels(folder, name, len(xyz), scans, meta)
        if labels is not None:
            semantic, instance = labels
        return Scene(name=name, xyz=xyz, rgb=rgb, semantic=semantic, instance=instance, meta=meta)


def _read_mesh_vertices(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        ply = PlyData.read(str(path))
        vertex = ply["vertex"]
        xyz = np.stack([vertex[k] for k in "xyz"], axis=1).astype(np.float32)
        rgb = np.stack([vertex[k] for k in ("red", "green", "blue")], axis=1).astype(np.float32) / 255.0
    except (KeyError, ValueError) as exc:
        raise DataError(
            f"{path}: PLY lacks vertex x/y/z/red/green/blue ({exc}); re-download this scene"
        ) from exc
    except Exception as exc:  # plyfile raises several types on truncated/garbled files
        raise DataError(f"{path}: not a readable PLY ({exc}); re-download this scene") from exc
    return xyz, rgb


def _read_labels(
    folder: Path, name: str, n_points: int, scans: Path, meta: dict
) -> tuple[np.ndarray, np.ndarray] | None:
    segs_path = folder / f"{name}_vh_clean_2.0.010000.segs.json"
    agg_candidates = [folder / f"{name}.aggregation.json", folder / f"{name}_vh_clean.aggregation.json"]
    agg_path = next((p for p in agg_candidates if p.is_file()), None)
    if agg_path is None or not segs_path.is_file():
        missing = segs_path.name if agg_path is not None else agg_candidates[0].name
        logger.info("%s: %s missing; scene loaded without labels", name, missing)
        return None
    tsv = find_labels_tsv(scans)
    if tsv is None:
        raise DataError(
            f"{LABELS_TSV} not found in {scans} or its parents; "
            f"put it next to scans/ to read labels of {name}"
        )
    label_map = load_nyu40_map(tsv)

    seg_indices = _load_json(segs_path).get("segIndices")
    if not isinstance(seg_indices, list) or len(seg_indices) != n_points:
        got = len(seg_indices) if isinstance(seg_indices, list) else type(seg_indices).__name__
        raise DataError(
            f"{segs_path}: segIndices has {got} entries but the mesh has {n_points} vertices; "
            "re-download the scene"
        )
    groups = _load_json(agg_path).get("segGroups")
    if not isinstance(groups, list):
        raise DataError(f"{agg_path}: no segGroups list; re-download the scene")

    segments, inverse = np.unique(np.asarray(seg_indices, dtype=np.int64), return_inverse=True)
    position = {int(s): i for i, s in enumerate(segments)}
    seg_object = np.full(len(segments), -1, dtype=np.int64)
    seg_class = np.full(len(segments), -1, dtype=np.int64)
    unmapped: set[str] = set()
    for group in groups:
        try:
            object_id, label, group_segments = int(group["objectId"]), str(group["label"]), group["segments"]
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{agg_path}: malformed segGroup ({exc}); re-download the scene") from exc
        nyu40 = label_map.get(label)
        if nyu40 is None:
            unmapped.add(label)
        idx = [position[s] for s in group_segments if s in position]
        seg_object[idx] = object_id
        seg_class[idx] = nyu40 if nyu40 and nyu40 > 0 else -1  # NYU40 id 0 = unannotated
    if unmapped:
        logger.info("%s: labels not in %s left unlabelled: %s", name, LABELS_TSV, sorted(unmapped))
        meta["unmapped_labels"] = sorted(unmapped)
    meta["labels"] = {"segments": str(segs_path), "aggregation": str(agg_path), "tsv": str(tsv)}
    return seg_class[inverse], seg_object[inverse]
