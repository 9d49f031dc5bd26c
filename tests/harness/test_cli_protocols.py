"""bench.py protocols list | show | freeze and data synth-s3dis, and the missing-training-area refusal."""

from __future__ import annotations

import shutil

import pytest

from freepoint_bench.errors import DataError
from freepoint_bench.harness.cells import fold_data
from freepoint_bench.harness.protocol import PROTOCOLS_DIR, load_protocol, load_split

# the splits a run freezes into the source tree (git-ignored: `make demo` leaves some): a test's copy of the
# protocols folder takes only the shipped ones
SHIPPED_ONLY = shutil.ignore_patterns("*-masks.json", "*-masks.json.sha256", "synthetic-*")


def test_list_show_and_freeze(bench_cli, tmp_path, monkeypatch):
    import freepoint_bench.cli as cli_module

    monkeypatch.setattr(cli_module.console, "width", 160)  # the table unwrapped
    folder = tmp_path / "protocols"
    shutil.copytree(PROTOCOLS_DIR, folder, ignore=SHIPPED_ONLY)
    frozen = folder / "splits" / "s3dis-10pct-scenes.json"
    original = frozen.read_bytes()
    frozen.unlink()
    code, out, _ = bench_cli("protocols", "list", "--protocols-dir", folder)
    assert code == 0 and "s3dis-10pct-masks" in out and "scannet-dev-full-masks" in out and "not frozen" in out
    code, out, _ = bench_cli("protocols", "show", "s3dis-10pct-scenes", "--protocols-dir", folder)
    assert code == 0 and '"unit": "scenes"' in out and "protocol hash" in out
    # a pinned scenes split is re-created from the committed room list byte for byte
    code, out, _ = bench_cli("protocols", "freeze", "s3dis-10pct-scenes", "--protocols-dir", folder)
    assert code == 0 and frozen.read_bytes() == original
    assert load_split(load_protocol("s3dis-10pct-scenes", folder), folder)[1] in out.replace(" ", "")
    code, _, err = bench_cli("protocols", "show", "nope", "--protocols-dir", folder)
    assert code == 2 and "known protocols" in err


def test_synth_s3dis_writes_the_raw_layout(bench_cli, tmp_path):
    code, out, _ = bench_cli("data", "synth-s3dis", "--out", tmp_path / "s3", "--rooms", "6", "--points", "300")
    assert code == 0 and "wrote 6 rooms" in out
    rooms = sorted(p.parent.parent.name for p in (tmp_path / "s3").glob("Area_*/*/Annotations/wall_1.txt"))
    assert len(rooms) == 6
    code, _, err = bench_cli("data", "synth-s3dis", "--out", tmp_path / "s4", "--points", "10")
    assert code == 2 and "at least 100 points" in err


def test_data_without_a_training_area_is_refused():
    spec = load_protocol("s3dis-full")
    names = [f"Area_{a}/office_1" for a in (1, 2, 3, 5)]  # no Area_4, no Area_6
    with pytest.raises(DataError, match=r"training groups \['Area_4', 'Area_6'\]"):
        fold_data(spec, names, {}, 0)
    with pytest.raises(DataError, match=r"evaluation groups \['Area_5'\]"):
        fold_data(spec, [n for n in names if not n.startswith("Area_5")], {}, 0)
