"""Cells of the probe ladder's shipped synthetic rungs through `bench.py run` on synthetic rooms in S3DIS's raw
layout: a semantic cell writes mIoU / mAcc / allAcc on every evaluation point and records its task, a resumed cell
reads its stored predictions back, and a rung trains on the split of the protocol it shares it with."""

from __future__ import annotations

import json
import shutil

import pytest

from freepoint_bench.data.synthetic import SyntheticConfig, write_synthetic_s3dis
from freepoint_bench.harness.protocol import PROTOCOLS_DIR, group_of, load_protocol
from freepoint_bench.results import read_result

FT = ["--set", "epochs=1", "--set", "batch_size=5", "--set", "max_points=null", "--set", "num_queries=12"]


@pytest.fixture(scope="module")
def s3dis_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3dis")
    write_synthetic_s3dis(root, 12, seed=1, config=SyntheticConfig(num_points=1500))
    return root


def _run(bench_cli, tmp_path, root, protocols: list[str]) -> tuple:
    """Runs scratch under `protocols` (copies of the shipped ones); returns (results folder, exit code, stderr)."""
    folder = tmp_path / "protocols"
    (folder / "splits").mkdir(parents=True, exist_ok=True)
    for name in protocols:
        shutil.copy(PROTOCOLS_DIR / f"{name}.toml", folder)
    results = tmp_path / "results"
    code, _, err = bench_cli("run", "--methods", "scratch", "--protocols", ",".join(protocols), "--seeds", "0",
                             "--root", root, "--protocols-dir", folder, "--results", results,
                             "--checkpoints", tmp_path / "ckpt", "--runs", tmp_path / "runs",
                             "--cache", tmp_path / "cache", *FT)
    return results, code, err


@pytest.mark.parametrize(("name", "task"), [("synthetic-s3dis-linear", "linear"),
                                             ("synthetic-s3dis-50pct-scenes-semseg", "semseg")])
def test_a_semantic_cell_runs_end_to_end_and_resumes(name, task, bench_cli, tmp_path, s3dis_root):
    results, code, err = _run(bench_cli, tmp_path, s3dis_root, [name])
    assert code == 0, err
    path = results / name / "scratch" / "seed-0" / "result.json"
    record = read_result(path)
    assert record.task == task and json.loads(path.read_text())["task"] == task
    assert record.protocol_hash == load_protocol(name).content_hash()
    assert set(record.metrics) == {"miou", "macc", "all_acc", "per_class"}
    assert len(record.metrics["per_class"]) == 13 and set(record.metrics["per_class"]["chair"]) == {"iou", "acc"}
    assert 0.0 <= record.scores["miou"] <= 1.0 and 0.0 < record.scores["all_acc"] <= 1.0
    assert all(group_of(s) == "Area_5" for s in record.eval_scenes)
    # a fold scored before is read back from its stored predictions, not trained again
    path.unlink()
    shutil.rmtree(path.parent / "work" / "fold-0" / "lightning", ignore_errors=True)
    _, code, err = _run(bench_cli, tmp_path, s3dis_root, [name])
    assert code == 0, err
    again = read_result(path)
    assert again.metrics == record.metrics and again.folds[0]["train_seconds"] == record.folds[0]["train_seconds"]


def test_the_frozen_rung_trains_on_the_masks_of_its_protocol(bench_cli, tmp_path, s3dis_root):
    base, rung = "synthetic-s3dis-20pct-masks", "synthetic-s3dis-20pct-masks-frozen"
    results, code, err = _run(bench_cli, tmp_path, s3dis_root, [base, rung])
    assert code == 0, err
    assert sorted(p.name for p in (results / "splits").iterdir()) == [f"{base}.json", f"{base}.json.sha256"]
    a, b = (read_result(results / p / "scratch" / "seed-0" / "result.json") for p in (base, rung))
    assert (a.task, b.task) == ("insseg", "insseg-frozen") and a.split_sha256 == b.split_sha256
    assert a.num_train_masks == b.num_train_masks and set(b.metrics) == {"ap", "ap50", "ap25", "per_class"}
    train = [json.loads((results / p / "scratch" / "seed-0" / "work" / "fold-0" / "fold.json").read_text())
             ["train_scenes"] for p in (base, rung)]
    assert train[0] == train[1]
