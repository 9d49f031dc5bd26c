"""S3DIS raw reader: layout, labels, the rule-based byte repairs, and the writer used for fixtures."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest

from freepoint_bench.data.classes import S3DIS_CLASS_ID
from freepoint_bench.data.readers import get_reader
from freepoint_bench.data.readers.s3dis import S3DISReader, parse_s3dis_txt, write_s3dis_room
from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import DataError

DATASET = "Stanford3dDataset_v1.2_Aligned_Version"


def _room(seed: int, classes: list[str], points_per_instance: int = 50) -> Scene:
    rng = np.random.default_rng(seed)
    n = points_per_instance * len(classes)
    return Scene(
        name="room",
        xyz=rng.uniform(-5, 5, (n, 3)).round(3),
        rgb=rng.integers(0, 256, (n, 3)) / 255.0,
        semantic=np.repeat([S3DIS_CLASS_ID[c] for c in classes], points_per_instance),
        instance=np.repeat(np.arange(len(classes)), points_per_instance),
    )


def _lines(rows: np.ndarray) -> bytes:
    out = io.StringIO()
    np.savetxt(out, rows, fmt="%.3f %.3f %.3f %d %d %d")
    return out.getvalue().encode()


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / DATASET
    write_s3dis_room(folder, 1, "office_1", _room(0, ["ceiling", "floor", "wall", "chair", "chair"]))
    write_s3dis_room(folder, 5, "hallway_6", _room(1, ["ceiling", "wall", "door"]))
    return folder


# ---- layout, labels, round trip ------------------------------------------------------------------


def test_round_trip_through_the_raw_layout(dataset):
    original = _room(0, ["ceiling", "floor", "wall", "chair", "chair"])
    reader = get_reader("s3dis")
    assert reader.list_scenes(dataset) == ["Area_1/office_1", "Area_5/hallway_6"]
    scene = reader.read_scene(dataset, "Area_1/office_1")
    ann = dataset / "Area_1" / "office_1" / "Annotations"
    assert sorted(p.name for p in ann.iterdir()) == [
        "ceiling_1.txt",
        "chair_1.txt",
        "chair_2.txt",
        "floor_1.txt",
        "wall_1.txt",
    ]
    assert scene.name == "Area_1/office_1" and scene.meta["repairs"] == []
    assert scene.num_points == original.num_points
    # Points come back grouped per file: match them by coordinates.
    order_a = np.lexsort(original.xyz.T)
    order_b = np.lexsort(scene.xyz.T)
    np.testing.assert_allclose(scene.xyz[order_b], original.xyz[order_a], atol=6e-4)
    np.testing.assert_allclose(scene.rgb[order_b], original.rgb[order_a], atol=1e-6)
    np.testing.assert_array_equal(scene.semantic[order_b], original.semantic[order_a])
    # Same partition into instances (ids may be renumbered).
    pairs = set(zip(scene.instance[order_b].tolist(), original.instance[order_a].tolist(), strict=True))
    assert len(pairs) == 5 == len(np.unique(scene.instance))
    assert scene.meta["area"] == 1 and scene.meta["room"] == "office_1"


def test_root_may_be_the_dataset_folder_or_its_parent(dataset):
    reader = S3DISReader()
    assert reader.list_scenes(dataset.parent) == reader.list_scenes(dataset)
    a = reader.read_scene(dataset.parent, "Area_5/hallway_6")
    b = reader.read_scene(dataset, "Area_5/hallway_6")
    np.testing.assert_array_equal(a.xyz, b.xyz)


def test_room_level_txt_is_never_read_so_a_misnamed_one_is_harmless(tmp_path):
    folder = tmp_path / DATASET
    room = write_s3dis_room(folder, 6, "copyRoom_1", _room(2, ["wall", "table"]), room_txt=False)
    (room / "copy_Room_1.txt").write_bytes(b"garbage \x00 that would not parse\n")
    scene = S3DISReader().read_scene(folder, "Area_6/copyRoom_1")
    assert scene.num_points == 100 and scene.meta["repairs"] == []


def test_dark_room_colours_are_read_as_0_255(tmp_path):
    room = tmp_path / "Area_2" / "dark_1" / "Annotations"
    room.mkdir(parents=True)
    (room / "wall_1.txt").write_bytes(b"0 0 0 1 0 1\n1 1 1 0 1 0\n")
    scene = S3DISReader().read_scene(tmp_path, "Area_2/dark_1")
    np.testing.assert_allclose(scene.rgb, [[1 / 255, 0, 1 / 255], [0, 1 / 255, 0]], atol=1e-7)


def test_unknown_class_becomes_clutter_with_a_report(tmp_path):
    room = tmp_path / "Area_2" / "hallway_1" / "Annotations"
    room.mkdir(parents=True)
    (room / "stairs_1.txt").write_bytes(b"0 0 0 1 2 3\n")
    (room / "wall_1.txt").write_bytes(b"1 1 1 1 2 3\n")
    scene = S3DISReader().read_scene(tmp_path, "Area_2/hallway_1")
    assert sorted(scene.semantic.tolist()) == sorted([S3DIS_CLASS_ID["clutter"], S3DIS_CLASS_ID["wall"]])
    (report,) = scene.meta["repairs"]
    assert report["file"] == "Area_2/hallway_1/Annotations/stairs_1.txt" and "stairs" in report["problem"]
    assert report["action"] == "labelled clutter"


# ---- byte-level repairs ---------------------------------------------------------------------------


def test_nul_between_two_colour_values_is_repaired_and_reported(caplog):
    rows = np.array([[1.5, 2.0, 3.25, 10, 20, 30], [4.0, 5.0, 6.0, 71, 64, 54], [7.0, 8.0, 9.0, 1, 2, 3]])
    data = _lines(rows).replace(b"71 64", b"71\x0064")
    with caplog.at_level(logging.WARNING):
        values, repairs = parse_s3dis_txt(data, "Area_5/hallway_6/Annotations/ceiling_1.txt")
    np.testing.assert_array_equal(values, rows)
    (r,) = repairs
    assert r["file"] == "Area_5/hallway_6/Annotations/ceiling_1.txt" and r["line"] == 2
    assert "non-printable" in r["problem"] and r["action"].endswith("kept")


def test_control_byte_in_place_of_a_digit_drops_only_that_line():
    rows = np.array([[1.0, 2.0, 3.0, 10, 20, 30], [4.0, 5.0, 6.0, 123, 64, 54], [7.0, 8.0, 9.0, 1, 2, 3]])
    data = _lines(rows).replace(b"123", b"1\x0f3")  # 7 fields after the space rule
    values, repairs = parse_s3dis_txt(data, "f.txt")
    np.testing.assert_array_equal(values, rows[[0, 2]])
    assert [(r["line"], r["action"]) for r in repairs] == [
        (2, "replaced non-printable bytes by spaces; dropped the line")
    ]


@pytest.mark.parametrize(
    ("bad_line", "why"),
    [
        (b"1 2 3 4 5", "5 fields"),
        (b"1 2 3 4 5 6 7", "7 fields"),
        (b"1 2 3 nan 5 6", "non-finite"),
        (b"1.2.3 1 1 1 1 1", "non-numeric"),
        (b"1 1 1 1 1 300", "outside 0..255"),
        (b"1 2 3 \xff\xfe 5 6", "non-printable"),
        (b"1 2 3 103.0\x100000 100 95", "non-printable"),  # a control byte in place of a digit
    ],
)
def test_each_unparseable_line_is_dropped_alone_and_reported(bad_line, why):
    good = np.array([[0.5, 0.25, 1.0, 1, 2, 3], [2.0, 3.0, 4.0, 4, 5, 6]])
    text = _lines(good)
    first, second = text.split(b"\n")[:2]
    data = first + b"\n" + bad_line + b"\n" + second + b"\n"
    values, repairs = parse_s3dis_txt(data, "f.txt")
    np.testing.assert_array_equal(values, good)
    (r,) = repairs
    assert r["line"] == 2 and why in r["problem"] and "dropped" in r["action"]


def test_crlf_missing_final_newline_and_blank_lines():
    data = b"1 2 3 4 5 6\r\n\r\n7 8 9 10 11 12"
    values, repairs = parse_s3dis_txt(data, "f.txt")
    np.testing.assert_array_equal(values, [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]])
    assert [(r["line"], r["problem"]) for r in repairs] == [(2, "blank line")]
    assert parse_s3dis_txt(b"", "f.txt")[0].shape == (0, 6)


def test_vectorised_parse_matches_a_line_by_line_parse_on_a_large_file():
    rng = np.random.default_rng(3)
    rows = np.c_[rng.uniform(-30, 30, (120_000, 3)).round(3), rng.integers(0, 256, (120_000, 3))]
    data = bytearray(_lines(rows))
    # Defects far from the start, found by rule (no line numbers are known to the parser).
    lines = bytes(data).split(b"\n")
    head, tail = lines[100_388].rsplit(b" ", 1)
    lines[100_388] = head + b"\x00" + tail  # a NUL between the last two colour values
    lines[7] = lines[7] + b" 9"
    data = b"\n".join(lines)
    values, repairs = parse_s3dis_txt(data, "f.txt")
    expected = []
    for raw in data.split(b"\n"):  # independent oracle: the rule applied line by line
        fields = raw.replace(b"\x00", b" ").split()
        if len(fields) == 6:
            expected.append([float(f) for f in fields])
    np.testing.assert_array_equal(values, np.array(expected))
    assert [r["line"] for r in repairs] == [8, 100_389]
    assert len(values) == len(rows) - 1


def test_defects_in_a_room_are_recorded_in_meta_and_logged(tmp_path, caplog):
    folder = tmp_path / DATASET
    room = write_s3dis_room(folder, 5, "hallway_6", _room(4, ["ceiling", "wall"]))
    ceiling = room / "Annotations" / "ceiling_1.txt"
    lines = ceiling.read_bytes().split(b"\n")
    lines[20] = lines[20].rsplit(b" ", 1)[0] + b"\x00" + lines[20].rsplit(b" ", 1)[1]
    lines[30] = b"\x00\x00\x00"
    ceiling.write_bytes(b"\n".join(lines))
    with caplog.at_level(logging.WARNING, logger="freepoint_bench.data.readers.s3dis"):
        scene = S3DISReader().read_scene(folder, "Area_5/hallway_6")
    repairs = scene.meta["repairs"]
    assert [(r["file"], r["line"]) for r in repairs] == [
        ("Area_5/hallway_6/Annotations/ceiling_1.txt", 21),
        ("Area_5/hallway_6/Annotations/ceiling_1.txt", 31),
    ]
    assert scene.num_points == 99
    assert "ceiling_1.txt:21" in caplog.text and "ceiling_1.txt:31" in caplog.text


# ---- duplicate annotation files ---------------------------------------------------------------------


def test_identical_copy_suffixed_file_is_skipped_and_reported(tmp_path):
    room = write_s3dis_room(tmp_path, 5, "office_36", _room(5, ["wall", "wall", "chair"]))
    ann = room / "Annotations"
    (ann / "wall_3 (1).txt").write_bytes((ann / "wall_2.txt").read_bytes())
    scene = S3DISReader().read_scene(tmp_path, "Area_5/office_36")
    assert scene.num_points == 150 and len(np.unique(scene.instance)) == 3
    (r,) = scene.meta["repairs"]
    assert r["file"].endswith("wall_3 (1).txt") and "wall_2.txt" in r["problem"] and r["action"] == "skipped"


def test_differing_copy_suffixed_file_is_an_extra_instance(tmp_path):
    room = write_s3dis_room(tmp_path, 5, "office_36", _room(5, ["wall", "chair"]))
    (room / "Annotations" / "wall_1 (1).txt").write_bytes(b"9 9 9 1 1 1\n9 9 8 1 1 1\n")
    scene = S3DISReader().read_scene(tmp_path, "Area_5/office_36")
    assert scene.num_points == 102 and len(np.unique(scene.instance)) == 3
    extra = scene.instance[np.all(scene.xyz == 9, axis=1)]
    assert len(extra) == 1 and (scene.instance == extra[0]).sum() == 2
    assert scene.semantic[scene.instance == extra[0]][0] == S3DIS_CLASS_ID["wall"]
    (r,) = scene.meta["repairs"]
    assert r["action"] == "read as an extra instance"


# ---- bad input --------------------------------------------------------------------------------------


def test_missing_root_empty_folder_and_wrong_layout_say_what_was_expected(tmp_path):
    reader = S3DISReader()
    with pytest.raises(DataError, match="does not exist.*Area_N"):
        reader.list_scenes(tmp_path / "nope")
    with pytest.raises(DataError, match="no Area_N folders"):
        reader.list_scenes(tmp_path)
    (tmp_path / "Area_1" / "office_1").mkdir(parents=True)
    with pytest.raises(DataError, match="no rooms with Annotations"):
        reader.list_scenes(tmp_path)
    with pytest.raises(DataError, match="Annotations is missing"):
        reader.read_scene(tmp_path, "Area_1/office_1")
    with pytest.raises(DataError, match="Area_N/<room>"):
        reader.read_scene(tmp_path, "office_1")


def test_room_without_annotations_is_listed_out_with_a_warning(dataset, caplog):
    (dataset / "Area_1" / "broken_1").mkdir()
    with caplog.at_level(logging.WARNING):
        names = S3DISReader().list_scenes(dataset)
    assert "Area_1/broken_1" not in names and "broken_1" in caplog.text


def test_a_room_with_no_readable_point_is_an_error_not_a_silent_drop(tmp_path):
    ann = tmp_path / "Area_3" / "hallway_2" / "Annotations"
    ann.mkdir(parents=True)
    (ann / "wall_1.txt").write_bytes(b"\x00\x00\n")
    with pytest.raises(DataError, match="hallway_2.*no readable points"):
        S3DISReader().read_scene(tmp_path, "Area_3/hallway_2")


def test_writer_rejects_scenes_it_cannot_express(tmp_path):
    scene = _room(0, ["wall", "chair"])
    with pytest.raises(DataError, match="mixes S3DIS classes"):
        write_s3dis_room(tmp_path, 1, "r", scene.with_(instance=np.zeros(100, dtype=np.int64)))
    with pytest.raises(DataError, match="S3DIS ids"):
        write_s3dis_room(tmp_path, 1, "r", scene.with_(semantic=np.full(100, -1)))
    with pytest.raises(DataError, match="needs semantic and instance"):
        write_s3dis_room(tmp_path, 1, "r", scene.with_(semantic=None))


def test_writer_groups_points_without_instance_per_class(tmp_path):
    scene = _room(6, ["wall", "chair", "clutter"])
    instance = scene.instance.copy()
    instance[scene.semantic == S3DIS_CLASS_ID["clutter"]] = -1
    instance[:10] = -1  # ten wall points without an instance
    room = write_s3dis_room(tmp_path, "Area_4", "office_2", scene.with_(instance=instance), room_txt=False)
    files = sorted(p.name for p in (room / "Annotations").iterdir())
    assert files == ["chair_1.txt", "clutter_1.txt", "wall_1.txt", "wall_2.txt"]
    assert len((room / "Annotations" / "wall_2.txt").read_text().splitlines()) == 10
    assert not (room / "office_2.txt").exists()
