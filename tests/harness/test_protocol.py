"""Protocols: TOML specs, deterministic selection, split files and their hashes."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest

from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.harness.protocol import (
    PROTOCOLS_DIR,
    available_protocols,
    freeze_split,
    frozen_split_path,
    frozen_splits_dir,
    group_of,
    keep_count,
    load_protocol,
    load_split,
    rank_key,
    read_room_list,
    select_masks,
    select_scenes,
    split_document,
    split_path,
    split_state,
    write_split,
)

SHIPPED = ["s3dis-10pct-masks", "s3dis-20pct-masks", "s3dis-10pct-scenes", "s3dis-20pct-scenes", "s3dis-full",
           "scannet-dev-10pct-masks", "scannet-dev-20pct-masks", "scannet-dev-full-masks",
           "s3dis-linear", "s3dis-10pct-scenes-semseg", "s3dis-20pct-scenes-semseg", "s3dis-10pct-masks-frozen"]
# the ladder's rungs that train on another protocol's split: rung → (task, the protocol whose split it shares)
SHARED = {"s3dis-10pct-scenes-semseg": ("semseg", "s3dis-10pct-scenes"),
          "s3dis-20pct-scenes-semseg": ("semseg", "s3dis-20pct-scenes"),
          "s3dis-10pct-masks-frozen": ("insseg-frozen", "s3dis-10pct-masks"),
          "synthetic-s3dis-50pct-scenes-semseg": ("semseg", "synthetic-s3dis-50pct-scenes"),
          "synthetic-s3dis-20pct-masks-frozen": ("insseg-frozen", "synthetic-s3dis-20pct-masks")}


def test_shipped_protocols_load_and_are_listed():
    names = available_protocols()
    for name in SHIPPED:
        assert name in names
        spec = load_protocol(name)
        assert spec.name == name
        for f in range(spec.num_folds):
            train, held = spec.fold_groups(f)
            assert not set(train) & set(held)
    assert load_protocol("s3dis-10pct-masks").fold_groups(0)[1] == ["Area_5"]


def test_s3dis_room_list_is_the_release():
    rooms = read_room_list(PROTOCOLS_DIR / "splits" / "s3dis-rooms.txt")
    assert len(rooms) == len(set(rooms)) == 272
    per_area = {a: sum(r.startswith(f"Area_{a}/") for r in rooms) for a in range(1, 7)}
    assert per_area == {1: 44, 2: 40, 3: 23, 4: 49, 5: 68, 6: 48}


def test_committed_scene_splits_verify_never_touch_area_5_and_nest():
    docs = {}
    for f in (10, 20):
        spec = load_protocol(f"s3dis-{f}pct-scenes")
        doc, sha = load_split(spec)
        assert sha == spec.split_sha256
        assert doc["candidates"] == 204  # rooms of Areas 1-4 and 6
        assert not any(group_of(s) == "Area_5" for s in doc["train_scenes"])
        docs[f] = set(doc["train_scenes"])
    assert len(docs[10]) == 20 and len(docs[20]) == 41
    assert docs[10] <= docs[20]  # one ranking: the 10% rooms are the first of the 20%


def test_scene_selection_is_independent_of_order_and_depends_on_seed():
    rooms = [f"Area_{a}/office_{i}" for a in (1, 2) for i in range(1, 30)]
    a = select_scenes(rooms, 0.2, seed=0)
    shuffled = rooms[:]
    random.Random(3).shuffle(shuffled)
    assert select_scenes(shuffled, 0.2, seed=0) == a
    assert select_scenes(rooms, 0.2, seed=1) != a
    assert len(a) == keep_count(0.2, len(rooms)) == 12


def test_rank_key_is_a_fixed_function_of_names():
    # pinned: a change of the hash (machine, library, code) would silently change every lab's selection
    assert rank_key(0, "Area_1/office_1", "chair_1") == \
        "dd39881927ef085ee31f0d3120b543679cd97a8e2756736ac0c05e6dbc737cd9"
    import hashlib

    assert rank_key(7, "r", "i") == hashlib.sha256(b"7\x00r\x00i").hexdigest()


def test_mask_selection_stratified_deterministic_and_seeded():
    table = {f"s{j}": [(f"chair_{i}", "chair") for i in range(10)] + [("board_1", "board")] for j in range(3)}
    kept = select_masks(table, 0.1, seed=0)
    chairs = [i for v in kept.values() for i in v if i.startswith("chair")]
    boards = [i for v in kept.values() for i in v if i.startswith("board")]
    assert len(chairs) == 3 and len(boards) == 1  # 10% of 30 chairs; the rare class keeps one
    reordered = {k: list(reversed(v)) for k, v in reversed(list(table.items()))}
    assert select_masks(reordered, 0.1, seed=0) == kept
    assert select_masks(table, 0.1, seed=5) != kept


def _copy_protocols(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / "protocols"
    (dst / "splits").mkdir(parents=True)
    (dst / f"{name}.toml").write_text((PROTOCOLS_DIR / f"{name}.toml").read_text())
    for f in (PROTOCOLS_DIR / "splits").glob("s3dis-*"):
        (dst / "splits" / f.name).write_bytes(f.read_bytes())
    return dst


def test_split_state_and_where_frozen_splits_live(tmp_path):
    assert frozen_splits_dir() == Path("results/splits") and frozen_splits_dir("store") == Path("store/splits")
    assert frozen_splits_dir("store", tmp_path / "mine") == tmp_path / "mine"
    assert split_state(load_protocol("s3dis-full")) == "-"
    assert split_state(load_protocol("s3dis-10pct-scenes"), splits_dir=tmp_path) == "pinned"
    protocols = tmp_path / "protocols"  # an unpinned masks protocol with no split shipped beside it
    protocols.mkdir()
    (protocols / "s3dis-10pct-masks.toml").write_text((PROTOCOLS_DIR / "s3dis-10pct-masks.toml").read_text())
    masks, splits = load_protocol("s3dis-10pct-masks", protocols), tmp_path / "splits"
    assert split_state(masks, protocols, splits) == "not frozen"
    splits.mkdir()
    frozen_split_path(masks, splits).write_text("{}")
    assert split_state(masks, protocols, splits) == "frozen"


def test_edited_split_file_is_refused(tmp_path):
    folder = _copy_protocols(tmp_path, "s3dis-10pct-scenes")
    spec = load_protocol("s3dis-10pct-scenes", folder)
    path = folder / "splits" / "s3dis-10pct-scenes.json"
    path.write_text(path.read_text().replace("office_11", "office_12"))
    with pytest.raises(ConfigError, match="does not match the pinned"):
        load_split(spec, folder)


def test_unknown_protocol_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known protocols: .*s3dis-10pct-masks"):
        load_protocol("s3dis-15pct-masks")


def test_invalid_protocol_is_one_line(tmp_path):
    (tmp_path / "bad.toml").write_text('dataset = "s3dis"\nunit = "halves"\ntrain_groups=["a"]\neval_groups=["b"]\n')
    with pytest.raises(ConfigError, match=r"bad.toml: invalid protocol \(unit"):
        load_protocol("bad", tmp_path)
    (tmp_path / "overlap.toml").write_text('dataset = "s3dis"\nunit = "full"\ntrain_groups=["a"]\neval_groups=["a"]\n')
    with pytest.raises(ConfigError, match="in both"):
        load_protocol("overlap", tmp_path)


def test_task_defaults_to_insseg_and_unknown_or_unservable_tasks_are_one_line(tmp_path):
    base = 'dataset = "{}"\nunit = "full"\ntrain_groups=["a"]\neval_groups=["b"]\n'
    (tmp_path / "plain.toml").write_text(base.format("s3dis"))
    plain = load_protocol("plain", tmp_path)
    assert plain.task == "insseg" and not plain.semantic and not plain.frozen_backbone
    (tmp_path / "probe.toml").write_text(base.format("s3dis") + 'task = "linear"\n')
    probe = load_protocol("probe", tmp_path)
    assert probe.semantic and probe.frozen_backbone
    assert probe.content_hash() != plain.content_hash()  # the task is in the hash when it is not the default
    (tmp_path / "bad.toml").write_text(base.format("s3dis") + 'task = "segment"\n')
    with pytest.raises(ConfigError, match=r"unknown task 'segment'; choose one of linear, insseg-frozen, semseg, "
                                          r"insseg \(got") as err:
        load_protocol("bad", tmp_path)
    assert "\n" not in str(err.value)
    (tmp_path / "unlabelled.toml").write_text(base.format("ply") + 'task = "semseg"\n')
    with pytest.raises(ConfigError, match="task 'semseg' needs semantic labels, and dataset 'ply' has no class") \
            as err:
        load_protocol("unlabelled", tmp_path)
    assert "\n" not in str(err.value)
    (tmp_path / "frozen.toml").write_text(base.format("ply") + 'task = "insseg-frozen"\n')
    assert load_protocol("frozen", tmp_path).frozen_backbone


def test_the_ladder_rungs_train_on_the_split_of_their_protocol(tmp_path):
    for name, (task, owner) in SHARED.items():
        rung, base = load_protocol(name), load_protocol(owner)
        assert (rung.task, rung.split_owner) == (task, owner) and base.split_owner == owner
        assert (rung.unit, rung.fraction, rung.selection_seed, rung.all_train_groups, rung.eval_groups) == \
            (base.unit, base.fraction, base.selection_seed, base.all_train_groups, base.eval_groups)
        assert split_path(rung, splits_dir=tmp_path) == split_path(base, splits_dir=tmp_path)
    # a pinned scenes split: read as its owner's, and realised from the room list to the same bytes
    rung = load_protocol("s3dis-10pct-scenes-semseg")
    doc, sha = load_split(rung)
    assert doc["protocol"] == "s3dis-10pct-scenes" and sha == rung.split_sha256
    assert freeze_split(rung, splits_dir=tmp_path) == (PROTOCOLS_DIR / "splits/s3dis-10pct-scenes.json", sha)
    assert not list(tmp_path.iterdir())  # pinned: nothing written


class _Store:
    def __init__(self, scenes):
        self.scenes = {s.name: s for s in scenes}

    def load(self, name):
        return self.scenes[name]


def _room(name: str, classes: list[int], seed: int) -> Scene:
    rng = np.random.default_rng(seed)
    n = 20 * len(classes)
    sem = np.repeat(np.array(classes), 20)
    inst = np.repeat(np.arange(len(classes)), 20)
    names = [f"c{c}_{k}" for k, c in enumerate(classes)]
    return Scene(name=name, xyz=rng.random((n, 3), dtype=np.float32), rgb=rng.random((n, 3), dtype=np.float32),
                 semantic=sem, instance=inst, meta={"dataset": "s3dis", "instance_names": names})


MASKS_TOML = ('dataset = "s3dis"\nunit = "masks"\nfraction = 0.5\ntrain_groups = ["Area_1"]\neval_groups = ["Area_5"]\n'
              'split_file = "splits/p.json"\n')
CLASSES = {7: "table", 8: "chair", 9: "sofa"}


def _masks_protocol(tmp_path: Path):
    """Returns (protocols folder holding protocol p, its spec, a store of three rooms, their names)."""
    folder = tmp_path / "protocols"
    (folder / "splits").mkdir(parents=True)
    (folder / "p.toml").write_text(MASKS_TOML)
    scenes = [_room("Area_1/a", [7, 7, 8, 8], 0), _room("Area_1/b", [7, 8, 9], 1), _room("Area_5/c", [7], 2)]
    return folder, load_protocol("p", folder), _Store(scenes), [s.name for s in scenes]


def test_freeze_masks_from_data_writes_a_verifiable_split_into_the_user_folder(tmp_path, read_only, contents):
    folder, spec, store, names = _masks_protocol(tmp_path)
    splits = tmp_path / "results" / "splits"
    with read_only(folder) as before:  # the protocols folder ships files; freezing never writes there
        path, sha = freeze_split(spec, names=names, store=store, class_names=CLASSES, protocols_dir=folder,
                                 splits_dir=splits)
    assert contents(folder) == before
    assert path == splits / "p.json" and (splits / "p.json.sha256").read_text().strip() == sha
    assert split_path(spec, folder, splits) == path
    doc, sha2 = load_split(spec, folder, splits)
    assert sha == sha2
    assert set(doc["masks"]) == {"Area_1/a", "Area_1/b"}  # Area 5 never a candidate
    kept = [i for v in doc["masks"].values() for i in v]
    assert len(kept) == 2 + 2 + 1  # 3 tables -> 2, 3 chairs -> 2, 1 sofa -> 1
    assert doc["per_class_candidates"] == {"chair": 3, "sofa": 1, "table": 3}
    # freezing again from the data in another order gives the same bytes
    _, sha3 = freeze_split(spec, names=names[::-1], store=store, class_names=CLASSES, protocols_dir=folder,
                           splits_dir=splits)
    assert sha3 == sha


def test_freezing_without_a_user_folder_is_refused(tmp_path, contents):
    folder, spec, store, names = _masks_protocol(tmp_path)
    with pytest.raises(ConfigError, match="never into the protocols folder"):
        freeze_split(spec, names=names, store=store, class_names=CLASSES, protocols_dir=folder)
    assert contents(folder) == {"p.toml": MASKS_TOML.encode()}


def test_a_pinned_split_is_read_from_the_shipped_folder_and_never_written(tmp_path, read_only, contents):
    folder = _copy_protocols(tmp_path, "s3dis-10pct-scenes")
    spec = load_protocol("s3dis-10pct-scenes", folder)
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "s3dis-10pct-scenes.json").write_text("{}")  # a user file of that name does not replace the pin
    assert split_path(spec, folder, splits) == folder / "splits" / "s3dis-10pct-scenes.json"
    assert load_split(spec, folder, splits)[1] == spec.split_sha256
    with read_only(folder) as before:
        path, sha = freeze_split(spec, protocols_dir=folder, splits_dir=splits)  # from the committed room list
    assert (path, sha) == (folder / "splits" / "s3dis-10pct-scenes.json", spec.split_sha256)
    assert contents(folder) == before and contents(splits) == {"s3dis-10pct-scenes.json": b"{}"}


def test_a_split_an_older_version_froze_into_the_protocols_folder_is_still_read(tmp_path, caplog):
    folder, spec, store, names = _masks_protocol(tmp_path)
    splits = tmp_path / "results" / "splits"
    old = folder / "splits" / "p.json"
    old_sha = write_split(old, split_document(spec, {"candidates": 1, "masks": {"Area_1/a": ["c7_0"]}}))
    with caplog.at_level(logging.WARNING, "freepoint_bench.harness.protocol"):
        doc, sha = load_split(spec, folder, splits)
    assert sha == old_sha and doc["masks"] == {"Area_1/a": ["c7_0"]}  # finished results keep matching
    assert f"new splits are frozen into {splits / 'p.json'}" in caplog.text and str(old) in caplog.text
    # once a split is frozen into the user folder, that one is read
    path, new_sha = freeze_split(spec, names=names, store=store, class_names=CLASSES, protocols_dir=folder,
                                 splits_dir=splits)
    assert new_sha != old_sha and load_split(spec, folder, splits)[1] == new_sha
    assert old.is_file()  # the old file is left where it is


def test_a_scenes_selection_that_leaves_a_fold_no_training_scene_is_refused_when_frozen():
    """The dev 20%-scenes rung at selection seed 0 keeps scene0000_00, scene0000_01 and scene0002_00, all in fold
    1's training rooms: fold 0 would train on nothing (found only at run time before)."""
    from freepoint_bench.harness.protocol import PROTOCOLS_DIR, scenes_split

    spec = load_protocol("scannet-dev-20pct-scenes-linear")
    names = (PROTOCOLS_DIR / "splits" / "scannet-dev-scans.txt").read_text().split()
    assert scenes_split(spec, names)["train_scenes"] == ["scene0001_00", "scene0003_01", "scene0003_02"]
    with pytest.raises(DataError, match="selection seed 0 keeps 3 of 13 scenes, none of fold 0's training groups"):
        scenes_split(spec.model_copy(update={"selection_seed": 0}), names)
