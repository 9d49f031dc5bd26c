"""benchmarks/bench_evaluator.py: its re-implementation of ScanNet's script agrees with the package on its case."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from freepoint_bench.evaluation import evaluate_submission, scannet_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_evaluator as official  # noqa: E402


def test_script_reimplementation_and_evaluate_submission_agree_on_the_generated_case(tmp_path, capsys):
    npy, gt_dir, sub = official.write_case(tmp_path, scans=2, masks=10, points=12000, seed=1)
    result = tmp_path / "result.txt"
    official.official_main(["--pred_path", str(sub), "--gt_path", str(gt_dir), "--output_file", str(result)])
    assert "scans processed: 2" in capsys.readouterr().out
    labels = {}
    for gt_file in sorted(gt_dir.glob("*.txt")):
        ids = official.official_load_ids(str(gt_file))  # label * 1000 + instance, 0 = unannotated
        sem = np.load(npy / f"{gt_file.stem}_sem_label.npy")
        assert np.array_equal(np.where(ids > 0, ids // 1000, 0), np.where(ids > 0, sem, 0))
        labels[gt_file.stem] = (np.where(ids > 0, ids // 1000, -1), np.where(ids > 0, ids % 1000, -1))
    ours = evaluate_submission(sub, sorted(labels), labels.__getitem__, scannet_spec())
    theirs = official.official_scores(result)
    assert 0 < ours.ap < ours.ap25 < 1  # a case with something to get right
    np.testing.assert_allclose((ours.ap, ours.ap50, ours.ap25), theirs, rtol=0, atol=1e-12)
