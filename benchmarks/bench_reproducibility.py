"""Does a pretraining reproduce bit for bit here? Two identical short runs, their losses and a weights digest.

    .venv/bin/python benchmarks/bench_reproducibility.py [--data ../shared/data/scannet-dev] [--epochs1 3]
        [--epochs2 1] [--out runs/reproducibility]

Runs the same `bench.py pretrain --method freepoint` (cpu-small, scans scene0000_00 and scene0001_00 of the ScanNet
dev scans, `--overwrite`) twice into two folders and prints, for both runs, every epoch's training loss (Lightning's
`train/loss_epoch`), and the SHA-256 of the step-2 segmenter's weights (tensors in key order, raw bytes), then
whether the two runs agree bit for bit, and the environment (`engine.checkpoints.environment`): the packages, torch's
CPU SIMD level and thread count that decide the floating-point results.

Training on one machine in one environment is deterministic: the two runs must agree, and the script exits with
status 1 when they do not. Another environment (another CPU SIMD level, torch, numpy, thread count) gives other
bits, and since training amplifies them, another table (README, "Repeat runs"): compare the digest printed here with
the one recorded in the README to know whether a run folder's figures can be expected to reproduce on this machine.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devscans import bench, dev_data, scene_args  # noqa: E402

from freepoint_bench.engine.checkpoints import environment  # noqa: E402
from freepoint_bench.models.checkpoint import load_checkpoint  # noqa: E402

SCANS = ["scene0000_00", "scene0001_00"]


def epoch_losses(run: Path, step: int) -> list[float]:
    """Returns each epoch's `train/loss_epoch` of one step's CSV log."""
    paths = sorted((run / f"step{step}" / "logs").glob("version_*/metrics.csv"))
    if not paths:
        sys.exit(f"{run / f'step{step}' / 'logs'}: no metrics.csv; did the pretraining finish?")
    with paths[-1].open() as f:
        return [float(r["train/loss_epoch"]) for r in csv.DictReader(f) if r.get("train/loss_epoch")]


def weights_digest(ckpt: Path) -> str:
    """Returns the SHA-256 of a checkpoint's tensors (key order, dtype and raw bytes)."""
    state, _ = load_checkpoint(ckpt)
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def pretrain(data: Path, out: Path, epochs1: int, epochs2: int) -> None:
    bench("pretrain", "--method", "freepoint", "--dataset", "scannet-npy", "--root", str(data), *scene_args(SCANS),
          "--preset", "cpu-small", "--epochs1", str(epochs1), "--epochs2", str(epochs2), "--out", str(out / "run"),
          "--checkpoints", str(out / "checkpoints"), "--overwrite")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--epochs1", type=int, default=3)
    ap.add_argument("--epochs2", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "reproducibility")
    args = ap.parse_args()
    data = dev_data(args.data)
    if data is None:
        return
    runs = []
    for i in (1, 2):
        out = args.out / f"run{i}"
        pretrain(data, out, args.epochs1, args.epochs2)
        losses = epoch_losses(out / "run", 1) + epoch_losses(out / "run", 2)
        runs.append((losses, weights_digest(out / "run" / "step2" / "segmenter.ckpt")))
    print(f"\ncpu-small, {args.epochs1} + {args.epochs2} epochs on {', '.join(SCANS)}")
    print(f"{'epoch':<8} {'run 1 loss':>22} {'run 2 loss':>22}")
    for e, (a, b) in enumerate(zip(runs[0][0], runs[1][0], strict=True), 1):
        step = 1 if e <= args.epochs1 else 2
        print(f"{f'{step}.{e if step == 1 else e - args.epochs1}':<8} {a!r:>22} {b!r:>22}")
    for i, (_, digest) in enumerate(runs, 1):
        print(f"run {i} step-2 segmenter weights sha256 {digest}")
    same = runs[0] == runs[1]
    print("bit for bit: " + ("yes" if same else "NO: the two runs differ"))
    print("environment: " + json.dumps(environment(), sort_keys=True))
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
