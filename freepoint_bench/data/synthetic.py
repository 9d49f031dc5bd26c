"""Procedurally generated indoor rooms labelled like S3DIS, and the "synthetic" dataset built from them.

    scene = generate_room(seed=3)                       # one room, fully determined by the seed
    reader = catalogue.get("synthetic").open_reader()   # the dataset: synth_0000, synth_0001, ...
    write_synthetic_s3dis(root, num_rooms=6, seed=0)    # the same rooms in the raw S3DIS layout

A room is an axis-aligned box (x in [0, L], y in [0, W], z in [0, H], metres) with a floor, four walls and
optionally a ceiling, a corner column, doors, windows and boards on the walls, bookcases against the walls,
and free-standing tables (with chairs around them and clutter on top), chairs, sofas and floor clutter.
Every object is a union of boxes and cylinders; points are sampled on their surfaces, area-weighted, then
the generator removes what a scanner would not see: undersides (downward faces), faces touching another
part, the floor, a wall or the ceiling, surfaces inside other objects (the wall behind a bookcase, the floor
under a leg), and random spherical holes (occlusion). Objects keep at least `min_gap_m` apart on the floor,
so each is a genuinely separate instance. Semantic ids index `S3DIS_CLASSES`; every structure element
(each wall, the floor, the ceiling, a column) is an instance too, as in S3DIS.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from freepoint_bench.atomic import write_text
from freepoint_bench.config import validation_message
from freepoint_bench.data.classes import S3DIS_CLASS_ID, S3DIS_CLASSES
from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

__all__ = [
    "DATASET_FILE",
    "DEFAULT_NUM_SCENES",
    "DEFAULT_SEED",
    "SyntheticConfig",
    "SyntheticReader",
    "cache_key",
    "generate_room",
    "read_dataset_settings",
    "scene_name",
    "scene_seed",
    "split_of_synthetic",
    "write_synthetic_dataset",
    "write_synthetic_s3dis",
]

DATASET_FILE = "synthetic.toml"
DEFAULT_NUM_SCENES = 8
DEFAULT_SEED = 0
VAL_EVERY = 4  # scene index i is val when i % 4 == 3: 25 % val, independent of the number of scenes

_EPS = 0.01  # metres: contact tolerance for "touching" surfaces (culled as invisible)

FloatRange = tuple[float, float]
IntRange = tuple[int, int]


class SyntheticConfig(BaseModel):
    """Sizes and noise of the generated rooms (not paper constants: a test bed for the pipeline).

    Ranges are (low, high), drawn uniformly per room / object; counts are inclusive ranges.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_points: int = Field(20000, ge=100)  # points per room after all removals (exact)
    room_length_m: FloatRange = (4.0, 8.0)  # x extent
    room_width_m: FloatRange = (3.5, 6.0)  # y extent
    room_height_m: FloatRange = (2.6, 3.2)  # z extent
    include_ceiling: bool = True  # S3DIS rooms have one; ScanNet-like scans mostly do not
    num_tables: IntRange = (1, 2)
    num_chairs: IntRange = (2, 6)  # placed around tables first, the rest free-standing
    num_sofas: IntRange = (0, 1)
    num_bookcases: IntRange = (0, 2)  # against walls
    num_boards: IntRange = (0, 2)  # thin, on walls
    num_clutter: IntRange = (2, 6)  # small boxes / cylinders on tables and on the floor
    num_doors: IntRange = (1, 2)
    num_windows: IntRange = (0, 2)
    num_columns: IntRange = (0, 1)  # in a corner
    min_gap_m: float = Field(0.15, ge=0.0)  # least floor distance between furniture footprints
    clutter_gap_m: float = Field(0.05, ge=0.0)  # least distance between clutter items on one table
    object_density: float = Field(2.5, gt=0.0)  # points per m² on objects / on walls, floor, ceiling
    xyz_noise_m: float = Field(0.005, ge=0.0)  # Gaussian sensor noise on every coordinate
    color_noise: float = Field(0.03, ge=0.0)  # Gaussian per-point noise on rgb (0..1)
    object_color_jitter: float = Field(0.08, ge=0.0)  # uniform per-object shift of its class colour
    num_holes: IntRange = (0, 3)  # spherical occlusion cut-outs
    hole_radius_m: FloatRange = (0.15, 0.35)
    with_normals: bool = False  # attach exact surface normals (S3DIS has none)

    @model_validator(mode="after")
    def _check_ranges(self) -> SyntheticConfig:
        for name, value in self:
            if isinstance(value, tuple):
                low, high = value
                if low > high or low < 0:
                    raise ValueError(f"{name} = {list(value)}: need 0 <= low <= high")
        for name in ("room_length_m", "room_width_m"):
            if getattr(self, name)[0] < 2.5:
                raise ValueError(f"{name} low end must be at least 2.5 m to fit furniture")
        if self.room_height_m[0] < 2.3:
            raise ValueError("room_height_m low end must be at least 2.3 m (doors are 2.1 m)")
        return self


# ---------------------------------------------------------------------------------------------- geometry


@dataclass
class _Room:
    """Accumulates instances, surfaces and solids of one room while it is laid out."""

    length: float
    width: float
    height: float
    rng: np.random.Generator
    config: SyntheticConfig
    classes: list[int] = field(default_factory=list)  # semantic id per instance
    colors: list[np.ndarray] = field(default_factory=list)  # base rgb per instance
    # planar faces: origin, edge u, edge v, normal, instance, solid (-1 = structure plane), density weight
    faces: list[tuple] = field(default_factory=list)
    # solids for the inside test: ("box", centre, half, yaw) or ("cyl", centre_xy, z0, z1, radius)
    solids: list[tuple] = field(default_factory=list)
    cylinders: list[tuple] = field(default_factory=list)  # (cx, cy, z0, z1, r, instance, solid, weight)
    footprints: list[np.ndarray] = field(default_factory=list)  # floor AABBs [x0, y0, x1, y1]
    wall_spans: dict[int, list[tuple[float, float]]] = field(default_factory=dict)

    def new_instance(self, cls: str) -> int:
        sem = S3DIS_CLASS_ID[cls]
        jitter = self.rng.uniform(-1, 1, 3) * self.config.object_color_jitter
        self.classes.append(sem)
        self.colors.append(np.clip(_class_color(cls, self.rng) + jitter, 0.0, 1.0))
        return len(self.classes) - 1

    def plane(self, inst: int, origin, u, v, normal) -> None:
        self.faces.append(
            (
                np.asarray(origin, float),
                np.asarray(u, float),
                np.asarray(v, float),
                np.asarray(normal, float),
                inst,
                -1,
                1.0,
            )
        )

    def box(self, inst: int, centre, half, yaw: float = 0.0, weight: float | None = None) -> None:
        """Adds a box solid (centre and half sizes in metres, yaw about z) and its five visible faces."""
        weight = self.config.object_density if weight is None else weight
        c, h = np.asarray(centre, float), np.asarray(half, float)
        solid = len(self.solids)
        self.solids.append(("box", c, h, yaw))
        rot = _rot(yaw)
        axes = [rot[:, 0], rot[:, 1], np.array([0.0, 0.0, 1.0])]
        for k in range(3):
            for sign in (1.0, -1.0):
                if k == 2 and sign < 0:
                    continue  # undersides are never seen by the scanner
                i, j = [a for a in range(3) if a != k]
                normal = sign * axes[k]
                origin = c + normal * h[k] - axes[i] * h[i] - axes[j] * h[j]
                self.faces.append(
                    (origin, 2 * h[i] * axes[i], 2 * h[j] * axes[j], normal, inst, solid, weight)
                )

    def cylinder(self, inst: int, cx: float, cy: float, z0: float, z1: float, r: float) -> None:
        solid = len(self.solids)
        self.solids.append(("cyl", np.array([cx, cy]), z0, z1, r))
        self.cylinders.append((cx, cy, z0, z1, r, inst, solid, self.config.object_density))

    def fits(self, rect: np.ndarray, gap: float, margin: float | None = None) -> bool:
        """Returns True when the floor AABB `rect` is inside the room (by `margin`) and `gap` from others."""
        margin = gap if margin is None else margin
        x0, y0, x1, y1 = rect
        if x0 < margin or y0 < margin or x1 > self.length - margin or y1 > self.width - margin:
            return False
        for other in self.footprints:
            if x0 < other[2] + gap and other[0] < x1 + gap and y0 < other[3] + gap and other[1] < y1 + gap:
                return False
        return True


def _rot(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _footprint(cx: float, cy: float, half_x: float, half_y: float, yaw: float) -> np.ndarray:
    """Returns the floor AABB [x0, y0, x1, y1] of a rectangle rotated by yaw about its centre."""
    c, s = abs(np.cos(yaw)), abs(np.sin(yaw))
    ex, ey = c * half_x + s * half_y, s * half_x + c * half_y
    return np.array([cx - ex, cy - ey, cx + ex, cy + ey])


_PALETTE = {
    "ceiling": [(0.92, 0.92, 0.9)],
    "floor": [(0.55, 0.5, 0.45), (0.45, 0.35, 0.25), (0.6, 0.6, 0.62)],
    "wall": [(0.85, 0.83, 0.78), (0.8, 0.82, 0.85), (0.88, 0.86, 0.8)],
    "column": [(0.8, 0.8, 0.78)],
    "window": [(0.6, 0.72, 0.82)],
    "door": [(0.55, 0.38, 0.22), (0.7, 0.7, 0.72), (0.45, 0.3, 0.2)],
    "table": [(0.62, 0.47, 0.32), (0.8, 0.8, 0.78), (0.35, 0.25, 0.18)],
    "chair": [(0.2, 0.2, 0.22), (0.25, 0.3, 0.55), (0.6, 0.2, 0.15), (0.4, 0.42, 0.4)],
    "sofa": [(0.35, 0.4, 0.5), (0.55, 0.2, 0.2), (0.5, 0.45, 0.35)],
    "bookcase": [(0.45, 0.3, 0.2), (0.7, 0.7, 0.7)],
    "board": [(0.95, 0.95, 0.95), (0.25, 0.3, 0.25)],
    "clutter": [(0.85, 0.25, 0.2), (0.2, 0.6, 0.3), (0.9, 0.75, 0.2), (0.3, 0.4, 0.8), (0.9, 0.9, 0.9)],
}


def _class_color(cls: str, rng: np.random.Generator) -> np.ndarray:
    options = _PALETTE[cls]
    return np.array(options[int(rng.integers(len(options)))], dtype=float)


def _draw(rng: np.random.Generator, value_range: tuple) -> float:
    return float(rng.uniform(value_range[0], value_range[1]))


def _count(rng: np.random.Generator, value_range: tuple[int, int]) -> int:
    return int(rng.integers(value_range[0], value_range[1] + 1))


# ------------------------------------------------------------------------------------------------ layout


def _walls(room: _Room) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
    """Returns per wall (start corner, unit direction along it, inward normal, length), counter-clockwise."""
    L, W = room.length, room.width
    return [
        (np.array([0.0, 0.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0]), L),
        (np.array([L, 0.0]), np.array([0.0, 1.0]), np.array([-1.0, 0.0]), W),
        (np.array([L, W]), np.array([-1.0, 0.0]), np.array([0.0, -1.0]), L),
        (np.array([0.0, W]), np.array([0.0, -1.0]), np.array([1.0, 0.0]), W),
    ]


def _structure(room: _Room) -> None:
    L, W, H = room.length, room.width, room.height
    floor = room.new_instance("floor")
    room.plane(floor, (0, 0, 0), (L, 0, 0), (0, W, 0), (0, 0, 1))
    if room.config.include_ceiling:
        ceiling = room.new_instance("ceiling")
        room.plane(ceiling, (0, 0, H), (L, 0, 0), (0, W, 0), (0, 0, -1))
    for start, along, inward, length in _walls(room):
        wall = room.new_instance("wall")
        room.plane(wall, (*start, 0.0), (*(along * length), 0.0), (0, 0, H), (*inward, 0.0))


def _wall_item(
    room: _Room,
    cls: str,
    width: float,
    depth: float,
    z0: float,
    z1: float,
    clearance: float = 0.0,
    weight: float | None = None,
) -> bool:
    """Places one box against a random wall on a free span; returns False when none is free."""
    rng, gap = room.rng, room.config.min_gap_m
    walls = _walls(room)
    for _ in range(30):
        k = int(rng.integers(4))
        start, along, inward, length = walls[k]
        if width + 2 * gap > length:
            continue
        a = float(rng.uniform(gap, length - width - gap))
        spans = room.wall_spans.setdefault(k, [])
        if any(a < s1 + gap and s0 < a + width + gap for s0, s1 in spans):
            continue
        centre_xy = start + along * (a + width / 2) + inward * (depth / 2)
        yaw = float(np.arctan2(along[1], along[0]))
        if z0 < _EPS:  # standing on the floor: reserve its footprint plus the clearance in front
            reach = _footprint(
                *(start + along * (a + width / 2) + inward * (depth + clearance) / 2),
                width / 2,
                (depth + clearance) / 2,
                yaw,
            )
            if not room.fits(reach, gap, margin=-1.0):
                continue
            room.footprints.append(reach)
        spans.append((a, a + width))
        inst = room.new_instance(cls)
        room.box(inst, (*centre_xy, (z0 + z1) / 2), (width / 2, depth / 2, (z1 - z0) / 2), yaw, weight=weight)
        return True
    return False


def _column(room: _Room) -> None:
    size_x, size_y = (float(room.rng.uniform(0.3, 0.5)) for _ in range(2))
    corner = int(room.rng.integers(4))
    x0 = 0.0 if corner in (0, 3) else room.length - size_x
    y0 = 0.0 if corner in (0, 1) else room.width - size_y
    rect = np.array([x0, y0, x0 + size_x, y0 + size_y])
    if not room.fits(rect, room.config.min_gap_m, margin=-1.0):
        return
    room.footprints.append(rect)
    # The column blocks the corner ends of its two walls.
    ends = {
        0: [(0, size_x), (3, size_y)],
        1: [(0, size_x), (1, size_y)],
        2: [(1, size_y), (2, size_x)],
        3: [(2, size_x), (3, size_y)],
    }[corner]
    for wall, extent in ends:
        length = room.length if wall in (0, 2) else room.width
        starts_at_corner = (wall, corner) in ((0, 0), (1, 1), (2, 2), (3, 3))
        span = (0.0, extent) if starts_at_corner else (length - extent, length)
        room.wall_spans.setdefault(wall, []).append(span)
    inst = room.new_instance("column")
    room.box(
        inst,
        (x0 + size_x / 2, y0 + size_y / 2, room.height / 2),
        (size_x / 2, size_y / 2, room.height / 2),
        weight=1.0,
    )


def _place_free(
    room: _Room, half_x: float, half_y: float, yaw_choices: str
) -> tuple[float, float, float] | None:
    """Returns (cx, cy, yaw) of a free floor spot for a rectangle, or None after many tries."""
    rng = room.rng
    for _ in range(60):
        if yaw_choices == "axis":
            yaw = float(rng.integers(4)) * np.pi / 2
        else:
            yaw = float(rng.uniform(0, 2 * np.pi))
        cx = float(rng.uniform(0, room.length))
        cy = float(rng.uniform(0, room.width))
        rect = _footprint(cx, cy, half_x, half_y, yaw)
        if room.fits(rect, room.config.min_gap_m):
            room.footprints.append(rect)
            return cx, cy, yaw
    return None


def _to_world(cx: float, cy: float, yaw: float, local) -> np.ndarray:
    return np.array([cx, cy, 0.0]) + _rot(yaw) @ np.asarray(local, float)


def _table(room: _Room) -> tuple[float, float, float, float, float, float] | None:
    rng = room.rng
    hx, hy = _draw(rng, (0.4, 0.9)), _draw(rng, (0.3, 0.5))
    height, top, leg = _draw(rng, (0.72, 0.77)), 0.04, 0.05
    spot = _place_free(room, hx, hy, "axis")
    if spot is None:
        return None
    cx, cy, yaw = spot
    inst = room.new_instance("table")
    room.box(inst, _to_world(cx, cy, yaw, (0, 0, height - top / 2)), (hx, hy, top / 2), yaw)
    leg_h = (height - top) / 2
    for sx in (-1, 1):
        for sy in (-1, 1):
            local = (sx * (hx - 0.05 - leg / 2), sy * (hy - 0.05 - leg / 2), leg_h)
            room.box(inst, _to_world(cx, cy, yaw, local), (leg / 2, leg / 2, leg_h), yaw)
    return cx, cy, yaw, hx, hy, height


def _chair_parts(room: _Room, inst: int, cx: float, cy: float, yaw: float, w: float, d: float) -> None:
    """Adds seat, four legs and a back; local +y points to the back (the chair faces -y)."""
    rng = room.rng
    seat_h, seat_t, leg = _draw(rng, (0.42, 0.48)), 0.05, 0.04
    back_h, back_t = _draw(rng, (0.35, 0.5)), 0.05
    room.box(inst, _to_world(cx, cy, yaw, (0, 0, seat_h - seat_t / 2)), (w / 2, d / 2, seat_t / 2), yaw)
    leg_h = (seat_h - seat_t) / 2
    for sx in (-1, 1):
        for sy in (-1, 1):
            local = (sx * (w / 2 - 0.03 - leg / 2), sy * (d / 2 - 0.03 - leg / 2), leg_h)
            room.box(inst, _to_world(cx, cy, yaw, local), (leg / 2, leg / 2, leg_h), yaw)
    local = (0, d / 2 - back_t / 2, seat_h + back_h / 2)
    room.box(inst, _to_world(cx, cy, yaw, local), (w / 2, back_t / 2, back_h / 2), yaw)


def _chairs(room: _Room, count: int, tables: list[tuple]) -> None:
    rng, gap = room.rng, room.config.min_gap_m
    placed = 0
    # Around tables first: on a random side, facing the table, gap + a little away from it.
    for _ in range(count * 4):
        if placed == count or not tables:
            break
        tx, ty, tyaw, thx, thy, _h = tables[int(rng.integers(len(tables)))]
        w, d = _draw(rng, (0.42, 0.52)), _draw(rng, (0.42, 0.5))
        side = int(rng.integers(4))
        normal_local = [(0, -1), (1, 0), (0, 1), (-1, 0)][side]
        reach = (thy if side in (0, 2) else thx) + gap + 0.03 + d / 2
        along = float(rng.uniform(-0.5, 0.5)) * ((thx if side in (0, 2) else thy) - w / 2)
        tangent_local = (-normal_local[1], normal_local[0])
        local = np.array(normal_local) * reach + np.array(tangent_local) * along
        centre = _to_world(tx, ty, tyaw, (*local, 0))
        out = _rot(tyaw)[:2, :2] @ np.array(normal_local, float)
        # local +y (the back) points away from the table
        yaw = float(np.arctan2(out[1], out[0]) - np.pi / 2 + rng.normal(0, 0.08))
        rect = _footprint(centre[0], centre[1], w / 2, d / 2, yaw)
        if not room.fits(rect, gap):
            continue
        room.footprints.append(rect)
        _chair_parts(room, room.new_instance("chair"), centre[0], centre[1], yaw, w, d)
        placed += 1
    while placed < count:
        w, d = _draw(rng, (0.42, 0.52)), _draw(rng, (0.42, 0.5))
        spot = _place_free(room, w / 2, d / 2, "any")
        if spot is None:
            break
        _chair_parts(room, room.new_instance("chair"), *spot, w, d)
        placed += 1


def _sofa(room: _Room) -> None:
    rng = room.rng
    w, d = _draw(rng, (1.4, 2.2)), _draw(rng, (0.8, 0.95))
    spot = _place_free(room, w / 2, d / 2, "axis")
    if spot is None:
        return
    cx, cy, yaw = spot
    inst = room.new_instance("sofa")
    arm, back_t, seat_h, arm_h, back_h = 0.18, 0.2, 0.42, 0.62, 0.85
    inner_d = d - back_t
    parts = [
        ((0, -d / 2 + inner_d / 2, seat_h / 2), (w / 2 - arm, inner_d / 2, seat_h / 2)),  # seat base
        ((0, d / 2 - back_t / 2, back_h / 2), (w / 2, back_t / 2, back_h / 2)),  # back
        ((-w / 2 + arm / 2, -d / 2 + inner_d / 2, arm_h / 2), (arm / 2, inner_d / 2, arm_h / 2)),
        ((w / 2 - arm / 2, -d / 2 + inner_d / 2, arm_h / 2), (arm / 2, inner_d / 2, arm_h / 2)),
    ]
    for local, half in parts:
        room.box(inst, _to_world(cx, cy, yaw, local), half, yaw)


def _clutter_item(room: _Room, cx: float, cy: float, z0: float, scale: float) -> None:
    rng = room.rng
    inst = room.new_instance("clutter")
    if rng.random() < 0.5:
        r, h = _draw(rng, (0.05, 0.12)) * scale, _draw(rng, (0.08, 0.3)) * scale
        room.cylinder(inst, cx, cy, z0, z0 + h, r)
    else:
        hx, hy = _draw(rng, (0.05, 0.15)) * scale, _draw(rng, (0.05, 0.15)) * scale
        h = _draw(rng, (0.05, 0.3)) * scale
        room.box(inst, (cx, cy, z0 + h / 2), (hx, hy, h / 2), float(rng.uniform(0, np.pi)))


def _clutter(room: _Room, count: int, tables: list[tuple]) -> None:
    rng = room.rng
    on_table: list[list[np.ndarray]] = [[] for _ in tables]
    for _ in range(count):
        if tables and rng.random() < 0.6:
            t = int(rng.integers(len(tables)))
            tx, ty, tyaw, thx, thy, height = tables[t]
            for _try in range(20):
                # candidate footprint: the item's bounding circle, as a square in the table's frame
                radius = 0.16
                lx = float(rng.uniform(-thx + radius, thx - radius))
                ly = float(rng.uniform(-thy + radius, thy - radius))
                rect = np.array([lx - radius, ly - radius, lx + radius, ly + radius])
                gap = room.config.clutter_gap_m
                if any(
                    rect[0] < o[2] + gap
                    and o[0] < rect[2] + gap
                    and rect[1] < o[3] + gap
                    and o[1] < rect[3] + gap
                    for o in on_table[t]
                ):
                    continue
                on_table[t].append(rect)
                centre = _to_world(tx, ty, tyaw, (lx, ly, 0))
                _clutter_item(room, centre[0], centre[1], height, scale=1.0)
                break
        else:
            half = 0.3  # floor clutter (bins, boxes) is larger: scale 2 of the table items
            spot = _place_free(room, half, half, "axis")
            if spot is not None:
                _clutter_item(room, spot[0], spot[1], 0.0, scale=2.0)


def _layout(room: _Room) -> None:
    cfg, rng = room.config, room.rng
    _structure(room)
    for _ in range(_count(rng, cfg.num_columns)):
        _column(room)
    for _ in range(_count(rng, cfg.num_doors)):
        _wall_item(room, "door", _draw(rng, (0.8, 1.0)), 0.04, 0.0, _draw(rng, (2.0, 2.1)), clearance=0.8)
    for _ in range(_count(rng, cfg.num_bookcases)):
        _wall_item(
            room,
            "bookcase",
            _draw(rng, (0.6, 1.2)),
            _draw(rng, (0.3, 0.4)),
            0.0,
            min(_draw(rng, (1.6, 2.2)), room.height - 0.2),
        )
    for _ in range(_count(rng, cfg.num_windows)):
        _wall_item(
            room,
            "window",
            _draw(rng, (0.8, 1.6)),
            0.05,
            _draw(rng, (0.85, 1.0)),
            min(_draw(rng, (2.0, 2.2)), room.height - 0.2),
        )
    for _ in range(_count(rng, cfg.num_boards)):
        z0 = _draw(rng, (0.8, 1.0))
        _wall_item(room, "board", _draw(rng, (1.0, 2.4)), 0.02, z0, z0 + _draw(rng, (0.8, 1.2)))
    tables = [t for t in (_table(room) for _ in range(_count(rng, cfg.num_tables))) if t is not None]
    for _ in range(_count(rng, cfg.num_sofas)):
        _sofa(room)
    _chairs(room, _count(rng, cfg.num_chairs), tables)
    _clutter(room, _count(rng, cfg.num_clutter), tables)


# ----------------------------------------------------------------------------------------------- sampling


def _sample_surfaces(room: _Room, total: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Returns (xyz, normals, instance, solid) of `total` points sampled area-weighted (times density)."""
    rng = room.rng
    faces, cyls = room.faces, room.cylinders
    origin = np.array([f[0] for f in faces])
    u = np.array([f[1] for f in faces])
    v = np.array([f[2] for f in faces])
    face_normal = np.array([f[3] for f in faces])
    face_area = np.linalg.norm(np.cross(u, v), axis=1)
    cyl = np.array([c[:5] for c in cyls], dtype=float).reshape(-1, 5)
    side_area = 2 * np.pi * cyl[:, 4] * (cyl[:, 3] - cyl[:, 2])
    top_area = np.pi * cyl[:, 4] ** 2
    weights = np.concatenate(
        [
            face_area * np.array([f[6] for f in faces]),
            side_area * np.array([c[7] for c in cyls]),
            top_area * np.array([c[7] for c in cyls]),
        ]
    )
    counts = rng.multinomial(total, weights / weights.sum())
    nf, nc = len(faces), len(cyls)
    fc, sc, tc = counts[:nf], counts[nf : nf + nc], counts[nf + nc :]

    fi = np.repeat(np.arange(nf), fc)
    st = rng.random((len(fi), 2))
    xyz_f = origin[fi] + st[:, :1] * u[fi] + st[:, 1:] * v[fi]
    nrm_f = face_normal[fi]
    inst_f = np.array([f[4] for f in faces], dtype=np.int64)[fi]
    solid_f = np.array([f[5] for f in faces], dtype=np.int64)[fi]

    ci = np.repeat(np.arange(nc), sc)
    theta = rng.uniform(0, 2 * np.pi, len(ci))
    ring = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    z = cyl[ci, 2] + rng.random(len(ci)) * (cyl[ci, 3] - cyl[ci, 2])
    xyz_s = np.column_stack([cyl[ci, :2] + ring * cyl[ci, 4:5], z])
    nrm_s = np.column_stack([ring, np.zeros(len(ci))])

    ti = np.repeat(np.arange(nc), tc)
    theta = rng.uniform(0, 2 * np.pi, len(ti))
    radius = cyl[ti, 4] * np.sqrt(rng.random(len(ti)))
    xyz_t = np.column_stack(
        [cyl[ti, 0] + radius * np.cos(theta), cyl[ti, 1] + radius * np.sin(theta), cyl[ti, 3]]
    )
    nrm_t = np.tile([0.0, 0.0, 1.0], (len(ti), 1))

    cyl_inst = np.array([c[5] for c in cyls], dtype=np.int64)
    cyl_solid = np.array([c[6] for c in cyls], dtype=np.int64)
    xyz = np.concatenate([xyz_f, xyz_s, xyz_t])
    normals = np.concatenate([nrm_f, nrm_s, nrm_t])
    inst = np.concatenate([inst_f, cyl_inst[ci], cyl_inst[ti]])
    solid = np.concatenate([solid_f, cyl_solid[ci], cyl_solid[ti]])
    return xyz, normals, inst, solid


def _visible(room: _Room, xyz: np.ndarray, solid: np.ndarray) -> np.ndarray:
    """Returns (N,) bool: points not inside another solid and (object points) not touching the room shell."""
    keep = np.ones(len(xyz), dtype=bool)
    for j, s in enumerate(room.solids):
        if s[0] == "box":
            _, centre, half, yaw = s
            local = (xyz - centre) @ _rot(yaw)  # rows @ R == (R^T p) per row
            inside = np.all(np.abs(local) <= half + _EPS, axis=1)
        else:
            _, cxy, z0, z1, r = s
            inside = (np.sum((xyz[:, :2] - cxy) ** 2, axis=1) <= (r + _EPS) ** 2) & (
                (xyz[:, 2] >= z0 - _EPS) & (xyz[:, 2] <= z1 + _EPS)
            )
        keep &= ~(inside & (solid != j))
    # object faces against the floor, a wall or the ceiling are hidden (backs of boards, column tops)
    shell = (
        (xyz[:, 0] < _EPS)
        | (xyz[:, 0] > room.length - _EPS)
        | (xyz[:, 1] < _EPS)
        | (xyz[:, 1] > room.width - _EPS)
        | (xyz[:, 2] < _EPS)
        | (xyz[:, 2] > room.height - _EPS)
    )
    keep &= ~(shell & (solid >= 0))
    return keep


def _holes(room: _Room, xyz: np.ndarray, inst: np.ndarray) -> np.ndarray:
    """Returns (N,) bool keep mask after spherical cut-outs that never take more than half of an object."""
    rng, cfg = room.rng, room.config
    keep = np.ones(len(xyz), dtype=bool)
    sizes = np.bincount(inst, minlength=len(room.classes))
    for _ in range(_count(rng, cfg.num_holes)):
        centre = xyz[int(rng.integers(len(xyz)))]
        radius = _draw(rng, cfg.hole_radius_m)
        cut = keep & (np.sum((xyz - centre) ** 2, axis=1) <= radius**2)
        remaining = np.bincount(inst[keep & ~cut], minlength=len(room.classes))
        if np.any(remaining[sizes > 0] < 0.5 * sizes[sizes > 0]):
            continue  # would erase an object: the scanner saw it from somewhere
        keep &= ~cut
    return keep


def generate_room(seed: int, config: SyntheticConfig | None = None, name: str | None = None) -> Scene:
    """Returns a labelled synthetic room of exactly config.num_points points, fully determined by `seed`.

    semantic: S3DIS class ids (index of S3DIS_CLASSES); instance: 0..K-1, one per object and per structure
    element, every point labelled. meta: dataset "synthetic", seed, config, room_size_m, instance_classes.
    """
    config = config or SyntheticConfig()
    name = name or f"synthetic_{seed}"
    rng = np.random.default_rng(seed)
    size = [
        _draw(rng, config.room_length_m),
        _draw(rng, config.room_width_m),
        _draw(rng, config.room_height_m),
    ]
    room = _Room(*size, rng=rng, config=config)
    _layout(room)

    factor = 1.4
    for _ in range(6):
        xyz, normals, inst, solid = _sample_surfaces(room, int(config.num_points * factor))
        keep = _visible(room, xyz, solid)
        xyz, normals, inst = xyz[keep], normals[keep], inst[keep]
        keep = _holes(room, xyz, inst)
        if keep.sum() >= config.num_points:
            break
        factor *= 1.5 * config.num_points / max(int(keep.sum()), 1)
    else:  # pragma: no cover - only with absurd configs
        raise ConfigError(
            f"synthetic room {name}: could not keep {config.num_points} points; check the config"
        )
    chosen = rng.choice(np.flatnonzero(keep), size=config.num_points, replace=False)
    xyz, normals, inst = xyz[chosen], normals[chosen], inst[chosen]

    colors = np.array(room.colors)[inst] + rng.normal(0.0, config.color_noise, (len(inst), 3))
    xyz = xyz + rng.normal(0.0, config.xyz_noise_m, xyz.shape)
    classes = np.array(room.classes, dtype=np.int64)
    present, instance = np.unique(inst, return_inverse=True)  # ids 0..K-1 in layout order
    semantic = classes[inst]
    return Scene(
        name=name,
        xyz=xyz.astype(np.float32),
        rgb=np.clip(colors, 0.0, 1.0).astype(np.float32),
        normals=normals.astype(np.float32) if config.with_normals else None,
        semantic=semantic,
        instance=instance.astype(np.int64),
        meta={
            "dataset": "synthetic",
            "source": f"synthetic room {name} (seed {seed})",
            "seed": int(seed),
            "config": config.model_dump(mode="json"),
            "room_size_m": [round(s, 4) for s in size],
            "instance_classes": [S3DIS_CLASSES[int(classes[i])] for i in present],
        },
    )


# ------------------------------------------------------------------------------------------------ dataset

_NAME_RE = re.compile(r"^synth_(\d{4,})$")


def scene_name(index: int) -> str:
    """Returns the name of scene `index` of the synthetic dataset: ``synth_0007``."""
    return f"synth_{index:04d}"


def scene_seed(base_seed: int, index: int) -> int:
    """Returns the generator seed of scene `index` (independent streams for every (base seed, index))."""
    return int(np.random.SeedSequence([int(base_seed), int(index)]).generate_state(1, dtype=np.uint32)[0])


def _index_of(name: str) -> int:
    match = _NAME_RE.match(name)
    if match is None:
        raise DataError(f"{name!r} is not a synthetic scene name; expected synth_NNNN (e.g. synth_0003)")
    return int(match[1])


def split_of_synthetic(name: str, root: Path | None = None) -> str:
    """Returns "val" for every 4th synthetic scene (index % 4 == 3, i.e. 25 %), "train" for the others."""
    del root  # the split depends on the index only, whatever the dataset's settings
    return "val" if _index_of(name) % VAL_EVERY == VAL_EVERY - 1 else "train"


def read_dataset_settings(root: Path | None) -> tuple[int, int, SyntheticConfig]:
    """Returns (num_scenes, seed, config) from ``root/synthetic.toml``; the defaults where it is absent.

    The file holds ``num_scenes``, ``seed`` and any SyntheticConfig field at the top level.
    """
    path = Path(root) / DATASET_FILE if root is not None else None
    if path is None or not path.is_file():
        return DEFAULT_NUM_SCENES, DEFAULT_SEED, SyntheticConfig()
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"{path}: cannot read synthetic dataset settings ({exc}); fix or delete it"
        ) from exc
    num_scenes = values.pop("num_scenes", DEFAULT_NUM_SCENES)
    seed = values.pop("seed", DEFAULT_SEED)
    if not isinstance(num_scenes, int) or isinstance(num_scenes, bool) or num_scenes < 1:
        raise ConfigError(f"{path}: num_scenes = {num_scenes!r}; expected a positive integer")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"{path}: seed = {seed!r}; expected a non-negative integer")
    try:
        config = SyntheticConfig(**values)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {validation_message(exc)}; fix the value or delete it for the default") from exc
    return num_scenes, seed, config


def cache_key(root: Path | None) -> list:
    """Returns what the scene cache of the dataset in `root` is keyed by: its settings (an edited synthetic.toml
    means new scenes), not where they are written."""
    num_scenes, seed, config = read_dataset_settings(None if root is None else Path(root))
    return [num_scenes, seed, config.model_dump()]


class SyntheticReader:
    """The "synthetic" dataset: scenes synth_0000 .. synth_{n-1}, generated on read from root's settings.

    root may be a missing folder or one without synthetic.toml: then 8 scenes, seed 0, default config.
    """

    name = "synthetic"

    def list_scenes(self, root: Path) -> list[str]:
        """Returns the scene names synth_0000 .. of the dataset configured in `root`."""
        num_scenes, _, _ = read_dataset_settings(root)
        return [scene_name(i) for i in range(num_scenes)]

    def read_scene(self, root: Path, name: str) -> Scene:
        """Returns the generated scene `name`; DataError for names outside the dataset."""
        num_scenes, seed, config = read_dataset_settings(root)
        index = _index_of(name)
        if index >= num_scenes:
            raise DataError(
                f"synthetic scene {name} does not exist: the dataset in {root} has {num_scenes} scenes "
                f"(synth_0000 .. {scene_name(num_scenes - 1)}); raise num_scenes in {DATASET_FILE}"
            )
        scene = generate_room(scene_seed(seed, index), config, name=name)
        scene.meta.update({"index": index, "base_seed": seed})
        return scene


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def write_synthetic_dataset(
    root: Path,
    num_scenes: int = DEFAULT_NUM_SCENES,
    seed: int = DEFAULT_SEED,
    config: SyntheticConfig | None = None,
) -> Path:
    """Returns the path of ``root/synthetic.toml`` after writing the dataset settings there (atomically)."""
    if num_scenes < 1 or seed < 0:
        raise ConfigError(f"synthetic dataset: num_scenes {num_scenes} must be >= 1 and seed {seed} >= 0")
    config = config or SyntheticConfig()
    lines = [
        "# synthetic dataset for freepoint-bench (see freepoint_bench/data/synthetic.py)",
        f"num_scenes = {int(num_scenes)}",
        f"seed = {int(seed)}",
    ]
    lines += [f"{key} = {_toml_value(value)}" for key, value in config.model_dump().items()]
    return write_text(Path(root) / DATASET_FILE, "\n".join(lines) + "\n")


def write_synthetic_s3dis(
    root: Path,
    num_rooms: int,
    seed: int = DEFAULT_SEED,
    config: SyntheticConfig | None = None,
    areas: tuple[int, ...] = (1, 2, 3, 4, 5, 6),
    progress: Callable[[int, str], None] | None = None,
) -> list[str]:
    """Returns the S3DIS scene names (``Area_N/office_K``) after writing synthetic rooms in raw S3DIS layout.

    Room i uses seed scene_seed(seed, i) and goes to area areas[i % len(areas)] (so Area 5, S3DIS's
    validation area, gets rooms once there are 5 or more). Written with the s3dis reader's writer.
    """
    from freepoint_bench.data.readers.s3dis import write_s3dis_room

    config = config or SyntheticConfig()
    names = []
    per_area: dict[int, int] = {}
    for i in range(num_rooms):
        area = int(areas[i % len(areas)])
        per_area[area] = per_area.get(area, 0) + 1
        room = f"office_{per_area[area]}"
        scene = generate_room(scene_seed(seed, i), config, name=f"Area_{area}/{room}")
        write_s3dis_room(Path(root), area, room, scene)
        names.append(f"Area_{area}/{room}")
        if progress is not None:
            progress(i + 1, names[-1])
    return names

