"""The paper path on a CPU: the README's `bench.py run` example with its default flags, every method, S3DIS protocols
and the `paper` preset (34C, 2 cm voxels), on tiny S3DIS- and ScanNet-layout trees, through to `report`.

Only the iteration budget is overridden: one epoch of every stage. An epoch costs what its rooms do (on a CPU the
sparse convolutions and the decoder's per-scene work scale with the rooms, not the steps), so the rooms are tiny and
the protocols are the README's 10% pair, one per label unit: the pinned split of s3dis-10pct-scenes names 20 rooms,
and with the 20% pair (41 rooms pinned) each method would fine-tune on nearly four times the rooms for the same
wiring. What this catches is wiring: a default that picks the wrong preset or dataset, a method that cannot pretrain
the paper model, a checkpoint that does not load into the fine-tuning model, a cell or a report that is not
written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from freepoint_bench.data.classes import S3DIS_CLASSES
from freepoint_bench.data.readers.s3dis import write_s3dis_room
from freepoint_bench.data.scene import Scene
from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
from freepoint_bench.harness.protocol import PROTOCOLS_DIR

# splits older versions froze into the source tree (git-ignored; a checkout may still hold some): a test's copy
# of the protocols folder takes only the shipped ones
SHIPPED_ONLY = shutil.ignore_patterns("*-masks.json", "*-masks.json.sha256", "synthetic-*")

README_METHODS = ("freepoint", "pointcontrast", "csc", "depthcontrast", "supervised", "scratch")
PROTOCOLS = ("s3dis-10pct-masks", "s3dis-10pct-scenes")  # of the README's four: masks and scenes, 10%
SCANS = ("scene0000_00", "scene0001_00")  # both of ScanNet's train split, which pretraining reads
# The NYU40 id each synthetic class is labelled with in the ScanNet tree (scannetv2-labels.combined.tsv's mapping
# for the same words; beam and column are NYU40's otherstructure, clutter otherprop).
NYU40 = {"ceiling": 22, "floor": 2, "wall": 1, "beam": 38, "column": 38, "window": 9, "door": 8, "table": 7,
         "chair": 5, "sofa": 6, "bookcase": 10, "board": 30, "clutter": 40}
REPORT_FILES = ("leaderboard.md", "leaderboard.csv", "paper-reference.csv", "per-class.csv", "leaderboard.tex",
                "report.html")


def s3dis_tree(root: Path, train_points: int, eval_points: int) -> Path:
    """Returns root after writing, in S3DIS's raw layout, a synthetic room for every room s3dis-10pct-scenes' pinned
    split selects (Areas 1-4 and 6; the masks protocol freezes its split from these) and one in Area 5 (eval)."""
    rooms = json.loads((PROTOCOLS_DIR / "splits" / "s3dis-10pct-scenes.json").read_text())["train_scenes"]
    for i, name in enumerate(["Area_5/office_1", *rooms]):
        area, room = name.split("/")
        config = SyntheticConfig(num_points=eval_points if area == "Area_5" else train_points)
        write_s3dis_room(root, area, room, generate_room(i, config, name=name))
    return root


def write_scannet_scan(scans: Path, scene: Scene) -> None:
    """Writes `scene` as a raw ScanNet scan: mesh vertices, one segment per instance, the aggregation of them."""
    folder = scans / scene.name
    folder.mkdir(parents=True)
    colours = ("red", "green", "blue")
    vertex = np.empty(scene.num_points, dtype=[(k, "f4") for k in "xyz"] + [(k, "u1") for k in colours])
    for i, k in enumerate("xyz"):
        vertex[k] = scene.xyz[:, i]
    for i, k in enumerate(colours):
        vertex[k] = np.round(scene.rgb[:, i] * 255)
    face = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))])
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(face, "face")]).write(
        str(folder / f"{scene.name}_vh_clean_2.ply"))
    segs = {"segIndices": scene.instance.tolist()}
    (folder / f"{scene.name}_vh_clean_2.0.010000.segs.json").write_text(json.dumps(segs))
    groups = [{"objectId": int(k), "label": S3DIS_CLASSES[int(scene.semantic[scene.instance == k][0])],
               "segments": [int(k)]} for k in np.unique(scene.instance)]
    (folder / f"{scene.name}.aggregation.json").write_text(json.dumps({"sceneId": scene.name, "segGroups": groups}))


def scannet_tree(root: Path, points: int) -> Path:
    """Returns root after writing synthetic rooms as labelled ScanNet v2 scans (scans/ + the label table)."""
    config = SyntheticConfig(num_points=points)
    for i, name in enumerate(SCANS):
        write_scannet_scan(root / "scans", generate_room(1000 + i, config, name=name))
    rows = "".join(f"{i}\t{c}\t{c}\t1\t{NYU40[c]}\t{c}\n" for i, c in enumerate(S3DIS_CLASSES))
    (root / "scannetv2-labels.combined.tsv").write_text(
        "id\traw_category\tcategory\tcount\tnyu40id\tnyu40class\n" + rows)
    return root


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    """The README's setting in tmp_path (also the working directory: results/, checkpoints/, cache/, runs/ and
    report/ land where the README puts them; the masks protocol freezes its split into results/splits) with a
    private copy of the shipped protocols. Afterwards the checkpoints (~0.15-0.5 GB each, 10 GB in all) are
    deleted; logs and JSONs stay."""
    protocols = tmp_path / "protocols"
    shutil.copytree(PROTOCOLS_DIR / "splits", protocols / "splits", ignore=SHIPPED_ONLY)
    for name in PROTOCOLS:
        shutil.copy(PROTOCOLS_DIR / f"{name}.toml", protocols)
    monkeypatch.chdir(tmp_path)
    yield {"s3dis": s3dis_tree(tmp_path / "Stanford3dDataset_v1.2_Aligned_Version", train_points=100,
                               eval_points=2000),
           "scannet": scannet_tree(tmp_path / "scannet", points=1000), "protocols": protocols}
    for path in tmp_path.rglob("*.ckpt"):
        path.unlink()


@pytest.mark.slow
def test_the_readme_run_example_runs_the_paper_path_on_a_cpu(bench_cli, workspace, tmp_path):
    code, out, err = bench_cli(
        "run", "--methods", ",".join(README_METHODS), "--protocols", ",".join(PROTOCOLS), "--seeds", "0",
        "--root", workspace["s3dis"], "--pretrain-dataset", "scannet", "--pretrain-root", workspace["scannet"],
        "--protocols-dir", workspace["protocols"],
        "--set", "epochs=1", "--pretrain-set", "epochs1=1", "--pretrain-set", "epochs2=1")  # the budget
    assert code == 0, out + err
    index = json.loads((tmp_path / "checkpoints" / "index.json").read_text())["checkpoints"]
    for protocol in PROTOCOLS:
        for method in README_METHODS:
            result = json.loads((tmp_path / "results" / protocol / method / "seed-0" / "result.json").read_text())
            assert result["config"]["train"]["name"] == "paper" and result["config"]["train"]["backbone"] == "34C"
            assert set(result["metrics"]) >= {"ap", "ap50", "ap25"}
            # the backbone it started from: the paper model, pretrained on ScanNet (scratch: not pretrained)
            entry = index[result["checkpoint"]["id"]]
            assert entry["method"] == method and entry["architecture"]["preset"] == "34C"
            assert method == "scratch" or entry["data"]["dataset"] == "scannet"

    code, out, err = bench_cli("report")
    assert code == 0, out + err
    for name in REPORT_FILES:
        assert (tmp_path / "report" / name).is_file(), name
    table = (tmp_path / "report" / "leaderboard.csv").read_text()
    for method in README_METHODS:
        assert method in table
