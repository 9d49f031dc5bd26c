"""ScanNet's data-efficient benchmark (issue 30): protocols that read the official files a user downloads with
ScanNet's script (`download-scannet.py --data_efficient`, unzipped into <root>/tasks/) as published.

The fixtures are written here in the official formats: limited reconstructions, ``tasks/scenes/<pct>.txt``, one
scan name per line (Pointcept reads it with numpy.loadtxt(dtype=str)); limited annotations,
``tasks/points/points<n>``, a torch.save'd dict scan name -> indices of its labelled vertices (Pointcept reads it with
torch.load and sets every other point's label to ignore)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_paper_path import NYU40, write_scannet_scan

from freepoint_bench.data import catalogue
from freepoint_bench.data.classes import S3DIS_CLASSES, SCANNET_SEMANTIC_IDS
from freepoint_bench.data.readers import get_reader
from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.harness.cells import fold_data
from freepoint_bench.harness.finetune import ProtocolTargets, SemanticTargets
from freepoint_bench.harness.protocol import available_protocols, load_protocol, load_split

TRAIN = ("scene0000_00", "scene0001_00", "scene0002_00")  # of ScanNet v2's train list
VAL = ("scene0011_00",)  # of its val list
POINTS = 200  # points of each synthetic scan

PROTOCOL = """description = "test: ScanNet data-efficient, {what}"
task = "{task}"
dataset = "scannet"
train_groups = ["scene0000", "scene0001", "scene0002"]
eval_groups = ["scene0011"]
unit = "{unit}"
{extra}official_file = "{file}"
preset = "cpu-small"
overrides = {{epochs = 1}}

[eval]
classes = "scannet"
min_region_size = 5
"""


def protocol(folder: Path, name: str, *, task: str, unit: str, file: str, points: int | None = None) -> Path:
    """Writes a protocol over the fixture's rooms reading `file` (relative to --split-root); returns its folder."""
    folder.mkdir(exist_ok=True)
    extra = f"points_per_scene = {points}\n" if points else ""
    (folder / f"{name}.toml").write_text(PROTOCOL.format(what=name, task=task, unit=unit, extra=extra, file=file))
    return folder


def scannet_root(root: Path) -> Path:
    """Writes the fixture's scans in ScanNet's raw layout (scans/ + the label table) under root; returns root."""
    for i, name in enumerate(TRAIN + VAL):
        write_scannet_scan(root / "scans", generate_room(2000 + i, SyntheticConfig(num_points=POINTS), name=name))
    rows = "".join(f"{i}\t{c}\t{c}\t1\t{NYU40[c]}\t{c}\n" for i, c in enumerate(S3DIS_CLASSES))
    (root / "scannetv2-labels.combined.tsv").write_text("id\traw_category\tcategory\tcount\tnyu40id\tnyu40class\n"
                                                        + rows)
    return root


def write_scene_list(root: Path, name: str, scenes: list[str]) -> Path:
    path = root / "tasks" / "scenes" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{s}\n" for s in scenes))
    return path


def write_points(root: Path, name: str, points: dict) -> Path:
    path = root / "tasks" / "points" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(points, path)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_shipped_protocols_name_the_official_files():
    names = [n for n in available_protocols() if n.startswith("scannet-de-")]
    assert len(names) == 16
    for name in names:
        spec = load_protocol(name)
        assert spec.dataset == "scannet" and spec.eval.classes == "scannet" and spec.expected_eval_scenes == 312
        assert len(spec.train_groups) == 565 and len(spec.eval_groups) == 142
        kind, task = name.removeprefix("scannet-de-").split("-")
        assert spec.task == task
        if kind.startswith("lr"):
            assert spec.unit == "scenes" and spec.official_file == f"tasks/scenes/{kind[2:]}.txt"
            assert spec.fraction == int(kind[2:]) / 100
        else:
            assert spec.unit == "points" and spec.official_file == f"tasks/points/points{kind[2:]}"
            assert spec.points_per_scene == int(kind[2:])


def test_a_scene_list_selects_exactly_its_scans(tmp_path):
    folder = protocol(tmp_path / "protocols", "lr", task="semseg", unit="scenes", file="tasks/scenes/1.txt")
    path = write_scene_list(tmp_path, "1.txt", ["scene0002_00", "scene0000_00"])
    spec = load_protocol("lr", folder)
    doc, sha = load_split(spec, folder, split_root=tmp_path)
    assert sha == sha256_of(path)
    assert doc["train_scenes"] == ["scene0002_00", "scene0000_00"]
    data = fold_data(spec, [*TRAIN, *VAL], doc, 0)
    assert sorted(data.train) == ["scene0000_00", "scene0002_00"] and data.eval == list(VAL)
    # a listed scan the data lack is refused (a partial copy would silently train on less)
    with pytest.raises(DataError, match="scene0002_00"):
        fold_data(spec, ["scene0000_00", "scene0001_00", "scene0002_01", *VAL], doc, 0)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_the_labelled_points_are_exactly_the_files_and_the_rest_is_ignored(tmp_path, kind):
    folder = protocol(tmp_path / "protocols", "la", task="insseg", unit="points", file="tasks/points/points20",
                      points=20)
    rng = np.random.default_rng(0)
    chosen = {name: np.sort(rng.choice(POINTS, 20, replace=False)) for name in TRAIN}
    as_file = {k: (torch.from_numpy(v) if kind == "torch" else v) for k, v in chosen.items()}
    path = write_points(tmp_path, "points20", as_file)
    spec = load_protocol("la", folder)
    doc, sha = load_split(spec, folder, split_root=tmp_path)
    assert sha == sha256_of(path)
    data = fold_data(spec, [*TRAIN, *VAL], doc, 0)
    assert data.train == list(TRAIN) and data.kept_points is not None

    scene = generate_room(7, SyntheticConfig(num_points=POINTS), name="scene0001_00")
    scene.semantic[:] = np.array([NYU40[S3DIS_CLASSES[s]] for s in scene.semantic])  # NYU40 ids, as the reader's
    labelled = np.zeros(POINTS, dtype=bool)
    labelled[chosen["scene0001_00"]] = True

    full = ProtocolTargets(spec.eval)(scene)
    sparse = ProtocolTargets(spec.eval, None, data.kept_points)(scene)
    assert np.array_equal(~sparse.ignore, labelled)  # every other point takes no part in training
    assert np.array_equal(sparse.instance[labelled], full.instance[labelled])
    assert (sparse.instance[~labelled] == -1).all() and (sparse.semantic[~labelled] == -1).all()
    assert np.array_equal(sparse.semantic[labelled], full.semantic[labelled])

    semantic = SemanticTargets(spec.eval, None, data.kept_points)(scene)
    every = SemanticTargets(spec.eval)(scene)
    assert np.array_equal(semantic, np.where(labelled, every, -1))
    assert (semantic[labelled] >= 0).sum() > 0

    # a scan the file does not list is no training scan; an index past the scan's points is another preprocessing
    other = generate_room(8, SyntheticConfig(num_points=POINTS), name="scene0005_00")
    with pytest.raises(DataError, match="scene0005_00"):
        ProtocolTargets(spec.eval, None, data.kept_points)(other)
    with pytest.raises(DataError, match="_vh_clean_2.ply"):
        ProtocolTargets(spec.eval, None, {"scene0001_00": np.array([POINTS])})(scene)


def test_a_missing_or_malformed_official_file_is_one_line_naming_it_and_how_to_get_it(tmp_path):
    folder = protocol(tmp_path / "protocols", "la", task="semseg", unit="points", file="tasks/points/points20",
                      points=20)
    protocol(folder, "lr", task="semseg", unit="scenes", file="tasks/scenes/5.txt")
    la, lr = load_protocol("la", folder), load_protocol("lr", folder)
    for spec, expected in ((la, "points20"), (lr, "5.txt")):
        with pytest.raises(ConfigError) as e:
            load_split(spec, folder, split_root=tmp_path)
        assert "\n" not in str(e.value) and expected in str(e.value) and "download-scannet.py --data_efficient" \
            in str(e.value)
    with pytest.raises(ConfigError, match="--split-root"):
        load_split(la, folder)
    bad = {"not a list": "scene0000_00 scene0001_00\nhello\n", "empty": "\n"}
    for text in bad.values():
        (tmp_path / "tasks" / "scenes").mkdir(parents=True, exist_ok=True)
        (tmp_path / "tasks" / "scenes" / "5.txt").write_text(text)
        with pytest.raises(ConfigError, match="not a ScanNet scene list"):
            load_split(lr, folder, split_root=tmp_path)
    for points in ({"scene0000_00": np.arange(21)},  # more than points_per_scene
                   {"scene0000_00": np.array([1.5, 2.0])},  # not indices
                   ["scene0000_00"]):  # not a dict
        write_points(tmp_path, "points20", points)
        with pytest.raises(ConfigError, match="not ScanNet's limited-annotation points"):
            load_split(la, folder, split_root=tmp_path)
    (tmp_path / "tasks" / "points" / "points20").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="points20"):
        load_split(la, folder, split_root=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["semseg", "insseg"])
def test_the_official_files_sha256_is_in_the_result(bench_cli, tmp_path, monkeypatch, task):
    """`bench.py finetune --split-root` end to end on three training scans and one val scan: both units, the
    result records the official file's sha256 and trains on its scans."""
    monkeypatch.chdir(tmp_path)
    root = scannet_root(tmp_path / "scannet")
    official = tmp_path / "download"  # --split-root: elsewhere than the data root
    folder = protocol(tmp_path / "protocols", f"la-{task}", task=task, unit="points",
                      file="tasks/points/points50", points=50)
    protocol(folder, f"lr-{task}", task=task, unit="scenes", file="tasks/scenes/20.txt")
    lists = {f"lr-{task}": write_scene_list(official, "20.txt", ["scene0001_00"]),
             f"la-{task}": write_points(official, "points50", {n: np.arange(0, POINTS, 4) for n in TRAIN})}
    for name, path in lists.items():
        code, out, err = bench_cli("run", "--methods", "scratch", "--protocols", name, "--seeds", "0", "--plan",
                                   "--root", root, "--protocols-dir", folder, "--split-root", official)
        assert code == 0, out + err
        code, out, err = bench_cli("finetune", "--protocol", name, "--method", "scratch", "--seeds", "0",
                                   "--root", root, "--protocols-dir", folder, "--split-root", official)
        assert code == 0, out + err
        result = json.loads((tmp_path / "results" / name / "scratch" / "seed-0" / "result.json").read_text())
        assert result["split_sha256"] == sha256_of(path)
        assert result["num_train_scenes"] == (1 if name.startswith("lr") else 3)
        assert result["eval_scenes"] == list(VAL)
    # without --split-root the data root is read, where ScanNet's script puts tasks/: absent here, refused in a line
    shutil.rmtree(tmp_path / "results")
    code, out, err = bench_cli("finetune", "--protocol", f"lr-{task}", "--method", "scratch", "--seeds", "0",
                               "--root", root, "--protocols-dir", folder)
    assert code != 0 and "download-scannet.py --data_efficient" in out + err
    code, out, err = bench_cli("run", "--methods", "scratch", "--protocols", f"lr-{task}", "--seeds", "0", "--plan",
                               "--root", root, "--protocols-dir", folder)
    assert code == 1 and "download-scannet.py --data_efficient" in out + err


def pointcept_copy(raw: Path, out: Path) -> Path:
    """Writes the fixture's raw scans in Pointcept's ScanNet layout (as tests/data/test_pointcept.py documents it:
    <split>/<scan>/coord.npy, color.npy (0-255), segment20.npy (position in ScanNet's 20 NYU40 ids, else -1),
    instance.npy), the vertices in the mesh's order as preprocess_scannet.py keeps them; returns out."""
    reader = get_reader("scannet", axis_align=False)
    for name in TRAIN + VAL:
        scene = reader.read_scene(raw, name)
        folder = out / ("train" if name in TRAIN else "val") / name
        folder.mkdir(parents=True)
        np.save(folder / "coord.npy", scene.xyz.astype(np.float32))
        np.save(folder / "color.npy", np.round(scene.rgb * 255).astype(np.uint8))
        position = {int(nyu40): k for k, nyu40 in enumerate(SCANNET_SEMANTIC_IDS)}
        np.save(folder / "segment20.npy", np.array([position.get(int(s), -1) for s in scene.semantic]))
        np.save(folder / "instance.npy", scene.instance.astype(int))
    return out


@pytest.mark.slow
def test_a_pointcept_copy_is_labelled_at_the_same_points(bench_cli, tmp_path, monkeypatch):
    """The official indices address _vh_clean_2.ply's vertices, which both the raw reader and Pointcept's layout keep
    in order: the scans read from either give the same labelled points, and `finetune --root <pointcept copy>` runs
    the same protocol."""
    monkeypatch.chdir(tmp_path)
    raw = scannet_root(tmp_path / "scannet")
    pc = pointcept_copy(raw, tmp_path / "pointcept")
    folder = protocol(tmp_path / "protocols", "la", task="semseg", unit="points", file="tasks/points/points50",
                      points=50)
    rng = np.random.default_rng(1)
    path = write_points(pc, "points50", {n: rng.choice(POINTS, 50, replace=False) for n in TRAIN})
    spec = load_protocol("la", folder)
    doc, _ = load_split(spec, folder, split_root=pc)
    dataset = catalogue.get("scannet").open_reader()
    for name in TRAIN:
        a, b = dataset.read_scene(raw, name), dataset.read_scene(pc, name)
        assert b.meta["dataset"] == "pointcept-scannet"
        ta, tb = (SemanticTargets(spec.eval, None, doc["points"])(s) for s in (a, b))
        assert np.array_equal(ta, tb) and (ta >= 0).sum() > 0
    # --split-root left out: the data root, where Pointcept's instructions copy tasks/
    code, out, err = bench_cli("finetune", "--protocol", "la", "--method", "scratch", "--seeds", "0", "--root", pc,
                               "--protocols-dir", folder)
    assert code == 0, out + err
    result = json.loads((tmp_path / "results" / "la" / "scratch" / "seed-0" / "result.json").read_text())
    assert result["split_sha256"] == sha256_of(path) and result["num_train_scenes"] == 3
