"""Users' own point clouds: a folder of ``*.ply`` / ``*.npz`` files → Scenes (labels optional).

PLY: a ``vertex`` element with x, y, z; optional red, green, blue (uchar 0..255 or float 0..1 / 0..255);
optional nx, ny, nz. NPZ: key ``xyz`` (N, 3); optional ``rgb``, ``normals``, ``semantic``, ``instance``.
Without colours the cloud is grey 0.5 and ``meta["no_rgb"] = True`` (downstream turns colour affinity off).
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

from freepoint_bench.atomic import atomic_path
from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import DataError

logger = logging.getLogger(__name__)

SUFFIXES = (".ply", ".npz")
GREY = 0.5  # colour given to clouds without rgb


class PlyReader:
    """Reads every ``*.ply`` / ``*.npz`` in a folder (or one such file); scene names are file stems."""

    name = "ply"

    def _files(self, root: Path) -> dict[str, Path]:
        root = Path(root)
        if root.is_file():
            if root.suffix.lower() not in SUFFIXES:
                raise DataError(
                    f"{root} is not a .ply or .npz file; give a folder of point clouds or one such file"
                )
            return {root.stem: root}
        if not root.is_dir():
            raise DataError(f"point-cloud root {root} does not exist; give a folder of *.ply / *.npz files")
        files: dict[str, Path] = {}
        for path in sorted(root.iterdir()):
            if path.is_file() and path.suffix.lower() in SUFFIXES:
                if path.stem in files:
                    raise DataError(
                        f"{files[path.stem].name} and {path.name} in {root} give the same scene name "
                        f"{path.stem!r}; rename one of them"
                    )
                files[path.stem] = path
        if not files:
            raise DataError(f"{root} holds no *.ply or *.npz files; expected a folder of point clouds")
        return files

    def list_scenes(self, root: Path) -> list[str]:
        """Returns the sorted file stems of the point clouds under `root`."""
        return sorted(self._files(root))

    def read_scene(self, root: Path, name: str) -> Scene:
        """Returns the point cloud `name` (a file stem) as a Scene."""
        files = self._files(root)
        if name not in files:
            raise DataError(
                f"no point cloud named {name!r} in {root} (found: {', '.join(sorted(files)[:10])})"
            )
        return read_point_file(files[name])


def read_point_file(path: Path, name: str | None = None) -> Scene:
    """Returns the Scene stored in one .ply or .npz file (name defaults to the file stem)."""
    path = Path(path)
    name = name or path.stem
    if path.suffix.lower() == ".ply":
        xyz, rgb, normals, semantic, instance = _read_ply(path)
    elif path.suffix.lower() == ".npz":
        xyz, rgb, normals, semantic, instance = _read_npz(path)
    else:
        raise DataError(f"{path}: unsupported point-cloud format; use .ply or .npz")
    meta = {"dataset": "ply", "source": str(path), "no_rgb": rgb is None}
    if rgb is None:
        logger.info("%s has no colours; using grey %.1f (colour affinity should be off)", path, GREY)
        rgb = np.full((len(xyz), 3), GREY, dtype=np.float32)
    if normals is not None:
        normals = _unit(np.asarray(normals, dtype=np.float32))
    return Scene(
        name=name, xyz=xyz, rgb=rgb, normals=normals, semantic=semantic, instance=instance, meta=meta
    )


def _read_ply(path: Path):
    try:
        ply = PlyData.read(str(path))
    except Exception as exc:  # plyfile raises several types on truncated/garbled files
        raise DataError(
            f"{path}: not a readable PLY file ({exc}); re-export it (binary or ascii PLY)"
        ) from exc
    if "vertex" not in [e.name for e in ply.elements]:
        raise DataError(f"{path}: PLY has no 'vertex' element; export the points as vertices")
    vertex = ply["vertex"]
    props = {p.name for p in vertex.properties}
    if not {"x", "y", "z"} <= props:
        raise DataError(
            f"{path}: PLY vertices lack x/y/z (have {sorted(props)}); export coordinates as x, y, z"
        )
    xyz = np.stack([vertex[k] for k in "xyz"], axis=1).astype(np.float32)
    rgb = None
    for names in (
        ("red", "green", "blue"),
        ("r", "g", "b"),
        ("diffuse_red", "diffuse_green", "diffuse_blue"),
    ):
        if set(names) <= props:
            cols = np.stack([vertex[k] for k in names], axis=1)
            rgb = _colours01(cols, path)
            break
    normals = None
    if {"nx", "ny", "nz"} <= props:
        normals = np.stack([vertex[k] for k in ("nx", "ny", "nz")], axis=1).astype(np.float32)
    return xyz, rgb, normals, None, None


def _colours01(cols: np.ndarray, path: Path) -> np.ndarray:
    """Returns colours in 0..1: integer types are 0..255, floats are 0..1 unless they exceed 1."""
    if cols.dtype.kind in "iu":
        return cols.astype(np.float32) / 255.0
    cols = cols.astype(np.float32)
    if cols.size and np.nanmax(cols) > 1.0:
        if np.nanmax(cols) > 255.0:
            raise DataError(f"{path}: colours up to {np.nanmax(cols):.1f}; expected 0..1 or 0..255")
        return cols / 255.0
    return cols


def _read_npz(path: Path):
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable .npz ({exc}); re-save it with numpy.savez") from exc
    if "xyz" not in arrays:
        raise DataError(f"{path}: no 'xyz' array (keys: {sorted(arrays)}); save the points under key 'xyz'")
    rgb = arrays.get("rgb")
    if rgb is not None:
        rgb = _colours01(np.asarray(rgb), path)
    return arrays["xyz"], rgb, arrays.get("normals"), arrays.get("semantic"), arrays.get("instance")


def _unit(normals: np.ndarray) -> np.ndarray:
    """Returns normals scaled to unit length (zero vectors stay zero)."""
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.where(length > 0, normals / np.maximum(length, 1e-12), 0.0).astype(np.float32)


def write_ply(
    path: Path, xyz: np.ndarray, rgb01: np.ndarray | None, normals: np.ndarray | None = None
) -> Path:
    """Returns `path` after writing a binary little-endian PLY of xyz (N, 3) metres, rgb01 (N, 3) in 0..1.

    Colours are stored as uchar red/green/blue; normals (N, 3), when given, as float nx/ny/nz.
    """
    xyz = np.asarray(xyz, dtype=np.float32)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise DataError(f"{path}: xyz has shape {xyz.shape}; expected (N, 3)")
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    columns = [xyz[:, 0], xyz[:, 1], xyz[:, 2]]
    if rgb01 is not None:
        rgb = np.asarray(rgb01, dtype=np.float64)
        if rgb.shape != xyz.shape:
            raise DataError(f"{path}: rgb has shape {rgb.shape}; expected {xyz.shape}")
        rgb = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        columns += [rgb[:, 0], rgb[:, 1], rgb[:, 2]]
    if normals is not None:
        nrm = np.asarray(normals, dtype=np.float32)
        if nrm.shape != xyz.shape:
            raise DataError(f"{path}: normals have shape {nrm.shape}; expected {xyz.shape}")
        fields += [("nx", "f4"), ("ny", "f4"), ("nz", "f4")]
        columns += [nrm[:, 0], nrm[:, 1], nrm[:, 2]]
    vertices = np.empty(len(xyz), dtype=fields)
    for (key, _), col in zip(fields, columns, strict=True):
        vertices[key] = col
    element = PlyElement.describe(vertices, "vertex")
    path = Path(path)
    with atomic_path(path) as tmp:
        PlyData([element], text=False, byte_order="<").write(str(tmp))
    return path
