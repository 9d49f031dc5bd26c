"""Can the segmenter fit two scans' pseudo masks at all? Short overfitting runs under the settings that matter.

    .venv/bin/python benchmarks/bench_overfit.py [--steps 30] [--lr 3e-3] [--scans scene0000_00 scene0001_00]
        [--only NAME ...] [--data ../shared/data/scannet-dev] [--labels runs/learning-curve/pseudo-labels]

Each row trains a fresh `cpu-small` segmenter (seeded) for `--steps` AdamW steps at a constant learning
rate on the σ_low pseudo masks of two whole dev scans (both scans in every batch; no crops), then reports
the training Dice loss (mean of the last 5 steps) and the mean best IoU per target: for every pseudo mask
of the two scans, the best IoU any predicted mask (eval mode, un-augmented scan) reaches with it. Rows:

- fixed sample: one un-augmented sample per scan made once and reused (so also the same loss points), the
  easiest case: memorising the very geometry that is scored; with the `tiny` backbone; with the fixed
  spatial blob instead of per-query templates; with no spatial prior; with zero-initialised queries
  (Mask3D's) instead of queries from their voxels' features;
- fresh samples: a new sample every step, with no augmentation, only colour jitter, only scaling, or the
  full augmentation (what training does); the last also with the fixed blob and at lr 1e-3.

Pseudo labels are generated (or reused) under `--labels` with `bench.py pseudo-labels`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from freepoint_bench.cli import DEFAULT_CACHE, _open_store  # noqa: E402
from freepoint_bench.engine.data import PseudoLabelTargets, collate, make_sample  # noqa: E402
from freepoint_bench.engine.module import segmenter_from_preset  # noqa: E402
from freepoint_bench.engine.presets import get_preset  # noqa: E402
from freepoint_bench.models.criterion import SetCriterion  # noqa: E402
from freepoint_bench.models.losses import LossConfig  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_learning_curve import best_iou  # noqa: E402
from bench_pretrain_quality import DATA, dev_data, pseudo_labels  # noqa: E402

NO_AUGMENT = {"augment.rotate_z": False, "augment.flip_xy": False, "augment.scale_min": 1.0,
              "augment.scale_max": 1.0, "augment.jitter_sigma_m": 0.0, "augment.color_jitter": 0.0}
COLOUR_ONLY = {**NO_AUGMENT, "augment.color_jitter": 0.05}
SCALE_ONLY = {**NO_AUGMENT, "augment.scale_min": 0.9, "augment.scale_max": 1.1}
# name -> (fixed sample?, preset overrides, lr factor)
ROWS: dict[str, tuple[bool, dict, float]] = {
    "fixed sample": (True, NO_AUGMENT, 1.0),
    "fixed sample, tiny backbone": (True, {**NO_AUGMENT, "backbone": "tiny"}, 1.0),
    "fixed sample, fixed blob": (True, {**NO_AUGMENT, "spatial_relative": False}, 1.0),
    "fixed sample, no spatial prior": (True, {**NO_AUGMENT, "spatial_prior": False, "spatial_relative": False}, 1.0),
    "fixed sample, zero queries": (True, {**NO_AUGMENT, "query_features": False}, 1.0),
    "fresh, no augmentation": (False, NO_AUGMENT, 1.0),
    "fresh, colour jitter only": (False, COLOUR_ONLY, 1.0),
    "fresh, scaling only": (False, SCALE_ONLY, 1.0),
    "fresh, full augmentation": (False, {}, 1.0),
    "fresh, full augmentation, fixed blob": (False, {"spatial_relative": False}, 1.0),
    "fresh, full augmentation, lr / 3": (False, {}, 1 / 3),
}


@torch.no_grad()
def mean_best_iou(model, preset, scenes, targets) -> float:
    model.eval()
    found = []
    for name, scene in scenes.items():
        batch = collate([make_sample(scene, preset, None, train=False)])["batch"]
        out = model(batch)
        masks = (out.final.masks[0].sigmoid()[:, batch.point_to_voxel[0]] > 0.5).numpy()
        inst = targets[name].instance
        ids = np.unique(inst[inst >= 0])
        _, per_target = best_iou(masks, inst[None] == ids[:, None])
        found.append(per_target)
    model.train()
    return float(np.concatenate(found).mean())


def run_row(fixed: bool, overrides: dict, lr: float, steps: int, scenes, targets) -> tuple[float, float, float]:
    preset = get_preset("cpu-small", max_points=None, **overrides)
    torch.manual_seed(preset.seed)
    model = segmenter_from_preset(preset)
    criterion = SetCriterion(LossConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=preset.weight_decay)
    rng = np.random.default_rng(preset.seed)
    fixed_batch = collate([make_sample(s, preset, targets[n], rng=rng) for n, s in scenes.items()]) if fixed else None
    dice, t0 = [], time.perf_counter()
    model.train()
    for _ in range(steps):
        batch = fixed_batch or collate([make_sample(s, preset, targets[n], rng=rng) for n, s in scenes.items()])
        terms = criterion(model(batch["batch"]), batch["targets"], batch["batch"])
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        dice.append(float(terms["dice"]))
    secs = time.perf_counter() - t0
    return float(np.mean(dice[-5:])), mean_best_iou(model, preset, scenes, targets), secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help=f"VoteNet-npy scans (default: {DATA})")
    ap.add_argument("--labels", type=Path, default=ROOT / "runs" / "learning-curve" / "pseudo-labels")
    ap.add_argument("--scans", nargs="+", default=["scene0000_00", "scene0001_00"])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--lr", type=float, default=3e-3, help="constant AdamW learning rate (cpu-small's peak)")
    ap.add_argument("--only", nargs="*", default=None, help=f"rows to run (default all): {list(ROWS)}")
    args = ap.parse_args()
    data = dev_data(args.data)
    if data is None:
        return
    unknown = sorted(set(args.only or []) - set(ROWS))
    if unknown:
        sys.exit(f"unknown rows {unknown}; choose from {list(ROWS)}")
    pseudo_labels(data, args.scans, args.labels)
    store, _ = _open_store("scannet-npy", data, ROOT / DEFAULT_CACHE, args.scans)
    provider = PseudoLabelTargets(args.labels, 0.9)
    scenes = {n: store.load(n) for n in args.scans}
    targets = {n: provider(s) for n, s in scenes.items()}
    results = []
    for name, (fixed, overrides, lr_factor) in ROWS.items():
        if args.only and name not in args.only:
            continue
        d, iou, secs = run_row(fixed, overrides, args.lr * lr_factor, args.steps, scenes, targets)
        results.append((name, d, iou, secs))
        print(f"{name}: Dice {d:.3f}, mean best IoU per target {iou:.3f} ({secs:.0f} s)", flush=True)
    print(f"\ncpu-small on whole scans {', '.join(args.scans)} (σ_low pseudo masks), {args.steps} AdamW steps at "
          f"a constant lr {args.lr:g} (unless noted)")
    print(f"{'setting':<40} {'train Dice':>10} {'best IoU/target':>15} {'time s':>7}")
    for name, d, iou, secs in results:
        print(f"{name:<40} {d:10.3f} {iou:15.3f} {secs:7.0f}")


if __name__ == "__main__":
    main()
