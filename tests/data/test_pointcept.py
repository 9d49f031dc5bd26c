"""Pointcept's preprocessed layouts (issue 30): the same scenes read from the raw layouts and from Pointcept's give the
same points, classes and instances; bad input is one line naming the file; protocols naming s3dis run on a root in
Pointcept's layout.

The fixtures in Pointcept's layout are written by `pointcept_s3dis` / `pointcept_scannet` below: what Pointcept's
preprocessing does to the raw files, written here from its documented behaviour (github.com/Pointcept/Pointcept,
``pointcept/datasets/preprocessing/s3dis/preprocess_s3dis.py`` and ``.../scannet/preprocess_scannet.py``) with numpy's
own parsers, so the parity tests compare the readers against an independent path, not against themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from freepoint_bench.data import catalogue
from freepoint_bench.data.classes import S3DIS_CLASSES, SCANNET_SEMANTIC_IDS
from freepoint_bench.data.readers import get_reader
from freepoint_bench.data.synthetic import SyntheticConfig, write_synthetic_s3dis
from freepoint_bench.errors import DataError

# pointcept/datasets/preprocessing/scannet/meta_data/scannet200_constants.py: VALID_CLASS_IDS_20, the NYU40 ids whose
# positions segment20.npy holds
POINTCEPT_VALID_CLASS_IDS_20 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
# pointcept/datasets/preprocessing/s3dis/preprocess_s3dis.py: the class list segment.npy indexes
POINTCEPT_S3DIS_CLASSES = ("ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
                           "bookcase", "board", "clutter")
# segment200.npy indexes ScanNet200's VALID_CLASS_IDS_200 (ids of the TSV's "id" column); the readers never read it,
# so the fixtures index this stand-in of the TSV rows they use
STAND_IN_IDS_200 = (1, 2, 3, 22)


# ------------------------------------------------------------------------------------ Pointcept's preprocessing


def pointcept_s3dis(raw: Path, out: Path) -> list[str]:
    """Returns the rooms written: every raw ``Area_N/<room>`` as preprocess_s3dis.py writes it (no --align_angle, no
    --parse_normal): sorted Annotations/*.txt, instance = the file's index, class = its name before the first "_"
    (unknown: clutter), coord float32, color uint8, segment and instance (N, 1) int16."""
    rooms = []
    for ann in sorted(raw.glob("Area_*/*/Annotations")):
        rows, segment, instance = [], [], []
        for object_id, path in enumerate(sorted(ann.glob("*.txt"))):
            obj = np.loadtxt(path, ndmin=2)
            cls = path.name.split("_")[0]
            label = POINTCEPT_S3DIS_CLASSES.index(cls if cls in POINTCEPT_S3DIS_CLASSES else "clutter")
            rows.append(obj)
            segment.append(np.full((len(obj), 1), label))
            instance.append(np.full((len(obj), 1), object_id))
        room = f"{ann.parent.parent.name}/{ann.parent.name}"
        folder = out / room
        folder.mkdir(parents=True)
        values = np.vstack(rows)
        np.save(folder / "coord.npy", values[:, :3].astype(np.float32))
        np.save(folder / "color.npy", values[:, 3:6].astype(np.uint8))
        np.save(folder / "segment.npy", np.vstack(segment).astype(np.int16))
        np.save(folder / "instance.npy", np.vstack(instance).astype(np.int16))
        rooms.append(room)
    return rooms


def _vertex_normals(xyz: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Returns unit vertex normals: the sum of the area-weighted normals of the faces around each vertex."""
    cross = np.cross(xyz[faces[:, 1]] - xyz[faces[:, 0]], xyz[faces[:, 2]] - xyz[faces[:, 0]])  # 2 × area × normal
    normals = np.zeros_like(xyz)
    for k in range(3):
        np.add.at(normals, faces[:, k], cross)
    return normals / (np.linalg.norm(normals, axis=1, keepdims=True) + 1e-8)


def pointcept_scannet(scans: Path, tsv: Path, out: Path, train: set[str], val: set[str]) -> None:
    """Writes every raw scan of `scans` as preprocess_scannet.py does: into train/, val/ or test/ by the lists; the
    mesh's vertices (not axis-aligned) and colours (uint8), vertex normals; for train and val scans segment20 (the
    position of the label's NYU40 id in VALID_CLASS_IDS_20, else -1), segment200 and instance (the segGroup's "id",
    -1 for vertices in no group)."""
    table = {}
    for line in tsv.read_text().splitlines()[1:]:
        cells = line.split("\t")
        table[cells[1]] = (int(cells[0]), int(cells[4]) if cells[4] else 0)  # raw_category → (id, nyu40id)
    for folder in sorted(p for p in scans.iterdir() if p.is_dir()):
        name = folder.name
        split = "train" if name in train else "val" if name in val else "test"
        ply = PlyData.read(str(folder / f"{name}_vh_clean_2.ply"))
        vertex = ply["vertex"]
        xyz = np.stack([vertex[k] for k in "xyz"], axis=1).astype(np.float64)
        faces = np.stack(ply["face"]["vertex_indices"])
        target = out / split / name
        target.mkdir(parents=True)
        np.save(target / "coord.npy", xyz.astype(np.float32))
        np.save(target / "color.npy", np.stack([vertex[k] for k in ("red", "green", "blue")], axis=1).astype(np.uint8))
        np.save(target / "normal.npy", _vertex_normals(xyz, faces).astype(np.float32))
        if split == "test":
            continue
        seg_indices = np.array(json.loads((folder / f"{name}_vh_clean_2.0.010000.segs.json").read_text())["segIndices"])
        groups = json.loads((folder / f"{name}.aggregation.json").read_text())["segGroups"]
        seg20, seg200, instance = (np.full(len(xyz), -1, dtype=np.int16) for _ in range(3))
        for group in groups:
            id200, nyu40 = table.get(group["label"], (0, 0))
            points = np.isin(seg_indices, group["segments"])
            seg20[points] = POINTCEPT_VALID_CLASS_IDS_20.index(nyu40) if nyu40 in POINTCEPT_VALID_CLASS_IDS_20 else -1
            seg200[points] = STAND_IN_IDS_200.index(id200) if id200 in STAND_IN_IDS_200 else -1
            instance[points] = group["id"]
        np.save(target / "segment20.npy", seg20.astype(int))
        np.save(target / "segment200.npy", seg200.astype(int))
        np.save(target / "instance.npy", instance.astype(int))


# ------------------------------------------------------------------------------------ raw fixtures

TSV = (
    "id\traw_category\tcategory\tcount\tnyu40id\tnyu40class\n"
    "1\twall\twall\t100\t1\twall\n"
    "2\tchair\tchair\t50\t5\tchair\n"
    "3\ttable\ttable\t20\t7\ttable\n"
    "22\tceiling\tceiling\t9\t22\tceiling\n"  # an NYU40 class outside ScanNet's 20
    "40\tobject\tobject\t1\t\t\n"  # no NYU40 id
)
TRAIN_SCAN, VAL_SCAN, TEST_SCAN = "scene0191_00", "scene0019_00", "scene0707_00"  # official train / val / test


def write_raw_scan(scans: Path, name: str, seed: int) -> None:
    """Writes a raw ScanNet scan of 60 vertices on a 6 × 10 grid mesh: 6 segments, groups wall, chair, table,
    ceiling, object and an unmapped label; the last segment in no group."""
    rng = np.random.default_rng(seed)
    folder = scans / name
    folder.mkdir(parents=True)
    gx, gy = np.meshgrid(np.arange(10.0), np.arange(6.0))
    xyz = np.c_[gx.ravel() * 0.1, gy.ravel() * 0.1, rng.uniform(0, 0.05, 60)].astype(np.float32)
    vertex = np.empty(60, dtype=[(k, "f4") for k in "xyz"] + [(k, "u1") for k in ("red", "green", "blue")])
    for i, k in enumerate("xyz"):
        vertex[k] = xyz[:, i]
    for k in ("red", "green", "blue"):
        vertex[k] = rng.integers(0, 256, 60)
    quads = [(r * 10 + c, r * 10 + c + 1, (r + 1) * 10 + c) for r in range(5) for c in range(9)]
    quads += [(r * 10 + c + 1, (r + 1) * 10 + c + 1, (r + 1) * 10 + c) for r in range(5) for c in range(9)]
    face = np.array([(list(f),) for f in quads], dtype=[("vertex_indices", "i4", (3,))])
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(face, "face")]).write(
        str(folder / f"{name}_vh_clean_2.ply"))
    seg_indices = np.repeat([11, 22, 33, 44, 55, 66], 10)[rng.permutation(60)].tolist()
    labels = ["wall", "chair", "table", "ceiling", "object", "mystery"]
    groups = [{"id": i, "objectId": i, "label": label, "segments": [11 * (i + 1)]}
              for i, label in enumerate(labels[:5])]
    (folder / f"{name}_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"segIndices": seg_indices}))
    (folder / f"{name}.aggregation.json").write_text(json.dumps({"sceneId": name, "segGroups": groups}))


@pytest.fixture(scope="module")
def s3dis_both(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """Synthetic rooms in the raw S3DIS layout (one with a ``stairs`` file: clutter to both) and in Pointcept's."""
    base = tmp_path_factory.mktemp("s3dis")
    names = write_synthetic_s3dis(base / "raw", 6, config=SyntheticConfig(num_points=1500))  # one room per area
    (base / "raw" / names[0] / "Annotations" / "stairs_1.txt").write_text("0.100 0.200 0.300 10 20 30\n"
                                                                          "0.110 0.210 0.310 11 21 31\n")
    assert sorted(pointcept_s3dis(base / "raw", base / "pointcept")) == sorted(names)
    return base / "raw", base / "pointcept", names


@pytest.fixture(scope="module")
def scannet_both(tmp_path_factory) -> tuple[Path, Path]:
    """Three raw ScanNet scans (one each of train, val, test) and Pointcept's layout of them."""
    base = tmp_path_factory.mktemp("scannet")
    (base / "raw" / "scans").mkdir(parents=True)
    (base / "raw" / "scannetv2-labels.combined.tsv").write_text(TSV)
    for seed, name in enumerate((TRAIN_SCAN, VAL_SCAN, TEST_SCAN)):
        write_raw_scan(base / "raw" / "scans", name, seed)
    pointcept_scannet(base / "raw" / "scans", base / "raw" / "scannetv2-labels.combined.tsv", base / "pointcept",
                      {TRAIN_SCAN}, {VAL_SCAN})
    return base / "raw", base / "pointcept"


# ------------------------------------------------------------------------------------ conventions and parity


def test_pointcept_class_orders_are_the_suites():
    assert POINTCEPT_VALID_CLASS_IDS_20 == SCANNET_SEMANTIC_IDS
    assert POINTCEPT_S3DIS_CLASSES == S3DIS_CLASSES


def test_s3dis_rooms_read_from_both_layouts_are_the_same(s3dis_both):
    raw_root, pc_root, names = s3dis_both
    raw, pc = get_reader("s3dis"), get_reader("pointcept-s3dis")
    assert pc.list_scenes(pc_root) == raw.list_scenes(raw_root) == sorted(names)
    for name in names:
        a, b = raw.read_scene(raw_root, name), pc.read_scene(pc_root, name)
        assert b.name == name and b.num_points == a.num_points
        np.testing.assert_allclose(b.xyz, a.xyz, atol=1e-6)
        np.testing.assert_allclose(b.rgb, a.rgb, atol=1e-6)
        np.testing.assert_array_equal(b.semantic, a.semantic)
        np.testing.assert_array_equal(b.instance, a.instance)
        assert b.normals is None and b.meta["dataset"] == "pointcept-s3dis"
    stairs = raw.read_scene(raw_root, names[0]).meta["instance_names"].index("stairs_1")
    room = pc.read_scene(pc_root, names[0])
    assert set(room.semantic[room.instance == stairs].tolist()) == {S3DIS_CLASSES.index("clutter")}
    assert catalogue.get("pointcept-s3dis").split_of("Area_5/office_1") == "val"
    assert catalogue.get("pointcept-s3dis").group_of("Area_5/office_1") == "Area_5"


def test_scannet_scans_read_from_both_layouts_are_the_same(scannet_both):
    raw_root, pc_root = scannet_both
    raw, pc = get_reader("scannet", axis_align=False), get_reader("pointcept-scannet")
    assert pc.list_scenes(pc_root) == raw.list_scenes(raw_root) == sorted([TRAIN_SCAN, VAL_SCAN, TEST_SCAN])
    for name in (TRAIN_SCAN, VAL_SCAN):
        a, b = raw.read_scene(raw_root, name), pc.read_scene(pc_root, name)
        np.testing.assert_allclose(b.xyz, a.xyz, atol=1e-6)
        np.testing.assert_allclose(b.rgb, a.rgb, atol=1e-6)
        np.testing.assert_array_equal(b.instance, a.instance)
        # NYU40 ids of ScanNet's 20 classes; the others (ceiling: 22) are -1, void to the ScanNet vocabulary either way
        assert set(a.semantic.tolist()) == {1, 5, 7, 22, -1}
        np.testing.assert_array_equal(b.semantic, np.where(np.isin(a.semantic, SCANNET_SEMANTIC_IDS), a.semantic, -1))
        assert (b.instance == -1).sum() == 10 and b.meta["axis_aligned"] is False
    test_scan = pc.read_scene(pc_root, TEST_SCAN)
    assert test_scan.semantic is None and test_scan.instance is None
    entry = catalogue.get("pointcept-scannet")
    assert [entry.split_of(n, pc_root) for n in (TRAIN_SCAN, VAL_SCAN, TEST_SCAN)] == ["train", "val", "test"]


def test_normals_are_read_only_when_asked(scannet_both):
    _, pc_root = scannet_both
    assert get_reader("pointcept-scannet").read_scene(pc_root, VAL_SCAN).normals is None
    scene = get_reader("pointcept-scannet", normals=True).read_scene(pc_root, VAL_SCAN)
    np.testing.assert_allclose(np.linalg.norm(scene.normals, axis=1), 1.0, atol=1e-5)
    assert np.abs(scene.normals[:, 2]).mean() > 0.9  # a nearly flat grid: normals along z


def test_a_protocols_dataset_reads_a_root_in_pointcept_layout(s3dis_both, scannet_both):
    raw_root, pc_root, names = s3dis_both
    reader = catalogue.get("s3dis").open_reader()
    assert reader.list_scenes(pc_root) == reader.list_scenes(raw_root) == sorted(names)
    assert reader.read_scene(pc_root, names[1]).meta["dataset"] == "pointcept-s3dis"
    assert reader.read_scene(raw_root, names[1]).meta["dataset"] == "s3dis"
    scannet = catalogue.get("scannet").open_reader()
    assert scannet.read_scene(scannet_both[1], VAL_SCAN).meta["dataset"] == "pointcept-scannet"
    assert scannet.axis_align is True  # the raw reader's options show through
    # the S3DIS protocols' pretraining dataset (scannet, --pretrain-root) may be a Pointcept copy too
    from freepoint_bench.harness.run import pretraining_scenes

    assert pretraining_scenes("scannet", scannet_both[1]) == pretraining_scenes("scannet", scannet_both[0]) == [
        TRAIN_SCAN]


# ------------------------------------------------------------------------------------ bad input


def _room(tmp_path: Path, n: int = 5) -> Path:
    folder = tmp_path / "Area_1" / "office_1"
    folder.mkdir(parents=True)
    np.save(folder / "coord.npy", np.random.default_rng(0).uniform(0, 3, (n, 3)).astype(np.float32))
    np.save(folder / "color.npy", np.full((n, 3), 200, dtype=np.uint8))
    np.save(folder / "segment.npy", np.zeros((n, 1), dtype=np.int16))
    np.save(folder / "instance.npy", np.zeros((n, 1), dtype=np.int16))
    return folder


def _one_line_error(root: Path, match: str) -> str:
    with pytest.raises(DataError, match=match) as exc:
        reader = get_reader("pointcept-s3dis")
        reader.read_scene(root, reader.list_scenes(root)[0])
    assert "\n" not in str(exc.value) and "re-run Pointcept's preprocessing" in str(exc.value)
    return str(exc.value)


def test_colours_are_0_to_255_even_in_a_dark_room(tmp_path):
    np.save(_room(tmp_path) / "color.npy", np.ones((5, 3), dtype=np.uint8))
    scene = get_reader("pointcept-s3dis").read_scene(tmp_path, "Area_1/office_1")
    np.testing.assert_allclose(scene.rgb, 1 / 255)


def test_missing_file_names_it_and_the_fix(tmp_path):
    (_room(tmp_path) / "color.npy").unlink()
    _one_line_error(tmp_path, r"Area_1/office_1/color\.npy is missing")


def test_only_one_label_file_names_the_other(tmp_path):
    (_room(tmp_path) / "segment.npy").unlink()
    _one_line_error(tmp_path, r"segment\.npy is missing")


def test_mismatched_lengths_name_the_file(tmp_path):
    np.save(_room(tmp_path) / "instance.npy", np.zeros((4, 1), dtype=np.int16))
    _one_line_error(tmp_path, r"instance\.npy: 4 labels but coord\.npy has 5 points")
    np.save(tmp_path / "Area_1" / "office_1" / "color.npy", np.zeros((6, 3), dtype=np.uint8))
    _one_line_error(tmp_path, r"color\.npy: 6 points but coord\.npy has 5")


def test_nan_coordinates_name_the_file(tmp_path):
    folder = _room(tmp_path)
    coord = np.load(folder / "coord.npy")
    coord[2, 1] = np.nan
    np.save(folder / "coord.npy", coord)
    _one_line_error(tmp_path, r"coord\.npy: 1 points with NaN/inf values")


def test_labels_outside_the_classes_and_corrupt_files_are_refused(tmp_path):
    folder = _room(tmp_path)
    np.save(folder / "segment.npy", np.full((5, 1), 13, dtype=np.int16))
    _one_line_error(tmp_path, r"segment\.npy: labels 13\.\.13 outside -1\.\.12")
    (folder / "segment.npy").write_bytes(b"not numpy")
    _one_line_error(tmp_path, r"segment\.npy: corrupt or not a \.npy file")


def test_roots_of_another_layout_say_which_dataset_reads_them(tmp_path, s3dis_both):
    with pytest.raises(DataError, match="holds no rooms in Pointcept's layout.*use dataset 's3dis'"):
        get_reader("pointcept-s3dis").list_scenes(s3dis_both[0])
    (tmp_path / "Area_1").mkdir()
    (tmp_path / "Area_1" / "office_1.pth").write_bytes(b"")
    with pytest.raises(DataError, match="older Area_N/<room>.pth files"):
        get_reader("pointcept-s3dis").list_scenes(tmp_path)
    with pytest.raises(DataError, match="holds no scans in Pointcept's layout"):
        get_reader("pointcept-scannet").list_scenes(tmp_path)
    with pytest.raises(DataError, match="not of the form Area_N/<room>"):
        get_reader("pointcept-s3dis").read_scene(tmp_path, "office_1")


# ------------------------------------------------------------------------------------ commands


def test_data_prepare_and_list_take_the_pointcept_datasets(bench_cli, s3dis_both, scannet_both, tmp_path):
    _, pc_root, names = s3dis_both
    code, out, err = bench_cli("data", "prepare", "--dataset", "pointcept-s3dis", "--root", pc_root,
                               "--cache", tmp_path / "cache")
    assert code == 0, err
    code, out, err = bench_cli("data", "list", "--dataset", "pointcept-s3dis", "--root", pc_root,
                               "--cache", tmp_path / "cache")
    assert code == 0, err
    assert all(name in out for name in names) and "val" in out
    code, out, err = bench_cli("data", "prepare", "--dataset", "pointcept-scannet", "--root", scannet_both[1],
                               "--cache", tmp_path / "cache")
    assert code == 0, err


def test_every_release_room_in_pointcept_layout_plans_the_s3dis_protocol(bench_cli, tmp_path, monkeypatch):
    from freepoint_bench.cli import console
    from freepoint_bench.harness import plan as plan_module
    from freepoint_bench.harness.plan import Machine
    from freepoint_bench.harness.protocol import PROTOCOLS_DIR, read_room_list

    monkeypatch.setattr(console, "width", 400)  # no table cell wraps
    monkeypatch.setattr(plan_module, "detect_machine", lambda: Machine(cuda=True, bf16=True, backends=("spconv",)))
    monkeypatch.setattr(plan_module, "DEFAULT_THROUGHPUT", tmp_path / "no-table.json")
    root = tmp_path / "pointcept-s3dis"
    for room in read_room_list(PROTOCOLS_DIR / "splits" / "s3dis-rooms.txt"):
        (root / room).mkdir(parents=True)
        (root / room / "coord.npy").write_bytes(b"")  # all a plan reads of a room: that it is there
    code, out, err = bench_cli("run", "--methods", "scratch", "--protocols", "s3dis-10pct-scenes", "--seeds", "0",
                               "--root", root, "--results", tmp_path / "results", "--cache", tmp_path / "cache",
                               "--runs", tmp_path / "runs", "--checkpoints", tmp_path / "ckpt", "--plan")
    assert code == 0, out + err
    assert "s3dis-10pct-scenes" in out and "can not run" not in out, out


@pytest.mark.slow
def test_a_protocol_scores_the_same_from_either_layout(bench_cli, s3dis_both, tmp_path):
    """One semantic fine-tuning cell of a protocol naming s3dis, on the raw rooms and on their Pointcept copy: the
    same scenes, so the same split, the same training and the same scores (~60 s on 2 loaded cores)."""
    from freepoint_bench.data.store import SceneStore
    from freepoint_bench.results import read_result

    raw_root, pc_root, _ = s3dis_both
    protocol = "synthetic-s3dis-50pct-scenes-semseg"
    scores = []
    for reads_as, root in (("s3dis", raw_root), ("pointcept-s3dis", pc_root)):
        out = tmp_path / reads_as
        code, _, err = bench_cli("run", "--methods", "scratch", "--protocols", protocol, "--seeds", "0", "--root", root,
                                 "--results", out / "results", "--checkpoints", out / "ckpt", "--runs", out / "runs",
                                 "--cache", out / "cache", "--set", "epochs=5", "--set", "max_points=none")
        assert code == 0, err
        record = read_result(out / "results" / protocol / "scratch" / "seed-0" / "result.json")
        scores.append((record.eval_scenes, record.scores))
        (cached,) = (out / "cache").iterdir()
        assert SceneStore(cached).load(record.eval_scenes[0]).meta["dataset"] == reads_as  # the reader that read it
        assert record.layout == ("" if reads_as == "s3dis" else reads_as)  # the result says which copy it scored
        assert ('"layout"' in (out / "results" / protocol / "scratch" / "seed-0" / "result.json").read_text()) \
            == bool(record.layout)
    assert scores[0] == scores[1] and scores[0][1]["miou"] > 0, scores
