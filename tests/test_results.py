"""The result record reads what the harness wrote before it existed and writes the same bytes back; its refusals."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from freepoint_bench.atomic import with_checksum, write_json
from freepoint_bench.errors import DataError
from freepoint_bench.results import (
    ResultRecord,
    cell_of,
    compare_document,
    compare_rows,
    read_result,
    result_path,
    write_compare,
    write_result,
)

# result.json files `make demo` wrote at commit f5fcfa2, before this module: the harness built a dict and wrote it
# with write_json(path, with_checksum(doc)). A masks cell (mask counts) and a scenes cell (null mask counts).
FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("result-*-f5fcfa2.json"))


def test_fixtures_are_there():
    assert len(FIXTURES) == 2


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_a_result_written_before_reads_identically_and_writes_the_same_bytes(fixture, tmp_path):
    raw = json.loads(fixture.read_text())
    record = read_result(fixture)
    assert record.to_json() == {k: v for k, v in raw.items() if k != "content_sha256"}
    assert record.path == fixture and record.checkpoint_id == raw["checkpoint"]["id"]
    assert record.scores == {m: float(raw["metrics"][m]) for m in ("ap", "ap50", "ap25")}
    again = write_result(tmp_path / "result.json", record)
    assert again.read_bytes() == fixture.read_bytes()
    assert read_result(again) == record


def _todays_multi_fold_doc() -> dict:
    """A two-fold result as run_cell built it at f5fcfa2 (numpy scalars and a tuple included, as it could hold)."""
    ckpt = {"path": "c/x.ckpt", "sha256": "2" * 64, "weights_sha256": "3" * 64, "id": "csc-s3dis-x", "method": "csc"}
    return {
        "schema_version": 1, "protocol": "s3dis-6fold", "protocol_hash": "0" * 64, "dataset": "s3dis",
        "unit": "full", "fraction": 1.0, "split_sha256": "1" * 64, "method": "csc", "seed": 2,
        "checkpoint": {**ckpt, "per_fold": [ckpt, {**ckpt, "id": "csc-s3dis-y"}]}, "preset": "cpu-small",
        "config": {"epochs": 3, "lr": 1e-3},
        "metrics": {"ap": np.float64(0.25), "ap50": 0.5, "ap25": 0.75,
                    "per_class": {"chair": {"ap": None, "ap50": 0.0, "ap25": 1}}},
        "folds": [{"fold": f, "eval_scenes": [f"Area_{f + 1}_office_1"], "num_train_masks": None,
                   "metrics": {"ap": 0.1, "ap50": 0.2, "ap25": 0.3, "per_class": {}}, "train_seconds": 1.5,
                   "epochs": 3, "losses": [2.0, np.float32(1.5)]} for f in range(2)],
        "eval_scenes": ("Area_1_office_1", "Area_2_office_1"), "num_train_scenes": 10, "num_train_masks": None,
        "num_masks_total": None,
        "throughput": {"train_scene_epochs": 30, "train_seconds": 3.0, "scenes_per_second": 10.0,
                       "peak_rss_mib": 512.5},
        "code_version": {"git_commit": "f" * 40, "git_dirty": False, "version": "0.1.0"},
        "environment": {"python": "3.11.7"}, "wall_time_s": 4.25, "finished": "2026-12-06T13:47:23+00:00",
    }


def test_the_harness_record_of_a_multi_fold_cell_writes_the_bytes_it_wrote_before(tmp_path):
    before = write_json(tmp_path / "before.json", with_checksum(_todays_multi_fold_doc()))
    doc = _todays_multi_fold_doc()
    doc.pop("schema_version")
    record = ResultRecord(**doc)  # what run_cell now builds from the same values
    after = write_result(tmp_path / "after.json", record)
    assert after.read_bytes() == before.read_bytes()
    read = read_result(before)
    assert write_result(tmp_path / "again.json", read).read_bytes() == before.read_bytes()
    assert read.class_scores["chair"]["ap25"] == 1.0 and math.isnan(read.class_scores["chair"]["ap"])
    assert read.checkpoint_id == "csc-s3dis-x"


def test_a_hand_made_result_without_the_optional_fields_reads_with_defaults(tmp_path):
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"schema_version": 1, "protocol": "p", "protocol_hash": "a", "split_sha256": "b",
                                "method": "m", "seed": 0, "metrics": {"ap": 0.1, "ap50": None, "ap25": 0.3}}))
    record = read_result(path)
    assert (record.dataset, record.unit, record.fraction, record.preset, record.eval_scenes) == ("", "", 1.0, "", ())
    assert record.checkpoint_id == "" and record.class_scores == {} and math.isnan(record.scores["ap50"])


def test_a_semantic_result_records_its_task_and_an_insseg_one_writes_none(tmp_path):
    metrics = {"miou": 0.5, "macc": None, "all_acc": 0.75, "per_class": {"chair": {"iou": 0.5, "acc": None}}}
    semantic = ResultRecord(protocol="p", protocol_hash="a", split_sha256="b", method="m", seed=0, metrics=metrics,
                            task="linear")
    path = write_result(tmp_path / "semantic" / "result.json", semantic)
    assert json.loads(path.read_text())["task"] == "linear"
    back = read_result(path)
    assert back.task == "linear" and back.scores["miou"] == 0.5 and math.isnan(back.scores["macc"])
    assert back.class_scores["chair"]["iou"] == 0.5 and math.isnan(back.class_scores["chair"]["acc"])
    insseg = ResultRecord(protocol="p", protocol_hash="a", split_sha256="b", method="m", seed=0,
                          metrics={"ap": 0.1, "ap50": 0.2, "ap25": 0.3})
    assert "task" not in json.loads(write_result(tmp_path / "insseg" / "result.json", insseg).read_text())
    assert read_result(tmp_path / "insseg" / "result.json").task == "insseg"


def _doc(**change) -> dict:
    doc = json.loads((FIXTURES[0]).read_text())
    doc.pop("content_sha256")
    for k, v in change.items():
        if v is ...:
            doc.pop(k)
        else:
            doc[k] = v
    return doc


# every refusal of the harness's and of the report's former read_result, and the type checks of the record
REFUSALS = {
    "not json": ("{not json", "corrupt result.json (Expecting property name"),
    "not an object": ("[1, 2]", "corrupt result.json (not a JSON object)"),
    "checksum": (None, "damaged result.json"),
    "no schema_version": (_doc(schema_version=...), "not a freepoint-bench result"),
    "other schema": (_doc(schema_version=2), "schema_version 2, this freepoint-bench reads 1"),
    "no metrics": (_doc(metrics=...), "lacks metrics"),
    "no protocol_hash": (_doc(protocol_hash=..., split_sha256=...), "lacks protocol_hash, split_sha256"),
    "seed not an int": (_doc(seed="0"), "seed is '0', not an integer"),
    "seed a bool": (_doc(seed=True), "seed is True, not an integer"),
    "metric not a number": (_doc(metrics={"ap": "high", "ap50": 0, "ap25": 0}), "metrics.ap is 'high'"),
    "metric missing": (_doc(metrics={"ap": 0.1}), "metrics lacks ap50, ap25"),
    "metrics not an object": (_doc(metrics=[0.1]), "metrics is not an object"),
    "per_class not an object": (_doc(metrics={"ap": 0, "ap50": 0, "ap25": 0, "per_class": [1]}),
                                "metrics.per_class is not an object"),
    "class metric": (_doc(metrics={"ap": 0, "ap50": 0, "ap25": 0, "per_class": {"chair": {"ap": 0}}}),
                     "metrics.per_class.chair lacks ap50, ap25"),
    "fraction": (_doc(fraction="half"), "fraction is 'half', not a number"),
    "method": (_doc(method=3), "method is 3, not a string"),
    "folds": (_doc(folds={}), "folds is not a JSON list"),
    "task not a string": (_doc(task=1), "task is 1, not a string"),
    "semantic metric missing": (_doc(task="linear", metrics={"miou": 0.5, "ap": 0.1}), "metrics lacks macc, all_acc"),
    "semantic class metric": (_doc(task="semseg", metrics={"miou": 0.5, "macc": 0.5, "all_acc": 0.9,
                                                           "per_class": {"chair": {"iou": 0.5}}}),
                              "metrics.per_class.chair lacks acc"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=str)
def test_a_damaged_or_foreign_result_is_refused_in_one_line_naming_the_file_and_the_fix(case, tmp_path):
    content, expected = REFUSALS[case]
    path = tmp_path / "seed-0" / "result.json"
    path.parent.mkdir()
    if content is None:  # a flipped digit that still parses
        shutil.copy(FIXTURES[0], path)
        path.write_text(path.read_text().replace('"seed": 0', '"seed": 1'))
    elif isinstance(content, dict):
        write_json(path, with_checksum(content))
    else:
        path.write_text(content)
    with pytest.raises(DataError) as e:
        read_result(path)
    text = str(e.value)
    assert "\n" not in text and text.startswith(str(path)) and expected in text, text
    assert "rerun the cell" in text or "update freepoint-bench" in text


def test_the_store_layout_round_trips(tmp_path):
    path = result_path(tmp_path, "s3dis-10pct-masks", "csc", 3)
    assert path == tmp_path / "s3dis-10pct-masks" / "csc" / "seed-3" / "result.json"
    assert cell_of(path.parent) == ("s3dis-10pct-masks", "csc", 3)
    assert cell_of(tmp_path / "p" / "m" / "seed-x") is None and cell_of(tmp_path / "p" / "m" / "work") is None


def test_the_compare_document_is_what_the_cli_wrote_and_its_rows_read_back(tmp_path):
    rows = [{"method": "FreePoint σ=0.9", "ap": 0.05, "ap50": math.nan, "ap25": 0.25, "seconds": 1.0}]
    path = write_compare(tmp_path / "compare.json", rows, "scannet", 3)
    # the document cli.py built at f5fcfa2
    want = {"dataset": "scannet", "num_scenes": 3, "class_agnostic": True,
            "rows": [{"method": "FreePoint σ=0.9", "ap": 0.05, "ap50": None, "ap25": 0.25, "seconds": 1.0}]}
    assert path.read_bytes() == write_json(tmp_path / "before.json", want).read_bytes()
    assert compare_document(rows, "scannet", 3) == want
    assert compare_rows(json.loads(path.read_text())) == [{**want["rows"][0], "num_scenes": 3, "dataset": "scannet"}]
    assert compare_rows({"ap": 0.1}) is None


# ---------------------------------------------------------------------------------------------- recipe and pretraining


def test_a_result_written_before_has_a_recipe_and_reads_its_pretraining_dataset_from_the_checkpoint_id():
    masks, scenes = (read_result(f) for f in FIXTURES)
    assert masks.checkpoint_id == "freepoint-s3dis-ef649b291e" and masks.pretrain_dataset == "s3dis"
    assert masks.recipe["epochs"] == 3 and masks.recipe["train.lr"] == 0.003 and "train.seed" not in masks.recipe
    assert len(masks.recipe_hash) == 16 and masks.recipe_hash == scenes.recipe_hash  # one recipe, two protocols
    assert masks.to_json()["checkpoint"] == json.loads(FIXTURES[0].read_text())["checkpoint"]  # nothing written


ENGINE = {"path": "c.ckpt", "sha256": "2" * 64, "weights_sha256": "3" * 64, "method": "csc"}


@pytest.mark.parametrize(
    ("checkpoint", "expected"),
    [
        (None, ""),  # a hand-made file: random initialisation
        ({"path": None, "sha256": None, "weights_sha256": None, "id": None, "method": "scratch"}, ""),
        ({**ENGINE, "id": "csc-scannet-0123456789", "pretrain_dataset": "scannet"}, "scannet"),  # since issue 29
        ({**ENGINE, "id": "csc-s3dis-0123456789", "pretrain_dataset": "scannet"}, "scannet"),  # the record wins
        ({**ENGINE, "id": "csc-synthetic-s3dis-abcdef0123"}, "synthetic-s3dis"),  # a dataset with a hyphen
        ({**ENGINE, "id": "csc-s3dis-x"}, "unknown"),  # not an engine id: no guess
        ({**ENGINE, "id": "pointcontrast-s3dis-0123456789"}, "unknown"),  # another method's id
        ({**ENGINE, "id": None}, "unknown"),
        ({**ENGINE, "id": "csc-s3dis-0123456789",
          "per_fold": [{**ENGINE, "id": "csc-s3dis-0123456789"}, {**ENGINE, "id": "csc-scannet-0123456789"}]},
         "s3dis+scannet"),
    ],
)
def test_the_pretraining_dataset_of_a_checkpoint_record(checkpoint, expected):
    record = ResultRecord(protocol="p", protocol_hash="a", split_sha256="b", method="csc", seed=0,
                          metrics={"ap": 0.1, "ap50": 0.2, "ap25": 0.3}, checkpoint=checkpoint)
    assert record.pretrain_dataset == expected


def test_the_harness_records_the_pretraining_dataset_from_the_checkpoint_metadata(tmp_path):
    import torch

    from freepoint_bench.harness.cells import _checkpoint_info
    from freepoint_bench.models.checkpoint import save_checkpoint

    meta = {"id": "csc-scannet-0123456789", "method": "csc", "data": {"dataset": "scannet", "num_scenes": 2}}
    path = save_checkpoint(tmp_path / "c.ckpt", torch.nn.Linear(2, 2), meta)
    info = _checkpoint_info(path, "csc")
    assert (info["id"], info["method"], info["pretrain_dataset"]) == ("csc-scannet-0123456789", "csc", "scannet")
    save_checkpoint(path, torch.nn.Linear(2, 2), {"id": "csc-x", "method": "csc"})  # metadata without data
    assert _checkpoint_info(path, "csc")["pretrain_dataset"] == "unknown"
    # scratch's random initialisation saw no scene; an import without a scene list did see some
    scratch = {"id": "scratch-s3dis-0123456789", "method": "scratch", "data": {"dataset": "s3dis", "scenes": []}}
    save_checkpoint(path, torch.nn.Linear(2, 2), scratch)
    assert _checkpoint_info(path, "scratch")["pretrain_dataset"] == ""
    imported = {"id": "csc-scannet-0123456789", "method": "csc",
                "data": {"dataset": "scannet", "scenes": [], "scenes_known": False}}
    save_checkpoint(path, torch.nn.Linear(2, 2), imported)
    assert _checkpoint_info(path, "csc")["pretrain_dataset"] == "scannet"
    assert "pretrain_dataset" not in _checkpoint_info(None, "scratch")  # scratch's record: as it was
