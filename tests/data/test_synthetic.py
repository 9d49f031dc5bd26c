"""Synthetic rooms: determinism, labels, geometry (separation, undersides), dataset reader, S3DIS export."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.spatial import cKDTree

from freepoint_bench.data.classes import S3DIS_CLASS_ID, S3DIS_CLASSES
from freepoint_bench.data.readers import get_reader
from freepoint_bench.data.splits import split_of
from freepoint_bench.data.synthetic import (
    SyntheticConfig,
    SyntheticReader,
    generate_room,
    read_dataset_settings,
    scene_seed,
    split_of_synthetic,
    write_synthetic_dataset,
    write_synthetic_s3dis,
)
from freepoint_bench.errors import ConfigError, DataError

SMALL = SyntheticConfig(num_points=4000)
FURNITURE = [S3DIS_CLASS_ID[c] for c in ("table", "chair", "sofa", "bookcase")]


def _same(a, b) -> bool:
    return all(
        np.array_equal(getattr(a, k), getattr(b, k)) for k in ("xyz", "rgb", "semantic", "instance")
    )


def test_same_seed_same_room_and_different_seeds_differ():
    a, b, c = generate_room(5, SMALL), generate_room(5, SMALL), generate_room(6, SMALL)
    assert _same(a, b)
    assert a.meta == b.meta
    assert a.xyz.shape != c.xyz.shape or not np.allclose(a.xyz, c.xyz)
    assert a.meta["room_size_m"] != c.meta["room_size_m"]


def test_default_room_has_exactly_the_requested_points_and_meta():
    scene = generate_room(0)
    assert scene.num_points == SyntheticConfig().num_points == 20000
    assert scene.xyz.dtype == np.float32 and scene.rgb.dtype == np.float32
    assert scene.meta["seed"] == 0 and scene.meta["dataset"] == "synthetic"
    assert SyntheticConfig(**scene.meta["config"]) == SyntheticConfig()
    assert scene.name == "synthetic_0"
    assert generate_room(0, SMALL, name="mine").name == "mine"


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_labels_are_consistent(seed):
    scene = generate_room(seed, SMALL)
    sem, inst = scene.semantic, scene.instance
    assert sem.min() >= 0 and sem.max() < len(S3DIS_CLASSES)  # every point labelled, S3DIS ids
    ids = np.unique(inst)
    np.testing.assert_array_equal(ids, np.arange(len(ids)))  # contiguous 0..K-1
    classes = scene.meta["instance_classes"]
    assert len(classes) == len(ids)
    for i in ids:
        per_point = np.unique(sem[inst == i])
        assert len(per_point) == 1, f"instance {i} has classes {per_point}"
        assert S3DIS_CLASSES[per_point[0]] == classes[i]
    # structure elements are instances too: one floor, one ceiling, four walls
    assert classes.count("floor") == 1 and classes.count("ceiling") == 1 and classes.count("wall") == 4
    assert any(c in classes for c in ("table", "chair"))


def test_ceiling_optional_and_points_inside_the_room():
    cfg = SyntheticConfig(num_points=3000, include_ceiling=False, xyz_noise_m=0.0)
    scene = generate_room(1, cfg)
    assert "ceiling" not in scene.meta["instance_classes"]
    length, width, height = scene.meta["room_size_m"]
    low, high = scene.xyz.min(axis=0), scene.xyz.max(axis=0)
    assert np.all(low >= -1e-4) and np.all(high <= np.array([length, width, height]) + 1e-4)
    floor = scene.semantic == S3DIS_CLASS_ID["floor"]
    assert np.all(np.abs(scene.xyz[floor, 2]) < 1e-5)


def test_furniture_instances_are_separated_on_the_floor():
    cfg = SyntheticConfig(num_points=8000, num_chairs=(5, 6), num_tables=(2, 2), num_sofas=(1, 1))
    for seed in range(3):
        scene = generate_room(seed, cfg)
        ids = np.unique(scene.instance)
        objects = [i for i in ids if scene.semantic[scene.instance == i][0] in FURNITURE]
        assert len(objects) >= 4
        trees = {i: cKDTree(scene.xyz[scene.instance == i, :2]) for i in objects}
        for a in objects:
            for b in objects:
                if a < b:
                    dist, _ = trees[a].query(scene.xyz[scene.instance == b, :2])
                    # footprints keep min_gap apart; sensor noise can eat a few centimetres of it
                    assert dist.min() > cfg.min_gap_m - 0.04, (seed, a, b, dist.min())


def test_no_points_on_table_undersides_but_on_their_tops():
    cfg = SyntheticConfig(num_points=6000, xyz_noise_m=0.0, num_tables=(2, 2), num_clutter=(0, 0))
    scene = generate_room(4, cfg)
    tables = np.unique(scene.instance[scene.semantic == S3DIS_CLASS_ID["table"]])
    assert len(tables) >= 1
    for t in tables:
        z = scene.xyz[scene.instance == t, 2].astype(np.float64)
        top = z.max()
        assert np.sum(np.abs(z - top) < 2e-6) > 20  # the top face is seen
        assert np.sum(np.abs(z - (top - 0.04)) < 2e-6) == 0  # its underside (0.04 m lower) is not


def test_holes_and_noise_do_not_break_the_point_count():
    cfg = SyntheticConfig(num_points=2000, num_holes=(3, 3), hole_radius_m=(0.4, 0.5), xyz_noise_m=0.02)
    scene = generate_room(2, cfg)
    assert scene.num_points == 2000
    assert np.isfinite(scene.xyz).all()


def test_normals_optional_and_unit_length():
    scene = generate_room(3, SyntheticConfig(num_points=1000, with_normals=True))
    assert scene.normals is not None
    np.testing.assert_allclose(np.linalg.norm(scene.normals, axis=1), 1.0, atol=1e-5)
    assert generate_room(3, SMALL).normals is None


def test_config_validation():
    with pytest.raises(ValidationError):
        SyntheticConfig(room_length_m=(6.0, 5.0))
    with pytest.raises(ValidationError):
        SyntheticConfig(num_points=10)
    with pytest.raises(ValidationError):
        SyntheticConfig(unknown_field=1)


# ------------------------------------------------------------------------------------------- dataset


def test_reader_defaults_without_a_settings_file(tmp_path):
    reader = get_reader("synthetic")
    assert isinstance(reader, SyntheticReader) and reader.name == "synthetic"
    names = reader.list_scenes(tmp_path / "missing")
    assert names == [f"synth_{i:04d}" for i in range(8)]
    assert read_dataset_settings(tmp_path) == (8, 0, SyntheticConfig())


def test_split_of_synthetic_is_a_quarter_val():
    names = [f"synth_{i:04d}" for i in range(8)]
    splits = [split_of_synthetic(n) for n in names]
    assert splits.count("val") == 2 and set(splits) == {"train", "val"}
    assert [split_of("synthetic", n) for n in names] == splits
    with pytest.raises(DataError, match="synth_NNNN"):
        split_of_synthetic("office_1")


def test_written_dataset_is_read_back(tmp_path):
    cfg = SyntheticConfig(num_points=1500, include_ceiling=False, num_chairs=(1, 3))
    path = write_synthetic_dataset(tmp_path, num_scenes=3, seed=11, config=cfg)
    assert path == tmp_path / "synthetic.toml"
    assert read_dataset_settings(tmp_path) == (3, 11, cfg)
    reader = get_reader("synthetic")
    assert reader.list_scenes(tmp_path) == ["synth_0000", "synth_0001", "synth_0002"]
    scene = reader.read_scene(tmp_path, "synth_0002")
    assert scene.name == "synth_0002"
    assert _same(scene, generate_room(scene_seed(11, 2), cfg))
    assert not _same(scene, reader.read_scene(tmp_path, "synth_0001"))
    with pytest.raises(DataError, match="3 scenes"):
        reader.read_scene(tmp_path, "synth_0003")
    with pytest.raises(DataError, match="synth_NNNN"):
        reader.read_scene(tmp_path, "room_1")


def test_scene_seeds_differ_per_base_seed_and_index():
    seeds = {scene_seed(b, i) for b in range(3) for i in range(50)}
    assert len(seeds) == 150


@pytest.mark.parametrize(
    "text, match",
    [
        ("num_scenes = 0\n", "num_scenes"),
        ("seed = -1\n", "seed"),
        ("num_points = 'many'\n", "num_points"),
        ("colour = 3\n", "colour"),
        ("num_scenes = [\n", "cannot read"),
    ],
)
def test_bad_settings_file_is_a_config_error_naming_it(tmp_path, text, match):
    (tmp_path / "synthetic.toml").write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        get_reader("synthetic").list_scenes(tmp_path)
    assert "synthetic.toml" in str(info.value)


def test_s3dis_export_round_trips_through_the_s3dis_reader(tmp_path):
    if importlib.util.find_spec("freepoint_bench.data.readers.s3dis") is None:
        pytest.skip("the S3DIS reader module is not in this checkout")
    cfg = SyntheticConfig(num_points=2500)
    names = write_synthetic_s3dis(tmp_path, num_rooms=6, seed=3, config=cfg)
    assert names[4] == "Area_5/office_1" and names[0] == "Area_1/office_1"
    reader = get_reader("s3dis")
    assert reader.list_scenes(tmp_path) == sorted(names)
    assert split_of("s3dis", names[4]) == "val"
    for i in (0, 4):
        original = generate_room(scene_seed(3, i), cfg)
        read = reader.read_scene(tmp_path, names[i])
        assert read.num_points == original.num_points

        def instances(scene):
            ids = np.unique(scene.instance)
            return sorted((int(scene.semantic[scene.instance == k][0]), int((scene.instance == k).sum()))
                          for k in ids)

        assert instances(read) == instances(original)
        order_a = np.lexsort(np.round(original.xyz, 3).T)
        order_b = np.lexsort(read.xyz.T)
        np.testing.assert_allclose(read.xyz[order_b], np.round(original.xyz, 3)[order_a], atol=1e-3)
        np.testing.assert_allclose(
            np.sort(read.rgb, axis=0), np.sort(np.round(original.rgb * 255) / 255, axis=0), atol=1e-6
        )
