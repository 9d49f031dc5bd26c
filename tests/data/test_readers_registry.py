"""Readers by dataset name (the catalogue's entries): names, options, errors, the lazily imported modules."""

from __future__ import annotations

import subprocess
import sys

import pytest

from freepoint_bench.data import catalogue
from freepoint_bench.data.catalogue import Dataset
from freepoint_bench.data.readers import Reader, get_reader, known_datasets
from freepoint_bench.errors import ConfigError


def test_builtin_readers_are_registered_under_their_names():
    for name in ("s3dis", "scannet", "scannet-npy", "ply"):
        reader = get_reader(name)
        assert reader.name == name and isinstance(reader, Reader)
    assert get_reader("ScanNet_NPY") is get_reader("scannet-npy")
    assert {"s3dis", "scannet", "scannet-npy", "ply", "synthetic"} <= set(known_datasets())


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown dataset 'kitti'; known datasets: .*scannet.*s3dis"):
        get_reader("kitti")


def test_options_build_a_new_reader_and_bad_options_are_config_errors():
    assert get_reader("scannet", axis_align=False).axis_align is False
    assert get_reader("scannet").axis_align is True
    with pytest.raises(ConfigError, match="bad reader options \\['colour'\\]"):
        get_reader("scannet", colour=True)


def test_a_reader_module_is_imported_only_when_its_dataset_is_opened():
    code = (
        "import sys\n"
        "from freepoint_bench.data import catalogue\n"
        "assert 'freepoint_bench.data.synthetic' not in sys.modules\n"
        "assert 'freepoint_bench.data.readers.s3dis' not in sys.modules\n"
        "catalogue.get('synthetic').open_reader()\n"
        "assert 'freepoint_bench.data.synthetic' in sys.modules\n"
        "assert 'freepoint_bench.data.readers.s3dis' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_reader_that_fails_to_import_or_is_no_reader_is_named():
    broken = Dataset("broken-x", catalogue.lazy("no_such_mod_x:Reader"), "a reader that is not installed")
    not_a_reader = Dataset("not-a-reader-x", object, "a factory of something else")
    for entry in (broken, not_a_reader):
        catalogue.register(entry)
    try:
        with pytest.raises(ConfigError, match="no_such_mod_x:Reader failed to import"):
            get_reader("broken-x")
        with pytest.raises(TypeError, match="not a Reader"):
            get_reader("not-a-reader-x")
    finally:
        for entry in (broken, not_a_reader):
            catalogue.unregister(entry.name)
