"""Cells of the probe ladder's tasks through `bench.py run` on synthetic rooms in S3DIS's raw layout: a linear-probe
cell writes mIoU / mAcc / allAcc on every evaluation point and records its task; a resumed cell reads its stored
semantic predictions back."""

from __future__ import annotations

import json
import shutil

import pytest

from freepoint_bench.data.synthetic import SyntheticConfig, write_synthetic_s3dis
from freepoint_bench.harness.protocol import PROTOCOLS_DIR, group_of, load_protocol
from freepoint_bench.results import read_result

FT = ["--set", "epochs=1", "--set", "batch_size=5", "--set", "max_points=null"]


@pytest.fixture(scope="module")
def s3dis_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3dis")
    write_synthetic_s3dis(root, 12, seed=1, config=SyntheticConfig(num_points=1500))
    return root


def _protocol(folder, name: str, base: str, task: str) -> None:
    text = (PROTOCOLS_DIR / f"{base}.toml").read_text().replace(f"splits/{base}.json", f"splits/{name}.json")
    (folder / f"{name}.toml").write_text(f'task = "{task}"\n' + text)


@pytest.mark.parametrize(("task", "base"), [("linear", "synthetic-s3dis-50pct-scenes"),
                                             ("semseg", "synthetic-s3dis-20pct-masks")])
def test_a_semantic_cell_runs_end_to_end_and_resumes(task, base, bench_cli, tmp_path, s3dis_root):
    protocols = tmp_path / "protocols"
    (protocols / "splits").mkdir(parents=True)
    name = f"probe-{task}"
    _protocol(protocols, name, base, task)
    results = tmp_path / "results"
    args = ["run", "--methods", "scratch", "--protocols", name, "--seeds", "0", "--root", s3dis_root,
            "--protocols-dir", protocols, "--results", results, "--checkpoints", tmp_path / "ckpt",
            "--runs", tmp_path / "runs", "--cache", tmp_path / "cache", *FT]
    code, out, err = bench_cli(*args)
    assert code == 0, err
    path = results / name / "scratch" / "seed-0" / "result.json"
    record = read_result(path)
    assert record.task == task and json.loads(path.read_text())["task"] == task
    assert record.protocol_hash == load_protocol(name, protocols).content_hash()
    assert set(record.metrics) == {"miou", "macc", "all_acc", "per_class"}
    assert len(record.metrics["per_class"]) == 13 and set(record.metrics["per_class"]["chair"]) == {"iou", "acc"}
    assert 0.0 <= record.scores["miou"] <= 1.0 and 0.0 < record.scores["all_acc"] <= 1.0
    assert all(group_of(s) == "Area_5" for s in record.eval_scenes)
    # a fold scored before is read back from its stored predictions, not trained again
    (path).unlink()
    shutil.rmtree(path.parent / "work" / "fold-0" / "lightning", ignore_errors=True)
    code, out, err = bench_cli(*args)
    assert code == 0, err
    again = read_result(path)
    assert again.metrics == record.metrics and again.folds[0]["train_seconds"] == record.folds[0]["train_seconds"]
