"""bench.py protocols list | show | freeze and data synth-s3dis, and the missing-training-area refusal."""

from __future__ import annotations

import shutil

import pytest

from freepoint_bench.errors import DataError
from freepoint_bench.harness.cells import fold_data
from freepoint_bench.harness.protocol import PROTOCOLS_DIR, load_protocol, load_split

# splits older versions froze into the source tree (git-ignored; a checkout may still hold some): a test's copy
# of the protocols folder takes only the shipped ones
SHIPPED_ONLY = shutil.ignore_patterns("*-masks.json", "*-masks.json.sha256", "synthetic-*")


def split_state(table: str, protocol: str) -> str:
    """Returns the split column (the 8th) of a protocol's row in `protocols list`'s table (whitespace collapsed)."""
    return row(table, protocol)[7]


def row(table: str, protocol: str) -> list[str]:
    """Returns the cells of a protocol's row in `protocols list`'s table, from its name on."""
    cells = [c.strip() for c in table.split("│")]
    return cells[cells.index(protocol):]


def test_list_show_and_freeze(bench_cli, tmp_path, monkeypatch, read_only, contents):
    import freepoint_bench.cli as cli_module

    monkeypatch.setattr(cli_module.console, "width", 160)  # the table unwrapped
    folder = tmp_path / "protocols"  # stands in for the shipped folder: read-only
    shutil.copytree(PROTOCOLS_DIR, folder, ignore=SHIPPED_ONLY)
    # an unpinned scenes protocol frozen from the committed room list (as masks ones are from the data)
    (folder / "mine.toml").write_text((folder / "s3dis-10pct-scenes.toml").read_text().replace(
        "split_sha256 =", "# split_sha256 =").replace("splits/s3dis-10pct-scenes.json", "splits/mine.json"))
    splits = tmp_path / "results" / "splits"
    where = ["--protocols-dir", folder, "--splits", splits]
    with read_only(folder) as before:
        code, out, _ = bench_cli("protocols", "list", *where)
        assert code == 0 and "s3dis-10pct-masks" in out and "scannet-dev-full-masks" in out
        assert split_state(out, "mine") == "not frozen" and split_state(out, "s3dis-10pct-scenes") == "pinned"
        assert row(out, "s3dis-10pct-scenes")[1:3] == ["insseg", "s3dis"]
        code, out, _ = bench_cli("protocols", "show", "s3dis-10pct-scenes", *where)
        assert code == 0 and '"unit": "scenes"' in out and "protocol hash" in out
        # a pinned scenes split is re-created from the committed room list byte for byte, and only checked
        code, out, _ = bench_cli("protocols", "freeze", "s3dis-10pct-scenes", *where)
        assert code == 0 and "matches the shipped" in out
        assert load_split(load_protocol("s3dis-10pct-scenes", folder), folder)[1] in out.replace(" ", "")
        code, out, _ = bench_cli("protocols", "freeze", "mine", *where)
        assert code == 0 and "wrote" in out
        code, out, _ = bench_cli("protocols", "list", *where)
        assert split_state(out, "mine") == "frozen"
        code, _, err = bench_cli("protocols", "show", "nope", *where)
        assert code == 2 and "known protocols" in err
    assert contents(folder) == before
    assert sorted(contents(splits)) == ["mine.json", "mine.json.sha256"]
    sha = load_split(load_protocol("mine", folder), folder, splits)[1]
    code, out, _ = bench_cli("protocols", "show", "mine", *where)
    assert code == 0 and f"sha256 {sha}" in out.replace("\n", "")


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
