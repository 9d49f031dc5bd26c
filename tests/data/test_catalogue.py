"""The dataset catalogue: the one place that knows datasets by name, and adding a dataset is one entry and one
reader (opening, splits, scene groups, protocols' vocabulary and evaluation all follow from the entry)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from freepoint_bench.data import catalogue
from freepoint_bench.data.catalogue import Dataset, Vocabulary
from freepoint_bench.data.open import open_dataset, store_dir
from freepoint_bench.data.readers import get_reader, known_datasets
from freepoint_bench.data.scene import Scene
from freepoint_bench.data.splits import room_of, scenes_in_split, split_of
from freepoint_bench.errors import ConfigError
from freepoint_bench.evaluation import evaluate, predictions_from_labels
from freepoint_bench.evaluation.instance_ap import dataset_spec, s3dis_spec, scannet_spec
from freepoint_bench.harness.finetune import class_vocabulary, eval_spec
from freepoint_bench.harness.protocol import EvalRules, group_of, scenes_of

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "freepoint_bench" / "data" / "catalogue.py"


# ------------------------------------------------------------------------------------- one owner of the names


def _known_names() -> set[str]:
    vocabularies = {catalogue.get(n).classes.name for n in catalogue.evaluable()}
    return set(catalogue.names()) | vocabularies


def _strings(node: ast.AST) -> list[str]:
    """Returns the string constants a comparison operand holds (itself, or the items of a literal collection)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for item in node.elts for s in _strings(item)]
    return []


def _dataset_name_tests(path: Path, known: set[str]) -> list[str]:
    """Returns "file:line: what" for each comparison of a value with a catalogue name, each dict keyed by one and
    each Literal of them: the ways code branches on a dataset's name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
        elif isinstance(node, ast.Dict):
            operands = [k for k in node.keys if k is not None]
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Literal":
            operands = [node.slice]
        else:
            continue
        names = sorted({s for op in operands for s in _strings(op) if catalogue.canonical(s) in known})
        if names:
            where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
            found.append(f"{where}:{node.lineno}: {type(node).__name__} on {names}")
    return found


def test_no_module_but_the_catalogue_branches_on_a_dataset_name():
    known = _known_names()
    assert {"s3dis", "scannet", "scannet-npy", "synthetic", "ply"} <= known
    found = [
        hit
        for package in ("freepoint_bench", "baselines")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != CATALOGUE
        for hit in _dataset_name_tests(path, known)
    ]
    assert not found, "ask freepoint_bench.data.catalogue instead of testing dataset names:\n" + "\n".join(found)


def test_the_name_check_finds_what_it_looks_for(tmp_path):
    """The check above can fail: each way of branching on a name is reported, other strings are not."""
    sample = tmp_path / "branching_sample.py"
    sample.write_text(
        'if dataset == "s3dis": pass\n'
        'if key in ("ScanNet_NPY", "other"): pass\n'
        'IDS = {"synthetic": 1}\n'
        'Kind = Literal["ply", "x"]\n'
        'if dataset == "train-scenes": pass\n'
    )
    found = _dataset_name_tests(sample, _known_names())
    assert [hit.split(": ", 1)[1] for hit in found] == [
        "Compare on ['s3dis']",
        "Compare on ['ScanNet_NPY']",
        "Dict on ['synthetic']",
        "Subscript on ['ply']",
    ]


# ------------------------------------------------------------------------------------- the built-in entries


def test_builtin_entries_say_what_the_old_branches_said():
    assert catalogue.names() == ["scannet", "scannet-npy", "s3dis", "synthetic", "ply", "pointcept-scannet",
                                 "pointcept-s3dis"]
    assert [n for n in catalogue.names() if not catalogue.get(n).needs_root] == ["synthetic"]
    assert catalogue.evaluable() == ["scannet", "scannet-npy", "s3dis", "synthetic", "pointcept-scannet",
                                     "pointcept-s3dis"]
    assert catalogue.get("ScanNet_NPY") is catalogue.get("scannet-npy")
    assert catalogue.get("synthetic").classes is catalogue.get("s3dis").classes
    assert catalogue.vocabulary("s3dis").class_names[12] == "clutter"
    assert len(catalogue.vocabulary("scannet").class_ids) == 18
    # what semantic segmentation trains on (baselines/supervised.py's DATASET_CLASSES when this was written)
    assert catalogue.get("synthetic").classes.segmentation_ids == tuple(range(13))
    nyu40 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
    assert catalogue.get("scannet-npy").classes.segmentation_ids == nyu40
    # the evaluation specs of before (built by hand then, from the vocabulary now)
    assert dataset_spec("synthetic", class_agnostic=True) == s3dis_spec(True, True, True)
    assert dataset_spec("s3dis") == s3dis_spec()
    assert dataset_spec("scannet-npy", min_region_size=7) == scannet_spec(min_region_size=7)
    assert eval_spec(EvalRules(classes="scannet", min_region_size=3)) == scannet_spec(min_region_size=3)
    assert class_vocabulary(EvalRules(classes="s3dis"))[0] == tuple(range(13))


def test_scene_groups_and_rooms():
    assert group_of("Area_5/office_1") == group_of("Area_5/office_1", "s3dis") == "Area_5"
    assert group_of("Area_5", "s3dis") == "Area_5"
    assert group_of("scene0001_02") == group_of("scene0001_02", "scannet-npy") == "scene0001"
    assert group_of("synth_0003", "synthetic") == group_of("synth_0003") == "synth_0003"
    assert group_of("scene0001_02", "s3dis") == "scene0001_02"  # a dataset's own rule only
    assert room_of("scene0001_02") == "scene0001" and room_of("Area_5/office_1") == "Area_5/office_1"
    names = ["Area_1/a", "Area_5/b", "Area_55/c"]
    assert scenes_of(names, ["Area_5"], "s3dis") == ["Area_5/b"]


def test_unknown_names_are_one_config_error_listing_the_catalogue():
    message = ("unknown dataset 'kitti'; known datasets: scannet, scannet-npy, s3dis, synthetic, ply, "
               "pointcept-scannet, pointcept-s3dis")
    for ask in (
        lambda: catalogue.get("kitti"),
        lambda: get_reader("kitti"),
        lambda: split_of("kitti", "x"),
        lambda: store_dir("cache", "kitti", None),
        lambda: group_of("x", "kitti"),
    ):
        with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
            ask()
    with pytest.raises(ConfigError, match="no ground truth to evaluate; use scannet, scannet-npy, s3dis, synthetic, "
                                          "pointcept-scannet or pointcept-s3dis"):
        dataset_spec("kitti")
    with pytest.raises(ConfigError, match="^dataset 'ply' has no ground truth"):
        dataset_spec("ply")
    with pytest.raises(ConfigError, match="unknown class vocabulary 'nyu40'; use s3dis or scannet"):
        EvalRules(classes="nyu40")
    with pytest.raises(ConfigError, match="already in the catalogue"):
        catalogue.register(Dataset("S3DIS", _ToyReader, "again"))


def test_the_cli_lists_the_catalogue():
    from freepoint_bench.cli import DatasetOpt

    help_text = DatasetOpt.__metadata__[0].help
    assert help_text == "Dataset: scannet, scannet-npy, s3dis, synthetic, ply, pointcept-scannet or pointcept-s3dis."


# ------------------------------------------------------------------------------------- a dataset from outside


TOY_VOCABULARY = Vocabulary("toy-classes", (7, 9), ("crate", "barrel"), agnostic_void=("barrel",))


class _ToyReader:
    """Two rooms of a warehouse, each scanned twice (``bay3-a``, ``bay3-b``); labelled crates and barrels."""

    name = "toy-warehouse"

    def __init__(self, points: int = 400) -> None:
        self.points = points

    def list_scenes(self, root: Path) -> list[str]:
        return ["bay1-a", "bay1-b", "bay2-a", "bay3-a"]

    def read_scene(self, root: Path, name: str) -> Scene:
        rng = np.random.default_rng(sum(map(ord, name)))
        n = self.points
        instance = np.repeat(np.arange(4), n // 4)
        semantic = np.where(instance % 2 == 0, 7, 9)
        return Scene(
            name=name,
            xyz=rng.random((n, 3)).astype(np.float32),
            rgb=np.zeros((n, 3), np.float32),
            semantic=semantic,
            instance=instance,
            meta={"dataset": self.name},
        )


def _toy_split(scene_name: str, root: Path | None) -> str:
    return "val" if scene_name.startswith("bay3") else "train"


@pytest.fixture
def toy_dataset():
    entry = catalogue.register(
        Dataset(
            "Toy_Warehouse",
            _ToyReader,
            "a toy warehouse",
            needs_root=False,
            classes=TOY_VOCABULARY,
            split=_toy_split,
            group=re.compile(r"^(bay\d+)-[a-z]$"),
            group_is_room=True,
        )
    )
    yield entry
    catalogue.unregister(entry.name)
    assert "toy-warehouse" not in catalogue.names()


def test_a_new_dataset_is_one_entry_and_one_reader(toy_dataset, tmp_path):
    assert "toy-warehouse" in known_datasets() and catalogue.names()[-1] == "toy-warehouse"
    # opening: no root needed, the reader's scenes prepared into the cache with their splits
    store, names = open_dataset("toy-warehouse", None, tmp_path / "cache")
    assert names == ["bay1-a", "bay1-b", "bay2-a", "bay3-a"]
    assert store.root == store_dir(tmp_path / "cache", "toy-warehouse", None)
    assert get_reader("toy_warehouse", points=40).points == 40
    # splits and scene groups
    assert scenes_in_split("toy-warehouse", names, "val") == ["bay3-a"]
    assert scenes_of(names, ["bay1"], "toy-warehouse") == ["bay1-a", "bay1-b"]
    assert group_of("bay2-a") == "bay2" and room_of("bay1-b") == "bay1"
    # protocols name its vocabulary; fine-tuning and scoring take it from the catalogue
    rules = EvalRules(classes="toy-classes", min_region_size=10)
    assert class_vocabulary(rules) == ((7, 9), ("crate", "barrel"))
    assert eval_spec(rules).class_names == ("crate", "barrel")
    agnostic = dataset_spec("toy-warehouse", class_agnostic=True, min_region_size=10)
    assert agnostic.class_ids == (7,) and agnostic.labels == ("object",)
    scene = store.load("bay1-a")
    perfect = predictions_from_labels(scene.instance)
    assert evaluate([scene], {"bay1-a": perfect}, agnostic).ap == 1.0
