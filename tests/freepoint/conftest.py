"""Synthetic rooms with a known answer: coloured boxes on a floor, two walls behind them."""

from __future__ import annotations

import numpy as np
import pytest

from freepoint_bench.data.scene import Scene

BOX_CENTRES = ((1.0, 1.0), (2.6, 1.2), (1.4, 2.8), (3.0, 3.0))
BOX_SIZE = 0.4


def _face(rng, n, origin, e1, e2):
    uv = rng.random((n, 2))
    return np.asarray(origin) + uv[:, :1] * np.asarray(e1) + uv[:, 1:] * np.asarray(e2)


def make_room(seed: int = 0, density: float = 1200.0, noise: float = 0.002, num_boxes: int = 4) -> Scene:
    """Returns a Scene: 4 x 4 m floor (z=0), walls x=0 and y=0 (2 m high), boxes 0.4 m on the floor.

    instance: -1 floor/walls, 0..num_boxes-1 the boxes; semantic 1 = background, 2 = box.
    """
    rng = np.random.default_rng(seed)
    parts, colours, inst = [], [], []

    def add(points, colour, instance):
        parts.append(points)
        colours.append(np.clip(np.asarray(colour) + rng.normal(0, 0.02, (len(points), 3)), 0, 1))
        inst.append(np.full(len(points), instance))

    low = density / 4  # background surfaces are sparser than objects, like in scans
    add(_face(rng, int(16 * low), (0, 0, 0), (4, 0, 0), (0, 4, 0)), (0.5, 0.5, 0.5), -1)
    add(_face(rng, int(8 * low), (0, 0, 0), (0, 4, 0), (0, 0, 2)), (0.8, 0.8, 0.7), -1)
    add(_face(rng, int(8 * low), (0, 0, 0), (4, 0, 0), (0, 0, 2)), (0.8, 0.7, 0.8), -1)
    palette = [(0.9, 0.1, 0.1), (0.1, 0.8, 0.1), (0.1, 0.2, 0.9), (0.9, 0.8, 0.1)]
    s = BOX_SIZE
    for b, (cx, cy) in enumerate(BOX_CENTRES[:num_boxes]):
        x0, y0 = cx - s / 2, cy - s / 2
        n = int(density * s * s)
        faces = [
            _face(rng, n, (x0, y0, s), (s, 0, 0), (0, s, 0)),
            _face(rng, n, (x0, y0, 0), (s, 0, 0), (0, 0, s)),
            _face(rng, n, (x0, y0 + s, 0), (s, 0, 0), (0, 0, s)),
            _face(rng, n, (x0, y0, 0), (0, s, 0), (0, 0, s)),
            _face(rng, n, (x0 + s, y0, 0), (0, s, 0), (0, 0, s)),
        ]
        add(np.concatenate(faces), palette[b % len(palette)], b)
    xyz = np.concatenate(parts) + rng.normal(0, noise, (sum(len(p) for p in parts), 3))
    instance = np.concatenate(inst).astype(np.int64)
    return Scene(
        name=f"room_{seed}",
        xyz=xyz.astype(np.float32),
        rgb=np.concatenate(colours).astype(np.float32),
        semantic=np.where(instance >= 0, 2, 1),
        instance=instance,
        meta={"dataset": "synthetic-test"},
    )


@pytest.fixture(scope="session")
def room() -> Scene:
    return make_room()


@pytest.fixture(scope="session")
def small_rooms() -> list[Scene]:
    """Three small box rooms (seeds 1-3, 2 boxes each) for the caching / sharding tests."""
    return [make_room(seed=s, density=500, num_boxes=2) for s in (1, 2, 3)]
