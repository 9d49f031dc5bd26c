"""A real two-process DDP pretraining on the CPU (gloo): the command a GPU cluster runs, on two tiny rooms.

Lightning's launcher starts the second rank by running the same command line again, so the run goes through
`bench.py` in a subprocess (under pytest it would start pytest again).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from freepoint_bench.data.synthetic import SyntheticConfig, write_synthetic_dataset
from freepoint_bench.models.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
FAST = ["train.voxel_size_m=0.15", "train.num_queries=8", "train.batch_size=1", "train.schedule=constant"]


def epoch_rows(run: Path, step: int) -> list[tuple[int, float]]:
    """Returns (global step, Lightning's own train/loss synced over ranks) of each epoch in the step's CSV log."""
    (path,) = (run / f"step{step}" / "logs").glob("version_*/metrics.csv")
    with path.open() as f:
        return [(int(r["step"]), float(r["train/loss_epoch"])) for r in csv.DictReader(f) if r.get("train/loss_epoch")]


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without torch.distributed")
def test_two_rank_ddp_pretraining_on_cpu(tmp_path):
    root = tmp_path / "synthetic"
    write_synthetic_dataset(root, num_scenes=2, seed=3, config=SyntheticConfig(num_points=6000))
    ckpts, run = tmp_path / "ckpt", tmp_path / "run"
    argv = [sys.executable, str(ROOT / "bench.py"), "pretrain", "--method", "freepoint", "--dataset", "synthetic",
            "--root", str(root), "--cache", str(tmp_path / "cache"), "--epochs1", "2", "--epochs2", "1",
            "--devices", "2", "--out", str(run), "--checkpoints", str(ckpts)]
    for field in FAST:
        argv += ["--set", field]
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # one report (rank 1 runs the same command and stays quiet), one set of files, one index entry
    assert done.stdout.count("pretrain freepoint on synthetic") == 1, done.stdout
    assert len(list(ckpts.glob("*-segmenter.ckpt"))) == 1 and len(list(ckpts.glob("*-backbone.ckpt"))) == 1
    assert len(json.loads((ckpts / "index.json").read_text())["checkpoints"]) == 1
    # each rank trained on its own scene (batch 1, 2 scenes, 2 ranks: one step per epoch), so global steps
    # per epoch are 1, and the recorded losses are the mean over both ranks: Lightning's synced epoch loss
    _, meta = load_checkpoint(next(ckpts.glob("*-segmenter.ckpt")))
    for step, epochs in ((1, 2), (2, 1)):
        rows = epoch_rows(run, step)
        assert len(rows) == epochs
        recorded = meta["metrics"][f"step{step}"]["loss_history"]
        assert recorded == pytest.approx([loss for _, loss in rows], rel=1e-5)
    # the step of step 1's epoch rows: 1 optimiser step per epoch, not 2 (no rank saw both scenes)
    assert [s for s, _ in epoch_rows(run, 1)] == [0, 1]
