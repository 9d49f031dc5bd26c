"""The one Scene type that crosses every boundary of the suite."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from freepoint_bench.errors import DataError


@dataclass(frozen=True, eq=False)
class Scene:
    """A labelled or unlabelled point cloud.

    name: scene identifier (e.g. ``scene0000_00``, ``Area_5/office_1``).
    xyz: (N, 3) float32, metres.
    rgb: (N, 3) float32 in 0..1.
    normals: optional (N, 3) float32, unit length.
    semantic: optional (N,) int64 class ids of the source dataset, -1 = unlabelled.
    instance: optional (N,) int64 instance ids, -1 = unlabelled / no instance.
    meta: free-form provenance (source file, dataset, repairs).
    """

    name: str
    xyz: np.ndarray
    rgb: np.ndarray
    normals: np.ndarray | None = None
    semantic: np.ndarray | None = None
    instance: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        source = self.meta.get("source", self.name)
        object.__setattr__(self, "xyz", _as_points(self.xyz, "xyz", source))
        n = len(self.xyz)
        if n == 0:
            raise DataError(f"{source}: scene has no points; remove the file or fix the export")
        rgb = _as_points(self.rgb, "rgb", source, n)
        if rgb.size and rgb.max() > 1.0 + 1e-6:
            if rgb.max() <= 255.0 + 1e-6:
                rgb = rgb / 255.0  # 0..255 colours are normalised, not rejected
            else:
                raise DataError(f"{source}: rgb values up to {rgb.max():.1f}; expected 0..1 or 0..255")
        if rgb.size and rgb.min() < -1e-6:
            raise DataError(f"{source}: negative rgb values; expected 0..1 or 0..255")
        object.__setattr__(self, "rgb", np.clip(rgb, 0.0, 1.0).astype(np.float32))
        if self.normals is not None:
            object.__setattr__(self, "normals", _as_points(self.normals, "normals", source, n))
        for key in ("semantic", "instance"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, _as_labels(value, key, source, n))

    @property
    def num_points(self) -> int:
        """Returns N, the number of points."""
        return len(self.xyz)

    @property
    def has_labels(self) -> bool:
        """Returns True when both semantic and instance labels are present."""
        return self.semantic is not None and self.instance is not None

    def subset(self, index: np.ndarray, name: str | None = None) -> Scene:
        """Returns a Scene of the points selected by a boolean mask or integer index."""

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        return Scene(
            name=name or self.name,
            xyz=self.xyz[index],
            rgb=self.rgb[index],
            normals=take(self.normals),
            semantic=take(self.semantic),
            instance=take(self.instance),
            meta=dict(self.meta),
        )

    def with_(self, **changes) -> Scene:
        """Returns a copy with the given fields replaced (validated again)."""
        return replace(self, **changes)


def _as_points(a, key: str, source: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise DataError(f"{source}: {key} has shape {arr.shape}; expected (N, 3)")
    if n is not None and len(arr) != n:
        raise DataError(f"{source}: {key} has {len(arr)} rows but xyz has {n}; lengths must match")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise DataError(f"{source}: {key} has {bad} rows with NaN/inf; drop or repair those points")
    return np.ascontiguousarray(arr)


def _as_labels(a, key: str, source: str, n: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1 or len(arr) != n:
        raise DataError(f"{source}: {key} has shape {arr.shape}; expected ({n},)")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise DataError(f"{source}: {key} labels are not integers")
    elif arr.dtype.kind not in "iu":
        raise DataError(f"{source}: {key} labels have dtype {arr.dtype}; expected integers")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < -1:
        raise DataError(f"{source}: {key} has labels below -1; use -1 for unlabelled")
    return arr
