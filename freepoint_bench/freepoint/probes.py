"""A synthetic probe room for background removal: a box on a table, an empty table, a cabinet, a floor box.

    scene = support_probe_scene(seed=0)
    scene.meta["parts"]      # instance id → part name ("floor", "wall_x0", "table_top", "box_on_table", ...)

Axis-aligned, z up, metres: a 5 x 4 m floor, four 2.5 m walls and a ceiling (structure, semantic 0); a
table (0.75 m high top 1.2 x 0.8 m on four legs) with a 0.3 m box on it; an empty 0.9 x 0.6 m table; a
1.0 m tall cabinet 0.5 m deep against the wall y = 4 (its front, sides and top visible, its back hidden);
a 0.4 m box on the floor (objects, semantic 1). Only surfaces a scanner would see are sampled (no
undersides, nothing inside or behind another part), uniformly at `density` points per m² (structure at a
quarter of that, as in scans), with Gaussian noise. Each part is its own instance, so the points each
background rule strips can be counted per part.
"""

from __future__ import annotations

import numpy as np

from freepoint_bench.data.scene import Scene

STRUCTURE = ("floor", "ceiling", "wall_x0", "wall_x5", "wall_y0", "wall_y4")
OBJECTS = ("table_top", "table_legs", "box_on_table", "empty_table_top", "empty_table_legs", "cabinet", "floor_box")
ROOM = (5.0, 4.0, 2.5)  # x, y, z extent of the room


def _rect(rng: np.random.Generator, density: float, origin, e1, e2) -> np.ndarray:
    e1, e2 = np.asarray(e1, float), np.asarray(e2, float)
    area = np.linalg.norm(np.cross(e1, e2))
    uv = rng.random((max(1, int(round(density * area))), 2))
    return np.asarray(origin, float) + uv[:, :1] * e1 + uv[:, 1:] * e2


def _box_faces(rng, density, lo, hi, skip=()) -> np.ndarray:
    """Returns points on the faces of the box lo..hi except the bottom and the faces named in skip."""
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    dx, dy, dz = x1 - x0, y1 - y0, z1 - z0
    faces = {
        "top": ((x0, y0, z1), (dx, 0, 0), (0, dy, 0)),
        "y0": ((x0, y0, z0), (dx, 0, 0), (0, 0, dz)),
        "y1": ((x0, y1, z0), (dx, 0, 0), (0, 0, dz)),
        "x0": ((x0, y0, z0), (0, dy, 0), (0, 0, dz)),
        "x1": ((x1, y0, z0), (0, dy, 0), (0, 0, dz)),
    }
    return np.concatenate([_rect(rng, density, *f) for k, f in faces.items() if k not in skip])


def _table(rng, density, x0, y0, w, d, h) -> tuple[np.ndarray, np.ndarray]:
    top = _box_faces(rng, density, (x0, y0, h - 0.04), (x0 + w, y0 + d, h))
    legs = [
        _box_faces(rng, density, (x, y, 0.0), (x + 0.05, y + 0.05, h - 0.04), skip=("top",))
        for x in (x0 + 0.02, x0 + w - 0.07)
        for y in (y0 + 0.02, y0 + d - 0.07)
    ]
    return top, np.concatenate(legs)


def support_probe_scene(seed: int = 0, density: float = 3000.0, noise: float = 0.003) -> Scene:
    """Returns the probe room as a Scene (instance = index into STRUCTURE + OBJECTS; meta["parts"] names them)."""
    rng = np.random.default_rng(seed)
    lx, ly, lz = ROOM
    low = density / 4
    table_top, table_legs = _table(rng, density, 1.0, 1.0, 1.2, 0.8, 0.75)
    empty_top, empty_legs = _table(rng, density, 3.2, 0.8, 0.9, 0.6, 0.72)
    parts = {
        "floor": _rect(rng, low, (0, 0, 0), (lx, 0, 0), (0, ly, 0)),
        "ceiling": _rect(rng, low, (0, 0, lz), (lx, 0, 0), (0, ly, 0)),
        "wall_x0": _rect(rng, low, (0, 0, 0), (0, ly, 0), (0, 0, lz)),
        "wall_x5": _rect(rng, low, (lx, 0, 0), (0, ly, 0), (0, 0, lz)),
        "wall_y0": _rect(rng, low, (0, 0, 0), (lx, 0, 0), (0, 0, lz)),
        "wall_y4": _rect(rng, low, (0, ly, 0), (lx, 0, 0), (0, 0, lz)),
        "table_top": table_top,
        "table_legs": table_legs,
        "box_on_table": _box_faces(rng, density, (1.4, 1.25, 0.75), (1.7, 1.55, 1.05)),
        "empty_table_top": empty_top,
        "empty_table_legs": empty_legs,
        "cabinet": _box_faces(rng, density, (2.0, ly - 0.5, 0.0), (3.0, ly, 1.0), skip=("y1",)),
        "floor_box": _box_faces(rng, density, (3.8, 2.4, 0.0), (4.2, 2.8, 0.4)),
    }
    names = STRUCTURE + OBJECTS
    # The wall behind the cabinet is hidden.
    wall = parts["wall_y4"]
    parts["wall_y4"] = wall[~((wall[:, 0] > 2.0) & (wall[:, 0] < 3.0) & (wall[:, 2] < 1.0))]
    xyz = np.concatenate([parts[n] for n in names])
    instance = np.concatenate([np.full(len(parts[n]), i) for i, n in enumerate(names)]).astype(np.int64)
    xyz = xyz + rng.normal(0, noise, xyz.shape)
    colour = rng.random((len(names), 3)) * 0.6 + 0.2
    rgb = np.clip(colour[instance] + rng.normal(0, 0.02, xyz.shape), 0, 1)
    return Scene(
        name=f"support_probe_{seed}",
        xyz=xyz.astype(np.float32),
        rgb=rgb.astype(np.float32),
        semantic=(instance >= len(STRUCTURE)).astype(np.int64),
        instance=instance,
        meta={"dataset": "synthetic-probe", "parts": dict(enumerate(names))},
    )
