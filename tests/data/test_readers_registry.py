"""Reader registry: names, options, errors, and the lazily imported synthetic dataset."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from freepoint_bench.data import readers
from freepoint_bench.data.readers import Reader, get_reader, known_datasets, register_reader
from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import ConfigError


def test_builtin_readers_are_registered_under_their_names():
    for name in ("s3dis", "scannet", "scannet-npy", "ply"):
        reader = get_reader(name)
        assert reader.name == name and isinstance(reader, Reader)
    assert get_reader("ScanNet_NPY") is get_reader("scannet-npy")
    assert {"s3dis", "scannet", "scannet-npy", "ply", "synthetic"} <= set(known_datasets())


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown dataset 'kitti'; known datasets: .*s3dis.*scannet"):
        get_reader("kitti")


def test_options_build_a_new_reader_and_bad_options_are_config_errors():
    assert get_reader("scannet", axis_align=False).axis_align is False
    assert get_reader("scannet").axis_align is True
    with pytest.raises(ConfigError, match="bad reader options \\['colour'\\]"):
        get_reader("scannet", colour=True)


class _Toy:
    name = "toy"

    def list_scenes(self, root):
        return ["only"]

    def read_scene(self, root, name):
        return Scene(name=name, xyz=np.zeros((1, 3)), rgb=np.zeros((1, 3)))


def test_register_reader_and_lazy_import(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_READERS", dict(readers._READERS))
    register_reader(_Toy())
    assert get_reader("toy").list_scenes(tmp_path) == ["only"]
    with pytest.raises(TypeError, match="not a Reader"):
        register_reader(object())

    # A module that registers itself on import, found only when its dataset is asked for.
    (tmp_path / "fake_rooms_module.py").write_text(
        "from freepoint_bench.data.readers import register_reader\n"
        "class R:\n"
        "    name = 'fake-rooms'\n"
        "    def list_scenes(self, root): return ['r0']\n"
        "    def read_scene(self, root, name): raise NotImplementedError\n"
        "register_reader(R())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        readers, "_LAZY_MODULES", {"fake-rooms": "fake_rooms_module", "gone": "no_such_mod_x"}
    )
    monkeypatch.delitem(sys.modules, "fake_rooms_module", raising=False)
    assert "fake_rooms_module" not in sys.modules
    assert get_reader("fake-rooms").list_scenes(tmp_path) == ["r0"]
    with pytest.raises(ConfigError, match="needs module no_such_mod_x"):
        get_reader("gone")
