"""Fixtures for engine tests: tiny hand-made rooms in an in-memory store."""

from __future__ import annotations

import numpy as np
import pytest
from stores import MemoryStore

from freepoint_bench.data.scene import Scene


def box_room(seed: int, num_boxes: int = 3, points_per_box: int = 400, floor_points: int = 600) -> Scene:
    """Returns a Scene: a 4 m x 4 m floor plus `num_boxes` coloured boxes (instance ids 0..num_boxes-1)."""
    rng = np.random.default_rng(seed)
    xyz = [np.c_[rng.uniform(0, 4, (floor_points, 2)), np.zeros(floor_points)]]
    rgb = [np.full((floor_points, 3), 0.5)]
    inst = [np.full(floor_points, -1)]
    sem = [np.full(floor_points, 1)]
    for k in range(num_boxes):
        lo = np.array([0.3 + 1.2 * k, 0.5 + 0.7 * (k % 2), 0.0])
        size = rng.uniform(0.4, 0.8, 3)
        xyz.append(lo + rng.uniform(0, 1, (points_per_box, 3)) * size)
        rgb.append(np.tile(rng.uniform(0, 1, 3), (points_per_box, 1)))
        inst.append(np.full(points_per_box, k))
        sem.append(np.full(points_per_box, 5 + k % 2))
    return Scene(
        name=f"room{seed}",
        xyz=np.concatenate(xyz).astype(np.float32),
        rgb=np.concatenate(rgb).astype(np.float32),
        semantic=np.concatenate(sem),
        instance=np.concatenate(inst),
        meta={"dataset": "boxes"},
    )


@pytest.fixture
def rooms() -> MemoryStore:
    return MemoryStore([box_room(0, num_boxes=3), box_room(1, num_boxes=2, points_per_box=700)], dataset="boxes")


@pytest.fixture
def make_room():
    """The box_room factory."""
    return box_room


@pytest.fixture
def store_of():
    """Returns a store of the given scenes (tests/stores.py's MemoryStore, dataset "boxes")."""
    return lambda scenes: MemoryStore(scenes, dataset="boxes")
