"""Splits: S3DIS areas, ScanNet official lists (rooms are the unit), synthetic and ply rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from freepoint_bench.data import splits
from freepoint_bench.data.splits import room_of, scenes_in_split, split_of
from freepoint_bench.errors import ConfigError, DataError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def test_room_of():
    assert room_of("scene0000_01") == "scene0000"
    assert room_of("scene0707_00") == "scene0707"
    assert room_of("Area_5/office_1") == "Area_5/office_1"
    assert room_of("scene0000_01_extra") == "scene0000_01_extra"


def test_s3dis_area_5_is_val():
    assert split_of("s3dis", "Area_5/office_1", None) == "val"
    assert split_of("s3dis", "Area_1/office_1", None) == "train"
    assert split_of("s3dis", "Area_6/copyRoom_1", None) == "train"
    assert split_of("s3dis", "Area_55/x", None) == "train"  # not Area_5 by prefix
    with pytest.raises(DataError, match="Area_N"):
        split_of("s3dis", "office_1", None)


def test_packaged_scannet_lists_are_the_official_ones():
    train = (splits.PACKAGED_LISTS / "scannetv2_train.txt").read_text().split()
    val = (splits.PACKAGED_LISTS / "scannetv2_val.txt").read_text().split()
    assert len(train) == 1201 and len(val) == 312  # ScanNet v2 benchmark: 1201 train, 312 val scans
    assert not {room_of(s) for s in train} & {room_of(s) for s in val}
    assert split_of("scannet", "scene0000_00", None) == "train"
    assert split_of("scannet-npy", "scene0568_00", None) == "val"
    assert split_of("scannet", "scene0707_00", None) == "test"  # hidden test scans are in neither list


def _lists(folder: Path, train: list[str], val: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scannetv2_train.txt").write_text("\n".join(train) + "\n")
    (folder / "scannetv2_val.txt").write_text("\n".join(val) + "\n")
    return folder


def test_lists_in_root_or_its_parent_take_precedence(tmp_path):
    _lists(tmp_path, ["scene0000_00"], ["scene0001_00", "scene0001_01"])
    root = tmp_path / "scans"
    root.mkdir()
    assert split_of("scannet", "scene0001_01", root) == "val"
    assert split_of("scannet", "scene0001_01", tmp_path) == "val"
    assert split_of("scannet", "scene0001_02", root) == "val"  # an unlisted scan follows its room
    assert split_of("scannet", "scene0568_00", root) == "test"  # the packaged lists are not mixed in
    names = ["scene0000_00", "scene0001_00", "scene0001_01", "scene0900_00"]
    assert scenes_in_split("scannet", names, "val", root) == ["scene0001_00", "scene0001_01"]
    assert scenes_in_split("scannet", names, "train", root) == ["scene0000_00"]
    assert scenes_in_split("scannet", names, "test", root) == ["scene0900_00"]


def test_overlapping_lists_are_reported_and_replaced_by_the_official_ones(tmp_path, caplog):
    # scene0568_00 is an official val scan; the bad lists would make it train and val at once.
    root = _lists(tmp_path / "a", ["scene0000_00", "scene0000_01", "scene0568_00"], ["scene0568_00"])
    with caplog.at_level("WARNING"):
        assert split_of("scannet", "scene0568_00", root) == "val"
    assert "overlap" in caplog.text and "scene0568_00" in caplog.text and "official" in caplog.text
    # A room split across the lists (scene0000 is an official train room) is caught the same way.
    root = _lists(tmp_path / "b", ["scene0000_00", "scene0000_01"], ["scene0000_02"])
    with caplog.at_level("WARNING"):
        assert split_of("scannet", "scene0000_02", root) == "train"
    assert "rooms split across the lists: ['scene0000']" in caplog.text


def test_the_packaged_lists_are_consistent():
    lists = splits.PACKAGED_LISTS
    train, val = str(lists / "scannetv2_train.txt"), str(lists / "scannetv2_val.txt")
    membership = splits._load_lists(train, val, 0, 0)
    scans = [k for k in membership if "_" in k]
    assert sum(membership[s] == "train" for s in scans) == 1201
    assert sum(membership[s] == "val" for s in scans) == 312


def _votenet_folder(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        vert = np.concatenate([rng.uniform(0, 2, (20, 3)), rng.uniform(0, 255, (20, 3))], axis=1)
        np.save(folder / f"{name}_vert.npy", vert.astype(np.float32))
        np.save(folder / f"{name}_sem_label.npy", np.full(20, 5, dtype=np.int64))
        np.save(folder / f"{name}_ins_label.npy", np.repeat(np.arange(1, 5), 5).astype(np.int64))
    return folder


def test_votenet_folder_with_own_scene_names_goes_to_test_with_one_warning(tmp_path, caplog):
    from freepoint_bench.data.readers import get_reader
    from freepoint_bench.data.store import SceneStore, prepare

    root = _votenet_folder(tmp_path / "exports", ["kitchen", "office_2", "lab-3"])
    store = SceneStore(tmp_path / "cache")
    with caplog.at_level("WARNING", logger="freepoint_bench.data.splits"):
        prepare(get_reader("scannet-npy"), root, store)
    assert store.names(split="test") == ["kitchen", "lab-3", "office_2"]
    warnings = [r for r in caplog.records if "not ScanNet's" in r.getMessage()]
    assert len(warnings) == 1 and "scene_splits.txt" in warnings[0].getMessage()
    assert store.load("kitchen").num_points == 20


def test_user_split_file_decides_and_unlisted_scans_are_test(tmp_path, caplog):
    root = _votenet_folder(tmp_path / "exports", ["kitchen", "office_2", "lab-3", "scene0000_00"])
    (tmp_path / "scene_splits.txt").write_text(
        "# my rooms\nkitchen train\noffice_2   val  # the big one\n\nscene0000_00 val\n"
    )
    assert split_of("scannet-npy", "kitchen", root) == "train"
    assert split_of("scannet-npy", "office_2", root) == "val"
    assert split_of("scannet-npy", "scene0000_00", root) == "val"  # the user's file wins over ScanNet's lists
    assert split_of("scannet-npy", "scene0000_01", root) == "val"  # an unlisted scan follows its room
    assert split_of("scannet-npy", "scene0001_00", root) == "test"  # ScanNet name, no room listed: test
    with caplog.at_level("WARNING", logger="freepoint_bench.data.splits"):
        assert split_of("scannet-npy", "lab-3", root) == "test"
        assert split_of("scannet-npy", "garage", root) == "test"
    assert sum("not ScanNet's" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kitchen dev\n", r"scene_splits.txt:1: 'kitchen dev' is not '<scene> <train\|val\|test>'"),
        ("kitchen train extra\n", "scene_splits.txt:1"),
        ("kitchen train\nkitchen val\n", "scene_splits.txt:2: kitchen is listed as train and val"),
        ("scene0000_00 train\nscene0000_01 val\n", "scene_splits.txt:2: .*same room scene0000"),
        ("# nothing\n", "lists no scene"),
    ],
)
def test_bad_user_split_files_are_refused_with_the_line(tmp_path, text, message):
    (tmp_path / "scene_splits.txt").write_text(text)
    with pytest.raises(DataError, match=message):
        split_of("scannet-npy", "kitchen", tmp_path)


def test_synthetic_follows_its_catalogue_entry():
    assert split_of("synthetic", "synth_0007", None) == "val"
    assert scenes_in_split("synthetic", ["synth_0006", "synth_0007"], "train", None) == ["synth_0006"]
    with pytest.raises(DataError, match="not a synthetic scene name"):
        split_of("synthetic", "room_0007", None)


def test_ply_is_train_and_bad_names_are_config_errors():
    assert split_of("ply", "my_scan", None) == "train"
    with pytest.raises(ConfigError, match="unknown dataset 'kitti'; known datasets: scannet, "):
        split_of("kitti", "x", None)
    with pytest.raises(ConfigError, match="unknown split 'dev'"):
        scenes_in_split("ply", ["a"], "dev", None)


@pytest.mark.realdata
def test_development_scans_are_train_in_the_official_lists():
    dev = SHARED / "scannet-dev"
    if not dev.is_dir():
        pytest.skip(f"{dev} is absent (real ScanNet development scans are not shipped with the repo)")
    names = sorted(p.name[: -len("_vert.npy")] for p in dev.glob("*_vert.npy"))
    assert len(names) == 13
    assert scenes_in_split("scannet-npy", names, "train", None) == names
