"""Held-out AP along a segmenter training run: is it still learning, or fitting the training rooms?

    .venv/bin/python benchmarks/bench_learning_curve.py [--steps 300] [--every 100] [--sigma 0.9]
        [--targets pseudo|gt] [--set key=value ...] [--data ../shared/data/scannet-dev]
        [--labels runs/learning-curve/pseudo-labels]

Trains the FreePoint segmenter (step 1: σ_low pseudo masks; `--sigma 1.2` for σ_high; `--targets gt` for
the supervised reference) on the 7 scans of rooms 0000-0002 of the ScanNet dev scans with a plain loop (the
model, data, criterion and AdamW + OneCycle of `bench.py pretrain`, without Lightning, so it can stop to
score): at step 0 (the untrained model) and
every `--every` steps it predicts the 6 scans of the held-out rooms 0003-0005 and scores them
class-agnostically against the ground truth (ScanNet rules), next to the training Dice.
`bench_pretrain_quality.py` gives the end-to-end table (both steps through `bench.py`); this script gives
the curve behind it. Pseudo labels are generated (or reused) under `--labels` with `bench.py
pseudo-labels`. Seeded: the same command prints the same table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from freepoint_bench.cli import DEFAULT_CACHE, _open_store  # noqa: E402
from freepoint_bench.data.classes import SCANNET_INSTANCE_IDS  # noqa: E402
from freepoint_bench.engine.data import GroundTruthTargets, PseudoLabelTargets, collate, make_sample  # noqa: E402
from freepoint_bench.engine.module import segmenter_from_preset  # noqa: E402
from freepoint_bench.engine.presets import get_preset  # noqa: E402
from freepoint_bench.errors import ConfigError  # noqa: E402
from freepoint_bench.evaluation import Predictions, evaluate  # noqa: E402
from freepoint_bench.evaluation.instance_ap import scannet_spec  # noqa: E402
from freepoint_bench.freepoint.config import parse_overrides  # noqa: E402
from freepoint_bench.models.criterion import SetCriterion  # noqa: E402
from freepoint_bench.models.inference import predict_instances  # noqa: E402
from freepoint_bench.models.losses import LossConfig  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pretrain_quality import DATA, HELD_OUT, TRAIN  # noqa: E402  (one room split for both scripts)


@torch.no_grad()
def score(model, preset, store, names) -> tuple[float, float, float, float]:
    """Returns (AP, AP50, AP25 in percent, mean predicted mask size in points) over `names`."""
    model.eval()
    gts, preds, sizes = [], {}, []
    for name in names:
        scene = store.load(name)
        batch = collate([make_sample(scene, preset, None, train=False)])["batch"]
        found = predict_instances(model(batch), batch)[0]
        preds[name] = Predictions(found.masks, found.labels, found.scores)
        sizes.append(found.masks.sum(1).mean() if len(found.masks) else 0.0)
        gts.append(scene)
    model.train()
    r = evaluate(gts, preds, scannet_spec(class_agnostic=True))
    return 100 * r.ap, 100 * r.ap50, 100 * r.ap25, float(np.mean(sizes))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help=f"VoteNet-npy scans (default: {DATA})")
    ap.add_argument("--labels", type=Path, default=ROOT / "runs" / "learning-curve" / "pseudo-labels")
    ap.add_argument("--sigma", type=float, default=0.9, help="train on the pseudo masks of this σ (0.9 or 1.2)")
    ap.add_argument("--targets", choices=["pseudo", "gt"], default="pseudo",
                    help="pseudo: FreePoint's masks; gt: the scans' ground-truth instances of the 18 ScanNet "
                         "instance classes (a supervised reference: what this model learns from 3 rooms)")
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="preset key=value")
    args = ap.parse_args()
    if args.data is None and not DATA.is_dir():
        print(f"skipped: the ScanNet dev scans are not at {DATA}; pass --data DIR (VoteNet npy layout)")
        return
    data = args.data or DATA
    if not data.is_dir():
        sys.exit(f"{data}: ScanNet dev scans not found; pass --data DIR (VoteNet npy layout)")
    try:
        preset = get_preset(args.preset, **parse_overrides(args.overrides))
    except ConfigError as e:
        sys.exit(str(e))
    cmd = [sys.executable, str(ROOT / "bench.py"), "pseudo-labels", "--dataset", "scannet-npy", "--root", str(data),
           *[a for n in TRAIN for a in ("--scene", n)], "--out", str(args.labels)]
    print("$ bench.py " + " ".join(cmd[2:]), flush=True)
    if subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL).returncode:
        sys.exit("pseudo-labelling failed: " + " ".join(cmd))
    store, _ = _open_store("scannet-npy", data, ROOT / DEFAULT_CACHE, TRAIN + HELD_OUT)
    if args.targets == "gt":
        not_instances = sorted(set(range(int(max(SCANNET_INSTANCE_IDS)) + 2)) - set(SCANNET_INSTANCE_IDS))
        provider = GroundTruthTargets(ignore_semantic=not_instances)
    else:
        provider = PseudoLabelTargets(args.labels, args.sigma)
    scenes = {n: store.load(n) for n in TRAIN}
    targets = {n: provider(scenes[n]) for n in TRAIN}

    torch.manual_seed(preset.seed)
    model = segmenter_from_preset(preset)
    criterion = SetCriterion(LossConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=preset.lr, weight_decay=preset.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=preset.lr, total_steps=args.steps,
                                                pct_start=preset.onecycle_pct_start)
    rng = np.random.default_rng(preset.seed)
    rows, dice, t0 = [], [], time.perf_counter()
    ap_, ap50, ap25, size = score(model, preset, store, HELD_OUT)  # step 0: the untrained model
    rows.append((0, 0.0, float("nan"), ap_, ap50, ap25, size))
    model.train()
    for step in range(1, args.steps + 1):
        names = rng.choice(TRAIN, min(preset.batch_size, len(TRAIN)), replace=False)
        batch = collate([make_sample(scenes[n], preset, targets[n], rng=rng, train=True) for n in names])
        terms = criterion(model(batch["batch"]), batch["targets"], batch["batch"])
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        sched.step()
        dice.append(float(terms["dice"]))
        if step % args.every == 0 or step == args.steps:
            ap_, ap50, ap25, size = score(model, preset, store, HELD_OUT)
            rows.append((step, time.perf_counter() - t0, float(np.mean(dice[-args.every:])), ap_, ap50, ap25, size))
            print(f"step {step}: train Dice {rows[-1][2]:.3f}, held-out AP/AP50/AP25 {ap_:.1f}/{ap50:.1f}/{ap25:.1f}",
                  flush=True)
    what = "ground-truth instances" if args.targets == "gt" else f"σ = {args.sigma:g} pseudo masks"
    print(f"\n{args.preset} {' '.join(args.overrides)}: {args.steps} steps of {preset.batch_size} scans of rooms "
          f"0000-0002, {what} (OneCycle, peak lr {preset.lr:g}); class-agnostic AP on the "
          f"{len(HELD_OUT)} scans of rooms 0003-0005")
    print(f"{'step':>5} {'time s':>7} {'train Dice':>10} {'AP':>5} {'AP50':>5} {'AP25':>5} {'mask pts':>8}")
    for step, secs, d, a, a50, a25, size in rows:
        print(f"{step:5d} {secs:7.0f} {d:10.3f} {a:5.1f} {a50:5.1f} {a25:5.1f} {size:8.0f}")


if __name__ == "__main__":
    main()
