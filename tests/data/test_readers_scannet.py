"""ScanNet readers: raw v2 scans (ply + segments + aggregation) and VoteNet-style npy exports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement
from scipy.spatial import cKDTree

from freepoint_bench.data.readers import get_reader
from freepoint_bench.data.readers.scannet import ScanNetReader
from freepoint_bench.data.readers.scannet_npy import ScanNetNpyReader
from freepoint_bench.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

TSV = (
    "id\traw_category\tcategory\tcount\tnyu40id\tnyu40class\n"
    "1\twall\twall\t100\t1\twall\n"
    "2\tchair\tchair\t50\t5\tchair\n"
    "3\toffice chair\tchair\t10\t5\tchair\n"
    "4\ttable\ttable\t20\t7\ttable\n"
    "5\tobject\tobject\t1\t0\t\n"
)


def _write_scan(scans: Path, name: str, agg_name: str | None = None, align: np.ndarray | None = None):
    """Writes a 10-vertex scan: 5 segments, objects wall(0), chair(1), office chair(2), unknown(3)."""
    folder = scans / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0, 4, (10, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (10, 3)).astype(np.uint8)
    vertex = np.empty(10, dtype=[(k, "f4") for k in "xyz"] + [(k, "u1") for k in ("red", "green", "blue")])
    for i, k in enumerate("xyz"):
        vertex[k] = xyz[:, i]
    for i, k in enumerate(("red", "green", "blue")):
        vertex[k] = rgb[:, i]
    face = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))])
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(face, "face")]).write(
        str(folder / f"{name}_vh_clean_2.ply")
    )
    seg_indices = [10, 10, 20, 20, 30, 30, 40, 40, 50, 50]
    (folder / f"{name}_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"segIndices": seg_indices}))
    groups = [
        {"objectId": 0, "label": "wall", "segments": [10, 20]},
        {"objectId": 1, "label": "chair", "segments": [30]},
        {"objectId": 2, "label": "office chair", "segments": [40, 999]},  # 999: absent segment
        {"objectId": 3, "label": "mystery", "segments": [50]},
    ]
    agg = agg_name or f"{name}.aggregation.json"
    (folder / agg).write_text(json.dumps({"sceneId": name, "segGroups": groups}))
    if align is not None:
        (folder / f"{name}.txt").write_text(
            "colorHeight = 968\naxisAlignment = " + " ".join(f"{v:.6f}" for v in align.ravel()) + "\n"
        )
    return xyz, rgb


def test_raw_scan_labels_instances_and_colours(tmp_path):
    (tmp_path / "scannetv2-labels.combined.tsv").write_text(TSV)
    xyz, rgb = _write_scan(tmp_path / "scans", "scene0001_00")
    reader = get_reader("scannet")
    assert reader.list_scenes(tmp_path) == ["scene0001_00"]
    scene = reader.read_scene(tmp_path, "scene0001_00")
    np.testing.assert_allclose(scene.xyz, xyz)
    np.testing.assert_allclose(scene.rgb, rgb / 255.0, atol=1e-6)
    assert scene.semantic.tolist() == [1, 1, 1, 1, 5, 5, 5, 5, -1, -1]
    assert scene.instance.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 3, 3]
    assert scene.meta["unmapped_labels"] == ["mystery"] and scene.meta["axis_aligned"] is False


def test_root_may_be_scans_itself_and_the_older_aggregation_name_is_accepted(tmp_path):
    (tmp_path / "scannetv2-labels.combined.tsv").write_text(TSV)
    _write_scan(tmp_path / "scans", "scene0002_00", agg_name="scene0002_00_vh_clean.aggregation.json")
    scene = ScanNetReader().read_scene(tmp_path / "scans", "scene0002_00")
    assert scene.instance.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 3, 3]


def test_axis_alignment_is_applied_by_default_and_can_be_turned_off(tmp_path):
    (tmp_path / "scannetv2-labels.combined.tsv").write_text(TSV)
    c, s = np.cos(0.3), np.sin(0.3)
    align = np.array([[c, -s, 0, 1.5], [s, c, 0, -2.0], [0, 0, 1, 0.25], [0, 0, 0, 1]])
    xyz, _ = _write_scan(tmp_path / "scans", "scene0003_00", align=align)
    aligned = get_reader("scannet").read_scene(tmp_path, "scene0003_00")
    expected = xyz.astype(np.float64) @ align[:3, :3].T + align[:3, 3]
    np.testing.assert_allclose(aligned.xyz, expected, atol=1e-5)
    assert aligned.meta["axis_aligned"] is True
    raw = get_reader("scannet", axis_align=False).read_scene(tmp_path, "scene0003_00")
    np.testing.assert_allclose(raw.xyz, xyz)


def test_scan_without_aggregation_loads_unlabelled(tmp_path):
    _write_scan(tmp_path / "scans", "scene0707_00")
    (tmp_path / "scans" / "scene0707_00" / "scene0707_00.aggregation.json").unlink()
    scene = ScanNetReader().read_scene(tmp_path, "scene0707_00")
    assert scene.semantic is None and scene.instance is None and scene.num_points == 10


def test_raw_scannet_bad_input(tmp_path):
    reader = ScanNetReader()
    with pytest.raises(DataError, match="does not exist"):
        reader.list_scenes(tmp_path / "nope")
    with pytest.raises(DataError, match="no ScanNet scans.*scannet-npy"):
        reader.list_scenes(tmp_path)
    _write_scan(tmp_path / "scans", "scene0001_00")
    with pytest.raises(DataError, match="scannetv2-labels.combined.tsv not found"):
        reader.read_scene(tmp_path, "scene0001_00")
    (tmp_path / "scannetv2-labels.combined.tsv").write_text(TSV)
    segs = tmp_path / "scans" / "scene0001_00" / "scene0001_00_vh_clean_2.0.010000.segs.json"
    segs.write_text(json.dumps({"segIndices": [1, 2, 3]}))
    with pytest.raises(DataError, match="segIndices has 3 entries but the mesh has 10"):
        reader.read_scene(tmp_path, "scene0001_00")
    segs.write_text("{not json")
    with pytest.raises(DataError, match="segs.json: not valid JSON"):
        reader.read_scene(tmp_path, "scene0001_00")
    ply = tmp_path / "scans" / "scene0001_00" / "scene0001_00_vh_clean_2.ply"
    ply.write_bytes(ply.read_bytes()[:200])
    with pytest.raises(DataError, match="vh_clean_2.ply"):
        reader.read_scene(tmp_path, "scene0001_00")


# ---- VoteNet npy --------------------------------------------------------------------------------------


def _write_npy(root: Path, name: str, n: int = 40, suffix: str = "", labels: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    vert = np.c_[rng.uniform(-3, 3, (n, 3)), rng.integers(0, 256, (n, 3))].astype(np.float32)
    sem = rng.integers(0, 41, n).astype(np.uint32)
    ins = np.where(sem == 0, 0, rng.integers(1, 6, n)).astype(np.uint32)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / f"{name}_vert{suffix}.npy", vert)
    if labels:
        np.save(root / f"{name}_sem_label{suffix}.npy", sem)
        np.save(root / f"{name}_ins_label{suffix}.npy", ins)
    return vert, sem, ins


def test_npy_reader_maps_unannotated_to_minus_one(tmp_path):
    vert, sem, ins = _write_npy(tmp_path, "scene0010_00")
    scene = get_reader("scannet-npy").read_scene(tmp_path, "scene0010_00")
    np.testing.assert_allclose(scene.xyz, vert[:, :3])
    np.testing.assert_allclose(scene.rgb, vert[:, 3:] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(scene.semantic, np.where(sem == 0, -1, sem.astype(np.int64)))
    np.testing.assert_array_equal(scene.instance, np.where(ins == 0, -1, ins.astype(np.int64)))


def test_npy_reader_detects_the_full_resolution_variant(tmp_path):
    _write_npy(tmp_path, "scene0011_00", n=30, suffix="_all")
    _write_npy(tmp_path, "scene0012_00", n=20)
    _write_npy(tmp_path, "scene0012_00", n=50, suffix="_all")
    auto = ScanNetNpyReader()
    assert auto.list_scenes(tmp_path) == ["scene0011_00", "scene0012_00"]
    assert auto.read_scene(tmp_path, "scene0011_00").num_points == 30
    assert auto.read_scene(tmp_path, "scene0012_00").num_points == 20  # sampled file preferred
    full = get_reader("scannet-npy", full_resolution=True)
    assert full.read_scene(tmp_path, "scene0012_00").meta["full_resolution"] is True
    assert full.read_scene(tmp_path, "scene0012_00").num_points == 50
    assert ScanNetNpyReader(full_resolution=False).list_scenes(tmp_path) == ["scene0012_00"]
    with pytest.raises(DataError, match="scene0011_00_vert.npy is missing"):
        ScanNetNpyReader(full_resolution=False).read_scene(tmp_path, "scene0011_00")


def test_npy_reader_without_label_files_gives_an_unlabelled_scene(tmp_path, caplog):
    _write_npy(tmp_path, "scene0013_00", labels=False)
    with caplog.at_level("INFO"):
        scene = ScanNetNpyReader().read_scene(tmp_path, "scene0013_00")
    assert scene.semantic is None and scene.instance is None
    assert "without labels" in caplog.text


def test_npy_reader_bad_input_names_the_file(tmp_path):
    reader = ScanNetNpyReader()
    with pytest.raises(DataError, match="does not exist"):
        reader.list_scenes(tmp_path / "nope")
    with pytest.raises(DataError, match="no \\*_vert.npy"):
        reader.list_scenes(tmp_path)
    _write_npy(tmp_path, "scene0014_00")
    (tmp_path / "scene0014_00_sem_label.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="scene0014_00_sem_label.npy: corrupt"):
        reader.read_scene(tmp_path, "scene0014_00")
    np.save(tmp_path / "scene0014_00_sem_label.npy", np.zeros(7, dtype=np.uint32))
    with pytest.raises(DataError, match="sem_label.npy: shape \\(7,\\)"):
        reader.read_scene(tmp_path, "scene0014_00")
    np.save(tmp_path / "scene0014_00_vert.npy", np.zeros((5, 3), dtype=np.float32))
    with pytest.raises(DataError, match="vert.npy: shape \\(5, 3\\)"):
        reader.read_scene(tmp_path, "scene0014_00")
    with pytest.raises(DataError, match="no scene0099_00_vert.npy"):
        reader.read_scene(tmp_path, "scene0099_00")


# ---- the real development scans (../shared/data) -------------------------------------------------------


def _real(folder: str) -> Path:
    path = SHARED / folder
    if not path.is_dir():
        pytest.skip(f"{path} is absent (real ScanNet development scans are not shipped with the repo)")
    return path


@pytest.mark.realdata
def test_all_13_development_scans_load_with_plausible_labels():
    root = _real("scannet-dev")
    reader = get_reader("scannet-npy")
    names = reader.list_scenes(root)
    assert len(names) == 13 and names[0] == "scene0000_00"
    for name in names:
        scene = reader.read_scene(root, name)
        assert scene.num_points == 50_000 and scene.meta["full_resolution"] is False
        assert scene.semantic.min() >= -1 and scene.semantic.max() <= 40 and 0 not in scene.semantic
        labelled = scene.instance >= 0
        assert 0.5 < labelled.mean() <= 1.0
        ids = np.unique(scene.instance[labelled])
        assert 5 <= len(ids) <= 200, f"{name}: {len(ids)} instances"
        # Each instance is one object: a single NYU40 class; unannotated points have neither label.
        for i in ids:
            assert len(np.unique(scene.semantic[scene.instance == i])) == 1
        np.testing.assert_array_equal(scene.semantic == -1, ~labelled)
        extent = scene.xyz.max(axis=0) - scene.xyz.min(axis=0)
        assert np.all(extent > 1.0) and np.all(extent < 30.0)  # a room, in metres
        assert 0.0 <= scene.rgb.min() and scene.rgb.max() <= 1.0 and scene.rgb.max() > 0.5


@pytest.mark.realdata
def test_full_resolution_development_scans_load():
    root = _real("scannet-dev-fullres")
    reader = get_reader("scannet-npy")
    names = reader.list_scenes(root)
    assert names == ["scene0000_00", "scene0000_01", "scene0000_02"]
    sampled = _real("scannet-dev")
    for name in names:
        scene = reader.read_scene(root, name)
        assert scene.meta["full_resolution"] is True and scene.num_points > 50_000
        small = reader.read_scene(sampled, name)
        # The 50k scan samples the full-resolution vertices: each of its points is one, labels included.
        # (up to float32 rounding: one vertex of scene0000_01 differs by 6e-8 m).
        dist, index = cKDTree(scene.xyz).query(small.xyz)
        assert dist.max() < 1e-5
        np.testing.assert_array_equal(small.semantic, scene.semantic[index])
        np.testing.assert_array_equal(small.instance, scene.instance[index])
