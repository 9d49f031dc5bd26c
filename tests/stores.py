"""An in-memory scene store with the SceneStore reading API, for tests that train or label without a cache."""

from __future__ import annotations

from freepoint_bench.data.scene import Scene


class MemoryStore:
    """Scenes held in a dict; `dataset` is what store.info (and so a checkpoint's data description) reports;
    `loads` counts load calls."""

    def __init__(self, scenes: list[Scene], dataset: str = "synthetic") -> None:
        self.scenes = {s.name: s for s in scenes}
        self.dataset = dataset
        self.loads = 0

    def names(self, split: str | None = None) -> list[str]:
        return sorted(self.scenes)

    def load(self, name: str) -> Scene:
        self.loads += 1
        return self.scenes[name]

    def info(self, name: str) -> dict:
        return {"dataset": self.dataset, "split": "train"}

    def __contains__(self, name: str) -> bool:
        return name in self.scenes
