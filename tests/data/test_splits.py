"""Splits: S3DIS areas, ScanNet official lists (rooms are the unit), synthetic and ply rules."""

from __future__ import annotations

import sys
import types
from pathlib import Path

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
    with pytest.raises(DataError, match="not a ScanNet scan name"):
        split_of("scannet", "office", None)


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


def test_synthetic_asks_the_synthetic_module(monkeypatch):
    fake = types.ModuleType("freepoint_bench.data.synthetic")
    fake.split_of_synthetic = lambda name: "val" if name.endswith("7") else "train"
    monkeypatch.setitem(sys.modules, "freepoint_bench.data.synthetic", fake)
    assert split_of("synthetic", "room_0007", None) == "val"
    assert scenes_in_split("synthetic", ["room_0006", "room_0007"], "train", None) == ["room_0006"]
    monkeypatch.setitem(sys.modules, "freepoint_bench.data.synthetic", types.ModuleType("x"))
    assert split_of("synthetic", "room_0007", None) == "train"


def test_ply_is_train_and_bad_names_are_config_errors():
    assert split_of("ply", "my_scan", None) == "train"
    with pytest.raises(ConfigError, match="no split rule for dataset 'kitti'"):
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
