"""Scenes, readers, synthetic rooms, the scene store, splits and transforms."""

from freepoint_bench.data.scene import Scene

__all__ = ["Scene"]
