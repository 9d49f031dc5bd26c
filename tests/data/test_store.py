"""Scene store: conversion round trip, resume, index, name encoding, splits, corrupt files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from freepoint_bench.data.scene import Scene
from freepoint_bench.data.store import SceneStore, decode_name, encode_name, prepare
from freepoint_bench.errors import DataError


def _scene(name: str, n: int = 50, seed: int = 0, labels: bool = True) -> Scene:
    rng = np.random.default_rng(seed)
    return Scene(
        name=name,
        xyz=rng.normal(size=(n, 3)).astype(np.float32),
        rgb=rng.random((n, 3)).astype(np.float32),
        semantic=rng.integers(0, 13, n) if labels else None,
        instance=np.where(np.arange(n) < 5, -1, np.arange(n) % 3) if labels else None,
        meta={"dataset": "fake", "path": "x/y", "nested": {"a": [1, 2]}},
    )


class FakeReader:
    """An S3DIS-named dataset in memory; counts reads to check resume."""

    name = "s3dis"

    def __init__(self, names: list[str]) -> None:
        self.scenes = {n: _scene(n, seed=i) for i, n in enumerate(names)}
        self.reads: list[str] = []
        self.fail_on: str | None = None

    def list_scenes(self, root):
        return sorted(self.scenes)

    def read_scene(self, root, name):
        if name == self.fail_on:
            raise RuntimeError("interrupted")
        self.reads.append(name)
        return self.scenes[name]


NAMES = ["Area_1/office_1", "Area_1/office_2", "Area_5/office_1", "Area_5/conferenceRoom_1"]


def test_prepare_round_trip_index_and_splits(tmp_path):
    reader = FakeReader(NAMES)
    store = SceneStore(tmp_path / "cache")
    calls = []
    got = prepare(reader, tmp_path / "raw", store, progress=lambda d, t, n: calls.append((d, t, n)))
    assert got == sorted(NAMES)
    assert calls == [(i + 1, 4, n) for i, n in enumerate(sorted(NAMES))]
    assert store.dataset == "s3dis"
    assert store.names() == sorted(NAMES)
    assert store.names(split="val") == ["Area_5/conferenceRoom_1", "Area_5/office_1"]
    assert store.names(split="train") == ["Area_1/office_1", "Area_1/office_2"]
    for name in NAMES:
        assert name in store
        loaded, original = store.load(name), reader.scenes[name]
        for key in ("xyz", "rgb", "semantic", "instance"):
            np.testing.assert_array_equal(getattr(loaded, key), getattr(original, key))
        assert loaded.name == name
        assert loaded.meta["nested"] == {"a": [1, 2]} and loaded.meta["path"] == "x/y"
    info = store.info("Area_1/office_2")
    assert info["num_points"] == 50 and info["num_instances"] == 3 and info["split"] == "train"
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert index["dataset"] == "s3dis" and index["root"] == str((tmp_path / "raw").resolve())
    # one compressed file per scene, without "/" in file names
    files = sorted(p.name for p in (tmp_path / "cache" / "scenes").iterdir())
    assert len(files) == 4 and all("/" not in f and f.endswith(".npz") for f in files)
    assert "Area_5/office_1" not in store.names(split="test") and "Area_9/x" not in store


def test_prepare_resumes_and_overwrites(tmp_path):
    reader = FakeReader(NAMES)
    store = SceneStore(tmp_path)
    reader.fail_on = NAMES[2]  # sorted order: Area_1/office_1, Area_1/office_2, then Area_5/conf... fails
    with pytest.raises(RuntimeError):
        prepare(reader, tmp_path, store)
    converted = list(reader.reads)
    assert len(converted) == len([n for n in sorted(NAMES) if n < NAMES[2]])
    reopened = SceneStore(tmp_path)  # what is on disk after the crash
    assert reopened.names() == sorted(converted)
    reader.fail_on, reader.reads = None, []
    prepare(reader, tmp_path, reopened)
    assert sorted(reader.reads) == sorted(set(NAMES) - set(converted))
    reader.reads = []
    prepare(reader, tmp_path, reopened)
    assert reader.reads == []  # everything cached
    prepare(reader, tmp_path, reopened, names=[NAMES[0]], overwrite=True)
    assert reader.reads == [NAMES[0]]


def test_unlabelled_scene_and_other_dataset(tmp_path):
    store = SceneStore(tmp_path)
    store.bind("ply", tmp_path)
    store.save(_scene("my scan", labels=False), split="train")
    loaded = store.load("my scan")
    assert loaded.semantic is None and loaded.instance is None and not loaded.has_labels
    assert store.info("my scan")["num_instances"] == 0
    with pytest.raises(DataError, match="caches dataset 'ply'"):
        prepare(FakeReader(NAMES), tmp_path, store)


@pytest.mark.parametrize("name", ["Area_5/office_1", "scene0000_00", "a b/c%d", ".hidden", "ü/ñ"])
def test_name_encoding_is_safe_and_reversible(name):
    encoded = encode_name(name)
    assert "/" not in encoded and not encoded.startswith(".")
    assert decode_name(encoded) == name


def test_corrupt_or_missing_files_name_the_file_and_the_fix(tmp_path):
    store = SceneStore(tmp_path)
    store.save(_scene("Area_1/office_1"), split="train")
    path = store.path_of("Area_1/office_1")
    path.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="delete it and rerun `bench.py data prepare`") as info:
        store.load("Area_1/office_1")
    assert str(path) in str(info.value)
    with pytest.raises(DataError, match="not in the scene cache"):
        store.load("Area_1/office_9")
    with pytest.raises(DataError, match="not in the scene cache"):
        store.info("Area_1/office_9")
    (tmp_path / "index.json").write_text("{broken")
    with pytest.raises(DataError, match="index.json.*delete it and rerun"):
        SceneStore(tmp_path).names()


def test_cache_file_with_invalid_arrays_is_a_data_error(tmp_path):
    store = SceneStore(tmp_path)
    store.save(_scene("s"), split="train")
    np.savez_compressed(store.path_of("s"), xyz=np.full((3, 3), np.nan), rgb=np.zeros((3, 3)), name="s")
    with pytest.raises(DataError, match="corrupt scene cache file"):
        store.load("s")


def test_synthetic_dataset_through_the_store(tmp_path):
    from freepoint_bench.data.readers import get_reader
    from freepoint_bench.data.synthetic import SyntheticConfig, write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "synth", num_scenes=4, seed=1, config=SyntheticConfig(num_points=500))
    store = SceneStore(tmp_path / "cache")
    names = prepare(get_reader("synthetic"), tmp_path / "synth", store)
    assert names == ["synth_0000", "synth_0001", "synth_0002", "synth_0003"]
    assert store.names(split="val") == ["synth_0003"]
    assert store.load("synth_0002").num_points == 500
