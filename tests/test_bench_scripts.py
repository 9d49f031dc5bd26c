"""The benchmark tools' bookkeeping: seeds, reuse of predictions, digests, the throughput file, the dev scans' folds
from protocols/, the shared table printer."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from freepoint_bench.models.checkpoint import save_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_pretrain_quality as pq  # noqa: E402
import bench_reproducibility as rep  # noqa: E402


def test_parse_seeds_takes_distinct_non_negative_integers():
    assert pq.parse_seeds("0,1, 2") == [0, 1, 2]
    for bad in ("0,x", "0,0", "-1", ""):
        with pytest.raises(SystemExit, match="--seeds"):
            pq.parse_seeds(bad)


def test_seed_folders_keep_seed_zero_in_place(tmp_path):
    assert pq.seed_dir(tmp_path / "pq", 0) == tmp_path / "pq"
    assert pq.seed_dir(tmp_path / "pq", 2) == tmp_path / "pq-seed2"
    assert pq.run_dir("b", pq.seed_dir(tmp_path / "pq", 2)) == tmp_path / "pq-seed2-b"


def test_predictions_are_reused_only_when_complete_and_newer_than_the_checkpoint(tmp_path):
    ckpt, pred = tmp_path / "segmenter.ckpt", tmp_path / "pred"
    pred.mkdir()
    assert not pq.predicted(pred, ckpt, ["s1"])  # no checkpoint
    ckpt.write_bytes(b"x")
    os.utime(ckpt, (1000, 1000))
    (pred / "s1.txt").write_text("")
    assert not pq.predicted(pred, ckpt, ["s1", "s2"])  # s2 missing
    (pred / "s2.txt").write_text("")
    assert pq.predicted(pred, ckpt, ["s1", "s2"])
    os.utime(ckpt, None)  # retrained after the predictions
    os.utime(pred / "s1.txt", (1000, 1000))
    assert not pq.predicted(pred, ckpt, ["s1", "s2"])


def test_weights_digest_sees_one_ulp(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    save_checkpoint(tmp_path / "one.ckpt", model, {"method": "m"})
    save_checkpoint(tmp_path / "two.ckpt", model, {"method": "other"})
    assert rep.weights_digest(tmp_path / "one.ckpt") == rep.weights_digest(tmp_path / "two.ckpt")  # weights only
    with torch.no_grad():
        w = model[0].weight
        w[1, 2] = torch.nextafter(w[1, 2], w[1, 2] + 1)
    save_checkpoint(tmp_path / "three.ckpt", model, {"method": "m"})
    assert rep.weights_digest(tmp_path / "three.ckpt") != rep.weights_digest(tmp_path / "one.ckpt")
    model[1].num_batches_tracked += 1  # an integer buffer counts too
    save_checkpoint(tmp_path / "four.ckpt", model, {"method": "m"})
    assert rep.weights_digest(tmp_path / "four.ckpt") != rep.weights_digest(tmp_path / "three.ckpt")


def test_throughput_rows_are_what_run_plan_reads(tmp_path):
    """bench_throughput's document loads in harness.plan and answers its lookups (fine-tuning rows stand for every
    method)."""
    import json

    import bench_throughput as tp

    from freepoint_bench.harness.plan import gpu_hours, load_throughput

    def row(method, step_s):
        return {
            "stage": "finetune" if method == "finetune" else "pretrain",
            "method": None if method == "finetune" else method,
            "preset": "paper",
            "precision": "16-mixed",
            "device": "gpu",
            "batch": 4,
            "step_s": step_s,
            "samples_per_s": 4 / step_s,
            "peak_mem_gb": 1.0,
            "steps": 3,
        }

    path = tmp_path / "throughput.json"
    path.write_text(json.dumps(tp.document([row("freepoint", 0.5), row("finetune", 0.25)], tmp_path)))
    table = load_throughput(path)
    assert table.step_s("pretrain", "freepoint", "paper", "16-mixed") == 0.5
    assert table.step_s("finetune", "csc", "paper", "16-mixed") == 0.25
    assert table.step_s("pretrain", "csc", "paper", "16-mixed") is None
    assert gpu_hours(7200, table.step_s("finetune", "scratch", "paper", "16-mixed")) == 0.5
    # a row of a probe task answers that task only; rows without one are insseg's
    linear = {**row("finetune", 0.1), "task": "linear"}
    path.write_text(json.dumps(tp.document([row("finetune", 0.25), linear], tmp_path)))
    table = load_throughput(path)
    assert table.step_s("finetune", "csc", "paper", "16-mixed", "linear") == 0.1
    assert table.step_s("finetune", "csc", "paper", "16-mixed", "insseg") == 0.25
    assert table.step_s("finetune", "csc", "paper", "16-mixed", "semseg") is None


def test_device_confirm_script_runs_its_parity_check_on_cpu():
    """benchmarks/device/confirm.py, the device call's checks, runs as a dry run here (native kernels on CPU)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "device"))
    import confirm

    assert confirm.main(["--checks", "parity"]) == 0


def test_dev_scan_folds_are_the_protocols(tmp_path):
    """The dev-scan tools' two folds of rooms are read from protocols/ (scannet-dev-full-masks), not written again:
    fold a trains on the protocol's first group list and scores its second; another protocol file, other folds."""
    import devscans

    names = [f"scene000{r}_0{k}" for r in range(6) for k in range(2)]
    folds = devscans.room_folds(names)
    assert folds["a"].train_rooms == ["scene0000", "scene0001", "scene0002"]
    assert folds["a"].held_out == folds["b"].train == [n for n in names if n[5:9] in ("0003", "0004", "0005")]
    assert sorted(folds["a"].train + folds["a"].held_out) == sorted(names)
    spec = (Path(__file__).resolve().parents[1] / "protocols" / "scannet-dev-full-masks.toml").read_text()
    moved = spec.replace(
        'folds = [["scene0000", "scene0001", "scene0002"], ["scene0003", "scene0004", "scene0005"]]',
        'folds = [["scene0000"], ["scene0001", "scene0002", "scene0003", "scene0004", "scene0005"]]',
    )
    assert moved != spec
    (tmp_path / "other.toml").write_text(moved)
    other = devscans.room_folds(names, str(tmp_path / "other.toml"))
    assert other["a"].train == ["scene0000_00", "scene0000_01"] and len(other["a"].held_out) == 10
    with pytest.raises(SystemExit, match="no scans of rooms"):
        devscans.room_folds(["scene0000_00"])


def test_table_lines_up_columns_and_refuses_a_short_row():
    from table import format_table

    assert format_table(["scan", "s"], [["a", "0.51"], ["longer", 2]]).splitlines() == [
        "scan    s   ",
        "------  ----",
        "a       0.51",
        "longer  2   ",
    ]
    with pytest.raises(ValueError, match="1 cells for 2 columns"):
        format_table(["scan", "s"], [["a"]])


DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "scannet-dev"


def one_dev_scan(tmp_path: Path) -> Path:
    """A copy of the first dev scan (VoteNet npy layout) in a folder of its own; skips without ../shared."""
    if not DEV.is_dir():
        pytest.skip(f"the ScanNet dev scans are not at {DEV}")
    folder = tmp_path / "scannet-dev"
    folder.mkdir()
    for f in DEV.iterdir():
        if f.name.startswith("scene0000_00_") or not f.name.startswith("scene"):
            (folder / f.name).write_bytes(f.read_bytes())
    return folder


QUICK = {  # each kept tool that runs in seconds at these sizes: its arguments and a line its table must print
    "bench_synthetic": (["--sizes", "2000", "--seeds", "1"], "object share"),
    "bench_evaluator": (["--scenes", "2", "--preds", "5", "--points", "20000"], "evaluate (class-agnostic)"),
    "bench_models": (["--points", "4000", "--repeats", "1", "--backends", "spconv"], "fwd+bwd s"),
    "bench_host_syncs": (["--points", "3000", "--scenes", "1", "--queries", "8"], "syncs"),
    "bench_training": (
        ["--points", "3000", "--scenes", "2", "--steps", "1", "--warmup", "0", "--backends", "spconv"],
        "scenes/s",
    ),
}


@pytest.mark.parametrize("tool", sorted(QUICK))
def test_tool_prints_its_table_in_a_quick_mode(tool, tmp_path):
    import subprocess

    args, header = QUICK[tool]
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, str(root / "benchmarks" / f"{tool}.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert header in done.stdout


def test_pseudolabel_tool_scores_its_quality_table(tmp_path, capsys):
    """bench_pseudolabels' three tables on one dev scan (at a3b384f its quality table died in evaluate())."""
    import bench_pseudolabels as pl

    data = one_dev_scan(tmp_path)
    argv = sys.argv
    sys.argv = [
        "bench_pseudolabels.py",
        "--data",
        str(data),
        "--fullres",
        str(tmp_path / "none"),
        "--repeats",
        "1",
        "--methods",
        "dbscan",
    ]
    try:
        pl.main()
    finally:
        sys.argv = argv
    out = capsys.readouterr().out
    assert "Per-stage seconds" in out and "Multicut backends" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("FreePoint σ_low", "dbscan"))]
    assert len(rows) == 2
    ap50 = float(rows[0][4])  # "FreePoint σ_low (0.9) AP AP50 ..."
    assert 0.0 <= ap50 <= 100.0


def test_throughput_skips_without_the_default_scans_and_refuses_a_missing_folder(tmp_path, monkeypatch, capsys):
    """make bench on a machine without ../shared: a line saying so, exit status 0; an explicit --data must exist."""
    import bench_throughput as tp

    monkeypatch.setattr(tp, "DATA", tmp_path / "absent")
    tp.main([])
    assert "skipped: the ScanNet dev scans are not at" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no ScanNet npy scans there"):
        tp.main(["--data", str(tmp_path / "absent")])
